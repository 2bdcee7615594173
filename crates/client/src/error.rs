//! The one error type of the client. Every variant carries what a caller
//! needs to decide (the Kafka [`ErrorCode`] where there is one, whether a
//! retry may succeed) and displays as a message a CLI can print as it is.

use std::collections::BTreeMap;
use std::fmt;

use protocol::ErrorCode;

use crate::codec::CodecError;

/// Everything that can go wrong in the producer, consumer or admin client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A server answered with a Kafka error code. `message` is the server's
    /// own (e.g. `Replication factor: 3 larger than available brokers: 1.`);
    /// when the server gave none, the code's name and description are shown.
    #[error("{}", kafka_text(*code, message))]
    Kafka { code: ErrorCode, message: String },

    /// A per-partition error from a produce, fetch or list-offsets answer.
    #[error("{topic}-{partition}: {}", named_kafka_text(*code, message))]
    Partition {
        topic: String,
        partition: i32,
        code: ErrorCode,
        message: String,
    },

    /// No connection could be made to a server.
    #[error("cannot connect to {address}: {message}")]
    Connection { address: String, message: String },

    /// A gRPC call failed below the Kafka protocol (connection reset, server
    /// gone, deadline exceeded, unimplemented method, ...).
    #[error("request to {address} failed: {status:?}: {message}")]
    Rpc {
        address: String,
        status: tonic::Code,
        message: String,
    },

    /// None of the configured servers answered.
    #[error("no server could be reached at {servers}: {last_error}")]
    NoServerAvailable { servers: String, last_error: String },

    /// An operation did not complete in time. The message is Kafka's.
    #[error("{message}")]
    TimedOut { message: String },

    /// A configuration value is invalid (the key is known).
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    Config {
        key: String,
        value: String,
        reason: String,
    },

    /// A caller passed something that cannot work (a partition outside the
    /// topic, an empty topic name, ...).
    #[error("{message}")]
    InvalidArgument { message: String },

    /// A record is larger than `max.request.size` or `buffer.memory`.
    #[error(
        "The message is {size} bytes when serialized which is larger than {max}, which is the value of the {config} configuration."
    )]
    RecordTooLarge {
        size: usize,
        max: usize,
        config: &'static str,
    },

    /// Records waited longer than `delivery.timeout.ms` for an acknowledgement.
    #[error(
        "Expiring {records} record(s) for {topic}-{partition}: {elapsed_ms} ms has passed since batch creation"
    )]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        records: usize,
        elapsed_ms: u64,
    },

    /// A fetched batch failed validation (CRC, framing) or decoding.
    #[error(
        "Record batch for partition {topic}-{partition} at offset {offset} is invalid, cause: {reason}"
    )]
    CorruptRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },

    /// Compression or decompression failed.
    #[error(transparent)]
    Codec(#[from] CodecError),

    /// The fetch position is out of range and `auto.offset.reset` is `none`.
    #[error(
        "Offsets out of range with no configured reset policy for partitions: {{{topic}-{partition}={offset}}}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },

    /// A partition has no position and `auto.offset.reset` is `none`.
    #[error("Undefined offset with no reset policy for partitions: [{topic}-{partition}]")]
    NoOffsetForPartition { topic: String, partition: i32 },

    /// A consumer operation named a partition that is not assigned.
    #[error("No current assignment for partition {topic}-{partition}")]
    NotAssigned { topic: String, partition: i32 },

    /// The producer was closed before the call.
    #[error("Cannot perform operation after producer has been closed")]
    ProducerClosed,

    /// `flush()` or `close()` found records that could not be delivered.
    #[error("{}", delivery_summary(failures))]
    DeliveryFailed { failures: Vec<DeliveryFailure> },
}

/// Records of one batch that could not be delivered, and why.
#[derive(Debug, Clone)]
pub struct DeliveryFailure {
    pub topic: String,
    pub partition: i32,
    /// How many records the batch held.
    pub records: usize,
    pub error: ClientError,
}

