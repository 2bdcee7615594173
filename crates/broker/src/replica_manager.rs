//! The broker's transport-free core: produce, fetch and list-offsets over
//! the partitions this broker hosts, and the application of the
//! coordinator's metadata (become leader, become follower, stop, delete).
//!
//! It takes and returns plain Rust types; `service` adapts gRPC to it, and a
//! Kafka-wire listener would be a second adapter over the same calls.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use protocol::ErrorCode;
use protocol::coordinator::metadata_record::Record;
use protocol::coordinator::{AlterPartitionRequest, MetadataUpdate, PartitionState, TopicInfo};
use protocol::image::MetadataImage;
use storage::{LogManager, TopicPartition};
use tracing::{error, info, warn};

use crate::fetcher::FetcherManager;
use crate::link::{CoordinatorLink, status_reason};
use crate::meta;
use crate::partition::{
    FollowerFetch, IsrChangeOutcome, LeaderHint, Partition, PartitionError, ReadResult,
};

/// Pause before an ISR change whose answer was lost is sent again.
const ISR_CHANGE_RESEND: Duration = Duration::from_millis(200);
use crate::settings::{self, Settings};

/// Produce `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn from_wire(acks: i32) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducePartition {
    pub tp: TopicPartition,
    pub records: Bytes,
}

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    /// `None` when the request carried an acks value Kafka does not know.
    pub acks: Option<Acks>,
    pub timeout: Duration,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone)]
