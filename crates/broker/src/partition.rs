//! One partition replica on this broker: its log, whether it leads or
//! follows, and (when it leads) its followers' progress, the ISR and the
//! high watermark.
//!
//! Thread-safety: `state` is a read-write lock. Produce appends and fetches
//! hold it for reading, so they run concurrently with each other (the log
//! serialises appends itself); becoming leader or follower takes it for
//! writing, so no append can slip into the log under an epoch that is no
//! longer this broker's. Follower progress sits in a mutex inside the leader
//! state and is never held across I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use protocol::ErrorCode;
use protocol::coordinator::{AlterPartitionRequest, PartitionState};
use storage::{Log, LogAppendInfo, StorageError, TopicPartition};
use tokio::sync::watch;
// Tokio's clock, so tests can pause and advance time through lag windows.
use tokio::time::Instant;

/// What a long-polling consumer fetch or an acks=all produce waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwSignal {
    pub high_watermark: i64,
    /// The leader epoch this broker leads under; -1 when it does not lead.
    pub leader_epoch: i32,
}

/// A partition-level failure with Kafka's code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub code: ErrorCode,
    pub message: String,
}

impl PartitionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PartitionError {
            code,
            message: message.into(),
        }
    }
}

impl From<StorageError> for PartitionError {
    fn from(err: StorageError) -> Self {
        let code = match &err {
            StorageError::InvalidBatch(_) => ErrorCode::CorruptMessage,
            StorageError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            StorageError::RecordBatchTooLarge { .. } => ErrorCode::RecordListTooLarge,
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::Io { .. } => ErrorCode::KafkaStorageError,
            _ => ErrorCode::UnknownServerError,
        };
        PartitionError::new(code, err.to_string())
    }
}

/// What the leader knows of one follower, from its fetches.
#[derive(Debug, Clone)]
struct FollowerProgress {
    /// The broker epoch the follower fetched with; a newer one means a
    /// restarted broker whose earlier progress no longer holds.
    broker_epoch: i64,
    /// -1 until the follower's first fetch under this leadership.
    log_end_offset: i64,
    last_caught_up: Instant,
    /// The leader's log end offset and the time of the follower's previous
    /// fetch: reaching that offset later still counts as caught up then.
    last_fetch_leader_leo: i64,
    last_fetch_time: Instant,
}

#[derive(Debug)]
struct LeaderState {
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The ISR as committed by the coordinator.
    isr: Vec<i32>,
    /// An ISR change sent to the coordinator and not yet settled, and when
    /// a refused change may be tried again.
    isr_change: Mutex<IsrChange>,
    /// The log end offset when this leadership began: a follower joins the
    /// ISR only once it has everything of earlier epochs.
    epoch_start_offset: i64,
    followers: Mutex<HashMap<i32, FollowerProgress>>,
}

/// The life of one proposed ISR change.
///
/// While a change is pending the coordinator may already have committed it,
/// so the high watermark waits for the union of the committed and proposed
/// ISRs. A pending change settles only on the coordinator's answer to that
/// very request, or when metadata shows a partition epoch newer than the one
/// it was based on (the compare-and-set then refuses it anyway). A lost
/// answer (timeout, broken connection) leaves it pending and the same
/// request is sent again: dropping it early could let the high watermark
/// pass a replica the coordinator counts in the ISR.
#[derive(Debug, Default)]
struct IsrChange {
    pending: Option<PendingIsr>,
    retry_after: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingIsr {
    isr: Vec<i32>,
    /// The partition epoch the request was based on.
    based_on: i32,
}

impl IsrChange {
    /// Claims the right to send `new_isr`, unless a change is in flight or a
    /// refused one is still backing off.
    fn try_begin(&mut self, new_isr: &[i32], based_on: i32, now: Instant) -> bool {
        if self.pending.is_some() || self.retry_after.is_some_and(|t| now < t) {
            return false;
        }
        self.pending = Some(PendingIsr {
            isr: new_isr.to_vec(),
            based_on,
        });
        true
    }

    /// Whether `request` is the change in flight (same base epoch, same
    /// ISR): only its own answer settles it.
    fn is_pending(&self, request: &AlterPartitionRequest) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.based_on == request.partition_epoch && p.isr == request.new_isr)
    }

    /// Metadata reached `partition_epoch`: a pending change based on an
    /// older epoch is settled, one way or the other.
    fn superseded_by(&mut self, partition_epoch: i32) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.based_on < partition_epoch)
        {
            self.pending = None;
        }
    }
}

/// How the coordinator answered an ISR change.
#[derive(Debug, Clone, PartialEq)]
pub enum IsrChangeOutcome {
    /// Committed: the partition as it now stands.
    Committed(PartitionState),
    /// Refused; the partition as the coordinator has it, when it said.
    Refused(Option<PartitionState>),
}

/// How long a leader waits before proposing an ISR change again after the
/// coordinator refused one or could not be reached.
const ISR_CHANGE_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
struct FollowerState {
    /// -1 while the partition has no leader.
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

#[derive(Debug)]
enum ReplicaState {
    Leader(LeaderState),
    Follower(FollowerState),
    /// Known to the log manager but not (yet, or any longer) served.
    Stopped,
}

/// A follower that this broker should fetch from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTarget {
    pub leader: i32,
    pub leader_epoch: i32,
}

