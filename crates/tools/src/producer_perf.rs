//! `kafka-producer-perf-test`: sends `--num-records` records of
//! `--record-size` bytes (or payloads from `--payload-file`) through the
//! client's real `Producer`, at most `--throughput` records/s, and prints
//! Kafka's progress line every five seconds and its summary at the end.
//!
//! Latency is measured per record from the call to `send` to the moment
//! the tool sees its acknowledgement, as Kafka's callback does. The tool
//! looks at acknowledgements in send order, which is their order within a
//! partition; across partitions a record acknowledged early is counted when
//! the ones sent before it are, so latencies are upper bounds there.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use client::{ClientError, DeliveryFuture, Producer, ProducerRecord};
use futures::FutureExt;

use crate::perf::{MEGABYTE, XorShift, ensure_reachable, percentile, producer_config, write_line};
use crate::{Failure, load_properties, parse_key_values};

/// Kafka's reporting interval.
const REPORTING_INTERVAL: Duration = Duration::from_secs(5);

/// What the producer counts against `buffer.memory` for a record beyond
/// its payload, at the least (a RecordBatch v2 header).
const BATCH_HEADER_BYTES: usize = 61;

/// At most this many latency samples are kept (Kafka's bound).
const MAX_SAMPLES: u64 = 500_000;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-producer-perf-test",
    about = "This tool is used to verify the producer performance.",
    disable_version_flag = true
)]
pub struct ProducerPerfArgs {
    /// Produce messages to this topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Number of messages to produce.
    #[arg(long = "num-records", value_name = "NUM-RECORDS")]
    pub num_records: u64,
    /// Message size in bytes. Exactly one of --record-size or --payload-file
    /// must be given.
    #[arg(long = "record-size", value_name = "RECORD-SIZE")]
    pub record_size: Option<usize>,
    /// A file of payloads, split by --payload-delimiter; each record gets
    /// one of them at random.
    #[arg(long = "payload-file", value_name = "PAYLOAD-FILE")]
    pub payload_file: Option<PathBuf>,
    /// The delimiter of --payload-file.
    #[arg(
        long = "payload-delimiter",
        value_name = "PAYLOAD-DELIMITER",
        default_value = "\\n"
    )]
    pub payload_delimiter: String,
    /// Throttle to at most this many messages/sec; -1 for no throttling.
    #[arg(long, value_name = "THROUGHPUT", allow_negative_numbers = true)]
    pub throughput: f64,
    /// Producer properties such as bootstrap.servers, client.id; they
    /// override --producer.config.
    #[arg(long = "producer-props", value_name = "PROP-NAME=PROP-VALUE", num_args = 1..)]
    pub producer_props: Vec<String>,
    /// A producer properties file.
    #[arg(long = "producer.config", value_name = "CONFIG-FILE")]
    pub producer_config: Option<PathBuf>,
    /// Print the tool's metrics at the end of the test.
    #[arg(long = "print-metrics")]
    pub print_metrics: bool,
}

impl ProducerPerfArgs {
    fn validate(&self) -> Result<(), Failure> {
        if self.topic.is_empty() {
            return Err(Failure::usage("--topic must not be empty"));
        }
        match (&self.record_size, &self.payload_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Failure::usage(
                    "Either --record-size or --payload-file must be specified but not both.",
                ));
            }
            _ => {}
        }
        if self.throughput == 0.0 || self.throughput.is_nan() {
            return Err(Failure::usage(
                "--throughput must be a positive number of records/sec, or -1 for no throttling",
            ));
        }
        if self.producer_props.is_empty() && self.producer_config.is_none() {
            return Err(Failure::usage(
                "Either --producer-props or --producer.config must be specified.",
            ));
        }
        Ok(())
    }

    /// The payloads records draw from: one random one of --record-size, or
    /// the pieces of --payload-file.
    fn payloads(&self) -> Result<Vec<Bytes>, Failure> {
        if let Some(size) = self.record_size {
            return Ok(vec![Bytes::from(XorShift::from_clock().letters(size))]);
        }
        let Some(path) = &self.payload_file else {
            return Err(Failure::usage(
                "Either --record-size or --payload-file must be specified but not both.",
            ));
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            Failure::usage(format!(
                "Cannot read the payload file {}: {err}",
                path.display()
            ))
        })?;
        let delimiter = self
            .payload_delimiter
            .replace("\\n", "\n")
            .replace("\\t", "\t");
        let payloads: Vec<Bytes> = text
            .split(delimiter.as_str())
            .filter(|piece| !piece.is_empty())
            .map(|piece| Bytes::copy_from_slice(piece.as_bytes()))
            .collect();
        if payloads.is_empty() {
            return Err(Failure::usage(format!(
                "File {} contains no payloads",
                path.display()
            )));
        }
        Ok(payloads)
    }

    fn properties(&self) -> Result<Vec<(String, String)>, Failure> {
        let mut properties = Vec::new();
        if let Some(path) = &self.producer_config {
            properties.extend(load_properties(path)?);
        }
        properties.extend(parse_key_values(&self.producer_props, "producer property")?);
        Ok(properties)
    }
}

