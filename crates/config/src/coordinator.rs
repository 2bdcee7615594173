//! `zookeeper.properties`: the coordinator's typed, validated config, with
//! ZooKeeper's key names for the server (`dataDir`, `clientPort`,
//! `tickTime`, ...) and Kafka's for the controller it also is
//! (`unclean.leader.election.enable`, ...).
//!
//! Never touches the data directory or the network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{ConfigError, ConfigWarning};
use crate::properties::Properties;
use crate::value::{Kind, Range, Reader};

const TYPED_KEYS: &[&str] = &[
    "dataDir",
    "dataLogDir",
    "clientPort",
    "clientPortAddress",
    "tickTime",
    "maxClientCnxns",
    "minSessionTimeout",
    "maxSessionTimeout",
    "initLimit",
    "syncLimit",
    "autopurge.snapRetainCount",
    "autopurge.purgeInterval",
    "snapCount",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage",
    "delete.topic.enable",
    "broker.session.grace.ms",
];

/// ZooKeeper server keys accepted without effect (the admin server, quorum
/// tuning, TLS, ...), type-checked where ZooKeeper's type is clear.
const ACCEPTED_KEYS: &[(&str, Kind)] = &[
    ("4lw.commands.whitelist", Kind::Str),
    ("admin.commandURL", Kind::Str),
    ("admin.enableServer", Kind::Bool),
    ("admin.idleTimeout", Kind::Int(Range::ANY)),
    ("admin.serverAddress", Kind::Str),
    ("admin.serverPort", Kind::Int(Range::between(0, 65535))),
    ("audit.enable", Kind::Bool),
    ("clientPortListenBacklog", Kind::Int(Range::ANY)),
    ("cnxTimeout", Kind::Int(Range::ANY)),
    ("commitLogCount", Kind::Int(Range::ANY)),
    ("connectToLearnerMasterLimit", Kind::Int(Range::ANY)),
    ("dynamicConfigFile", Kind::Str),
    ("electionAlg", Kind::Int(Range::ANY)),
    ("forceSync", Kind::OneOf(&["yes", "no"])),
    ("fsync.warningthresholdms", Kind::Long(Range::ANY)),
    ("globalOutstandingLimit", Kind::Int(Range::ANY)),
    ("jute.maxbuffer", Kind::Int(Range::ANY)),
    ("leaderServes", Kind::OneOf(&["yes", "no"])),
    ("localSessionsEnabled", Kind::Bool),
    ("localSessionsUpgradingEnabled", Kind::Bool),
    ("maxCnxns", Kind::Int(Range::at_least(0))),
    ("peerType", Kind::OneOf(&["observer", "participant"])),
    ("portUnification", Kind::Bool),
    ("preAllocSize", Kind::Long(Range::ANY)),
    ("quorumListenOnAllIPs", Kind::Bool),
    ("reconfigEnabled", Kind::Bool),
    ("secureClientPort", Kind::Int(Range::between(0, 65535))),
    ("secureClientPortAddress", Kind::Str),
    ("serverCnxnFactory", Kind::Str),
    ("skipACL", Kind::OneOf(&["yes", "no"])),
    ("snapSizeLimitInKb", Kind::Long(Range::ANY)),
    ("snapshot.trust.empty", Kind::Bool),
    ("sslQuorum", Kind::Bool),
    ("standaloneEnabled", Kind::Bool),
    ("syncEnabled", Kind::Bool),
];

/// Families of ZooKeeper keys accepted without checks.
const ACCEPTED_PREFIXES: &[&str] = &[
    "authProvider.",
    "metricsProvider.",
    "ssl.",
    "zookeeper.",
    "group.",
    "weight.",
];

