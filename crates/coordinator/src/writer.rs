//! The writer: the one task that owns the cluster state.
//!
//! Requests arrive on a bounded channel. The writer drains everything
//! waiting, decides each request in order with the pure functions of
//! `controller` (each decision sees the ones before it), ends lapsed
//! sessions, appends all the resulting records to the metadata log as one
//! batch with one fsync (group commit), and only then answers the callers
//! and publishes one `MetadataUpdate` to watchers. Nothing is acknowledged
//! or published before its fsync; reads are answered from committed state.
//!
//! A failed log write stops the writer (and so the coordinator) instead of
//! carrying on with an image the disk does not have: the callers of that
//! commit get no answer but an error, and a restart recovers from the log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::ErrorCode;
use protocol::coordinator::{
    AlterConfigsRequest, AlterConfigsResponse, AlterPartitionRequest, AlterPartitionResponse,
    BrokerState, ControlledShutdownRequest, ControlledShutdownResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterResponse, DescribeTopicsRequest, DescribeTopicsResponse,
    HeartbeatRequest, HeartbeatResponse, ListTopicsResponse, MetadataUpdate, RegisterBrokerRequest,
    RegisterBrokerResponse,
};
use protocol::image::MetadataImage;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use crate::controller::placement::Rng;
use crate::controller::{Changes, Malformed, brokers, partitions, queries, topics};
use crate::metadata_log::{LogError, MetadataLog};
use crate::sessions::{SessionTable, StreamId};
use crate::settings::{DEFAULT_SESSION_TIMEOUT_MS, Settings};

/// Requests waiting for the writer; senders wait when it is full.
pub(crate) const COMMAND_QUEUE: usize = 4096;

/// Commands decided in one group commit at most.
const MAX_COMMANDS_PER_COMMIT: usize = 1024;

/// Records in one group commit, beyond which the commands left wait for
/// the next one (a single request's records always share one commit).
const MAX_RECORDS_PER_COMMIT: usize = 250_000;

/// Updates a watcher may fall behind before it is resynchronised.
const WATCH_BROADCAST_CAPACITY: usize = 1024;

/// Checks one topic config key and value.
pub type ConfigValidator = fn(&str, &str) -> Result<(), String>;

type Reply<T> = oneshot::Sender<T>;

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Command {
    RegisterBroker(
        RegisterBrokerRequest,
        Reply<Result<RegisterBrokerResponse, Malformed>>,
    ),
    Heartbeat(HeartbeatRequest, StreamId, Reply<HeartbeatResponse>),
    StreamClosed {
        broker_id: i32,
        broker_epoch: i64,
        stream: StreamId,
    },
    ControlledShutdown(ControlledShutdownRequest, Reply<ControlledShutdownResponse>),
    CreateTopics(
        CreateTopicsRequest,
        Reply<Result<CreateTopicsResponse, Malformed>>,
    ),
    DeleteTopics(
        DeleteTopicsRequest,
        Reply<Result<DeleteTopicsResponse, Malformed>>,
    ),
    CreatePartitions(
        CreatePartitionsRequest,
        Reply<Result<CreatePartitionsResponse, Malformed>>,
    ),
    AlterConfigs(
        AlterConfigsRequest,
        Reply<Result<AlterConfigsResponse, Malformed>>,
    ),
    AlterPartition(AlterPartitionRequest, Reply<AlterPartitionResponse>),
    ListTopics(Reply<ListTopicsResponse>),
    DescribeTopics(DescribeTopicsRequest, Reply<DescribeTopicsResponse>),
    DescribeCluster(Reply<DescribeClusterResponse>),
    Watch(i64, Reply<WatchStart>),
}

/// Where a new watcher starts: the updates that bring it from its version
/// to the current one (or one snapshot), then everything published later.
#[derive(Debug)]
pub(crate) struct WatchStart {
    pub backlog: Vec<Arc<MetadataUpdate>>,
    pub updates: broadcast::Receiver<Arc<MetadataUpdate>>,
}

/// The writer has stopped (shutdown, or a fatal log error).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the coordinator is shutting down")]
pub(crate) struct Stopped;

/// How the rest of the coordinator talks to the writer.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    commands: mpsc::Sender<Command>,
}

impl WriterHandle {
    /// Sends the command `make` builds around a reply channel and waits for
    /// the answer.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Sends a command that has no answer.
    pub(crate) async fn tell(&self, command: Command) -> Result<(), Stopped> {
        self.commands.send(command).await.map_err(|_| Stopped)
    }
}

