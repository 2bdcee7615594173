//! Topic-level configs: Kafka's names (`retention.ms`, `segment.bytes`, ...),
//! their validation, and [`TopicConfig`], the broker's defaults with one
//! topic's overrides applied.
//!
//! Never depends on the storage crate: the broker maps a [`TopicConfig`]
//! onto storage's own `LogConfig`, field for field.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ConfigError;
use crate::value::{Kind, Range, parse_bool, parse_int, parse_list_of, parse_long, parse_one_of};

/// How a log's records get their timestamps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    #[default]
    CreateTime,
    /// The broker stamps its own clock at append.
    LogAppendTime,
}

impl TimestampType {
    pub(crate) const NAMES: &'static [&'static str] = &["CreateTime", "LogAppendTime"];

    /// Kafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    pub(crate) fn from_name(name: &str) -> TimestampType {
        if name == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broker-side `compression.type`: keep what the producer sent
/// (`producer`), or recompress to one codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressionType {
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub(crate) const NAMES: &'static [&'static str] =
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

    /// Kafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    pub(crate) fn from_name(name: &str) -> CompressionType {
        match name {
            "uncompressed" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => CompressionType::Producer,
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `cleanup.policy`: a list of `delete` and `compact`; both may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CleanupPolicy {
    /// Old segments are deleted by time and size retention.
    pub delete: bool,
    /// Old records are compacted by key (not implemented by the log yet).
    pub compact: bool,
}

impl CleanupPolicy {
    pub(crate) const NAMES: &'static [&'static str] = &["compact", "delete"];

    pub(crate) fn from_names(names: &[&str]) -> CleanupPolicy {
        CleanupPolicy {
            delete: names.contains(&"delete"),
            compact: names.contains(&"compact"),
        }
    }
}

impl Default for CleanupPolicy {
    fn default() -> CleanupPolicy {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// Every topic config name Kafka defines, with its type and validator.
const TOPIC_CONFIGS: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::ListOf(CleanupPolicy::NAMES)),
    ("compression.type", Kind::OneOf(CompressionType::NAMES)),
    ("delete.retention.ms", Kind::Long(Range::at_least(0))),
    ("file.delete.delay.ms", Kind::Long(Range::at_least(0))),
    ("flush.messages", Kind::Long(Range::at_least(1))),
    ("flush.ms", Kind::Long(Range::at_least(0))),
    ("follower.replication.throttled.replicas", Kind::Str),
    ("index.interval.bytes", Kind::Int(Range::at_least(0))),
    ("leader.replication.throttled.replicas", Kind::Str),
    ("local.retention.bytes", Kind::Long(Range::at_least(-2))),
    ("local.retention.ms", Kind::Long(Range::at_least(-2))),
    ("max.compaction.lag.ms", Kind::Long(Range::at_least(1))),
    ("max.message.bytes", Kind::Int(Range::at_least(0))),
    ("message.downconversion.enable", Kind::Bool),
    ("message.format.version", Kind::Str),
    (
        "message.timestamp.after.max.ms",
        Kind::Long(Range::at_least(0)),
    ),
    (
        "message.timestamp.before.max.ms",
        Kind::Long(Range::at_least(0)),
    ),
    (
        "message.timestamp.difference.max.ms",
        Kind::Long(Range::at_least(0)),
    ),
    ("message.timestamp.type", Kind::OneOf(TimestampType::NAMES)),
    ("min.cleanable.dirty.ratio", Kind::Double(0.0, 1.0)),
    ("min.compaction.lag.ms", Kind::Long(Range::at_least(0))),
    ("min.insync.replicas", Kind::Int(Range::at_least(1))),
    ("preallocate", Kind::Bool),
    ("remote.storage.enable", Kind::Bool),
    ("retention.bytes", Kind::Long(Range::ANY)),
    ("retention.ms", Kind::Long(Range::at_least(-1))),
    ("segment.bytes", Kind::Int(Range::at_least(14))),
    ("segment.index.bytes", Kind::Int(Range::at_least(4))),
    ("segment.jitter.ms", Kind::Long(Range::at_least(0))),
    ("segment.ms", Kind::Long(Range::at_least(1))),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// Every topic config name Kafka defines, sorted.
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|(name, _)| *name)
}

