//! The producer: records in, acknowledged offsets out.
//!
//! `send` puts a record into its partition's batch (see `accumulator`) and
//! returns a [`DeliveryFuture`]; a sender task drains ready batches into
//! produce requests, one pipelined `ProduceStream` per broker (see `sender`),
//! and completes each record's future from the broker's answer. Retriable
//! errors refresh metadata and resend within `delivery.timeout.ms`, keeping
//! per-partition order; nothing is dropped silently: every record's future
//! resolves, and `flush` reports every failure since the previous one.
//!
//! Order: a partition whose in-flight batch failed sends nothing new until
//! its other in-flight batches are answered, then resends the failed ones
//! first, one at a time. That keeps order whenever a failure refuses every
//! batch in flight (a leader change, too few replicas). A partition's
//! batches in flight all go to one broker: after a leader change nothing
//! goes to the new leader until the old one's answers are in. A later batch that
//! the broker accepted while an earlier one failed can still land first, as
//! in Kafka without idempotence; `max.in.flight.requests.per.connection=1`
//! rules that out, at the cost of pipelining.

mod accumulator;
mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use records::{HeaderRef, RecordHeader};
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::cluster::{Metadata, lock};
use crate::config::ProducerConfig;
use crate::error::{ClientError, DeliveryFailure};
use crate::partitioner::{UnkeyedPartitioner, partition_for_key};
use accumulator::{Accumulator, AccumulatorConfig, DeliveryResult, IncompleteBatches};

/// A record to send.
///
/// ```
/// use client::ProducerRecord;
///
/// let record = ProducerRecord::new("test", "hello")
///     .with_key("user-1")
///     .with_header("source", Some("docs"));
/// assert_eq!(record.topic, "test");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// An explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Milliseconds since the epoch; `None` stamps the time of `send`.
    pub timestamp: Option<i64>,
    pub headers: Vec<RecordHeader>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push(RecordHeader {
            key: key.into(),
            value: value.map(Into::into),
        });
        self
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// The record's offset; -1 with `acks=0`, where nobody tells.
    pub offset: i64,
    /// The record's timestamp (the broker's, for LogAppendTime topics).
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged or has failed for good.
#[derive(Debug)]
#[must_use = "a record's outcome is only known by awaiting its future (or by flush)"]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<DeliveryResult>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|result| {
            // Every batch completes its records before it is dropped; a
            // closed channel means the runtime shut the sender task down.
            result.unwrap_or(Err(ClientError::ProducerClosed))
        })
    }
}

/// State shared by the producer handles and the sender task.
#[derive(Debug)]
struct Shared {
    config: ProducerConfig,
    metadata: Metadata,
    accumulator: Mutex<Accumulator>,
    unkeyed: Mutex<UnkeyedPartitioner>,
    /// Wakes the sender: a batch is full or new, a flush began, closing.
    wakeup: Notify,
    /// `buffer.memory`, in bytes of records not yet completed.
    buffer: Arc<Semaphore>,
    closed: AtomicBool,
    /// Flushes in progress: while non-zero, every batch is ready at once.
    flushing: AtomicUsize,
    failures: Mutex<Vec<DeliveryFailure>>,
    incomplete: IncompleteBatches,
    wall_clock: WallClock,
}

impl Shared {
    fn record_failure(&self, failure: DeliveryFailure) {
        lock(&self.failures).push(failure);
    }
}

/// A Kafka producer. Cheap to clone: clones share batches and connections.
/// Dropping the last clone lets the sender task deliver what is pending and
/// stop; call [`Producer::close`] to wait for that and learn the outcome.
///
/// ```no_run
/// # async fn demo() -> Result<(), client::ClientError> {
/// use client::{Producer, ProducerConfig, ProducerRecord};
///
/// let mut config = ProducerConfig::new("localhost:9092")?;
/// config.set("linger.ms", "10")?;
/// let producer = Producer::new(config)?;
/// let delivery = producer.send(ProducerRecord::new("test", "hello")).await?;
/// let metadata = delivery.await?;
/// println!("{}-{}@{}", metadata.topic, metadata.partition, metadata.offset);
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// Closes the producer when the last [`Producer`] clone goes away.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wakeup.notify_one();
    }
}