/// Kafka's `Stats`: totals, a window for the progress lines, and sampled
/// latencies for the percentiles.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    count: u64,
    bytes: u64,
    latency_total_ms: f64,
    latency_max_ms: f64,
    /// Every `sampling`-th record's latency, in ms.
    samples: Vec<f64>,
    sampling: u64,
    window_start: Instant,
    window_count: u64,
    window_bytes: u64,
    window_latency_total_ms: f64,
    window_latency_max_ms: f64,
}

impl Stats {
    pub fn new(num_records: u64, start: Instant) -> Self {
        let sampling = (num_records / num_records.clamp(1, MAX_SAMPLES)).max(1);
        Stats {
            start,
            count: 0,
            bytes: 0,
            latency_total_ms: 0.0,
            latency_max_ms: 0.0,
            samples: Vec::with_capacity((num_records / sampling + 1) as usize),
            sampling,
            window_start: start,
            window_count: 0,
            window_bytes: 0,
            window_latency_total_ms: 0.0,
            window_latency_max_ms: 0.0,
        }
    }

    /// Notes the acknowledgement of the `iteration`-th record.
    pub fn record(&mut self, iteration: u64, latency: Duration, bytes: usize) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        self.count += 1;
        self.bytes += bytes as u64;
        self.latency_total_ms += latency_ms;
        self.latency_max_ms = self.latency_max_ms.max(latency_ms);
        self.window_count += 1;
        self.window_bytes += bytes as u64;
        self.window_latency_total_ms += latency_ms;
        self.window_latency_max_ms = self.window_latency_max_ms.max(latency_ms);
        if iteration.is_multiple_of(self.sampling) {
            self.samples.push(latency_ms);
        }
    }

    /// The progress line when the window is `REPORTING_INTERVAL` old, and
    /// a new window begun.
    pub fn progress(&mut self, now: Instant) -> Option<String> {
        let elapsed = now.duration_since(self.window_start);
        if elapsed < REPORTING_INTERVAL {
            return None;
        }
        let seconds = elapsed.as_secs_f64();
        let count = self.window_count;
        let line = format!(
            "{count} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            count as f64 / seconds,
            self.window_bytes as f64 / MEGABYTE / seconds,
            self.window_latency_total_ms / count.max(1) as f64,
            self.window_latency_max_ms,
        );
        self.window_start = now;
        self.window_count = 0;
        self.window_bytes = 0;
        self.window_latency_total_ms = 0.0;
        self.window_latency_max_ms = 0.0;
        Some(line)
    }

    /// Kafka's closing line.
    pub fn summary(&mut self, now: Instant) -> String {
        let seconds = now.duration_since(self.start).as_secs_f64().max(1e-9);
        self.samples.sort_by(f64::total_cmp);
        // Kafka's percentiles are whole milliseconds.
        let at = |fraction| percentile(&self.samples, fraction) as u64;
        format!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.count,
            self.count as f64 / seconds,
            self.bytes as f64 / MEGABYTE / seconds,
            self.latency_total_ms / self.count.max(1) as f64,
            self.latency_max_ms,
            at(0.5),
            at(0.95),
            at(0.99),
            at(0.999),
        )
    }
}

