//! Typed client configurations under Kafka's own key names and defaults.
//!
//! Each config is a plain struct with public fields (set them directly in
//! code) and a [`ProducerConfig::set`]-style method taking Kafka's string
//! keys (what `--producer-property` and properties files give). An unknown
//! key is reported to the caller, who warns, as Kafka does; a bad value is an
//! error naming the key and the value.

use std::fmt;
use std::time::Duration;

use records::Compression;

use crate::error::ClientError;
use crate::partitioner::UnkeyedPartitioning;

/// One `host:port` of a server list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

impl ServerAddress {
    /// Parses `host:port` (IPv6 hosts in brackets: `[::1]:9092`).
    pub fn parse(text: &str) -> Result<ServerAddress, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, rest) = rest
                .split_once(']')
                .ok_or_else(|| format!("invalid address '{text}': missing ']'"))?;
            let port = rest
                .strip_prefix(':')
                .ok_or_else(|| format!("invalid address '{text}': expected host:port"))?;
            (host, port)
        } else {
            text.rsplit_once(':')
                .ok_or_else(|| format!("invalid address '{text}': expected host:port"))?
        };
        if host.is_empty() {
            return Err(format!("invalid address '{text}': empty host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("invalid address '{text}': bad port '{port}'"))?;
        Ok(ServerAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// A comma-separated list, as in `bootstrap.servers` or `--broker-list`.
    /// A ZooKeeper-style chroot suffix (`host:2181/kafka`) is ignored.
    pub fn parse_list(text: &str) -> Result<Vec<ServerAddress>, String> {
        let text = text
            .split_once('/')
            .map_or(text, |(servers, _chroot)| servers);
        let servers: Vec<ServerAddress> = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(ServerAddress::parse)
            .collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err("no server given".to_owned());
        }
        Ok(servers)
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{self}")
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Renders a server list as `a:1,b:2`.
pub(crate) fn display_list(servers: &[ServerAddress]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `acks`: how many replicas must have a record before it counts as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `0`: fire and forget; no offset is known.
    None,
    /// `1`: the leader appended it.
    Leader,
    /// `all` / `-1`: every in-sync replica has it (Kafka's default).
    #[default]
    All,
}

impl Acks {
    /// The value of the produce request's `acks` field.
    pub fn wire_value(self) -> i32 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" | "-1" => Ok(Acks::All),
            "1" => Ok(Acks::Leader),
            "0" => Ok(Acks::None),
            _ => Err("String must be one of: all, -1, 0, 1".to_owned()),
        }
    }
}

/// `auto.offset.reset`: where a consumer starts when it has no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    Earliest,
    /// Kafka's default.
    #[default]
    Latest,
    /// Fail instead of resetting.
    None,
}

impl std::str::FromStr for OffsetReset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "earliest" | "smallest" => Ok(OffsetReset::Earliest),
            "latest" | "largest" => Ok(OffsetReset::Latest),
            "none" => Ok(OffsetReset::None),
            _ => Err("String must be one of: latest, earliest, none".to_owned()),
        }
    }
}

/// Settings every client shares: where the cluster is and how patient to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// `bootstrap.servers`: brokers to ask for metadata first; entries that
    /// cannot be reached are skipped.
    pub bootstrap_servers: Vec<ServerAddress>,
    /// `client.id`
    pub client_id: String,
    /// `request.timeout.ms` (30000): how long to wait for any one answer.
    pub request_timeout_ms: u64,
    /// `socket.connection.setup.timeout.ms` (10000).
    pub connection_setup_timeout_ms: u64,
    /// `metadata.max.age.ms` (300000): refresh metadata at least this often.
    pub metadata_max_age_ms: u64,
    /// `retry.backoff.ms` (100): pause before the first retry of a failed
    /// request; each further retry of it doubles the pause (KIP-580).
    pub retry_backoff_ms: u64,
    /// `retry.backoff.max.ms` (1000): the longest pause between retries.
    pub retry_backoff_max_ms: u64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig {
            bootstrap_servers: Vec::new(),
            client_id: String::new(),
            request_timeout_ms: 30_000,
            connection_setup_timeout_ms: 10_000,
            metadata_max_age_ms: 300_000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1_000,
        }
    }
}