impl Producer {
    /// Starts a producer: validates the configuration, starts the metadata
    /// refresher and the sender task. Must be called within a tokio runtime.
    pub fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        config.validate()?;
        let incomplete: IncompleteBatches = Arc::default();
        let accumulator = Accumulator::new(
            AccumulatorConfig {
                batch_size: config.batch_size,
                linger: Duration::from_millis(config.linger_ms),
                delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
                retry_backoff: config.common.retry_backoff(),
                retry_backoff_max: config.common.retry_backoff_max(),
                retries: config.retries,
                max_request_size: config.max_request_size,
                max_in_flight: config.max_in_flight_requests_per_connection,
                compression: config.compression_type,
            },
            Arc::clone(&incomplete),
        );
        let buffer_permits = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            metadata: Metadata::start(config.common.clone(), true),
            accumulator: Mutex::new(accumulator),
            unkeyed: Mutex::new(UnkeyedPartitioner::new(
                config.partitioner,
                config.batch_size,
            )),
            wakeup: Notify::new(),
            buffer: Arc::new(Semaphore::new(buffer_permits)),
            closed: AtomicBool::new(false),
            flushing: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            incomplete,
            wall_clock: WallClock::new(),
            config,
        });
        tokio::spawn(sender::run(Arc::clone(&shared)));
        Ok(Producer {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The configuration the producer runs with.
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Queues a record. Waits (up to `max.block.ms`) only for the topic's
    /// metadata and for buffer space; the returned future resolves when the
    /// broker acknowledged the record or it failed for good.
    ///
    /// Errors here are immediate: the producer is closed, the topic is
    /// invalid or its metadata did not arrive in time, the partition does
    /// not exist, the record is too large, or no buffer space freed up.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let shared = &self.handle.shared;
        let config = &shared.config;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(ClientError::ProducerClosed);
        }
        if record.topic.is_empty() {
            return Err(ClientError::invalid_argument(
                "The topic of a record must not be empty.",
            ));
        }
        // The one clock read of a send: the deadline, the record's
        // timestamp and the batch's creation time all come from it (a clock
        // read costs tens of nanoseconds on a VM; at millions of records
        // a second, three of them were a fifth of the producer's time).
        // Read again only after a wait, below.
        let mut now = Instant::now();
        let deadline = now + Duration::from_millis(config.max_block_ms);
        let snapshot = shared.metadata.snapshot();
        let (snapshot, partition_count) = match snapshot.topics.get(&record.topic) {
            Some(topic) if topic.error.is_none() && topic.partition_count() > 0 => {
                let count = topic.partition_count();
                (snapshot, count)
            }
            _ => {
                let found = shared
                    .metadata
                    .await_topic(&record.topic, deadline, config.max_block_ms)
                    .await?;
                now = Instant::now();
                found
            }
        };
        if let Some(partition) = record.partition
            && !(0..partition_count).contains(&partition)
        {
            return Err(ClientError::invalid_argument(format!(
                "Invalid partition given with record: {partition} is not in the range [0...{partition_count})."
            )));
        }
        let timestamp = record
            .timestamp
            .unwrap_or_else(|| shared.wall_clock.now_ms(now));
        let size = estimated_size(&record);
        if size > config.max_request_size {
            return Err(ClientError::RecordTooLarge {
                size,
                max: config.max_request_size,
                config: "max.request.size",
            });
        }
        if size > config.buffer_memory {
            return Err(ClientError::RecordTooLarge {
                size,
                max: config.buffer_memory,
                config: "buffer.memory",
            });
        }
        let permit = match shared.buffer.clone().try_acquire_many_owned(size as u32) {
            Ok(permit) => permit,
            Err(_) => {
                let acquire = shared.buffer.clone().acquire_many_owned(size as u32);
                match tokio::time::timeout_at(deadline.into(), acquire).await {
                    Ok(Ok(permit)) => {
                        now = Instant::now();
                        permit
                    }
                    Ok(Err(_)) => return Err(ClientError::ProducerClosed),
                    Err(_) => {
                        return Err(ClientError::TimedOut {
                            message: format!(
                                "Failed to allocate memory within the configured max blocking time {} ms.",
                                config.max_block_ms
                            ),
                        });
                    }
                }
            }
        };
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) if !config.partitioner_ignore_keys => {
                partition_for_key(key, partition_count)
            }
            (None, _) => {
                let available = snapshot
                    .topics
                    .get(&record.topic)
                    .map_or(&[][..], |t| t.available.as_slice());
                lock(&shared.unkeyed).partition(&record.topic, partition_count, available, size)
            }
        };
        let headers: Vec<HeaderRef<'_>> = record
            .headers
            .iter()
            .map(|h| HeaderRef {
                key: &h.key,
                value: h.value.as_deref(),
            })
            .collect();
        let (tx, receiver) = oneshot::channel();
        let appended = lock(&shared.accumulator).append(
            &record.topic,
            partition,
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
            tx,
            Some(permit),
            now,
        );
        if appended.new_batch || appended.batch_full {
            shared.wakeup.notify_one();
        }
        Ok(DeliveryFuture { receiver })
    }

    /// Sends everything queued now without waiting for `linger.ms`, waits
    /// until each record sent before the call has completed, and reports
    /// every record that failed since the previous `flush` or `close`.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let shared = &self.handle.shared;
        let _flushing = FlushGuard::begin(shared);
        let pending: Vec<_> = lock(&shared.incomplete).values().cloned().collect();
        for mut done in pending {
            // Never sent on: resolves when the batch is dropped, i.e. complete.
            let _ = done.changed().await;
        }
        let failures = std::mem::take(&mut *lock(&shared.failures));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ClientError::DeliveryFailed { failures })
        }
    }

    /// Refuses new records, delivers everything pending (within
    /// `delivery.timeout.ms`) and reports failures as [`Producer::flush`] does.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.handle.shared.closed.store(true, Ordering::SeqCst);
        self.flush().await
    }

    /// The partitions of `topic` (from metadata, waiting up to
    /// `max.block.ms`), as Kafka's `partitionsFor`.
    pub async fn partitions_for(
        &self,
        topic: &str,
    ) -> Result<Vec<crate::PartitionInfo>, ClientError> {
        let shared = &self.handle.shared;
        let deadline = Instant::now() + Duration::from_millis(shared.config.max_block_ms);
        let (snapshot, _) = shared
            .metadata
            .await_topic(topic, deadline, shared.config.max_block_ms)
            .await?;
        Ok(snapshot
            .topics
            .get(topic)
            .map(|t| t.partitions.clone())
            .unwrap_or_default())
    }
}

