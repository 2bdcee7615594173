//! The gRPC adapter: converts `broker.v1` messages to the core's types and
//! back, and forwards admin calls to the coordinator. No broker logic lives
//! here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use protocol::ErrorCode;
use protocol::broker::broker_server::Broker;
use protocol::broker::{
    BrokerEndpoint, EpochEndOffset, FetchPartitionResponse, FetchRequest, FetchResponse,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, PartitionMetadata, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    TopicMetadata,
};
use protocol::coordinator::{
    AlterConfigsRequest, AlterConfigsResponse, CreatableTopic, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeTopicsRequest, DescribeTopicsResponse, ListTopicsRequest,
    ListTopicsResponse,
};
use protocol::image::MetadataImage;
use storage::TopicPartition;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::link::status_reason;
use crate::replica_manager::{self, Acks, ReplicaIdentity, ReplicaManager};
use crate::settings::Settings;

/// Produce requests of one stream appended but not yet answered; bounds the
/// memory a single producer connection can pin.
const MAX_IN_FLIGHT_PER_STREAM: usize = 64;

/// Upper bound on a fetch's long-poll wait, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// Kafka's defaults for fetch sizes a client leaves at 0.
const DEFAULT_FETCH_MAX_BYTES: usize = 52_428_800;
const DEFAULT_PARTITION_FETCH_MAX_BYTES: usize = 1_048_576;

/// The most any fetch answer carries, whatever the client asks: with one
/// batch over it, an answer stays well inside the gRPC message limit, and a
/// request cannot make the broker read gigabytes into memory.
const FETCH_MAX_BYTES_CAP: usize = 64 * 1024 * 1024;

/// The broker service as seen through one listener (Metadata answers with
/// that listener's endpoints).
#[derive(Debug, Clone)]
pub(crate) struct BrokerService {
    core: Arc<ReplicaManager>,
    settings: Arc<Settings>,
    listener: String,
}

