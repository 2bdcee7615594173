//! The producer's per-partition batches and the rules that decide what is
//! sent when: batching by `batch.size` and `linger.ms`, draining one request
//! per leader, retries that keep per-partition order, delivery timeouts.
//!
//! Pure state: no I/O and no clock of its own (callers pass `now`), so the
//! rules are tested directly. The sender task owns the I/O around it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::ErrorCode;
use records::{Compression, HeaderRef, RecordBatchBuilder};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::cluster::{TopicMap, TopicPartition, lock};
use crate::codec;
use crate::error::ClientError;
use crate::producer::RecordMetadata;

/// What a record's sender learns when its batch completes.
pub(crate) type DeliveryResult = Result<RecordMetadata, ClientError>;

/// Batches not yet complete, each with a receiver that closes when it is:
/// `flush()` waits on the ones present when it starts.
pub(crate) type IncompleteBatches = Arc<Mutex<HashMap<u64, watch::Receiver<()>>>>;

/// Closes a batch's entry in [`IncompleteBatches`] when the last batch
/// holding it (a batch, or the halves of a split one) is dropped.
#[derive(Debug)]
pub(crate) struct DoneGuard {
    id: u64,
    registry: IncompleteBatches,
    _done: watch::Sender<()>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        lock(&self.registry).remove(&self.id);
    }
}

#[derive(Debug)]
pub(crate) struct PendingRecord {
    /// Offset of the record within its batch.
    pub(crate) offset_delta: i32,
    pub(crate) timestamp: i64,
    pub(crate) result: Option<oneshot::Sender<DeliveryResult>>,
}

/// One batch of one partition, from its first record to its completion.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub(crate) topic_partition: TopicPartition,
    /// Creation order within the partition: retries go back in this order.
    pub(crate) sequence: u64,
    /// Open for appends until the batch is drained.
    builder: Option<RecordBatchBuilder>,
    /// The finished (compressed) batch, kept for retries.
    pub(crate) encoded: Option<Bytes>,
    pub(crate) records: Vec<PendingRecord>,
    pub(crate) created_at: Instant,
    /// Sends so far.
    pub(crate) attempts: u32,
    retry_after: Option<Instant>,
    /// The `buffer.memory` bytes this batch's records hold.
    _permit: Option<OwnedSemaphorePermit>,
    _done: Arc<DoneGuard>,
}

impl ProducerBatch {
    pub(crate) fn record_count(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.encoded.as_ref().map_or(0, Bytes::len)
    }

    fn is_full(&self, batch_size: usize) -> bool {
        self.builder
            .as_ref()
            .is_none_or(|builder| builder.size_in_bytes() >= batch_size)
    }

    /// Completes every record with its offset (or `-1` for acks=0).
    pub(crate) fn succeed(mut self, base_offset: i64, log_append_time_ms: i64) {
        for record in &mut self.records {
            let metadata = RecordMetadata {
                topic: self.topic_partition.topic.clone(),
                partition: self.topic_partition.partition,
                offset: if base_offset < 0 {
                    -1
                } else {
                    base_offset + i64::from(record.offset_delta)
                },
                timestamp: if log_append_time_ms >= 0 {
                    log_append_time_ms
                } else {
                    record.timestamp
                },
            };
            if let Some(tx) = record.result.take() {
                // The caller may have dropped its future; that is fine.
                let _ = tx.send(Ok(metadata));
            }
        }
    }

    /// Fails every record with `error`.
    pub(crate) fn fail(mut self, error: &ClientError) {
        for record in &mut self.records {
            if let Some(tx) = record.result.take() {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }
}

/// The limits the accumulator works with (from `ProducerConfig`).
#[derive(Debug, Clone)]
pub(crate) struct AccumulatorConfig {
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) retries: u32,
    pub(crate) max_request_size: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) compression: Compression,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    /// Batches never sent, oldest first; the last one may still be open.
    batches: VecDeque<ProducerBatch>,
    /// Batches that failed with a retriable error, in `sequence` order.
    /// While any is here, the partition sends only these, one at a time.
    retry: VecDeque<ProducerBatch>,
    /// Batches of this partition currently in flight.
    in_flight: usize,
    /// The broker those batches went to. While any is in flight, nothing
    /// goes to another broker: after a leader change the old leader's
    /// answers (a NOT_LEADER_OR_FOLLOWER to retry) must come back first,
    /// or a later batch would land at the new leader before the retry of
    /// an earlier one.
    in_flight_to: Option<i32>,
    next_sequence: u64,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.batches.is_empty() && self.retry.is_empty() && self.in_flight == 0
    }

    /// When the oldest unsent batch may go: `Ok` if it is ready now, else
    /// `Err` with the moment its linger ends (`None` with no batch).
    fn front_ready(
        &self,
        flushing: bool,
        config: &AccumulatorConfig,
        now: Instant,
    ) -> Result<(), Option<Instant>> {
        let Some(front) = self.batches.front() else {
            return Err(None);
        };
        let lingered_until = front.created_at + config.linger;
        if flushing
            || self.batches.len() > 1
            || front.is_full(config.batch_size)
            || now >= lingered_until
        {
            Ok(())
        } else {
            Err(Some(lingered_until))
        }
    }

    /// Puts a failed batch back among the retries, before every batch that
    /// came after it.
    fn requeue(&mut self, batch: ProducerBatch) {
        let at = self.retry.partition_point(|b| b.sequence < batch.sequence);
        self.retry.insert(at, batch);
    }
}