pub struct ProduceResult {
    pub tp: TopicPartition,
    pub error: Option<PartitionError>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// A produce whose appends are done and whose acks=all waits are not.
#[derive(Debug)]
pub struct PendingProduce {
    timeout: Duration,
    entries: Vec<(ProduceResult, Option<AcksAllWait>)>,
}

/// An acks=all append waiting for the high watermark to pass it.
#[derive(Debug)]
struct AcksAllWait {
    partition: Arc<Partition>,
    last_offset: i64,
    leader_epoch: i32,
}

impl PendingProduce {
    /// Waits for every acks=all partition's high watermark to pass its batch.
    pub async fn complete(self) -> Vec<ProduceResult> {
        let timeout = self.timeout;
        join_all(
            self.entries
                .into_iter()
                .map(|(mut result, wait)| async move {
                    if let Some(wait) = wait
                        && let Err(err) = wait
                            .partition
                            .wait_for_high_watermark(wait.last_offset, wait.leader_epoch, timeout)
                            .await
                    {
                        result.error = Some(err);
                    }
                    result
                }),
        )
        .await
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReplicaIdentity {
    pub replica_id: i32,
    pub broker_epoch: i64,
}

#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    /// The topic id the fetcher's log belongs to, when it says (followers do).
    pub topic_id: Option<[u8; 16]>,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
    pub max_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Set for follower replicas; consumers read only below the high watermark.
    pub replica: Option<ReplicaIdentity>,
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone)]
pub struct FetchResult {
    pub tp: TopicPartition,
    pub error: Option<PartitionError>,
    pub read: ReadResult,
    pub leader_hint: Option<LeaderHint>,
}

#[derive(Debug, Clone)]
pub struct ListOffsetsResult {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

#[derive(Debug)]
pub struct ReplicaManager {
    broker_id: i32,
    settings: Arc<Settings>,
    logs: Arc<LogManager>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    image: RwLock<MetadataImage>,
    /// The cluster this broker's logs belong to (`meta.properties`), and
    /// whether the current watch is being refused for naming another.
    cluster: Mutex<ClusterIdentity>,
    /// Partitions whose last state could not be applied (a log that would
    /// not open, an epoch checkpoint that would not write): retried until
    /// they take, since no new metadata may come to retry them.
    failed: Mutex<BTreeSet<TopicPartition>>,
    /// Set by `stop_all_partitions`: metadata arriving later is not applied.
    stopped: std::sync::atomic::AtomicBool,
    link: Arc<CoordinatorLink>,
    fetchers: FetcherManager,
}

#[derive(Debug, Default)]
struct ClusterIdentity {
    cluster_id: Option<String>,
    refusing: bool,
}

impl ReplicaManager {
    /// `cluster_id` is what the log dirs' `meta.properties` recorded, if
    /// anything yet.
    pub fn new(
        settings: Arc<Settings>,
        logs: Arc<LogManager>,
        link: Arc<CoordinatorLink>,
        cluster_id: Option<String>,
    ) -> Arc<ReplicaManager> {
        if let Some(id) = &cluster_id {
            link.set_cluster_id(id);
        }
        Arc::new_cyclic(|weak| ReplicaManager {
            broker_id: settings.broker_id,
            fetchers: FetcherManager::new(settings.clone(), link.clone(), weak.clone()),
            settings,
            logs,
            partitions: RwLock::new(HashMap::new()),
            image: RwLock::new(MetadataImage::default()),
            cluster: Mutex::new(ClusterIdentity {
                cluster_id,
                refusing: false,
            }),
            failed: Mutex::new(BTreeSet::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            link,
        })
    }

    /// Checks an update's cluster against the one the logs belong to,
    /// recording it on first contact. Returns `None` to refuse the update,
    /// else whether the cluster id was known before (so a snapshot that
    /// omits a topic means the topic is gone, not that the coordinator is
    /// new to this broker).
    fn check_cluster(&self, update: &MetadataUpdate) -> Option<bool> {
        let mut cluster = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if update.cluster_id.is_empty() {
            return (!cluster.refusing).then_some(cluster.cluster_id.is_some());
        }
        match &cluster.cluster_id {
            Some(known) if *known == update.cluster_id => {
                if cluster.refusing {
                    info!("The coordinator serves cluster {known} again");
                    cluster.refusing = false;
                }
                Some(true)
            }
            Some(known) => {
                if !cluster.refusing {
                    error!(
                        "Refusing metadata of cluster {}: this broker's logs belong to cluster {known} (was the coordinator started on another dataDir?)",
                        update.cluster_id
                    );
                    cluster.refusing = true;
                }
                None
            }
            None => {
                let id = update.cluster_id.clone();
                match meta::store(&self.settings.log_dirs, self.broker_id, &id) {
                    Ok(()) => info!(
                        "The logs of broker {} belong to cluster {id}",
                        self.broker_id
                    ),
                    Err(err) => error!("Cannot record the cluster id {id}: {err}"),
                }
                self.link.set_cluster_id(&id);
                cluster.cluster_id = Some(id);
                Some(false)
            }
        }
    }

    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    pub fn link(&self) -> &Arc<CoordinatorLink> {
        &self.link
    }

    /// Runs `f` over the current metadata image.
    pub fn with_image<T>(&self, f: impl FnOnce(&MetadataImage) -> T) -> T {
        f(&self.image.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn unknown_partition(&self, tp: &TopicPartition) -> PartitionError {
        // A topic the cluster knows but this broker does not host is a
        // leadership question; a topic nobody knows is unknown.
        let known = self.with_image(|image| image.partition(&tp.topic, tp.partition).is_some());
        if known {
            PartitionError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("broker {} does not host {tp}", self.broker_id),
            )
        } else {
            PartitionError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("this server does not host topic-partition {tp}"),
            )
        }
    }

    // ------------------------------------------------------------ produce

    /// Appends every partition of a produce request, in request order. The
    /// returned value waits for acks=all replication.
    pub fn append_produce(&self, request: ProduceRequest, now_ms: i64) -> PendingProduce {
        let mut entries = Vec::with_capacity(request.partitions.len());
        for ProducePartition { tp, records } in request.partitions {
            let mut result = ProduceResult {
                tp,
                error: None,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
            };
            let Some(acks) = request.acks else {
                result.error = Some(PartitionError::new(
                    ErrorCode::InvalidRequiredAcks,
                    "acks must be -1 (all), 0 or 1",
                ));
                entries.push((result, None));
                continue;
            };
            let Some(partition) = self.partition(&result.tp) else {
                result.error = Some(self.unknown_partition(&result.tp));
                entries.push((result, None));
                continue;
            };
            result.log_start_offset = partition.log.log_start_offset();
            match partition.append_as_leader(&records, acks == Acks::All, now_ms) {
                Ok(appended) => {
                    result.base_offset = appended.info.first_offset;
                    result.log_append_time_ms = appended.info.log_append_time_ms;
                    let wait = (acks == Acks::All).then(|| AcksAllWait {
                        partition: partition.clone(),
                        last_offset: appended.info.last_offset,
                        leader_epoch: appended.leader_epoch,
                    });
                    entries.push((result, wait));
                }
                Err(err) => {
                    result.error = Some(err);
                    entries.push((result, None));
                }
            }
        }
        PendingProduce {
            timeout: request.timeout,
            entries,
        }
    }

    pub async fn produce(&self, request: ProduceRequest, now_ms: i64) -> Vec<ProduceResult> {
        self.append_produce(request, now_ms).complete().await
    }

    // ------------------------------------------------------------ fetch

    /// Answers a fetch, waiting up to `max_wait` for `min_bytes` to arrive:
    /// followers wait for appends, consumers for the high watermark.
    pub async fn fetch(self: &Arc<Self>, request: FetchRequest) -> Vec<FetchResult> {
        if let Some(replica) = request.replica
            && let Some(error) = self.check_replica_epoch(replica)
        {
            return request
                .partitions
                .into_iter()
                .map(|p| FetchResult {
                    tp: p.tp,
                    error: Some(error.clone()),
                    read: ReadResult::default(),
                    leader_hint: None,
                })
                .collect();
        }
        let partitions: Vec<Option<Arc<Partition>>> = request
            .partitions
            .iter()
            .map(|p| self.partition(&p.tp))
            .collect();
        let deadline = tokio::time::Instant::now() + request.max_wait;
        // Subscribing before the first read means no append between the read
        // and the wait can be missed.
        let mut hw_watches: Vec<_> = Vec::new();
        let mut leo_watches: Vec<_> = Vec::new();
        for partition in partitions.iter().flatten() {
            if request.replica.is_some() {
                leo_watches.push(partition.subscribe_leo());
            } else {
                hw_watches.push(partition.subscribe_hw());
            }
        }
        loop {
            for w in &mut hw_watches {
                w.borrow_and_update();
            }
            for w in &mut leo_watches {
                w.borrow_and_update();
            }
            let results = self.read_all(&request, &partitions);
            let bytes: usize = results.iter().map(|r| r.read.records.len()).sum();
            let any_error = results.iter().any(|r| r.error.is_some());
            if bytes >= request.min_bytes.max(1)
                || any_error
                || request.max_wait.is_zero()
                || tokio::time::Instant::now() >= deadline
                || (hw_watches.is_empty() && leo_watches.is_empty())
            {
                return results;
            }
            let changes = hw_watches
                .iter_mut()
                .map(|w| Box::pin(async move { w.changed().await.is_ok() }) as _)
                .chain(
                    leo_watches
                        .iter_mut()
                        .map(|w| Box::pin(async move { w.changed().await.is_ok() }) as _),
                )
                .collect::<Vec<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>>>();
            if tokio::time::timeout_at(deadline, futures::future::select_all(changes))
                .await
                .is_err()
            {
                return self.read_all(&request, &partitions);
            }
        }
    }

    fn check_replica_epoch(&self, replica: ReplicaIdentity) -> Option<PartitionError> {
        let current = self.with_image(|image| {
            image
                .brokers
                .get(&replica.replica_id)
                .map(|b| b.broker_epoch)
        });
        match current {
            Some(epoch) if replica.broker_epoch < epoch => Some(PartitionError::new(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "broker {} fetched with epoch {} but its current epoch is {epoch}",
                    replica.replica_id, replica.broker_epoch
                ),
            )),
            _ => None,
        }
    }

