//! What the coordinator needs to know to run, as Rust types: durations, not
//! milliseconds in strings. `main` builds it from `zookeeper.properties`
//! (through `config::CoordinatorConfig`); tests build it directly, which is
//! how they get sub-second intervals.

use std::path::PathBuf;
use std::time::Duration;

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `dataDir`: snapshots and `meta.properties` (and the log segments,
    /// unless `data_log_dir` differs).
    pub data_dir: PathBuf,
    /// `dataLogDir`: the metadata log segments (default: `dataDir`).
    pub data_log_dir: PathBuf,
    /// `minSessionTimeout` (two `tickTime`s): the shortest broker session
    /// granted, whatever the broker asks for.
    pub min_session_timeout: Duration,
    /// `maxSessionTimeout` (twenty `tickTime`s): the longest granted.
    pub max_session_timeout: Duration,
    /// `maxClientCnxns`: connections accepted from one IP address at a time;
    /// 0 means no limit (beyond [`MAX_CONNECTIONS`](crate::MAX_CONNECTIONS)).
    pub max_client_cnxns: usize,
    /// `unclean.leader.election.enable`: the default for topics that do not
    /// set it. When true, a partition with no live in-sync replica takes the
    /// first live replica as leader, at the cost of losing what it missed.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: move leadership back to the preferred
    /// replica (the first of `replicas`) when it is live and in sync.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval: Duration,
    /// `leader.imbalance.per.broker.percentage`: a broker's partitions are
    /// rebalanced when more than this share of those it prefers to lead are
    /// led by others.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `delete.topic.enable`: whether DeleteTopics deletes.
    pub delete_topic_enable: bool,
    /// `broker.session.grace.ms`: how long a broker whose heartbeat stream
    /// ended stays in session waiting for a new stream. A killed broker's
    /// connection closes at once, so this bounds how fast its partitions get
    /// new leaders.
    pub broker_session_grace: Duration,
    /// `snapCount`: write a snapshot once the log since the last one holds
    /// at least this many records and at least as many as the snapshot
    /// would (so replay stays proportional to the state).
    pub snapshot_min_records: u64,
    /// How many records of recent updates stay in memory, so a watcher
    /// resuming from a recent version gets the changes since then instead
    /// of a whole snapshot.
    pub retained_update_records: usize,
}

impl Settings {
    /// Kafka's and ZooKeeper's defaults, with the data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Settings {
        let data_dir = data_dir.into();
        let mut settings = Settings {
            data_log_dir: data_dir.clone(),
            data_dir,
            min_session_timeout: Duration::ZERO,
            max_session_timeout: Duration::ZERO,
            max_client_cnxns: 60,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_per_broker_percentage: 10,
            delete_topic_enable: true,
            broker_session_grace: Duration::from_millis(500),
            snapshot_min_records: 100_000,
            retained_update_records: 100_000,
        };
        settings.set_tick_time(Duration::from_millis(3000));
        settings
    }

    /// Session bounds of 2 and 20 ticks, as ZooKeeper's defaults are.
    pub fn set_tick_time(&mut self, tick_time: Duration) {
        self.min_session_timeout = tick_time * 2;
        self.max_session_timeout = tick_time * 20;
    }

    /// The settings a validated `zookeeper.properties` describes.
    pub fn from_config(config: &config::CoordinatorConfig) -> Settings {
        let mut settings = Settings::new(&config.data_dir);
        settings.data_log_dir.clone_from(&config.data_log_dir);
        settings.min_session_timeout = Duration::from_millis(config.min_session_timeout_ms.into());
        settings.max_session_timeout = Duration::from_millis(config.max_session_timeout_ms.into());
        settings.max_client_cnxns = config.max_client_cnxns as usize;
        settings.unclean_leader_election_enable = config.unclean_leader_election_enable;
        settings.auto_leader_rebalance_enable = config.auto_leader_rebalance_enable;
        settings.leader_imbalance_check_interval =
            Duration::from_secs(config.leader_imbalance_check_interval_seconds);
        settings.leader_imbalance_per_broker_percentage =
            config.leader_imbalance_per_broker_percentage;
        settings.delete_topic_enable = config.delete_topic_enable;
        settings.broker_session_grace = Duration::from_millis(config.broker_session_grace_ms);
        settings.snapshot_min_records = config.snap_count;
        settings
    }

    /// The session timeout granted for a requested one: 0 or less asks for
    /// Kafka's default of 6000 ms; the result lies within the bounds.
    pub fn grant_session_timeout(&self, requested_ms: i32) -> Duration {
        let requested = if requested_ms <= 0 {
            Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS)
        } else {
            Duration::from_millis(requested_ms as u64)
        };
        requested.clamp(
            self.min_session_timeout,
            self.max_session_timeout.max(self.min_session_timeout),
        )
    }
}

/// Kafka's `zookeeper.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_are_bounded_by_ticks() {
        let mut settings = Settings::new("/tmp/x");
        settings.set_tick_time(Duration::from_millis(2000));
        assert_eq!(
            settings.grant_session_timeout(0),
            Duration::from_millis(6000)
        );
        assert_eq!(
            settings.grant_session_timeout(6000),
            Duration::from_millis(6000)
        );
        assert_eq!(
            settings.grant_session_timeout(100),
            Duration::from_millis(4000)
        );
        assert_eq!(
            settings.grant_session_timeout(i32::MAX),
            Duration::from_millis(40_000)
        );
    }

    #[test]
    fn zookeeper_properties_become_settings() {
        let props = config::Properties::parse(
            "dataDir=/var/zk\nclientPort=0\ntickTime=100\nmaxSessionTimeout=900\nsnapCount=50\n\
             leader.imbalance.check.interval.seconds=7\nbroker.session.grace.ms=250\n\
             maxClientCnxns=0\ndelete.topic.enable=false\n",
            "zookeeper.properties",
        )
        .unwrap();
        let config = config::CoordinatorConfig::from_properties(&props).unwrap();
        let settings = Settings::from_config(&config);
        assert_eq!(settings.data_dir, PathBuf::from("/var/zk"));
        assert_eq!(settings.data_log_dir, PathBuf::from("/var/zk"));
        assert_eq!(settings.min_session_timeout, Duration::from_millis(200));
        assert_eq!(settings.max_session_timeout, Duration::from_millis(900));
        assert_eq!(settings.snapshot_min_records, 50);
        assert_eq!(
            settings.leader_imbalance_check_interval,
            Duration::from_secs(7)
        );
        assert_eq!(settings.broker_session_grace, Duration::from_millis(250));
        assert_eq!(settings.max_client_cnxns, 0);
        assert!(settings.auto_leader_rebalance_enable);
        assert!(!settings.delete_topic_enable);
        assert!(!settings.unclean_leader_election_enable);
    }
}