/// A record on its way: when it was sent, its size, and its outcome.
struct InFlight {
    iteration: u64,
    sent_at: Instant,
    bytes: usize,
    delivery: DeliveryFuture,
}

/// What the run ended with, for `--print-metrics` and the exit status.
#[derive(Debug, Default)]
struct Outcome {
    failed: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn note(&mut self, result: Result<client::RecordMetadata, ClientError>) -> bool {
        match result {
            Ok(_) => true,
            Err(error) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| error.to_string());
                false
            }
        }
    }
}

/// Runs the test, writing Kafka's lines to `out`. An error means the run
/// could not start, or some records were not acknowledged.
pub async fn run(args: &ProducerPerfArgs, out: &mut impl Write) -> Result<(), Failure> {
    args.validate()?;
    let payloads = args.payloads()?;
    let config = producer_config(&args.properties()?)?;
    ensure_reachable(&config.common.bootstrap_servers).await?;
    // buffer.memory bounds the records in flight (each counts at least its
    // payload and a batch header); reserving that once spares the queue
    // regrowing, and faulting fresh pages in, while it fills.
    let smallest = payloads.iter().map(Bytes::len).min().unwrap_or(0);
    let in_flight_bound = config.buffer_memory / (smallest + BATCH_HEADER_BYTES);
    let mut in_flight: VecDeque<InFlight> =
        VecDeque::with_capacity(in_flight_bound.min(args.num_records as usize) + 1);
    let producer = Producer::new(config)?;
    let topic = args.topic.clone();
    let mut random = XorShift::from_clock();
    let start = Instant::now();
    let mut stats = Stats::new(args.num_records, start);
    let mut outcome = Outcome::default();
    let throttle = (args.throughput > 0.0).then(|| Duration::from_secs_f64(1.0 / args.throughput));
    // One clock read per record (clock reads are costly on a VM): the time
    // a send returns is both when the acknowledgements seen then arrived
    // and when the next record is sent.
    let mut now = Instant::now();
    for iteration in 0..args.num_records {
        let payload = if payloads.len() == 1 {
            payloads[0].clone()
        } else {
            payloads[(random.next_u64() % payloads.len() as u64) as usize].clone()
        };
        let bytes = payload.len();
        let sent_at = now;
        let delivery = producer
            .send(ProducerRecord::new(topic.as_str(), payload))
            .await
            .map_err(|err| Failure::Command(err.into()))?;
        now = Instant::now();
        in_flight.push_back(InFlight {
            iteration,
            sent_at,
            bytes,
            delivery,
        });
        complete_ready(&mut in_flight, &mut stats, &mut outcome, now);
        if let Some(line) = stats.progress(now) {
            write_line(out, &line)?;
        }
        if let Some(interval) = throttle {
            // Kafka's throttler: never ahead of `throughput` since the start.
            let due = start + interval.mul_f64((iteration + 1) as f64);
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
                now = Instant::now();
            }
        }
    }
    while let Some(record) = in_flight.pop_front() {
        let result = await_with_progress(record.delivery, &mut stats, out).await?;
        if outcome.note(result) {
            stats.record(record.iteration, record.sent_at.elapsed(), record.bytes);
        }
    }
    let close = producer.close().await;
    let summary = stats.summary(Instant::now());
    write_line(out, &summary)?;
    if args.print_metrics {
        write_line(out, &metrics(&stats, &outcome, args))?;
    }
    if outcome.failed > 0 {
        return Err(Failure::Command(anyhow::anyhow!(
            "{} of {} records were not acknowledged: {}",
            outcome.failed,
            args.num_records,
            outcome.first_error.unwrap_or_default()
        )));
    }
    close.map_err(|err| Failure::Command(err.into()))
}