/// Why the writer stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("metadata log write failed, stopping: {0}")]
    Log(#[from] LogError),
    #[error("the metadata log task failed: {0}")]
    Task(String),
}

/// Recent updates, so that a watcher resuming from a recent version gets
/// the changes since then rather than a snapshot. Bounded by records.
#[derive(Debug)]
struct RecentUpdates {
    updates: VecDeque<Arc<MetadataUpdate>>,
    records: usize,
    max_records: usize,
}

impl RecentUpdates {
    fn new(max_records: usize) -> RecentUpdates {
        RecentUpdates {
            updates: VecDeque::new(),
            records: 0,
            max_records,
        }
    }

    fn push(&mut self, update: Arc<MetadataUpdate>) {
        self.records += update.records.len();
        self.updates.push_back(update);
        while self.records > self.max_records && self.updates.len() > 1 {
            if let Some(old) = self.updates.pop_front() {
                self.records -= old.records.len();
            }
        }
    }

    /// The updates after `from`, if `from` is the start of one we keep
    /// (or the current version: nothing to send).
    fn since(&self, from: i64, current: i64) -> Option<Vec<Arc<MetadataUpdate>>> {
        if from < 0 || from > current {
            return None;
        }
        if from == current {
            return Some(Vec::new());
        }
        let start = self
            .updates
            .iter()
            .position(|u| u.version - u.records.len() as i64 == from)?;
        Some(self.updates.range(start..).cloned().collect())
    }
}

