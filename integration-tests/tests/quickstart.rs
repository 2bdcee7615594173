//! Kafka's quickstart, word for word, through the real CLI binaries against
//! real daemons started from the repository's config/ files (ports and
//! directories redirected by the harness).

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use integration_tests::{
    Cluster, ClusterSpec, Process, READY_TIMEOUT, ok, wait_until, workspace_root,
};

fn quickstart_brokers(ids: &[i32]) -> ClusterSpec {
    let files = [
        "config/server.properties",
        "config/server-1.properties",
        "config/server-2.properties",
    ];
    ClusterSpec {
        broker_configs: ids
            .iter()
            .map(|&id| (id, Some(workspace_root().join(files[id as usize]))))
            .collect(),
        ..ClusterSpec::default()
    }
}

/// Runs `kafka-console-consumer --from-beginning` until it has printed
/// `expected`, then interrupts it as a user's ^C would.
fn consume_until_interrupted(
    cluster: &Cluster,
    args: &[&str],
    expected: &[&str],
) -> Result<Process> {
    let log = cluster
        .dir()
        .join(format!("consumer-{}.log", std::process::id()));
    let mut consumer = Process::tool("kafka-console-consumer", args, &log)?;
    for line in expected {
        consumer.wait_for_line(line, READY_TIMEOUT)?;
    }
    consumer.signal(libc_sigint())?;
    let status = consumer.wait(Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "the consumer exits 0 on ^C, got {status:?}"
    );
    Ok(consumer)
}

fn libc_sigint() -> i32 {
    2
}

/// Parses `Leader: 1\tReplicas: 1,2,3\tIsr: 1,2` from a describe line.
fn field(line: &str, name: &str) -> Result<Vec<i32>> {
    let rest = line
        .split(&format!("{name}: "))
        .nth(1)
        .ok_or_else(|| anyhow!("no {name} in {line:?}"))?;
    let value = rest.split('\t').next().unwrap_or_default().trim();
    if value == "none" || value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<i32>()
                .map_err(|e| anyhow!("{name} {v:?}: {e}"))
        })
        .collect()
}

#[test]
fn the_single_broker_quickstart() -> Result<()> {
    let cluster = Cluster::start_spec(&quickstart_brokers(&[0]))?;
    let zk = cluster.zookeeper_connect();
    let broker_list = cluster.bootstrap_servers();

    let created = ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--zookeeper",
            &zk,
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "test",
        ],
    )?)?;
    assert_eq!(created.stdout, "Created topic \"test\".\n");

    let listed = ok(cluster.tool("kafka-topics", &["--list", "--zookeeper", &zk])?)?;
    assert_eq!(listed.stdout, "test\n");

    ok(cluster.tool_with_stdin(
        "kafka-console-producer",
        &["--broker-list", &broker_list, "--topic", "test"],
        "this is a message\nthis is another message\n",
    )?)?;

    let consumer = consume_until_interrupted(
        &cluster,
        &["--zookeeper", &zk, "--topic", "test", "--from-beginning"],
        &["this is a message", "this is another message"],
    )?;
    assert_eq!(
        consumer.stdout_lines(),
        vec!["this is a message", "this is another message"]
    );
    let stderr = consumer.log_lines().join("\n");
    assert!(
        stderr.contains("Processed a total of 2 messages"),
        "{stderr}"
    );

    let described = ok(cluster.tool(
        "kafka-topics",
        &["--describe", "--zookeeper", &zk, "--topic", "test"],
    )?)?;
    assert_eq!(
        described.stdout,
        "Topic:test\tPartitionCount:1\tReplicationFactor:1\tConfigs:\n\
         \tTopic: test\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0\n"
    );
    Ok(())
}

