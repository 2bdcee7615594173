//! An in-memory fake cluster for the client's and the tools' tests: brokers serving
//! `broker.v1.Broker` and a coordinator serving `coordinator.v1.Coordinator`,
//! each a real tonic server on 127.0.0.1:0, sharing one state.
//!
//! It keeps each partition's batches in memory with offsets assigned as a
//! leader would, answers only as the partition's leader, long-polls fetches,
//! and lets a test inject what a real cluster does under stress: errors on
//! the next produce or fetch of a partition, a leader move, slow answers,
//! a broker that is down, a small `message.max.bytes`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use protocol::ErrorCode;
use protocol::broker::broker_server::{Broker, BrokerServer};
use protocol::broker::{
    BrokerEndpoint, FetchPartitionResponse, FetchRequest, FetchResponse,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, PartitionMetadata, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    TopicMetadata,
};
use protocol::coordinator::coordinator_server::{Coordinator, CoordinatorServer};
use protocol::coordinator::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerInfo, BrokerState,
    ControlledShutdownRequest, ControlledShutdownResponse, CreatableTopicResult,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeTopicsRequest, DescribeTopicsResponse, Endpoint, HeartbeatRequest, HeartbeatResponse,
    ListTopicsRequest, ListTopicsResponse, MetadataUpdate, PartitionState, RegisterBrokerRequest,
    RegisterBrokerResponse, TopicDescription, TopicInfo, TopicResult, WatchMetadataRequest,
};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// One partition's log and leadership.
#[derive(Debug, Clone)]
pub struct FakePartition {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// (base offset, next offset, the batch as stored)
    pub batches: Vec<(i64, i64, Bytes)>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug, Clone)]
pub struct FakeTopic {
    pub id: Bytes,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<FakePartition>,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Produce requests answered with an error, by error.
    pub produce_errors: HashMap<ErrorCode, usize>,
    /// Produce requests received, by broker.
    pub produce_requests: HashMap<i32, usize>,
    /// Fetch answers per partition error.
    pub fetch_errors: HashMap<ErrorCode, usize>,
    /// Fetch requests received, by broker.
    pub fetch_requests: HashMap<i32, usize>,
    /// The most produce requests a broker held unanswered at once.
    pub max_outstanding_produce: usize,
    /// Metadata requests received.
    pub metadata_requests: usize,
    /// `current_leader_epoch` of every fetched partition, in order.
    pub fetch_epochs: Vec<i32>,
}