impl ClientError {
    /// The Kafka error code this error corresponds to, where there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Kafka { code, .. } | ClientError::Partition { code, .. } => Some(*code),
            ClientError::Connection { .. } | ClientError::NoServerAvailable { .. } => {
                Some(ErrorCode::NetworkException)
            }
            ClientError::Rpc { status, .. } => Some(match status {
                tonic::Code::DeadlineExceeded => ErrorCode::RequestTimedOut,
                tonic::Code::Unimplemented => ErrorCode::UnsupportedVersion,
                tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted => {
                    ErrorCode::InvalidRequest
                }
                _ if rpc_status_is_retriable(*status) => ErrorCode::NetworkException,
                _ => ErrorCode::UnknownServerError,
            }),
            ClientError::TimedOut { .. } | ClientError::DeliveryTimeout { .. } => {
                Some(ErrorCode::RequestTimedOut)
            }
            ClientError::RecordTooLarge { .. } => Some(ErrorCode::MessageTooLarge),
            ClientError::CorruptRecord { .. } => Some(ErrorCode::CorruptMessage),
            ClientError::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            ClientError::Config { .. } => Some(ErrorCode::InvalidConfig),
            ClientError::DeliveryFailed { failures } => {
                failures.first().and_then(|failure| failure.error.code())
            }
            ClientError::InvalidArgument { .. }
            | ClientError::Codec(_)
            | ClientError::NoOffsetForPartition { .. }
            | ClientError::NotAssigned { .. }
            | ClientError::ProducerClosed => None,
        }
    }

    /// Whether the same operation may succeed if tried again later (after a
    /// metadata refresh, a leader election, a broker restart).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } | ClientError::Partition { code, .. } => {
                code.is_retriable()
            }
            ClientError::Connection { .. }
            | ClientError::NoServerAvailable { .. }
            | ClientError::TimedOut { .. }
            | ClientError::DeliveryTimeout { .. } => true,
            ClientError::Rpc { status, .. } => rpc_status_is_retriable(*status),
            _ => false,
        }
    }

    /// Whether the client should refresh its metadata before retrying.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } | ClientError::Partition { code, .. } => {
                code.invalidates_metadata()
            }
            ClientError::Connection { .. }
            | ClientError::NoServerAvailable { .. }
            | ClientError::Rpc { .. } => true,
            _ => false,
        }
    }

    /// A gRPC status from the call to `address`.
    pub(crate) fn from_status(address: impl fmt::Display, status: &tonic::Status) -> Self {
        ClientError::Rpc {
            address: address.to_string(),
            status: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// A server's per-topic or per-request error code and message, if it is one.
    pub(crate) fn from_kafka(code: i32, message: &str) -> Option<Self> {
        let code = ErrorCode::from_code(code);
        (!code.is_ok()).then(|| ClientError::Kafka {
            code,
            message: message.to_owned(),
        })
    }

    pub(crate) fn partition(
        topic: &str,
        partition: i32,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        ClientError::Partition {
            topic: topic.to_owned(),
            partition,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        ClientError::InvalidArgument {
            message: message.into(),
        }
    }
}

fn rpc_status_is_retriable(status: tonic::Code) -> bool {
    matches!(
        status,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::Internal
    )
}

fn kafka_text(code: ErrorCode, message: &str) -> String {
    if message.is_empty() {
        format!("{}: {}", code.name(), code.description())
    } else {
        message.to_owned()
    }
}

fn named_kafka_text(code: ErrorCode, message: &str) -> String {
    if message.is_empty() {
        format!("{}: {}", code.name(), code.description())
    } else {
        format!("{}: {}", code.name(), message)
    }
}

/// `3 record(s) could not be delivered: 2 to t-0: NOT_ENOUGH_REPLICAS: ...; 1 to ...`
fn delivery_summary(failures: &[DeliveryFailure]) -> String {
    let total: usize = failures.iter().map(|f| f.records).sum();
    // Group by message so a thousand batches failing alike read as one line.
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for failure in failures {
        *by_reason.entry(failure.error.to_string()).or_default() += failure.records;
    }
    let reasons: Vec<String> = by_reason
        .into_iter()
        .map(|(reason, records)| format!("{records} x {reason}"))
        .collect();
    format!(
        "{total} record(s) could not be delivered: {}",
        reasons.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_shown_as_they_are() {
        let err = ClientError::Kafka {
            code: ErrorCode::InvalidReplicationFactor,
            message: "Replication factor: 3 larger than available brokers: 1.".into(),
        };
        assert_eq!(
            err.to_string(),
            "Replication factor: 3 larger than available brokers: 1."
        );
        assert_eq!(err.code(), Some(ErrorCode::InvalidReplicationFactor));
        assert!(!err.is_retriable());
    }

    #[test]
    fn partition_errors_name_the_kafka_error() {
        let err = ClientError::partition("test", 0, ErrorCode::NotEnoughReplicas, "");
        assert_eq!(
            err.to_string(),
            "test-0: NOT_ENOUGH_REPLICAS: fewer in-sync replicas than min.insync.replicas"
        );
        assert!(err.is_retriable());
        let err = ClientError::partition(
            "test",
            1,
            ErrorCode::MessageTooLarge,
            "batch of 2000000 bytes",
        );
        assert_eq!(
            err.to_string(),
            "test-1: MESSAGE_TOO_LARGE: batch of 2000000 bytes"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn delivery_failures_are_summed_and_grouped() {
        let nor = ClientError::partition("t", 0, ErrorCode::NotEnoughReplicas, "");
        let err = ClientError::DeliveryFailed {
            failures: vec![
                DeliveryFailure {
                    topic: "t".into(),
                    partition: 0,
                    records: 2,
                    error: nor.clone(),
                },
                DeliveryFailure {
                    topic: "t".into(),
                    partition: 0,
                    records: 3,
                    error: nor,
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "5 record(s) could not be delivered: 5 x t-0: NOT_ENOUGH_REPLICAS: fewer in-sync replicas than min.insync.replicas"
        );
        assert_eq!(err.code(), Some(ErrorCode::NotEnoughReplicas));
    }

    #[test]
    fn transport_errors_are_retriable_network_exceptions() {
        let err = ClientError::from_status(
            "localhost:9092",
            &tonic::Status::unavailable("connection refused"),
        );
        assert!(err.is_retriable());
        assert!(err.invalidates_metadata());
        assert_eq!(err.code(), Some(ErrorCode::NetworkException));
        assert_eq!(
            err.to_string(),
            "request to localhost:9092 failed: Unavailable: connection refused"
        );
    }
}