impl BrokerService {
    pub(crate) fn new(
        core: Arc<ReplicaManager>,
        settings: Arc<Settings>,
        listener: String,
    ) -> Self {
        BrokerService {
            core,
            settings,
            listener,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn produce_to_core(request: ProduceRequest) -> replica_manager::ProduceRequest {
    replica_manager::ProduceRequest {
        acks: Acks::from_wire(request.acks),
        timeout: Duration::from_millis(request.timeout_ms.max(0) as u64),
        partitions: request
            .partitions
            .into_iter()
            .map(|p| replica_manager::ProducePartition {
                tp: TopicPartition {
                    topic: p.topic,
                    partition: p.partition,
                },
                records: p.records,
            })
            .collect(),
    }
}

fn produce_to_wire(
    correlation_id: i64,
    results: Vec<replica_manager::ProduceResult>,
) -> ProduceResponse {
    ProduceResponse {
        correlation_id,
        partitions: results
            .into_iter()
            .map(|r| {
                let (error_code, error_message) = error_fields(r.error.as_ref());
                ProducePartitionResponse {
                    topic: r.tp.topic,
                    partition: r.tp.partition,
                    error_code,
                    error_message,
                    base_offset: r.base_offset,
                    log_append_time_ms: r.log_append_time_ms,
                    log_start_offset: r.log_start_offset,
                }
            })
            .collect(),
    }
}

fn error_fields(error: Option<&crate::partition::PartitionError>) -> (i32, String) {
    match error {
        Some(e) => (e.code.code(), e.message.clone()),
        None => (0, String::new()),
    }
}

type ProduceStream = Pin<Box<dyn Stream<Item = Result<ProduceResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let request = request.into_inner();
        let correlation_id = request.correlation_id;
        let results = self.core.produce(produce_to_core(request), now_ms()).await;
        Ok(Response::new(produce_to_wire(correlation_id, results)))
    }

    type ProduceStreamStream = ProduceStream;

    async fn produce_stream(
        &self,
        request: Request<tonic::Streaming<ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT_PER_STREAM);
        let core = self.core.clone();
        tokio::spawn(async move {
            // Appends happen here, in arrival order; only the acks=all waits
            // overlap, and FuturesOrdered answers in request order.
            let mut pending = FuturesOrdered::new();
            let mut inbound_open = true;
            loop {
                tokio::select! {
                    biased;
                    Some(response) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    message = inbound.message(), if inbound_open && pending.len() < MAX_IN_FLIGHT_PER_STREAM => {
                        match message {
                            Ok(Some(request)) => {
                                let correlation_id = request.correlation_id;
                                let appended = core.append_produce(produce_to_core(request), now_ms());
                                pending.push_back(async move {
                                    produce_to_wire(correlation_id, appended.complete().await)
                                });
                            }
                            Ok(None) => inbound_open = false,
                            Err(_) => return,
                        }
                    }
                    else => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let request = request.into_inner();
        let core_request = replica_manager::FetchRequest {
            replica: (request.replica_id >= 0).then_some(ReplicaIdentity {
                replica_id: request.replica_id,
                broker_epoch: request.broker_epoch,
            }),
            max_wait: Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT),
            min_bytes: request.min_bytes.max(0) as usize,
            max_bytes: positive_or(request.max_bytes, DEFAULT_FETCH_MAX_BYTES)
                .min(FETCH_MAX_BYTES_CAP),
            partitions: request
                .partitions
                .into_iter()
                .map(|p| replica_manager::FetchPartition {
                    tp: TopicPartition {
                        topic: p.topic,
                        partition: p.partition,
                    },
                    topic_id: <[u8; 16]>::try_from(&p.topic_id[..]).ok(),
                    fetch_offset: p.fetch_offset,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    max_bytes: positive_or(
                        p.partition_max_bytes,
                        DEFAULT_PARTITION_FETCH_MAX_BYTES,
                    )
                    .min(FETCH_MAX_BYTES_CAP),
                })
                .collect(),
        };
        let results = self.core.fetch(core_request).await;
        let partitions = results
            .into_iter()
            .map(|r| {
                let (error_code, error_message) = error_fields(r.error.as_ref());
                let hint = r.leader_hint.unwrap_or(crate::partition::LeaderHint {
                    leader: -1,
                    leader_epoch: -1,
                });
                FetchPartitionResponse {
                    topic: r.tp.topic,
                    partition: r.tp.partition,
                    error_code,
                    error_message,
                    high_watermark: r.read.high_watermark,
                    log_start_offset: r.read.log_start_offset,
                    diverging_epoch: r
                        .read
                        .diverging_epoch
                        .map(|(epoch, end_offset)| EpochEndOffset { epoch, end_offset }),
                    current_leader: hint.leader,
                    current_leader_epoch: hint.leader_epoch,
                    records: r.read.records,
                }
            })
            .collect();
        Ok(Response::new(FetchResponse {
            error_code: 0,
            partitions,
        }))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        let from_consumer = request.replica_id < 0;
        let partitions = request
            .partitions
            .into_iter()
            .map(|p| {
                let tp = TopicPartition {
                    topic: p.topic,
                    partition: p.partition,
                };
                let result =
                    self.core
                        .list_offsets(&tp, p.timestamp, p.current_leader_epoch, from_consumer);
                match result {
                    Ok(found) => ListOffsetsPartitionResponse {
                        topic: tp.topic,
                        partition: tp.partition,
                        error_code: 0,
                        error_message: String::new(),
                        timestamp: found.timestamp,
                        offset: found.offset,
                        leader_epoch: found.leader_epoch,
                    },
                    Err(err) => ListOffsetsPartitionResponse {
                        topic: tp.topic,
                        partition: tp.partition,
                        error_code: err.code.code(),
                        error_message: err.message,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                    },
                }
            })
            .collect();
        Ok(Response::new(ListOffsetsResponse { partitions }))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let request = request.into_inner();
        let missing: Vec<String> = self.core.with_image(|image| {
            request
                .topics
                .iter()
                .filter(|t| !image.topics.contains_key(*t))
                .cloned()
                .collect()
        });
        let mut created = Vec::new();
        if !missing.is_empty()
            && request.allow_auto_topic_creation
            && self.settings.auto_create_topics_enable
        {
            created = self.auto_create(&missing).await;
        }
        let response = self
            .core
            .with_image(|image| self.build_metadata(image, &request.topics, &created));
        Ok(Response::new(response))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let mut request = request.into_inner();
        for topic in &mut request.topics {
            self.fill_topic_defaults(topic);
        }
        let mut client = self.core.link().client();
        client
            .create_topics(request)
            .await
            .map_err(coordinator_unavailable)
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let mut client = self.core.link().client();
        client
            .delete_topics(request.into_inner())
            .await
            .map_err(coordinator_unavailable)
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let mut client = self.core.link().client();
        client
            .create_partitions(request.into_inner())
            .await
            .map_err(coordinator_unavailable)
    }

    async fn alter_configs(
        &self,
        request: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        let mut client = self.core.link().client();
        client
            .alter_configs(request.into_inner())
            .await
            .map_err(coordinator_unavailable)
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let mut client = self.core.link().client();
        client
            .list_topics(request.into_inner())
            .await
            .map_err(coordinator_unavailable)
    }

    async fn describe_topics(
        &self,
        request: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsResponse>, Status> {
        let mut client = self.core.link().client();
        client
            .describe_topics(request.into_inner())
            .await
            .map_err(coordinator_unavailable)
    }
}

impl BrokerService {
    /// Kafka's CreateTopics through a broker: -1 means the broker's
    /// num.partitions / default.replication.factor.
    fn fill_topic_defaults(&self, topic: &mut CreatableTopic) {
        if topic.assignments.is_empty() {
            if topic.num_partitions < 0 {
                topic.num_partitions = self.settings.num_partitions;
            }
            if topic.replication_factor < 0 {
                topic.replication_factor = self.settings.default_replication_factor;
            }
        }
    }

    /// auto.create.topics.enable: creates the missing topics with the
    /// broker's defaults and returns the names created.
    async fn auto_create(&self, missing: &[String]) -> Vec<String> {
        let mut request = CreateTopicsRequest {
            topics: missing
                .iter()
                .map(|name| CreatableTopic {
                    name: name.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                })
                .collect(),
            validate_only: false,
        };
        for topic in &mut request.topics {
            self.fill_topic_defaults(topic);
        }
        let mut client = self.core.link().client();
        match client.create_topics(request).await {
            Ok(response) => response
                .into_inner()
                .topics
                .into_iter()
                .filter_map(|t| {
                    let code = ErrorCode::from_code(t.error_code);
                    if code.is_ok() || code == ErrorCode::TopicAlreadyExists {
                        if code.is_ok() {
                            info!(
                                "Auto-created topic {} ({} partitions)",
                                t.name, t.num_partitions
                            );
                        }
                        Some(t.name)
                    } else {
                        warn!(
                            "Auto-creation of topic {} failed: {code}: {}",
                            t.name, t.error_message
                        );
                        None
                    }
                })
                .collect(),
            Err(status) => {
                warn!(
                    "Auto-creation of topics {missing:?} failed: {}",
                    status_reason(&status)
                );
                Vec::new()
            }
        }
    }

    fn build_metadata(
        &self,
        image: &MetadataImage,
        requested: &[String],
        created: &[String],
    ) -> MetadataResponse {
        let live: Vec<i32> = image.live_broker_ids().collect();
        let brokers = image
            .brokers
            .values()
            .filter(|b| live.contains(&b.broker_id))
            .filter_map(|b| {
                let endpoint = b
                    .endpoints
                    .iter()
                    .find(|e| e.listener == self.listener)
                    .or_else(|| b.endpoints.first())?;
                Some(BrokerEndpoint {
                    broker_id: b.broker_id,
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    rack: b.rack.clone(),
                })
            })
            .collect();
        let names: Vec<&String> = if requested.is_empty() {
            image.topics.keys().collect()
        } else {
            requested.iter().collect()
        };
        let topics = names
            .into_iter()
            .map(|name| match image.topics.get(name) {
                Some(topic) => TopicMetadata {
                    name: name.clone(),
                    error_code: 0,
                    error_message: String::new(),
                    topic_id: topic.info.topic_id.clone(),
                    partitions: topic
                        .partitions
                        .values()
                        .map(|p| PartitionMetadata {
                            partition: p.partition,
                            error_code: if p.leader < 0 {
                                ErrorCode::LeaderNotAvailable.code()
                            } else {
                                0
                            },
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                            offline_replicas: p
                                .replicas
                                .iter()
                                .copied()
                                .filter(|r| !live.contains(r))
                                .collect(),
                        })
                        .collect(),
                },
                None => {
                    let code = if created.contains(name) {
                        ErrorCode::LeaderNotAvailable
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    };
                    TopicMetadata {
                        name: name.clone(),
                        error_code: code.code(),
                        error_message: if code == ErrorCode::LeaderNotAvailable {
                            format!("topic {name} is being created")
                        } else {
                            format!("topic {name} does not exist")
                        },
                        ..Default::default()
                    }
                }
            })
            .collect();
        MetadataResponse {
            brokers,
            topics,
            cluster_id: image.cluster_id.clone(),
            metadata_version: image.version,
        }
    }
}

fn positive_or(value: i32, default: usize) -> usize {
    if value > 0 { value as usize } else { default }
}

fn coordinator_unavailable(status: Status) -> Status {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            Status::unavailable(format!(
                "the coordinator could not be reached: {}",
                status_reason(&status)
            ))
        }
        _ => status,
    }
}