/// Marks a flush in progress for as long as it lives (also when the flush
/// future is dropped half-way).
struct FlushGuard<'a> {
    shared: &'a Shared,
}

impl<'a> FlushGuard<'a> {
    fn begin(shared: &'a Shared) -> Self {
        shared.flushing.fetch_add(1, Ordering::SeqCst);
        shared.wakeup.notify_one();
        FlushGuard { shared }
    }
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.shared.flushing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An upper bound of a record's size in a batch of its own (header
/// included), as Kafka checks against `max.request.size`.
fn estimated_size(record: &ProducerRecord) -> usize {
    const VARINT_MAX: usize = 5;
    const VARLONG_MAX: usize = 10;
    let bytes = |b: Option<usize>| VARINT_MAX + b.unwrap_or(0);
    records::HEADER_LEN
        + VARINT_MAX // record length
        + 1 // attributes
        + VARLONG_MAX // timestamp delta
        + VARINT_MAX // offset delta
        + bytes(record.key.as_ref().map(Bytes::len))
        + bytes(record.value.as_ref().map(Bytes::len))
        + VARINT_MAX // header count
        + record
            .headers
            .iter()
            .map(|h| bytes(Some(h.key.len())) + bytes(h.value.as_ref().map(Bytes::len)))
            .sum::<usize>()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Wall-clock milliseconds for record timestamps, derived from the
/// monotonic `Instant` a send reads anyway, so a send reads the clock once.
/// The offset between the two clocks is read again at most once every
/// `RECALIBRATE_MS`, so a stepped or slewed wall clock shows within that.
#[derive(Debug)]
struct WallClock {
    start: Instant,
    /// Wall-clock ms minus monotonic ms since `start`.
    offset_ms: AtomicI64,
    /// Monotonic ms since `start` of the last calibration.
    calibrated_at_ms: AtomicU64,
}

impl WallClock {
    const RECALIBRATE_MS: u64 = 100;

    fn new() -> Self {
        let start = Instant::now();
        WallClock {
            start,
            offset_ms: AtomicI64::new(now_ms()),
            calibrated_at_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self, now: Instant) -> i64 {
        let elapsed_ms = now.saturating_duration_since(self.start).as_millis() as u64;
        let calibrated_at = self.calibrated_at_ms.load(Ordering::Relaxed);
        if elapsed_ms.saturating_sub(calibrated_at) >= Self::RECALIBRATE_MS {
            let offset = now_ms() - elapsed_ms as i64;
            self.offset_ms.store(offset, Ordering::Relaxed);
            self.calibrated_at_ms.store(elapsed_ms, Ordering::Relaxed);
            return elapsed_ms as i64 + offset;
        }
        elapsed_ms as i64 + self.offset_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_follows_the_system_clock() {
        let clock = WallClock::new();
        let before = now_ms();
        let derived = clock.now_ms(Instant::now());
        let after = now_ms();
        assert!(
            (before - 1..=after + 1).contains(&derived),
            "{before} {derived} {after}"
        );
        // A wrong offset stands within the calibration interval (the clock
        // is not read per record) ...
        clock.offset_ms.store(0, Ordering::Relaxed);
        assert!(clock.now_ms(clock.start) < 1000, "recalibrated too early");
        // ... and past it the system clock puts it right again.
        let later = Instant::now() + Duration::from_millis(WallClock::RECALIBRATE_MS + 1);
        let derived = clock.now_ms(later);
        assert!((derived - now_ms()).abs() <= 1, "{derived}");
    }

    #[test]
    fn size_estimate_bounds_the_real_batch() {
        let record = ProducerRecord::new("t", vec![7u8; 1000])
            .with_key("k")
            .with_header("h", Some("v"));
        let mut builder = records::RecordBatchBuilder::default();
        builder.append(
            0,
            Some(b"k"),
            Some(&[7u8; 1000]),
            &[HeaderRef {
                key: "h",
                value: Some(b"v"),
            }],
        );
        let real = builder.finish().len();
        let estimate = estimated_size(&record);
        assert!(estimate >= real, "{estimate} < {real}");
        assert!(estimate < real + 64, "{estimate} is far above {real}");
    }
}
