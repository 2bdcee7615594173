//! `kafka-consumer-perf-test`: reads `--messages` records of a topic (all
//! its partitions, from the start or with `--from-latest` from the end)
//! with the client's `Consumer` and prints Kafka's CSV header and line; with
//! `--show-detailed-stats`, a line per `--reporting-interval` instead.
//!
//! Consumer groups are not part of the client yet, so partitions are
//! assigned, not subscribed: `rebalance.time.ms` is always 0 and the fetch
//! time is the whole run.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use client::{Consumer, TopicPartition};

use crate::perf::{MEGABYTE, consumer_config, ensure_reachable, write_line};
use crate::{Failure, load_properties};

/// The longest a single poll waits before the loop checks its limits.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-consumer-perf-test",
    about = "This tool is used to verify the consumer performance.",
    disable_version_flag = true
)]
pub struct ConsumerPerfArgs {
    /// The server(s) to connect to, HOST1:PORT1,HOST2:PORT2.
    #[arg(long, value_name = "server to connect to", alias = "broker-list")]
    pub bootstrap_server: Option<String>,
    /// The topic to consume from.
    #[arg(long)]
    pub topic: Option<String>,
    /// The number of messages to consume.
    #[arg(long, visible_alias = "num-records", value_name = "count")]
    pub messages: Option<u64>,
    /// Report the figures of each reporting interval.
    #[arg(long = "show-detailed-stats")]
    pub show_detailed_stats: bool,
    /// Start at the end of the topic instead of its beginning.
    #[arg(long = "from-latest")]
    pub from_latest: bool,
    /// How long to wait for a record before giving up, in ms.
    #[arg(long, value_name = "milliseconds", default_value_t = 10_000)]
    pub timeout: u64,
    /// The interval between detailed reports, in ms.
    #[arg(
        long = "reporting-interval",
        value_name = "milliseconds",
        default_value_t = 5000
    )]
    pub reporting_interval: u64,
    /// The bytes to fetch per partition per request (max.partition.fetch.bytes).
    #[arg(long = "fetch-size", value_name = "size", default_value_t = 1_048_576)]
    pub fetch_size: i32,
    /// A consumer properties file.
    #[arg(long = "consumer.config", value_name = "config file")]
    pub consumer_config: Option<PathBuf>,
    /// Leave out the CSV header.
    #[arg(long = "hide-header")]
    pub hide_header: bool,
    /// Accepted for compatibility; consumer groups are not supported yet,
    /// so partitions are assigned and no offsets are committed.
    #[arg(long, value_name = "gid")]
    pub group: Option<String>,
}

impl ConsumerPerfArgs {
    fn validate(&self) -> Result<(&str, &str, u64), Failure> {
        let servers = self
            .bootstrap_server
            .as_deref()
            .ok_or_else(|| Failure::usage("Missing required argument \"[bootstrap-server]\""))?;
        let topic = self
            .topic
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::usage("Missing required argument \"[topic]\""))?;
        let messages = self
            .messages
            .ok_or_else(|| Failure::usage("Missing required argument \"[messages]\""))?;
        if self.reporting_interval == 0 {
            return Err(Failure::usage("--reporting-interval must be positive"));
        }
        if self.fetch_size <= 0 {
            return Err(Failure::usage("--fetch-size must be positive"));
        }
        Ok((servers, topic, messages))
    }
}

/// Kafka's header; the detailed one starts with `time, threadId`.
pub fn header(detailed: bool) -> &'static str {
    if detailed {
        "time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec"
    } else {
        "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec"
    }
}

/// Kafka's `yyyy-MM-dd HH:mm:ss:SSS`, local time.
fn format_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(at)
        .format("%Y-%m-%d %H:%M:%S:%3f")
        .to_string()
}

/// The summary line: from `start` to `end`, `bytes` and `messages` read.
pub fn summary_line(start: SystemTime, end: SystemTime, bytes: u64, messages: u64) -> String {
    let elapsed_ms = end
        .duration_since(start)
        .map_or(0, |d| d.as_millis() as u64);
    let seconds = elapsed_ms as f64 / 1000.0;
    let megabytes = bytes as f64 / MEGABYTE;
    // No group to join: the whole run is fetch time.
    let rebalance_ms = 0u64;
    let fetch_ms = elapsed_ms - rebalance_ms;
    let fetch_seconds = fetch_ms as f64 / 1000.0;
    format!(
        "{}, {}, {megabytes:.4}, {:.4}, {messages}, {:.4}, {rebalance_ms}, {fetch_ms}, {:.4}, {:.4}",
        format_time(start),
        format_time(end),
        per_second(megabytes, seconds),
        per_second(messages as f64, seconds),
        per_second(megabytes, fetch_seconds),
        per_second(messages as f64, fetch_seconds),
    )
}

