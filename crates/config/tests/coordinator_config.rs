//! `CoordinatorConfig`: ZooKeeper's keys and defaults, the controller's
//! Kafka keys, and the shape of every error.

use std::path::PathBuf;

use config::{ConfigError, ConfigWarning, CoordinatorConfig, Properties, property_lines};

fn props(text: &str) -> Properties {
    Properties::parse(text, "config/zookeeper.properties").unwrap()
}

fn config(text: &str) -> CoordinatorConfig {
    CoordinatorConfig::from_properties(&props(text)).unwrap()
}

fn error(text: &str) -> String {
    CoordinatorConfig::from_properties(&props(text))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults() {
    let c = config("dataDir=/var/zk\n");
    assert_eq!(c.data_dir, PathBuf::from("/var/zk"));
    assert_eq!(c.data_log_dir, PathBuf::from("/var/zk"));
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.client_port_address, None);
    assert_eq!(c.bind_address(), "0.0.0.0:2181");
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.min_session_timeout_ms, 6000);
    assert_eq!(c.max_session_timeout_ms, 60_000);
    assert_eq!(c.init_limit, None);
    assert_eq!(c.sync_limit, None);
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.autopurge_purge_interval_hours, 0);
    assert_eq!(c.snap_count, 100_000);
    assert!(c.servers.is_empty());
    assert!(!c.unclean_leader_election_enable);
    assert!(c.auto_leader_rebalance_enable);
    assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
    assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
    assert!(c.delete_topic_enable);
    assert_eq!(c.broker_session_grace_ms, 500);
    assert_eq!(c.warnings, vec![]);
}

#[test]
fn every_key_is_read() {
    let c = config(
        "dataDir=/d\ndataLogDir=/l\nclientPort=0\nclientPortAddress=127.0.0.1\ntickTime=100\n\
         maxClientCnxns=0\ninitLimit=5\nsyncLimit=2\nautopurge.snapRetainCount=5\n\
         autopurge.purgeInterval=1\nsnapCount=1000\nunclean.leader.election.enable=true\n\
         auto.leader.rebalance.enable=false\nleader.imbalance.check.interval.seconds=1\n\
         leader.imbalance.per.broker.percentage=0\ndelete.topic.enable=false\n\
         broker.session.grace.ms=0\nadmin.enableServer=false\nadmin.serverPort=8080\n\
         4lw.commands.whitelist=*\n",
    );
    assert_eq!(c.data_log_dir, PathBuf::from("/l"));
    assert_eq!(c.client_port, 0);
    assert_eq!(c.bind_address(), "127.0.0.1:0");
    assert_eq!(c.tick_time_ms, 100);
    // Session bounds follow the tick unless set.
    assert_eq!(c.min_session_timeout_ms, 200);
    assert_eq!(c.max_session_timeout_ms, 2000);
    assert_eq!(c.max_client_cnxns, 0);
    assert_eq!(c.init_limit, Some(5));
    assert_eq!(c.sync_limit, Some(2));
    assert_eq!(c.autopurge_snap_retain_count, 5);
    assert_eq!(c.autopurge_purge_interval_hours, 1);
    assert_eq!(c.snap_count, 1000);
    assert!(c.unclean_leader_election_enable);
    assert!(!c.auto_leader_rebalance_enable);
    assert_eq!(c.leader_imbalance_check_interval_seconds, 1);
    assert_eq!(c.leader_imbalance_per_broker_percentage, 0);
    assert!(!c.delete_topic_enable);
    assert_eq!(c.broker_session_grace_ms, 0);
    assert_eq!(c.warnings, vec![]);

    let c = config("dataDir=/d\nminSessionTimeout=1000\nmaxSessionTimeout=9000\n");
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (1000, 9000)
    );
}

