//! The in-process harness: a coordinator on 127.0.0.1:0 over a temp dir,
//! test brokers that register and heartbeat over real gRPC, and watchers
//! that follow the metadata stream and wait for a state to appear.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use coordinator::{CoordinatorError, Settings};
use protocol::ErrorCode;
use protocol::coordinator::coordinator_client::CoordinatorClient;
use protocol::coordinator::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerState, CreatableTopic,
    CreateTopicsRequest, Endpoint, HeartbeatRequest, HeartbeatResponse, MetadataUpdate,
    PartitionState, RegisterBrokerRequest, ReplicaAssignment, WatchMetadataRequest,
};
use protocol::image::MetadataImage;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long any awaited state may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub type Client = CoordinatorClient<Channel>;

/// Settings for tests: ticks of 100 ms (sessions of 200 ms to 2 s), no
/// automatic rebalance unless a test turns it on.
pub fn test_settings(dir: &Path) -> Settings {
    let mut settings = Settings::new(dir);
    settings.set_tick_time(Duration::from_millis(100));
    settings.auto_leader_rebalance_enable = false;
    settings.broker_session_grace = Duration::from_millis(300);
    settings
}

/// A coordinator running in this process.
pub struct TestCoordinator {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), CoordinatorError>>>,
}

impl TestCoordinator {
    pub async fn start(settings: Settings) -> TestCoordinator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data_dir = settings.data_dir.clone();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(coordinator::run_with_config_validator(
            settings,
            listener,
            async move {
                let _ = signal.await;
            },
            reject_bogus_configs,
        ));
        TestCoordinator {
            addr,
            data_dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> Client {
        let endpoint = format!("http://{}", self.addr);
        let channel = Channel::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        CoordinatorClient::new(channel).max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
    }

    /// Stops gracefully and checks that the coordinator stopped cleanly.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        let result = tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the coordinator stops within the patience")
            .unwrap();
        result.unwrap();
    }
}

impl Drop for TestCoordinator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The harness's topic config check: refuses values that say "bogus".
fn reject_bogus_configs(key: &str, value: &str) -> Result<(), String> {
    if value == "bogus" {
        Err(format!("Invalid value bogus for configuration {key}"))
    } else {
        Ok(())
    }
}

pub fn endpoint(port: i32) -> Endpoint {
    Endpoint {
        listener: "PLAINTEXT".into(),
        host: "localhost".into(),
        port,
    }
}

pub fn register_request(
    broker_id: i32,
    incarnation: &str,
    session_timeout_ms: i32,
) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        broker_id,
        endpoints: vec![endpoint(9092 + broker_id)],
        rack: String::new(),
        incarnation_id: incarnation.into(),
        session_timeout_ms,
        cluster_id: String::new(),
    }
}

/// A broker as the coordinator sees it: a registration and a heartbeat
/// stream that reports its epoch as the caught-up version.
pub struct TestBroker {
    pub id: i32,
    addr: SocketAddr,
    pub epoch: i64,
    pub client: Client,
    /// The metadata version the heartbeats report.
    reported_version: Arc<AtomicI64>,
    /// While true the stream stays open but sends nothing.
    paused: Arc<AtomicBool>,
    heartbeats: Option<JoinHandle<()>>,
    responses: Option<mpsc::Receiver<HeartbeatResponse>>,
}

impl TestBroker {
    /// Registers with a new incarnation and starts heartbeating every
    /// 50 ms, reporting itself caught up.
    pub async fn start(
        coordinator: &TestCoordinator,
        id: i32,
        session_timeout_ms: i32,
    ) -> TestBroker {
        let incarnation = uuid::Uuid::new_v4().to_string();
        let mut broker =
            TestBroker::register(coordinator, id, &incarnation, session_timeout_ms).await;
        broker.report_version(broker.epoch);
        broker.open_stream();
        broker
    }