fn topic_kind(key: &str) -> Result<Kind, ConfigError> {
    TOPIC_CONFIGS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| ConfigError::UnknownTopicConfig {
            key: key.to_owned(),
        })
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        at: None,
        reason,
    }
}

/// Checks one topic-level config as `kafka-topics --config` and
/// `CreateTopics` must: an unknown name or a value of the wrong type or
/// range is an error in Kafka's words.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), ConfigError> {
    topic_kind(key)?
        .check(value)
        .map_err(|reason| invalid(key, value, reason))
}

/// The settings one topic's logs obey: the broker's defaults with the
/// topic's overrides applied. Types follow what the log needs: `None` stands
/// for Kafka's "unlimited" values (-1, or `Long.MAX_VALUE` for flushes).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `cleanup.policy` (`log.cleanup.policy`).
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`.
    pub compression_type: CompressionType,
    /// `retention.ms` (`log.retention.ms|minutes|hours`); `None` keeps
    /// segments forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes` (`log.retention.bytes`); `None` has no size limit.
    pub retention_bytes: Option<u64>,
    /// `segment.bytes` (`log.segment.bytes`).
    pub segment_bytes: u64,
    /// `segment.ms` (`log.roll.ms|hours`).
    pub segment_ms: u64,
    /// `segment.index.bytes` (`log.index.size.max.bytes`).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes` (`log.index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// `max.message.bytes` (`message.max.bytes`): the largest batch accepted.
    pub max_message_bytes: usize,
    /// `min.insync.replicas`: acks=all needs at least this many in the ISR.
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// `message.timestamp.type` (`log.message.timestamp.type`).
    pub message_timestamp_type: TimestampType,
    /// `flush.messages` (`log.flush.interval.messages`); `None` never
    /// flushes by count, leaving durability to replication.
    pub flush_messages: Option<u64>,
    /// `flush.ms` (`log.flush.interval.ms`); `None` never flushes by time.
    pub flush_ms: Option<u64>,
    /// `file.delete.delay.ms` (`log.segment.delete.delay.ms`): how long a
    /// deleted segment's files linger.
    pub file_delete_delay_ms: u64,
}

/// Kafka's default for `retention.ms` and `segment.ms`: seven days.
pub(crate) const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for TopicConfig {
    /// Kafka's defaults, the same as a broker with no log settings gives.
    fn default() -> TopicConfig {
        TopicConfig {
            cleanup_policy: CleanupPolicy::default(),
            compression_type: CompressionType::Producer,
            retention_ms: Some(SEVEN_DAYS_MS),
            retention_bytes: None,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: SEVEN_DAYS_MS.unsigned_abs(),
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: None,
            flush_ms: None,
            file_delete_delay_ms: 60_000,
        }
    }
}