#[test]
fn data_dir_is_required() {
    let err = CoordinatorConfig::from_properties(&props("clientPort=2181\n")).unwrap_err();
    assert!(matches!(&err, ConfigError::Missing { key, .. } if key == "dataDir"));
    assert_eq!(
        err.to_string(),
        "Missing required configuration dataDir which has no default value in \
         config/zookeeper.properties"
    );
    assert_eq!(
        error("dataDir=\n"),
        "Invalid value  for configuration dataDir in config/zookeeper.properties (line 1): must \
         not be empty"
    );
}

#[test]
fn bad_values_name_key_value_file_and_line() {
    let cases = [
        (
            "clientPort=abc\n",
            "clientPort",
            "abc",
            "Not a number of type INT",
        ),
        (
            "clientPort=65536\n",
            "clientPort",
            "65536",
            "Value must be no more than 65535",
        ),
        ("tickTime=0\n", "tickTime", "0", "Value must be at least 1"),
        (
            "maxClientCnxns=-1\n",
            "maxClientCnxns",
            "-1",
            "Value must be at least 0",
        ),
        (
            "initLimit=0\n",
            "initLimit",
            "0",
            "Value must be at least 1",
        ),
        (
            "autopurge.snapRetainCount=2\n",
            "autopurge.snapRetainCount",
            "2",
            "Value must be at least 3",
        ),
        (
            "autopurge.purgeInterval=-1\n",
            "autopurge.purgeInterval",
            "-1",
            "Value must be at least 0",
        ),
        (
            "unclean.leader.election.enable=no\n",
            "unclean.leader.election.enable",
            "no",
            "Expected value to be either true or false",
        ),
        (
            "broker.session.grace.ms=-1\n",
            "broker.session.grace.ms",
            "-1",
            "Value must be at least 0",
        ),
        (
            "leader.imbalance.check.interval.seconds=0\n",
            "leader.imbalance.check.interval.seconds",
            "0",
            "Value must be at least 1",
        ),
        (
            "admin.enableServer=maybe\n",
            "admin.enableServer",
            "maybe",
            "Expected value to be either true or false",
        ),
        (
            "server.one=h:2888:3888\n",
            "server.one",
            "h:2888:3888",
            "one in server.one is not a server id (a number)",
        ),
        (
            "minSessionTimeout=70000\n",
            "minSessionTimeout",
            "70000",
            "minSessionTimeout (70000) must not be larger than maxSessionTimeout (60000)",
        ),
    ];
    for (line, key, value, reason) in cases {
        assert_eq!(
            error(&format!("dataDir=/d\n{line}")),
            format!(
                "Invalid value {value} for configuration {key} in config/zookeeper.properties \
                 (line 2): {reason}"
            ),
            "for {line:?}"
        );
    }
}

#[test]
fn server_lines_are_kept_and_warned_about() {
    let p = props("dataDir=/d\nserver.1=a:2888:3888\nserver.2=b:2888:3888\nbogus=1\n");
    let c = CoordinatorConfig::from_properties(&p).unwrap();
    assert_eq!(c.servers.len(), 2);
    assert_eq!(c.servers[&2], "b:2888:3888");
    let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "Property bogus is not valid",
            "Property server.1 is ignored: only standalone mode is supported yet; this \
             coordinator runs alone",
            "Property server.2 is ignored: only standalone mode is supported yet; this \
             coordinator runs alone",
        ]
    );
    assert!(matches!(c.warnings[0], ConfigWarning::UnknownKey { .. }));
    let lines: Vec<String> = property_lines(&p, &c.warnings)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines[0], "Property bogus is not valid");
    assert_eq!(lines[1], "Property dataDir is overridden to /d");
    assert_eq!(lines[2], "Property server.1 is overridden to a:2888:3888");
    assert!(lines[4].starts_with("Property server.1 is ignored"));
}

#[test]
fn known_keys() {
    assert!(CoordinatorConfig::is_known_key("dataDir"));
    assert!(CoordinatorConfig::is_known_key("server.3"));
    assert!(CoordinatorConfig::is_known_key("metricsProvider.httpPort"));
    assert!(!CoordinatorConfig::is_known_key("datadir"));
}
