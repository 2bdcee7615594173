//! What can go wrong in the log, as structured values the broker maps to
//! Kafka error codes.

use std::io;
use std::path::PathBuf;

use records::RecordsError;

use crate::TopicPartition;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system call failed; `op` says which ("write", "fsync", ...).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A batch given to append is malformed (CRC, magic, length, ...).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[source] RecordsError),
    /// A batch is larger than `message.max.bytes`.
    #[error("record batch of {size} bytes is larger than the maximum of {max} (message.max.bytes)")]
    MessageTooLarge { size: usize, max: usize },
    /// The records of one append do not fit in a segment.
    #[error(
        "records of {size} bytes do not fit in a segment of {segment_bytes} bytes (segment.bytes)"
    )]
    RecordBatchTooLarge { size: usize, segment_bytes: u64 },
    #[error(
        "offset {offset} is out of range: the log holds [{log_start_offset}, {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A follower append that does not start at the log end offset, or
    /// whose batches do not follow each other.
    #[error("follower append starts at offset {actual}, expected {expected}")]
    OffsetMismatch { expected: i64, actual: i64 },
    /// Another process (a second broker) holds the log dir's lock file.
    #[error("log dir {} is locked by another process (its .lock file is held)", path.display())]
    LogDirLocked { path: PathBuf },
    /// The partition exists with a different topic id: the topic was
    /// deleted and re-created while this broker still had the old one.
    #[error("partition {topic_partition} holds topic id {stored}, not {requested}")]
    InconsistentTopicId {
        topic_partition: TopicPartition,
        stored: String,
        requested: String,
    },
    /// The same partition directory is in two log dirs.
    #[error("partition {topic_partition} is present in both {} and {}", first.display(), second.display())]
    DuplicateLog {
        topic_partition: TopicPartition,
        first: PathBuf,
        second: PathBuf,
    },
    /// The log was deleted (topic deletion) while someone still held it.
    #[error("the log of {0} has been deleted")]
    LogDeleted(TopicPartition),
    /// A file the log owns does not hold what its format requires.
    #[error("corrupt file {}: {reason}", path.display())]
    CorruptFile { path: PathBuf, reason: String },
    /// No log dirs were given.
    #[error("no log dirs configured (log.dirs is empty)")]
    NoLogDirs,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}

/// `TooLarge` from the record validator is Kafka's MESSAGE_TOO_LARGE, kept
/// apart from the other (corrupt-record) refusals.
impl From<RecordsError> for StorageError {
    fn from(err: RecordsError) -> Self {
        match err {
            RecordsError::TooLarge { size, max } => StorageError::MessageTooLarge { size, max },
            other => StorageError::InvalidBatch(other),
        }
    }
}
