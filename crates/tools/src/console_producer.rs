//! `kafka-console-producer`: each line of standard input becomes one
//! record. At the end of input (or on SIGINT/SIGTERM) it waits for every
//! record's acknowledgement; the exit status is 0 only if all were
//! acknowledged, otherwise it says how many failed and why.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use client::{ClientError, Producer, ProducerConfig, ProducerRecord};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::{Failure, is_true, load_properties, parse_key_values};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-console-producer",
    about = "Read data from standard input and publish it to Kafka.",
    disable_version_flag = true
)]
pub struct ProducerArgs {
    /// The broker list string in the form HOST1:PORT1,HOST2:PORT2.
    #[arg(long, value_name = "broker-list")]
    pub broker_list: Option<String>,
    /// The server(s) to connect to, HOST1:PORT1,HOST2:PORT2.
    #[arg(long, value_name = "server to connect to")]
    pub bootstrap_server: Option<String>,
    /// The topic to produce messages to.
    #[arg(long)]
    pub topic: Option<String>,
    /// The required acks of the producer requests: all, -1, 0 or 1 (default all).
    #[arg(long, value_name = "request required acks")]
    pub request_required_acks: Option<String>,
    /// The compression codec: none, gzip, snappy, lz4 or zstd. Given
    /// without a value it is gzip.
    #[arg(long, value_name = "compression-codec", num_args = 0..=1, default_missing_value = "gzip")]
    pub compression_codec: Option<String>,
    /// Bytes of messages per partition batch (batch.size, default 16384).
    #[arg(long, value_name = "size")]
    pub batch_size: Option<String>,
    /// How long a batch waits for more messages, in ms (linger.ms, default 1000).
    #[arg(long, value_name = "timeout_ms")]
    pub timeout: Option<String>,
    /// Retries of a failed send (retries, default 10, where Kafka's tool has
    /// 3: with retry.backoff.ms doubling up to 1 s, ten retries span about
    /// 7.5 s, which rides through a leader failover, even one detected by a
    /// 6 s session timeout, without losing a line).
    #[arg(long, value_name = "Integer")]
    pub message_send_max_retries: Option<String>,
    /// Pause before a retry, in ms (retry.backoff.ms, default 100).
    #[arg(long, value_name = "Integer")]
    pub retry_backoff_ms: Option<String>,
    /// How long to wait for an acknowledgement, in ms (request.timeout.ms, default 1500).
    #[arg(long, value_name = "request timeout ms")]
    pub request_timeout_ms: Option<String>,
    /// How long a send may block for metadata or buffer space (max.block.ms, default 60000).
    #[arg(long, value_name = "max block on send")]
    pub max_block_ms: Option<String>,
    /// Bytes of messages waiting to be sent (buffer.memory, default 33554432).
    #[arg(long, value_name = "total memory in bytes")]
    pub max_memory_bytes: Option<String>,
    /// Wait for each message's acknowledgement before reading the next line.
    #[arg(long)]
    pub sync: bool,
    /// A producer property, `name=value`; may be repeated.
    #[arg(long = "producer-property", value_name = "producer_prop")]
    pub producer_properties: Vec<String>,
    /// A producer properties file.
    #[arg(long = "producer.config", value_name = "config file")]
    pub producer_config: Option<PathBuf>,
    /// A line reader property: parse.key, key.separator, ignore.error.
    #[arg(long = "property", value_name = "prop")]
    pub properties: Vec<String>,
}

/// How lines become records (`--property`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReader {
    pub parse_key: bool,
    pub key_separator: String,
    /// With parse.key: a line without the separator is sent whole as the
    /// value instead of stopping the producer.
    pub ignore_error: bool,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader {
            parse_key: false,
            key_separator: "\t".to_owned(),
            ignore_error: false,
        }
    }
}

impl LineReader {
    fn from_properties(properties: &[(String, String)]) -> Self {
        let mut reader = LineReader::default();
        for (key, value) in properties {
            match key.as_str() {
                "parse.key" => reader.parse_key = is_true(value),
                "key.separator" => reader.key_separator.clone_from(value),
                "ignore.error" => reader.ignore_error = is_true(value),
                _ => tracing::warn!("Ignoring the unknown line reader property '{key}'."),
            }
        }
        reader
    }

