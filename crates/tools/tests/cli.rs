//! The built binaries against the in-process fake cluster: arguments,
//! output and exit codes as a user sees them.

use std::process::{Output, Stdio};
use std::time::Duration;

use client::ErrorCode;
use fake_cluster::{FakeCluster, batch_of};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const TOPICS: &str = env!("CARGO_BIN_EXE_kafka-topics");
const PRODUCER: &str = env!("CARGO_BIN_EXE_kafka-console-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_kafka-console-consumer");

/// Runs a binary to completion with `stdin` as its input.
async fn run(binary: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the tool did not finish within a minute")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_through_the_tools() {
    let cluster = FakeCluster::start(1).await;
    let zookeeper = cluster.coordinator.to_string();
    let brokers = cluster.bootstrap();

    let created = run(
        TOPICS,
        &[
            "--create",
            "--zookeeper",
            &zookeeper,
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "test",
        ],
        "",
    )
    .await;
    assert_eq!(
        stdout(&created),
        "Created topic \"test\".\n",
        "{}",
        stderr(&created)
    );
    assert!(created.status.success());

    let listed = run(TOPICS, &["--list", "--zookeeper", &zookeeper], "").await;
    assert_eq!(stdout(&listed), "test\n");

    let produced = run(
        PRODUCER,
        &["--broker-list", &brokers, "--topic", "test"],
        "This is a message\nThis is another message\n",
    )
    .await;
    assert!(produced.status.success(), "{}", stderr(&produced));
    assert_eq!(stdout(&produced), "");

    let consumed = run(
        CONSUMER,
        &[
            "--zookeeper",
            &zookeeper,
            "--topic",
            "test",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
        "",
    )
    .await;
    assert_eq!(
        stdout(&consumed),
        "This is a message\nThis is another message\n"
    );
    assert!(
        stderr(&consumed).ends_with("Processed a total of 2 messages\n"),
        "{}",
        stderr(&consumed)
    );
    assert!(consumed.status.success());

    let described = run(
        TOPICS,
        &["--describe", "--zookeeper", &zookeeper, "--topic", "test"],
        "",
    )
    .await;
    assert_eq!(
        stdout(&described),
        "Topic:test\tPartitionCount:1\tReplicationFactor:1\tConfigs:\n\tTopic: test\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n"
    );

    // The same through a broker.
    let described = run(TOPICS, &["--describe", "--bootstrap-server", &brokers], "").await;
    assert!(
        stdout(&described).starts_with("Topic:test\tPartitionCount:1"),
        "{}",
        stdout(&described)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_errors_are_one_line_with_exit_status_1() {
    let cluster = FakeCluster::start(1).await;
    let zookeeper = cluster.coordinator.to_string();

    let too_many = run(
        TOPICS,
        &[
            "--create",
            "--zookeeper",
            &zookeeper,
            "--replication-factor",
            "3",
            "--partitions",
            "1",
            "--topic",
            "big",
        ],
        "",
    )
    .await;
    assert_eq!(too_many.status.code(), Some(1));
    assert_eq!(
        stderr(&too_many),
        "Error while executing topic command : Replication factor: 3 larger than available brokers: 1.\n"
    );

    let create = [
        "--create",
        "--zookeeper",
        &zookeeper,
        "--replication-factor",
        "1",
        "--partitions",
        "2",
        "--topic",
        "t",
    ];
    assert!(run(TOPICS, &create, "").await.status.success());
    let again = run(TOPICS, &create, "").await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        "Error while executing topic command : Topic 't' already exists.\n"
    );
    let mut if_not_exists = create.to_vec();
    if_not_exists.push("--if-not-exists");
    let quiet = run(TOPICS, &if_not_exists, "").await;
    assert!(quiet.status.success());
    assert_eq!(stdout(&quiet), "");

    let missing = run(
        TOPICS,
        &["--describe", "--zookeeper", &zookeeper, "--topic", "nope"],
        "",
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        "Error while executing topic command : Topic 'nope' does not exist as expected\n"
    );
    let tolerated = run(
        TOPICS,
        &[
            "--describe",
            "--zookeeper",
            &zookeeper,
            "--topic",
            "nope",
            "--if-exists",
        ],
        "",
    )
    .await;
    assert!(tolerated.status.success());

    let unknown_flag = run(
        TOPICS,
        &["--list", "--zookeeper", &zookeeper, "--bogus"],
        "",
    )
    .await;
    assert_eq!(unknown_flag.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown_flag),
        "Error: unexpected argument '--bogus' found\n"
    );

    let no_action = run(TOPICS, &["--zookeeper", &zookeeper], "").await;
    assert_eq!(no_action.status.code(), Some(1));
    assert_eq!(
        stderr(&no_action),
        "Command must include exactly one action: --list, --describe, --create, --alter or --delete\n"
    );

    let dead = fake_cluster::dead_address().await;
    let unreachable = run(TOPICS, &["--list", "--zookeeper", &dead], "").await;
    assert_eq!(unreachable.status.code(), Some(1));
    let message = stderr(&unreachable);
    assert!(
        message.starts_with(&format!(
            "Error while executing topic command : no server could be reached at {dead}"
        )),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_delete_and_the_describe_filters() {
    let cluster = FakeCluster::start(3).await;
    let brokers = cluster.bootstrap();
    let created = run(
        TOPICS,
        &[
            "--create",
            "--bootstrap-server",
            &brokers,
            "--topic",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
        ],
        "",
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));

    let altered = run(
        TOPICS,
        &[
            "--alter",
            "--bootstrap-server",
            &brokers,
            "--topic",
            "t",
            "--partitions",
            "4",
        ],
        "",
    )
    .await;
    assert!(altered.status.success(), "{}", stderr(&altered));
    assert!(stdout(&altered).ends_with("Adding partitions succeeded!\n"));

    // Broker 2 goes down: partition 1 (leader 2) is unavailable.
    cluster.set_broker_down(2, true);
    {
        let mut state = cluster.state();
        let partition = &mut state.topics.get_mut("t").unwrap().partitions[0];
        partition.isr = vec![1];
    }
    let zookeeper = cluster.coordinator.to_string();
    let unavailable = run(
        TOPICS,
        &[
            "--describe",
            "--zookeeper",
            &zookeeper,
            "--unavailable-partitions",
        ],
        "",
    )
    .await;
    assert_eq!(
        stdout(&unavailable),
        "\tTopic: t\tPartition: 1\tLeader: 2\tReplicas: 2,3\tIsr: 2,3\n"
    );
    let under = run(
        TOPICS,
        &[
            "--describe",
            "--zookeeper",
            &zookeeper,
            "--under-replicated-partitions",
        ],
        "",
    )
    .await;
    assert_eq!(
        stdout(&under),
        "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1\n"
    );

    let deleted = run(
        TOPICS,
        &["--delete", "--zookeeper", &zookeeper, "--topic", "t"],
        "",
    )
    .await;
    assert_eq!(stdout(&deleted), "Topic t is marked for deletion.\n");
    let gone = run(
        TOPICS,
        &["--delete", "--zookeeper", &zookeeper, "--topic", "t"],
        "",
    )
    .await;
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        stderr(&gone),
        "Error while executing topic command : Topic 't' does not exist as expected\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_through_parse_key_and_print_key() {
    let cluster = FakeCluster::start(2).await;
    cluster.create_topic("keyed", &[1, 2]);
    let dead = fake_cluster::dead_address().await;
    let brokers = format!("{dead},{}", cluster.bootstrap());
    let produced = run(
        PRODUCER,
        &[
            "--bootstrap-server",
            &brokers,
            "--topic",
            "keyed",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--timeout",
            "0",
        ],
        "21:first\nabc:second\n",
    )
    .await;
    assert!(produced.status.success(), "{}", stderr(&produced));
    // murmur2 puts "21" on partition 0 and "abc" on partition 1 of two.
    let consumed = run(
        CONSUMER,
        &[
            "--bootstrap-server",
            &cluster.bootstrap(),
            "--topic",
            "keyed",
            "--partition",
            "1",
            "--offset",
            "earliest",
            "--property",
            "print.key=true",
            "--property",
            "print.offset=true",
            "--max-messages",
            "1",
        ],
        "",
    )
    .await;
    assert_eq!(stdout(&consumed), "Offset:0\tabc\tsecond\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_says_how_many_lines_failed_and_exits_1() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster
        .state()
        .refusing
        .insert(("t".into(), 0), ErrorCode::NotEnoughReplicas);
    let produced = run(
        PRODUCER,
        &[
            "--broker-list",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--retry-backoff-ms",
            "10",
        ],
        "one\ntwo\n",
    )
    .await;
    assert_eq!(produced.status.code(), Some(1));
    let message = stderr(&produced);
    let last = message.lines().last().unwrap();
    assert!(
        last.starts_with("ERROR 2 of 2 messages were not acknowledged: 2 x "),
        "{message}"
    );
    assert!(last.contains("NOT_ENOUGH_REPLICAS"), "{message}");
    assert!(
        message.contains(
            "Error when sending message to topic t with key: null, value: 3 bytes with error:"
        ),
        "{message}"
    );

    // A line without the key separator stops the producer, after sending
    // what came before.
    cluster.state().refusing.clear();
    let produced = run(
        PRODUCER,
        &[
            "--broker-list",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--property",
            "parse.key=true",
            "--timeout",
            "0",
        ],
        "k\tv\nno key here\n",
    )
    .await;
    assert_eq!(produced.status.code(), Some(1));
    assert_eq!(
        stderr(&produced),
        "ERROR No key separator found on line number 2: 'no key here'\n"
    );
    assert_eq!(cluster.values("t", 0).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_stops_on_sigterm_and_reports_what_it_processed() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["hello"]));
    let mut child = Command::new(CONSUMER)
        .args([
            "--bootstrap-server",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--from-beginning",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.as_deref(),
        Some("hello"),
        "the line reached the pipe at once"
    );
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(stderr(&output), "Processed a total of 1 messages\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_gives_up_after_timeout_ms_without_messages() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let started = std::time::Instant::now();
    let consumed = run(
        CONSUMER,
        &[
            "--bootstrap-server",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--timeout-ms",
            "300",
        ],
        "",
    )
    .await;
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    assert_eq!(stderr(&consumed), "Processed a total of 0 messages\n");
    assert!(started.elapsed() < Duration::from_secs(10));

    let bad = run(
        CONSUMER,
        &[
            "--bootstrap-server",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--offset",
            "5",
        ],
        "",
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad),
        "The partition is required when offset is specified.\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_config_files_are_read_with_the_properties_parser() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("producer.properties");
    std::fs::write(&path, "# a comment\ncompression.type = lz4\nlinger.ms=0\n").unwrap();
    let produced = run(
        PRODUCER,
        &[
            "--broker-list",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--producer.config",
            path.to_str().unwrap(),
        ],
        "compressed\n",
    )
    .await;
    assert!(produced.status.success(), "{}", stderr(&produced));
    {
        let state = cluster.state();
        let (_, _, batch) = &state.topics["t"].partitions[0].batches[0];
        let header = records::validate_batch(batch, usize::MAX).unwrap();
        assert_eq!(header.compression(), Some(client::Compression::Lz4));
    }

    std::fs::write(&path, "acks=2\n").unwrap();
    let refused = run(
        PRODUCER,
        &[
            "--broker-list",
            &cluster.bootstrap(),
            "--topic",
            "t",
            "--producer.config",
            path.to_str().unwrap(),
        ],
        "x\n",
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        "Invalid value 2 for configuration acks: String must be one of: all, -1, 0, 1\n"
    );
}