/// The result of a leader append, before acks=all waiting.
#[derive(Debug, Clone)]
pub struct Appended {
    pub info: LogAppendInfo,
    pub leader_epoch: i32,
}

/// One partition's part of a fetch answer.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub diverging_epoch: Option<(i32, i64)>,
}

/// Where this broker stands as a replica of the partition, for Metadata and
/// fetch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderHint {
    pub leader: i32,
    pub leader_epoch: i32,
}

#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: Arc<Log>,
    local_broker_id: i32,
    state: RwLock<ReplicaState>,
    hw_tx: watch::Sender<HwSignal>,
    leo_tx: watch::Sender<i64>,
    min_insync_replicas: AtomicUsize,
    replica_lag_time_max: Duration,
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        log: Arc<Log>,
        local_broker_id: i32,
        min_insync_replicas: usize,
        replica_lag_time_max: Duration,
    ) -> Partition {
        let hw = log.high_watermark();
        let leo = log.log_end_offset();
        Partition {
            tp,
            log,
            local_broker_id,
            state: RwLock::new(ReplicaState::Stopped),
            hw_tx: watch::channel(HwSignal {
                high_watermark: hw,
                leader_epoch: -1,
            })
            .0,
            leo_tx: watch::channel(leo).0,
            min_insync_replicas: AtomicUsize::new(min_insync_replicas.max(1)),
            replica_lag_time_max,
        }
    }

    pub fn set_min_insync_replicas(&self, value: usize) {
        self.min_insync_replicas
            .store(value.max(1), Ordering::Relaxed);
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<HwSignal> {
        self.hw_tx.subscribe()
    }

    pub fn subscribe_leo(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, ReplicaState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, ReplicaState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        matches!(*self.read_state(), ReplicaState::Leader(_))
    }

    /// The leader and epoch as this broker knows them.
    pub fn leader_hint(&self) -> LeaderHint {
        match &*self.read_state() {
            ReplicaState::Leader(leader) => LeaderHint {
                leader: self.local_broker_id,
                leader_epoch: leader.leader_epoch,
            },
            ReplicaState::Follower(follower) => LeaderHint {
                leader: follower.leader,
                leader_epoch: follower.leader_epoch,
            },
            ReplicaState::Stopped => LeaderHint {
                leader: -1,
                leader_epoch: -1,
            },
        }
    }

    fn publish_hw(&self, leader_epoch: i32) {
        let signal = HwSignal {
            high_watermark: self.log.high_watermark(),
            leader_epoch,
        };
        self.hw_tx.send_if_modified(|current| {
            let changed = *current != signal;
            *current = signal;
            changed
        });
    }

    fn publish_leo(&self) {
        let leo = self.log.log_end_offset();
        self.leo_tx.send_if_modified(|current| {
            let changed = *current != leo;
            *current = leo;
            changed
        });
    }

    /// Applies a partition state in which this broker is the leader. Returns
    /// true if this starts a new leadership (the caller stops fetching).
    pub fn make_leader(&self, partition: &PartitionState) -> Result<bool, StorageError> {
        let mut state = self.write_state();
        if let ReplicaState::Leader(current) = &mut *state {
            if current.leader_epoch == partition.leader_epoch {
                // The same leadership: take a newer ISR, keep follower progress.
                if partition.partition_epoch > current.partition_epoch {
                    current.partition_epoch = partition.partition_epoch;
                    current.isr.clone_from(&partition.isr);
                    current.replicas.clone_from(&partition.replicas);
                    lock(&current.isr_change).superseded_by(partition.partition_epoch);
                }
                drop(state);
                self.maybe_advance_high_watermark();
                return Ok(false);
            }
            if current.leader_epoch > partition.leader_epoch {
                return Ok(false);
            }
        }
        // Record the new epoch in the leader-epoch history before any append
        // under it, so followers diverging from an old leader find the
        // boundary even if this leader never appends.
        self.log.assign_leader_epoch(partition.leader_epoch)?;
        let now = Instant::now();
        let leo = self.log.log_end_offset();
        let followers = partition
            .replicas
            .iter()
            .filter(|&&r| r != self.local_broker_id)
            .map(|&r| {
                (
                    r,
                    FollowerProgress {
                        broker_epoch: -1,
                        log_end_offset: -1,
                        last_caught_up: now,
                        last_fetch_leader_leo: leo,
                        last_fetch_time: now,
                    },
                )
            })
            .collect();
        *state = ReplicaState::Leader(LeaderState {
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            replicas: partition.replicas.clone(),
            isr: partition.isr.clone(),
            isr_change: Mutex::new(IsrChange::default()),
            epoch_start_offset: leo,
            followers: Mutex::new(followers),
        });
        drop(state);
        self.publish_hw(partition.leader_epoch);
        self.maybe_advance_high_watermark();
        Ok(true)
    }

    /// Applies a partition state led by another broker (or by none). Returns
    /// the leader to fetch from when that changed, `Some(None)` when fetching
    /// must stop, and `None` when nothing changed for the fetcher.
    pub fn make_follower(&self, partition: &PartitionState) -> Option<Option<FetchTarget>> {
        let mut state = self.write_state();
        let new = FollowerState {
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            replicas: partition.replicas.clone(),
            isr: partition.isr.clone(),
        };
        let target = (partition.leader >= 0).then_some(FetchTarget {
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
        });
        let outcome = match &*state {
            ReplicaState::Follower(current) if current.leader_epoch > new.leader_epoch => {
                return None;
            }
            ReplicaState::Leader(current) if current.leader_epoch > new.leader_epoch => {
                return None;
            }
            ReplicaState::Follower(current)
                if current.leader == new.leader && current.leader_epoch == new.leader_epoch =>
            {
                None
            }
            _ => Some(target),
        };
        *state = ReplicaState::Follower(new);
        drop(state);
        // Wakes acks=all waiters of a lost leadership, and consumer fetches.
        self.publish_hw(-1);
        outcome
    }

    /// Stops serving: the partition is deleted or no longer assigned here.
    pub fn stop(&self) {
        *self.write_state() = ReplicaState::Stopped;
        self.publish_hw(-1);
    }

    /// The fetch position of a follower replica of this partition.
    pub fn follower_fetch_position(&self) -> (i64, i32) {
        (
            self.log.log_end_offset(),
            self.log.latest_epoch().unwrap_or(-1),
        )
    }

    fn check_leader_epoch(&self, leader_epoch: i32, requested: i32) -> Result<(), PartitionError> {
        if requested < 0 || requested == leader_epoch {
            Ok(())
        } else if requested < leader_epoch {
            Err(PartitionError::new(
                ErrorCode::FencedLeaderEpoch,
                format!(
                    "leader epoch {requested} of the request is older than the current {leader_epoch} of {}",
                    self.tp
                ),
            ))
        } else {
            Err(PartitionError::new(
                ErrorCode::UnknownLeaderEpoch,
                format!(
                    "leader epoch {requested} of the request is newer than the current {leader_epoch} of {}",
                    self.tp
                ),
            ))
        }
    }

    fn not_leader(&self) -> PartitionError {
        PartitionError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "broker {} is not the leader of {}",
                self.local_broker_id, self.tp
            ),
        )
    }

    /// The append half of a produce: checks leadership and, for acks=all,
    /// min.insync.replicas, then appends. Waiting for the ISR is separate
    /// ([`Partition::wait_for_high_watermark`]) so a stream of requests can be
    /// appended in arrival order while earlier ones still wait.
    pub fn append_as_leader(
        &self,
        records: &Bytes,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return Err(self.not_leader());
        };
        let min_isr = self.min_insync_replicas.load(Ordering::Relaxed);
        if acks_all && leader.isr.len() < min_isr {
            return Err(PartitionError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "the in-sync replicas of {} are {:?}, fewer than min.insync.replicas={min_isr}",
                    self.tp, leader.isr
                ),
            ));
        }
        let info = self
            .log
            .append_as_leader(records, leader.leader_epoch, now_ms)?;
        let leader_epoch = leader.leader_epoch;
        drop(state);
        self.publish_leo();
        self.maybe_advance_high_watermark();
        Ok(Appended { info, leader_epoch })
    }

    /// Waits until the high watermark passes `last_offset` under the same
    /// leadership, or `timeout` passes.
    pub async fn wait_for_high_watermark(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let mut hw = self.subscribe_hw();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let signal = *hw.borrow_and_update();
            if signal.leader_epoch != leader_epoch {
                return Err(PartitionError::new(
                    ErrorCode::NotLeaderOrFollower,
                    format!(
                        "leadership of {} changed before the write was replicated",
                        self.tp
                    ),
                ));
            }
            if signal.high_watermark > last_offset {
                return self.check_isr_after_append();
            }
            match tokio::time::timeout_at(deadline, hw.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.not_leader()),
                Err(_) => {
                    return Err(PartitionError::new(
                        ErrorCode::RequestTimedOut,
                        format!(
                            "the in-sync replicas of {} did not replicate offset {last_offset} within {} ms",
                            self.tp,
                            timeout.as_millis()
                        ),
                    ));
                }
            }
        }
    }

    fn check_isr_after_append(&self) -> Result<(), PartitionError> {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return Err(self.not_leader());
        };
        let min_isr = self.min_insync_replicas.load(Ordering::Relaxed);
        if leader.isr.len() < min_isr {
            return Err(PartitionError::new(
                ErrorCode::NotEnoughReplicasAfterAppend,
                format!(
                    "written, but the in-sync replicas of {} shrank to {:?}, fewer than min.insync.replicas={min_isr}",
                    self.tp, leader.isr
                ),
            ));
        }
        Ok(())
    }

    /// A consumer's read: only below the high watermark, only on the leader.
    pub fn read_for_consumer(
        &self,
        fetch_offset: i64,
        current_leader_epoch: i32,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, PartitionError> {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return Err(self.not_leader());
        };
        self.check_leader_epoch(leader.leader_epoch, current_leader_epoch)?;
        drop(state);
        let high_watermark = self.log.high_watermark();
        let records =
            self.read_records(fetch_offset, max_bytes, min_one_batch, Some(high_watermark))?;
        Ok(ReadResult {
            records,
            high_watermark,
            log_start_offset: self.log.log_start_offset(),
            diverging_epoch: None,
        })
    }

    /// A follower's fetch: checks its history against the leader-epoch
    /// history, records its progress (which may move the high watermark or
    /// call for an ISR expansion) and reads from its fetch offset.
    pub fn read_for_follower(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        fetch: &FollowerFetch,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(ReadResult, Option<AlterPartitionRequest>), PartitionError> {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return Err(self.not_leader());
        };
        self.check_leader_epoch(leader.leader_epoch, fetch.current_leader_epoch)?;
        if !leader.replicas.contains(&replica_id) {
            return Err(PartitionError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("broker {replica_id} is not a replica of {}", self.tp),
            ));
        }
        let log_start_offset = self.log.log_start_offset();
        // A follower whose last batch belongs to an epoch this leader ended
        // earlier (or never had) holds records that never committed: it must
        // truncate before its position means anything.
        if fetch.last_fetched_epoch >= 0 {
            match self.log.end_offset_for_epoch(fetch.last_fetched_epoch) {
                Some((epoch, end_offset))
                    if epoch == fetch.last_fetched_epoch && end_offset >= fetch.fetch_offset => {}
                Some((epoch, end_offset)) => {
                    return Ok((
                        ReadResult {
                            high_watermark: self.log.high_watermark(),
                            log_start_offset,
                            diverging_epoch: Some((epoch, end_offset)),
                            ..ReadResult::default()
                        },
                        None,
                    ));
                }
                // No epoch that old is left here: retention moved this log's
                // start past it, and the range check below sends the
                // follower to the log start.
                None => {}
            }
        }
        let leader_leo = self.log.log_end_offset();
        if fetch.fetch_offset > leader_leo || fetch.fetch_offset < log_start_offset {
            return Err(PartitionError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "fetch offset {} of replica {replica_id} is outside [{log_start_offset}, {leader_leo}] of {}",
                    fetch.fetch_offset, self.tp
                ),
            ));
        }
        let expand = self.record_follower_fetch(
            leader,
            replica_id,
            broker_epoch,
            fetch.fetch_offset,
            leader_leo,
        );
        drop(state);
        self.maybe_advance_high_watermark();
        let records = self.read_records(fetch.fetch_offset, max_bytes, min_one_batch, None)?;
        Ok((
            ReadResult {
                records,
                high_watermark: self.log.high_watermark(),
                log_start_offset,
                diverging_epoch: None,
            },
            expand,
        ))
    }

    /// Whole batches from `offset`. With `min_one_batch` the first batch
    /// comes even if it is over `max_bytes`; without it, nothing over
    /// `max_bytes` comes at all (a fetch whose budget earlier partitions
    /// mostly used up).
    fn read_records(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: Option<i64>,
    ) -> Result<Bytes, StorageError> {
        if max_bytes == 0 {
            // Still the range check, so the caller hears about a bad offset.
            let (start, end) = (self.log.log_start_offset(), self.log.log_end_offset());
            if offset < start || offset > end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: start,
                    log_end_offset: end,
                });
            }
            return Ok(Bytes::new());
        }
        let records = self.log.read(offset, max_bytes, max_offset)?.records;
        if !min_one_batch && records.len() > max_bytes {
            return Ok(Bytes::new());
        }
        Ok(records)
    }

    fn record_follower_fetch(
        &self,
        leader: &LeaderState,
        replica_id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        leader_leo: i64,
    ) -> Option<AlterPartitionRequest> {
        let now = Instant::now();
        let mut followers = lock(&leader.followers);
        let progress = followers.entry(replica_id).or_insert(FollowerProgress {
            broker_epoch,
            log_end_offset: -1,
            last_caught_up: now - self.replica_lag_time_max,
            last_fetch_leader_leo: leader_leo,
            last_fetch_time: now,
        });
        if broker_epoch > progress.broker_epoch {
            progress.broker_epoch = broker_epoch;
        }
        progress.log_end_offset = fetch_offset;
        if fetch_offset >= leader_leo {
            progress.last_caught_up = now;
        } else if fetch_offset >= progress.last_fetch_leader_leo {
            progress.last_caught_up = progress.last_caught_up.max(progress.last_fetch_time);
        }
        progress.last_fetch_leader_leo = leader_leo;
        progress.last_fetch_time = now;
        drop(followers);

        let high_watermark = self.log.high_watermark();
        let caught_up = fetch_offset >= high_watermark && fetch_offset >= leader.epoch_start_offset;
        if caught_up && !leader.isr.contains(&replica_id) {
            let mut new_isr = leader.isr.clone();
            new_isr.push(replica_id);
            new_isr.sort_unstable();
            if lock(&leader.isr_change).try_begin(&new_isr, leader.partition_epoch, now) {
                tracing::info!(
                    "Expanding ISR of {} from {:?} to {:?}: replica {replica_id} caught up",
                    self.tp,
                    leader.isr,
                    new_isr
                );
                return Some(self.alter_request(leader, new_isr));
            }
        }
        None
    }

    fn alter_request(&self, leader: &LeaderState, new_isr: Vec<i32>) -> AlterPartitionRequest {
        AlterPartitionRequest {
            broker_id: self.local_broker_id,
            broker_epoch: 0, // filled in by the sender, which knows the current epoch
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            leader_epoch: leader.leader_epoch,
            partition_epoch: leader.partition_epoch,
            new_isr,
        }
    }

    /// The ISR shrink a leader owes: followers in the ISR that have not
    /// caught up within replica.lag.time.max.ms.
    pub fn maybe_shrink_isr(&self) -> Option<AlterPartitionRequest> {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return None;
        };
        let now = Instant::now();
        let followers = lock(&leader.followers);
        let lagging: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.local_broker_id)
            .filter(|r| {
                followers.get(r).is_none_or(|p| {
                    now.duration_since(p.last_caught_up) > self.replica_lag_time_max
                })
            })
            .collect();
        drop(followers);
        if lagging.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        if !lock(&leader.isr_change).try_begin(&new_isr, leader.partition_epoch, now) {
            return None;
        }
        tracing::info!(
            "Shrinking ISR of {} from {:?} to {:?}: replicas {:?} have not caught up within {} ms",
            self.tp,
            leader.isr,
            new_isr,
            lagging,
            self.replica_lag_time_max.as_millis()
        );
        Some(self.alter_request(leader, new_isr))
    }

    /// Applies the coordinator's answer to the ISR change `request` (the
    /// one this leader sent). An answer to anything but the change now
    /// pending is stale and ignored.
    pub fn complete_isr_change(&self, request: &AlterPartitionRequest, outcome: &IsrChangeOutcome) {
        let mut state = self.write_state();
        let ReplicaState::Leader(leader) = &mut *state else {
            return;
        };
        if leader.leader_epoch != request.leader_epoch {
            return;
        }
        {
            let mut change = lock(&leader.isr_change);
            if !change.is_pending(request) {
                return;
            }
            change.pending = None;
            change.retry_after = matches!(outcome, IsrChangeOutcome::Refused(_))
                .then(|| Instant::now() + ISR_CHANGE_RETRY);
        }
        let current = match outcome {
            IsrChangeOutcome::Committed(partition) => Some(partition),
            IsrChangeOutcome::Refused(partition) => partition.as_ref(),
        };
        if let Some(partition) = current
            && partition.leader == self.local_broker_id
            && partition.leader_epoch == leader.leader_epoch
            && partition.partition_epoch > leader.partition_epoch
        {
            leader.partition_epoch = partition.partition_epoch;
            leader.isr.clone_from(&partition.isr);
            leader.replicas.clone_from(&partition.replicas);
        }
        drop(state);
        self.maybe_advance_high_watermark();
    }

    /// Whether `request` is still the pending ISR change of the current
    /// leadership (so a lost answer should be asked for again).
    pub fn isr_change_pending(&self, request: &AlterPartitionRequest) -> bool {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return false;
        };
        leader.leader_epoch == request.leader_epoch && lock(&leader.isr_change).is_pending(request)
    }

    /// Moves the high watermark to the lowest log end offset in the ISR (the
    /// union of the committed and any pending ISR), never backwards.
    pub fn maybe_advance_high_watermark(&self) {
        let state = self.read_state();
        let ReplicaState::Leader(leader) = &*state else {
            return;
        };
        let mut high_watermark = self.log.log_end_offset();
        {
            let followers = lock(&leader.followers);
            let change = lock(&leader.isr_change);
            let members = leader
                .isr
                .iter()
                .chain(change.pending.iter().flat_map(|p| p.isr.iter()))
                .filter(|&&r| r != self.local_broker_id);
            for replica in members {
                let leo = followers.get(replica).map_or(-1, |p| p.log_end_offset);
                high_watermark = high_watermark.min(leo);
            }
        }
        if high_watermark > self.log.high_watermark() {
            self.log.set_high_watermark(high_watermark);
            self.publish_hw(leader.leader_epoch);
        }
    }

    /// Whether this replica follows `leader_epoch` now. Follower writes
    /// check it under the state lock, so an answer to a fetch sent before a
    /// leadership change can never write into a leader's log.
    fn follows(state: &ReplicaState, leader_epoch: i32) -> bool {
        matches!(state, ReplicaState::Follower(f) if f.leader_epoch == leader_epoch && f.leader >= 0)
    }

    /// A follower's append of what its leader (of `leader_epoch`) sent;
    /// moves its high watermark to the leader's (bounded by its own log end
    /// offset). Does nothing (`Ok(false)`) if this replica no longer follows
    /// that leadership.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &Bytes,
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
    ) -> Result<bool, StorageError> {
        let state = self.read_state();
        if !Self::follows(&state, leader_epoch) {
            return Ok(false);
        }
        if leader_log_start_offset > self.log.log_start_offset()
            && leader_log_start_offset <= self.log.log_end_offset()
        {
            self.log.advance_log_start_offset(leader_log_start_offset)?;
        }
        if !records.is_empty() {
            self.log.append_as_follower(records)?;
            self.publish_leo();
        }
        let high_watermark = leader_high_watermark.min(self.log.log_end_offset());
        if high_watermark > self.log.high_watermark() {
            self.log.set_high_watermark(high_watermark);
            self.publish_hw(-1);
        }
        Ok(true)
    }

    /// A follower's truncation on the word of its leader of `leader_epoch`
    /// (a diverging epoch or an out-of-range offset). `None` if this
    /// replica no longer follows that leadership.
    pub fn truncate_to(&self, leader_epoch: i32, offset: i64) -> Result<Option<i64>, StorageError> {
        let state = self.read_state();
        if !Self::follows(&state, leader_epoch) {
            return Ok(None);
        }
        let leo = self.log.truncate_to(offset)?;
        drop(state);
        self.publish_leo();
        self.publish_hw(-1);
        Ok(Some(leo))
    }

    /// Empties the log and restarts it at `offset`, on the word of the
    /// leader of `leader_epoch`; `false` if this replica no longer follows it.
    pub fn truncate_fully_and_start_at(
        &self,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<bool, StorageError> {
        let state = self.read_state();
        if !Self::follows(&state, leader_epoch) {
            return Ok(false);
        }
        self.log.truncate_fully_and_start_at(offset)?;
        drop(state);
        self.publish_leo();
        self.publish_hw(-1);
        Ok(true)
    }
}