    /// The key and value of one line (without its line ending); `Err` with
    /// Kafka's message when a key is expected but the separator is missing.
    pub fn split(&self, line: &[u8], line_number: u64) -> Result<(Option<Bytes>, Bytes), String> {
        if !self.parse_key {
            return Ok((None, Bytes::copy_from_slice(line)));
        }
        let separator = self.key_separator.as_bytes();
        let found = if separator.is_empty() {
            None
        } else {
            line.windows(separator.len()).position(|w| w == separator)
        };
        match found {
            Some(at) => Ok((
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + separator.len()..]),
            )),
            None if self.ignore_error => Ok((None, Bytes::copy_from_slice(line))),
            None => Err(format!(
                "No key separator found on line number {line_number}: '{}'",
                String::from_utf8_lossy(line)
            )),
        }
    }
}

impl ProducerArgs {
    /// The producer configuration: the properties file, then
    /// `--producer-property`, then the explicit options; an option left out
    /// fills in its console default only where nothing else set the key
    /// (Kafka's `maybeMergeOptions`).
    pub fn producer_config(&self) -> Result<ProducerConfig, Failure> {
        let servers = match (&self.bootstrap_server, &self.broker_list) {
            (Some(servers), _) | (None, Some(servers)) => servers.clone(),
            (None, None) => {
                return Err(Failure::usage(
                    "Missing required argument \"[bootstrap-server]\" (or \"[broker-list]\")",
                ));
            }
        };
        let mut properties: Vec<(String, String)> = Vec::new();
        if let Some(path) = &self.producer_config {
            properties.extend(load_properties(path)?);
        }
        properties.extend(parse_key_values(
            &self.producer_properties,
            "producer property",
        )?);
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in &properties {
            merged.insert(key.clone(), value.clone());
        }
        merged.insert("bootstrap.servers".into(), servers);
        let options: [(&str, &Option<String>, &str); 9] = [
            ("acks", &self.request_required_acks, "all"),
            ("compression.type", &self.compression_codec, "none"),
            ("batch.size", &self.batch_size, "16384"),
            ("linger.ms", &self.timeout, "1000"),
            ("retries", &self.message_send_max_retries, "10"),
            ("retry.backoff.ms", &self.retry_backoff_ms, "100"),
            ("request.timeout.ms", &self.request_timeout_ms, "1500"),
            ("max.block.ms", &self.max_block_ms, "60000"),
            ("buffer.memory", &self.max_memory_bytes, "33554432"),
        ];
        for (key, option, default) in options {
            match option {
                Some(value) => {
                    merged.insert(key.into(), value.clone());
                }
                None => {
                    merged
                        .entry(key.into())
                        .or_insert_with(|| default.to_owned());
                }
            }
        }
        merged
            .entry("client.id".into())
            .or_insert_with(|| "console-producer".into());
        let mut config = ProducerConfig::default();
        for (key, value) in &merged {
            if !config
                .set(key, value)
                .map_err(|err| Failure::usage(err.to_string()))?
            {
                tracing::warn!("The configuration '{key}' was supplied but isn't a known config.");
            }
        }
        // As Kafka's producer does when delivery.timeout.ms was not set: raise
        // it to linger.ms + request.timeout.ms rather than refuse the mix.
        if !merged.contains_key("delivery.timeout.ms") {
            let minimum = config.linger_ms + config.common.request_timeout_ms;
            config.delivery_timeout_ms = config.delivery_timeout_ms.max(minimum);
        }
        config
            .validate()
            .map_err(|err| Failure::usage(err.to_string()))?;
        Ok(config)
    }

    fn topic(&self) -> Result<&str, Failure> {
        self.topic
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::usage("Missing required argument \"[topic]\""))
    }
}

/// What became of the lines read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProduceSummary {
    /// Lines read and handed to the producer (or refused by it at once).
    pub records: u64,
    pub failed: u64,
    /// Failure reasons and how many records each.
    pub reasons: BTreeMap<String, u64>,
    /// Why reading stopped early (a line without a key separator).
    pub aborted: Option<String>,
}

impl ProduceSummary {
    fn fail(&mut self, reason: String) {
        self.failed += 1;
        *self.reasons.entry(reason).or_default() += 1;
    }

