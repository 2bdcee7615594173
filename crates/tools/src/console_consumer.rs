//! `kafka-console-consumer`: prints the records of a topic (or one
//! partition) to standard output, one per line, flushed as they arrive.
//! It stops at `--max-messages`, after `--timeout-ms` without a record, or
//! on SIGINT/SIGTERM; the caller then prints `Processed a total of N
//! messages` to stderr.

use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Parser;
use client::{
    Admin, AdminConfig, Consumer, ConsumerConfig, ConsumerRecord, TimestampType, TopicPartition,
};

use crate::{Failure, is_true, load_properties, parse_key_values};

/// How long one poll may wait before the loop checks its limits again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-console-consumer",
    about = "Consume messages from a Kafka topic and print them to standard output.",
    disable_version_flag = true
)]
pub struct ConsumerArgs {
    /// The server(s) to connect to, HOST1:PORT1,HOST2:PORT2.
    #[arg(long, value_name = "server to connect to")]
    pub bootstrap_server: Option<String>,
    /// The coordinator to find the brokers through, host:port.
    #[arg(long, value_name = "urls")]
    pub zookeeper: Option<String>,
    /// The topic to consume.
    #[arg(long)]
    pub topic: Option<String>,
    /// Start with the earliest message present instead of the latest.
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start in --partition: earliest, latest or an offset (default latest).
    #[arg(long, value_name = "consume offset")]
    pub offset: Option<String>,
    /// Exit after this many messages.
    #[arg(long, value_name = "num_messages")]
    pub max_messages: Option<u64>,
    /// Exit when no message arrived for this many ms.
    #[arg(long, value_name = "timeout_ms")]
    pub timeout_ms: Option<u64>,
    /// A formatter property: print.key, print.value, print.offset,
    /// print.partition, print.timestamp, print.headers, key.separator,
    /// line.separator, headers.separator, null.literal.
    #[arg(long = "property", value_name = "prop")]
    pub properties: Vec<String>,
    /// A consumer property, `name=value`; may be repeated.
    #[arg(long = "consumer-property", value_name = "consumer_prop")]
    pub consumer_properties: Vec<String>,
    /// A consumer properties file.
    #[arg(long = "consumer.config", value_name = "config file")]
    pub consumer_config: Option<PathBuf>,
    /// Accepted for compatibility; consumer groups are not supported yet,
    /// so no offsets are committed.
    #[arg(long, value_name = "consumer group id")]
    pub group: Option<String>,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// As `auto.offset.reset` says (latest unless configured).
    Default,
    Earliest,
    Latest,
    Offset(i64),
}

impl ConsumerArgs {
    fn validate(&self) -> Result<(&str, Start), Failure> {
        let topic = self
            .topic
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::usage("Missing required argument \"[topic]\""))?;
        match (&self.bootstrap_server, &self.zookeeper) {
            (None, None) => {
                return Err(Failure::usage(
                    "Missing required argument \"[bootstrap-server]\" (or \"[zookeeper]\")",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Failure::usage(
                    "Only one of --bootstrap-server or --zookeeper must be specified",
                ));
            }
            _ => {}
        }
        if let Some(partition) = self.partition
            && partition < 0
        {
            return Err(Failure::usage(format!(
                "The partition must be 0 or more, got {partition}"
            )));
        }
        let start = match (&self.offset, self.from_beginning) {
            (Some(_), true) => {
                return Err(Failure::usage(
                    "Options from-beginning and offset cannot be specified together.",
                ));
            }
            (Some(_), false) if self.partition.is_none() => {
                return Err(Failure::usage(
                    "The partition is required when offset is specified.",
                ));
            }
            (Some(offset), false) => match offset.trim().to_ascii_lowercase().as_str() {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                number => match number.parse::<i64>() {
                    Ok(offset) if offset >= 0 => Start::Offset(offset),
                    _ => {
                        return Err(Failure::usage(format!(
                            "The provided offset value '{offset}' is incorrect. Valid values are 'earliest', 'latest', or a non-negative long."
                        )));
                    }
                },
            },
            (None, true) => Start::Earliest,
            (None, false) => Start::Default,
        };
        if self.group.is_some() {
            tracing::warn!(
                "--group is accepted but consumer groups are not supported yet: no offsets are committed."
            );
        }
        Ok((topic, start))
    }