impl TopicConfig {
    /// These settings with a topic's overrides applied. Every key is
    /// validated as [`validate_topic_config`] does; keys Kafka defines that
    /// the log does not act on (compaction, throttles, ...) are accepted.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            config.apply(key, value)?;
        }
        Ok(config)
    }

    /// Applies one topic-level override.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        validate_topic_config(key, value)?;
        let fail = |reason: String| invalid(key, value, reason);
        // Validation above succeeded, so each parse below does too; the
        // errors are still mapped rather than unwrapped.
        match key {
            "cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy::from_names(
                    &parse_list_of(value, CleanupPolicy::NAMES).map_err(fail)?,
                );
            }
            "compression.type" => {
                self.compression_type = CompressionType::from_name(
                    parse_one_of(value, CompressionType::NAMES).map_err(fail)?,
                );
            }
            "retention.ms" => {
                let ms = parse_long(value, Range::ANY).map_err(fail)?;
                self.retention_ms = (ms >= 0).then_some(ms);
            }
            "retention.bytes" => {
                self.retention_bytes =
                    unlimited_if_negative(parse_long(value, Range::ANY).map_err(fail)?);
            }
            "segment.bytes" => self.segment_bytes = non_negative_int(value).map_err(fail)?,
            "segment.ms" => self.segment_ms = non_negative_long(value).map_err(fail)?,
            "segment.index.bytes" => {
                self.segment_index_bytes = non_negative_int(value).map_err(fail)?;
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = non_negative_int(value).map_err(fail)?;
            }
            "max.message.bytes" => {
                let bytes = non_negative_int(value).map_err(fail)?;
                self.max_message_bytes = usize::try_from(bytes)
                    .map_err(|_| invalid(key, value, "Value is too large".to_owned()))?;
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = u32::try_from(non_negative_int(value).map_err(fail)?)
                    .map_err(|_| invalid(key, value, "Value is too large".to_owned()))?;
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(value).map_err(fail)?;
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = TimestampType::from_name(
                    parse_one_of(value, TimestampType::NAMES).map_err(fail)?,
                );
            }
            "flush.messages" => {
                self.flush_messages = unless_max(non_negative_long(value).map_err(fail)?);
            }
            "flush.ms" => self.flush_ms = unless_max(non_negative_long(value).map_err(fail)?),
            "file.delete.delay.ms" => {
                self.file_delete_delay_ms = non_negative_long(value).map_err(fail)?;
            }
            // Defined by Kafka, validated above, not acted on by this log.
            _ => {}
        }
        Ok(())
    }
}

/// Kafka's -1 (any negative) means "no limit".
pub(crate) fn unlimited_if_negative(n: i64) -> Option<u64> {
    u64::try_from(n).ok()
}

/// Kafka's `Long.MAX_VALUE` default for flushes means "never".
pub(crate) fn unless_max(n: u64) -> Option<u64> {
    (n != i64::MAX.unsigned_abs()).then_some(n)
}

fn non_negative_int(value: &str) -> Result<u64, String> {
    let n = parse_int(value, Range::at_least(0))?;
    Ok(u64::from(n.unsigned_abs()))
}