/// The result of appending a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// A new batch was opened (the sender must learn its linger deadline).
    pub(crate) new_batch: bool,
    /// The batch is full, or a full one was closed by this record.
    pub(crate) batch_full: bool,
}

/// One produce request to build: batches for one broker; a partition's
/// batches are consecutive and in order (several when they were ready
/// together; a retry always alone).
#[derive(Debug)]
pub(crate) struct Drained {
    pub(crate) broker: i32,
    pub(crate) batches: Vec<ProducerBatch>,
}

/// What the sender should do after a drain.
#[derive(Debug, Default)]
pub(crate) struct DrainOutcome {
    pub(crate) requests: Vec<Drained>,
    /// The earliest time something becomes sendable or expires.
    pub(crate) next_wakeup: Option<Instant>,
    /// Some partition with data has no known leader: refresh metadata.
    pub(crate) leaderless: bool,
    /// Batches past `delivery.timeout.ms`, or whose encoding failed.
    pub(crate) failed: Vec<(ProducerBatch, ClientError)>,
}

/// What to do with a batch after its produce answer.
#[derive(Debug)]
pub(crate) enum BatchResult {
    Success {
        base_offset: i64,
        log_append_time_ms: i64,
    },
    Error(ClientError),
}

/// What completing a batch led to.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    /// The batch will be sent again; refresh metadata first if set.
    pub(crate) refresh_metadata: bool,
    /// Records that failed for good.
    pub(crate) failed: Option<(ProducerBatch, ClientError)>,
}

#[derive(Debug)]
pub(crate) struct Accumulator {
    config: AccumulatorConfig,
    partitions: Vec<PartitionQueue>,
    topic_partitions: Vec<TopicPartition>,
    index: TopicMap<String, HashMap<i32, usize>>,
    /// The queue the previous record went to: a producer usually sends
    /// run after run to one partition (the sticky partitioner makes sure of
    /// it), and a string compare is far cheaper than two hash lookups.
    last_queue: Option<usize>,
    /// Where the next drain starts, so no partition is always last.
    drain_start: usize,
    next_batch_id: u64,
    incomplete: IncompleteBatches,
}

impl Accumulator {
    pub(crate) fn new(config: AccumulatorConfig, incomplete: IncompleteBatches) -> Self {
        Accumulator {
            config,
            partitions: Vec::new(),
            topic_partitions: Vec::new(),
            index: TopicMap::default(),
            last_queue: None,
            drain_start: 0,
            next_batch_id: 0,
            incomplete,
        }
    }

