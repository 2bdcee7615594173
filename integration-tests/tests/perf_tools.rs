//! The performance tools against a real single-broker cluster: Kafka's
//! output formats, the counts they report (the consumer perf test reads
//! back exactly what the producer perf test sent), and their one-line
//! errors with exit status 1 for bad arguments and an unreachable cluster.

use std::net::TcpListener;

use anyhow::{Context, Result, bail, ensure};
use integration_tests::{Cluster, ToolOutput, ok};

const PRODUCER_PERF: &str = "kafka-producer-perf-test";
const CONSUMER_PERF: &str = "kafka-consumer-perf-test";
const E2E: &str = "kafka-e2e-latency";

/// Expects exit status 1 and exactly one line on stderr; returns it.
fn one_line_failure(output: &ToolOutput) -> Result<String> {
    ensure!(
        output.status.code() == Some(1),
        "expected exit 1, got {:?}; stderr: {}",
        output.status,
        output.stderr
    );
    let lines: Vec<&str> = output.stderr.lines().collect();
    ensure!(
        lines.len() == 1,
        "expected one line, got {:?}",
        output.stderr
    );
    Ok(lines[0].to_owned())
}

/// Splits `line` at each literal piece of `pattern` (`{}` marks a field)
/// and returns the fields, or fails naming the line.
fn fields(line: &str, pattern: &str) -> Result<Vec<String>> {
    let pieces: Vec<&str> = pattern.split("{}").collect();
    let mut rest = line
        .strip_prefix(pieces[0])
        .with_context(|| format!("{line:?} does not start like {pattern:?}"))?;
    let mut out = Vec::new();
    for piece in &pieces[1..] {
        let end = if piece.is_empty() {
            rest.len()
        } else {
            rest.find(piece)
                .with_context(|| format!("{line:?} does not match {pattern:?}"))?
        };
        out.push(rest[..end].to_owned());
        rest = &rest[end + piece.len()..];
    }
    ensure!(rest.is_empty(), "{line:?} has more than {pattern:?}");
    Ok(out)
}

fn number(text: &str) -> Result<f64> {
    text.parse::<f64>()
        .with_context(|| format!("{text:?} is not a number"))
}

/// Asserts each field is a number with exactly `decimals` decimals.
fn decimals(field: &str, decimals: usize) -> Result<f64> {
    let value = number(field)?;
    let found = field.split_once('.').map_or(0, |(_, d)| d.len());
    ensure!(
        found == decimals,
        "{field:?} should have {decimals} decimals"
    );
    Ok(value)
}

const SUMMARY: &str = "{} records sent, {} records/sec ({} MB/sec), {} ms avg latency, {} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.";
const PROGRESS: &str =
    "{} records sent, {} records/sec ({} MB/sec), {} ms avg latency, {} ms max latency.";
const HEADER: &str = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";
const DETAILED_HEADER: &str = "time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";

/// Checks a producer summary line and returns (records, records/sec).
fn check_summary(line: &str) -> Result<(u64, f64)> {
    let f = fields(line, SUMMARY)?;
    let records: u64 = f[0].parse()?;
    let rate = decimals(&f[1], 6)?;
    decimals(&f[2], 2)?;
    let average = decimals(&f[3], 2)?;
    let max = decimals(&f[4], 2)?;
    let percentiles: Vec<u64> = f[5..]
        .iter()
        .map(|p| {
            p.parse::<u64>()
                .with_context(|| format!("percentile {p:?}"))
        })
        .collect::<Result<_>>()?;
    ensure!(average <= max, "{line}");
    ensure!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "percentiles must not decrease: {line}"
    );
    ensure!(percentiles[3] as f64 <= max, "{line}");
    Ok((records, rate))
}

/// Checks a consumer summary line; returns (MB, messages).
fn check_consumer_line(line: &str) -> Result<(f64, u64)> {
    let f: Vec<&str> = line.split(", ").collect();
    ensure!(f.len() == 10, "{line}");
    for time in &f[..2] {
        // yyyy-MM-dd HH:mm:ss:SSS
        ensure!(
            time.len() == 23 && &time[4..5] == "-" && &time[19..20] == ":",
            "{time}"
        );
    }
    let megabytes = decimals(f[2], 4)?;
    decimals(f[3], 4)?;
    let messages: u64 = f[4].parse()?;
    decimals(f[5], 4)?;
    ensure!(f[6] == "0", "no group, no rebalance: {line}");
    f[7].parse::<u64>()?;
    decimals(f[8], 4)?;
    decimals(f[9], 4)?;
    Ok((megabytes, messages))
}