#[test]
fn the_multi_broker_quickstart_survives_kill_9_of_the_leader() -> Result<()> {
    let mut cluster = Cluster::start_spec(&quickstart_brokers(&[0, 1, 2]))?;
    let zk = cluster.zookeeper_connect();
    let broker_list = cluster.bootstrap_servers();
    let topic = "my-replicated-topic";

    ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--zookeeper",
            &zk,
            "--replication-factor",
            "3",
            "--partitions",
            "1",
            "--topic",
            topic,
        ],
    )?)?;
    let describe = |cluster: &Cluster| -> Result<(String, String)> {
        let out = ok(cluster.tool(
            "kafka-topics",
            &["--describe", "--zookeeper", &zk, "--topic", topic],
        )?)?;
        let mut lines = out.stdout.lines();
        let header = lines.next().unwrap_or_default().to_owned();
        let partition = lines.next().unwrap_or_default().to_owned();
        Ok((header, partition))
    };
    let (header, partition) = describe(&cluster)?;
    assert_eq!(
        header,
        format!("Topic:{topic}\tPartitionCount:1\tReplicationFactor:3\tConfigs:")
    );
    let leader = field(&partition, "Leader")?[0];
    let mut replicas = field(&partition, "Replicas")?;
    replicas.sort_unstable();
    assert_eq!(replicas, vec![0, 1, 2]);
    assert!(partition.starts_with(&format!(
        "\tTopic: {topic}\tPartition: 0\tLeader: {leader}\tReplicas: "
    )));

    ok(cluster.tool_with_stdin(
        "kafka-console-producer",
        &["--broker-list", &broker_list, "--topic", topic],
        "my test message 1\nmy test message 2\n",
    )?)?;
    let messages = ["my test message 1", "my test message 2"];
    let consumer = consume_until_interrupted(
        &cluster,
        &["--zookeeper", &zk, "--from-beginning", "--topic", topic],
        &messages,
    )?;
    assert_eq!(consumer.stdout_lines(), messages);

    cluster.kill_broker(leader)?;
    wait_until(
        "describe shows a new leader without the dead broker in the Isr",
        Duration::from_secs(20),
        || {
            describe(&cluster).is_ok_and(|(_, p)| {
                let new_leader = field(&p, "Leader").unwrap_or_default();
                let isr = field(&p, "Isr").unwrap_or_default();
                new_leader.len() == 1
                    && new_leader[0] != leader
                    && !isr.contains(&leader)
                    && isr.len() == 2
            })
        },
    )?;
    let consumer = consume_until_interrupted(
        &cluster,
        &["--zookeeper", &zk, "--from-beginning", "--topic", topic],
        &messages,
    )?;
    assert_eq!(consumer.stdout_lines(), messages);

    cluster.restart_broker(leader)?;
    wait_until(
        "the restarted broker is back in the Isr",
        Duration::from_secs(30),
        || describe(&cluster).is_ok_and(|(_, p)| field(&p, "Isr").unwrap_or_default().len() == 3),
    )?;
    Ok(())
}

