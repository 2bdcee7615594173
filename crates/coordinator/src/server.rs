//! Starting and stopping the coordinator: recover the metadata log, start
//! the writer, accept connections (with ZooKeeper's per-address limit) and
//! hand them to tonic, and shut everything down in order.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use protocol::coordinator::coordinator_server::CoordinatorServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::transport::Server;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{info, warn};

use crate::metadata_log::{LogError, MetadataLog};
use crate::service::CoordinatorService;
use crate::settings::Settings;
use crate::writer::{ConfigValidator, Writer, WriterError};

/// Connections served at once, whatever `maxClientCnxns` says: each holds
/// a file descriptor and buffers.
pub const MAX_CONNECTIONS: usize = 10_000;

/// How long a stopping coordinator waits for open calls to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the coordinator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error("cannot read the listener's address: {0}")]
    Listener(#[source] io::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the metadata log could not be opened: {0}")]
    Startup(String),
}

/// Runs the coordinator on `listener` until `shutdown` completes (or a
/// metadata log write fails, which is returned as an error).
///
/// Acknowledged changes are durable when they are acknowledged, so stopping
/// has nothing to flush: it ends the streams, lets open calls finish (for
/// at most a few seconds) and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    run_with_config_validator(settings, listener, shutdown, crate::validate_topic_config).await
}

/// [`run`] with the check of topic configs given (tests use it).
pub async fn run_with_config_validator(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    validate_config: ConfigValidator,
) -> Result<(), CoordinatorError> {
    let local_addr = listener.local_addr().map_err(CoordinatorError::Listener)?;
    let (dir, log_dir) = (settings.data_dir.clone(), settings.data_log_dir.clone());
    let recovered = tokio::task::spawn_blocking(move || MetadataLog::open(&dir, &log_dir))
        .await
        .map_err(|e| CoordinatorError::Startup(e.to_string()))??;
    if recovered.created {
        info!(
            "Created a new cluster with id {} in {}",
            recovered.image.cluster_id,
            settings.data_dir.display()
        );
    }
    for cut in &recovered.truncated {
        warn!(
            "Truncated the metadata log {} after {} bytes, dropping {} bytes of an unfinished write ({})",
            cut.path.display(),
            cut.kept_bytes,
            cut.dropped_bytes,
            cut.reason
        );
    }
    let image = &recovered.image;
    info!(
        "Loaded metadata version {} of cluster {} ({} brokers, {} topics) from {}{}",
        image.version,
        image.cluster_id,
        image.brokers.len(),
        image.topics.len(),
        settings.data_dir.display(),
        recovered
            .snapshot_version
            .map_or(String::new(), |v| format!(
                " (snapshot at {v}, {} batches replayed)",
                recovered.replayed.len()
            ))
    );

    let settings = Arc::new(settings);
    let (writer, handle, commands) = Writer::new(
        Arc::clone(&settings),
        recovered.log,
        recovered.image,
        recovered.replayed,
        validate_config,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    // Turns true when the writer stops on its own (a failed log write).
    let (writer_done_tx, mut writer_done) = watch::channel(false);
    let writer_task = {
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let result = writer.run(commands, stop_rx).await;
            let _ = writer_done_tx.send(true);
            result
        })
    };

    let service = CoordinatorService::new(handle, stop_rx.clone());
    let grpc = CoordinatorServer::new(service)
        .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES);
    let incoming = accept_connections(listener, ConnectionLimits::new(settings.max_client_cnxns));
    info!("Coordinator serving on {local_addr}");

    let stop_signal = {
        let stop_tx = stop_tx.clone();
        async move {
            tokio::select! {
                () = shutdown => info!("Shutting down"),
                () = became_true(&mut writer_done) => {}
            }
            let _ = stop_tx.send(true);
        }
    };
    let serve = Server::builder()
        .max_frame_size(protocol::HTTP2_MAX_FRAME_BYTES)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(grpc)
        .serve_with_incoming_shutdown(incoming, stop_signal);
    tokio::pin!(serve);
    let mut stopping = stop_rx.clone();
    let served = tokio::select! {
        served = &mut serve => served,
        () = became_true(&mut stopping) => {
            // Streams end on the stop signal; calls get a little time.
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut serve).await {
                Ok(served) => served,
                Err(_) => {
                    warn!("Open calls did not finish within {DRAIN_TIMEOUT:?}; closing their connections");
                    Ok(())
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    writer_task
        .await
        .map_err(|e| WriterError::Task(e.to_string()))??;
    served?;
    info!("Coordinator stopped");
    Ok(())
}

/// Waits until the flag is true (or its sender is gone). The guard
/// `wait_for` returns is dropped here, so callers can await afterwards.
async fn became_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|&value| value).await;
}

/// Counts connections per client address (`maxClientCnxns`) and overall.
#[derive(Debug, Clone)]
struct ConnectionLimits {
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_address: usize,
    total: Arc<Semaphore>,
}

impl ConnectionLimits {
    fn new(max_per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            per_address: Arc::new(Mutex::new(HashMap::new())),
            max_per_address,
            total: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    /// A permit for one more connection from `peer`, or why not.
    fn admit(&self, peer: IpAddr) -> Result<ConnectionPermit, String> {
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            return Err(format!("Too many connections - max is {MAX_CONNECTIONS}"));
        };
        let mut counts = self
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(peer).or_insert(0);
        if self.max_per_address > 0 && *count >= self.max_per_address {
            return Err(format!(
                "Too many connections from /{peer} - max is {}",
                self.max_per_address
            ));
        }
        *count += 1;
        Ok(ConnectionPermit {
            limits: self.clone(),
            peer,
            _total: total,
        })
    }
}

/// Held by each open connection; dropping it frees its place.
#[derive(Debug)]
struct ConnectionPermit {
    limits: ConnectionLimits,
    peer: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// An accepted connection with its place in the limits.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    _permit: ConnectionPermit,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The accept loop, as the stream of connections tonic serves. Refused
/// connections are closed at once; accept errors (e.g. out of file
/// descriptors) are logged and retried after a pause rather than ending
/// the server.
fn accept_connections(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl futures::Stream<Item = Result<Connection, io::Error>> {
    futures::stream::unfold((listener, limits), |(listener, limits)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match limits.admit(peer.ip()) {
                    Ok(permit) => {
                        // Small request/response messages: do not wait to coalesce.
                        if let Err(e) = stream.set_nodelay(true) {
                            warn!("Could not set TCP_NODELAY for {peer}: {e}");
                        }
                        let connection = Connection {
                            stream,
                            _permit: permit,
                        };
                        return Some((Ok(connection), (listener, limits)));
                    }
                    Err(why) => warn!("{why}; closing the connection from {peer}"),
                },
                Err(e) => {
                    warn!("Error accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// The address a listener for `host:port` binds, as the log line shows it.
pub fn describe_bind(addr: SocketAddr) -> String {
    format!("{}/{}:{}", addr.ip(), addr.ip(), addr.port())
}