    fn read_all(
        self: &Arc<Self>,
        request: &FetchRequest,
        partitions: &[Option<Arc<Partition>>],
    ) -> Vec<FetchResult> {
        let mut budget = request.max_bytes;
        let mut any_data = false;
        let mut results = Vec::with_capacity(partitions.len());
        for (fetch, partition) in request.partitions.iter().zip(partitions) {
            let mut result = FetchResult {
                tp: fetch.tp.clone(),
                error: None,
                read: ReadResult::default(),
                leader_hint: None,
            };
            let Some(partition) = partition else {
                result.error = Some(self.unknown_partition(&fetch.tp));
                results.push(result);
                continue;
            };
            if topic_ids_conflict(fetch.topic_id, partition.log.topic_id()) {
                // The topic was deleted and created again, and one side has
                // not seen it yet: the old topic's records must not flow.
                result.error = Some(PartitionError::new(
                    ErrorCode::InconsistentTopicId,
                    format!(
                        "the topic id of the fetch does not match this broker's log of {}",
                        fetch.tp
                    ),
                ));
                results.push(result);
                continue;
            }
            // Until some partition has returned data, a partition gets a
            // whole batch even over the budget, so one large batch cannot
            // stall a reader; after that the budget is a hard limit, so the
            // answer stays within max_bytes plus one batch.
            let min_one_batch = !any_data;
            let max_bytes = if min_one_batch {
                fetch.max_bytes.min(budget.max(1))
            } else {
                fetch.max_bytes.min(budget)
            };
            let read = match request.replica {
                Some(replica) => partition
                    .read_for_follower(
                        replica.replica_id,
                        replica.broker_epoch,
                        &FollowerFetch {
                            fetch_offset: fetch.fetch_offset,
                            current_leader_epoch: fetch.current_leader_epoch,
                            last_fetched_epoch: fetch.last_fetched_epoch,
                        },
                        max_bytes,
                        min_one_batch,
                    )
                    .map(|(read, isr_change)| {
                        if let Some(change) = isr_change {
                            self.send_isr_change(partition.clone(), change);
                        }
                        read
                    }),
                None => partition.read_for_consumer(
                    fetch.fetch_offset,
                    fetch.current_leader_epoch,
                    max_bytes,
                    min_one_batch,
                ),
            };
            match read {
                Ok(read) => {
                    budget = budget.saturating_sub(read.records.len());
                    any_data |= !read.records.is_empty();
                    result.read = read;
                }
                Err(err) => {
                    result.read.high_watermark = partition.log.high_watermark();
                    result.read.log_start_offset = partition.log.log_start_offset();
                    if matches!(
                        err.code,
                        ErrorCode::NotLeaderOrFollower
                            | ErrorCode::FencedLeaderEpoch
                            | ErrorCode::UnknownLeaderEpoch
                    ) {
                        result.leader_hint = Some(partition.leader_hint());
                    }
                    result.error = Some(err);
                }
            }
            results.push(result);
        }
        results
    }