    /// The consumer configuration: file, then `--consumer-property`, then
    /// `bootstrap_servers` (resolved through the coordinator for `--zookeeper`).
    fn consumer_config(&self, bootstrap_servers: &str) -> Result<ConsumerConfig, Failure> {
        let mut properties = Vec::new();
        if let Some(path) = &self.consumer_config {
            properties.extend(load_properties(path)?);
        }
        properties.extend(parse_key_values(
            &self.consumer_properties,
            "consumer property",
        )?);
        let mut config = ConsumerConfig::default();
        config.common.client_id = "console-consumer".into();
        for (key, value) in &properties {
            if !config
                .set(key, value)
                .map_err(|err| Failure::usage(err.to_string()))?
            {
                tracing::warn!("The configuration '{key}' was supplied but isn't a known config.");
            }
        }
        config
            .set("bootstrap.servers", bootstrap_servers)
            .map_err(|err| Failure::usage(err.to_string()))?;
        Ok(config)
    }
}

/// How records are printed (`--property`), as Kafka's DefaultMessageFormatter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    pub print_timestamp: bool,
    pub print_partition: bool,
    pub print_offset: bool,
    pub print_headers: bool,
    pub print_key: bool,
    pub print_value: bool,
    pub key_separator: Vec<u8>,
    pub line_separator: Vec<u8>,
    pub headers_separator: Vec<u8>,
    pub null_literal: Vec<u8>,
}

impl Default for Formatter {
    fn default() -> Self {
        Formatter {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_headers: false,
            print_key: false,
            print_value: true,
            key_separator: b"\t".to_vec(),
            line_separator: b"\n".to_vec(),
            headers_separator: b",".to_vec(),
            null_literal: b"null".to_vec(),
        }
    }
}

impl Formatter {
    pub fn from_properties(properties: &[(String, String)]) -> Self {
        let mut formatter = Formatter::default();
        for (key, value) in properties {
            match key.as_str() {
                "print.timestamp" => formatter.print_timestamp = is_true(value),
                "print.partition" => formatter.print_partition = is_true(value),
                "print.offset" => formatter.print_offset = is_true(value),
                "print.headers" => formatter.print_headers = is_true(value),
                "print.key" => formatter.print_key = is_true(value),
                "print.value" => formatter.print_value = is_true(value),
                "key.separator" => formatter.key_separator = value.as_bytes().to_vec(),
                "line.separator" => formatter.line_separator = value.as_bytes().to_vec(),
                "headers.separator" => formatter.headers_separator = value.as_bytes().to_vec(),
                "null.literal" => formatter.null_literal = value.as_bytes().to_vec(),
                _ => tracing::warn!("Ignoring the unknown formatter property '{key}'."),
            }
        }
        formatter
    }

    /// Appends one record in Kafka's layout: timestamp, partition, offset,
    /// headers, key and value, each present field followed by the key
    /// separator (the line separator after the last one).
    pub fn write(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        let fields_after = |rest: &[bool]| rest.iter().any(|&b| b);
        let separator = |out: &mut Vec<u8>, more: bool| {
            out.extend_from_slice(if more {
                &self.key_separator
            } else {
                &self.line_separator
            });
        };
        if self.print_timestamp {
            let kind = match record.timestamp_type {
                TimestampType::CreateTime => "CreateTime",
                TimestampType::LogAppendTime => "LogAppendTime",
            };
            if record.timestamp < 0 {
                out.extend_from_slice(b"NO_TIMESTAMP");
            } else {
                out.extend_from_slice(format!("{kind}:{}", record.timestamp).as_bytes());
            }
            separator(
                out,
                fields_after(&[
                    self.print_partition,
                    self.print_offset,
                    self.print_headers,
                    self.print_key,
                    self.print_value,
                ]),
            );
        }
        if self.print_partition {
            out.extend_from_slice(format!("Partition:{}", record.partition).as_bytes());
            separator(
                out,
                fields_after(&[
                    self.print_offset,
                    self.print_headers,
                    self.print_key,
                    self.print_value,
                ]),
            );
        }
        if self.print_offset {
            out.extend_from_slice(format!("Offset:{}", record.offset).as_bytes());
            separator(
                out,
                fields_after(&[self.print_headers, self.print_key, self.print_value]),
            );
        }
        if self.print_headers {
            if record.headers.is_empty() {
                out.extend_from_slice(b"NO_HEADERS");
            }
            for (i, header) in record.headers.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(&self.headers_separator);
                }
                out.extend_from_slice(header.key.as_bytes());
                out.push(b':');
                out.extend_from_slice(header.value.as_deref().unwrap_or(&self.null_literal));
            }
            separator(out, fields_after(&[self.print_key, self.print_value]));
        }
        if self.print_key {
            out.extend_from_slice(record.key.as_deref().unwrap_or(&self.null_literal));
            separator(out, self.print_value);
        }
        if self.print_value {
            out.extend_from_slice(record.value.as_deref().unwrap_or(&self.null_literal));
            out.extend_from_slice(&self.line_separator);
        }
    }
}

