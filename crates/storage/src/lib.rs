//! Kafka's segmented log on local disk: one [`Log`] per partition, made of
//! segments (`<base offset>.log` with a sparse `.index` and `.timeindex`),
//! a leader-epoch history, and a [`LogManager`] that owns the `log.dirs`
//! (locking, placement, checkpoints, recovery at start-up, retention).
//!
//! Records are Kafka's RecordBatch v2 bytes, handled whole: the log checks a
//! batch with `records::validate_batch`, stamps its base offset and leader
//! epoch (both outside the CRC) and writes it untouched. It never decodes
//! records on the append or read path.
//!
//! This crate must never know about networking, the coordinator, replication
//! policy or Kafka error codes: the broker maps [`StorageError`] to those. It
//! never panics on what it reads from disk or is given to append.
//!
//! How a broker drives it:
//!
//! - at start-up, [`LogManager::open`] (locks the dirs, recovers what an
//!   unclean stop left), then [`LogManager::get_or_create`] per hosted
//!   partition with its topic config;
//! - per request, [`Log::append_as_leader`], [`Log::append_as_follower`],
//!   [`Log::read`] (consumers bound it by the high watermark),
//!   [`Log::set_high_watermark`], [`Log::truncate_to`];
//! - every second or so [`LogManager::flush_due`] (it also closes the
//!   segments that rolls left behind, off the append path), every
//!   `log.retention.check.interval.ms` [`LogManager::run_retention`], every
//!   few seconds [`LogManager::checkpoint`];
//! - on a controlled shutdown, [`LogManager::shutdown`], which lets the next
//!   start skip recovery.

mod checkpoint;
mod config;
mod epoch;
mod error;
mod index;
mod log;
mod manager;
mod segment;

pub use config::LogConfig;
pub use error::StorageError;
pub use log::{Log, LogAppendInfo, ReadInfo};
pub use manager::{LogManager, RetentionStats};

use std::fmt;
use std::str::FromStr;

/// A partition's name: `topic-3` in logs, in directory names and on screen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory name inside a log dir: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl FromStr for TopicPartition {
    type Err = String;

    /// Parses a directory name. Topic names may contain '-', partitions may
    /// not, so the split is at the last '-'.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let (topic, partition) = name
            .rsplit_once('-')
            .ok_or_else(|| format!("'{name}' is not <topic>-<partition>: no '-'"))?;
        if topic.is_empty() {
            return Err(format!("'{name}' is not <topic>-<partition>: empty topic"));
        }
        let partition: i32 = partition
            .parse()
            .ok()
            .filter(|p: &i32| *p >= 0)
            .ok_or_else(|| {
                format!(
                    "'{name}' is not <topic>-<partition>: '{partition}' is not a partition number"
                )
            })?;
        Ok(TopicPartition::new(topic, partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Log>();
        send_sync::<LogManager>();
        send_sync::<StorageError>();
    }

    #[test]
    fn topic_partition_round_trips_through_its_dir_name() {
        let tp = TopicPartition::new("my-topic-name", 12);
        assert_eq!(tp.to_string(), "my-topic-name-12");
        assert_eq!(tp.dir_name().parse::<TopicPartition>(), Ok(tp));
    }

    #[test]
    fn bad_dir_names_are_refused() {
        for name in ["nodash", "-3", "topic-", "topic-x", "t-99999999999"] {
            assert!(name.parse::<TopicPartition>().is_err(), "{name}");
        }
    }
}