    /// Registers without heartbeating.
    pub async fn register(
        coordinator: &TestCoordinator,
        id: i32,
        incarnation: &str,
        session_timeout_ms: i32,
    ) -> TestBroker {
        let mut client = coordinator.client().await;
        let response = client
            .register_broker(register_request(id, incarnation, session_timeout_ms))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.error_code, 0, "{}", response.error_message);
        TestBroker {
            id,
            addr: coordinator.addr,
            epoch: response.broker_epoch,
            client,
            reported_version: Arc::new(AtomicI64::new(0)),
            paused: Arc::new(AtomicBool::new(false)),
            heartbeats: None,
            responses: None,
        }
    }

    pub fn report_version(&self, version: i64) {
        self.reported_version.store(version, Ordering::SeqCst);
    }

    /// Opens a heartbeat stream (closing the previous one, if any) on a
    /// connection of its own, which closes with the stream.
    pub fn open_stream(&mut self) {
        self.close_stream();
        let (responses_tx, responses_rx) = mpsc::channel(1024);
        let addr = self.addr;
        let (id, epoch) = (self.id, self.epoch);
        let version = Arc::clone(&self.reported_version);
        let paused = Arc::clone(&self.paused);
        self.heartbeats = Some(tokio::spawn(async move {
            let Ok(mut client) = Client::connect(format!("http://{addr}")).await else {
                return;
            };
            let (requests_tx, requests_rx) = mpsc::channel::<HeartbeatRequest>(4);
            let requests = tokio_stream::wrappers::ReceiverStream::new(requests_rx);
            let heartbeat = || HeartbeatRequest {
                broker_id: id,
                broker_epoch: epoch,
                metadata_version: version.load(Ordering::SeqCst),
            };
            // The first heartbeat goes out with the call.
            if requests_tx.send(heartbeat()).await.is_err() {
                return;
            }
            let Ok(response) = client.broker_session(requests).await else {
                return;
            };
            let mut inbound = response.into_inner();
            let mut ticks = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if !paused.load(Ordering::SeqCst) && requests_tx.send(heartbeat()).await.is_err() {
                            return;
                        }
                    }
                    message = inbound.message() => match message {
                        Ok(Some(response)) => {
                            let _ = responses_tx.try_send(response);
                        }
                        _ => return,
                    },
                }
            }
        }));
        self.responses = Some(responses_rx);
    }

    /// Ends the heartbeat stream: what the coordinator sees when a broker
    /// process dies and its connection closes.
    pub fn close_stream(&mut self) {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        self.responses = None;
    }

    /// Keeps the stream open but stops sending: a paused or hung broker.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The next heartbeat answer on the current stream.
    pub async fn next_response(&mut self) -> HeartbeatResponse {
        let responses = self.responses.as_mut().expect("a stream is open");
        tokio::time::timeout(PATIENCE, responses.recv())
            .await
            .expect("a heartbeat answer within the patience")
            .expect("the stream is open")
    }

    pub async fn alter_partition(
        &mut self,
        partition: &PartitionState,
        new_isr: &[i32],
    ) -> AlterPartitionResponse {
        self.client
            .alter_partition(AlterPartitionRequest {
                broker_id: self.id,
                broker_epoch: self.epoch,
                topic: partition.topic.clone(),
                partition: partition.partition,
                leader_epoch: partition.leader_epoch,
                partition_epoch: partition.partition_epoch,
                new_isr: new_isr.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.close_stream();
    }
}

/// Follows the watch stream and keeps the image it describes.
pub struct Watcher {
    stream: tonic::Streaming<MetadataUpdate>,
    pub image: MetadataImage,
    /// Every update received, in order.
    pub updates: Vec<MetadataUpdate>,
}

impl Watcher {
    pub async fn start(client: &mut Client, from_version: i64) -> Watcher {
        let stream = client
            .watch_metadata(WatchMetadataRequest { from_version })
            .await
            .unwrap()
            .into_inner();
        Watcher {
            stream,
            image: MetadataImage::default(),
            updates: Vec::new(),
        }
    }

    /// The next update, applied to the image.
    pub async fn next(&mut self) -> MetadataUpdate {
        let update = tokio::time::timeout(PATIENCE, self.stream.message())
            .await
            .expect("an update within the patience")
            .expect("the stream is healthy")
            .expect("the stream is open");
        if !update.snapshot {
            let base = update.version - update.records.len() as i64;
            assert!(
                self.updates.is_empty() || base == self.image.version,
                "update {} follows version {}",
                update.version,
                self.image.version
            );
        }
        self.image.apply_update(&update);
        self.updates.push(update.clone());
        update
    }

    /// Applies updates until `done` holds for the image.
    pub async fn wait_for(
        &mut self,
        what: &str,
        done: impl Fn(&MetadataImage) -> bool,
    ) -> &MetadataImage {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.image) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the image is {:#?}",
                self.image
            );
            self.next().await;
        }
        &self.image
    }

    pub async fn wait_for_version(&mut self, version: i64) {
        self.wait_for(&format!("version {version}"), |i| i.version >= version)
            .await;
    }

    pub async fn wait_for_broker_state(&mut self, broker_id: i32, state: BrokerState) {
        self.wait_for(&format!("broker {broker_id} {state:?}"), |i| {
            i.brokers
                .get(&broker_id)
                .is_some_and(|b| b.state == state as i32)
        })
        .await;
    }
}

/// Starts `count` brokers (ids 1..=count) with the given session timeout
/// and waits until they are all active.
pub async fn start_brokers(
    coordinator: &TestCoordinator,
    watcher: &mut Watcher,
    ids: &[i32],
    session_timeout_ms: i32,
) -> Vec<TestBroker> {
    let mut brokers = Vec::new();
    for &id in ids {
        brokers.push(TestBroker::start(coordinator, id, session_timeout_ms).await);
    }
    for &id in ids {
        watcher.wait_for_broker_state(id, BrokerState::Active).await;
    }
    brokers
}

pub fn topic(name: &str, partitions: i32, replication_factor: i32) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor,
        configs: Default::default(),
        assignments: Vec::new(),
    }
}

/// A topic placed by hand: one replica list per partition.
pub fn assigned_topic(name: &str, replicas: &[&[i32]]) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
        assignments: replicas
            .iter()
            .enumerate()
            .map(|(partition, replicas)| ReplicaAssignment {
                partition: partition as i32,
                replicas: replicas.to_vec(),
            })
            .collect(),
    }
}

/// Creates topics and asserts every one succeeded.
pub async fn create_topics(client: &mut Client, topics: Vec<CreatableTopic>) {
    let response = client
        .create_topics(CreateTopicsRequest {
            topics,
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    for result in response.topics {
        assert_eq!(
            result.error_code, 0,
            "{}: {}",
            result.name, result.error_message
        );
    }
}

pub fn code(error_code: i32) -> ErrorCode {
    ErrorCode::from_code(error_code)
}

pub fn partition(image: &MetadataImage, topic: &str, partition: i32) -> PartitionState {
    image
        .partition(topic, partition)
        .unwrap_or_else(|| panic!("{topic}-{partition} exists"))
        .clone()
}

/// Runs `f` and returns how long it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = tokio::time::Instant::now();
    let value = f.await;
    (value, start.elapsed())
}