    /// Whether every record was acknowledged and all input was read.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.aborted.is_none()
    }

    /// The closing message for a run that did not fully succeed.
    pub fn failure_message(&self) -> Option<String> {
        if self.is_success() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(aborted) = &self.aborted {
            parts.push(aborted.clone());
        }
        if self.failed > 0 {
            let reasons: Vec<String> = self
                .reasons
                .iter()
                .map(|(reason, count)| format!("{count} x {reason}"))
                .collect();
            parts.push(format!(
                "{} of {} messages were not acknowledged: {}",
                self.failed,
                self.records,
                reasons.join("; ")
            ));
        }
        Some(parts.join(". "))
    }
}

/// Outcome of one record, with what is needed to log its failure.
struct Sent {
    result: Result<client::RecordMetadata, ClientError>,
    key: Option<Bytes>,
    value_len: usize,
}

fn log_failure(topic: &str, key: Option<&Bytes>, value_len: usize, error: &ClientError) {
    let key = key.map_or_else(|| "null".to_owned(), |k| format!("{} bytes", k.len()));
    tracing::error!(
        "Error when sending message to topic {topic} with key: {key}, value: {value_len} bytes with error: {error}"
    );
}

/// Reads `input` line by line and produces each line, until the end of the
/// input or `shutdown`; then waits for every acknowledgement.
pub async fn run(
    args: &ProducerArgs,
    mut input: impl AsyncBufRead + Unpin,
    shutdown: impl Future<Output = ()>,
) -> Result<ProduceSummary, Failure> {
    let topic = args.topic()?.to_owned();
    let config = args.producer_config()?;
    let reader = LineReader::from_properties(&parse_key_values(&args.properties, "property")?);
    let producer = Producer::new(config)?;
    let mut summary = ProduceSummary::default();
    let mut pending = FuturesUnordered::new();
    let mut line = Vec::new();
    let mut line_number = 0u64;
    tokio::pin!(shutdown);
    loop {
        let read = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(sent) = pending.next(), if !pending.is_empty() => {
                note(&mut summary, &topic, sent);
                continue;
            }
            // Cancel-safe here: a partial line stays in `line` for the next call.
            read = input.read_until(b'\n', &mut line) => read,
        };
        let read = read.map_err(|err| {
            Failure::Command(anyhow::anyhow!("cannot read standard input: {err}"))
        })?;
        if read == 0 && line.is_empty() {
            break;
        }
        let end_of_input = read == 0 || line.last() != Some(&b'\n');
        line_number += 1;
        let text = strip_line_ending(&line);
        let (key, value) = match reader.split(text, line_number) {
            Ok(split) => split,
            Err(message) => {
                summary.aborted = Some(message);
                break;
            }
        };
        line.clear();
        summary.records += 1;
        let value_len = value.len();
        let mut record = ProducerRecord::new(topic.clone(), value);
        record.key = key.clone();
        match producer.send(record).await {
            Ok(delivery) if args.sync => {
                let result = delivery.await;
                note(
                    &mut summary,
                    &topic,
                    Sent {
                        result,
                        key,
                        value_len,
                    },
                );
            }
            Ok(delivery) => pending.push(async move {
                Sent {
                    result: delivery.await,
                    key,
                    value_len,
                }
            }),
            Err(error) => note(
                &mut summary,
                &topic,
                Sent {
                    result: Err(error),
                    key,
                    value_len,
                },
            ),
        }
        if end_of_input {
            break;
        }
    }
    // Everything read is sent now; linger no more.
    let _ = producer.flush().await;
    while let Some(sent) = pending.next().await {
        note(&mut summary, &topic, sent);
    }
    // Failures were counted record by record above; close only waits.
    let _ = producer.close().await;
    Ok(summary)
}

fn note(summary: &mut ProduceSummary, topic: &str, sent: Sent) {
    let Sent {
        result,
        key,
        value_len,
    } = sent;
    if let Err(error) = result {
        log_failure(topic, key.as_ref(), value_len, &error);
        summary.fail(error.to_string());
    }
}