#[derive(Debug)]
pub struct State {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, (SocketAddr, bool)>,
    pub topics: BTreeMap<String, FakeTopic>,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub message_max_bytes: usize,
    /// Errors for the next produce requests of a partition.
    pub produce_injections: HashMap<(String, i32), VecDeque<(ErrorCode, String)>>,
    /// Errors for the next fetches of a partition.
    pub fetch_injections: HashMap<(String, i32), VecDeque<ErrorCode>>,
    /// Partitions that refuse every produce with this error until removed.
    pub refusing: HashMap<(String, i32), ErrorCode>,
    /// Delay before each produce answer.
    pub produce_delay: Duration,
    pub metadata_version: i64,
    /// Auto-created topics answer LEADER_NOT_AVAILABLE once, as Kafka does.
    pub just_created: Vec<String>,
    pub stats: Stats,
    next_topic_id: u8,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every append, for long-poll fetches.
    appended: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// A fake cluster. Dropping it stops every server.
#[derive(Debug)]
pub struct FakeCluster {
    shared: Arc<Shared>,
    pub coordinator: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeCluster {
    /// Starts `broker_count` brokers with ids 1, 2, ... and a coordinator.
    pub async fn start(broker_count: i32) -> FakeCluster {
        // RUST_LOG=client=debug shows the client's side of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cluster_id: "fake-cluster".into(),
                brokers: BTreeMap::new(),
                topics: BTreeMap::new(),
                auto_create_topics: true,
                num_partitions: 1,
                message_max_bytes: 1_048_588,
                produce_injections: HashMap::new(),
                refusing: HashMap::new(),
                fetch_injections: HashMap::new(),
                produce_delay: Duration::ZERO,
                metadata_version: 0,
                just_created: Vec::new(),
                stats: Stats::default(),
                next_topic_id: 1,
            }),
            appended: Notify::new(),
        });
        let mut tasks = Vec::new();
        for id in 1..=broker_count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            shared.lock().brokers.insert(id, (addr, true));
            let service = BrokerServer::new(FakeBroker {
                id,
                shared: Arc::clone(&shared),
            })
            .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES);
            tasks.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .max_frame_size(protocol::HTTP2_MAX_FRAME_BYTES)
                    .add_service(service)
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            }));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coordinator = listener.local_addr().unwrap();
        let service = CoordinatorServer::new(FakeCoordinator {
            shared: Arc::clone(&shared),
        });
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        }));
        FakeCluster {
            shared,
            coordinator,
            tasks,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// `host:port` of every broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        let state = self.state();
        state
            .brokers
            .values()
            .map(|(addr, _)| addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn broker_address(&self, id: i32) -> String {
        self.state().brokers[&id].0.to_string()
    }

    /// Creates a topic whose partition `p` is led by `leaders[p]`, with
    /// every broker as a replica.
    pub fn create_topic(&self, name: &str, leaders: &[i32]) {
        let mut state = self.state();
        let replicas: Vec<i32> = state.brokers.keys().copied().collect();
        let partitions = leaders
            .iter()
            .map(|&leader| FakePartition {
                replicas: replicas.clone(),
                leader,
                leader_epoch: 0,
                isr: replicas.clone(),
                batches: Vec::new(),
                log_start_offset: 0,
                log_end_offset: 0,
            })
            .collect();
        let id = state.new_topic_id();
        state.topics.insert(
            name.to_owned(),
            FakeTopic {
                id,
                configs: BTreeMap::new(),
                partitions,
            },
        );
        state.metadata_version += 1;
    }

    /// Moves a partition's leadership, as an election would.
    pub fn move_leader(&self, topic: &str, partition: i32, leader: i32) {
        let mut state = self.state();
        let p = &mut state.topics.get_mut(topic).unwrap().partitions[partition as usize];
        p.leader = leader;
        p.leader_epoch += 1;
        state.metadata_version += 1;
    }

    /// The next `times` produce requests for the partition get `code`.
    pub fn inject_produce_error(
        &self,
        topic: &str,
        partition: i32,
        code: ErrorCode,
        message: &str,
        times: usize,
    ) {
        let mut state = self.state();
        let queue = state
            .produce_injections
            .entry((topic.to_owned(), partition))
            .or_default();
        for _ in 0..times {
            queue.push_back((code, message.to_owned()));
        }
    }

    /// The next `times` fetches of the partition get `code`.
    pub fn inject_fetch_error(&self, topic: &str, partition: i32, code: ErrorCode, times: usize) {
        let mut state = self.state();
        let queue = state
            .fetch_injections
            .entry((topic.to_owned(), partition))
            .or_default();
        for _ in 0..times {
            queue.push_back(code);
        }
    }

    /// A down broker answers every call with UNAVAILABLE and leaves the
    /// metadata.
    pub fn set_broker_down(&self, id: i32, down: bool) {
        let mut state = self.state();
        state.brokers.get_mut(&id).unwrap().1 = !down;
        state.metadata_version += 1;
    }

    /// Appends a batch as a producer would have (for consumer tests).
    pub fn append(&self, topic: &str, partition: i32, batch: &[u8]) -> i64 {
        let base = {
            let mut state = self.state();
            let p = &mut state.topics.get_mut(topic).unwrap().partitions[partition as usize];
            append_batch(p, batch).unwrap()
        };
        self.shared.appended.notify_waiters();
        base
    }

    /// Drops every batch before `offset`, as retention would.
    pub fn truncate_start(&self, topic: &str, partition: i32, offset: i64) {
        let mut state = self.state();
        let p = &mut state.topics.get_mut(topic).unwrap().partitions[partition as usize];
        p.batches.retain(|(_, next, _)| *next > offset);
        p.log_start_offset = offset;
    }

    /// Every record value of a partition, decoded, with its offset.
    pub fn values(&self, topic: &str, partition: i32) -> Vec<(i64, Bytes)> {
        let state = self.state();
        let p = &state.topics[topic].partitions[partition as usize];
        let mut out = Vec::new();
        for (_, _, batch) in &p.batches {
            records::validate_batch(batch, usize::MAX).unwrap();
            let (_, records) = records::decode_batch(batch, client::codec::decompress).unwrap();
            out.extend(
                records
                    .into_iter()
                    .map(|r| (r.offset, r.value.unwrap_or_default())),
            );
        }
        out
    }
}

impl State {
    fn new_topic_id(&mut self) -> Bytes {
        self.next_topic_id += 1;
        Bytes::from(vec![self.next_topic_id; 16])
    }

    fn alive_brokers(&self) -> Vec<i32> {
        self.brokers
            .iter()
            .filter(|(_, (_, alive))| *alive)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Kafka's round-robin placement over the live brokers.
    fn create(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), (ErrorCode, String)> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err((
                ErrorCode::InvalidTopicException,
                format!("Topic name \"{name}\" is illegal"),
            ));
        }
        if self.topics.contains_key(name) {
            return Err((
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        if partitions < 1 {
            return Err((
                ErrorCode::InvalidPartitions,
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        let alive = self.alive_brokers();
        if replication_factor < 1 {
            return Err((
                ErrorCode::InvalidReplicationFactor,
                "Replication factor must be larger than 0.".into(),
            ));
        }
        if replication_factor as usize > alive.len() {
            return Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "Replication factor: {replication_factor} larger than available brokers: {}.",
                    alive.len()
                ),
            ));
        }
        let partitions = (0..partitions as usize)
            .map(|p| {
                let replicas: Vec<i32> = (0..replication_factor as usize)
                    .map(|r| alive[(p + r) % alive.len()])
                    .collect();
                FakePartition {
                    leader: replicas[0],
                    leader_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                    batches: Vec::new(),
                    log_start_offset: 0,
                    log_end_offset: 0,
                }
            })
            .collect();
        let id = self.new_topic_id();
        self.topics.insert(
            name.to_owned(),
            FakeTopic {
                id,
                configs,
                partitions,
            },
        );
        self.metadata_version += 1;
        Ok(())
    }

    fn broker_infos(&self) -> Vec<BrokerInfo> {
        self.brokers
            .iter()
            .map(|(id, (addr, alive))| BrokerInfo {
                broker_id: *id,
                broker_epoch: 1,
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: addr.ip().to_string(),
                    port: i32::from(addr.port()),
                }],
                rack: String::new(),
                state: if *alive {
                    BrokerState::Active
                } else {
                    BrokerState::Fenced
                } as i32,
                ..Default::default()
            })
            .collect()
    }

    fn describe(&self, names: &[String]) -> DescribeTopicsResponse {
        let names: Vec<String> = if names.is_empty() {
            self.topics.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        let topics = names
            .iter()
            .map(|name| match self.topics.get(name) {
                None => TopicDescription {
                    name: name.clone(),
                    error_code: ErrorCode::UnknownTopicOrPartition.code(),
                    error_message: format!("Topic '{name}' does not exist."),
                    topic: None,
                    partitions: Vec::new(),
                },
                Some(topic) => TopicDescription {
                    name: name.clone(),
                    error_code: 0,
                    error_message: String::new(),
                    topic: Some(TopicInfo {
                        name: name.clone(),
                        topic_id: topic.id.clone(),
                        configs: topic.configs.clone().into_iter().collect(),
                    }),
                    partitions: topic
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| PartitionState {
                            topic: name.clone(),
                            partition: i as i32,
                            replicas: p.replicas.clone(),
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            isr: p.isr.clone(),
                            partition_epoch: p.leader_epoch,
                            topic_id: topic.id.clone(),
                        })
                        .collect(),
                },
            })
            .collect();
        DescribeTopicsResponse {
            topics,
            brokers: self.broker_infos(),
        }
    }
}

fn append_batch(p: &mut FakePartition, records: &[u8]) -> Result<i64, (ErrorCode, String)> {
    let mut base = None;
    let mut pending = Vec::new();
    let mut next = p.log_end_offset;
    for batch in records::Batches::new(records, usize::MAX) {
        let (header, bytes) = batch.map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
        let mut stored = bytes.to_vec();
        records::set_base_offset_and_epoch(&mut stored, next, p.leader_epoch);
        base.get_or_insert(next);
        let after = next + i64::from(header.last_offset_delta) + 1;
        pending.push((next, after, Bytes::from(stored)));
        next = after;
    }
    let base = base.ok_or((
        ErrorCode::CorruptMessage,
        "no record batch in the request".to_owned(),
    ))?;
    p.batches.extend(pending);
    p.log_end_offset = next;
    Ok(base)
}

#[derive(Debug, Clone)]
struct FakeBroker {
    id: i32,
    shared: Arc<Shared>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl FakeBroker {
    fn check_up(&self) -> Result<(), Status> {
        let alive = self.shared.lock().brokers[&self.id].1;
        if alive {
            Ok(())
        } else {
            Err(Status::unavailable("broker is down"))
        }
    }

    fn produce_one(&self, request: ProduceRequest) -> ProduceResponse {
        let mut state = self.shared.lock();
        *state.stats.produce_requests.entry(self.id).or_default() += 1;
        let max = state.message_max_bytes;
        let mut answers = Vec::new();
        for data in request.partitions {
            let key = (data.topic.clone(), data.partition);
            let injected = state
                .produce_injections
                .get_mut(&key)
                .and_then(VecDeque::pop_front)
                .or_else(|| state.refusing.get(&key).map(|code| (*code, String::new())));
            let result = if let Some((code, message)) = injected {
                Err((code, message))
            } else if data.records.len() > max {
                Err((
                    ErrorCode::MessageTooLarge,
                    "The request included a message larger than the max message size the server will accept.".to_owned(),
                ))
            } else {
                match state
                    .topics
                    .get_mut(&data.topic)
                    .and_then(|t| t.partitions.get_mut(data.partition as usize))
                {
                    None => Err((ErrorCode::UnknownTopicOrPartition, String::new())),
                    Some(p) if p.leader != self.id => {
                        Err((ErrorCode::NotLeaderOrFollower, String::new()))
                    }
                    Some(p) => append_batch(p, &data.records),
                }
            };
            let answer = match result {
                Ok(base_offset) => ProducePartitionResponse {
                    topic: data.topic,
                    partition: data.partition,
                    error_code: 0,
                    error_message: String::new(),
                    base_offset,
                    log_append_time_ms: -1,
                    log_start_offset: 0,
                },
                Err((code, message)) => {
                    *state.stats.produce_errors.entry(code).or_default() += 1;
                    ProducePartitionResponse {
                        topic: data.topic,
                        partition: data.partition,
                        error_code: code.code(),
                        error_message: message,
                        base_offset: -1,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                    }
                }
            };
            answers.push(answer);
        }
        drop(state);
        self.shared.appended.notify_waiters();
        ProduceResponse {
            correlation_id: request.correlation_id,
            partitions: answers,
        }
    }

    /// One pass over the fetch; `None` when nothing is there to return.
    fn fetch_once(&self, request: &FetchRequest, final_pass: bool) -> Option<FetchResponse> {
        let mut state = self.shared.lock();
        let mut answers = Vec::new();
        let mut has_data = false;
        let mut has_error = false;
        for fp in &request.partitions {
            let key = (fp.topic.clone(), fp.partition);
            let injected = state
                .fetch_injections
                .get_mut(&key)
                .and_then(VecDeque::pop_front);
            let mut answer = FetchPartitionResponse {
                topic: fp.topic.clone(),
                partition: fp.partition,
                current_leader: -1,
                current_leader_epoch: -1,
                ..Default::default()
            };
            let code = match (
                injected,
                state
                    .topics
                    .get(&fp.topic)
                    .and_then(|t| t.partitions.get(fp.partition as usize)),
            ) {
                (Some(code), _) => code,
                (None, None) => ErrorCode::UnknownTopicOrPartition,
                (None, Some(p)) if p.leader != self.id => {
                    answer.current_leader = p.leader;
                    answer.current_leader_epoch = p.leader_epoch;
                    ErrorCode::NotLeaderOrFollower
                }
                (None, Some(p))
                    if fp.current_leader_epoch >= 0 && fp.current_leader_epoch < p.leader_epoch =>
                {
                    ErrorCode::FencedLeaderEpoch
                }
                (None, Some(p)) if fp.current_leader_epoch > p.leader_epoch => {
                    ErrorCode::UnknownLeaderEpoch
                }
                (None, Some(p))
                    if fp.fetch_offset < p.log_start_offset
                        || fp.fetch_offset > p.log_end_offset =>
                {
                    ErrorCode::OffsetOutOfRange
                }
                (None, Some(p)) => {
                    answer.high_watermark = p.log_end_offset;
                    answer.log_start_offset = p.log_start_offset;
                    let mut data = Vec::new();
                    for (_, next, batch) in &p.batches {
                        if *next <= fp.fetch_offset {
                            continue;
                        }
                        if !data.is_empty()
                            && data.len() + batch.len() > fp.partition_max_bytes as usize
                        {
                            break;
                        }
                        data.extend_from_slice(batch);
                    }
                    has_data |= !data.is_empty();
                    answer.records = Bytes::from(data);
                    ErrorCode::None
                }
            };
            state.stats.fetch_epochs.push(fp.current_leader_epoch);
            if !code.is_ok() {
                *state.stats.fetch_errors.entry(code).or_default() += 1;
                has_error = true;
            }
            answer.error_code = code.code();
            answers.push(answer);
        }
        if !has_data && !has_error && !final_pass {
            return None;
        }
        Some(FetchResponse {
            error_code: 0,
            partitions: answers,
        })
    }
}

#[tonic::async_trait]
impl Broker for FakeBroker {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        self.check_up()?;
        let delay = self.shared.lock().produce_delay;
        tokio::time::sleep(delay).await;
        Ok(Response::new(self.produce_one(request.into_inner())))
    }

    type ProduceStreamStream = BoxStream<ProduceResponse>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        self.check_up()?;
        let mut incoming = request.into_inner();
        let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<ProduceRequest>();
        let (out_tx, out_rx) = mpsc::channel(64);
        let outstanding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Reader: takes requests as fast as they come, so the number held
        // unanswered shows how far the client pipelines.
        let shared = Arc::clone(&self.shared);
        let counter = Arc::clone(&outstanding);
        tokio::spawn(async move {
            while let Ok(Some(request)) = incoming.message().await {
                let now = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                {
                    let mut state = shared.lock();
                    state.stats.max_outstanding_produce =
                        state.stats.max_outstanding_produce.max(now);
                }
                if queue_tx.send(request).is_err() {
                    break;
                }
            }
        });
        // Processor: answers in order.
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(request) = queue_rx.recv().await {
                if broker.check_up().is_err() {
                    let _ = out_tx
                        .send(Err(Status::unavailable("broker is down")))
                        .await;
                    break;
                }
                let delay = broker.shared.lock().produce_delay;
                tokio::time::sleep(delay).await;
                let response = broker.produce_one(request);
                outstanding.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                if out_tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        self.check_up()?;
        let request = request.into_inner();
        *self
            .shared
            .lock()
            .stats
            .fetch_requests
            .entry(self.id)
            .or_default() += 1;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
        loop {
            let appended = self.shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(response) = self.fetch_once(&request, false) {
                return Ok(Response::new(response));
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                let response = self.fetch_once(&request, true).unwrap();
                return Ok(Response::new(response));
            }
        }
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        self.check_up()?;
        let state = self.shared.lock();
        let partitions = request
            .into_inner()
            .partitions
            .into_iter()
            .map(|lp| {
                let mut answer = ListOffsetsPartitionResponse {
                    topic: lp.topic.clone(),
                    partition: lp.partition,
                    timestamp: -1,
                    offset: -1,
                    ..Default::default()
                };
                let code = match state
                    .topics
                    .get(&lp.topic)
                    .and_then(|t| t.partitions.get(lp.partition as usize))
                {
                    None => ErrorCode::UnknownTopicOrPartition,
                    Some(p) if p.leader != self.id => ErrorCode::NotLeaderOrFollower,
                    Some(p) => {
                        answer.leader_epoch = p.leader_epoch;
                        match lp.timestamp {
                            protocol::EARLIEST_TIMESTAMP => answer.offset = p.log_start_offset,
                            protocol::LATEST_TIMESTAMP => answer.offset = p.log_end_offset,
                            target => {
                                'search: for (_, _, batch) in &p.batches {
                                    let (_, records) =
                                        records::decode_batch(batch, client::codec::decompress)
                                            .unwrap();
                                    for record in records {
                                        if record.timestamp >= target {
                                            answer.offset = record.offset;
                                            answer.timestamp = record.timestamp;
                                            break 'search;
                                        }
                                    }
                                }
                            }
                        }
                        ErrorCode::None
                    }
                };
                answer.error_code = code.code();
                answer
            })
            .collect();
        Ok(Response::new(ListOffsetsResponse { partitions }))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        self.check_up()?;
        let request = request.into_inner();
        let mut state = self.shared.lock();
        state.stats.metadata_requests += 1;
        let names: Vec<String> = if request.topics.is_empty() {
            state.topics.keys().cloned().collect()
        } else {
            request.topics.clone()
        };
        let mut topics = Vec::new();
        for name in names {
            if !state.topics.contains_key(&name)
                && request.allow_auto_topic_creation
                && state.auto_create_topics
            {
                let partitions = state.num_partitions;
                if state.create(&name, partitions, 1, BTreeMap::new()).is_ok() {
                    state.just_created.push(name.clone());
                }
            }
            if let Some(at) = state.just_created.iter().position(|n| n == &name) {
                state.just_created.remove(at);
                topics.push(TopicMetadata {
                    name,
                    error_code: ErrorCode::LeaderNotAvailable.code(),
                    ..Default::default()
                });
                continue;
            }
            let metadata = match state.topics.get(&name) {
                None => TopicMetadata {
                    name,
                    error_code: ErrorCode::UnknownTopicOrPartition.code(),
                    ..Default::default()
                },
                Some(topic) => TopicMetadata {
                    name,
                    error_code: 0,
                    error_message: String::new(),
                    topic_id: topic.id.clone(),
                    partitions: topic
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let leader_alive = state.brokers.get(&p.leader).is_some_and(|b| b.1);
                            PartitionMetadata {
                                partition: i as i32,
                                error_code: if leader_alive {
                                    0
                                } else {
                                    ErrorCode::LeaderNotAvailable.code()
                                },
                                leader: if leader_alive { p.leader } else { -1 },
                                leader_epoch: p.leader_epoch,
                                replicas: p.replicas.clone(),
                                isr: p.isr.clone(),
                                offline_replicas: Vec::new(),
                            }
                        })
                        .collect(),
                },
            };
            topics.push(metadata);
        }
        let brokers = state
            .brokers
            .iter()
            .filter(|(_, (_, alive))| *alive)
            .map(|(id, (addr, _))| BrokerEndpoint {
                broker_id: *id,
                host: addr.ip().to_string(),
                port: i32::from(addr.port()),
                rack: String::new(),
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            brokers,
            topics,
            cluster_id: state.cluster_id.clone(),
            metadata_version: state.metadata_version,
        }))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        self.check_up()?;
        Ok(Response::new(create_topics(
            &self.shared,
            request.into_inner(),
            true,
        )))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        self.check_up()?;
        Ok(Response::new(delete_topics(
            &self.shared,
            request.into_inner(),
        )))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        self.check_up()?;
        Ok(Response::new(create_partitions(
            &self.shared,
            request.into_inner(),
        )))
    }

    async fn list_topics(
        &self,
        _request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        self.check_up()?;
        Ok(Response::new(ListTopicsResponse {
            names: self.shared.lock().topics.keys().cloned().collect(),
        }))
    }

    async fn describe_topics(
        &self,
        request: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsResponse>, Status> {
        self.check_up()?;
        Ok(Response::new(
            self.shared.lock().describe(&request.into_inner().names),
        ))
    }
}

