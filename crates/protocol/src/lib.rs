//! The gRPC surface between processes: the `coordinator.v1` and `broker.v1`
//! services generated from `proto/`, Kafka's error codes, and the metadata
//! image every process builds from the coordinator's watch stream.
//!
//! This is the only crate that defines wire messages. It knows nothing of
//! storage, configuration files or the processes that serve these APIs.

mod error;
pub mod image;

pub use error::ErrorCode;

/// The coordinator's API: broker sessions, topics, the controller's partition
/// state and the metadata watch.
pub mod coordinator {
    pub use self::v1::*;

    #[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("coordinator.v1");
    }
}

/// The broker's API: produce, fetch, offsets, metadata and forwarded admin.
pub mod broker {
    pub use self::v1::*;

    #[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("broker.v1");
    }
}

/// No leader, no broker, no partition: Kafka's `-1`.
pub const NO_ID: i32 = -1;

/// The `replica_id` of a fetch or list-offsets request sent by a consumer.
pub const CONSUMER_REPLICA_ID: i32 = -1;

/// `ListOffsets` timestamps that name a position instead of a time.
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;

/// gRPC message size limit for every channel and server of the project.
///
/// Produce and fetch carry batches of up to `message.max.bytes` and
/// `fetch.max.bytes` (50 MiB in Kafka); tonic's 4 MiB default would refuse them.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// HTTP/2 frame size for servers and clients: a 16 KiB batch plus framing is
/// just over the 16,384-byte default and would go out as two frames.
pub const HTTP2_MAX_FRAME_BYTES: u32 = (1 << 24) - 1;