#[test]
fn under_replicated_produce_is_refused_clearly_and_filters_show_it() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let zk = cluster.zookeeper_connect();
    let bootstrap = cluster.bootstrap_servers();
    ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--bootstrap-server",
            &bootstrap,
            "--replication-factor",
            "3",
            "--partitions",
            "1",
            "--topic",
            "guarded",
            "--config",
            "min.insync.replicas=2",
        ],
    )?)?;
    ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--zookeeper",
            &zk,
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "single",
        ],
    )?)?;
    let describe = ok(cluster.tool(
        "kafka-topics",
        &["--describe", "--zookeeper", &zk, "--topic", "guarded"],
    )?)?;
    assert!(
        describe.stdout.contains("Configs:min.insync.replicas=2"),
        "{}",
        describe.stdout
    );
    let partition = describe
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let leader = field(&partition, "Leader")?[0];
    let single = ok(cluster.tool(
        "kafka-topics",
        &["--describe", "--zookeeper", &zk, "--topic", "single"],
    )?)?;
    let single_leader = field(single.stdout.lines().nth(1).unwrap_or_default(), "Leader")?[0];

    // Nothing is under-replicated yet.
    let under = ok(cluster.tool(
        "kafka-topics",
        &[
            "--describe",
            "--zookeeper",
            &zk,
            "--under-replicated-partitions",
        ],
    )?)?;
    assert_eq!(under.stdout, "");

    let others: Vec<i32> = cluster
        .broker_ids()
        .into_iter()
        .filter(|&b| b != leader)
        .collect();
    for &b in &others {
        cluster.kill_broker(b)?;
    }
    wait_until(
        "the Isr shrinks to the leader",
        Duration::from_secs(20),
        || {
            cluster
                .tool(
                    "kafka-topics",
                    &["--describe", "--zookeeper", &zk, "--topic", "guarded"],
                )
                .is_ok_and(|o| {
                    o.stdout
                        .lines()
                        .nth(1)
                        .is_some_and(|p| field(p, "Isr").unwrap_or_default() == vec![leader])
                })
        },
    )?;

    let leader_address = format!(
        "127.0.0.1:{}",
        cluster.broker_port(leader).unwrap_or_default()
    );
    let refused = cluster.tool_with_stdin(
        "kafka-console-producer",
        &[
            "--broker-list",
            &leader_address,
            "--topic",
            "guarded",
            "--request-required-acks",
            "all",
        ],
        "needs two replicas\n",
    )?;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "stderr:\n{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("NOT_ENOUGH_REPLICAS"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("1 of 1"), "{}", refused.stderr);

    ok(cluster.tool_with_stdin(
        "kafka-console-producer",
        &[
            "--broker-list",
            &leader_address,
            "--topic",
            "guarded",
            "--request-required-acks",
            "1",
        ],
        "one replica is enough\n",
    )?)?;

    // The filters: `guarded` is under-replicated; `single` is unavailable
    // if its only replica was among the killed brokers.
    let under = ok(cluster.tool(
        "kafka-topics",
        &[
            "--describe",
            "--zookeeper",
            &zk,
            "--under-replicated-partitions",
        ],
    )?)?;
    assert!(
        under.stdout.contains("\tTopic: guarded\tPartition: 0"),
        "{}",
        under.stdout
    );
    let unavailable = ok(cluster.tool(
        "kafka-topics",
        &["--describe", "--zookeeper", &zk, "--unavailable-partitions"],
    )?)?;
    if others.contains(&single_leader) {
        assert!(
            unavailable
                .stdout
                .contains("\tTopic: single\tPartition: 0\tLeader: none"),
            "{}",
            unavailable.stdout
        );
    } else {
        assert_eq!(unavailable.stdout, "");
    }
    Ok(())
}