fn create_topics(
    shared: &Shared,
    request: CreateTopicsRequest,
    broker_defaults: bool,
) -> CreateTopicsResponse {
    let mut state = shared.lock();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = match topic.num_partitions {
                -1 if broker_defaults => state.num_partitions,
                n => n,
            };
            let replication_factor = match topic.replication_factor {
                -1 if broker_defaults => 1,
                n => n,
            };
            let result = if request.validate_only {
                Ok(())
            } else {
                state.create(
                    &topic.name,
                    partitions,
                    replication_factor,
                    topic.configs.into_iter().collect(),
                )
            };
            match result {
                Ok(()) => CreatableTopicResult {
                    topic_id: state
                        .topics
                        .get(&topic.name)
                        .map(|t| t.id.clone())
                        .unwrap_or_default(),
                    name: topic.name,
                    error_code: 0,
                    error_message: String::new(),
                    num_partitions: partitions,
                    replication_factor,
                },
                Err((code, message)) => CreatableTopicResult {
                    name: topic.name,
                    error_code: code.code(),
                    error_message: message,
                    ..Default::default()
                },
            }
        })
        .collect();
    CreateTopicsResponse { topics }
}

fn delete_topics(shared: &Shared, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut state = shared.lock();
    let topics = request
        .names
        .into_iter()
        .map(|name| {
            let existed = state.topics.remove(&name).is_some();
            TopicResult {
                error_code: if existed {
                    0
                } else {
                    ErrorCode::UnknownTopicOrPartition.code()
                },
                error_message: if existed {
                    String::new()
                } else {
                    format!("Topic '{name}' does not exist.")
                },
                name,
            }
        })
        .collect();
    state.metadata_version += 1;
    DeleteTopicsResponse { topics }
}