/// The coordinator's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorConfig {
    /// `dataDir`: the metadata log and its snapshots; required.
    pub data_dir: PathBuf,
    /// `dataLogDir`, else `dataDir`: where the metadata log itself goes.
    pub data_log_dir: PathBuf,
    /// `clientPort` (2181); 0 means any free port.
    pub client_port: u16,
    /// `clientPortAddress`: the address to bind; `None` binds all
    /// interfaces.
    pub client_port_address: Option<String>,
    /// `tickTime` (3000): ZooKeeper's base time unit.
    pub tick_time_ms: u32,
    /// `maxClientCnxns` (60, ZooKeeper's default; Kafka's file sets 0):
    /// connections from one IP address at a time; 0 means no limit.
    pub max_client_cnxns: u32,
    /// `minSessionTimeout`, default two ticks: the shortest session granted.
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout`, default twenty ticks: the longest granted.
    pub max_session_timeout_ms: u32,
    /// `initLimit`, in ticks; only meaningful with a quorum.
    pub init_limit: Option<u32>,
    /// `syncLimit`, in ticks; only meaningful with a quorum.
    pub sync_limit: Option<u32>,
    /// `autopurge.snapRetainCount` (3, at least 3): snapshots kept.
    pub autopurge_snap_retain_count: u32,
    /// `autopurge.purgeInterval` in hours; 0 (the default) never purges.
    pub autopurge_purge_interval_hours: u32,
    /// `snapCount` (100000): records appended between snapshots.
    pub snap_count: u64,
    /// `server.N` lines, by N, as written. Only standalone mode runs yet,
    /// so they are kept for the future and warned about.
    pub servers: BTreeMap<u64, String>,
    /// `unclean.leader.election.enable` (false): the default for topics that
    /// do not set it.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (true).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` (300).
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage` (10).
    pub leader_imbalance_per_broker_percentage: u32,
    /// `delete.topic.enable` (true).
    pub delete_topic_enable: bool,
    /// `broker.session.grace.ms` (500): how long a broker whose heartbeat
    /// stream broke keeps its session while it reconnects.
    pub broker_session_grace_ms: u64,
    /// Unknown keys and `server.N` lines, for the start-up log.
    pub warnings: Vec<ConfigWarning>,
}

impl CoordinatorConfig {
    /// Reads and validates a coordinator config. `dataDir` is required;
    /// a bad value is an error naming the key, value and line.
    pub fn from_properties(props: &Properties) -> Result<CoordinatorConfig, ConfigError> {
        let r = Reader::new(props);
        for (key, kind) in ACCEPTED_KEYS {
            r.check(key, *kind)?;
        }
        let data_dir = r
            .non_blank("dataDir")?
            .map(PathBuf::from)
            .ok_or_else(|| r.missing("dataDir"))?;
        let data_log_dir = r
            .non_blank("dataLogDir")?
            .map_or_else(|| data_dir.clone(), PathBuf::from);
        let tick_time_ms = r.uint("tickTime", 3000, Range::at_least(1))?;
        let min_session_timeout_ms = r.uint(
            "minSessionTimeout",
            tick_time_ms.saturating_mul(2),
            Range::at_least(1),
        )?;
        let max_session_timeout_ms = r.uint(
            "maxSessionTimeout",
            tick_time_ms.saturating_mul(20),
            Range::at_least(1),
        )?;
        if min_session_timeout_ms > max_session_timeout_ms {
            let key = if props.contains_key("minSessionTimeout") {
                "minSessionTimeout"
            } else {
                "maxSessionTimeout"
            };
            return Err(ConfigError::InvalidValue {
                key: key.to_owned(),
                value: props.get(key).unwrap_or_default().to_owned(),
                at: props.location(key).map(Box::new),
                reason: format!(
                    "minSessionTimeout ({min_session_timeout_ms}) must not be larger than \
                     maxSessionTimeout ({max_session_timeout_ms})"
                ),
            });
        }

        let mut servers = BTreeMap::new();
        let mut warnings = Vec::new();
        for (key, value) in props.iter() {
            let Some(id) = key.strip_prefix("server.") else {
                continue;
            };
            let id: u64 = id.parse().map_err(|_| {
                r.invalid(key, format!("{id} in {key} is not a server id (a number)"))
            })?;
            servers.insert(id, value.trim().to_owned());
            warnings.push(ConfigWarning::Ignored {
                key: key.to_owned(),
                message: "only standalone mode is supported yet; this coordinator runs alone"
                    .to_owned(),
            });
        }
        let mut unknown =
            crate::startup::unknown_key_warnings(props, CoordinatorConfig::is_known_key);
        unknown.append(&mut warnings);

        Ok(CoordinatorConfig {
            data_dir,
            data_log_dir,
            client_port: r.port("clientPort", 2181)?,
            client_port_address: r.non_blank("clientPortAddress")?,
            tick_time_ms,
            max_client_cnxns: r.uint("maxClientCnxns", 60, Range::at_least(0))?,
            min_session_timeout_ms,
            max_session_timeout_ms,
            init_limit: r
                .opt_int("initLimit", Range::at_least(1))?
                .map(i32::unsigned_abs),
            sync_limit: r
                .opt_int("syncLimit", Range::at_least(1))?
                .map(i32::unsigned_abs),
            autopurge_snap_retain_count: r.uint(
                "autopurge.snapRetainCount",
                3,
                Range::at_least(3),
            )?,
            autopurge_purge_interval_hours: r.uint(
                "autopurge.purgeInterval",
                0,
                Range::at_least(0),
            )?,
            snap_count: r.ulong("snapCount", 100_000, Range::at_least(2))?,
            servers,
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
            delete_topic_enable: r.boolean("delete.topic.enable", true)?,
            broker_session_grace_ms: r.ulong("broker.session.grace.ms", 500, Range::at_least(0))?,
            warnings: unknown,
        })
    }

    /// The keys this config reads into typed fields (each validated; a
    /// bad value is an error naming it).
    pub fn typed_keys() -> &'static [&'static str] {
        TYPED_KEYS
    }

    /// Whether this program knows `key` as a coordinator config.
    pub fn is_known_key(key: &str) -> bool {
        TYPED_KEYS.contains(&key)
            || ACCEPTED_KEYS.iter().any(|(name, _)| *name == key)
            || ACCEPTED_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
            || key.starts_with("server.")
    }

    /// The address to bind: `clientPortAddress` (all interfaces when unset)
    /// and `clientPort`.
    pub fn bind_address(&self) -> String {
        crate::address::HostPort {
            host: self
                .client_port_address
                .clone()
                .unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: self.client_port,
        }
        .to_string()
    }
}
