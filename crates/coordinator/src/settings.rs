//! What the coordinator needs to know to run, as Rust types: durations, not
//! milliseconds in strings. `main` builds it from `zookeeper.properties`;
//! tests build it directly, which is how they get sub-second intervals.

use std::path::PathBuf;
use std::time::Duration;

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `dataDir`: the metadata log, its snapshots and `meta.properties`.
    pub data_dir: PathBuf,
    /// `tickTime`: ZooKeeper's base time unit. Broker session timeouts are
    /// bounded to [2, 20] ticks, as ZooKeeper bounds its sessions.
    pub tick_time: Duration,
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
    /// `broker.session.grace.ms`: how long a broker whose heartbeat stream
    /// ended stays in session waiting for a new stream. A killed broker's
    /// connection closes at once, so this bounds how fast its partitions get
    /// new leaders.
    pub broker_session_grace: Duration,
    /// Write a snapshot once the log since the last one holds at least this
    /// many records and at least as many as the snapshot would. Not a user
    /// setting; tests lower it.
    pub snapshot_min_records: u64,
    /// How many records of recent updates stay in memory, so a watcher
    /// resuming from a recent version gets the changes since then instead
    /// of a whole snapshot.
    pub retained_update_records: usize,
}

impl Settings {
    /// Kafka's and ZooKeeper's defaults, with the data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            tick_time: Duration::from_millis(3000),
            max_client_cnxns: 60,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            broker_session_grace: Duration::from_millis(500),
            snapshot_min_records: 100_000,
            retained_update_records: 100_000,
        }
    }

    /// The session timeout granted for a requested one: 0 or less asks for
    /// Kafka's default of 6000 ms; the result lies within [2, 20] ticks.
    pub fn grant_session_timeout(&self, requested_ms: i32) -> Duration {
        let requested = if requested_ms <= 0 {
            Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS)
        } else {
            Duration::from_millis(requested_ms as u64)
        };
        requested.clamp(self.tick_time * 2, self.tick_time * 20)
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
        settings.tick_time = Duration::from_millis(2000);
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
}
