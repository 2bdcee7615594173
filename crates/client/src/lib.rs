//! The Rust client of the cluster: [`Producer`], [`Consumer`] and [`Admin`],
//! with Kafka's configuration names, defaults and semantics.
//!
//! It speaks only the gRPC services of `protocol` (`broker.v1.Broker`, and
//! `coordinator.v1.Coordinator` for an admin client given `--zookeeper`) and
//! builds and reads record batches with `records`. It never links the
//! storage, broker or coordinator crates, and holds no state on disk.
//!
//! Connections: one lazily connected tonic channel per broker, found through
//! the `Metadata` answer of any reachable bootstrap server; message limits of
//! `protocol::MAX_GRPC_MESSAGE_BYTES`, TCP_NODELAY, HTTP/2 windows sized for
//! megabyte batches. Metadata is cached and refreshed on errors that
//! invalidate it and every `metadata.max.age.ms`.

mod admin;
mod cluster;
pub mod codec;
mod config;
mod consumer;
mod error;
pub mod partitioner;
mod producer;

pub use admin::{
    Admin, BrokerDescription, BrokerEndpoint, BrokerStatus, ClusterDescription, CreatedTopic,
    NewTopic, PartitionDescription, TopicDescription, TopicsDescription,
};
pub use cluster::{Node, PartitionInfo, TopicPartition};
pub use config::{
    Acks, AdminConfig, AdminTarget, CommonConfig, ConsumerConfig, OffsetReset, ProducerConfig,
    ServerAddress,
};
pub use consumer::{Consumer, ConsumerRecord, OffsetAndTimestamp};
pub use error::{ClientError, DeliveryFailure};
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
pub use protocol::ErrorCode;
pub use records::{Compression, RecordHeader, TimestampType};