/// The brokers of the cluster behind a coordinator, as a bootstrap list.
async fn brokers_from_coordinator(zookeeper: &str) -> Result<String, Failure> {
    let admin = Admin::new(
        AdminConfig::coordinator(zookeeper).map_err(|err| Failure::usage(err.to_string()))?,
    );
    let cluster = admin.describe_cluster().await?;
    let servers: Vec<String> = cluster
        .brokers
        .iter()
        .filter(|broker| broker.is_alive())
        .filter_map(|broker| {
            let endpoint = broker
                .endpoints
                .iter()
                .find(|e| e.listener == "PLAINTEXT")
                .or_else(|| broker.endpoints.first())?;
            Some(
                client::ServerAddress {
                    host: endpoint.host.clone(),
                    port: u16::try_from(endpoint.port).ok()?,
                }
                .to_string(),
            )
        })
        .collect();
    if servers.is_empty() {
        return Err(Failure::Command(anyhow!(
            "No broker of the cluster at {zookeeper} is alive"
        )));
    }
    Ok(servers.join(","))
}

/// Consumes until a limit or `shutdown`, printing to `out`. Returns how
/// many records were printed, also when it stopped on an error (then with
/// the error). A closed output (`| head`) ends the run quietly.
pub async fn run(
    args: &ConsumerArgs,
    out: &mut impl Write,
    shutdown: impl Future<Output = ()>,
) -> (u64, Result<(), Failure>) {
    let mut processed = 0;
    let result = consume(args, out, shutdown, &mut processed).await;
    (processed, result)
}

