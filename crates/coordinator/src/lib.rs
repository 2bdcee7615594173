//! The coordination server: ZooKeeper's replacement and the cluster's
//! controller, as in KRaft.
//!
//! It owns the cluster metadata (brokers and their sessions, topics,
//! partition assignments, leaders, ISRs and epochs), keeps it in a durable
//! metadata log in `dataDir`, makes the controller's decisions (elections,
//! ISR changes, placement) and streams every change to watchers.
//!
//! - `controller`: the decisions, pure functions from the metadata image
//!   and an event to metadata records.
//! - `sessions`: broker heartbeat sessions (volatile, never logged).
//! - `metadata_log`: the log and snapshots on disk, and recovery.
//! - `writer` (private): the one task that owns the state and group-commits.
//! - `service` (private): the gRPC adapter; `server`: start and stop.
//!
//! It never links the broker; the two talk over gRPC only. It does no I/O
//! outside `dataDir` and its listening socket.

pub mod controller;
pub mod metadata_log;
mod server;
mod service;
pub mod sessions;
mod settings;
mod writer;

pub use metadata_log::fsync_count;
pub use server::{
    CoordinatorError, MAX_CONNECTIONS, describe_bind, run, run_with_config_validator,
};
pub use settings::{DEFAULT_SESSION_TIMEOUT_MS, Settings};
pub use writer::{ConfigValidator, WriterError};

/// Checks one topic config of a CreateTopics request: Kafka's topic config
/// names and value rules, from the `config` crate.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    config::validate_topic_config(key, value).map_err(|e| e.to_string())
}