/// A rate, 0 rather than infinite for a run too short to time.
fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

/// One `--show-detailed-stats` line: totals so far and the interval's rates.
struct Interval {
    at: Instant,
    bytes: u64,
    messages: u64,
}

fn detailed_line(now: SystemTime, last: &Interval, bytes: u64, messages: u64) -> String {
    let elapsed = last.at.elapsed();
    let seconds = elapsed.as_secs_f64();
    let interval_mb = (bytes - last.bytes) as f64 / MEGABYTE;
    let interval_messages = (messages - last.messages) as f64;
    format!(
        "{}, 0, {:.4}, {:.4}, {messages}, {:.4}, 0, {}, {:.4}, {:.4}",
        format_time(now),
        bytes as f64 / MEGABYTE,
        per_second(interval_mb, seconds),
        per_second(interval_messages, seconds),
        elapsed.as_millis(),
        per_second(interval_mb, seconds),
        per_second(interval_messages, seconds),
    )
}

/// Runs the test, writing Kafka's lines to `out`.
pub async fn run(args: &ConsumerPerfArgs, out: &mut impl Write) -> Result<(), Failure> {
    let (servers, topic, wanted) = args.validate()?;
    let mut properties = Vec::new();
    if let Some(path) = &args.consumer_config {
        properties.extend(load_properties(path)?);
    }
    properties.push(("bootstrap.servers".to_owned(), servers.to_owned()));
    properties.push((
        "max.partition.fetch.bytes".to_owned(),
        args.fetch_size.to_string(),
    ));
    if !properties.iter().any(|(key, _)| key == "client.id") {
        properties.insert(
            0,
            ("client.id".to_owned(), "perf-consumer-client".to_owned()),
        );
    }
    let config = consumer_config(&properties)?;
    ensure_reachable(&config.common.bootstrap_servers).await?;
    let mut consumer = Consumer::new(config)?;
    let partitions: Vec<TopicPartition> = consumer
        .partitions_for(topic)
        .await?
        .iter()
        .map(|p| TopicPartition::new(topic, p.partition))
        .collect();
    consumer.assign(partitions.iter().cloned());
    if args.from_latest {
        consumer.seek_to_end(&partitions)?;
    } else {
        consumer.seek_to_beginning(&partitions)?;
    }
    if !args.hide_header {
        write_line(out, header(args.show_detailed_stats))?;
    }
    let timeout = Duration::from_millis(args.timeout);
    let reporting = Duration::from_millis(args.reporting_interval);
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let mut last_record_at = start;
    let mut last = Interval {
        at: start,
        bytes: 0,
        messages: 0,
    };
    let mut messages = 0u64;
    let mut bytes = 0u64;
    while messages < wanted && last_record_at.elapsed() <= timeout {
        let records = consumer.poll(POLL_INTERVAL).await?;
        if !records.is_empty() {
            last_record_at = Instant::now();
        }
        let take = records.len().min((wanted - messages) as usize);
        for record in &records[..take] {
            bytes += record.key.as_ref().map_or(0, |k| k.len() as u64)
                + record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
        messages += take as u64;
        if args.show_detailed_stats && last.at.elapsed() >= reporting {
            write_line(
                out,
                &detailed_line(SystemTime::now(), &last, bytes, messages),
            )?;
            last = Interval {
                at: Instant::now(),
                bytes,
                messages,
            };
        }
    }
    let end_wall = SystemTime::now();
    if messages < wanted {
        write_line(
            out,
            &format!(
                "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded. You can use the --timeout option to increase the timeout.",
                args.timeout
            ),
        )?;
    }
    if !args.show_detailed_stats {
        write_line(out, &summary_line(start_wall, end_wall, bytes, messages))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_kafkas_columns() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let end = start + Duration::from_millis(2000);
        let line = summary_line(start, end, 4 * 1024 * 1024, 1000);
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields.len(), header(false).split(", ").count());
        assert_eq!(
            &fields[2..],
            &[
                "4.0000", "2.0000", "1000", "500.0000", "0", "2000", "2.0000", "500.0000"
            ]
        );
        // yyyy-MM-dd HH:mm:ss:SSS
        assert_eq!(fields[0].len(), 23, "{}", fields[0]);
        assert_eq!(&fields[0][19..20], ":");
    }

    #[test]
    fn missing_arguments_are_named() {
        let args =
            ConsumerPerfArgs::try_parse_from(["t", "--topic", "x", "--messages", "1"]).unwrap();
        match args.validate() {
            Err(Failure::Usage(message)) => {
                assert_eq!(message, "Missing required argument \"[bootstrap-server]\"");
            }
            other => panic!("{other:?}"),
        }
    }
}