/// The state the writer owns.
pub(crate) struct Writer {
    settings: Arc<Settings>,
    image: MetadataImage,
    sessions: SessionTable,
    log: Arc<Mutex<MetadataLog>>,
    recent: RecentUpdates,
    updates: broadcast::Sender<Arc<MetadataUpdate>>,
    rng: Rng,
    validate_config: ConfigValidator,
    /// Commands drained but left for the next commit.
    backlog: VecDeque<Command>,
    /// Do not try a snapshot before the log holds this many records since
    /// the last one (raised after a failed attempt).
    snapshot_due_records: u64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("version", &self.image.version)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer over a recovered log, and the handle to reach it.
    pub(crate) fn new(
        settings: Arc<Settings>,
        log: MetadataLog,
        image: MetadataImage,
        replayed: Vec<MetadataUpdate>,
        validate_config: ConfigValidator,
    ) -> (Writer, WriterHandle, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (updates, _) = broadcast::channel(WATCH_BROADCAST_CAPACITY);
        let mut recent = RecentUpdates::new(settings.retained_update_records);
        for update in replayed {
            recent.push(Arc::new(update));
        }
        let sessions = SessionTable::restore(
            &image,
            Instant::now(),
            Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS),
        );
        let writer = Writer {
            snapshot_due_records: settings.snapshot_min_records,
            settings,
            image,
            sessions,
            log: Arc::new(Mutex::new(log)),
            recent,
            updates,
            rng: Rng::from_entropy(),
            validate_config,
            backlog: VecDeque::new(),
        };
        (writer, WriterHandle { commands }, receiver)
    }

    /// Serves commands until `stop` turns true or every handle is gone.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), WriterError> {
        let period = self
            .settings
            .leader_imbalance_check_interval
            .max(Duration::from_millis(1));
        let mut rebalance = tokio::time::interval_at(Instant::now() + period, period);
        rebalance.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let rebalance_enabled = self.settings.auto_leader_rebalance_enable;
        loop {
            let mut batch: Vec<Command> = Vec::new();
            let mut rebalance_due = false;
            if self.backlog.is_empty() {
                let deadline = self.sessions.next_deadline();
                tokio::select! {
                    biased;
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            break;
                        }
                        continue;
                    }
                    command = commands.recv() => match command {
                        Some(command) => batch.push(command),
                        None => break,
                    },
                    () = sleep_until(deadline) => {}
                    _ = rebalance.tick(), if rebalance_enabled => rebalance_due = true,
                }
            }
            while let Some(command) = self.backlog.pop_front() {
                batch.push(command);
            }
            while batch.len() < MAX_COMMANDS_PER_COMMIT {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.process(batch, rebalance_due).await?;
        }
        Ok(())
    }

    /// One group commit.
    async fn process(
        &mut self,
        batch: Vec<Command>,
        rebalance_due: bool,
    ) -> Result<(), WriterError> {
        let now = Instant::now();
        let mut replies: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        let mut reads: Vec<Command> = Vec::new();
        let unclean_default = self.settings.unclean_leader_election_enable;
        let mut changes = Changes::new(&mut self.image);
        let mut decider = Decider {
            settings: &self.settings,
            sessions: &mut self.sessions,
            rng: &mut self.rng,
            validate_config: self.validate_config,
            now,
        };
        let mut commands = batch.into_iter();
        for command in commands.by_ref() {
            decider.decide(&mut changes, command, &mut replies, &mut reads);
            if changes.len() >= MAX_RECORDS_PER_COMMIT {
                break;
            }
        }
        self.backlog.extend(commands);

        for broker_id in self.sessions.expire(now) {
            if brokers::fence_broker(&mut changes, broker_id, unclean_default) {
                info!("Broker {broker_id}'s session ended: fenced, its leaderships moved");
            }
        }
        if rebalance_due {
            let moved = partitions::rebalance_preferred_leaders(
                &mut changes,
                self.settings.leader_imbalance_per_broker_percentage,
            );
            if moved > 0 {
                info!("Preferred leader rebalance moved {moved} partition leaderships");
            }
        }

        let records = changes.into_records();
        if !records.is_empty() {
            let base = self.image.version;
            let update = Arc::new(MetadataUpdate {
                version: base + records.len() as i64,
                snapshot: false,
                records,
                cluster_id: self.image.cluster_id.clone(),
            });
            let log = Arc::clone(&self.log);
            let to_write = Arc::clone(&update);
            tokio::task::spawn_blocking(move || lock(&log).append(base, &to_write.records))
                .await
                .map_err(|e| WriterError::Task(e.to_string()))??;
            self.image.version = update.version;
            self.recent.push(Arc::clone(&update));
            // No receivers is not an error: nobody is watching.
            let _ = self.updates.send(update);
        }

        for reply in replies {
            reply();
        }
        for read in reads {
            self.answer_read(read);
        }
        self.maybe_snapshot().await
    }

    fn answer_read(&mut self, command: Command) {
        let image = &self.image;
        match command {
            Command::ListTopics(reply) => {
                let _ = reply.send(queries::list_topics(image));
            }
            Command::DescribeTopics(request, reply) => {
                let _ = reply.send(queries::describe_topics(image, &request.names));
            }
            Command::DescribeCluster(reply) => {
                let _ = reply.send(queries::describe_cluster(image));
            }
            Command::Watch(from_version, reply) => {
                let backlog = self
                    .recent
                    .since(from_version, image.version)
                    .unwrap_or_else(|| vec![Arc::new(image.snapshot_update())]);
                let _ = reply.send(WatchStart {
                    backlog,
                    updates: self.updates.subscribe(),
                });
            }
            other => unreachable!("{other:?} is not a read"),
        }
    }

    /// Writes a snapshot once the log since the last one is at least as
    /// long as the snapshot would be (and `snapshot_min_records`), so replay
    /// stays proportional to the state and snapshots cost O(1) per record.
    async fn maybe_snapshot(&mut self) -> Result<(), WriterError> {
        let since = lock(&self.log).records_since_snapshot();
        if since < self.snapshot_due_records {
            return Ok(());
        }
        let size = image_record_count(&self.image);
        if since < size {
            return Ok(());
        }
        let records = self.image.snapshot_records();
        let version = self.image.version;
        let log = Arc::clone(&self.log);
        let result = tokio::task::spawn_blocking(move || lock(&log).write_snapshot(&records))
            .await
            .map_err(|e| WriterError::Task(e.to_string()))?;
        match result {
            Ok(()) => {
                info!("Wrote a metadata snapshot at version {version} ({size} records)");
                self.snapshot_due_records = self.settings.snapshot_min_records;
            }
            Err(e) => {
                // The log is intact; only replay gets longer. Try again later.
                warn!("Could not write a metadata snapshot at version {version}: {e}");
                self.snapshot_due_records = since + self.settings.snapshot_min_records.max(1);
            }
        }
        Ok(())
    }
}

fn lock(log: &Mutex<MetadataLog>) -> std::sync::MutexGuard<'_, MetadataLog> {
    // Only the writer touches the log, one operation at a time; a poisoned
    // lock means an earlier operation panicked mid-way, and its error has
    // already stopped the writer.
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn image_record_count(image: &MetadataImage) -> u64 {
    let topics: usize = image.topics.values().map(|t| 1 + t.partitions.len()).sum();
    (image.brokers.len() + topics) as u64
}

/// What one decision needs besides the image.
struct Decider<'a> {
    settings: &'a Settings,
    sessions: &'a mut SessionTable,
    rng: &'a mut Rng,
    validate_config: ConfigValidator,
    now: Instant,
}

