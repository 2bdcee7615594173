//! The consumer: assigned partitions, positions, and records fetched from
//! each partition's leader.
//!
//! Fetching runs ahead of the application: [`Consumer::poll`] hands out
//! buffered records and, before returning, sends a long-poll fetch to every
//! leader that has none in flight (one per broker) for the partitions with
//! nothing buffered, so the next batch arrives while the caller works.
//! Leader changes (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, ...) refresh
//! metadata and the fetch goes to the new leader, carrying the leader epoch
//! the client believes current; OFFSET_OUT_OF_RANGE resets the position per
//! `auto.offset.reset`. Values are slices of the fetched buffer, not copies.
//!
//! Positions live only in this process: consumer groups and committed
//! offsets are not part of this client yet.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use protocol::ErrorCode;
use protocol::broker::{
    FetchPartition, FetchRequest, FetchResponse, ListOffsetsPartition, ListOffsetsRequest,
};
use records::{BatchHeader, Record, RecordHeader, TimestampType};
use tokio::sync::mpsc;

use crate::cluster::{ClusterSnapshot, Metadata, PartitionInfo, TopicPartition};
use crate::codec;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::ClientError;

/// A record as the consumer returns it. Key, value and header values share
/// the fetched buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// An offset found by timestamp, with the timestamp of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp: i64,
}

/// Where a partition's position must be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// As `auto.offset.reset` says.
    Policy,
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The offset of the next record to return.
    Known(i64),
    /// To be looked up with ListOffsets before fetching.
    Reset(Reset),
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    position: Position,
    /// Bumped by every seek: fetches sent before it are stale.
    generation: u64,
    in_flight: bool,
    high_watermark: Option<i64>,
    /// The leader a broker named in an error, with its epoch, used until
    /// the metadata catches up with it.
    leader_hint: Option<(i32, i32)>,
    /// No fetch before this (after an error).
    retry_after: Option<Instant>,
}

/// The records of one partition from one fetch answer, handed out bit by bit.
#[derive(Debug)]
struct CompletedFetch {
    topic_partition: TopicPartition,
    topic: Arc<str>,
    generation: u64,
    /// Batches back to back; `read` bytes of it are consumed.
    batches: Bytes,
    read: usize,
    /// The records of the batch being handed out.
    current: VecDeque<Record>,
    current_timestamp_type: TimestampType,
    /// The offset after the current batch: the position once it is done.
    current_next_offset: i64,
}

/// A fetch task's report.
#[derive(Debug)]
struct FetchOutcome {
    broker: i32,
    /// What was asked, with the generation of each partition at the time.
    requested: Vec<(TopicPartition, u64)>,
    result: Result<FetchResponse, ClientError>,
}

/// A Kafka consumer with manual assignment.
///
/// ```no_run
/// # async fn demo() -> Result<(), client::ClientError> {
/// use std::time::Duration;
/// use client::{Consumer, ConsumerConfig, TopicPartition};
///
/// let mut config = ConsumerConfig::new("localhost:9092")?;
/// config.set("auto.offset.reset", "earliest")?;
/// let mut consumer = Consumer::new(config)?;
/// let partitions = consumer.partitions_for("test").await?;
/// consumer.assign(partitions.iter().map(|p| TopicPartition::new("test", p.partition)));
/// loop {
///     for record in consumer.poll(Duration::from_millis(500)).await? {
///         println!("{}: {:?}", record.offset, record.value);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    metadata: Metadata,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    buffered: VecDeque<CompletedFetch>,
    brokers_in_flight: HashSet<i32>,
    outcomes_tx: mpsc::UnboundedSender<FetchOutcome>,
    outcomes: mpsc::UnboundedReceiver<FetchOutcome>,
}

