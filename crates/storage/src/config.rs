//! Per-log settings, with Kafka's names in the docs and Kafka's defaults.

use records::TimestampType;

/// The topic-level settings one log obeys. `Default` is Kafka's broker
/// default for each; the broker builds one from `server.properties` and
/// per-topic overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes` / `segment.bytes`: roll when the active segment
    /// would grow past this.
    pub segment_bytes: u64,
    /// `log.roll.ms|hours` / `segment.ms`: roll when the active segment's
    /// first batch is this much older than the incoming one.
    pub segment_ms: u64,
    /// `log.index.size.max.bytes` / `segment.index.bytes`: an index this
    /// full rolls the segment.
    pub segment_index_bytes: u64,
    /// `log.index.interval.bytes`: bytes between two offset-index entries.
    pub index_interval_bytes: u64,
    /// `log.retention.ms|minutes|hours` / `retention.ms`; `None` is Kafka's -1.
    pub retention_ms: Option<i64>,
    /// `log.retention.bytes` / `retention.bytes`; `None` is Kafka's -1.
    pub retention_bytes: Option<u64>,
    /// `message.max.bytes` / `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `log.flush.interval.messages`: fsync after this many unflushed
    /// records; `None` leaves durability to replication (Kafka's default).
    pub flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`: fsync when the last flush is this old.
    pub flush_interval_ms: Option<u64>,
    /// `log.message.timestamp.type` / `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            flush_interval_messages: None,
            flush_interval_ms: None,
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}
