//! `server.properties`: the broker's typed, validated config with Kafka's
//! key names, defaults and precedence rules (`listeners` over `port` and
//! `host.name`, `log.dirs` over `log.dir`, `log.retention.ms` over
//! `.minutes` over `.hours`, ...).
//!
//! Never binds, resolves or creates anything: it says what the broker should
//! do; the broker does it.

use std::path::PathBuf;

use crate::address::{AddressError, Endpoint, ZkConnect, parse_listener};
use crate::error::{ConfigError, ConfigWarning};
use crate::properties::Properties;
use crate::topic::{
    CleanupPolicy, CompressionType, TimestampType, TopicConfig, unless_max, unlimited_if_negative,
};
use crate::value::{Kind, Range, Reader, parse_list_of, parse_one_of, split_list};

const HOUR_MS: i64 = 60 * 60 * 1000;
const MINUTE_MS: i64 = 60 * 1000;

/// Kafka's default `listener.security.protocol.map`.
const DEFAULT_SECURITY_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The keys read into [`BrokerConfig`]'s fields.
const TYPED_KEYS: &[&str] = &[
    "broker.id",
    "broker.rack",
    "port",
    "host.name",
    "advertised.host.name",
    "advertised.port",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "log.segment.delete.delay.ms",
    "log.cleanup.policy",
    "log.message.timestamp.type",
    "compression.type",
    "message.max.bytes",
    "replica.lag.time.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    "num.replica.fetchers",
    "replica.high.watermark.checkpoint.interval.ms",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
    "zookeeper.session.timeout.ms",
    "auto.create.topics.enable",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage",
    "controlled.shutdown.enable",
    "controlled.shutdown.max.retries",
    "controlled.shutdown.retry.backoff.ms",
    "delete.topic.enable",
    "request.timeout.ms",
];

const POSITIVE_INT: Kind = Kind::Int(Range::at_least(1));
const NON_NEGATIVE_INT: Kind = Kind::Int(Range::at_least(0));
const ANY_INT: Kind = Kind::Int(Range::ANY);
const NON_NEGATIVE_LONG: Kind = Kind::Long(Range::at_least(0));
const ANY_LONG: Kind = Kind::Long(Range::ANY);

