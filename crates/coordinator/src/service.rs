//! The gRPC adapter: turns `coordinator.v1` calls into writer commands and
//! the writer's answers into responses. No decisions are made here.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use protocol::coordinator::coordinator_server::Coordinator;
use protocol::coordinator::{
    AlterConfigsRequest, AlterConfigsResponse, AlterPartitionRequest, AlterPartitionResponse,
    ControlledShutdownRequest, ControlledShutdownResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicsRequest,
    DescribeTopicsResponse, HeartbeatRequest, HeartbeatResponse, ListTopicsRequest,
    ListTopicsResponse, MetadataUpdate, RegisterBrokerRequest, RegisterBrokerResponse,
    WatchMetadataRequest,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::controller::Malformed;
use crate::sessions::StreamId;
use crate::writer::{Command, Stopped, WriterHandle};

/// Responses buffered per stream before the sender waits for the client.
const STREAM_BUFFER: usize = 16;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `coordinator.v1.Coordinator` service.
#[derive(Debug, Clone)]
pub(crate) struct CoordinatorService {
    writer: WriterHandle,
    /// Turns true when the coordinator stops: long-lived streams end.
    stop: watch::Receiver<bool>,
    next_stream: Arc<AtomicU64>,
}

impl CoordinatorService {
    pub(crate) fn new(writer: WriterHandle, stop: watch::Receiver<bool>) -> CoordinatorService {
        CoordinatorService {
            writer,
            stop,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }
}

fn unavailable(_: Stopped) -> Status {
    Status::unavailable("the coordinator is shutting down")
}

fn invalid(malformed: Malformed) -> Status {
    Status::invalid_argument(malformed.0)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone: stopped as well.
    let _ = stop.wait_for(|&stopped| stopped).await;
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register_broker(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .writer
            .call(|reply| Command::RegisterBroker(request, reply))
            .await
            .map_err(unavailable)?;
        answer.map(Response::new).map_err(invalid)
    }

    type BrokerSessionStream = ResponseStream<HeartbeatResponse>;

    async fn broker_session(
        &self,
        request: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        let inbound = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (responses, outbound) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(serve_session(
            self.writer.clone(),
            self.stop.clone(),
            stream,
            inbound,
            responses,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }

    async fn controlled_shutdown(
        &self,
        request: Request<ControlledShutdownRequest>,
    ) -> Result<Response<ControlledShutdownResponse>, Status> {
        let request = request.into_inner();
        self.writer
            .call(|reply| Command::ControlledShutdown(request, reply))
            .await
            .map(Response::new)
            .map_err(unavailable)
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .writer
            .call(|reply| Command::CreateTopics(request, reply))
            .await
            .map_err(unavailable)?;
        answer.map(Response::new).map_err(invalid)
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .writer
            .call(|reply| Command::DeleteTopics(request, reply))
            .await
            .map_err(unavailable)?;
        answer.map(Response::new).map_err(invalid)
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .writer
            .call(|reply| Command::CreatePartitions(request, reply))
            .await
            .map_err(unavailable)?;
        answer.map(Response::new).map_err(invalid)
    }

    async fn alter_configs(
        &self,
        request: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .writer
            .call(|reply| Command::AlterConfigs(request, reply))
            .await
            .map_err(unavailable)?;
        answer.map(Response::new).map_err(invalid)
    }

    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        self.writer
            .call(Command::ListTopics)
            .await
            .map(Response::new)
            .map_err(unavailable)
    }

    async fn describe_topics(
        &self,
        request: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsResponse>, Status> {
        let request = request.into_inner();
        self.writer
            .call(|reply| Command::DescribeTopics(request, reply))
            .await
            .map(Response::new)
            .map_err(unavailable)
    }

    async fn describe_cluster(
        &self,
        _: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        self.writer
            .call(Command::DescribeCluster)
            .await
            .map(Response::new)
            .map_err(unavailable)
    }

    async fn alter_partition(
        &self,
        request: Request<AlterPartitionRequest>,
    ) -> Result<Response<AlterPartitionResponse>, Status> {
        let request = request.into_inner();
        self.writer
            .call(|reply| Command::AlterPartition(request, reply))
            .await
            .map(Response::new)
            .map_err(unavailable)
    }

    type WatchMetadataStream = ResponseStream<MetadataUpdate>;

    async fn watch_metadata(
        &self,
        request: Request<WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        let from_version = request.into_inner().from_version;
        if from_version < -1 {
            return Err(Status::invalid_argument(format!(
                "from_version {from_version} is invalid: a version is -1 (snapshot) or >= 0"
            )));
        }
        let (updates, outbound) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(serve_watch(
            self.writer.clone(),
            self.stop.clone(),
            from_version,
            updates,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

/// Relays one heartbeat stream to the writer. When it ends (the broker
/// closed it, or its connection died), the writer is told, so that the
/// session lapses after the grace unless a new stream takes over.
async fn serve_session(
    writer: WriterHandle,
    stop: watch::Receiver<bool>,
    stream: StreamId,
    mut inbound: Streaming<HeartbeatRequest>,
    responses: mpsc::Sender<Result<HeartbeatResponse, Status>>,
) {
    // The (broker id, epoch) this stream heartbeats for.
    let mut bound: Option<(i32, i64)> = None;
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = responses.closed() => break,
            () = stopped(stop.clone()) => break,
        };
        let Ok(Some(heartbeat)) = message else {
            break;
        };
        let key = (heartbeat.broker_id, heartbeat.broker_epoch);
        if let Some(old) = bound.filter(|&old| old != key) {
            let closed = Command::StreamClosed {
                broker_id: old.0,
                broker_epoch: old.1,
                stream,
            };
            if writer.tell(closed).await.is_err() {
                return;
            }
        }
        bound = Some(key);
        let Ok(response) = writer
            .call(|reply| Command::Heartbeat(heartbeat, stream, reply))
            .await
        else {
            let _ = responses.send(Err(unavailable(Stopped))).await;
            return;
        };
        if responses.send(Ok(response)).await.is_err() {
            break;
        }
    }
    if let Some((broker_id, broker_epoch)) = bound {
        // If the writer is gone there is no session left to end.
        let _ = writer
            .tell(Command::StreamClosed {
                broker_id,
                broker_epoch,
                stream,
            })
            .await;
    }
}

/// Feeds one watcher: the backlog the writer hands out, then every update
/// as it is published. A watcher that falls behind the broadcast buffer
/// starts over from the last version it got (deltas if still kept, else a
/// snapshot), so a slow watcher costs bounded memory.
async fn serve_watch(
    writer: WriterHandle,
    stop: watch::Receiver<bool>,
    from_version: i64,
    out: mpsc::Sender<Result<MetadataUpdate, Status>>,
) {
    let mut version = from_version;
    loop {
        let Ok(start) = writer.call(|reply| Command::Watch(version, reply)).await else {
            let _ = out.send(Err(unavailable(Stopped))).await;
            return;
        };
        for update in start.backlog {
            if !update.snapshot && update.version <= version {
                continue;
            }
            version = update.version;
            if out.send(Ok(MetadataUpdate::clone(&update))).await.is_err() {
                return;
            }
        }
        let mut updates = start.updates;
        loop {
            let received = tokio::select! {
                received = updates.recv() => received,
                () = out.closed() => return,
                () = stopped(stop.clone()) => return,
            };
            match received {
                Ok(update) if update.version <= version => {}
                Ok(update) => {
                    version = update.version;
                    if out.send(Ok(MetadataUpdate::clone(&update))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