/// An address nothing listens on.
fn dead_address() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    drop(listener);
    Ok(address)
}

#[test]
fn producer_and_consumer_perf_tests_report_what_they_moved() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let servers = format!("bootstrap.servers={bootstrap}");

    let produced = ok(cluster.tool(
        PRODUCER_PERF,
        &[
            "--topic",
            "perf",
            "--num-records",
            "5000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &servers,
            "acks=1",
            "--print-metrics",
        ],
    )?)?;
    let lines = produced.stdout_lines();
    let summary = lines
        .iter()
        .find(|l| l.contains(" ms 99.9th."))
        .with_context(|| format!("no summary in {:?}", produced.stdout))?;
    let (records, _) = check_summary(summary)?;
    assert_eq!(records, 5000);
    assert!(
        produced
            .stdout
            .contains("producer-metrics:record-send-total:{client-id=producer-perf-test}"),
        "{}",
        produced.stdout
    );

    let consumed = ok(cluster.tool(
        CONSUMER_PERF,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "perf",
            "--messages",
            "5000",
        ],
    )?)?;
    let lines = consumed.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", consumed.stdout);
    assert_eq!(lines[0], HEADER);
    let (megabytes, messages) = check_consumer_line(lines[1])?;
    assert_eq!(messages, 5000);
    // 5000 records of 100 bytes, in Kafka's megabytes of 1024 * 1024.
    assert_eq!(format!("{megabytes:.4}"), "0.4768");

    let detailed = ok(cluster.tool(
        CONSUMER_PERF,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "perf",
            "--messages",
            "5000",
            "--show-detailed-stats",
            "--reporting-interval",
            "1",
        ],
    )?)?;
    let lines = detailed.stdout_lines();
    assert_eq!(lines[0], DETAILED_HEADER);
    let mut last = 0;
    for line in &lines[1..] {
        let f: Vec<&str> = line.split(", ").collect();
        assert_eq!(f.len(), 10, "{line}");
        assert_eq!(f[1], "0", "{line}");
        let so_far: u64 = f[4].parse()?;
        assert!(so_far >= last && so_far <= 5000, "{line}");
        last = so_far;
    }

    // Nothing new arrives after the end: the warning, then zero messages.
    let latest = ok(cluster.tool(
        CONSUMER_PERF,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "perf",
            "--messages",
            "1",
            "--from-latest",
            "--timeout",
            "500",
        ],
    )?)?;
    let lines = latest.stdout_lines();
    assert_eq!(lines.len(), 3, "{}", latest.stdout);
    assert_eq!(lines[0], HEADER);
    assert_eq!(
        lines[1],
        "WARNING: Exiting before consuming the expected number of messages: timeout (500 ms) exceeded. You can use the --timeout option to increase the timeout."
    );
    assert_eq!(check_consumer_line(lines[2])?, (0.0, 0));
    Ok(())
}

#[test]
fn a_throttled_producer_prints_progress_and_keeps_to_its_rate() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let servers = format!("bootstrap.servers={}", cluster.bootstrap_servers());
    // 600 records at 100/s: six seconds, so one progress line at five.
    let produced = ok(cluster.tool(
        PRODUCER_PERF,
        &[
            "--topic",
            "throttled",
            "--num-records",
            "600",
            "--record-size",
            "10",
            "--throughput",
            "100",
            "--producer-props",
            &servers,
        ],
    )?)?;
    let lines = produced.stdout_lines();
    assert!(lines.len() >= 2, "{}", produced.stdout);
    for progress in &lines[..lines.len() - 1] {
        let f = fields(progress, PROGRESS)?;
        f[0].parse::<u64>()?;
        decimals(&f[1], 1)?;
        decimals(&f[2], 2)?;
        decimals(&f[3], 1)?;
        decimals(&f[4], 1)?;
    }
    let (records, rate) = check_summary(lines[lines.len() - 1])?;
    assert_eq!(records, 600);
    // The throttle never runs ahead of the target since the start.
    assert!(rate <= 100.0, "{rate}");
    Ok(())
}