/// A line without its `\n` or `\r\n`, as Java's `readLine` gives it.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::{Acks, Compression};

    fn parse(args: &[&str]) -> ProducerArgs {
        ProducerArgs::try_parse_from(
            std::iter::once("kafka-console-producer").chain(args.iter().copied()),
        )
        .unwrap()
    }

    #[test]
    fn the_quickstart_command_gets_console_defaults() {
        let config = parse(&["--broker-list", "localhost:9092", "--topic", "test"])
            .producer_config()
            .unwrap();
        assert_eq!(config.acks, Acks::All);
        assert_eq!(config.linger_ms, 1000);
        assert_eq!(config.retries, 10);
        assert_eq!(config.common.request_timeout_ms, 1500);
        assert_eq!(config.compression_type, Compression::None);
        assert_eq!(config.common.client_id, "console-producer");
        assert_eq!(
            config.common.bootstrap_servers[0].to_string(),
            "localhost:9092"
        );
    }

    #[test]
    fn options_override_properties_which_override_console_defaults() {
        let args = parse(&[
            "--bootstrap-server",
            "h:1",
            "--topic",
            "t",
            "--producer-property",
            "linger.ms=7",
            "--producer-property",
            "acks=1",
            "--request-required-acks",
            "0",
            "--compression-codec",
            "--batch-size",
            "100",
        ]);
        let config = args.producer_config().unwrap();
        assert_eq!(config.linger_ms, 7, "a property beats an option's default");
        assert_eq!(
            config.acks,
            Acks::None,
            "an explicit option beats a property"
        );
        assert_eq!(
            config.compression_type,
            Compression::Gzip,
            "--compression-codec alone means gzip"
        );
        assert_eq!(config.batch_size, 100);
    }

    #[test]
    fn bad_values_and_missing_arguments_are_one_line_errors() {
        let Err(Failure::Usage(message)) = parse(&["--topic", "t"]).producer_config() else {
            panic!("accepted no broker list");
        };
        assert_eq!(
            message,
            "Missing required argument \"[bootstrap-server]\" (or \"[broker-list]\")"
        );
        let Err(Failure::Usage(message)) = parse(&[
            "--broker-list",
            "h:1",
            "--topic",
            "t",
            "--request-required-acks",
            "2",
        ])
        .producer_config() else {
            panic!("accepted acks=2");
        };
        assert_eq!(
            message,
            "Invalid value 2 for configuration acks: String must be one of: all, -1, 0, 1"
        );
        let Err(Failure::Usage(message)) = parse(&[
            "--broker-list",
            "h:1",
            "--topic",
            "t",
            "--compression-codec",
            "brotli",
        ])
        .producer_config() else {
            panic!("accepted brotli");
        };
        assert!(
            message.starts_with("Invalid value brotli for configuration compression.type"),
            "{message}"
        );
        assert!(matches!(
            parse(&["--broker-list", "h:1"]).topic(),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn lines_split_into_key_and_value() {
        let plain = LineReader::default();
        assert_eq!(plain.split(b"a:b", 1).unwrap(), (None, Bytes::from("a:b")));
        let keyed = LineReader::from_properties(&[
            ("parse.key".into(), "true".into()),
            ("key.separator".into(), ":".into()),
        ]);
        assert_eq!(
            keyed.split(b"k:v:w", 1).unwrap(),
            (Some(Bytes::from("k")), Bytes::from("v:w"))
        );
        assert_eq!(
            keyed.split(b":v", 1).unwrap(),
            (Some(Bytes::new()), Bytes::from("v"))
        );
        assert_eq!(
            keyed.split(b"nokey", 3).unwrap_err(),
            "No key separator found on line number 3: 'nokey'"
        );
        let lenient = LineReader {
            ignore_error: true,
            ..keyed
        };
        assert_eq!(
            lenient.split(b"nokey", 3).unwrap(),
            (None, Bytes::from("nokey"))
        );
    }

    #[test]
    fn line_endings_are_stripped_like_java_readline() {
        assert_eq!(strip_line_ending(b"a\r\n"), b"a");
        assert_eq!(strip_line_ending(b"a\n"), b"a");
        assert_eq!(strip_line_ending(b"a"), b"a");
        assert_eq!(strip_line_ending(b"\n"), b"");
    }

    #[test]
    fn the_summary_says_how_many_failed_and_why() {
        let mut summary = ProduceSummary {
            records: 5,
            ..Default::default()
        };
        assert_eq!(summary.failure_message(), None);
        summary.fail("t-0: NOT_ENOUGH_REPLICAS: too few".into());
        summary.fail("t-0: NOT_ENOUGH_REPLICAS: too few".into());
        assert_eq!(
            summary.failure_message().unwrap(),
            "2 of 5 messages were not acknowledged: 2 x t-0: NOT_ENOUGH_REPLICAS: too few"
        );
    }
}