#[test]
fn console_tools_ride_through_a_leader_failover() -> Result<()> {
    use std::io::Write;

    let mut cluster = Cluster::start(3)?;
    let bootstrap = cluster.bootstrap_servers();
    ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--bootstrap-server",
            &bootstrap,
            "--replication-factor",
            "3",
            "--partitions",
            "1",
            "--topic",
            "steady",
            "--config",
            "min.insync.replicas=2",
        ],
    )?)?;
    let leader_of = |cluster: &Cluster| -> Result<i32> {
        let out = ok(cluster.tool(
            "kafka-topics",
            &[
                "--describe",
                "--bootstrap-server",
                &bootstrap,
                "--topic",
                "steady",
            ],
        )?)?;
        Ok(
            field(out.stdout.lines().nth(1).unwrap_or_default(), "Leader")?
                .first()
                .copied()
                .unwrap_or(-1),
        )
    };
    let leader = leader_of(&cluster)?;

    let mut consumer = Process::tool(
        "kafka-console-consumer",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "steady",
            "--from-beginning",
        ],
        &cluster.dir().join("steady-consumer.log"),
    )?;
    let (mut producer, mut stdin) = Process::tool_with_stdin(
        "kafka-console-producer",
        &[
            "--broker-list",
            &bootstrap,
            "--topic",
            "steady",
            "--timeout",
            "0",
        ],
        &cluster.dir().join("steady-producer.log"),
    )?;
    for i in 0..50 {
        writeln!(stdin, "line-{i}")?;
    }
    stdin.flush()?;
    consumer.wait_for_line("line-49", READY_TIMEOUT)?;

    cluster.kill_broker(leader)?;
    for i in 50..100 {
        writeln!(stdin, "line-{i}")?;
    }
    drop(stdin);
    let status = producer.wait(Duration::from_secs(60))?;
    ensure!(
        status.success(),
        "the producer failed:\n{}",
        producer.log_tail(30)
    );
    consumer.wait_for_line("line-99", READY_TIMEOUT)?;
    consumer.signal(libc_sigint())?;
    ensure!(
        consumer.wait(Duration::from_secs(20))?.success(),
        "the consumer exits 0"
    );

    // Every line, in order. Without an idempotent producer delivery is at
    // least once: a batch the old leader committed but whose answer died
    // with it is sent again to the new leader, so a whole run of lines may
    // repeat later in the log. Their first appearances must still be in order.
    let mut seen: Vec<String> = Vec::new();
    let mut first_seen = std::collections::HashSet::new();
    for line in consumer.stdout_lines() {
        if first_seen.insert(line.clone()) {
            seen.push(line);
        }
    }
    let expected: Vec<String> = (0..100).map(|i| format!("line-{i}")).collect();
    assert_eq!(seen, expected);
    assert_ne!(leader_of(&cluster)?, leader);
    Ok(())
}

#[test]
fn alter_config_takes_effect_on_the_broker_at_once() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let zk = cluster.zookeeper_connect();
    let broker_list = cluster.bootstrap_servers();
    ok(cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--zookeeper",
            &zk,
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "tunable",
        ],
    )?)?;
    let produce = |line: &str| {
        cluster.tool_with_stdin(
            "kafka-console-producer",
            &[
                "--broker-list",
                &broker_list,
                "--topic",
                "tunable",
                "--request-required-acks",
                "all",
                "--message-send-max-retries",
                "0",
            ],
            line,
        )
    };
    ok(produce("before\n")?)?;

    let altered = ok(cluster.tool(
        "kafka-topics",
        &[
            "--alter",
            "--zookeeper",
            &zk,
            "--topic",
            "tunable",
            "--config",
            "min.insync.replicas=2",
        ],
    )?)?;
    assert_eq!(altered.stdout, "Updated config for topic \"tunable\".\n");
    let described = ok(cluster.tool(
        "kafka-topics",
        &["--describe", "--zookeeper", &zk, "--topic", "tunable"],
    )?)?;
    assert!(
        described.stdout.contains("Configs:min.insync.replicas=2"),
        "{}",
        described.stdout
    );
    // One replica can no longer satisfy acks=all.
    wait_until(
        "the broker applies min.insync.replicas=2",
        Duration::from_secs(10),
        || produce("refused\n").is_ok_and(|o| o.stderr.contains("NOT_ENOUGH_REPLICAS")),
    )?;

    ok(cluster.tool(
        "kafka-topics",
        &[
            "--alter",
            "--zookeeper",
            &zk,
            "--topic",
            "tunable",
            "--delete-config",
            "min.insync.replicas",
        ],
    )?)?;
    wait_until(
        "the broker is back to the default",
        Duration::from_secs(10),
        || produce("after\n").is_ok_and(|o| o.success()),
    )?;

    let refused = cluster.tool(
        "kafka-topics",
        &[
            "--alter",
            "--zookeeper",
            &zk,
            "--topic",
            "tunable",
            "--config",
            "retention.ms=soon",
        ],
    )?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        refused.stderr.contains("retention.ms"),
        "{}",
        refused.stderr
    );
    Ok(())
}