fn create_partitions(
    shared: &Shared,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut state = shared.lock();
    let alive = state.alive_brokers();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let result = match state.topics.get_mut(&t.name) {
                None => Err((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("Topic '{}' does not exist.", t.name),
                )),
                Some(topic) if (t.count as usize) <= topic.partitions.len() => Err((
                    ErrorCode::InvalidPartitions,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {}.",
                        topic.partitions.len(),
                        t.count
                    ),
                )),
                Some(topic) => {
                    let rf = topic.partitions[0].replicas.len();
                    while topic.partitions.len() < t.count as usize {
                        let p = topic.partitions.len();
                        let replicas: Vec<i32> =
                            (0..rf).map(|r| alive[(p + r) % alive.len()]).collect();
                        topic.partitions.push(FakePartition {
                            leader: replicas[0],
                            leader_epoch: 0,
                            isr: replicas.clone(),
                            replicas,
                            batches: Vec::new(),
                            log_start_offset: 0,
                            log_end_offset: 0,
                        });
                    }
                    Ok(())
                }
            };
            let (error_code, error_message) = match result {
                Ok(()) => (0, String::new()),
                Err((code, message)) => (code.code(), message),
            };
            TopicResult {
                name: t.name,
                error_code,
                error_message,
            }
        })
        .collect();
    state.metadata_version += 1;
    CreatePartitionsResponse { topics }
}

