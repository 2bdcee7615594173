//! Every file shipped in the repository's `config/` directory loads, and
//! gives the values the quickstart relies on. A new file there must get its
//! assertions here, or this test fails.

use std::path::{Path, PathBuf};

use config::{
    BrokerConfig, CoordinatorConfig, Properties, PropertyLine, TopicConfig, property_lines,
};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn load(name: &str) -> Properties {
    Properties::load(config_dir().join(name)).unwrap()
}

fn broker(name: &str) -> BrokerConfig {
    let config = BrokerConfig::from_properties(&load(name)).unwrap();
    assert_eq!(config.warnings, vec![], "{name}");
    config
}

#[test]
fn every_shipped_file_is_checked() {
    let mut names: Vec<String> = std::fs::read_dir(config_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "consumer.properties",
            "producer.properties",
            "server-1.properties",
            "server-2.properties",
            "server.properties",
            "zookeeper.properties",
        ]
    );
}

#[test]
fn zookeeper_properties() {
    let config = CoordinatorConfig::from_properties(&load("zookeeper.properties")).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.data_log_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.client_port, 2181);
    assert_eq!(config.bind_address(), "0.0.0.0:2181");
    assert_eq!(config.max_client_cnxns, 0);
    assert_eq!(config.tick_time_ms, 3000);
    assert!(config.servers.is_empty());
    assert_eq!(config.warnings, vec![]);
}

#[test]
fn server_properties_logs_what_the_seed_shows() {
    let props = load("server.properties");
    let config = broker("server.properties");
    let lines: Vec<String> = property_lines(&props, &config.warnings)
        .iter()
        .map(PropertyLine::to_string)
        .collect();
    // The seed's broker log, with the shipped broker.id.
    assert_eq!(
        lines,
        vec![
            "Property broker.id is overridden to 0",
            "Property log.cleaner.enable is overridden to false",
            "Property log.dirs is overridden to /tmp/kafka-logs",
            "Property log.retention.check.interval.ms is overridden to 300000",
            "Property log.retention.hours is overridden to 168",
            "Property log.segment.bytes is overridden to 1073741824",
            "Property num.io.threads is overridden to 8",
            "Property num.network.threads is overridden to 3",
            "Property num.partitions is overridden to 1",
            "Property num.recovery.threads.per.data.dir is overridden to 1",
            "Property port is overridden to 9092",
            "Property socket.receive.buffer.bytes is overridden to 102400",
            "Property socket.request.max.bytes is overridden to 104857600",
            "Property socket.send.buffer.bytes is overridden to 102400",
            "Property zookeeper.connect is overridden to localhost:2181",
            "Property zookeeper.connection.timeout.ms is overridden to 6000",
        ]
    );
}

#[test]
fn server_properties() {
    let config = broker("server.properties");
    assert_eq!(config.broker_id, 0);
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://:9092");
    assert_eq!(config.listeners[0].bind_address(), "0.0.0.0:9092");
    assert_eq!(config.advertised_listeners, config.listeners);
    assert_eq!(config.inter_broker_listener_name, "PLAINTEXT");
    assert_eq!(config.log_dirs, vec![PathBuf::from("/tmp/kafka-logs")]);
    assert_eq!(config.num_partitions, 1);
    assert_eq!(config.log_retention_ms, Some(168 * 3_600_000));
    assert_eq!(config.log_segment_bytes, 1_073_741_824);
    assert_eq!(config.log_retention_check_interval_ms, 300_000);
    assert_eq!(config.zookeeper_connect.to_string(), "localhost:2181");
    assert_eq!(config.zookeeper_connection_timeout_ms, 6000);
    assert_eq!(config.zookeeper_session_timeout_ms, 6000);
    assert_eq!(config.topic_defaults(), TopicConfig::default());
}

#[test]
fn server_1_and_2_properties_differ_only_where_the_quickstart_says() {
    let base = broker("server.properties");
    for (name, id, port, dir) in [
        ("server-1.properties", 1, 9093, "/tmp/kafka-logs-1"),
        ("server-2.properties", 2, 9094, "/tmp/kafka-logs-2"),
    ] {
        let config = broker(name);
        assert_eq!(config.broker_id, id, "{name}");
        assert_eq!(config.listeners[0].port, port, "{name}");
        assert_eq!(config.log_dirs, vec![PathBuf::from(dir)], "{name}");
        let same_otherwise = BrokerConfig {
            broker_id: base.broker_id,
            listeners: base.listeners.clone(),
            advertised_listeners: base.advertised_listeners.clone(),
            log_dirs: base.log_dirs.clone(),
            ..config
        };
        assert_eq!(same_otherwise, base, "{name}");
    }
}

#[test]
fn producer_and_consumer_properties() {
    let producer = load("producer.properties");
    assert_eq!(producer.get("bootstrap.servers"), Some("localhost:9092"));
    assert_eq!(producer.get("compression.type"), Some("none"));
    assert_eq!(producer.len(), 2);
    let consumer = load("consumer.properties");
    assert_eq!(consumer.get("bootstrap.servers"), Some("localhost:9092"));
    assert_eq!(consumer.get("group.id"), Some("test-consumer-group"));
    assert_eq!(consumer.len(), 2);
}
