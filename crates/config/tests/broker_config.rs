//! `BrokerConfig`: every default, Kafka's precedence rules, and the shape of
//! every error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::{
    BrokerConfig, CleanupPolicy, CompressionType, ConfigError, ConfigWarning, Endpoint, Properties,
    TimestampType, local_hostname,
};

const BASE: &str = "broker.id=0\nzookeeper.connect=localhost:2181\n";

fn props(extra: &str) -> Properties {
    Properties::parse(&format!("{BASE}{extra}"), "config/server.properties").unwrap()
}

fn config(extra: &str) -> BrokerConfig {
    BrokerConfig::from_properties(&props(extra)).unwrap()
}

fn error(extra: &str) -> String {
    BrokerConfig::from_properties(&props(extra))
        .unwrap_err()
        .to_string()
}

fn endpoint(name: &str, host: &str, port: u16) -> Endpoint {
    Endpoint {
        listener_name: name.to_owned(),
        host: host.to_owned(),
        port,
    }
}

#[test]
fn defaults_are_kafkas() {
    let c = config("");
    assert_eq!(c.broker_id, 0);
    assert_eq!(c.broker_rack, None);
    assert_eq!(c.listeners, vec![endpoint("PLAINTEXT", "", 9092)]);
    assert_eq!(c.advertised_listeners, c.listeners);
    assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
    assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kafka-logs")]);
    assert_eq!(c.num_partitions, 1);
    assert_eq!(c.default_replication_factor, 1);
    assert_eq!(c.min_insync_replicas, 1);
    assert_eq!(c.log_segment_bytes, 1 << 30);
    assert_eq!(c.log_roll_ms, 168 * 3_600_000);
    assert_eq!(c.log_retention_ms, Some(168 * 3_600_000));
    assert_eq!(c.log_retention_bytes, None);
    assert_eq!(c.log_retention_check_interval_ms, 300_000);
    assert_eq!(c.log_index_interval_bytes, 4096);
    assert_eq!(c.log_index_size_max_bytes, 10 * 1024 * 1024);
    assert_eq!(c.log_flush_interval_messages, None);
    assert_eq!(c.log_flush_interval_ms, None);
    assert_eq!(c.log_flush_scheduler_interval_ms, None);
    assert_eq!(c.log_flush_offset_checkpoint_interval_ms, 60_000);
    assert_eq!(c.log_segment_delete_delay_ms, 60_000);
    assert_eq!(c.log_cleanup_policy, CleanupPolicy::default());
    assert_eq!(c.log_message_timestamp_type, TimestampType::CreateTime);
    assert_eq!(c.compression_type, CompressionType::Producer);
    assert_eq!(c.message_max_bytes, 1_048_588);
    assert_eq!(c.replica_lag_time_max_ms, 30_000);
    assert_eq!(c.replica_fetch_max_bytes, 1_048_576);
    assert_eq!(c.replica_fetch_wait_max_ms, 500);
    assert_eq!(c.replica_fetch_min_bytes, 1);
    assert_eq!(c.replica_fetch_backoff_ms, 1000);
    assert_eq!(c.num_replica_fetchers, 1);
    assert_eq!(c.replica_high_watermark_checkpoint_interval_ms, 5000);
    assert_eq!(c.zookeeper_connect.to_string(), "localhost:2181");
    assert_eq!(c.zookeeper_connection_timeout_ms, 6000);
    assert_eq!(c.zookeeper_session_timeout_ms, 6000);
    assert!(c.auto_create_topics_enable);
    assert!(!c.unclean_leader_election_enable);
    assert!(c.auto_leader_rebalance_enable);
    assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
    assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
    assert!(c.controlled_shutdown_enable);
    assert_eq!(c.controlled_shutdown_max_retries, 3);
    assert_eq!(c.controlled_shutdown_retry_backoff_ms, 5000);
    assert!(c.delete_topic_enable);
    assert_eq!(c.request_timeout_ms, 30_000);
    assert_eq!(c.warnings, vec![]);
}