async fn consume(
    args: &ConsumerArgs,
    out: &mut impl Write,
    shutdown: impl Future<Output = ()>,
    processed: &mut u64,
) -> Result<(), Failure> {
    let (topic, start) = args.validate()?;
    let formatter = Formatter::from_properties(&parse_key_values(&args.properties, "property")?);
    let bootstrap = match (&args.bootstrap_server, &args.zookeeper) {
        (Some(servers), _) => servers.clone(),
        (None, Some(zookeeper)) => brokers_from_coordinator(zookeeper).await?,
        (None, None) => unreachable!("checked by validate()"),
    };
    let mut config = args.consumer_config(&bootstrap)?;
    if let Some(max) = args.max_messages {
        // No point fetching more than will be printed.
        config.max_poll_records = config
            .max_poll_records
            .min(usize::try_from(max.max(1)).unwrap_or(usize::MAX));
    }
    let mut consumer = Consumer::new(config)?;
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(partition) => vec![TopicPartition::new(topic, partition)],
        None => consumer
            .partitions_for(topic)
            .await?
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect(),
    };
    consumer.assign(partitions.iter().cloned());
    match start {
        Start::Default => {}
        Start::Earliest => consumer.seek_to_beginning(&partitions)?,
        Start::Latest => consumer.seek_to_end(&partitions)?,
        Start::Offset(offset) => {
            for tp in &partitions {
                consumer.seek(tp, offset)?;
            }
        }
    }
    tokio::pin!(shutdown);
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut last_record_at = Instant::now();
    let mut buffer = Vec::new();
    loop {
        if args.max_messages.is_some_and(|max| *processed >= max) {
            return Ok(());
        }
        let wait = match timeout {
            Some(timeout) => {
                let left = timeout.saturating_sub(last_record_at.elapsed());
                if left.is_zero() {
                    return Ok(());
                }
                left.min(POLL_INTERVAL)
            }
            None => POLL_INTERVAL,
        };
        let records = tokio::select! {
            () = &mut shutdown => return Ok(()),
            records = consumer.poll(wait) => records?,
        };
        if records.is_empty() {
            continue;
        }
        last_record_at = Instant::now();
        buffer.clear();
        let mut printed = 0;
        for record in &records {
            if args
                .max_messages
                .is_some_and(|max| *processed + printed >= max)
            {
                break;
            }
            formatter.write(record, &mut buffer);
            printed += 1;
        }
        match out.write_all(&buffer).and_then(|()| out.flush()) {
            Ok(()) => *processed += printed,
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => {
                return Err(Failure::Command(anyhow!(
                    "cannot write to standard output: {err}"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use client::RecordHeader;

    use super::*;

    fn parse(args: &[&str]) -> ConsumerArgs {
        ConsumerArgs::try_parse_from(
            std::iter::once("kafka-console-consumer").chain(args.iter().copied()),
        )
        .unwrap()
    }

    fn usage(args: &[&str]) -> String {
        match parse(args).validate() {
            Err(Failure::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn starting_points() {
        let start = |args: &[&str]| parse(args).validate().unwrap().1;
        assert_eq!(
            start(&["--zookeeper", "h:1", "--topic", "t", "--from-beginning"]),
            Start::Earliest
        );
        assert_eq!(
            start(&["--bootstrap-server", "h:1", "--topic", "t"]),
            Start::Default
        );
        assert_eq!(
            start(&[
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--partition",
                "0",
                "--offset",
                "5"
            ]),
            Start::Offset(5)
        );
        assert_eq!(
            start(&[
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--partition",
                "0",
                "--offset",
                "earliest"
            ]),
            Start::Earliest
        );
    }

    #[test]
    fn wrong_combinations_get_kafkas_messages() {
        assert_eq!(
            usage(&["--bootstrap-server", "h:1"]),
            "Missing required argument \"[topic]\""
        );
        assert_eq!(
            usage(&["--topic", "t"]),
            "Missing required argument \"[bootstrap-server]\" (or \"[zookeeper]\")"
        );
        assert_eq!(
            usage(&["--bootstrap-server", "h:1", "--topic", "t", "--offset", "3"]),
            "The partition is required when offset is specified."
        );
        assert_eq!(
            usage(&[
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--partition",
                "0",
                "--offset",
                "3",
                "--from-beginning"
            ]),
            "Options from-beginning and offset cannot be specified together."
        );
        assert!(
            usage(&[
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--partition",
                "0",
                "--offset",
                "x"
            ])
            .starts_with("The provided offset value 'x' is incorrect.")
        );
    }

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("hello")),
            headers: vec![
                RecordHeader {
                    key: "a".into(),
                    value: Some(Bytes::from("1")),
                },
                RecordHeader {
                    key: "b".into(),
                    value: None,
                },
            ],
        }
    }

    fn formatted(properties: &[(&str, &str)], record: &ConsumerRecord) -> String {
        let properties: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let mut out = Vec::new();
        Formatter::from_properties(&properties).write(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_print_one_per_line_by_default() {
        assert_eq!(formatted(&[], &record()), "hello\n");
        let mut null_value = record();
        null_value.value = None;
        assert_eq!(formatted(&[], &null_value), "null\n");
    }

    #[test]
    fn every_field_in_kafkas_order() {
        let all = [
            ("print.timestamp", "true"),
            ("print.partition", "true"),
            ("print.offset", "true"),
            ("print.headers", "true"),
            ("print.key", "true"),
        ];
        assert_eq!(
            formatted(&all, &record()),
            "CreateTime:1700000000000\tPartition:2\tOffset:41\ta:1,b:null\tk\thello\n"
        );
        assert_eq!(
            formatted(&[("print.key", "true"), ("key.separator", ":")], &record()),
            "k:hello\n"
        );
        assert_eq!(
            formatted(
                &[("print.offset", "true"), ("print.value", "false")],
                &record()
            ),
            "Offset:41\n"
        );
    }
}