impl CommonConfig {
    fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        match key {
            "bootstrap.servers" | "metadata.broker.list" => {
                self.bootstrap_servers = ServerAddress::parse_list(value)
                    .map_err(|reason| invalid(key, value, reason))?;
            }
            "client.id" => self.client_id = value.to_owned(),
            "request.timeout.ms" => self.request_timeout_ms = parse_positive(key, value)?,
            "socket.connection.setup.timeout.ms" => {
                self.connection_setup_timeout_ms = parse_positive(key, value)?;
            }
            "metadata.max.age.ms" => self.metadata_max_age_ms = parse_positive(key, value)?,
            "retry.backoff.ms" => self.retry_backoff_ms = parse_number(key, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max_ms = parse_number(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn require_bootstrap(&self) -> Result<(), ClientError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ClientError::Config {
                key: "bootstrap.servers".into(),
                value: String::new(),
                reason: "Missing required configuration \"bootstrap.servers\" which has no default value.".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }

    pub(crate) fn retry_backoff_max(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_max_ms.max(self.retry_backoff_ms))
    }
}

/// The producer's configuration (Kafka's `ProducerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    pub common: CommonConfig,
    /// `acks` (all).
    pub acks: Acks,
    /// `batch.size` (16384): bytes per partition batch before it is sent.
    pub batch_size: usize,
    /// `linger.ms` (5, Kafka 4.0's default from KIP-1030; Kafka 3.x used 0):
    /// how long a batch that is not full waits for more records.
    pub linger_ms: u64,
    /// `compression.type` (none).
    pub compression_type: Compression,
    /// `retries` (2147483647): bounded in practice by `delivery.timeout.ms`.
    pub retries: u32,
    /// `delivery.timeout.ms` (120000): from `send` to success or failure.
    pub delivery_timeout_ms: u64,
    /// `max.block.ms` (60000): how long `send` may wait for metadata or
    /// buffer space.
    pub max_block_ms: u64,
    /// `buffer.memory` (33554432): bytes of records waiting to be sent.
    pub buffer_memory: usize,
    /// `max.in.flight.requests.per.connection` (5).
    pub max_in_flight_requests_per_connection: usize,
    /// `max.request.size` (1048576): the largest record, and the largest
    /// produce request.
    pub max_request_size: usize,
    /// `partitioner.class`: sticky (default) or round-robin for unkeyed records.
    pub partitioner: UnkeyedPartitioning,
    /// `partitioner.ignore.keys` (false): partition keyed records like unkeyed ones.
    pub partitioner_ignore_keys: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            common: CommonConfig::default(),
            acks: Acks::All,
            batch_size: 16_384,
            linger_ms: 5,
            compression_type: Compression::None,
            retries: i32::MAX as u32,
            delivery_timeout_ms: 120_000,
            max_block_ms: 60_000,
            buffer_memory: 33_554_432,
            max_in_flight_requests_per_connection: 5,
            max_request_size: 1_048_576,
            partitioner: UnkeyedPartitioning::Sticky,
            partitioner_ignore_keys: false,
        }
    }
}

impl ProducerConfig {
    /// A default configuration for the given `bootstrap.servers` list.
    pub fn new(bootstrap_servers: &str) -> Result<Self, ClientError> {
        let mut config = ProducerConfig::default();
        config.set("bootstrap.servers", bootstrap_servers)?;
        Ok(config)
    }