/// Keys Kafka's broker knows that this broker accepts without acting on
/// them (thread pools, socket buffers, the log cleaner, group and
/// transaction coordinators, ...). Their values are still type-checked, so a
/// typo in a number is caught as Kafka would catch it.
const ACCEPTED_KEYS: &[(&str, Kind)] = &[
    ("alter.config.policy.class.name", Kind::Str),
    ("authorizer.class.name", Kind::Str),
    ("auto.include.jmx.reporter", Kind::Bool),
    ("background.threads", POSITIVE_INT),
    ("broker.id.generation.enable", Kind::Bool),
    ("connections.max.idle.ms", ANY_LONG),
    ("controller.message.queue.size", POSITIVE_INT),
    ("controller.socket.timeout.ms", ANY_INT),
    ("create.topic.policy.class.name", Kind::Str),
    ("delete.records.purgatory.purge.interval.requests", ANY_INT),
    ("fetch.purgatory.purge.interval.requests", ANY_INT),
    ("group.initial.rebalance.delay.ms", ANY_INT),
    ("group.max.session.timeout.ms", ANY_INT),
    ("group.max.size", POSITIVE_INT),
    ("group.min.session.timeout.ms", ANY_INT),
    ("inter.broker.protocol.version", Kind::Str),
    ("log.cleaner.backoff.ms", NON_NEGATIVE_LONG),
    ("log.cleaner.dedupe.buffer.size", ANY_LONG),
    ("log.cleaner.delete.retention.ms", NON_NEGATIVE_LONG),
    ("log.cleaner.enable", Kind::Bool),
    (
        "log.cleaner.io.buffer.load.factor",
        Kind::Double(0.0, f64::MAX),
    ),
    ("log.cleaner.io.buffer.size", NON_NEGATIVE_INT),
    (
        "log.cleaner.io.max.bytes.per.second",
        Kind::Double(f64::MIN, f64::MAX),
    ),
    (
        "log.cleaner.max.compaction.lag.ms",
        Kind::Long(Range::at_least(1)),
    ),
    ("log.cleaner.min.cleanable.ratio", Kind::Double(0.0, 1.0)),
    ("log.cleaner.min.compaction.lag.ms", NON_NEGATIVE_LONG),
    ("log.cleaner.threads", NON_NEGATIVE_INT),
    ("log.cleanup.interval.mins", POSITIVE_INT),
    ("log.message.downconversion.enable", Kind::Bool),
    ("log.message.format.version", Kind::Str),
    ("log.message.timestamp.after.max.ms", NON_NEGATIVE_LONG),
    ("log.message.timestamp.before.max.ms", NON_NEGATIVE_LONG),
    ("log.message.timestamp.difference.max.ms", NON_NEGATIVE_LONG),
    ("log.preallocate", Kind::Bool),
    ("log.roll.jitter.hours", NON_NEGATIVE_INT),
    ("log.roll.jitter.ms", ANY_LONG),
    ("max.connections", NON_NEGATIVE_INT),
    ("max.connections.per.ip", NON_NEGATIVE_INT),
    ("max.connections.per.ip.overrides", Kind::Str),
    (
        "max.incremental.fetch.session.cache.slots",
        NON_NEGATIVE_INT,
    ),
    ("metric.reporters", Kind::Str),
    ("metrics.num.samples", POSITIVE_INT),
    ("metrics.recording.level", Kind::Str),
    ("metrics.sample.window.ms", POSITIVE_INT),
    ("num.io.threads", POSITIVE_INT),
    ("num.network.threads", POSITIVE_INT),
    ("num.recovery.threads.per.data.dir", POSITIVE_INT),
    ("offset.metadata.max.bytes", ANY_INT),
    ("offsets.commit.required.acks", ANY_INT),
    ("offsets.commit.timeout.ms", POSITIVE_INT),
    ("offsets.load.buffer.size", POSITIVE_INT),
    (
        "offsets.retention.check.interval.ms",
        Kind::Long(Range::at_least(1)),
    ),
    ("offsets.retention.minutes", POSITIVE_INT),
    ("offsets.topic.compression.codec", ANY_INT),
    ("offsets.topic.num.partitions", POSITIVE_INT),
    ("offsets.topic.replication.factor", POSITIVE_INT),
    ("offsets.topic.segment.bytes", POSITIVE_INT),
    ("principal.builder.class", Kind::Str),
    ("producer.purgatory.purge.interval.requests", ANY_INT),
    ("queued.max.request.bytes", ANY_LONG),
    ("queued.max.requests", POSITIVE_INT),
    ("quota.consumer.default", Kind::Long(Range::at_least(1))),
    ("quota.producer.default", Kind::Long(Range::at_least(1))),
    ("quota.window.num", POSITIVE_INT),
    ("quota.window.size.seconds", POSITIVE_INT),
    ("replica.fetch.response.max.bytes", NON_NEGATIVE_INT),
    ("replica.selector.class", Kind::Str),
    ("replica.socket.receive.buffer.bytes", ANY_INT),
    ("replica.socket.timeout.ms", ANY_INT),
    ("reserved.broker.max.id", NON_NEGATIVE_INT),
    ("security.providers", Kind::Str),
    ("socket.receive.buffer.bytes", ANY_INT),
    ("socket.request.max.bytes", POSITIVE_INT),
    ("socket.send.buffer.bytes", ANY_INT),
    ("transaction.max.timeout.ms", POSITIVE_INT),
    ("transaction.state.log.min.isr", POSITIVE_INT),
    ("transaction.state.log.num.partitions", POSITIVE_INT),
    ("transaction.state.log.replication.factor", POSITIVE_INT),
    ("transaction.state.log.segment.bytes", POSITIVE_INT),
    ("transactional.id.expiration.ms", POSITIVE_INT),
    ("zookeeper.max.in.flight.requests", POSITIVE_INT),
    ("zookeeper.set.acl", Kind::Bool),
    ("zookeeper.sync.time.ms", ANY_INT),
];