fn reply_later<T: Send + 'static>(
    replies: &mut Vec<Box<dyn FnOnce() + Send>>,
    reply: Reply<T>,
    value: T,
) {
    replies.push(Box::new(move || {
        // The caller may have gone away; that is its business.
        let _ = reply.send(value);
    }));
}

impl Decider<'_> {
    fn decide(
        &mut self,
        changes: &mut Changes<'_>,
        command: Command,
        replies: &mut Vec<Box<dyn FnOnce() + Send>>,
        reads: &mut Vec<Command>,
    ) {
        match command {
            Command::RegisterBroker(request, reply) => {
                let answer = self.register(changes, &request);
                reply_later(replies, reply, answer);
            }
            Command::Heartbeat(request, stream, reply) => {
                let answer = self.heartbeat(changes, &request, stream);
                reply_later(replies, reply, answer);
            }
            Command::StreamClosed {
                broker_id,
                broker_epoch,
                stream,
            } => {
                self.sessions.stream_closed(
                    broker_id,
                    broker_epoch,
                    stream,
                    self.now,
                    self.settings.broker_session_grace,
                );
            }
            Command::ControlledShutdown(request, reply) => {
                let answer = match brokers::controlled_shutdown(
                    changes,
                    request.broker_id,
                    request.broker_epoch,
                ) {
                    Ok(remaining) => {
                        self.sessions
                            .request_shutdown(request.broker_id, request.broker_epoch);
                        info!(
                            "Broker {} is shutting down; it still leads {} partitions",
                            request.broker_id,
                            remaining.len()
                        );
                        ControlledShutdownResponse {
                            error_code: ErrorCode::None.code(),
                            error_message: String::new(),
                            remaining_leaderships: remaining,
                        }
                    }
                    Err(e) => ControlledShutdownResponse {
                        error_code: e.code.code(),
                        error_message: e.message,
                        remaining_leaderships: Vec::new(),
                    },
                };
                reply_later(replies, reply, answer);
            }
            Command::CreateTopics(request, reply) => {
                let answer = topics::create_topics(
                    changes,
                    &request,
                    self.rng,
                    &self.validate_config,
                )
                .map(|topics| {
                    if !request.validate_only {
                        for t in topics.iter().filter(|t| t.error_code == 0) {
                            info!(
                                "Created topic {} with {} partitions and replication factor {}",
                                t.name, t.num_partitions, t.replication_factor
                            );
                        }
                    }
                    CreateTopicsResponse { topics }
                });
                reply_later(replies, reply, answer);
            }
            Command::DeleteTopics(request, reply) => {
                let answer = topics::delete_topics(
                    changes,
                    &request.names,
                    self.settings.delete_topic_enable,
                )
                .map(|topics| {
                    for t in topics.iter().filter(|t| t.error_code == 0) {
                        info!("Deleted topic {}", t.name);
                    }
                    DeleteTopicsResponse { topics }
                });
                reply_later(replies, reply, answer);
            }
            Command::CreatePartitions(request, reply) => {
                let answer = topics::create_partitions(changes, &request, self.rng)
                    .map(|topics| CreatePartitionsResponse { topics });
                reply_later(replies, reply, answer);
            }
            Command::AlterConfigs(request, reply) => {
                let answer =
                    topics::alter_configs(changes, &request, &self.validate_config).map(|topics| {
                        if !request.validate_only {
                            for t in topics.iter().filter(|t| t.error_code == 0) {
                                info!("Altered the configs of topic {}", t.name);
                            }
                        }
                        AlterConfigsResponse { topics }
                    });
                reply_later(replies, reply, answer);
            }
            Command::AlterPartition(request, reply) => {
                let answer = partitions::alter_partition(changes, &request);
                reply_later(replies, reply, answer);
            }
            Command::ListTopics(_)
            | Command::DescribeTopics(..)
            | Command::DescribeCluster(_)
            | Command::Watch(..) => {
                reads.push(command);
            }
        }
    }

    fn register(
        &mut self,
        changes: &mut Changes<'_>,
        request: &RegisterBrokerRequest,
    ) -> Result<RegisterBrokerResponse, Malformed> {
        let cluster_id = &changes.image().cluster_id;
        if !request.cluster_id.is_empty() && request.cluster_id != *cluster_id {
            warn!(
                "Refused broker {}: its logs belong to cluster {}, this coordinator serves cluster {}",
                request.broker_id, request.cluster_id, cluster_id
            );
            return Ok(RegisterBrokerResponse {
                error_code: ErrorCode::InconsistentClusterId.code(),
                error_message: format!(
                    "broker {} belongs to cluster {}, but this coordinator serves cluster {} (a coordinator started on another dataDir?)",
                    request.broker_id, request.cluster_id, cluster_id
                ),
                broker_epoch: -1,
                session_timeout_ms: 0,
            });
        }
        let session_timeout = self
            .settings
            .grant_session_timeout(request.session_timeout_ms);
        let session_timeout_ms = i32::try_from(session_timeout.as_millis()).unwrap_or(i32::MAX);
        let registration = brokers::register_broker(
            changes,
            request,
            session_timeout_ms,
            self.settings.unclean_leader_election_enable,
        )?;
        let broker = &changes.image().brokers[&request.broker_id];
        if registration.is_new {
            self.sessions.registered(
                request.broker_id,
                registration.broker_epoch,
                session_timeout,
                self.now,
            );
            info!(
                "Registered broker {} at epoch {} (incarnation {}, endpoints {}, session timeout {} ms)",
                request.broker_id,
                registration.broker_epoch,
                request.incarnation_id,
                endpoints(request),
                session_timeout_ms
            );
        }
        Ok(RegisterBrokerResponse {
            error_code: ErrorCode::None.code(),
            error_message: String::new(),
            broker_epoch: registration.broker_epoch,
            session_timeout_ms: broker.session_timeout_ms,
        })
    }

    fn heartbeat(
        &mut self,
        changes: &mut Changes<'_>,
        request: &HeartbeatRequest,
        stream: StreamId,
    ) -> HeartbeatResponse {
        let broker_id = request.broker_id;
        if let Err(e) =
            partitions::check_broker_epoch(changes.image(), broker_id, request.broker_epoch)
        {
            return HeartbeatResponse {
                error_code: e.code.code(),
                error_message: e.message,
                fenced: true,
            };
        }
        let broker = &changes.image().brokers[&broker_id];
        let session_timeout = match broker.session_timeout_ms {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS),
        };
        let caught_up = request.metadata_version >= broker.broker_epoch;
        let fenced = broker.state == BrokerState::Fenced as i32;
        self.sessions.heartbeat(
            broker_id,
            request.broker_epoch,
            session_timeout,
            stream,
            self.now,
        );
        if fenced
            && caught_up
            && !self.sessions.shutdown_requested(broker_id)
            && brokers::unfence_broker(
                changes,
                broker_id,
                self.settings.unclean_leader_election_enable,
            )
        {
            info!(
                "Broker {broker_id} (epoch {}) has caught up: active",
                request.broker_epoch
            );
        }
        HeartbeatResponse {
            error_code: ErrorCode::None.code(),
            error_message: String::new(),
            fenced: changes.image().brokers[&broker_id].state == BrokerState::Fenced as i32,
        }
    }
}