#[derive(Debug)]
struct FakeCoordinator {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Coordinator for FakeCoordinator {
    async fn register_broker(
        &self,
        _: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        Err(Status::unimplemented(
            "the fake coordinator has no broker sessions",
        ))
    }

    type BrokerSessionStream = BoxStream<HeartbeatResponse>;

    async fn broker_session(
        &self,
        _: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        Err(Status::unimplemented(
            "the fake coordinator has no broker sessions",
        ))
    }

    async fn controlled_shutdown(
        &self,
        _: Request<ControlledShutdownRequest>,
    ) -> Result<Response<ControlledShutdownResponse>, Status> {
        Err(Status::unimplemented(
            "the fake coordinator has no broker sessions",
        ))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        Ok(Response::new(create_topics(
            &self.shared,
            request.into_inner(),
            false,
        )))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        Ok(Response::new(delete_topics(
            &self.shared,
            request.into_inner(),
        )))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        Ok(Response::new(create_partitions(
            &self.shared,
            request.into_inner(),
        )))
    }

    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        Ok(Response::new(ListTopicsResponse {
            names: self.shared.lock().topics.keys().cloned().collect(),
        }))
    }

    async fn describe_topics(
        &self,
        request: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsResponse>, Status> {
        Ok(Response::new(
            self.shared.lock().describe(&request.into_inner().names),
        ))
    }

    async fn describe_cluster(
        &self,
        _: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        let state = self.shared.lock();
        Ok(Response::new(DescribeClusterResponse {
            cluster_id: state.cluster_id.clone(),
            brokers: state.broker_infos(),
            metadata_version: state.metadata_version,
        }))
    }

    async fn alter_partition(
        &self,
        _: Request<AlterPartitionRequest>,
    ) -> Result<Response<AlterPartitionResponse>, Status> {
        Err(Status::unimplemented(
            "the fake coordinator has no controller",
        ))
    }

    type WatchMetadataStream = BoxStream<MetadataUpdate>;

    async fn watch_metadata(
        &self,
        _: Request<WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        Err(Status::unimplemented(
            "the fake coordinator has no metadata log",
        ))
    }
}

/// A batch of string values with create times 1000, 1001, ...
pub fn batch_of(values: &[&str]) -> Bytes {
    let mut builder = records::RecordBatchBuilder::default();
    for (i, value) in values.iter().enumerate() {
        builder.append(1000 + i as i64, None, Some(value.as_bytes()), &[]);
    }
    builder.finish()
}

/// An address where nothing listens.
pub async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}