    fn queue_index(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(i) = self.last_queue {
            let tp = &self.topic_partitions[i];
            if tp.partition == partition && tp.topic == topic {
                return i;
            }
        }
        // Looked up by &str: no key allocation on the hot path.
        if let Some(&i) = self.index.get(topic).and_then(|p| p.get(&partition)) {
            self.last_queue = Some(i);
            return i;
        }
        let i = self.partitions.len();
        self.partitions.push(PartitionQueue::default());
        self.topic_partitions
            .push(TopicPartition::new(topic, partition));
        self.index
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, i);
        self.last_queue = Some(i);
        i
    }

    /// Appends one record to its partition's open batch, opening a new one
    /// when the record would take the batch past `batch.size`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
        result: oneshot::Sender<DeliveryResult>,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
    ) -> Appended {
        let batch_size = self.config.batch_size;
        let i = self.queue_index(topic, partition);
        let mut appended = Appended {
            new_batch: false,
            batch_full: false,
        };
        let fits = self.partitions[i].batches.back().is_some_and(|batch| {
            batch.builder.as_ref().is_some_and(|builder| {
                builder.size_in_bytes() + builder.record_size(timestamp, key, value, headers)
                    <= batch_size
            })
        });
        if !fits {
            if let Some(last) = self.partitions[i].batches.back_mut()
                && last.builder.is_some()
            {
                // Closed by this record: it no longer waits for linger.
                appended.batch_full = true;
            }
            let batch = self.new_batch(i, now);
            self.partitions[i].batches.push_back(batch);
            appended.new_batch = true;
        }
        let queue = &mut self.partitions[i];
        let Some(batch) = queue.batches.back_mut() else {
            unreachable!("a batch was just ensured");
        };
        let builder = batch
            .builder
            .get_or_insert_with(RecordBatchBuilder::default);
        let offset_delta = builder.append(timestamp, key, value, headers);
        batch.records.push(PendingRecord {
            offset_delta,
            timestamp,
            result: Some(result),
        });
        if let Some(permit) = permit {
            match &mut batch._permit {
                Some(held) => held.merge(permit),
                None => batch._permit = Some(permit),
            }
        }
        if batch.is_full(batch_size) {
            appended.batch_full = true;
        }
        appended
    }

    fn new_batch(&mut self, i: usize, now: Instant) -> ProducerBatch {
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let (done, receiver) = watch::channel(());
        lock(&self.incomplete).insert(id, receiver);
        let queue = &mut self.partitions[i];
        let sequence = queue.next_sequence;
        queue.next_sequence += 1;
        ProducerBatch {
            topic_partition: self.topic_partitions[i].clone(),
            sequence,
            builder: Some(RecordBatchBuilder::with_capacity(self.config.batch_size)),
            encoded: None,
            // Room for a default-sized batch of small records, so the list
            // does not regrow record after record; capped so a large
            // `batch.size` does not reserve thousands of slots for every
            // partition's batch, however few records it gets.
            records: Vec::with_capacity((self.config.batch_size / 64).clamp(16, 512)),
            created_at: now,
            attempts: 0,
            retry_after: None,
            _permit: None,
            _done: Arc::new(DoneGuard {
                id,
                registry: Arc::clone(&self.incomplete),
                _done: done,
            }),
        }
    }

    /// Whether nothing is queued, waiting for a retry or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.partitions.iter().all(PartitionQueue::is_idle)
    }

    /// Takes what may be sent now: for each broker with a free in-flight
    /// slot, one request holding at most one batch per partition it leads,
    /// within `max.request.size`. `flushing` makes every batch ready at once.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        flushing: bool,
        leader_of: impl Fn(&TopicPartition) -> Option<i32>,
        in_flight_requests: &HashMap<i32, usize>,
    ) -> DrainOutcome {
        let mut outcome = DrainOutcome::default();
        let mut by_broker: HashMap<i32, (usize, Vec<ProducerBatch>)> = HashMap::new();
        let count = self.partitions.len();
        let config = self.config.clone();
        let wake = |outcome: &mut DrainOutcome, at: Instant| {
            outcome.next_wakeup = Some(outcome.next_wakeup.map_or(at, |t| t.min(at)));
        };
        for step in 0..count {
            let i = (self.drain_start + step) % count;
            let tp = &self.topic_partitions[i];
            let queue = &mut self.partitions[i];
            expire(queue, &config, now, &mut outcome.failed);
            if let Some(front) = queue.retry.front().or(queue.batches.front()) {
                wake(&mut outcome, front.created_at + config.delivery_timeout);
            }
            // Pick the candidate batch, if any is ready.
            let from_retry = !queue.retry.is_empty();
            if from_retry {
                if queue.in_flight > 0 {
                    continue;
                }
                let retry_after = queue.retry.front().and_then(|b| b.retry_after);
                if let Some(at) = retry_after.filter(|&at| at > now) {
                    wake(&mut outcome, at);
                    continue;
                }
            } else {
                if let Err(lingered_until) = queue.front_ready(flushing, &config, now) {
                    if let Some(at) = lingered_until {
                        wake(&mut outcome, at);
                    }
                    continue;
                }
            }
            let Some(leader) = leader_of(tp) else {
                outcome.leaderless = true;
                continue;
            };
            if queue.in_flight > 0 && queue.in_flight_to != Some(leader) {
                continue;
            }
            let requests_in_flight = in_flight_requests.get(&leader).copied().unwrap_or(0);
            if requests_in_flight >= config.max_in_flight {
                continue;
            }
            // The broker's last free request slot takes every ready batch.
            let last_slot = requests_in_flight + 1 >= config.max_in_flight;
            let (size, batches) = by_broker.entry(leader).or_default();
            // Pipelining first: one batch per partition per request while
            // request slots are free. The last free slot takes every ready
            // batch of the partition that fits (the broker appends a
            // request's entries in order, one result each), so a partition
            // producing faster than one batch per round trip is not held to
            // `max.in.flight.requests.per.connection` batches in flight.
            // Order on failure is as with that many requests pipelined; a
            // retry always goes alone.
            let mut taken = 0;
            loop {
                if taken > 0 && queue.front_ready(flushing, &config, now).is_err() {
                    break;
                }
                let candidate = if from_retry {
                    queue.retry.front_mut()
                } else {
                    queue.batches.front_mut()
                };
                let Some(candidate) = candidate else {
                    break;
                };
                if let Some(builder) = candidate.builder.take() {
                    let compression = config.compression;
                    match builder.finish_compressed(compression, |input, out| {
                        codec::compress(compression, input, out)
                    }) {
                        Ok(encoded) => candidate.encoded = Some(encoded),
                        Err(err) => {
                            if let Some(batch) = queue.batches.pop_front() {
                                outcome.failed.push((batch, err.into()));
                            }
                            break;
                        }
                    }
                }
                let batch_len = candidate.encoded_len();
                if !batches.is_empty() && *size + batch_len > config.max_request_size {
                    break;
                }
                let batch = if from_retry {
                    queue.retry.pop_front()
                } else {
                    queue.batches.pop_front()
                };
                let Some(mut batch) = batch else {
                    break;
                };
                batch.attempts += 1;
                queue.in_flight += 1;
                queue.in_flight_to = Some(leader);
                *size += batch_len;
                batches.push(batch);
                taken += 1;
                // With one request in flight, one batch per partition: a
                // later batch of the same request could land while an
                // earlier one fails, which that setting exists to rule out.
                if from_retry || !last_slot || config.max_in_flight <= 1 {
                    break;
                }
            }
        }
        if count > 0 {
            self.drain_start = (self.drain_start + 1) % count;
        }
        outcome.requests = by_broker
            .into_iter()
            .filter(|(_, (_, batches))| !batches.is_empty())
            .map(|(broker, (_, batches))| Drained { broker, batches })
            .collect();
        outcome
    }

    /// Records the answer for one batch that was in flight: success, a
    /// final failure, or back into the partition's retries (split in two
    /// first on MESSAGE_TOO_LARGE when it holds several records).
    pub(crate) fn complete(
        &mut self,
        mut batch: ProducerBatch,
        result: BatchResult,
        now: Instant,
    ) -> Completion {
        let i = self.queue_index(
            &batch.topic_partition.topic,
            batch.topic_partition.partition,
        );
        let queue = &mut self.partitions[i];
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let error = match result {
            BatchResult::Success {
                base_offset,
                log_append_time_ms,
            } => {
                batch.succeed(base_offset, log_append_time_ms);
                return Completion::default();
            }
            BatchResult::Error(error) => error,
        };
        if error.code() == Some(ErrorCode::MessageTooLarge) && batch.record_count() > 1 {
            match split(batch) {
                Ok(halves) => {
                    for half in halves.into_iter().rev() {
                        // Same sequence: both go before the parent's successors,
                        // the first half first.
                        let at = queue.retry.partition_point(|b| b.sequence < half.sequence);
                        queue.retry.insert(at, half);
                    }
                    return Completion::default();
                }
                Err(failed) => {
                    let (batch, split_error) = *failed;
                    tracing::warn!("cannot split a batch refused as too large: {split_error}");
                    return Completion {
                        refresh_metadata: false,
                        failed: Some((batch, error)),
                    };
                }
            }
        }
        let elapsed = now.saturating_duration_since(batch.created_at);
        let may_retry = error.is_retriable()
            && batch.attempts <= self.config.retries
            && elapsed < self.config.delivery_timeout;
        if !may_retry {
            return Completion {
                refresh_metadata: false,
                failed: Some((batch, error)),
            };
        }
        tracing::debug!(
            "retrying a batch of {} record(s) to {} (attempt {}): {error}",
            batch.record_count(),
            batch.topic_partition,
            batch.attempts + 1
        );
        batch.retry_after = Some(now + retry_pause(&self.config, batch.attempts));
        queue.requeue(batch);
        Completion {
            refresh_metadata: error.invalidates_metadata(),
            failed: None,
        }
    }

    /// (never sent, waiting for a retry, in flight) batches of a partition.
    #[cfg(test)]
    fn queued_batches(&self, topic: &str, partition: i32) -> (usize, usize, usize) {
        let Some(&i) = self.index.get(topic).and_then(|p| p.get(&partition)) else {
            return (0, 0, 0);
        };
        let queue = &self.partitions[i];
        (queue.batches.len(), queue.retry.len(), queue.in_flight)
    }
}

