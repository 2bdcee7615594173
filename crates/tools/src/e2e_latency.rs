//! `kafka-e2e-latency BROKERS TOPIC NUM_MESSAGES ACKS MESSAGE_SIZE
//! [PROPERTIES_FILE]`, Kafka's `EndToEndLatency`: produce one record, wait
//! for its acknowledgement, consume it back, compare, and only then send
//! the next. Every 1000th round trip prints `i<TAB>ms`; the end prints the
//! average and the 50th, 99th and 99.9th percentiles (whole milliseconds,
//! as Kafka's tool does).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use client::{Consumer, Producer, ProducerRecord, TopicPartition};

use crate::perf::{
    XorShift, consumer_config, ensure_reachable, percentile, producer_config, write_line,
};
use crate::{Failure, load_properties};

/// How long to wait for the record just produced to come back.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-e2e-latency",
    about = "Measures the time from producing a record to consuming it, one record at a time.",
    disable_version_flag = true
)]
pub struct E2eArgs {
    /// The brokers, HOST1:PORT1,HOST2:PORT2.
    pub broker_list: String,
    /// The topic to produce to and consume from.
    pub topic: String,
    /// How many round trips to time.
    pub num_messages: u64,
    /// The producer's acks: 1 or all.
    pub producer_acks: String,
    /// The size of each message, in bytes.
    pub message_size_bytes: usize,
    /// Client properties for both the producer and the consumer.
    pub properties_file: Option<PathBuf>,
}

impl E2eArgs {
    fn validate(&self) -> Result<(), Failure> {
        if !matches!(self.producer_acks.as_str(), "1" | "all" | "-1") {
            return Err(Failure::usage(
                "Latency testing requires synchronous acknowledgement. Please use 1 or all",
            ));
        }
        if self.num_messages == 0 {
            return Err(Failure::usage("NUM_MESSAGES must be at least 1"));
        }
        if self.topic.is_empty() {
            return Err(Failure::usage("TOPIC must not be empty"));
        }
        Ok(())
    }
}

/// Kafka's closing lines from the round trips' latencies.
pub fn results(latencies: &mut [Duration]) -> String {
    let total: Duration = latencies.iter().sum();
    let average_ms = total.as_secs_f64() * 1000.0 / latencies.len().max(1) as f64;
    latencies.sort();
    let at = |fraction| percentile(latencies, fraction).as_millis();
    format!(
        "Avg latency: {average_ms:.4} ms\nPercentiles: 50th = {}, 99th = {}, 99.9th = {}",
        at(0.5),
        at(0.99),
        at(0.999)
    )
}

/// Runs the test, writing Kafka's lines to `out`.
pub async fn run(args: &E2eArgs, out: &mut impl Write) -> Result<(), Failure> {
    args.validate()?;
    let mut properties = Vec::new();
    if let Some(path) = &args.properties_file {
        properties.extend(load_properties(path)?);
    }
    let mut producer_properties = properties.clone();
    producer_properties.extend(
        [
            ("bootstrap.servers", args.broker_list.as_str()),
            ("linger.ms", "0"),
            ("acks", args.producer_acks.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut consumer_properties = properties;
    consumer_properties.push(("bootstrap.servers".into(), args.broker_list.clone()));
    let producer_config = producer_config(&producer_properties)?;
    let consumer_config = consumer_config(&consumer_properties)?;
    ensure_reachable(&producer_config.common.bootstrap_servers).await?;

    let mut consumer = Consumer::new(consumer_config)?;
    let partitions: Vec<TopicPartition> = consumer
        .partitions_for(&args.topic)
        .await?
        .iter()
        .map(|p| TopicPartition::new(args.topic.as_str(), p.partition))
        .collect();
    consumer.assign(partitions.iter().cloned());
    consumer.seek_to_end(&partitions)?;
    for tp in &partitions {
        // Settle the end offsets now, so the first round trip is not timed
        // with a lookup in it.
        consumer.position(tp).await?;
    }
    let producer = Producer::new(producer_config)?;
    let mut random = XorShift::from_clock();
    let mut latencies = Vec::with_capacity(args.num_messages as usize);
    for i in 0..args.num_messages {
        let message = Bytes::from(random.letters(args.message_size_bytes));
        let begin = Instant::now();
        producer
            .send(ProducerRecord::new(args.topic.as_str(), message.clone()))
            .await?
            .await?;
        let deadline = begin + POLL_TIMEOUT;
        let records = loop {
            let records = consumer
                .poll(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if !records.is_empty() {
                break records;
            }
            if Instant::now() >= deadline {
                return Err(Failure::Command(anyhow::anyhow!(
                    "poll() timed out before finding a result (timeout:[{}])",
                    POLL_TIMEOUT.as_millis()
                )));
            }
        };
        let elapsed = begin.elapsed();
        let read = records[0].value.clone().unwrap_or_default();
        if read != message {
            return Err(Failure::Command(anyhow::anyhow!(
                "The message read [{}] did not match the message sent [{}]",
                String::from_utf8_lossy(&read),
                String::from_utf8_lossy(&message)
            )));
        }
        if records.len() > 1 {
            return Err(Failure::Command(anyhow::anyhow!(
                "Only one result was expected during this test. We found > 1 msg"
            )));
        }
        if i % 1000 == 0 {
            write_line(out, &format!("{i}\t{}", elapsed.as_secs_f64() * 1000.0))?;
        }
        latencies.push(elapsed);
    }
    write_line(out, &results(&mut latencies))?;
    producer.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_have_kafkas_lines() {
        let mut latencies: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        latencies.reverse();
        assert_eq!(
            results(&mut latencies),
            "Avg latency: 0.5005 ms\nPercentiles: 50th = 0, 99th = 0, 99.9th = 1"
        );
    }

    #[test]
    fn acks_must_be_synchronous() {
        let args = E2eArgs::try_parse_from(["e2e", "h:1", "t", "10", "0", "100"]).unwrap();
        match args.validate() {
            Err(Failure::Usage(message)) => assert_eq!(
                message,
                "Latency testing requires synchronous acknowledgement. Please use 1 or all"
            ),
            other => panic!("{other:?}"),
        }
    }
}