/// Families of keys accepted without checks: TLS and SASL settings (only
/// PLAINTEXT listeners exist, so they can never apply), per-listener
/// overrides and metrics reporters' own settings.
const ACCEPTED_PREFIXES: &[&str] = &["ssl.", "sasl.", "listener.name.", "kafka.metrics."];

/// The broker's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `broker.id`: unique in the cluster; required, as in Kafka 0.8.
    pub broker_id: i32,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// Where to listen: `listeners`, or `PLAINTEXT://host.name:port` when
    /// it is not set. Never empty; names are distinct.
    pub listeners: Vec<Endpoint>,
    /// What to tell clients and other brokers: `advertised.listeners`, else
    /// `advertised.host.name`/`advertised.port` (each falling back to
    /// `host.name`/`port`) when either is set, else `listeners`. Every name
    /// is one of the listeners'. Resolve empty hosts and port 0 with
    /// [`BrokerConfig::advertised_endpoint`].
    pub advertised_listeners: Vec<Endpoint>,
    /// `inter.broker.listener.name` (default `PLAINTEXT`): the advertised
    /// listener other brokers replicate through and that is registered with
    /// the coordinator.
    pub inter_broker_listener_name: String,
    /// `log.dirs`, else `log.dir` (default `/tmp/kafka-logs`); never empty.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions` for auto-created topics.
    pub num_partitions: i32,
    /// `default.replication.factor` for auto-created topics.
    pub default_replication_factor: i32,
    /// `min.insync.replicas`, the default for topics that do not set it.
    pub min_insync_replicas: u32,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.roll.ms`, else `log.roll.hours` in milliseconds.
    pub log_roll_ms: u64,
    /// `log.retention.ms`, else `.minutes`, else `.hours`, in milliseconds;
    /// `None` (Kafka's -1) keeps segments forever.
    pub log_retention_ms: Option<i64>,
    /// `log.retention.bytes`; `None` (Kafka's -1) has no size limit.
    pub log_retention_bytes: Option<u64>,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`.
    pub log_index_interval_bytes: u64,
    /// `log.index.size.max.bytes`.
    pub log_index_size_max_bytes: u64,
    /// `log.flush.interval.messages`; `None` (Kafka's `Long.MAX_VALUE`
    /// default) never flushes by count.
    pub log_flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`, else `log.flush.scheduler.interval.ms`;
    /// `None` (`Long.MAX_VALUE`) never flushes by time.
    pub log_flush_interval_ms: Option<u64>,
    /// `log.flush.scheduler.interval.ms`: how often the flusher checks;
    /// `None` (`Long.MAX_VALUE`) means it never runs.
    pub log_flush_scheduler_interval_ms: Option<u64>,
    /// `log.flush.offset.checkpoint.interval.ms`: how often recovery points
    /// are checkpointed.
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `log.segment.delete.delay.ms`.
    pub log_segment_delete_delay_ms: u64,
    /// `log.cleanup.policy`.
    pub log_cleanup_policy: CleanupPolicy,
    /// `log.message.timestamp.type`.
    pub log_message_timestamp_type: TimestampType,
    /// `compression.type`.
    pub compression_type: CompressionType,
    /// `message.max.bytes`: the largest record batch accepted.
    pub message_max_bytes: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.max.bytes`: per-partition bytes a follower asks for.
    pub replica_fetch_max_bytes: u32,
    /// `replica.fetch.wait.max.ms`: a follower's long-poll wait.
    pub replica_fetch_wait_max_ms: u32,
    /// `replica.fetch.min.bytes`.
    pub replica_fetch_min_bytes: u32,
    /// `replica.fetch.backoff.ms`: pause after a failed fetch.
    pub replica_fetch_backoff_ms: u32,
    /// `num.replica.fetchers`: fetchers per source broker.
    pub num_replica_fetchers: u32,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `zookeeper.connect`: the coordinator's addresses; required.
    pub zookeeper_connect: ZkConnect,
    /// `zookeeper.connection.timeout.ms`, else the session timeout: how long
    /// one attempt to connect to the coordinator may take. Unlike Kafka, a
    /// broker that cannot reach the coordinator at start-up keeps retrying
    /// (and serving what it can) instead of exiting.
    pub zookeeper_connection_timeout_ms: u32,
    /// `zookeeper.session.timeout.ms` (6000).
    pub zookeeper_session_timeout_ms: u32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `controlled.shutdown.enable`: on SIGTERM, move leadership away first.
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.max.retries`.
    pub controlled_shutdown_max_retries: u32,
    /// `controlled.shutdown.retry.backoff.ms`.
    pub controlled_shutdown_retry_backoff_ms: u64,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `request.timeout.ms`: the broker's own requests (to the coordinator,
    /// and acks=all produce without a timeout of its own).
    pub request_timeout_ms: u32,
    /// Unknown keys, and `log.dir` when `log.dirs` overrules it, for the
    /// start-up log (see [`crate::property_lines`]).
    pub warnings: Vec<ConfigWarning>,
}

impl BrokerConfig {
    /// Reads and validates a broker config. Fails on the first value that
    /// does not parse or is out of range, on a missing `broker.id` or
    /// `zookeeper.connect`, and on listeners that contradict each other or
    /// use a security protocol other than PLAINTEXT. Unknown keys are
    /// warnings.
    pub fn from_properties(props: &Properties) -> Result<BrokerConfig, ConfigError> {
        let r = Reader::new(props);
        for (key, kind) in ACCEPTED_KEYS {
            r.check(key, *kind)?;
        }

        let broker_id = r
            .opt_int("broker.id", Range::at_least(0))?
            .ok_or_else(|| r.missing("broker.id"))?;

        let (listeners, advertised_listeners, inter_broker_listener_name) = read_listeners(&r)?;
        let log_dirs = read_log_dirs(&r)?;

        let log_roll_hours = r.int("log.roll.hours", 168, Range::at_least(1))?;
        let log_roll_ms = r
            .opt_long("log.roll.ms", Range::at_least(1))?
            .unwrap_or(i64::from(log_roll_hours) * HOUR_MS)
            .unsigned_abs();

        let retention_hours = r.int("log.retention.hours", 168, Range::ANY)?;
        let retention_minutes = r.opt_int("log.retention.minutes", Range::ANY)?;
        let retention_ms = r.opt_long("log.retention.ms", Range::ANY)?;
        let log_retention_ms = retention_ms
            .or_else(|| retention_minutes.map(|minutes| i64::from(minutes) * MINUTE_MS))
            .unwrap_or(i64::from(retention_hours) * HOUR_MS);
        let log_retention_ms = (log_retention_ms >= 0).then_some(log_retention_ms);

        let flush_scheduler_interval_ms = r.ulong(
            "log.flush.scheduler.interval.ms",
            i64::MAX.unsigned_abs(),
            Range::at_least(0),
        )?;
        let flush_interval_ms = r
            .opt_long("log.flush.interval.ms", Range::at_least(0))?
            .map_or(flush_scheduler_interval_ms, i64::unsigned_abs);

        let zookeeper_connect = match r.raw("zookeeper.connect") {
            None => return Err(r.missing("zookeeper.connect")),
            Some(text) => ZkConnect::parse(text)
                .map_err(|err: AddressError| r.invalid("zookeeper.connect", err.reason))?,
        };
        let zookeeper_session_timeout_ms =
            r.uint("zookeeper.session.timeout.ms", 6000, Range::at_least(1))?;
        let zookeeper_connection_timeout_ms = r.uint(
            "zookeeper.connection.timeout.ms",
            zookeeper_session_timeout_ms,
            Range::at_least(1),
        )?;

        let log_cleanup_policy = match r.raw("log.cleanup.policy") {
            None => CleanupPolicy::default(),
            Some(value) => CleanupPolicy::from_names(
                &parse_list_of(value, CleanupPolicy::NAMES)
                    .map_err(|reason| r.invalid("log.cleanup.policy", reason))?,
            ),
        };
        let log_message_timestamp_type = match r.raw("log.message.timestamp.type") {
            None => TimestampType::CreateTime,
            Some(value) => TimestampType::from_name(
                parse_one_of(value, TimestampType::NAMES)
                    .map_err(|reason| r.invalid("log.message.timestamp.type", reason))?,
            ),
        };
        let compression_type = match r.raw("compression.type") {
            None => CompressionType::Producer,
            Some(value) => CompressionType::from_name(
                parse_one_of(value, CompressionType::NAMES)
                    .map_err(|reason| r.invalid("compression.type", reason))?,
            ),
        };
        let message_max_bytes = r.uint("message.max.bytes", 1_048_588, Range::at_least(0))?;
        let message_max_bytes = usize::try_from(message_max_bytes)
            .map_err(|_| r.invalid("message.max.bytes", "Value is too large for this machine"))?;

        let config = BrokerConfig {
            broker_id,
            broker_rack: r.non_blank("broker.rack")?,
            listeners,
            advertised_listeners,
            inter_broker_listener_name,
            log_dirs,
            num_partitions: r.int("num.partitions", 1, Range::at_least(1))?,
            default_replication_factor: r.int(
                "default.replication.factor",
                1,
                Range::at_least(1),
            )?,
            min_insync_replicas: r.uint("min.insync.replicas", 1, Range::at_least(1))?,
            log_segment_bytes: u64::from(r.uint(
                "log.segment.bytes",
                1 << 30,
                Range::at_least(14),
            )?),
            log_roll_ms,
            log_retention_ms,
            log_retention_bytes: unlimited_if_negative(r.long(
                "log.retention.bytes",
                -1,
                Range::ANY,
            )?),
            log_retention_check_interval_ms: r.ulong(
                "log.retention.check.interval.ms",
                300_000,
                Range::at_least(1),
            )?,
            log_index_interval_bytes: u64::from(r.uint(
                "log.index.interval.bytes",
                4096,
                Range::at_least(0),
            )?),
            log_index_size_max_bytes: u64::from(r.uint(
                "log.index.size.max.bytes",
                10 * 1024 * 1024,
                Range::at_least(4),
            )?),
            log_flush_interval_messages: unless_max(r.ulong(
                "log.flush.interval.messages",
                i64::MAX.unsigned_abs(),
                Range::at_least(1),
            )?),
            log_flush_interval_ms: unless_max(flush_interval_ms),
            log_flush_scheduler_interval_ms: unless_max(flush_scheduler_interval_ms),
            log_flush_offset_checkpoint_interval_ms: u64::from(r.uint(
                "log.flush.offset.checkpoint.interval.ms",
                60_000,
                Range::at_least(0),
            )?),
            log_segment_delete_delay_ms: r.ulong(
                "log.segment.delete.delay.ms",
                60_000,
                Range::at_least(0),
            )?,
            log_cleanup_policy,
            log_message_timestamp_type,
            compression_type,
            message_max_bytes,
            replica_lag_time_max_ms: r.ulong(
                "replica.lag.time.max.ms",
                30_000,
                Range::at_least(1),
            )?,
            replica_fetch_max_bytes: r.uint(
                "replica.fetch.max.bytes",
                1024 * 1024,
                Range::at_least(0),
            )?,
            replica_fetch_wait_max_ms: r.uint(
                "replica.fetch.wait.max.ms",
                500,
                Range::at_least(0),
            )?,
            replica_fetch_min_bytes: r.uint("replica.fetch.min.bytes", 1, Range::at_least(0))?,
            replica_fetch_backoff_ms: r.uint(
                "replica.fetch.backoff.ms",
                1000,
                Range::at_least(0),
            )?,
            num_replica_fetchers: r.uint("num.replica.fetchers", 1, Range::at_least(1))?,
            replica_high_watermark_checkpoint_interval_ms: r.ulong(
                "replica.high.watermark.checkpoint.interval.ms",
                5000,
                Range::at_least(1),
            )?,
            zookeeper_connect,
            zookeeper_connection_timeout_ms,
            zookeeper_session_timeout_ms,
            auto_create_topics_enable: r.boolean("auto.create.topics.enable", true)?,
            unclean_leader_election_enable: r.boolean("unclean.leader.election.enable", false)?,
            auto_leader_rebalance_enable: r.boolean("auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_seconds: r.ulong(
                "leader.imbalance.check.interval.seconds",
                300,
                Range::at_least(1),
            )?,
            leader_imbalance_per_broker_percentage: r.uint(
                "leader.imbalance.per.broker.percentage",
                10,
                Range::between(0, 100),
            )?,
            controlled_shutdown_enable: r.boolean("controlled.shutdown.enable", true)?,
            controlled_shutdown_max_retries: r.uint(
                "controlled.shutdown.max.retries",
                3,
                Range::at_least(0),
            )?,
            controlled_shutdown_retry_backoff_ms: r.ulong(
                "controlled.shutdown.retry.backoff.ms",
                5000,
                Range::at_least(0),
            )?,
            delete_topic_enable: r.boolean("delete.topic.enable", true)?,
            request_timeout_ms: r.uint("request.timeout.ms", 30_000, Range::at_least(1))?,
            warnings: broker_warnings(props),
        };
        Ok(config)
    }

    /// The keys this config reads into typed fields (each validated; a
    /// bad value is an error naming it).
    pub fn typed_keys() -> &'static [&'static str] {
        TYPED_KEYS
    }

    /// Whether this program knows `key` as a broker config (acting on it or
    /// knowingly not), so that it is not reported as unknown.
    pub fn is_known_key(key: &str) -> bool {
        TYPED_KEYS.contains(&key)
            || ACCEPTED_KEYS.iter().any(|(name, _)| *name == key)
            || ACCEPTED_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
    }

    /// The settings a topic with no overrides gets from this broker.
    pub fn topic_defaults(&self) -> TopicConfig {
        TopicConfig {
            cleanup_policy: self.log_cleanup_policy,
            compression_type: self.compression_type,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            segment_index_bytes: self.log_index_size_max_bytes,
            index_interval_bytes: self.log_index_interval_bytes,
            max_message_bytes: self.message_max_bytes,
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election_enable: self.unclean_leader_election_enable,
            message_timestamp_type: self.log_message_timestamp_type,
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms,
            file_delete_delay_ms: self.log_segment_delete_delay_ms,
        }
    }

    /// The listener to bind for `name` (as in [`BrokerConfig::listeners`]).
    pub fn listener(&self, name: &str) -> Option<&Endpoint> {
        self.listeners.iter().find(|l| l.listener_name == name)
    }

    /// The inter-broker listener's advertised endpoint, as configured
    /// (before [`BrokerConfig::advertised_endpoint`] resolves it). Always
    /// `Some` for a config from [`BrokerConfig::from_properties`].
    pub fn inter_broker_endpoint(&self) -> Option<&Endpoint> {
        self.advertised_listeners
            .iter()
            .find(|l| l.listener_name == self.inter_broker_listener_name)
    }

    /// What to register for listener `name` once it is bound on
    /// `bound_port`: an empty advertised host becomes [`local_hostname`]
    /// (as Kafka advertises the canonical host name), and port 0 becomes
    /// the bound port. `None` if `name` is not advertised.
    ///
    /// [`local_hostname`]: crate::local_hostname
    pub fn advertised_endpoint(&self, name: &str, bound_port: u16) -> Option<Endpoint> {
        let advertised = self
            .advertised_listeners
            .iter()
            .find(|l| l.listener_name == name)?;
        Some(Endpoint {
            listener_name: advertised.listener_name.clone(),
            host: advertised.advertised_host(),
            port: if advertised.port == 0 {
                bound_port
            } else {
                advertised.port
            },
        })
    }
}

/// Unknown keys, and `log.dir` when `log.dirs` overrules it: a copy of
/// `server.properties` edited as the quickstart says (adding `log.dir`)
/// would otherwise share the first broker's directory without a word.
fn broker_warnings(props: &Properties) -> Vec<ConfigWarning> {
    let mut warnings = crate::startup::unknown_key_warnings(props, BrokerConfig::is_known_key);
    if let (Some(dirs), Some(_)) = (props.get("log.dirs"), props.get("log.dir")) {
        warnings.push(ConfigWarning::Ignored {
            key: "log.dir".to_owned(),
            message: format!(
                "log.dirs is also set and takes precedence ({})",
                split_list(dirs).join(", ")
            ),
        });
    }
    warnings
}

fn read_log_dirs(r: &Reader<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    let (key, value) = match (r.raw("log.dirs"), r.raw("log.dir")) {
        (Some(dirs), _) => ("log.dirs", dirs),
        (None, Some(dir)) => ("log.dir", dir),
        (None, None) => return Ok(vec![PathBuf::from("/tmp/kafka-logs")]),
    };
    let dirs: Vec<PathBuf> = split_list(value).into_iter().map(PathBuf::from).collect();
    if dirs.is_empty() {
        return Err(r.invalid(key, "must name at least one directory"));
    }
    for (i, dir) in dirs.iter().enumerate() {
        if dirs[..i].contains(dir) {
            return Err(r.invalid(key, format!("duplicate log directory {}", dir.display())));
        }
    }
    Ok(dirs)
}

/// Resolves `listeners`, `advertised.listeners` and the inter-broker
/// listener with Kafka's precedence and consistency rules.
fn read_listeners(r: &Reader<'_>) -> Result<(Vec<Endpoint>, Vec<Endpoint>, String), ConfigError> {
    let protocol_map = read_protocol_map(r)?;
    let port = r.port("port", 9092)?;
    let host_name = r.string("host.name").unwrap_or_default();
    let advertised_port = r.opt_port("advertised.port")?;
    let advertised_host_name = r.string("advertised.host.name");

    let listeners = match r.raw("listeners") {
        Some(text) => parse_listener_list(r, "listeners", text, &protocol_map)?,
        None => vec![Endpoint {
            listener_name: "PLAINTEXT".to_owned(),
            host: host_name.clone(),
            port,
        }],
    };
    for (i, listener) in listeners.iter().enumerate() {
        let clash = listeners[..i]
            .iter()
            .find(|earlier| earlier.port == listener.port && listener.port != 0);
        if let Some(earlier) = clash {
            return Err(r.invalid(
                "listeners",
                format!(
                    "each listener must have a different port; {earlier} and {listener} share port {}",
                    listener.port
                ),
            ));
        }
    }

    let (advertised, advertised_key) = match r.raw("advertised.listeners") {
        Some(text) => (
            parse_listener_list(r, "advertised.listeners", text, &protocol_map)?,
            "advertised.listeners",
        ),
        None if advertised_host_name.is_some() || advertised_port.is_some() => (
            vec![Endpoint {
                listener_name: "PLAINTEXT".to_owned(),
                host: advertised_host_name.unwrap_or(host_name),
                port: advertised_port.unwrap_or(port),
            }],
            if r.raw("advertised.host.name").is_some() {
                "advertised.host.name"
            } else {
                "advertised.port"
            },
        ),
        None => (listeners.clone(), "listeners"),
    };
    for endpoint in &advertised {
        if endpoint.host == "0.0.0.0" {
            return Err(r.invalid(
                advertised_key,
                "cannot advertise the non-routable meta-address 0.0.0.0; set advertised.listeners to a routable host or IP address",
            ));
        }
        if !listeners
            .iter()
            .any(|l| l.listener_name == endpoint.listener_name)
        {
            return Err(r.invalid(
                advertised_key,
                format!(
                    "advertised listener {} is not one of the listeners ({})",
                    endpoint.listener_name,
                    names(&listeners)
                ),
            ));
        }
    }

    let inter_broker_listener_name = match (
        r.string("inter.broker.listener.name"),
        r.string("security.inter.broker.protocol"),
    ) {
        (Some(_), Some(_)) => {
            return Err(r.invalid(
                "inter.broker.listener.name",
                "only one of inter.broker.listener.name and security.inter.broker.protocol may be set",
            ));
        }
        (Some(name), None) => name.to_ascii_uppercase(),
        (None, Some(protocol)) => {
            let protocol = protocol.to_ascii_uppercase();
            if protocol != "PLAINTEXT" {
                return Err(r.invalid(
                    "security.inter.broker.protocol",
                    format!("security protocol {protocol} is not supported; only PLAINTEXT is"),
                ));
            }
            protocol
        }
        (None, None) => "PLAINTEXT".to_owned(),
    };
    if !advertised
        .iter()
        .any(|l| l.listener_name == inter_broker_listener_name)
    {
        let reason = format!(
            "inter.broker.listener.name must be a listener name defined in advertised.listeners; \
             they define {}",
            names(&advertised)
        );
        return Err(match r.raw("inter.broker.listener.name") {
            Some(_) => r.invalid("inter.broker.listener.name", reason),
            None => ConfigError::InvalidValue {
                key: "inter.broker.listener.name".to_owned(),
                value: format!("{inter_broker_listener_name} (the default)"),
                at: None,
                reason,
            },
        });
    }
    Ok((listeners, advertised, inter_broker_listener_name))
}

fn names(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| e.listener_name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_protocol_map(r: &Reader<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    const KEY: &str = "listener.security.protocol.map";
    let text = r.raw(KEY).unwrap_or(DEFAULT_SECURITY_PROTOCOL_MAP);
    let mut map: Vec<(String, String)> = Vec::new();
    for item in split_list(text) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| r.invalid(KEY, format!("{item} is not of the form NAME:PROTOCOL")))?;
        let name = name.trim().to_ascii_uppercase();
        let protocol = protocol.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(r.invalid(
                KEY,
                format!(
                    "unknown security protocol {protocol}; Kafka's are {}",
                    SECURITY_PROTOCOLS.join(", ")
                ),
            ));
        }
        if map.iter().any(|(existing, _)| *existing == name) {
            return Err(r.invalid(KEY, format!("listener name {name} is mapped twice")));
        }
        map.push((name, protocol));
    }
    Ok(map)
}

fn parse_listener_list(
    r: &Reader<'_>,
    key: &str,
    text: &str,
    protocol_map: &[(String, String)],
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for item in split_list(text) {
        let endpoint = parse_listener(item).map_err(|err| r.invalid(key, err.reason))?;
        let protocol = protocol_map
            .iter()
            .find(|(name, _)| *name == endpoint.listener_name)
            .map(|(_, protocol)| protocol.as_str())
            .ok_or_else(|| {
                r.invalid(
                    key,
                    format!(
                        "no security protocol defined for listener {} in listener.security.protocol.map",
                        endpoint.listener_name
                    ),
                )
            })?;
        if protocol != "PLAINTEXT" {
            return Err(r.invalid(
                key,
                format!(
                    "listener {} uses security protocol {protocol}, which is not supported; only PLAINTEXT is",
                    endpoint.listener_name
                ),
            ));
        }
        if endpoints
            .iter()
            .any(|e| e.listener_name == endpoint.listener_name)
        {
            return Err(r.invalid(
                key,
                format!(
                    "each listener must have a different name; {} appears twice",
                    endpoint.listener_name
                ),
            ));
        }
        endpoints.push(endpoint);
    }
    if endpoints.is_empty() {
        return Err(r.invalid(key, "must name at least one listener"));
    }
    Ok(endpoints)
}