/// Moves batches past `delivery.timeout.ms` from the front of both queues
/// into `failed`. Batches are in creation order, so the front ones are the
/// oldest.
fn expire(
    queue: &mut PartitionQueue,
    config: &AccumulatorConfig,
    now: Instant,
    failed: &mut Vec<(ProducerBatch, ClientError)>,
) {
    for list in [&mut queue.retry, &mut queue.batches] {
        while let Some(front) = list.front() {
            let elapsed = now.saturating_duration_since(front.created_at);
            if elapsed < config.delivery_timeout {
                break;
            }
            let Some(batch) = list.pop_front() else {
                break;
            };
            let error = ClientError::DeliveryTimeout {
                topic: batch.topic_partition.topic.clone(),
                partition: batch.topic_partition.partition,
                records: batch.record_count(),
                elapsed_ms: elapsed.as_millis() as u64,
            };
            failed.push((batch, error));
        }
    }
}

/// Splits a batch into two halves by record, re-encoding each with the
/// batch's own codec.
fn split(batch: ProducerBatch) -> Result<[ProducerBatch; 2], Box<(ProducerBatch, ClientError)>> {
    let Some(encoded) = batch.encoded.clone() else {
        let error = ClientError::invalid_argument("batch was never encoded");
        return Err(Box::new((batch, error)));
    };
    let decoded = records::decode_batch(&encoded, codec::decompress);
    let (header, records) = match decoded {
        Ok(decoded) => decoded,
        Err(err) => {
            return Err(Box::new((
                batch,
                ClientError::invalid_argument(err.to_string()),
            )));
        }
    };
    let compression = header.compression().unwrap_or(Compression::None);
    let middle = records.len() / 2;
    let ProducerBatch {
        topic_partition,
        sequence,
        records: pending,
        created_at,
        attempts,
        _permit,
        _done,
        ..
    } = batch;
    let mut pending = pending.into_iter();
    let mut halves = Vec::with_capacity(2);
    for part in [&records[..middle], &records[middle..]] {
        let mut builder = RecordBatchBuilder::default();
        let mut part_pending = Vec::with_capacity(part.len());
        for record in part {
            let headers: Vec<HeaderRef<'_>> = record
                .headers
                .iter()
                .map(|h| HeaderRef {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
                .collect();
            let offset_delta = builder.append(
                record.timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &headers,
            );
            if let Some(mut p) = pending.next() {
                p.offset_delta = offset_delta;
                part_pending.push(p);
            }
        }
        let encoded = builder
            .finish_compressed(compression, |input, out| {
                codec::compress(compression, input, out)
            })
            .map_err(ClientError::from);
        halves.push((encoded, part_pending));
    }
    let mut permit = _permit;
    let mut out = halves.into_iter().map(|(encoded, records)| ProducerBatch {
        topic_partition: topic_partition.clone(),
        sequence,
        builder: None,
        encoded: encoded.ok(),
        records,
        created_at,
        attempts,
        retry_after: None,
        _permit: permit.take(),
        _done: Arc::clone(&_done),
    });
    match (out.next(), out.next()) {
        (Some(first), Some(second)) if first.encoded.is_some() && second.encoded.is_some() => {
            Ok([first, second])
        }
        _ => unreachable!("two halves were built from a decodable batch"),
    }
}

/// The pause before retry number `attempts` (1 for the first retry):
/// retry.backoff.ms doubled per attempt up to retry.backoff.max.ms, as
/// KIP-580 has it, so a leader failover is ridden out by a few quick retries
/// and a longer outage does not hammer the cluster.
fn retry_pause(config: &AccumulatorConfig, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    config
        .retry_backoff
        .saturating_mul(1 << doublings)
        .min(config.retry_backoff_max.max(config.retry_backoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 200,
            linger: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            retries: 5,
            max_request_size: 1_000_000,
            max_in_flight: 5,
            compression: Compression::None,
        }
    }

    struct Harness {
        acc: Accumulator,
        incomplete: IncompleteBatches,
        results: Vec<oneshot::Receiver<DeliveryResult>>,
        start: Instant,
    }

    impl Harness {
        fn new(config: AccumulatorConfig) -> Self {
            let incomplete: IncompleteBatches = Arc::default();
            Harness {
                acc: Accumulator::new(config, Arc::clone(&incomplete)),
                incomplete,
                results: Vec::new(),
                start: Instant::now(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        fn append(&mut self, partition: i32, value: &str, ms: u64) -> Appended {
            let (tx, rx) = oneshot::channel();
            self.results.push(rx);
            let now = self.at(ms);
            self.acc.append(
                "t",
                partition,
                ms as i64,
                None,
                Some(value.as_bytes()),
                &[],
                tx,
                None,
                now,
            )
        }

        fn drain(&mut self, ms: u64, in_flight: &HashMap<i32, usize>) -> DrainOutcome {
            let now = self.at(ms);
            self.acc
                .drain(now, false, |tp| Some(tp.partition % 2), in_flight)
        }

        /// The values of a drained batch, decoded.
        fn values(batch: &ProducerBatch) -> Vec<String> {
            let (_, records) =
                records::decode_batch(batch.encoded.as_ref().unwrap(), codec::decompress).unwrap();
            records
                .iter()
                .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
                .collect()
        }

        fn result(&mut self, i: usize) -> Option<DeliveryResult> {
            self.results[i].try_recv().ok()
        }
    }

    fn no_in_flight() -> HashMap<i32, usize> {
        HashMap::new()
    }

    #[test]
    fn a_batch_waits_for_linger_unless_full() {
        let mut h = Harness::new(config());
        let appended = h.append(0, "a", 0);
        assert!(appended.new_batch);
        assert!(!appended.batch_full);
        let outcome = h.drain(5, &no_in_flight());
        assert!(outcome.requests.is_empty());
        assert_eq!(outcome.next_wakeup, Some(h.at(10)));
        let outcome = h.drain(10, &no_in_flight());
        assert_eq!(outcome.requests.len(), 1);
        assert_eq!(Harness::values(&outcome.requests[0].batches[0]), vec!["a"]);
    }

    #[test]
    fn batch_size_closes_batches_and_makes_them_ready() {
        let mut h = Harness::new(config());
        let value = "x".repeat(60);
        let mut full_at = None;
        for i in 0..5 {
            let appended = h.append(0, &value, 0);
            if appended.batch_full && full_at.is_none() {
                full_at = Some(i);
            }
        }
        // ~70 bytes per record, 61 of header: two fit in 200 bytes, the
        // third opens a second batch.
        assert_eq!(full_at, Some(2));
        assert_eq!(h.acc.queued_batches("t", 0), (3, 0, 0));
        // Before linger, the closed batches are ready; one batch per
        // partition per request while request slots are free.
        let outcome = h.drain(0, &no_in_flight());
        assert_eq!(outcome.requests.len(), 1);
        let batches = &outcome.requests[0].batches;
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].record_count(), 2);
        assert!(batches[0].encoded_len() <= 200);
    }

    #[test]
    fn the_last_free_request_slot_takes_every_ready_batch() {
        let mut h = Harness::new(config());
        let value = "x".repeat(60);
        for _ in 0..7 {
            h.append(0, &value, 0);
        }
        // Four batches: three closed (two records each), one open.
        assert_eq!(h.acc.queued_batches("t", 0), (4, 0, 0));
        let max = h.acc.config.max_in_flight;
        let leader = h.drain(0, &no_in_flight()).requests[0].broker;
        // That drain sent batch 0 alone; now all but one slot are taken.
        let busy = HashMap::from([(leader, max - 1)]);
        let outcome = h.drain(0, &busy);
        let batches = &outcome.requests[0].batches;
        let sequences: Vec<u64> = batches.iter().map(|b| b.sequence).collect();
        assert_eq!(
            sequences,
            vec![1, 2],
            "closed batches, in order; the open one waits"
        );
        // No slot left: nothing more goes.
        let full = HashMap::from([(leader, max)]);
        assert!(h.drain(1_000, &full).requests.is_empty());
    }

    #[test]
    fn drain_groups_partitions_by_leader_and_respects_in_flight_limit() {
        let mut h = Harness::new(config());
        for partition in 0..4 {
            h.append(partition, "v", 0);
        }
        let outcome = h.drain(20, &no_in_flight());
        let mut per_broker: Vec<(i32, usize)> = outcome
            .requests
            .iter()
            .map(|r| (r.broker, r.batches.len()))
            .collect();
        per_broker.sort_unstable();
        assert_eq!(per_broker, vec![(0, 2), (1, 2)]);

        let mut h = Harness::new(config());
        h.append(0, "v", 0);
        h.append(1, "v", 0);
        let busy: HashMap<i32, usize> = [(0, 5)].into();
        let outcome = h.drain(20, &busy);
        assert_eq!(outcome.requests.len(), 1);
        assert_eq!(outcome.requests[0].broker, 1);
    }

    #[test]
    fn max_request_size_splits_requests_but_always_sends_one_batch() {
        let mut cfg = config();
        cfg.max_request_size = 100;
        let mut h = Harness::new(cfg);
        h.append(0, &"x".repeat(80), 0);
        h.append(2, &"y".repeat(80), 0);
        let first = h.drain(20, &no_in_flight());
        assert_eq!(first.requests.len(), 1);
        assert_eq!(first.requests[0].batches.len(), 1);
        let second = h.drain(20, &no_in_flight());
        assert_eq!(second.requests[0].batches.len(), 1);
        assert_ne!(
            first.requests[0].batches[0].topic_partition,
            second.requests[0].batches[0].topic_partition
        );
    }

    #[test]
    fn success_completes_each_record_with_its_offset() {
        let mut h = Harness::new(config());
        h.append(0, "a", 0);
        h.append(0, "b", 1);
        let mut outcome = h.drain(20, &no_in_flight());
        let batch = outcome.requests.remove(0).batches.remove(0);
        assert_eq!(h.incomplete.lock().unwrap().len(), 1);
        let done = h.acc.complete(
            batch,
            BatchResult::Success {
                base_offset: 42,
                log_append_time_ms: -1,
            },
            h.at(30),
        );
        assert!(done.failed.is_none());
        let first = h.result(0).unwrap().unwrap();
        let second = h.result(1).unwrap().unwrap();
        assert_eq!((first.offset, first.timestamp), (42, 0));
        assert_eq!((second.offset, second.timestamp), (43, 1));
        assert!(h.incomplete.lock().unwrap().is_empty());
        assert!(h.acc.is_empty());
    }

    fn not_leader() -> ClientError {
        ClientError::partition("t", 0, ErrorCode::NotLeaderOrFollower, "")
    }

    #[test]
    fn after_a_leader_change_nothing_is_sent_until_the_old_leaders_answers_are_in() {
        // The reordering this prevents: b2 went to the new leader while b1
        // was still in flight to the old one; b1's retry then landed after
        // b2.
        let mut h = Harness::new(config());
        let value = "x".repeat(100);
        for _ in 0..2 {
            h.append(0, &value, 0);
        }
        // Past linger.ms: every batch is ready.
        let at = h.at(20);
        let b1 = h
            .acc
            .drain(at, false, |_| Some(7), &no_in_flight())
            .requests
            .remove(0);
        assert_eq!(b1.broker, 7);
        let b1 = b1.batches.into_iter().next().unwrap();

        // The leader moves to broker 8 while b1 is in flight to broker 7.
        let moved = h.acc.drain(at, false, |_| Some(8), &no_in_flight());
        assert!(
            moved.requests.is_empty(),
            "b2 overtook b1 at the new leader"
        );

        // b1 is refused by the old leader and retried first, then b2.
        h.acc
            .complete(b1, BatchResult::Error(not_leader()), h.at(21));
        let later = h.at(500);
        let r1 = h
            .acc
            .drain(later, false, |_| Some(8), &no_in_flight())
            .requests
            .remove(0);
        assert_eq!((r1.broker, r1.batches[0].sequence), (8, 0));
        let b2 = h
            .acc
            .drain(later, false, |_| Some(8), &no_in_flight())
            .requests
            .remove(0);
        assert_eq!((b2.broker, b2.batches[0].sequence), (8, 1));
    }

    #[test]
    fn a_failed_batch_blocks_its_partition_until_in_flight_batches_finish_then_goes_first() {
        let mut h = Harness::new(config());
        let value = "x".repeat(100);
        // Three batches of one record each on partition 0.
        for _ in 0..3 {
            h.append(0, &value, 0);
        }
        let b1 = h
            .drain(0, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        let b2 = h
            .drain(0, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        assert_eq!((b1.sequence, b2.sequence), (0, 1));
        assert_eq!(h.acc.queued_batches("t", 0), (1, 0, 2));

        // b1 fails retriably: metadata refresh, and nothing new is sent
        // while b2 is in flight, even after the backoff.
        let completion = h
            .acc
            .complete(b1, BatchResult::Error(not_leader()), h.at(1));
        assert!(completion.refresh_metadata);
        assert!(completion.failed.is_none());
        assert!(h.drain(500, &no_in_flight()).requests.is_empty());

        // b2 fails too: it goes behind b1.
        h.acc
            .complete(b2, BatchResult::Error(not_leader()), h.at(2));
        assert_eq!(h.acc.queued_batches("t", 0), (1, 2, 0));

        // Retries go one at a time, in order, before the never-sent batch.
        let early = h.drain(50, &no_in_flight());
        assert!(early.requests.is_empty(), "backoff not over yet");
        assert_eq!(early.next_wakeup, Some(h.at(101)));
        let r1 = h
            .drain(200, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        assert_eq!((r1.sequence, r1.attempts), (0, 2));
        assert!(h.drain(200, &no_in_flight()).requests.is_empty());
        h.acc.complete(
            r1,
            BatchResult::Success {
                base_offset: 0,
                log_append_time_ms: -1,
            },
            h.at(201),
        );
        let r2 = h
            .drain(202, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        assert_eq!(r2.sequence, 1);
        h.acc.complete(
            r2,
            BatchResult::Success {
                base_offset: 1,
                log_append_time_ms: -1,
            },
            h.at(203),
        );
        let b3 = h
            .drain(204, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        assert_eq!(b3.sequence, 2);
        h.acc.complete(
            b3,
            BatchResult::Success {
                base_offset: 2,
                log_append_time_ms: -1,
            },
            h.at(205),
        );
        let offsets: Vec<i64> = (0..3)
            .map(|i| h.result(i).unwrap().unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2]);
    }

    #[test]
    fn non_retriable_errors_fail_the_records_with_the_brokers_message() {
        let mut h = Harness::new(config());
        h.append(0, "a", 0);
        let batch = h
            .drain(20, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        let error = ClientError::partition("t", 0, ErrorCode::InvalidRecord, "bad record");
        let completion = h.acc.complete(batch, BatchResult::Error(error), h.at(21));
        let (batch, error) = completion.failed.unwrap();
        batch.fail(&error);
        let err = h.result(0).unwrap().unwrap_err();
        assert_eq!(err.to_string(), "t-0: INVALID_RECORD: bad record");
    }

    #[test]
    fn retry_pauses_double_up_to_the_maximum() {
        let cfg = config();
        let pauses: Vec<u64> = (1..=6)
            .map(|attempt| retry_pause(&cfg, attempt).as_millis() as u64)
            .collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn retries_stop_at_the_retries_limit() {
        let mut cfg = config();
        cfg.retries = 1;
        let mut h = Harness::new(cfg);
        h.append(0, "a", 0);
        let batch = h
            .drain(20, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        assert!(
            h.acc
                .complete(batch, BatchResult::Error(not_leader()), h.at(21))
                .failed
                .is_none()
        );
        let batch = h
            .drain(200, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        let completion = h
            .acc
            .complete(batch, BatchResult::Error(not_leader()), h.at(201));
        assert!(completion.failed.is_some());
    }

    #[test]
    fn batches_expire_after_delivery_timeout() {
        let mut cfg = config();
        cfg.delivery_timeout = Duration::from_millis(1000);
        let mut h = Harness::new(cfg);
        h.append(0, "a", 0);
        // No leader: the batch waits, and the drain asks for metadata.
        let outcome = h.acc.drain(h.at(20), false, |_| None, &no_in_flight());
        assert!(outcome.leaderless);
        assert_eq!(outcome.next_wakeup, Some(h.at(1000)));
        let mut outcome = h.acc.drain(h.at(1000), false, |_| None, &no_in_flight());
        let (_, error) = outcome.failed.remove(0);
        assert_eq!(
            error.to_string(),
            "Expiring 1 record(s) for t-0: 1000 ms has passed since batch creation"
        );
        assert!(h.acc.is_empty());
    }

    #[test]
    fn message_too_large_splits_the_batch_in_order() {
        for compression in [Compression::None, Compression::Lz4] {
            let mut cfg = config();
            cfg.batch_size = 10_000;
            cfg.compression = compression;
            let mut h = Harness::new(cfg);
            for i in 0..5 {
                h.append(0, &format!("v{i}"), i);
            }
            let batch = h
                .drain(20, &no_in_flight())
                .requests
                .remove(0)
                .batches
                .remove(0);
            let too_large = ClientError::partition("t", 0, ErrorCode::MessageTooLarge, "");
            let completion = h
                .acc
                .complete(batch, BatchResult::Error(too_large), h.at(21));
            assert!(completion.failed.is_none());
            assert_eq!(h.acc.queued_batches("t", 0), (0, 2, 0));
            let first = h
                .drain(22, &no_in_flight())
                .requests
                .remove(0)
                .batches
                .remove(0);
            assert_eq!(Harness::values(&first), vec!["v0", "v1"]);
            h.acc.complete(
                first,
                BatchResult::Success {
                    base_offset: 10,
                    log_append_time_ms: -1,
                },
                h.at(23),
            );
            let second = h
                .drain(24, &no_in_flight())
                .requests
                .remove(0)
                .batches
                .remove(0);
            assert_eq!(Harness::values(&second), vec!["v2", "v3", "v4"]);
            // The batch's flush entry stays until both halves are done.
            assert_eq!(h.incomplete.lock().unwrap().len(), 1);
            h.acc.complete(
                second,
                BatchResult::Success {
                    base_offset: 12,
                    log_append_time_ms: -1,
                },
                h.at(25),
            );
            assert!(h.incomplete.lock().unwrap().is_empty());
            let offsets: Vec<i64> = (0..5)
                .map(|i| h.result(i).unwrap().unwrap().offset)
                .collect();
            assert_eq!(offsets, vec![10, 11, 12, 13, 14]);
        }
    }

    #[test]
    fn a_single_record_too_large_fails() {
        let mut h = Harness::new(config());
        h.append(0, "a", 0);
        let batch = h
            .drain(20, &no_in_flight())
            .requests
            .remove(0)
            .batches
            .remove(0);
        let too_large = ClientError::partition("t", 0, ErrorCode::MessageTooLarge, "");
        assert!(
            h.acc
                .complete(batch, BatchResult::Error(too_large), h.at(21))
                .failed
                .is_some()
        );
    }

    #[test]
    fn compressed_batches_decode_to_the_same_records() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut cfg = config();
            cfg.compression = compression;
            let mut h = Harness::new(cfg);
            h.append(0, "hello", 0);
            h.append(0, "world", 0);
            let batch = h
                .drain(20, &no_in_flight())
                .requests
                .remove(0)
                .batches
                .remove(0);
            let header =
                records::validate_batch(batch.encoded.as_ref().unwrap(), usize::MAX).unwrap();
            assert_eq!(header.compression(), Some(compression));
            assert_eq!(Harness::values(&batch), vec!["hello", "world"]);
        }
    }
}
