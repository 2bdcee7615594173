//! Start-up and shutdown of a broker, in the order that keeps data safe:
//! bind the listeners first (a port in use fails before any log is touched),
//! recover the logs, serve, then register and follow the coordinator. On the
//! way down, leadership moves away first, then serving stops, then the logs
//! are flushed and marked clean.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use protocol::broker::broker_server::BrokerServer;
use protocol::coordinator::Endpoint as ProtoEndpoint;
use storage::{LogManager, StorageError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::{error, info, warn};

use crate::link::{CoordinatorLink, Registration, status_reason};
use crate::replica_manager::ReplicaManager;
use crate::service::{BrokerService, now_ms};
use crate::settings::{self, Settings};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {address} for listener {listener}: {source}")]
    Bind {
        listener: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("invalid coordinator address in zookeeper.connect: {0}")]
    CoordinatorAddress(String),
    #[error("the log recovery task failed: {0}")]
    Recovery(String),
    #[error("{0}")]
    Meta(#[from] crate::meta::MetaError),
}

/// A started broker. Dropping it does not stop it; call [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    settings: Arc<Settings>,
    listen_addrs: Vec<(String, SocketAddr)>,
    core: Arc<ReplicaManager>,
    link: Arc<CoordinatorLink>,
    serving: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a broker: binds, recovers, serves, registers.
pub async fn start(settings: Settings) -> Result<RunningBroker, BrokerError> {
    let settings = Arc::new(settings);
    let broker_id = settings.broker_id;
    info!("[Kafka Server {broker_id}], starting");

    let mut bound = Vec::new();
    for listener in &settings.listeners {
        let address = listener.bind_address();
        let bind_error = |source| BrokerError::Bind {
            listener: listener.listener_name.clone(),
            address: address.clone(),
            source,
        };
        let socket = TcpListener::bind(&address).await.map_err(bind_error)?;
        let local = socket.local_addr().map_err(bind_error)?;
        bound.push((listener.listener_name.clone(), local, socket));
    }

    let dirs = settings.log_dirs.clone();
    let default_log_config = settings::log_config(&settings.topic_defaults());
    let logs = tokio::task::spawn_blocking(move || LogManager::open(&dirs, default_log_config))
        .await
        .map_err(|e| BrokerError::Recovery(e.to_string()))??;
    let logs = Arc::new(logs);
    info!(
        "[Kafka Server {broker_id}], loaded {} logs from {}",
        logs.logs().len(),
        settings
            .log_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );

    let endpoints: Vec<ProtoEndpoint> = settings
        .advertised_listeners
        .iter()
        .filter_map(|advertised| {
            let bound_port = bound
                .iter()
                .find(|(name, _, _)| *name == advertised.listener_name)
                .map_or(0, |(_, addr, _)| addr.port());
            let endpoint = settings.advertised_endpoint(&advertised.listener_name, bound_port)?;
            Some(ProtoEndpoint {
                listener: endpoint.listener_name,
                host: endpoint.host,
                port: i32::from(endpoint.port),
            })
        })
        .collect();
    let registration = Registration {
        broker_id,
        endpoints,
        rack: settings.broker_rack.clone().unwrap_or_default(),
        incarnation_id: uuid::Uuid::new_v4().to_string(),
        session_timeout_ms: settings.zookeeper_session_timeout_ms as i32,
    };
    let coordinators: Vec<String> = settings
        .zookeeper_connect
        .servers
        .iter()
        .map(ToString::to_string)
        .collect();
    let connect_timeout =
        Duration::from_millis(u64::from(settings.zookeeper_connection_timeout_ms));
    let link = CoordinatorLink::new(&coordinators, connect_timeout, registration)
        .map_err(|e| BrokerError::CoordinatorAddress(e.to_string()))?;
    let cluster_id = crate::meta::load(&settings.log_dirs, broker_id)?;
    let core = ReplicaManager::new(settings.clone(), logs.clone(), link.clone(), cluster_id);

    let (serving, serving_rx) = watch::channel(true);
    let mut servers = Vec::new();
    let mut listen_addrs = Vec::new();
    for (name, local, socket) in bound {
        info!("Awaiting socket connections on {local} (listener {name}).");
        listen_addrs.push((name.clone(), local));
        let service = BrokerService::new(core.clone(), settings.clone(), name.clone());
        let mut stop = serving_rx.clone();
        servers.push(tokio::spawn(async move {
            let result = Server::builder()
                .tcp_nodelay(true)
                .max_frame_size(protocol::HTTP2_MAX_FRAME_BYTES)
                .initial_stream_window_size(Some(8 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .add_service(
                    BrokerServer::new(service)
                        .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
                        .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES),
                )
                .serve_with_incoming_shutdown(accept_loop(socket), async move {
                    let _ = stop.wait_for(|serving| !serving).await;
                })
                .await;
            if let Err(err) = result {
                error!("Listener {name} on {local} stopped: {err}");
            }
        }));
    }

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        link.clone()
            .run_session(settings::heartbeat_interval(&settings)),
    ));
    let watch_core = core.clone();
    tasks.push(tokio::spawn(link.clone().run_watch(move |update| {
        tokio::task::block_in_place(|| watch_core.apply_metadata(&update))
    })));
    let mut unfenced = link.subscribe_unfenced();
    tasks.push(tokio::spawn(async move {
        if unfenced.wait_for(|u| *u).await.is_ok() {
            info!("[Kafka Server {broker_id}], started");
        }
    }));
    tasks.push(spawn_periodic(
        Duration::from_secs(1),
        core.clone(),
        |core| core.retry_failed_partitions(),
    ));
    tasks.push(spawn_periodic(
        settings::replica_lag_time_max(&settings) / 2,
        core.clone(),
        |core| core.shrink_lagging_isrs(),
    ));
    tasks.push(spawn_periodic(
        Duration::from_millis(settings.log_retention_check_interval_ms),
        core.clone(),
        |core| match core.logs().run_retention(now_ms()) {
            Ok(_) => {}
            Err(err) => error!("Log retention failed: {err}"),
        },
    ));
    tasks.push(spawn_periodic(
        Duration::from_millis(settings.replica_high_watermark_checkpoint_interval_ms),
        core.clone(),
        |core| {
            if let Err(err) = core.logs().checkpoint() {
                error!("Writing the log checkpoints failed: {err}");
            }
        },
    ));
    tasks.push(spawn_periodic(
        settings::flush_scheduler_interval(&settings),
        core.clone(),
        |core| {
            if let Err(err) = core.logs().flush_due(now_ms()) {
                error!("Flushing logs failed: {err}");
            }
        },
    ));

    Ok(RunningBroker {
        settings,
        listen_addrs,
        core,
        link,
        serving,
        servers,
        tasks,
    })
}