    // ------------------------------------------------------------ offsets

    /// Kafka's ListOffsets for consumers (`replica_id` -1: bounded by the
    /// high watermark) and for replicas (bounded by the log end offset).
    pub fn list_offsets(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
        current_leader_epoch: i32,
        from_consumer: bool,
    ) -> Result<ListOffsetsResult, PartitionError> {
        let partition = self
            .partition(tp)
            .ok_or_else(|| self.unknown_partition(tp))?;
        let hint = partition.leader_hint();
        if hint.leader != self.broker_id {
            return Err(PartitionError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("broker {} is not the leader of {tp}", self.broker_id),
            ));
        }
        if current_leader_epoch >= 0 && current_leader_epoch != hint.leader_epoch {
            let code = if current_leader_epoch < hint.leader_epoch {
                ErrorCode::FencedLeaderEpoch
            } else {
                ErrorCode::UnknownLeaderEpoch
            };
            return Err(PartitionError::new(
                code,
                format!(
                    "leader epoch {current_leader_epoch} does not match the current {} of {tp}",
                    hint.leader_epoch
                ),
            ));
        }
        let log = &partition.log;
        let upper = if from_consumer {
            log.high_watermark()
        } else {
            log.log_end_offset()
        };
        let found = |timestamp, offset| ListOffsetsResult {
            timestamp,
            offset,
            leader_epoch: hint.leader_epoch,
        };
        match timestamp {
            protocol::EARLIEST_TIMESTAMP => Ok(found(-1, log.log_start_offset())),
            protocol::LATEST_TIMESTAMP => Ok(found(-1, upper)),
            ts if ts < 0 => Err(PartitionError::new(
                ErrorCode::InvalidRequest,
                format!("timestamp {ts} is neither -2 (earliest), -1 (latest) nor a time"),
            )),
            ts => match log.offset_for_timestamp(ts)? {
                Some((offset, timestamp)) if offset < upper => Ok(found(timestamp, offset)),
                _ => Ok(found(-1, -1)),
            },
        }
    }