fn endpoints(request: &RegisterBrokerRequest) -> String {
    request
        .endpoints
        .iter()
        .map(|e| format!("{}://{}:{}", e.listener, e.host, e.port))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(base: i64, records: usize) -> Arc<MetadataUpdate> {
        Arc::new(MetadataUpdate {
            version: base + records as i64,
            snapshot: false,
            records: vec![Default::default(); records],
            cluster_id: String::new(),
        })
    }

    #[test]
    fn recent_updates_answer_from_batch_boundaries_only() {
        let mut recent = RecentUpdates::new(5);
        recent.push(update(0, 2));
        recent.push(update(2, 2));
        recent.push(update(4, 1));
        let versions = |v: Option<Vec<Arc<MetadataUpdate>>>| {
            v.map(|u| u.iter().map(|u| u.version).collect::<Vec<_>>())
        };
        assert_eq!(versions(recent.since(0, 5)), Some(vec![2, 4, 5]));
        assert_eq!(versions(recent.since(2, 5)), Some(vec![4, 5]));
        assert_eq!(versions(recent.since(5, 5)), Some(vec![]));
        assert_eq!(versions(recent.since(3, 5)), None, "not a boundary");
        assert_eq!(versions(recent.since(6, 5)), None, "ahead of us");
        assert_eq!(versions(recent.since(-1, 5)), None);
        // Over the bound: the oldest goes.
        recent.push(update(5, 2));
        assert_eq!(versions(recent.since(0, 7)), None);
        assert_eq!(versions(recent.since(2, 7)), Some(vec![4, 5, 7]));
    }
}