/// Owns the accept loop (so a later Kafka-wire listener can route each
/// connection by its first bytes) and keeps an accept error such as running
/// out of file descriptors from stopping the listener.
fn accept_loop(listener: TcpListener) -> impl Stream<Item = Result<TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((Ok(stream), listener));
                }
                Err(err) => {
                    warn!("Accepting a connection failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

fn spawn_periodic(
    interval: Duration,
    core: Arc<ReplicaManager>,
    work: impl Fn(&Arc<ReplicaManager>) + Send + 'static,
) -> JoinHandle<()> {
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            tokio::task::block_in_place(|| work(&core));
        }
    })
}

impl RunningBroker {
    /// The bound address of each listener (the real port when configured 0).
    pub fn listen_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listen_addrs
    }

    pub fn core(&self) -> &Arc<ReplicaManager> {
        &self.core
    }

    /// Resolves once the coordinator has registered and unfenced the broker.
    pub async fn wait_until_started(&self) {
        let mut unfenced = self.link.subscribe_unfenced();
        let _ = unfenced.wait_for(|u| *u).await;
    }

    /// Controlled shutdown: leadership moves away, serving stops, logs are
    /// flushed, checkpointed and marked clean.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        let broker_id = self.settings.broker_id;
        info!("[Kafka Server {broker_id}], shutting down");
        if self.settings.controlled_shutdown_enable && self.link.broker_epoch() >= 0 {
            match self.link.controlled_shutdown(Duration::from_secs(5)).await {
                Ok(response) if response.error_code == 0 => {
                    info!(
                        "[Kafka Server {broker_id}], controlled shutdown succeeded ({} partitions without another in-sync replica)",
                        response.remaining_leaderships.len()
                    );
                }
                Ok(response) => warn!(
                    "[Kafka Server {broker_id}], controlled shutdown refused: {}: {}",
                    protocol::ErrorCode::from_code(response.error_code),
                    response.error_message
                ),
                Err(status) => warn!(
                    "[Kafka Server {broker_id}], controlled shutdown failed, stopping anyway: {}",
                    status_reason(&status)
                ),
            }
        }
        self.core.stop_fetchers().await;
        self.link.stop();
        self.serving.send_replace(false);
        for server in self.servers {
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                warn!("[Kafka Server {broker_id}], a listener did not stop within 5 s");
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        // No append may reach a log after it is marked clean: stopping every
        // partition waits out appends in progress and refuses new ones (a
        // producer stream that outlived the listener's grace, say).
        self.core.stop_all_partitions();
        let logs = self.core.logs().clone();
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|e| BrokerError::Recovery(e.to_string()))??;
        info!("[Kafka Server {broker_id}], shut down completed");
        Ok(())
    }
}
