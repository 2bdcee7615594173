//! The broker's link to the coordinator: registration, the heartbeat session
//! and the metadata watch, each kept alive through coordinator outages.
//!
//! While the coordinator is unreachable the broker keeps serving what it
//! can with the metadata it has; these loops retry with capped exponential
//! backoff and log each outage once, not once per attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use protocol::ErrorCode;
use protocol::coordinator::coordinator_client::CoordinatorClient;
use protocol::coordinator::{
    AlterPartitionRequest, AlterPartitionResponse, ControlledShutdownRequest,
    ControlledShutdownResponse, Endpoint as ProtoEndpoint, HeartbeatRequest, MetadataUpdate,
    RegisterBrokerRequest, WatchMetadataRequest,
};
use tokio::sync::{Notify, mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

/// How long a broker waits between attempts while the coordinator is away.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The identity this broker registers with.
#[derive(Debug, Clone)]
pub struct Registration {
    pub broker_id: i32,
    pub endpoints: Vec<ProtoEndpoint>,
    pub rack: String,
    pub incarnation_id: String,
    pub session_timeout_ms: i32,
}

/// The coordinator as this broker sees it: a lazily connected channel and the
/// broker's current epoch.
#[derive(Debug)]
pub struct CoordinatorLink {
    client: CoordinatorClient<Channel>,
    address: String,
    registration: Registration,
    /// The cluster this broker's logs belong to; empty until known.
    cluster_id: std::sync::Mutex<String>,
    /// The current broker epoch; -1 until registered.
    broker_epoch: AtomicI64,
    /// Published every time the broker (re-)registers with a new epoch.
    epoch_tx: watch::Sender<i64>,
    /// The metadata version this broker has applied, reported in heartbeats.
    metadata_version: AtomicI64,
    /// False while the coordinator considers this broker fenced.
    unfenced: watch::Sender<bool>,
    /// Wakes the session loop when it must stop.
    reregister: Notify,
    /// Asks for a heartbeat now: a fenced broker that has caught up with the
    /// metadata is unfenced on its next heartbeat, so it should not wait a
    /// whole interval for it.
    heartbeat_now: Notify,
    stopping: AtomicBool,
}

impl CoordinatorLink {
    /// A link to the first coordinator of `zookeeper.connect`. Nothing is
    /// dialled until the first call, so a broker starts without a coordinator.
    pub fn new(
        coordinator_addresses: &[String],
        connect_timeout: Duration,
        registration: Registration,
    ) -> Result<Arc<CoordinatorLink>, tonic::transport::Error> {
        // One coordinator for now; a quorum would list several here.
        let address = coordinator_addresses
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost:2181".to_owned());
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .connect_lazy();
        let client = CoordinatorClient::new(channel)
            .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES);
        Ok(Arc::new(CoordinatorLink {
            client,
            address,
            registration,
            cluster_id: std::sync::Mutex::new(String::new()),
            broker_epoch: AtomicI64::new(-1),
            epoch_tx: watch::channel(-1).0,
            metadata_version: AtomicI64::new(-1),
            unfenced: watch::channel(false).0,
            reregister: Notify::new(),
            heartbeat_now: Notify::new(),
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn client(&self) -> CoordinatorClient<Channel> {
        self.client.clone()
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn broker_id(&self) -> i32 {
        self.registration.broker_id
    }

    /// Sent with every registration from now on: a coordinator of another
    /// cluster refuses it.
    pub fn set_cluster_id(&self, cluster_id: &str) {
        *self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()) = cluster_id.to_owned();
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// Changes each time the broker registers with a new epoch.
    pub fn subscribe_epoch(&self) -> watch::Receiver<i64> {
        self.epoch_tx.subscribe()
    }

    /// Becomes true once the coordinator has unfenced this broker.
    pub fn subscribe_unfenced(&self) -> watch::Receiver<bool> {
        self.unfenced.subscribe()
    }

    pub fn set_metadata_version(&self, version: i64) {
        self.metadata_version.store(version, Ordering::Release);
        if !*self.unfenced.borrow() {
            self.heartbeat_now.notify_one();
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.reregister.notify_waiters();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Registers until it succeeds (or the broker stops), returning the epoch.
    async fn register(&self) -> Option<i64> {
        let mut backoff = Backoff::new();
        while !self.stopping() {
            let request = RegisterBrokerRequest {
                broker_id: self.registration.broker_id,
                endpoints: self.registration.endpoints.clone(),
                rack: self.registration.rack.clone(),
                incarnation_id: self.registration.incarnation_id.clone(),
                session_timeout_ms: self.registration.session_timeout_ms,
                cluster_id: self
                    .cluster_id
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            };
            match self.client().register_broker(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let error = ErrorCode::from_code(response.error_code);
                    if error.is_ok() {
                        self.broker_epoch
                            .store(response.broker_epoch, Ordering::Release);
                        self.epoch_tx.send_replace(response.broker_epoch);
                        info!(
                            "Registered broker {} at coordinator {} with broker epoch {}",
                            self.registration.broker_id, self.address, response.broker_epoch
                        );
                        return Some(response.broker_epoch);
                    }
                    backoff.fail(&format!(
                        "Registration of broker {} refused by coordinator {}: {}: {}",
                        self.registration.broker_id, self.address, error, response.error_message
                    ));
                }
                Err(status) => backoff.fail(&format!(
                    "Unable to reach coordinator at {} to register broker {}: {}",
                    self.address,
                    self.registration.broker_id,
                    status_reason(&status)
                )),
            }
            backoff.wait().await;
        }
        None
    }

    /// Registers, then keeps the heartbeat session alive, re-registering
    /// whenever the coordinator has fenced this epoch. Runs until stopped.
    pub async fn run_session(self: Arc<Self>, heartbeat_interval: Duration) {
        let mut backoff = Backoff::new();
        'register: while !self.stopping() {
            let Some(epoch) = self.register().await else {
                return;
            };
            self.unfenced.send_replace(false);
            loop {
                if self.stopping() {
                    return;
                }
                match self.session_stream(epoch, heartbeat_interval).await {
                    SessionEnd::Stopped => return,
                    SessionEnd::Fenced(reason) => {
                        warn!(
                            "Broker epoch {epoch} is no longer valid ({reason}); registering again"
                        );
                        self.unfenced.send_replace(false);
                        continue 'register;
                    }
                    SessionEnd::Broken(reason) => {
                        backoff.fail(&format!(
                            "Heartbeat session with coordinator {} broke: {reason}",
                            self.address
                        ));
                        // Reconnect quickly: the coordinator fences a broker
                        // whose stream stays down for its grace period.
                        tokio::time::sleep(BACKOFF_MIN).await;
                    }
                }
            }
        }
    }

    async fn session_stream(&self, epoch: i64, interval: Duration) -> SessionEnd {
        let (tx, rx) = mpsc::channel::<HeartbeatRequest>(4);
        let heartbeat = |link: &CoordinatorLink| HeartbeatRequest {
            broker_id: link.registration.broker_id,
            broker_epoch: epoch,
            metadata_version: link.metadata_version.load(Ordering::Acquire),
        };
        if tx.send(heartbeat(self)).await.is_err() {
            return SessionEnd::Broken("request stream closed".into());
        }
        let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut inbound = match self.client().broker_session(outbound).await {
            Ok(response) => response.into_inner(),
            Err(status) => return SessionEnd::Broken(status_reason(&status)),
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stopping() {
                return SessionEnd::Stopped;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    if tx.send(heartbeat(self)).await.is_err() {
                        return SessionEnd::Broken("request stream closed".into());
                    }
                }
                _ = self.heartbeat_now.notified() => {
                    if tx.send(heartbeat(self)).await.is_err() {
                        return SessionEnd::Broken("request stream closed".into());
                    }
                }
                _ = self.reregister.notified() => {
                    if self.stopping() {
                        return SessionEnd::Stopped;
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(response)) => {
                        let error = ErrorCode::from_code(response.error_code);
                        match error {
                            ErrorCode::None => {
                                let was = *self.unfenced.borrow();
                                if was == response.fenced {
                                    self.unfenced.send_replace(!response.fenced);
                                    if response.fenced {
                                        info!("Broker {} is fenced by the coordinator", self.registration.broker_id);
                                    }
                                }
                            }
                            ErrorCode::StaleBrokerEpoch | ErrorCode::BrokerIdNotRegistered => {
                                return SessionEnd::Fenced(format!("{error}: {}", response.error_message));
                            }
                            other => {
                                debug!("Heartbeat answered with {other}: {}", response.error_message);
                            }
                        }
                    }
                    Ok(None) => return SessionEnd::Broken("the coordinator closed the stream".into()),
                    Err(status) => return SessionEnd::Broken(status_reason(&status)),
                }
            }
        }
    }

    /// Streams metadata updates into `apply`, resuming from the last version
    /// applied after every disconnection. Runs until stopped.
    pub async fn run_watch(self: Arc<Self>, mut apply: impl FnMut(MetadataUpdate) -> i64) {
        let mut backoff = Backoff::new();
        let mut version = -1;
        while !self.stopping() {
            let request = WatchMetadataRequest {
                from_version: version,
            };
            let mut stream = match self.client().watch_metadata(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    backoff.fail(&format!(
                        "Unable to watch metadata at coordinator {}: {}",
                        self.address,
                        status_reason(&status)
                    ));
                    backoff.wait().await;
                    continue;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        backoff.succeeded();
                        version = apply(update);
                        self.set_metadata_version(version);
                    }
                    Ok(None) => break,
                    Err(status) => {
                        backoff.fail(&format!(
                            "Metadata watch on coordinator {} broke: {}",
                            self.address,
                            status_reason(&status)
                        ));
                        break;
                    }
                }
            }
            backoff.wait().await;
        }
    }

    /// Asks the coordinator to change a partition's ISR.
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, tonic::Status> {
        let mut client = self.client();
        let call = client.alter_partition(request);
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "AlterPartition took longer than 5 s",
            )),
        }
    }

    /// Controlled shutdown: moves this broker's leaderships away.
    pub async fn controlled_shutdown(
        &self,
        timeout: Duration,
    ) -> Result<ControlledShutdownResponse, tonic::Status> {
        let request = ControlledShutdownRequest {
            broker_id: self.registration.broker_id,
            broker_epoch: self.broker_epoch(),
        };
        let mut client = self.client();
        match tokio::time::timeout(timeout, client.controlled_shutdown(request)).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "controlled shutdown took longer than {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

enum SessionEnd {
    Stopped,
    Fenced(String),
    Broken(String),
}

/// A short reason for a failed call, for one-line log messages.
pub(crate) fn status_reason(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut reason = status.message().to_owned();
    let mut source = status.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        source = err.source();
    }
    if reason.is_empty() {
        format!("{:?}", status.code())
    } else {
        reason
    }
}

/// Capped exponential backoff that logs the first failure of an outage and
/// then stays quiet until the next success.
struct Backoff {
    delay: Duration,
    logged: bool,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            delay: BACKOFF_MIN,
            logged: false,
        }
    }

    fn fail(&mut self, message: &str) {
        if self.logged {
            debug!("{message}");
        } else {
            warn!("{message} (retrying until it answers)");
            self.logged = true;
        }
    }

    fn succeeded(&mut self) {
        if self.logged {
            info!("Reconnected to the coordinator");
        }
        self.delay = BACKOFF_MIN;
        self.logged = false;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }
}