    /// Sets one property by Kafka's key. Returns `Ok(false)` for a key this
    /// client does not know (the caller should warn about it).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        let value = value.trim();
        if self.common.set(key, value)? {
            return Ok(true);
        }
        match key {
            "acks" | "request.required.acks" => {
                self.acks = value
                    .parse()
                    .map_err(|reason| invalid(key, value, reason))?;
            }
            "batch.size" => self.batch_size = parse_number(key, value)?,
            "linger.ms" => self.linger_ms = parse_number(key, value)?,
            "compression.type" | "compression.codec" => {
                self.compression_type = value
                    .parse()
                    .map_err(|reason| invalid(key, value, reason))?;
            }
            "retries" => self.retries = parse_number(key, value)?,
            "delivery.timeout.ms" => self.delivery_timeout_ms = parse_positive(key, value)?,
            "max.block.ms" => self.max_block_ms = parse_number(key, value)?,
            "buffer.memory" => self.buffer_memory = parse_positive(key, value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection = parse_positive(key, value)?;
            }
            "max.request.size" => self.max_request_size = parse_positive(key, value)?,
            "partitioner.class" => {
                self.partitioner = match value.rsplit('.').next().unwrap_or(value) {
                    "RoundRobinPartitioner" => UnkeyedPartitioning::RoundRobin,
                    "DefaultPartitioner" | "UniformStickyPartitioner" | "" => {
                        UnkeyedPartitioning::Sticky
                    }
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "only the built-in DefaultPartitioner, UniformStickyPartitioner and RoundRobinPartitioner are available",
                        ));
                    }
                };
            }
            "partitioner.ignore.keys" => self.partitioner_ignore_keys = parse_bool(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Builds a configuration from key/value pairs; unknown keys are logged
    /// as warnings and otherwise ignored, as Kafka does.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ClientError> {
        let mut config = ProducerConfig::default();
        for (key, value) in properties {
            if !config.set(key, value)? {
                warn_unknown(key);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the combinations Kafka checks.
    pub fn validate(&self) -> Result<(), ClientError> {
        self.common.require_bootstrap()?;
        let minimum = self.linger_ms + self.common.request_timeout_ms;
        if self.delivery_timeout_ms < minimum {
            return Err(ClientError::Config {
                key: "delivery.timeout.ms".into(),
                value: self.delivery_timeout_ms.to_string(),
                reason: format!(
                    "delivery.timeout.ms should be equal to or larger than linger.ms + request.timeout.ms ({minimum})"
                ),
            });
        }
        Ok(())
    }
}

/// The consumer's configuration (Kafka's `ConsumerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub common: CommonConfig,
    /// `fetch.min.bytes` (1): the broker waits for this much data...
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms` (500): ...or this long.
    pub fetch_max_wait_ms: i32,
    /// `fetch.max.bytes` (52428800): per fetch response.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (1048576): per partition in a response.
    pub max_partition_fetch_bytes: i32,
    /// `auto.offset.reset` (latest).
    pub auto_offset_reset: OffsetReset,
    /// `max.poll.records` (500).
    pub max_poll_records: usize,
    /// `check.crcs` (true): verify each fetched batch's CRC-32C.
    pub check_crcs: bool,
    /// `allow.auto.create.topics` (true): metadata requests may create topics.
    pub allow_auto_create_topics: bool,
    /// `default.api.timeout.ms` (60000): offsets and metadata lookups.
    pub default_api_timeout_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            common: CommonConfig::default(),
            fetch_min_bytes: 1,
            fetch_max_wait_ms: 500,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            auto_offset_reset: OffsetReset::Latest,
            max_poll_records: 500,
            check_crcs: true,
            allow_auto_create_topics: true,
            default_api_timeout_ms: 60_000,
        }
    }
}

impl ConsumerConfig {
    /// A default configuration for the given `bootstrap.servers` list.
    pub fn new(bootstrap_servers: &str) -> Result<Self, ClientError> {
        let mut config = ConsumerConfig::default();
        config.set("bootstrap.servers", bootstrap_servers)?;
        Ok(config)
    }

    /// Sets one property by Kafka's key; `Ok(false)` for an unknown key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        let value = value.trim();
        if self.common.set(key, value)? {
            return Ok(true);
        }
        match key {
            "fetch.min.bytes" => self.fetch_min_bytes = parse_number(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait_ms = parse_number(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_positive(key, value)?,
            "max.partition.fetch.bytes" => {
                self.max_partition_fetch_bytes = parse_positive(key, value)?
            }
            "auto.offset.reset" => {
                self.auto_offset_reset = value
                    .parse()
                    .map_err(|reason| invalid(key, value, reason))?;
            }
            "max.poll.records" => self.max_poll_records = parse_positive(key, value)?,
            "check.crcs" => self.check_crcs = parse_bool(key, value)?,
            "allow.auto.create.topics" => self.allow_auto_create_topics = parse_bool(key, value)?,
            "default.api.timeout.ms" => self.default_api_timeout_ms = parse_positive(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Builds a configuration from key/value pairs; unknown keys are warned about.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ClientError> {
        let mut config = ConsumerConfig::default();
        for (key, value) in properties {
            if !config.set(key, value)? {
                warn_unknown(key);
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        self.common.require_bootstrap()
    }
}

/// Where an [`Admin`](crate::Admin) client sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// Any broker (`--bootstrap-server`); the broker forwards to the coordinator.
    Brokers(Vec<ServerAddress>),
    /// The coordinator itself (`--zookeeper`, `zookeeper.connect`).
    Coordinator(Vec<ServerAddress>),
}

/// The admin client's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub target: AdminTarget,
    /// `request.timeout.ms` (30000).
    pub request_timeout_ms: u64,
    /// `socket.connection.setup.timeout.ms` (10000).
    pub connection_setup_timeout_ms: u64,
}

impl AdminConfig {
    /// Talk to brokers, given a `bootstrap.servers` list.
    pub fn brokers(bootstrap_servers: &str) -> Result<Self, ClientError> {
        let servers = ServerAddress::parse_list(bootstrap_servers)
            .map_err(|reason| invalid("bootstrap.servers", bootstrap_servers, reason))?;
        Ok(AdminConfig::with_target(AdminTarget::Brokers(servers)))
    }

    /// Talk to the coordinator, given a `zookeeper.connect` string.
    pub fn coordinator(zookeeper_connect: &str) -> Result<Self, ClientError> {
        let servers = ServerAddress::parse_list(zookeeper_connect)
            .map_err(|reason| invalid("zookeeper.connect", zookeeper_connect, reason))?;
        Ok(AdminConfig::with_target(AdminTarget::Coordinator(servers)))
    }

    fn with_target(target: AdminTarget) -> Self {
        AdminConfig {
            target,
            request_timeout_ms: 30_000,
            connection_setup_timeout_ms: 10_000,
        }
    }

    /// Sets one property by Kafka's key; `Ok(false)` for an unknown key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        let value = value.trim();
        match key {
            "request.timeout.ms" => self.request_timeout_ms = parse_positive(key, value)?,
            "socket.connection.setup.timeout.ms" => {
                self.connection_setup_timeout_ms = parse_positive(key, value)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn warn_unknown(key: &str) {
    tracing::warn!("The configuration '{key}' was supplied but isn't a known config.");
}

pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ClientError {
    ClientError::Config {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ClientError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            value,
            "Not a number of the expected type or out of range",
        )
    })
}

fn parse_positive<T: std::str::FromStr + Default + PartialOrd>(
    key: &str,
    value: &str,
) -> Result<T, ClientError> {
    let number: T = parse_number(key, value)?;
    if number <= T::default() {
        return Err(invalid(key, value, "Value must be at least 1"));
    }
    Ok(number)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ClientError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            key,
            value,
            "Expected value to be either true or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_hosts_ports_ipv6_and_chroot() {
        let list = ServerAddress::parse_list("localhost:9092, 10.0.0.1:9093,[::1]:9094").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].to_string(), "localhost:9092");
        assert_eq!(list[2].host, "::1");
        assert_eq!(list[2].to_string(), "[::1]:9094");
        let zk = ServerAddress::parse_list("zk1:2181,zk2:2181/kafka").unwrap();
        assert_eq!(display_list(&zk), "zk1:2181,zk2:2181");
        assert!(ServerAddress::parse_list("localhost").is_err());
        assert!(ServerAddress::parse_list("localhost:http").is_err());
        assert!(ServerAddress::parse_list("").is_err());
    }

    #[test]
    fn producer_defaults_are_kafkas() {
        let config = ProducerConfig::default();
        assert_eq!(config.acks, Acks::All);
        assert_eq!(config.batch_size, 16_384);
        assert_eq!(config.linger_ms, 5);
        assert_eq!(config.buffer_memory, 33_554_432);
        assert_eq!(config.max_in_flight_requests_per_connection, 5);
        assert_eq!(config.max_request_size, 1_048_576);
        assert_eq!(config.delivery_timeout_ms, 120_000);
        assert_eq!(config.common.request_timeout_ms, 30_000);
    }

    #[test]
    fn producer_properties_by_kafka_key() {
        let config = ProducerConfig::from_properties([
            ("bootstrap.servers", "localhost:9092"),
            ("acks", "1"),
            ("compression.type", "lz4"),
            ("linger.ms", "0"),
            (
                "partitioner.class",
                "org.apache.kafka.clients.producer.RoundRobinPartitioner",
            ),
            ("key.serializer", "ignored"),
        ])
        .unwrap();
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.compression_type, Compression::Lz4);
        assert_eq!(config.linger_ms, 0);
        assert_eq!(config.partitioner, UnkeyedPartitioning::RoundRobin);
        assert_eq!(config.common.bootstrap_servers[0].port, 9092);
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let mut config = ProducerConfig::default();
        let err = config.set("acks", "2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value 2 for configuration acks: String must be one of: all, -1, 0, 1"
        );
        let err = config.set("batch.size", "lots").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Invalid value lots for configuration batch.size")
        );
        assert!(config.set("compression.type", "brotli").is_err());
        assert!(!config.set("no.such.key", "1").unwrap());
    }

    #[test]
    fn missing_bootstrap_and_short_delivery_timeout_are_refused() {
        assert!(ProducerConfig::from_properties([]).is_err());
        let err = ProducerConfig::from_properties([
            ("bootstrap.servers", "h:1"),
            ("delivery.timeout.ms", "1000"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("linger.ms + request.timeout.ms"));
    }

    #[test]
    fn consumer_properties_by_kafka_key() {
        let config = ConsumerConfig::from_properties([
            ("bootstrap.servers", "h:1"),
            ("auto.offset.reset", "earliest"),
            ("check.crcs", "false"),
            ("max.poll.records", "10"),
        ])
        .unwrap();
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert!(!config.check_crcs);
        assert_eq!(config.max_poll_records, 10);
        assert_eq!(config.fetch_max_wait_ms, 500);
        assert!(
            ConsumerConfig::default()
                .set("auto.offset.reset", "middle")
                .is_err()
        );
    }
}