/// A follower's fetch position as the leader receives it.
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::RecordBatchBuilder;
    use storage::{LogConfig, LogManager};

    const ME: i32 = 1;

    struct Fixture {
        _dir: tempfile::TempDir,
        _logs: LogManager,
        partition: Partition,
    }

    fn fixture(min_isr: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).unwrap();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let log = logs
            .get_or_create(&tp, [7; 16], LogConfig::default())
            .unwrap();
        let partition = Partition::new(tp, log, ME, min_isr, Duration::from_millis(200));
        Fixture {
            _dir: dir,
            _logs: logs,
            partition,
        }
    }

    fn state(leader: i32, leader_epoch: i32, isr: &[i32], partition_epoch: i32) -> PartitionState {
        PartitionState {
            topic: "t".into(),
            partition: 0,
            replicas: vec![1, 2, 3],
            leader,
            leader_epoch,
            isr: isr.to_vec(),
            partition_epoch,
            topic_id: Bytes::from(vec![7; 16]),
        }
    }

    fn batch(n: usize) -> Bytes {
        let mut builder = RecordBatchBuilder::default();
        for i in 0..n {
            builder.append(1_000, None, Some(format!("v{i}").as_bytes()), &[]);
        }
        builder.finish()
    }

    /// `n` one-record batches with offsets assigned from `base`, as a
    /// leader of epoch 3 would send them.
    fn records_at(base: i64, n: i64) -> Bytes {
        let mut out = Vec::new();
        for i in 0..n {
            let mut b = batch(1).to_vec();
            records::set_base_offset_and_epoch(&mut b, base + i, 3);
            out.extend_from_slice(&b);
        }
        Bytes::from(out)
    }

    fn fetch(offset: i64, epoch: i32, last_epoch: i32) -> FollowerFetch {
        FollowerFetch {
            fetch_offset: offset,
            current_leader_epoch: epoch,
            last_fetched_epoch: last_epoch,
        }
    }

    #[test]
    fn high_watermark_is_the_lowest_isr_log_end_offset() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2, 3], 0)).unwrap();
        p.append_as_leader(&batch(5), false, 0).unwrap();
        assert_eq!(
            p.log.high_watermark(),
            0,
            "followers have fetched nothing yet"
        );
        p.read_for_follower(2, 10, &fetch(5, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 0, "follower 3 is still at nothing");
        p.read_for_follower(3, 10, &fetch(3, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 3);
        p.read_for_follower(3, 10, &fetch(5, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 5);
        // A follower going back (it restarted and recovered less) never
        // moves the high watermark backwards.
        p.read_for_follower(3, 11, &fetch(4, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 5);
    }

    #[test]
    fn acks_all_needs_min_isr_and_appends_nothing_without_it() {
        let f = fixture(2);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1], 0)).unwrap();
        let err = p.append_as_leader(&batch(1), true, 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotEnoughReplicas);
        assert_eq!(p.log.log_end_offset(), 0);
        // acks=1 still works.
        p.append_as_leader(&batch(1), false, 0).unwrap();
        assert_eq!(p.log.log_end_offset(), 1);
    }

    #[tokio::test]
    async fn acks_all_completes_when_the_isr_has_the_batch() {
        let f = fixture(1);
        let p = Arc::new(f.partition);
        p.make_leader(&state(ME, 0, &[1, 2], 0)).unwrap();
        let appended = p.append_as_leader(&batch(3), true, 0).unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.wait_for_high_watermark(appended.info.last_offset, 0, Duration::from_secs(10))
                    .await
            })
        };
        p.read_for_follower(2, 10, &fetch(2, 0, 0), 1 << 20, true)
            .unwrap();
        assert!(!waiter.is_finished());
        p.read_for_follower(2, 10, &fetch(3, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let _ = f._dir;
    }

    #[tokio::test]
    async fn acks_all_fails_on_timeout_and_on_lost_leadership() {
        let f = fixture(1);
        let p = Arc::new(f.partition);
        p.make_leader(&state(ME, 0, &[1, 2], 0)).unwrap();
        let a = p.append_as_leader(&batch(1), true, 0).unwrap();
        let err = p
            .wait_for_high_watermark(a.info.last_offset, 0, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::RequestTimedOut);

        let b = p.append_as_leader(&batch(1), true, 0).unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.wait_for_high_watermark(b.info.last_offset, 0, Duration::from_secs(10))
                    .await
            })
        };
        assert!(p.make_follower(&state(2, 1, &[2], 1)).is_some());
        assert_eq!(
            waiter.await.unwrap().unwrap_err().code,
            ErrorCode::NotLeaderOrFollower
        );
        // And nothing more is appended here.
        let err = p.append_as_leader(&batch(1), false, 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotLeaderOrFollower);
    }

    #[test]
    fn a_caught_up_follower_is_proposed_for_the_isr_once() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1], 0)).unwrap();
        p.append_as_leader(&batch(2), false, 0).unwrap();
        assert_eq!(p.log.high_watermark(), 2);
        let (_, change) = p
            .read_for_follower(2, 10, &fetch(1, 0, 0), 1 << 20, true)
            .unwrap();
        assert!(change.is_none(), "not caught up to the high watermark yet");
        let (_, change) = p
            .read_for_follower(2, 10, &fetch(2, 0, 0), 1 << 20, true)
            .unwrap();
        let change = change.expect("caught up: ISR expansion");
        assert_eq!(change.new_isr, vec![1, 2]);
        assert_eq!(change.partition_epoch, 0);
        let (_, again) = p
            .read_for_follower(2, 10, &fetch(2, 0, 0), 1 << 20, true)
            .unwrap();
        assert!(again.is_none(), "one change in flight at a time");
        // The coordinator commits it.
        p.complete_isr_change(
            &change,
            &IsrChangeOutcome::Committed(state(ME, 0, &[1, 2], 1)),
        );
        p.append_as_leader(&batch(1), false, 0).unwrap();
        assert_eq!(p.log.high_watermark(), 2, "follower 2 is in the ISR now");
    }

    #[test]
    fn a_lost_isr_answer_keeps_the_proposed_member_counted() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2], 0)).unwrap();
        p.append_as_leader(&batch(5), false, 0).unwrap();
        p.read_for_follower(2, 10, &fetch(5, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 5);
        // Replica 3 catches up to the high watermark and is proposed.
        let (_, change) = p
            .read_for_follower(3, 10, &fetch(5, 0, 0), 1 << 20, true)
            .unwrap();
        let change = change.expect("expansion to 1,2,3");
        // The answer is lost: the change stays pending, so while 3 lags the
        // high watermark waits for it (the coordinator may have committed it).
        assert!(p.isr_change_pending(&change));
        p.append_as_leader(&batch(5), false, 0).unwrap();
        p.read_for_follower(2, 10, &fetch(10, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 5, "replica 3 is still at 5");
        // An answer to some other request settles nothing.
        let mut stale = change.clone();
        stale.new_isr = vec![1, 2];
        p.complete_isr_change(&stale, &IsrChangeOutcome::Refused(None));
        assert!(p.isr_change_pending(&change));
        // The resent request is refused as stale, with the state showing it
        // was committed the first time: the ISR is {1,2,3}.
        p.complete_isr_change(
            &change,
            &IsrChangeOutcome::Refused(Some(state(ME, 0, &[1, 2, 3], 1))),
        );
        assert!(!p.isr_change_pending(&change));
        assert_eq!(p.log.high_watermark(), 5);
        p.read_for_follower(3, 10, &fetch(10, 0, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(p.log.high_watermark(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn metadata_with_a_newer_partition_epoch_settles_a_pending_change() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2, 3], 0)).unwrap();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(50)).await;
            p.read_for_follower(2, 10, &fetch(0, 0, -1), 1 << 20, true)
                .unwrap();
        }
        let change = p.maybe_shrink_isr().expect("replica 3 lags");
        assert!(p.isr_change_pending(&change));
        // The coordinator fenced broker 3 on its own: a newer partition
        // epoch, which the pending request's compare-and-set cannot match.
        p.make_leader(&state(ME, 0, &[1, 2], 1)).unwrap();
        assert!(!p.isr_change_pending(&change));
    }

    #[test]
    fn a_fetch_answer_for_an_old_leadership_never_writes() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_follower(&state(2, 3, &[1, 2], 0));
        assert!(p.append_as_follower(3, &records_at(0, 2), 2, 0).unwrap());
        assert_eq!(p.log.log_end_offset(), 2);
        // This broker is elected; an answer to a fetch sent at epoch 3 arrives.
        p.make_leader(&state(ME, 4, &[1, 2], 1)).unwrap();
        assert!(!p.append_as_follower(3, &records_at(2, 2), 4, 0).unwrap());
        assert_eq!(p.truncate_to(3, 0).unwrap(), None);
        assert!(!p.truncate_fully_and_start_at(3, 0).unwrap());
        assert_eq!(p.log.log_end_offset(), 2);
        assert_eq!(p.subscribe_hw().borrow().leader_epoch, 4);
    }

    #[test]
    fn a_leader_that_never_wrote_in_its_epoch_can_follow_again() {
        // B (this fixture) led epoch 1 at offset 3 without writing; A leads
        // epoch 2 from the same offset.
        let b = fixture(1);
        let a = fixture(1);
        for p in [&a.partition, &b.partition] {
            p.make_leader(&state(ME, 0, &[1], 0)).unwrap();
            p.append_as_leader(&batch(3), false, 0).unwrap();
        }
        b.partition.make_leader(&state(ME, 1, &[1], 1)).unwrap();
        a.partition.make_follower(&state(9, 1, &[9], 1));
        a.partition.make_leader(&state(ME, 2, &[1, 2], 2)).unwrap();
        b.partition.make_follower(&state(9, 2, &[9, 1], 2));

        let (offset, last_epoch) = b.partition.follower_fetch_position();
        assert_eq!((offset, last_epoch), (3, 1));
        let (read, _) = a
            .partition
            .read_for_follower(2, 10, &fetch(offset, 2, last_epoch), 1 << 20, true)
            .unwrap();
        assert_eq!(read.diverging_epoch, Some((0, 3)));
        // Truncating to the log end forgets the empty epoch 1 ...
        b.partition.truncate_to(2, 3).unwrap();
        let (offset, last_epoch) = b.partition.follower_fetch_position();
        assert_eq!((offset, last_epoch), (3, 0));
        // ... so the next fetch is in line with the leader.
        let (read, _) = a
            .partition
            .read_for_follower(2, 10, &fetch(offset, 2, last_epoch), 1 << 20, true)
            .unwrap();
        assert_eq!(read.diverging_epoch, None);
    }

    #[test]
    fn a_spent_budget_gets_no_more_batches() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1], 0)).unwrap();
        p.append_as_leader(&batch(50), false, 0).unwrap();
        let whole = p
            .read_for_consumer(0, -1, 1 << 20, true)
            .unwrap()
            .records
            .len();
        assert!(whole > 100);
        assert_eq!(
            p.read_for_consumer(0, -1, 10, true).unwrap().records.len(),
            whole
        );
        assert!(
            p.read_for_consumer(0, -1, 10, false)
                .unwrap()
                .records
                .is_empty()
        );
        assert!(
            p.read_for_consumer(0, -1, 0, false)
                .unwrap()
                .records
                .is_empty()
        );
        assert_eq!(
            p.read_for_consumer(99, -1, 0, false).unwrap_err().code,
            ErrorCode::OffsetOutOfRange
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stops_fetching_is_proposed_for_removal() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2, 3], 0)).unwrap();
        assert!(p.maybe_shrink_isr().is_none(), "everyone had a fresh start");
        // Follower 2 keeps up; follower 3 is silent past replica.lag.time.max.ms.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(50)).await;
            p.read_for_follower(2, 10, &fetch(0, 0, -1), 1 << 20, true)
                .unwrap();
        }
        let change = p.maybe_shrink_isr().expect("follower 3 lags");
        assert_eq!(change.new_isr, vec![1, 2]);
        assert!(
            p.maybe_shrink_isr().is_none(),
            "one change in flight at a time"
        );
    }

    #[test]
    fn a_diverged_follower_is_told_where_its_epoch_ended() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2], 0)).unwrap();
        p.append_as_leader(&batch(3), false, 0).unwrap(); // offsets 0..3 in epoch 0
        p.make_follower(&state(2, 1, &[2], 1));
        p.make_leader(&state(ME, 2, &[1, 2], 2)).unwrap();
        p.append_as_leader(&batch(2), false, 0).unwrap(); // offsets 3..5 in epoch 2
        // A follower that took offsets 3..6 from a leader of epoch 1 that
        // never committed them.
        let (read, _) = p
            .read_for_follower(2, 10, &fetch(6, 2, 1), 1 << 20, true)
            .unwrap();
        assert_eq!(read.diverging_epoch, Some((0, 3)));
        assert!(read.records.is_empty());
        // A follower consistent with epoch 0 up to 3 fetches normally.
        let (read, _) = p
            .read_for_follower(2, 10, &fetch(3, 2, 0), 1 << 20, true)
            .unwrap();
        assert_eq!(read.diverging_epoch, None);
        assert!(!read.records.is_empty());
    }

    #[test]
    fn stale_and_future_leader_epochs_are_refused() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 5, &[1, 2], 0)).unwrap();
        let stale = p
            .read_for_follower(2, 10, &fetch(0, 4, -1), 1 << 20, true)
            .unwrap_err();
        assert_eq!(stale.code, ErrorCode::FencedLeaderEpoch);
        let future = p.read_for_consumer(0, 6, 1 << 20, true).unwrap_err();
        assert_eq!(future.code, ErrorCode::UnknownLeaderEpoch);
        let outsider = p
            .read_for_follower(9, 10, &fetch(0, 5, -1), 1 << 20, true)
            .unwrap_err();
        assert_eq!(outsider.code, ErrorCode::NotLeaderOrFollower);
    }

    #[test]
    fn consumers_read_only_below_the_high_watermark() {
        let f = fixture(1);
        let p = &f.partition;
        p.make_leader(&state(ME, 0, &[1, 2], 0)).unwrap();
        p.append_as_leader(&batch(2), false, 0).unwrap();
        let read = p.read_for_consumer(0, -1, 1 << 20, true).unwrap();
        assert!(read.records.is_empty(), "nothing is committed yet");
        p.read_for_follower(2, 10, &fetch(2, 0, 0), 1 << 20, true)
            .unwrap();
        let read = p.read_for_consumer(0, -1, 1 << 20, true).unwrap();
        assert!(!read.records.is_empty());
        assert_eq!(read.high_watermark, 2);
    }
}