/// Takes the acknowledgements already in, oldest first.
fn complete_ready(
    in_flight: &mut VecDeque<InFlight>,
    stats: &mut Stats,
    outcome: &mut Outcome,
    now: Instant,
) {
    while let Some(front) = in_flight.front_mut() {
        // Unconstrained: this loop never yields to tokio between records,
        // so once the task's cooperative budget is spent a budgeted poll
        // reports even a completed delivery as pending, and acknowledgements
        // would only be seen (and their latency counted) when a send blocks.
        let Some(result) = tokio::task::unconstrained(&mut front.delivery).now_or_never() else {
            break;
        };
        if outcome.note(result) {
            stats.record(
                front.iteration,
                now.duration_since(front.sent_at),
                front.bytes,
            );
        }
        in_flight.pop_front();
    }
}

/// Waits for one acknowledgement, still printing progress every interval.
async fn await_with_progress(
    mut delivery: DeliveryFuture,
    stats: &mut Stats,
    out: &mut impl Write,
) -> Result<Result<client::RecordMetadata, ClientError>, Failure> {
    loop {
        match tokio::time::timeout(REPORTING_INTERVAL, &mut delivery).await {
            Ok(result) => return Ok(result),
            Err(_) => {
                if let Some(line) = stats.progress(Instant::now()) {
                    write_line(out, &line)?;
                }
            }
        }
    }
}

/// Kafka's `--print-metrics` table, with the figures this tool measures.
fn metrics(stats: &Stats, outcome: &Outcome, args: &ProducerPerfArgs) -> String {
    let client_id = "producer-perf-test";
    let rows = [
        ("record-send-total", stats.count as f64),
        ("record-error-total", outcome.failed as f64),
        (
            "record-size-avg",
            stats.bytes as f64 / stats.count.max(1) as f64,
        ),
        (
            "request-latency-avg",
            stats.latency_total_ms / stats.count.max(1) as f64,
        ),
        ("request-latency-max", stats.latency_max_ms),
        ("records-requested", args.num_records as f64),
    ];
    let mut table = format!("{:<90}{}", "Metric Name", "Value");
    for (name, value) in rows {
        let _ = write!(
            table,
            "\n{:<90}: {value:.3}",
            format!("producer-metrics:{name}:{{client-id={client_id}}}")
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProducerPerfArgs, clap::Error> {
        ProducerPerfArgs::try_parse_from(
            std::iter::once("kafka-producer-perf-test").chain(args.iter().copied()),
        )
    }

    fn usage(args: &[&str]) -> String {
        match parse(args).unwrap().validate() {
            Err(Failure::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn the_lines_have_kafkas_format() {
        let start = Instant::now();
        let mut stats = Stats::new(4, start);
        for i in 0..4 {
            stats.record(i, Duration::from_millis(2 + i), 1024 * 1024);
        }
        assert_eq!(stats.progress(start + Duration::from_secs(1)), None);
        assert_eq!(
            stats.progress(start + Duration::from_secs(5)).unwrap(),
            "4 records sent, 0.8 records/sec (0.80 MB/sec), 3.5 ms avg latency, 5.0 ms max latency."
        );
        assert_eq!(
            stats.summary(start + Duration::from_secs(2)),
            "4 records sent, 2.000000 records/sec (2.00 MB/sec), 3.50 ms avg latency, 5.00 ms max latency, 4 ms 50th, 5 ms 95th, 5 ms 99th, 5 ms 99.9th."
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            usage(&[
                "--topic",
                "t",
                "--num-records",
                "1",
                "--throughput",
                "-1",
                "--producer-props",
                "bootstrap.servers=h:1"
            ]),
            "Either --record-size or --payload-file must be specified but not both."
        );
        assert_eq!(
            usage(&[
                "--topic",
                "t",
                "--num-records",
                "1",
                "--record-size",
                "10",
                "--throughput",
                "-1"
            ]),
            "Either --producer-props or --producer.config must be specified."
        );
        let missing = parse(&["--topic", "t"]).unwrap_err().to_string();
        assert!(missing.contains("--num-records"), "{missing}");
    }

    #[test]
    fn sampling_keeps_at_most_the_bound() {
        let stats = Stats::new(2_000_000, Instant::now());
        assert_eq!(stats.sampling, 4);
        assert_eq!(Stats::new(10, Instant::now()).sampling, 1);
        assert_eq!(Stats::new(0, Instant::now()).sampling, 1);
    }
}