#[test]
fn every_typed_key_is_read() {
    let c = config(
        "broker.rack=r1\nnum.partitions=3\ndefault.replication.factor=3\nmin.insync.replicas=2\n\
         log.segment.bytes=1048576\nlog.retention.bytes=1000000\nlog.retention.check.interval.ms=1000\n\
         log.index.interval.bytes=1024\nlog.index.size.max.bytes=4096\nlog.flush.interval.messages=5\n\
         log.flush.interval.ms=100\nlog.flush.scheduler.interval.ms=50\n\
         log.flush.offset.checkpoint.interval.ms=10\nlog.segment.delete.delay.ms=0\n\
         log.cleanup.policy=compact,delete\nlog.message.timestamp.type=LogAppendTime\n\
         compression.type=zstd\nmessage.max.bytes=2000000\nreplica.lag.time.max.ms=10000\n\
         replica.fetch.max.bytes=500\nreplica.fetch.wait.max.ms=100\nreplica.fetch.min.bytes=10\n\
         replica.fetch.backoff.ms=20\nnum.replica.fetchers=2\n\
         replica.high.watermark.checkpoint.interval.ms=100\nzookeeper.session.timeout.ms=2000\n\
         auto.create.topics.enable=false\nunclean.leader.election.enable=TRUE\n\
         auto.leader.rebalance.enable=false\nleader.imbalance.check.interval.seconds=5\n\
         leader.imbalance.per.broker.percentage=20\ncontrolled.shutdown.enable=false\n\
         controlled.shutdown.max.retries=0\ncontrolled.shutdown.retry.backoff.ms=10\n\
         delete.topic.enable=false\nrequest.timeout.ms=1000\n",
    );
    assert_eq!(c.broker_rack.as_deref(), Some("r1"));
    assert_eq!(c.num_partitions, 3);
    assert_eq!(c.default_replication_factor, 3);
    assert_eq!(c.min_insync_replicas, 2);
    assert_eq!(c.log_segment_bytes, 1_048_576);
    assert_eq!(c.log_retention_bytes, Some(1_000_000));
    assert_eq!(c.log_retention_check_interval_ms, 1000);
    assert_eq!(c.log_index_interval_bytes, 1024);
    assert_eq!(c.log_index_size_max_bytes, 4096);
    assert_eq!(c.log_flush_interval_messages, Some(5));
    assert_eq!(c.log_flush_interval_ms, Some(100));
    assert_eq!(c.log_flush_scheduler_interval_ms, Some(50));
    assert_eq!(c.log_flush_offset_checkpoint_interval_ms, 10);
    assert_eq!(c.log_segment_delete_delay_ms, 0);
    assert_eq!(
        c.log_cleanup_policy,
        CleanupPolicy {
            delete: true,
            compact: true
        }
    );
    assert_eq!(c.log_message_timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(c.compression_type, CompressionType::Zstd);
    assert_eq!(c.message_max_bytes, 2_000_000);
    assert_eq!(c.replica_lag_time_max_ms, 10_000);
    assert_eq!(c.replica_fetch_max_bytes, 500);
    assert_eq!(c.replica_fetch_wait_max_ms, 100);
    assert_eq!(c.replica_fetch_min_bytes, 10);
    assert_eq!(c.replica_fetch_backoff_ms, 20);
    assert_eq!(c.num_replica_fetchers, 2);
    assert_eq!(c.replica_high_watermark_checkpoint_interval_ms, 100);
    assert_eq!(c.zookeeper_session_timeout_ms, 2000);
    // The connection timeout follows the session timeout unless set.
    assert_eq!(c.zookeeper_connection_timeout_ms, 2000);
    assert!(!c.auto_create_topics_enable);
    assert!(c.unclean_leader_election_enable);
    assert!(!c.auto_leader_rebalance_enable);
    assert_eq!(c.leader_imbalance_check_interval_seconds, 5);
    assert_eq!(c.leader_imbalance_per_broker_percentage, 20);
    assert!(!c.controlled_shutdown_enable);
    assert_eq!(c.controlled_shutdown_max_retries, 0);
    assert_eq!(c.controlled_shutdown_retry_backoff_ms, 10);
    assert!(!c.delete_topic_enable);
    assert_eq!(c.request_timeout_ms, 1000);
    assert_eq!(c.warnings, vec![]);

    let topic = c.topic_defaults();
    assert_eq!(topic.segment_bytes, 1_048_576);
    assert_eq!(topic.segment_index_bytes, 4096);
    assert_eq!(topic.index_interval_bytes, 1024);
    assert_eq!(topic.retention_bytes, Some(1_000_000));
    assert_eq!(topic.max_message_bytes, 2_000_000);
    assert_eq!(topic.min_insync_replicas, 2);
    assert!(topic.unclean_leader_election_enable);
    assert_eq!(topic.message_timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(topic.flush_messages, Some(5));
    assert_eq!(topic.flush_ms, Some(100));
    assert_eq!(topic.file_delete_delay_ms, 0);
    assert_eq!(topic.compression_type, CompressionType::Zstd);

    let overridden = topic
        .with_overrides(&BTreeMap::from([(
            "min.insync.replicas".to_owned(),
            "1".to_owned(),
        )]))
        .unwrap();
    assert_eq!(overridden.min_insync_replicas, 1);
    assert_eq!(overridden.segment_bytes, 1_048_576);
}

#[test]
fn retention_precedence_is_ms_then_minutes_then_hours() {
    assert_eq!(
        config("log.retention.hours=1\n").log_retention_ms,
        Some(3_600_000)
    );
    assert_eq!(
        config("log.retention.hours=1\nlog.retention.minutes=2\n").log_retention_ms,
        Some(120_000)
    );
    assert_eq!(
        config("log.retention.hours=1\nlog.retention.minutes=2\nlog.retention.ms=3\n")
            .log_retention_ms,
        Some(3)
    );
    assert_eq!(config("log.retention.ms=-1\n").log_retention_ms, None);
    assert_eq!(config("log.retention.minutes=-1\n").log_retention_ms, None);
    assert_eq!(config("log.retention.hours=-1\n").log_retention_ms, None);
    assert_eq!(config("log.retention.ms=0\n").log_retention_ms, Some(0));
    // Unused ones are still validated, as Kafka's ConfigDef does.
    assert_eq!(
        error("log.retention.hours=x\nlog.retention.ms=3\n"),
        "Invalid value x for configuration log.retention.hours in config/server.properties \
         (line 3): Not a number of type INT"
    );
    assert_eq!(config("log.retention.bytes=-1\n").log_retention_bytes, None);
}

#[test]
fn roll_and_flush_precedence() {
    assert_eq!(config("log.roll.hours=1\n").log_roll_ms, 3_600_000);
    assert_eq!(config("log.roll.hours=1\nlog.roll.ms=5\n").log_roll_ms, 5);
    assert_eq!(
        config("log.flush.scheduler.interval.ms=2000\n").log_flush_interval_ms,
        Some(2000)
    );
    assert_eq!(
        config("log.flush.scheduler.interval.ms=2000\nlog.flush.interval.ms=10\n")
            .log_flush_interval_ms,
        Some(10)
    );
    assert_eq!(
        config("zookeeper.session.timeout.ms=7000\nzookeeper.connection.timeout.ms=100\n")
            .zookeeper_connection_timeout_ms,
        100
    );
}

#[test]
fn listeners_win_over_port_and_host_name() {
    let c = config("port=1\nhost.name=ignored\nlisteners=PLAINTEXT://127.0.0.1:0\n");
    assert_eq!(c.listeners, vec![endpoint("PLAINTEXT", "127.0.0.1", 0)]);
    assert_eq!(c.advertised_listeners, c.listeners);
    assert_eq!(c.listeners[0].bind_address(), "127.0.0.1:0");

    let c = config("port=9093\nhost.name=broker1.example\n");
    assert_eq!(
        c.listeners,
        vec![endpoint("PLAINTEXT", "broker1.example", 9093)]
    );
    assert_eq!(c.listener("PLAINTEXT"), Some(&c.listeners[0]));
    assert_eq!(c.listener("OTHER"), None);
}

#[test]
fn advertised_falls_back_as_in_kafka() {
    // advertised.host.name alone: its host, the port of `port`.
    let c = config("port=9093\nadvertised.host.name=public.example\n");
    assert_eq!(c.listeners, vec![endpoint("PLAINTEXT", "", 9093)]);
    assert_eq!(
        c.advertised_listeners,
        vec![endpoint("PLAINTEXT", "public.example", 9093)]
    );
    // advertised.port alone: host.name's host.
    let c = config("host.name=h\nadvertised.port=19092\n");
    assert_eq!(
        c.advertised_listeners,
        vec![endpoint("PLAINTEXT", "h", 19092)]
    );
    // advertised.listeners wins over both.
    let c = config(
        "advertised.host.name=x\nadvertised.port=1\nadvertised.listeners=PLAINTEXT://adv:2\n",
    );
    assert_eq!(
        c.advertised_listeners,
        vec![endpoint("PLAINTEXT", "adv", 2)]
    );
    assert_eq!(
        c.inter_broker_endpoint(),
        Some(&endpoint("PLAINTEXT", "adv", 2))
    );
}

#[test]
fn advertised_endpoint_resolves_empty_host_and_port_zero() {
    let c = config("listeners=PLAINTEXT://:0\n");
    assert_eq!(
        c.advertised_endpoint("PLAINTEXT", 40123),
        Some(endpoint("PLAINTEXT", &local_hostname(), 40123))
    );
    let c = config("listeners=PLAINTEXT://127.0.0.1:9092\n");
    assert_eq!(
        c.advertised_endpoint("PLAINTEXT", 9092),
        Some(endpoint("PLAINTEXT", "127.0.0.1", 9092))
    );
    assert_eq!(c.advertised_endpoint("INTERNAL", 9092), None);
}

#[test]
fn custom_listener_names() {
    let c = config(
        "listeners=INTERNAL://127.0.0.1:0,external://:9092\n\
         advertised.listeners=INTERNAL://127.0.0.1:0,EXTERNAL://kafka.example:9092\n\
         listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:plaintext\n\
         inter.broker.listener.name=internal\n",
    );
    assert_eq!(c.listeners[1], endpoint("EXTERNAL", "", 9092));
    assert_eq!(c.inter_broker_listener_name, "INTERNAL");
    assert_eq!(
        c.inter_broker_endpoint(),
        Some(&endpoint("INTERNAL", "127.0.0.1", 0))
    );
}

#[test]
fn listener_errors() {
    let cases = [
        (
            "listeners=SSL://:9093\n",
            "Invalid value SSL://:9093 for configuration listeners in config/server.properties \
             (line 3): listener SSL uses security protocol SSL, which is not supported; only \
             PLAINTEXT is",
        ),
        (
            "listeners=INTERNAL://:9093\n",
            "Invalid value INTERNAL://:9093 for configuration listeners in \
             config/server.properties (line 3): no security protocol defined for listener \
             INTERNAL in listener.security.protocol.map",
        ),
        (
            "listeners=localhost:9092\n",
            "Invalid value localhost:9092 for configuration listeners in \
             config/server.properties (line 3): unable to parse localhost:9092 to a listener: \
             expected NAME://host:port",
        ),
        (
            "listeners=PLAINTEXT://:9092,PLAINTEXT://:9093\n",
            "Invalid value PLAINTEXT://:9092,PLAINTEXT://:9093 for configuration listeners in \
             config/server.properties (line 3): each listener must have a different name; \
             PLAINTEXT appears twice",
        ),
        (
            "listeners=A://:9092,B://:9092\nlistener.security.protocol.map=A:PLAINTEXT,B:PLAINTEXT\n\
             inter.broker.listener.name=A\n",
            "Invalid value A://:9092,B://:9092 for configuration listeners in \
             config/server.properties (line 3): each listener must have a different port; \
             A://:9092 and B://:9092 share port 9092",
        ),
        (
            "listeners=PLAINTEXT://0.0.0.0:9092\n",
            "Invalid value PLAINTEXT://0.0.0.0:9092 for configuration listeners in \
             config/server.properties (line 3): cannot advertise the non-routable meta-address \
             0.0.0.0; set advertised.listeners to a routable host or IP address",
        ),
        (
            "advertised.listeners=OTHER://h:1\nlistener.security.protocol.map=OTHER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n",
            "Invalid value OTHER://h:1 for configuration advertised.listeners in \
             config/server.properties (line 3): advertised listener OTHER is not one of the \
             listeners (PLAINTEXT)",
        ),
        (
            "listeners=INTERNAL://:9092\nlistener.security.protocol.map=INTERNAL:PLAINTEXT\n",
            "Invalid value PLAINTEXT (the default) for configuration inter.broker.listener.name: \
             inter.broker.listener.name must be a listener name defined in \
             advertised.listeners; they define INTERNAL",
        ),
        (
            "inter.broker.listener.name=NOPE\n",
            "Invalid value NOPE for configuration inter.broker.listener.name in \
             config/server.properties (line 3): inter.broker.listener.name must be a listener \
             name defined in advertised.listeners; they define PLAINTEXT",
        ),
        (
            "security.inter.broker.protocol=SSL\n",
            "Invalid value SSL for configuration security.inter.broker.protocol in \
             config/server.properties (line 3): security protocol SSL is not supported; only \
             PLAINTEXT is",
        ),
        (
            "listener.security.protocol.map=PLAINTEXT:TLS\n",
            "Invalid value PLAINTEXT:TLS for configuration listener.security.protocol.map in \
             config/server.properties (line 3): unknown security protocol TLS; Kafka's are \
             PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            "listeners=PLAINTEXT://:99999\n",
            "Invalid value PLAINTEXT://:99999 for configuration listeners in \
             config/server.properties (line 3): invalid port 99999: must be a number from 0 to \
             65535",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(extra), expected, "for {extra:?}");
    }
    // security.inter.broker.protocol=PLAINTEXT is fine on its own.
    assert_eq!(
        config("security.inter.broker.protocol=plaintext\n").inter_broker_listener_name,
        "PLAINTEXT"
    );
}

#[test]
fn log_dirs_wins_over_log_dir() {
    let c = config("log.dir=/a\n");
    assert_eq!(c.log_dirs, vec![PathBuf::from("/a")]);
    assert_eq!(c.warnings, vec![]);

    let c = config("log.dirs= /b , /c ,\nlog.dir=/a\n");
    assert_eq!(c.log_dirs, vec![PathBuf::from("/b"), PathBuf::from("/c")]);
    assert_eq!(
        c.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["Property log.dir is ignored: log.dirs is also set and takes precedence (/b, /c)"]
    );

    assert_eq!(
        error("log.dirs= , \n"),
        "Invalid value ,  for configuration log.dirs in config/server.properties (line 3): \
         must name at least one directory"
    );
    assert_eq!(
        error("log.dirs=/a,/a\n"),
        "Invalid value /a,/a for configuration log.dirs in config/server.properties (line 3): \
         duplicate log directory /a"
    );
}

#[test]
fn required_keys() {
    let p = Properties::parse(
        "zookeeper.connect=localhost:2181\n",
        "config/server.properties",
    )
    .unwrap();
    let err = BrokerConfig::from_properties(&p).unwrap_err();
    assert!(matches!(&err, ConfigError::Missing { key, .. } if key == "broker.id"));
    assert_eq!(
        err.to_string(),
        "Missing required configuration broker.id which has no default value in \
         config/server.properties"
    );
    let p = Properties::parse("broker.id=1\n", "config/server.properties").unwrap();
    assert_eq!(
        BrokerConfig::from_properties(&p).unwrap_err().to_string(),
        "Missing required configuration zookeeper.connect which has no default value in \
         config/server.properties"
    );
}

#[test]
fn bad_values_name_key_value_file_and_line() {
    let cases = [
        ("port=abc\n", "port", "abc", "Not a number of type INT"),
        (
            "port=65536\n",
            "port",
            "65536",
            "Value must be no more than 65535",
        ),
        ("port=-1\n", "port", "-1", "Value must be at least 0"),
        (
            "advertised.port=70000\n",
            "advertised.port",
            "70000",
            "Value must be no more than 65535",
        ),
        (
            "broker.id=-1\n",
            "broker.id",
            "-1",
            "Value must be at least 0",
        ),
        (
            "num.partitions=0\n",
            "num.partitions",
            "0",
            "Value must be at least 1",
        ),
        (
            "default.replication.factor=0\n",
            "default.replication.factor",
            "0",
            "Value must be at least 1",
        ),
        (
            "min.insync.replicas=0\n",
            "min.insync.replicas",
            "0",
            "Value must be at least 1",
        ),
        (
            "log.segment.bytes=-1\n",
            "log.segment.bytes",
            "-1",
            "Value must be at least 14",
        ),
        (
            "log.segment.bytes=4294967296\n",
            "log.segment.bytes",
            "4294967296",
            "Not a number of type INT",
        ),
        (
            "log.roll.hours=0\n",
            "log.roll.hours",
            "0",
            "Value must be at least 1",
        ),
        (
            "log.roll.ms=0\n",
            "log.roll.ms",
            "0",
            "Value must be at least 1",
        ),
        (
            "log.retention.ms=1h\n",
            "log.retention.ms",
            "1h",
            "Not a number of type LONG",
        ),
        (
            "log.retention.check.interval.ms=0\n",
            "log.retention.check.interval.ms",
            "0",
            "Value must be at least 1",
        ),
        (
            "log.index.interval.bytes=-1\n",
            "log.index.interval.bytes",
            "-1",
            "Value must be at least 0",
        ),
        (
            "log.index.size.max.bytes=3\n",
            "log.index.size.max.bytes",
            "3",
            "Value must be at least 4",
        ),
        (
            "log.flush.interval.messages=0\n",
            "log.flush.interval.messages",
            "0",
            "Value must be at least 1",
        ),
        (
            "message.max.bytes=-1\n",
            "message.max.bytes",
            "-1",
            "Value must be at least 0",
        ),
        (
            "replica.lag.time.max.ms=0\n",
            "replica.lag.time.max.ms",
            "0",
            "Value must be at least 1",
        ),
        (
            "replica.fetch.max.bytes=-5\n",
            "replica.fetch.max.bytes",
            "-5",
            "Value must be at least 0",
        ),
        (
            "num.replica.fetchers=0\n",
            "num.replica.fetchers",
            "0",
            "Value must be at least 1",
        ),
        (
            "zookeeper.session.timeout.ms=0\n",
            "zookeeper.session.timeout.ms",
            "0",
            "Value must be at least 1",
        ),
        (
            "auto.create.topics.enable=yes\n",
            "auto.create.topics.enable",
            "yes",
            "Expected value to be either true or false",
        ),
        (
            "unclean.leader.election.enable=1\n",
            "unclean.leader.election.enable",
            "1",
            "Expected value to be either true or false",
        ),
        (
            "leader.imbalance.per.broker.percentage=101\n",
            "leader.imbalance.per.broker.percentage",
            "101",
            "Value must be no more than 100",
        ),
        (
            "compression.type=brotli\n",
            "compression.type",
            "brotli",
            "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        (
            "log.message.timestamp.type=Now\n",
            "log.message.timestamp.type",
            "Now",
            "String must be one of: CreateTime, LogAppendTime",
        ),
        (
            "log.cleanup.policy=keep\n",
            "log.cleanup.policy",
            "keep",
            "Invalid value keep: must be one of: compact, delete",
        ),
        ("broker.rack=\n", "broker.rack", "", "must not be empty"),
        // Keys accepted without effect are still type-checked.
        (
            "num.io.threads=eight\n",
            "num.io.threads",
            "eight",
            "Not a number of type INT",
        ),
        (
            "log.cleaner.enable=off\n",
            "log.cleaner.enable",
            "off",
            "Expected value to be either true or false",
        ),
    ];
    for (extra, key, value, reason) in cases {
        assert_eq!(
            error(extra),
            format!(
                "Invalid value {value} for configuration {key} in config/server.properties \
                 (line 3): {reason}"
            ),
            "for {extra:?}"
        );
    }
}

#[test]
fn zookeeper_connect_is_parsed() {
    let c = config("zookeeper.connect=a:1,b/kafka\n");
    assert_eq!(c.zookeeper_connect.servers.len(), 2);
    assert_eq!(c.zookeeper_connect.servers[1].port, 2181);
    assert_eq!(c.zookeeper_connect.chroot.as_deref(), Some("/kafka"));
    assert_eq!(
        error("zookeeper.connect=a:x\n"),
        "Invalid value a:x for configuration zookeeper.connect in config/server.properties \
         (line 3): invalid port x: must be a number from 0 to 65535"
    );
}

#[test]
fn values_are_trimmed_as_kafka_trims_them() {
    let c = config("port= 9093 \nauto.create.topics.enable = False \n");
    assert_eq!(c.listeners[0].port, 9093);
    assert!(!c.auto_create_topics_enable);
}

#[test]
fn unknown_keys_are_warnings_and_known_families_are_not() {
    let c = config(
        "topic=test\nlog.retention.hourz=1\nnum.network.threads=3\nssl.keystore.location=/x\n\
         listener.name.internal.ssl.keystore.location=/y\nsasl.enabled.mechanisms=PLAIN\n",
    );
    let keys: Vec<&str> = c.warnings.iter().map(ConfigWarning::key).collect();
    assert_eq!(keys, vec!["topic", "log.retention.hourz"]);
    assert_eq!(c.warnings[0].to_string(), "Property topic is not valid");
    match &c.warnings[1] {
        ConfigWarning::UnknownKey { at, .. } => {
            assert_eq!(at.to_string(), "config/server.properties (line 4)");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(BrokerConfig::is_known_key("log.retention.hours"));
    assert!(BrokerConfig::is_known_key("socket.request.max.bytes"));
    assert!(!BrokerConfig::is_known_key("topic"));
}

#[test]
fn overrides_are_named_in_errors() {
    let mut p = props("");
    p.set_from("port", "x", "--override");
    assert_eq!(
        BrokerConfig::from_properties(&p).unwrap_err().to_string(),
        "Invalid value x for configuration port from --override: Not a number of type INT"
    );
    let mut p = props("");
    p.set("port", "x");
    assert_eq!(
        BrokerConfig::from_properties(&p).unwrap_err().to_string(),
        "Invalid value x for configuration port in config/server.properties (overridden): Not a \
         number of type INT"
    );
    let mut p = props("port=x\n");
    p.set("port", "0");
    assert_eq!(
        BrokerConfig::from_properties(&p).unwrap().listeners[0].port,
        0
    );
}
