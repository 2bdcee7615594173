//! The broker daemon (`kafka-server-start`): hosts partition replicas, leads
//! or follows each one as the coordinator's metadata says, and serves
//! produce, fetch, list-offsets and metadata requests.
//!
//! - `replica_manager`: the transport-free core (produce, fetch, offsets,
//!   applying metadata); `partition`: one replica's leader/follower state,
//!   ISR and high watermark; `fetcher`: follower replication.
//! - `link`: registration, heartbeat session and metadata watch against the
//!   coordinator; `service`: the gRPC adapter; `server`: start-up and
//!   shutdown ordering; `settings`: the typed configuration it runs with;
//!   `meta`: the log dirs' `meta.properties` (broker and cluster ids).
//!
//! The broker never links the coordinator crate: they talk over gRPC only.

mod fetcher;
#[cfg(test)]
mod fuzz_tests;
mod link;
pub mod meta;
pub mod partition;
pub mod replica_manager;
mod server;
mod service;
pub mod settings;

pub use server::{BrokerError, RunningBroker, start};
pub use settings::Settings;