fn non_negative_long(value: &str) -> Result<u64, String> {
    Ok(parse_long(value, Range::at_least(0))?.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_topic_config_names_use_kafkas_wording() {
        let err = validate_topic_config("foo", "1").unwrap_err();
        assert_eq!(err.to_string(), "Unknown topic config name: foo");
        assert_eq!(err.key(), Some("foo"));
        // Broker names are not topic names.
        assert!(validate_topic_config("log.retention.ms", "1").is_err());
    }

    #[test]
    fn bad_values_use_kafkas_wording() {
        let cases = [
            ("retention.ms", "abc", "Not a number of type LONG"),
            ("retention.ms", "-2", "Value must be at least -1"),
            ("segment.bytes", "abc", "Not a number of type INT"),
            ("segment.bytes", "13", "Value must be at least 14"),
            ("segment.bytes", "4294967296", "Not a number of type INT"),
            ("segment.ms", "0", "Value must be at least 1"),
            ("segment.index.bytes", "3", "Value must be at least 4"),
            ("index.interval.bytes", "-1", "Value must be at least 0"),
            ("max.message.bytes", "-1", "Value must be at least 0"),
            ("min.insync.replicas", "0", "Value must be at least 1"),
            (
                "unclean.leader.election.enable",
                "yes",
                "Expected value to be either true or false",
            ),
            (
                "message.timestamp.type",
                "createtime",
                "String must be one of: CreateTime, LogAppendTime",
            ),
            (
                "compression.type",
                "brotli",
                "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
            ),
            (
                "cleanup.policy",
                "forever",
                "Invalid value forever: must be one of: compact, delete",
            ),
            ("flush.messages", "0", "Value must be at least 1"),
            ("flush.ms", "-1", "Value must be at least 0"),
            ("delete.retention.ms", "x", "Not a number of type LONG"),
            ("file.delete.delay.ms", "-5", "Value must be at least 0"),
            (
                "min.cleanable.dirty.ratio",
                "1.5",
                "Value must be no more than 1",
            ),
            (
                "min.cleanable.dirty.ratio",
                "half",
                "Not a number of type DOUBLE",
            ),
            (
                "preallocate",
                "maybe",
                "Expected value to be either true or false",
            ),
        ];
        for (key, value, reason) in cases {
            let err = validate_topic_config(key, value).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Invalid value {value} for configuration {key}: {reason}")
            );
        }
    }

    #[test]
    fn good_values_pass() {
        for (key, value) in [
            ("retention.ms", "-1"),
            ("retention.ms", "0"),
            ("retention.bytes", "-1"),
            ("cleanup.policy", "compact,delete"),
            ("compression.type", "zstd"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("unclean.leader.election.enable", "TRUE"),
            ("segment.bytes", " 1048576 "),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
        ] {
            validate_topic_config(key, value).unwrap();
        }
        assert!(topic_config_names().any(|name| name == "retention.ms"));
    }

    #[test]
    fn overrides_replace_defaults() {
        let config = TopicConfig::default()
            .with_overrides(&overrides(&[
                ("retention.ms", "60000"),
                ("retention.bytes", "1024"),
                ("segment.bytes", "1048576"),
                ("segment.ms", "3600000"),
                ("segment.index.bytes", "4096"),
                ("index.interval.bytes", "100"),
                ("max.message.bytes", "2000000"),
                ("min.insync.replicas", "2"),
                ("unclean.leader.election.enable", "true"),
                ("message.timestamp.type", "LogAppendTime"),
                ("flush.messages", "10"),
                ("flush.ms", "1000"),
                ("file.delete.delay.ms", "0"),
                ("cleanup.policy", "compact"),
                ("compression.type", "lz4"),
                ("preallocate", "true"),
            ]))
            .unwrap();
        assert_eq!(
            config,
            TopicConfig {
                cleanup_policy: CleanupPolicy {
                    delete: false,
                    compact: true
                },
                compression_type: CompressionType::Lz4,
                retention_ms: Some(60_000),
                retention_bytes: Some(1024),
                segment_bytes: 1_048_576,
                segment_ms: 3_600_000,
                segment_index_bytes: 4096,
                index_interval_bytes: 100,
                max_message_bytes: 2_000_000,
                min_insync_replicas: 2,
                unclean_leader_election_enable: true,
                message_timestamp_type: TimestampType::LogAppendTime,
                flush_messages: Some(10),
                flush_ms: Some(1000),
                file_delete_delay_ms: 0,
            }
        );
    }

    #[test]
    fn minus_one_means_unlimited() {
        let config = TopicConfig::default()
            .with_overrides(&overrides(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "-1"),
                ("flush.messages", "9223372036854775807"),
            ]))
            .unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, None);
        assert_eq!(config.flush_messages, None);
    }

    #[test]
    fn a_bad_override_is_an_error_and_changes_nothing() {
        let base = TopicConfig::default();
        let err = base
            .with_overrides(&overrides(&[("retention.ms", "soon")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value soon for configuration retention.ms: Not a number of type LONG"
        );
        assert!(
            base.with_overrides(&overrides(&[("retention.hours", "1")]))
                .is_err()
        );
    }

    #[test]
    fn names_round_trip() {
        for name in CompressionType::NAMES {
            assert_eq!(CompressionType::from_name(name).as_str(), *name);
        }
        for name in TimestampType::NAMES {
            assert_eq!(TimestampType::from_name(name).to_string(), *name);
        }
        assert_eq!(CleanupPolicy::default().to_string(), "delete");
        assert_eq!(
            CleanupPolicy::from_names(&["delete", "compact"]).to_string(),
            "compact,delete"
        );
    }
}