    // ------------------------------------------------------------ ISR

    /// Sends an ISR change and settles it with the answer. A lost answer
    /// (timeout, broken connection) is asked for again with the same
    /// request until the change is answered or superseded: the coordinator
    /// may have committed it, so it must not be forgotten.
    fn send_isr_change(
        self: &Arc<Self>,
        partition: Arc<Partition>,
        mut request: AlterPartitionRequest,
    ) {
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                request.broker_epoch = manager.link.broker_epoch();
                match manager.link.alter_partition(request.clone()).await {
                    Ok(response) => {
                        let code = ErrorCode::from_code(response.error_code);
                        let outcome = match (code, response.partition) {
                            (ErrorCode::None, Some(state)) => IsrChangeOutcome::Committed(state),
                            (ErrorCode::None, None) => IsrChangeOutcome::Refused(None),
                            (_, state) => {
                                info!(
                                    "ISR change of {} to {:?} refused by the coordinator: {code}: {}",
                                    partition.tp, request.new_isr, response.error_message
                                );
                                IsrChangeOutcome::Refused(state)
                            }
                        };
                        partition.complete_isr_change(&request, &outcome);
                        return;
                    }
                    Err(status) => {
                        warn!(
                            "ISR change of {} to {:?} got no answer ({}); asking again",
                            partition.tp,
                            request.new_isr,
                            status_reason(&status)
                        );
                        tokio::time::sleep(ISR_CHANGE_RESEND).await;
                        if !partition.isr_change_pending(&request) {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// One pass of the leader's ISR shrink check.
    pub fn shrink_lagging_isrs(self: &Arc<Self>) {
        for partition in self.partitions() {
            if let Some(change) = partition.maybe_shrink_isr() {
                self.send_isr_change(partition, change);
            }
        }
    }

    // ------------------------------------------------------------ metadata

    /// Applies one update of the coordinator's metadata stream and acts on
    /// every partition it touches. Returns the version now held.
    pub fn apply_metadata(&self, update: &MetadataUpdate) -> i64 {
        // The image stays locked until every touched partition has acted on
        // it, so a Metadata answer never names this broker as a leader
        // before it leads. Nothing below reads the image.
        let mut image = self.image.write().unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return image.version;
        }
        let Some(cluster_known) = self.check_cluster(update) else {
            return image.version;
        };
        // Logs are deleted only on the coordinator's explicit word: a topic
        // removed in this update, or a snapshot (of the cluster these logs
        // are known to belong to) that no longer has it.
        let snapshot_trusted = update.snapshot && cluster_known;
        let removed_topics: BTreeSet<&str> = update
            .records
            .iter()
            .filter_map(|r| match &r.record {
                Some(Record::RemoveTopic(t)) => Some(t.name.as_str()),
                _ => None,
            })
            .collect();
        let mut touched_topics: BTreeSet<String> = BTreeSet::new();
        let mut touched: BTreeSet<(String, i32)> = BTreeSet::new();
        let mut brokers_changed = false;
        if update.snapshot {
            for tp in self
                .partitions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
            {
                touched.insert((tp.topic.clone(), tp.partition));
            }
        }
        for record in &update.records {
            match &record.record {
                Some(Record::Partition(p)) => {
                    touched.insert((p.topic.clone(), p.partition));
                }
                Some(Record::Topic(t)) => {
                    touched_topics.insert(t.name.clone());
                }
                Some(Record::RemoveTopic(t)) => {
                    touched_topics.insert(t.name.clone());
                }
                Some(Record::Broker(_)) => brokers_changed = true,
                None => {}
            }
        }
        // Partitions of a removed or replaced topic are touched too.
        for topic in &touched_topics {
            if let Some(t) = image.topics.get(topic) {
                touched.extend(t.partitions.keys().map(|p| (topic.clone(), *p)));
            }
        }
        image.apply_update(update);
        if update.snapshot {
            touched_topics.extend(image.topics.keys().cloned());
        }
        for topic in &touched_topics {
            if let Some(t) = image.topics.get(topic) {
                touched.extend(t.partitions.keys().map(|p| (topic.clone(), *p)));
            }
        }
        for (topic, index) in touched {
            let tp = TopicPartition {
                topic,
                partition: index,
            };
            let topic = image.topics.get(&tp.topic);
            match topic.and_then(|t| t.partitions.get(&index).map(|p| (&t.info, p))) {
                Some((info, state)) if state.replicas.contains(&self.broker_id) => {
                    self.apply_partition_state(&tp, info, state);
                }
                Some(_) => self.remove_partition(&tp, true),
                None => {
                    let gone = topic.is_none()
                        && (removed_topics.contains(tp.topic.as_str()) || snapshot_trusted);
                    if topic.is_none() && !gone {
                        warn!(
                            "Keeping the log of {tp}: the coordinator does not know the topic, but never said it was deleted"
                        );
                    }
                    self.remove_partition(&tp, gone);
                }
            }
        }
        if brokers_changed || update.snapshot {
            self.fetchers.refresh_endpoints();
        }
        image.version
    }

    fn apply_partition_state(&self, tp: &TopicPartition, info: &TopicInfo, state: &PartitionState) {
        let applied = self.try_apply_partition_state(tp, info, state);
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if applied {
            failed.remove(tp);
        } else {
            failed.insert(tp.clone());
        }
    }

    /// Applies the current state of every partition that failed to take it
    /// (called periodically).
    pub fn retry_failed_partitions(&self) {
        // After shutdown stopped every partition, as metadata updates are.
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let pending: Vec<TopicPartition> = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        let image = self.image.read().unwrap_or_else(|e| e.into_inner());
        for tp in pending {
            match image
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(&tp.partition).map(|p| (&t.info, p)))
            {
                Some((info, state)) if state.replicas.contains(&self.broker_id) => {
                    self.apply_partition_state(&tp, info, state);
                }
                _ => {
                    self.failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&tp);
                }
            }
        }
    }

    /// Returns false if the state could not be applied (to be retried).
    fn try_apply_partition_state(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        state: &PartitionState,
    ) -> bool {
        let partition = match self.ensure_partition(tp, info) {
            Ok(partition) => partition,
            Err(err) => {
                error!("Cannot open the log of {tp}: {err}; retrying");
                return false;
            }
        };
        if state.leader == self.broker_id {
            match partition.make_leader(state) {
                Ok(true) => {
                    self.fetchers.remove(tp);
                    info!(
                        "Broker {} is the leader of {tp} at leader epoch {} (ISR {:?}), log end offset {}",
                        self.broker_id,
                        state.leader_epoch,
                        state.isr,
                        partition.log.log_end_offset()
                    );
                }
                Ok(false) => {}
                Err(err) => {
                    error!("Cannot become the leader of {tp}: {err}; retrying");
                    return false;
                }
            }
        } else {
            match partition.make_follower(state) {
                Some(Some(target)) => {
                    info!(
                        "Broker {} follows broker {} for {tp} at leader epoch {}",
                        self.broker_id, target.leader, target.leader_epoch
                    );
                    self.fetchers.assign(partition, target);
                }
                Some(None) => {
                    info!(
                        "{tp} has no leader; broker {} stops fetching it",
                        self.broker_id
                    );
                    self.fetchers.remove(tp);
                }
                None => {}
            }
        }
        true
    }

    fn ensure_partition(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
    ) -> Result<Arc<Partition>, storage::StorageError> {
        let topic_id = topic_id_bytes(&info.topic_id);
        let topic_config = settings::topic_config(&self.settings, &info.configs);
        if let Some(existing) = self.partition(tp) {
            if existing.log.topic_id() == topic_id {
                existing.log.set_config(settings::log_config(&topic_config));
                existing.set_min_insync_replicas(topic_config.min_insync_replicas as usize);
                return Ok(existing);
            }
            // The topic was deleted and created again under the same name.
            self.remove_partition(tp, true);
        }
        let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = partitions.get(tp) {
            return Ok(existing.clone());
        }
        let log_config = settings::log_config(&topic_config);
        let log = match self.logs.get(tp) {
            Some(log) if log.topic_id() != topic_id => {
                warn!(
                    "The log of {tp} on disk belongs to an earlier topic of that name; deleting it"
                );
                self.logs.delete(tp)?;
                self.logs.get_or_create(tp, topic_id, log_config)?
            }
            Some(log) => {
                log.set_config(log_config);
                log
            }
            None => self.logs.get_or_create(tp, topic_id, log_config)?,
        };
        let partition = Arc::new(Partition::new(
            tp.clone(),
            log,
            self.broker_id,
            topic_config.min_insync_replicas as usize,
            settings::replica_lag_time_max(&self.settings),
        ));
        partitions.insert(tp.clone(), partition.clone());
        Ok(partition)
    }

    fn remove_partition(&self, tp: &TopicPartition, delete_log: bool) {
        let removed = self
            .partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp);
        self.fetchers.remove(tp);
        if let Some(partition) = removed {
            partition.stop();
            info!("Broker {} no longer serves {tp}", self.broker_id);
        }
        if delete_log && self.logs.get(tp).is_some() {
            match self.logs.delete(tp) {
                Ok(()) => info!("Deleted the log of {tp}"),
                Err(err) => error!("Cannot delete the log of {tp}: {err}"),
            }
        }
    }