#[test]
fn end_to_end_latency_prints_kafkas_lines() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let output = ok(cluster.tool(E2E, &[&bootstrap, "latency", "1001", "all", "100"])?)?;
    let lines = output.stdout_lines();
    // Round trips 0 and 1000 are reported, then the results.
    assert_eq!(lines.len(), 4, "{}", output.stdout);
    for (line, round) in lines[..2].iter().zip(["0", "1000"]) {
        let (index, ms) = line.split_once('\t').context("no tab")?;
        assert_eq!(index, round);
        assert!(number(ms)? > 0.0, "{line}");
    }
    let average = fields(lines[2], "Avg latency: {} ms")?;
    assert!(decimals(&average[0], 4)? > 0.0);
    let percentiles = fields(lines[3], "Percentiles: 50th = {}, 99th = {}, 99.9th = {}")?;
    let values: Vec<u64> = percentiles
        .iter()
        .map(|p| p.parse::<u64>())
        .collect::<Result<_, _>>()?;
    assert!(
        values[0] <= values[1] && values[1] <= values[2],
        "{}",
        lines[3]
    );

    // What was produced is there to read: 1001 records.
    let consumed = ok(cluster.tool(
        CONSUMER_PERF,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "latency",
            "--messages",
            "1001",
        ],
    )?)?;
    assert_eq!(check_consumer_line(consumed.stdout_lines()[1])?.1, 1001);
    Ok(())
}

#[test]
fn bad_arguments_and_unreachable_clusters_fail_in_one_line() -> Result<()> {
    let dead = dead_address()?;
    let dead_props = format!("bootstrap.servers={dead}");
    let run = |name: &str, args: &[&str]| {
        integration_tests::run_tool(name, args, None, std::time::Duration::from_secs(60))
    };

    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            PRODUCER_PERF,
            vec![
                "--topic",
                "t",
                "--num-records",
                "1",
                "--throughput",
                "-1",
                "--producer-props",
                &dead_props,
            ],
            "Either --record-size or --payload-file must be specified but not both.",
        ),
        (
            PRODUCER_PERF,
            vec![
                "--topic",
                "t",
                "--num-records",
                "x",
                "--record-size",
                "1",
                "--throughput",
                "-1",
            ],
            "Error: invalid value 'x' for '--num-records <NUM-RECORDS>'",
        ),
        (
            PRODUCER_PERF,
            vec![
                "--topic",
                "t",
                "--num-records",
                "1",
                "--record-size",
                "1",
                "--throughput",
                "-1",
                "--producer-props",
                "acks=2",
                &dead_props,
            ],
            "Invalid value 2 for configuration acks",
        ),
        (
            CONSUMER_PERF,
            vec!["--topic", "t", "--messages", "1"],
            "Missing required argument \"[bootstrap-server]\"",
        ),
        (
            E2E,
            vec![&dead, "t", "10", "0", "100"],
            "Latency testing requires synchronous acknowledgement. Please use 1 or all",
        ),
        (
            E2E,
            vec![&dead, "t"],
            "Error: the following required arguments were not provided:",
        ),
        (
            PRODUCER_PERF,
            vec![
                "--topic",
                "t",
                "--num-records",
                "1",
                "--record-size",
                "1",
                "--throughput",
                "-1",
                "--producer-props",
                &dead_props,
            ],
            "ERROR no server could be reached at",
        ),
        (
            CONSUMER_PERF,
            vec![
                "--bootstrap-server",
                &dead,
                "--topic",
                "t",
                "--messages",
                "1",
            ],
            "ERROR no server could be reached at",
        ),
        (
            E2E,
            vec![&dead, "t", "10", "all", "100"],
            "ERROR no server could be reached at",
        ),
    ];
    for (tool, args, expected) in cases {
        let output = run(tool, &args)?;
        let line = one_line_failure(&output).with_context(|| format!("{tool} {args:?}"))?;
        if !line.starts_with(expected) {
            bail!("{tool} {args:?}: expected {expected:?}, got {line:?}");
        }
    }
    Ok(())
}