impl Consumer {
    /// Starts a consumer with nothing assigned. Must be called within a
    /// tokio runtime.
    pub fn new(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        config.validate()?;
        let metadata = Metadata::start(config.common.clone(), config.allow_auto_create_topics);
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Ok(Consumer {
            config,
            metadata,
            partitions: BTreeMap::new(),
            buffered: VecDeque::new(),
            brokers_in_flight: HashSet::new(),
            outcomes_tx,
            outcomes,
        })
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Replaces the assignment. Partitions new to it start where
    /// `auto.offset.reset` says unless sought; partitions kept keep their
    /// position.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let wanted: HashSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions.retain(|tp, _| wanted.contains(tp));
        self.buffered
            .retain(|fetch| wanted.contains(&fetch.topic_partition));
        self.metadata
            .add_topics(wanted.iter().map(|tp| tp.topic.as_str()));
        for tp in wanted {
            self.partitions
                .entry(tp.clone())
                .or_insert_with(|| PartitionState {
                    topic: Arc::from(tp.topic.as_str()),
                    position: Position::Reset(Reset::Policy),
                    generation: 0,
                    in_flight: false,
                    high_watermark: None,
                    leader_hint: None,
                    retry_after: None,
                });
        }
    }

    /// The assigned partitions, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The next record of `tp` returned will be the one at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        self.reposition(tp, Position::Known(offset))
    }

    /// Moves to the first offset of each partition (all assigned ones if
    /// `partitions` is empty), looked up on the next `poll` or `position`.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.reposition_all(partitions, Position::Reset(Reset::Earliest))
    }

    /// Moves to the log end of each partition (all assigned ones if
    /// `partitions` is empty), looked up on the next `poll` or `position`.
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.reposition_all(partitions, Position::Reset(Reset::Latest))
    }

    fn reposition_all(
        &mut self,
        partitions: &[TopicPartition],
        position: Position,
    ) -> Result<(), ClientError> {
        let partitions = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.to_vec()
        };
        for tp in &partitions {
            self.reposition(tp, position)?;
        }
        Ok(())
    }

    fn reposition(&mut self, tp: &TopicPartition, position: Position) -> Result<(), ClientError> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| not_assigned(tp))?;
        state.position = position;
        state.generation += 1;
        state.retry_after = None;
        self.buffered.retain(|fetch| &fetch.topic_partition != tp);
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp`, looking it
    /// up first if a reset is pending.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, ClientError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.default_api_timeout_ms);
        loop {
            match self
                .partitions
                .get(tp)
                .ok_or_else(|| not_assigned(tp))?
                .position
            {
                Position::Known(offset) => return Ok(offset),
                Position::Reset(_) => self.reset_positions(deadline).await?,
            }
        }
    }

    /// The high watermark of `tp` as of the last fetch answer for it.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions
            .get(tp)
            .and_then(|state| state.high_watermark)
    }

    /// Returns up to `max.poll.records` records, waiting up to `timeout`
    /// for some to arrive. An empty vector means none came in time.
    ///
    /// Errors: a partition without a position and `auto.offset.reset=none`,
    /// an offset out of range with `none`, a corrupt batch (its position is
    /// left as it was, so `seek` past it to go on), or a broker's
    /// non-retriable error. Retriable errors are handled inside.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut metadata_updates = self.metadata.subscribe();
        loop {
            while let Ok(outcome) = self.outcomes.try_recv() {
                self.handle_outcome(outcome)?;
            }
            match self.reset_positions(deadline).await {
                // Not found in time: the next poll looks again, as Kafka's does.
                Err(error) if error.is_retriable() => {
                    tracing::debug!("offset lookup did not complete: {error}");
                }
                result => result?,
            }
            let records = self.take_buffered(self.config.max_poll_records)?;
            let next_retry = self.send_fetches();
            if !records.is_empty() {
                return Ok(records);
            }
            let wake = next_retry.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                Some(outcome) = self.outcomes.recv() => self.handle_outcome(outcome)?,
                Ok(()) = metadata_updates.changed() => {}
                () = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    /// Looks up positions that are pending a reset.
    async fn reset_positions(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let mut lookups = Vec::new();
        for (tp, state) in &self.partitions {
            let Position::Reset(reset) = state.position else {
                continue;
            };
            let timestamp = match (reset, self.config.auto_offset_reset) {
                (Reset::Earliest, _) | (Reset::Policy, OffsetReset::Earliest) => {
                    protocol::EARLIEST_TIMESTAMP
                }
                (Reset::Latest, _) | (Reset::Policy, OffsetReset::Latest) => {
                    protocol::LATEST_TIMESTAMP
                }
                (Reset::Policy, OffsetReset::None) => {
                    return Err(ClientError::NoOffsetForPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    });
                }
            };
            lookups.push((tp.clone(), timestamp));
        }
        if lookups.is_empty() {
            return Ok(());
        }
        let timeout_ms = self.config.default_api_timeout_ms;
        let found = self
            .list_offsets_until(&lookups, deadline, timeout_ms)
            .await?;
        for (tp, (offset, _)) in found {
            if let Some(state) = self.partitions.get_mut(&tp)
                && matches!(state.position, Position::Reset(_))
            {
                tracing::debug!("resetting the position of {tp} to offset {offset}");
                state.position = Position::Known(offset);
                state.generation += 1;
            }
        }
        Ok(())
    }

    /// Sends a fetch to every leader without one in flight, for the
    /// partitions with a position and nothing buffered. Returns the earliest
    /// backoff end, if some partition waits for one.
    fn send_fetches(&mut self) -> Option<Instant> {
        let snapshot = self.metadata.snapshot();
        let now = Instant::now();
        let mut next_retry: Option<Instant> = None;
        let mut need_metadata = false;
        let buffered: HashSet<&TopicPartition> =
            self.buffered.iter().map(|f| &f.topic_partition).collect();
        let mut by_broker: HashMap<i32, Vec<(FetchPartition, TopicPartition, u64)>> =
            HashMap::new();
        for (tp, state) in &self.partitions {
            let Position::Known(offset) = state.position else {
                continue;
            };
            if state.in_flight || buffered.contains(tp) {
                continue;
            }
            if let Some(at) = state.retry_after.filter(|&at| at > now) {
                next_retry = Some(next_retry.map_or(at, |t| t.min(at)));
                continue;
            }
            let Some((leader, epoch)) = current_leader(&snapshot, tp, state.leader_hint) else {
                need_metadata = true;
                continue;
            };
            if self.brokers_in_flight.contains(&leader) {
                continue;
            }
            by_broker.entry(leader).or_default().push((
                FetchPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    fetch_offset: offset,
                    current_leader_epoch: epoch,
                    last_fetched_epoch: -1,
                    partition_max_bytes: self.config.max_partition_fetch_bytes,
                    topic_id: Default::default(),
                },
                tp.clone(),
                state.generation,
            ));
        }
        if need_metadata {
            self.metadata.request_update();
        }
        for (broker, partitions) in by_broker {
            let (address, mut client) = match self.metadata.broker(broker) {
                Ok(found) => found,
                Err(err) => {
                    tracing::debug!("cannot fetch from broker {broker}: {err}");
                    self.metadata.request_update();
                    continue;
                }
            };
            let mut requested = Vec::with_capacity(partitions.len());
            let mut fetch_partitions = Vec::with_capacity(partitions.len());
            for (fetch, tp, generation) in partitions {
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.in_flight = true;
                }
                fetch_partitions.push(fetch);
                requested.push((tp, generation));
            }
            self.brokers_in_flight.insert(broker);
            let request = FetchRequest {
                replica_id: protocol::CONSUMER_REPLICA_ID,
                broker_epoch: -1,
                max_wait_ms: self.config.fetch_max_wait_ms,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_max_bytes,
                partitions: fetch_partitions,
            };
            let timeout = Duration::from_millis(
                self.config.common.request_timeout_ms + self.config.fetch_max_wait_ms.max(0) as u64,
            );
            let outcomes = self.outcomes_tx.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(timeout, client.fetch(request)).await {
                    Ok(Ok(response)) => Ok(response.into_inner()),
                    Ok(Err(status)) => Err(ClientError::from_status(&address, &status)),
                    Err(_) => Err(ClientError::Rpc {
                        address: address.to_string(),
                        status: tonic::Code::DeadlineExceeded,
                        message: format!("no fetch answer within {} ms", timeout.as_millis()),
                    }),
                };
                // The consumer may be gone; then nobody needs the answer.
                let _ = outcomes.send(FetchOutcome {
                    broker,
                    requested,
                    result,
                });
            });
        }
        next_retry
    }

    fn handle_outcome(&mut self, outcome: FetchOutcome) -> Result<(), ClientError> {
        self.brokers_in_flight.remove(&outcome.broker);
        let now = Instant::now();
        let backoff = self.config.common.retry_backoff();
        for (tp, _) in &outcome.requested {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.in_flight = false;
            }
        }
        let response = match outcome.result {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!("fetch from broker {} failed: {error}", outcome.broker);
                self.back_off(&outcome.requested, now + backoff);
                if error.invalidates_metadata() {
                    self.metadata.request_update();
                }
                return Ok(());
            }
        };
        if let Some(error) = ClientError::from_kafka(response.error_code, "") {
            tracing::debug!("fetch from broker {} refused: {error}", outcome.broker);
            self.back_off(&outcome.requested, now + backoff);
            self.metadata.request_update();
            return Ok(());
        }
        let generations: HashMap<&TopicPartition, u64> = outcome
            .requested
            .iter()
            .map(|(tp, generation)| (tp, *generation))
            .collect();
        let snapshot = self.metadata.snapshot();
        let mut first_error = None;
        for answer in response.partitions {
            let tp = TopicPartition::new(answer.topic, answer.partition);
            let Some(&generation) = generations.get(&tp) else {
                continue;
            };
            let Some(state) = self.partitions.get_mut(&tp) else {
                continue;
            };
            if state.generation != generation {
                continue; // sought since: this answer is stale.
            }
            let code = ErrorCode::from_code(answer.error_code);
            if code.is_ok() {
                state.high_watermark = Some(answer.high_watermark);
                if !answer.records.is_empty() {
                    self.buffered.push_back(CompletedFetch {
                        topic_partition: tp,
                        topic: Arc::clone(&state.topic),
                        generation,
                        batches: answer.records,
                        read: 0,
                        current: VecDeque::new(),
                        current_timestamp_type: TimestampType::CreateTime,
                        current_next_offset: 0,
                    });
                }
                continue;
            }
            match code {
                ErrorCode::OffsetOutOfRange => {
                    let offset = match state.position {
                        Position::Known(offset) => offset,
                        Position::Reset(_) => -1,
                    };
                    match self.config.auto_offset_reset {
                        OffsetReset::None => {
                            state.retry_after = Some(now + backoff);
                            first_error.get_or_insert(ClientError::OffsetOutOfRange {
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                                offset,
                            });
                        }
                        _ => {
                            tracing::info!(
                                "fetch offset {offset} is out of range for partition {tp}, resetting offset"
                            );
                            state.position = Position::Reset(Reset::Policy);
                            state.generation += 1;
                        }
                    }
                }
                code if code.invalidates_metadata() => {
                    // Follow the leader the broker named, if it is newer
                    // than what the metadata says.
                    let known_epoch = snapshot
                        .partition(&tp.topic, tp.partition)
                        .map_or(-1, |p| p.leader_epoch);
                    if answer.current_leader >= 0
                        && answer.current_leader_epoch > known_epoch
                        && snapshot.brokers.contains_key(&answer.current_leader)
                    {
                        state.leader_hint =
                            Some((answer.current_leader, answer.current_leader_epoch));
                    } else {
                        state.retry_after = Some(now + backoff);
                    }
                    tracing::debug!("fetch for {tp} failed with {code}; refreshing metadata");
                    self.metadata.request_update();
                }
                code if code.is_retriable() => {
                    tracing::debug!("fetch for {tp} failed with {code}; retrying");
                    state.retry_after = Some(now + backoff);
                }
                code => {
                    state.retry_after = Some(now + backoff);
                    first_error.get_or_insert(ClientError::partition(
                        &tp.topic,
                        tp.partition,
                        code,
                        answer.error_message,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn back_off(&mut self, requested: &[(TopicPartition, u64)], until: Instant) {
        for (tp, _) in requested {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.retry_after = Some(until);
            }
        }
    }

    /// Hands out up to `max` buffered records, advancing positions.
    fn take_buffered(&mut self, max: usize) -> Result<Vec<ConsumerRecord>, ClientError> {
        let mut out = Vec::new();
        let check_crcs = self.config.check_crcs;
        while out.len() < max {
            let Some(fetch) = self.buffered.front_mut() else {
                break;
            };
            let state = match self.partitions.get_mut(&fetch.topic_partition) {
                Some(state) if state.generation == fetch.generation => state,
                _ => {
                    self.buffered.pop_front();
                    continue;
                }
            };
            let Position::Known(position) = state.position else {
                self.buffered.pop_front();
                continue;
            };
            match fetch.next_record(position, check_crcs) {
                Ok(Some(record)) => {
                    state.position = Position::Known(record.offset + 1);
                    out.push(ConsumerRecord {
                        topic: Arc::clone(&fetch.topic),
                        partition: fetch.topic_partition.partition,
                        offset: record.offset,
                        timestamp: record.timestamp,
                        timestamp_type: fetch.current_timestamp_type,
                        key: record.key,
                        value: record.value,
                        headers: record.headers,
                    });
                }
                Ok(None) => {
                    if fetch.current_next_offset > position {
                        state.position = Position::Known(fetch.current_next_offset);
                    }
                    let progressed = fetch.read > 0;
                    let fetch = self.buffered.pop_front();
                    if !progressed && let Some(fetch) = fetch {
                        // Data came back but not one whole batch of it:
                        // fetching again would loop forever.
                        return Err(ClientError::CorruptRecord {
                            topic: fetch.topic_partition.topic,
                            partition: fetch.topic_partition.partition,
                            offset: position,
                            reason: format!(
                                "the fetch answer of {} bytes holds no complete record batch; is max.partition.fetch.bytes ({}) too small?",
                                fetch.batches.len(),
                                self.config.max_partition_fetch_bytes
                            ),
                        });
                    }
                }
                Err(reason) => {
                    let fetch = self.buffered.pop_front();
                    state.retry_after = Some(Instant::now() + self.config.common.retry_backoff());
                    let tp =
                        fetch.map_or_else(|| TopicPartition::new("", -1), |f| f.topic_partition);
                    return Err(ClientError::CorruptRecord {
                        topic: tp.topic,
                        partition: tp.partition,
                        offset: position,
                        reason,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The partitions of `topic`, waiting up to `default.api.timeout.ms`
    /// for its metadata (creating it if the broker auto-creates topics and
    /// `allow.auto.create.topics` is true).
    pub async fn partitions_for(&self, topic: &str) -> Result<Vec<PartitionInfo>, ClientError> {
        let timeout_ms = self.config.default_api_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let (snapshot, _) = self
            .metadata
            .await_topic(topic, deadline, timeout_ms)
            .await?;
        Ok(snapshot
            .topics
            .get(topic)
            .map(|t| t.partitions.clone())
            .unwrap_or_default())
    }

    /// The first offset of each partition (its log start offset).
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, ClientError> {
        self.offsets_at(partitions, protocol::EARLIEST_TIMESTAMP)
            .await
    }

    /// The log end offset of each partition as consumers see it (the high
    /// watermark): the offset the next record will get.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, ClientError> {
        self.offsets_at(partitions, protocol::LATEST_TIMESTAMP)
            .await
    }

    async fn offsets_at(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<HashMap<TopicPartition, i64>, ClientError> {
        let lookups: Vec<(TopicPartition, i64)> = partitions
            .iter()
            .map(|tp| (tp.clone(), timestamp))
            .collect();
        let timeout_ms = self.config.default_api_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let found = self
            .list_offsets_until(&lookups, deadline, timeout_ms)
            .await?;
        Ok(found
            .into_iter()
            .map(|(tp, (offset, _))| (tp, offset))
            .collect())
    }

    /// For each partition, the first offset whose record's timestamp is at
    /// or after the given one; `None` where no record is that recent.
    pub async fn offsets_for_times(
        &self,
        timestamps: &[(TopicPartition, i64)],
    ) -> Result<HashMap<TopicPartition, Option<OffsetAndTimestamp>>, ClientError> {
        if let Some((tp, timestamp)) = timestamps.iter().find(|(_, timestamp)| *timestamp < 0) {
            return Err(ClientError::invalid_argument(format!(
                "The target time for partition {tp} is {timestamp}. The target time cannot be negative."
            )));
        }
        let timeout_ms = self.config.default_api_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let found = self
            .list_offsets_until(timestamps, deadline, timeout_ms)
            .await?;
        Ok(found
            .into_iter()
            .map(|(tp, (offset, timestamp))| {
                let found = (offset >= 0).then_some(OffsetAndTimestamp { offset, timestamp });
                (tp, found)
            })
            .collect())
    }

    /// ListOffsets to each partition's leader, retrying retriable errors
    /// (after a metadata refresh) until `deadline`.
    async fn list_offsets_until(
        &self,
        lookups: &[(TopicPartition, i64)],
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<HashMap<TopicPartition, (i64, i64)>, ClientError> {
        self.metadata
            .add_topics(lookups.iter().map(|(tp, _)| tp.topic.as_str()));
        let mut remaining: Vec<(TopicPartition, i64)> = lookups.to_vec();
        let mut found = HashMap::new();
        let mut last_error: Option<ClientError> = None;
        loop {
            let snapshot = self.metadata.snapshot();
            let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64, i32)>> = HashMap::new();
            let mut waiting = Vec::new();
            for (tp, timestamp) in remaining.drain(..) {
                if let Some(metadata) = snapshot.topics.get(&tp.topic) {
                    if let Some((code, message)) = &metadata.error {
                        if !code.is_retriable() {
                            return Err(ClientError::Kafka {
                                code: *code,
                                message: message.clone(),
                            });
                        }
                    } else if !metadata.partitions.is_empty()
                        && tp.partition >= metadata.partition_count()
                    {
                        return Err(ClientError::partition(
                            &tp.topic,
                            tp.partition,
                            ErrorCode::UnknownTopicOrPartition,
                            "the topic has no such partition",
                        ));
                    }
                }
                match snapshot.leader(&tp.topic, tp.partition) {
                    Some((leader, epoch)) => by_leader
                        .entry(leader)
                        .or_default()
                        .push((tp, timestamp, epoch)),
                    None => waiting.push((tp, timestamp)),
                }
            }
            let calls = by_leader
                .into_iter()
                .map(|(leader, partitions)| self.list_offsets_at(leader, partitions));
            for (asked, result) in join_all(calls).await {
                match result {
                    Ok(answers) => {
                        for (tp, timestamp, answer) in answers {
                            match answer {
                                Ok(offset) => {
                                    found.insert(tp, offset);
                                }
                                Err(error) if error.is_retriable() => {
                                    last_error = Some(error);
                                    waiting.push((tp, timestamp));
                                }
                                Err(error) => return Err(error),
                            }
                        }
                    }
                    Err(error) => {
                        last_error = Some(error);
                        waiting.extend(asked);
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(found);
            }
            remaining = waiting;
            let now = Instant::now();
            if now >= deadline {
                let mut message = format!("Failed to get offsets by times in {timeout_ms}ms");
                if let Some(error) = last_error {
                    message.push_str(&format!(": {error}"));
                }
                return Err(ClientError::TimedOut { message });
            }
            // Wait for fresher metadata (bounded by the backoff, so a
            // broker-side transient error is retried even if it is not).
            let retry_at = (now + self.config.common.retry_backoff()).min(deadline);
            let _ = self.metadata.await_update(retry_at).await;
            tokio::time::sleep_until(retry_at.into()).await;
        }
    }

    /// One ListOffsets call. Returns what was asked (to retry on a
    /// transport error) and, per partition, `(offset, timestamp)` or its error.
    #[allow(clippy::type_complexity)]
    async fn list_offsets_at(
        &self,
        leader: i32,
        partitions: Vec<(TopicPartition, i64, i32)>,
    ) -> (
        Vec<(TopicPartition, i64)>,
        Result<Vec<(TopicPartition, i64, Result<(i64, i64), ClientError>)>, ClientError>,
    ) {
        let asked: Vec<(TopicPartition, i64)> = partitions
            .iter()
            .map(|(tp, ts, _)| (tp.clone(), *ts))
            .collect();
        let (address, mut client) = match self.metadata.broker(leader) {
            Ok(found) => found,
            Err(error) => return (asked, Err(error)),
        };
        let request = ListOffsetsRequest {
            replica_id: protocol::CONSUMER_REPLICA_ID,
            partitions: partitions
                .iter()
                .map(|(tp, timestamp, epoch)| ListOffsetsPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    timestamp: *timestamp,
                    current_leader_epoch: *epoch,
                })
                .collect(),
        };
        let call = tokio::time::timeout(
            self.config.common.request_timeout(),
            client.list_offsets(request),
        );
        let response = match call.await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return (asked, Err(ClientError::from_status(&address, &status))),
            Err(_) => {
                let error = ClientError::Rpc {
                    address: address.to_string(),
                    status: tonic::Code::DeadlineExceeded,
                    message: format!(
                        "no answer within {} ms",
                        self.config.common.request_timeout_ms
                    ),
                };
                return (asked, Err(error));
            }
        };
        let mut answers = Vec::with_capacity(asked.len());
        for (tp, timestamp) in &asked {
            let answer = response
                .partitions
                .iter()
                .find(|p| p.topic == tp.topic && p.partition == tp.partition);
            let result = match answer {
                None => Err(ClientError::partition(
                    &tp.topic,
                    tp.partition,
                    ErrorCode::UnknownServerError,
                    "no answer for this partition",
                )),
                Some(answer) => {
                    let code = ErrorCode::from_code(answer.error_code);
                    if code.is_ok() {
                        Ok((answer.offset, answer.timestamp))
                    } else {
                        if code.invalidates_metadata() {
                            self.metadata.request_update();
                        }
                        Err(ClientError::partition(
                            &tp.topic,
                            tp.partition,
                            code,
                            answer.error_message.clone(),
                        ))
                    }
                }
            };
            answers.push((tp.clone(), *timestamp, result));
        }
        (asked, Ok(answers))
    }
}

fn not_assigned(tp: &TopicPartition) -> ClientError {
    ClientError::NotAssigned {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

/// The leader to fetch from and the epoch to send: the metadata's, unless a
/// broker named a newer leader.
fn current_leader(
    snapshot: &ClusterSnapshot,
    tp: &TopicPartition,
    hint: Option<(i32, i32)>,
) -> Option<(i32, i32)> {
    let from_metadata = snapshot.leader(&tp.topic, tp.partition);
    match (from_metadata, hint) {
        (Some((_, epoch)), Some((hinted, hinted_epoch))) if hinted_epoch > epoch => {
            Some((hinted, hinted_epoch))
        }
        (None, Some(hinted)) if snapshot.brokers.contains_key(&hinted.0) => Some(hinted),
        (from_metadata, _) => from_metadata,
    }
}

impl CompletedFetch {
    /// The next record at or after `position`, decoding the next batch when
    /// the current one is used up; `None` when nothing whole is left.
    fn next_record(&mut self, position: i64, check_crcs: bool) -> Result<Option<Record>, String> {
        loop {
            while let Some(record) = self.current.pop_front() {
                if record.offset >= position {
                    return Ok(Some(record));
                }
            }
            let rest = &self.batches[self.read..];
            let Some(size) = records::peek_batch_size(rest) else {
                return Ok(None);
            };
            if size > rest.len() {
                // A partial batch at the end: the broker cut at max bytes.
                return Ok(None);
            }
            let slice = &rest[..size];
            let header = if check_crcs {
                records::validate_batch(slice, usize::MAX)
            } else {
                BatchHeader::parse(slice)
            }
            .map_err(|e| e.to_string())?;
            if header.size_in_bytes() != size {
                return Err(format!("batch length {} does not match its header", size));
            }
            let batch = self.batches.slice(self.read..self.read + size);
            self.read += size;
            self.current_next_offset = header.next_offset();
            if header.last_offset() < position || header.is_control() {
                continue;
            }
            let (header, decoded) =
                records::decode_batch(&batch, codec::decompress).map_err(|e| e.to_string())?;
            self.current_timestamp_type = header.timestamp_type();
            self.current = decoded.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::RecordBatchBuilder;

    fn batch(base_offset: i64, values: &[&str]) -> Bytes {
        let mut builder = RecordBatchBuilder::default();
        for (i, value) in values.iter().enumerate() {
            builder.append(1000 + i as i64, None, Some(value.as_bytes()), &[]);
        }
        let mut bytes = builder.finish().to_vec();
        records::set_base_offset_and_epoch(&mut bytes, base_offset, 0);
        Bytes::from(bytes)
    }

    fn fetch(data: Bytes) -> CompletedFetch {
        CompletedFetch {
            topic_partition: TopicPartition::new("t", 0),
            topic: Arc::from("t"),
            generation: 0,
            batches: data,
            read: 0,
            current: VecDeque::new(),
            current_timestamp_type: TimestampType::CreateTime,
            current_next_offset: 0,
        }
    }

    #[test]
    fn records_before_the_position_are_skipped_and_partial_tails_ignored() {
        let mut data = batch(10, &["a", "b", "c"]).to_vec();
        data.extend_from_slice(&batch(13, &["d"]));
        let tail = batch(14, &["e"]);
        data.extend_from_slice(&tail[..tail.len() - 3]);
        let mut fetch = fetch(Bytes::from(data));
        let mut position = 11;
        let mut values = Vec::new();
        while let Some(record) = fetch.next_record(position, true).unwrap() {
            position = record.offset + 1;
            values.push((record.offset, record.value.unwrap()));
        }
        assert_eq!(
            values,
            vec![
                (11, Bytes::from("b")),
                (12, Bytes::from("c")),
                (13, Bytes::from("d"))
            ]
        );
        assert_eq!(fetch.current_next_offset, 14);
    }

    #[test]
    fn values_share_the_fetched_buffer() {
        let data = batch(0, &["shared"]);
        let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
        let mut fetch = fetch(data);
        let record = fetch.next_record(0, true).unwrap().unwrap();
        let value = record.value.unwrap();
        assert!(
            range.contains(&(value.as_ptr() as usize)),
            "the value was copied"
        );
    }

    #[test]
    fn crc_errors_are_reported_only_when_checked() {
        let mut data = batch(0, &["value"]).to_vec();
        let at = data.windows(5).position(|w| w == b"value").unwrap();
        data[at] = b'V'; // inside the value, under the CRC
        let err = fetch(Bytes::from(data.clone()))
            .next_record(0, true)
            .unwrap_err();
        assert!(err.contains("CRC"), "{err}");
        let record = fetch(Bytes::from(data)).next_record(0, false).unwrap();
        assert!(record.is_some());
    }

    #[test]
    fn compressed_batches_are_decompressed() {
        let mut builder = RecordBatchBuilder::default();
        builder.append(5, Some(b"k"), Some(b"zipped"), &[]);
        let bytes = builder
            .finish_compressed(records::Compression::Gzip, |i, o| {
                codec::compress(records::Compression::Gzip, i, o)
            })
            .unwrap();
        let record = fetch(bytes).next_record(0, true).unwrap().unwrap();
        assert_eq!(record.value.unwrap(), Bytes::from("zipped"));
        assert_eq!(record.key.unwrap(), Bytes::from("k"));
    }
}