    /// Stops serving every partition (the last step before the logs close).
    pub fn stop_all_partitions(&self) {
        // Under the image lock: no metadata application is half done.
        let _image = self.image.write().unwrap_or_else(|e| e.into_inner());
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        for partition in self.partitions() {
            partition.stop();
        }
    }

    /// Stops every fetcher (controlled shutdown, after leadership moved).
    pub async fn stop_fetchers(&self) {
        self.fetchers.shutdown().await;
    }
}

/// Whether a fetch names another incarnation of the topic than this log.
/// The all-zero id means "not known" on either side (a log written before
/// it learnt its id, a client that sends none), as `LogManager` treats it:
/// only two known ids can conflict.
fn topic_ids_conflict(fetch: Option<[u8; 16]>, log: [u8; 16]) -> bool {
    const UNKNOWN: [u8; 16] = [0; 16];
    fetch.is_some_and(|id| id != UNKNOWN && log != UNKNOWN && id != log)
}

fn topic_id_bytes(id: &Bytes) -> [u8; 16] {
    let mut out = [0u8; 16];
    if id.len() == 16 {
        out.copy_from_slice(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::topic_ids_conflict;

    #[test]
    fn only_two_known_topic_ids_can_conflict() {
        let (a, b, unknown) = ([1; 16], [2; 16], [0; 16]);
        assert!(topic_ids_conflict(Some(a), b), "a recreated topic");
        assert!(!topic_ids_conflict(Some(a), a));
        assert!(!topic_ids_conflict(None, a), "a client that sends no id");
        assert!(
            !topic_ids_conflict(Some(unknown), a),
            "a follower whose log has not learnt its id yet"
        );
        assert!(
            !topic_ids_conflict(Some(a), unknown),
            "a leader whose log has not learnt its id yet"
        );
    }
}
