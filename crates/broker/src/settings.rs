//! The broker's view of its configuration: `config::BrokerConfig` as parsed
//! from `server.properties`, plus the few values derived from it (topic
//! configs with per-topic overrides, storage's log config, intervals).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use config::{BrokerConfig, TopicConfig};
use storage::LogConfig;
use tracing::warn;

pub use config::BrokerConfig as Settings;

/// A topic's effective config: the broker's defaults overridden by the
/// topic's own settings. The coordinator validated the overrides; one that
/// still fails here (written by a newer version, say) is logged and skipped.
pub fn topic_config(config: &BrokerConfig, overrides: &HashMap<String, String>) -> TopicConfig {
    let defaults = config.topic_defaults();
    let sorted: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match defaults.with_overrides(&sorted) {
        Ok(topic) => topic,
        Err(err) => {
            warn!("Ignoring an invalid topic config: {err}");
            let mut topic = defaults;
            for (key, value) in &sorted {
                let _ = topic.apply(key, value);
            }
            topic
        }
    }
}

/// Storage's log settings for a topic.
pub fn log_config(topic: &TopicConfig) -> LogConfig {
    LogConfig {
        segment_bytes: topic.segment_bytes,
        segment_ms: topic.segment_ms,
        segment_index_bytes: topic.segment_index_bytes,
        index_interval_bytes: topic.index_interval_bytes,
        retention_ms: topic.retention_ms,
        retention_bytes: topic.retention_bytes,
        max_message_bytes: topic.max_message_bytes,
        flush_interval_messages: topic.flush_messages,
        flush_interval_ms: topic.flush_ms,
        message_timestamp_type: match topic.message_timestamp_type {
            config::TimestampType::CreateTime => records::TimestampType::CreateTime,
            config::TimestampType::LogAppendTime => records::TimestampType::LogAppendTime,
        },
    }
}

/// How often the broker heartbeats: a few times per session timeout, and
/// at least twice a second so a lapse is noticed well before it fences.
pub fn heartbeat_interval(config: &BrokerConfig) -> Duration {
    Duration::from_millis(u64::from(config.zookeeper_session_timeout_ms / 4).clamp(50, 500))
}

pub fn replica_lag_time_max(config: &BrokerConfig) -> Duration {
    Duration::from_millis(config.replica_lag_time_max_ms)
}

/// How often the broker asks the log manager for due flushes: at most every
/// second, because that also closes (fsyncs and indexes) segments rolled on
/// the append path, or more often if log.flush.scheduler.interval.ms says so.
pub fn flush_scheduler_interval(config: &BrokerConfig) -> Duration {
    Duration::from_millis(
        config
            .log_flush_scheduler_interval_ms
            .unwrap_or(u64::MAX)
            .min(1_000),
    )
}
