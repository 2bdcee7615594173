//! The admin client: topics and cluster description, the same API whether
//! it talks to brokers (which forward to the coordinator) or to the
//! coordinator itself (`--zookeeper`).
//!
//! Each call goes to the first configured server that answers; servers that
//! cannot be reached are skipped. Errors carry Kafka's code and the server's
//! own message, fit to be printed as they are.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use protocol::broker::MetadataRequest;
use protocol::coordinator::coordinator_client::CoordinatorClient;
use protocol::coordinator::{
    BrokerInfo, BrokerState, CreatableTopic, CreatePartitionsRequest, CreatePartitionsTopic,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeTopicsRequest,
    ListTopicsRequest, ReplicaAssignment, TopicResult,
};
use tonic::transport::Channel;

use crate::cluster::{Connections, broker_client};
use crate::config::{AdminConfig, AdminTarget, CommonConfig, ServerAddress, display_list};
use crate::error::ClientError;

/// A topic to create.
///
/// ```
/// use client::NewTopic;
///
/// let topic = NewTopic::new("test", 3, 1).with_config("retention.ms", "60000");
/// assert_eq!(topic.num_partitions, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// `None`: the broker's `num.partitions` (only through a broker).
    pub num_partitions: Option<i32>,
    /// `None`: the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    pub configs: BTreeMap<String, String>,
    /// Explicit placement, partition -> replicas (first = preferred
    /// leader); when set, the counts above must be `None`.
    pub replica_assignment: BTreeMap<i32, Vec<i32>>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i32) -> Self {
        NewTopic {
            name: name.into(),
            num_partitions: Some(num_partitions),
            replication_factor: Some(replication_factor),
            configs: BTreeMap::new(),
            replica_assignment: BTreeMap::new(),
        }
    }

    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// What the server created (or would create, with `validate_only`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: Bytes,
    pub num_partitions: i32,
    pub replication_factor: i32,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// `None` while offline.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: Bytes,
    /// Only the configs set on the topic.
    pub configs: BTreeMap<String, String>,
    /// Sorted by partition.
    pub partitions: Vec<PartitionDescription>,
}

impl TopicDescription {
    /// The replication factor: the replica count of the first partition.
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// A broker's standing in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    /// In session and eligible to lead.
    Active,
    /// Registered but out of session (dead, or not caught up yet).
    Fenced,
    /// In a controlled shutdown.
    ShuttingDown,
    Unknown,
}

/// One named endpoint of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    pub id: i32,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub status: BrokerStatus,
}

impl BrokerDescription {
    /// Whether the broker serves its replicas (active or shutting down).
    pub fn is_alive(&self) -> bool {
        matches!(
            self.status,
            BrokerStatus::Active | BrokerStatus::ShuttingDown
        )
    }
}

/// The answer to [`Admin::describe_topics`].
#[derive(Debug, Clone)]
pub struct TopicsDescription {
    /// The topics found, sorted by name.
    pub topics: Vec<TopicDescription>,
    /// Requested topics that could not be described (e.g. unknown), and why.
    pub errors: Vec<(String, ClientError)>,
    /// Every broker, so callers can tell live replicas from dead ones.
    pub brokers: Vec<BrokerDescription>,
}

impl TopicsDescription {
    /// The ids of the brokers that are alive.
    pub fn live_broker_ids(&self) -> Vec<i32> {
        self.brokers
            .iter()
            .filter(|b| b.is_alive())
            .map(|b| b.id)
            .collect()
    }
}

/// The answer to [`Admin::describe_cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub brokers: Vec<BrokerDescription>,
    /// The metadata version the answer reflects.
    pub metadata_version: i64,
}

/// The admin client.
///
/// ```no_run
/// # async fn demo() -> Result<(), client::ClientError> {
/// use client::{Admin, AdminConfig, NewTopic};
///
/// // `--bootstrap-server localhost:9092`; `AdminConfig::coordinator` for `--zookeeper`.
/// let admin = Admin::new(AdminConfig::brokers("localhost:9092")?);
/// let created = admin.create_topic(NewTopic::new("test", 1, 1)).await?;
/// println!("Created topic \"{}\".", created.name);
/// for name in admin.list_topics().await? {
///     println!("{name}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Admin {
    config: AdminConfig,
    connections: Connections,
}

impl Admin {
    /// An admin client; it connects on its first call.
    pub fn new(config: AdminConfig) -> Admin {
        let servers = match &config.target {
            AdminTarget::Brokers(servers) | AdminTarget::Coordinator(servers) => servers.clone(),
        };
        let common = CommonConfig {
            bootstrap_servers: servers,
            request_timeout_ms: config.request_timeout_ms,
            connection_setup_timeout_ms: config.connection_setup_timeout_ms,
            ..CommonConfig::default()
        };
        Admin {
            connections: Connections::new(common),
            config,
        }
    }

    pub fn config(&self) -> &AdminConfig {
        &self.config
    }

    fn servers(&self) -> &[ServerAddress] {
        match &self.config.target {
            AdminTarget::Brokers(servers) | AdminTarget::Coordinator(servers) => servers,
        }
    }

    fn to_coordinator(&self) -> bool {
        matches!(self.config.target, AdminTarget::Coordinator(_))
    }

    /// Runs `call` against the first server that answers. Transport
    /// failures move on to the next server; any other answer is final.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let mut last_error = None;
        for address in self.servers() {
            let channel = match self.connections.channel(address) {
                Ok(channel) => channel,
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            };
            match tokio::time::timeout(timeout, call(channel)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => {
                    let error = ClientError::from_status(address, &status);
                    if !is_transport_failure(&status) {
                        return Err(error);
                    }
                    tracing::debug!("{address} did not answer: {error}");
                    last_error = Some(error);
                }
                Err(_) => {
                    last_error = Some(ClientError::Rpc {
                        address: address.to_string(),
                        status: tonic::Code::DeadlineExceeded,
                        message: format!("no answer within {} ms", self.config.request_timeout_ms),
                    });
                }
            }
        }
        Err(ClientError::NoServerAvailable {
            servers: display_list(self.servers()),
            last_error: last_error
                .map_or_else(|| "no server configured".to_owned(), |e| e.to_string()),
        })
    }

    /// Creates topics; one result per topic, in the order given. The outer
    /// error means no server answered.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<(String, Result<CreatedTopic, ClientError>)>, ClientError> {
        let request = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|topic| CreatableTopic {
                    name: topic.name.clone(),
                    num_partitions: topic.num_partitions.unwrap_or(-1),
                    replication_factor: topic.replication_factor.unwrap_or(-1),
                    configs: topic.configs.clone().into_iter().collect(),
                    assignments: topic
                        .replica_assignment
                        .iter()
                        .map(|(partition, replicas)| ReplicaAssignment {
                            partition: *partition,
                            replicas: replicas.clone(),
                        })
                        .collect(),
                })
                .collect(),
            validate_only,
        };
        let response = if self.to_coordinator() {
            self.call(|channel| {
                let request = request.clone();
                async move { coordinator_client(channel).create_topics(request).await }
            })
            .await?
        } else {
            self.call(|channel| {
                let request = request.clone();
                async move { broker_client(channel).create_topics(request).await }
            })
            .await?
        };
        Ok(topics
            .iter()
            .map(|topic| {
                let result = match response.topics.iter().find(|r| r.name == topic.name) {
                    None => Err(missing_result(&topic.name)),
                    Some(result) => {
                        match ClientError::from_kafka(result.error_code, &result.error_message) {
                            Some(error) => Err(error),
                            None => Ok(CreatedTopic {
                                name: result.name.clone(),
                                topic_id: result.topic_id.clone(),
                                num_partitions: result.num_partitions,
                                replication_factor: result.replication_factor,
                            }),
                        }
                    }
                };
                (topic.name.clone(), result)
            })
            .collect())
    }

    /// Creates one topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<CreatedTopic, ClientError> {
        let name = topic.name.clone();
        self.create_topics(&[topic], false)
            .await?
            .into_iter()
            .next()
            .map_or_else(|| Err(missing_result(&name)), |(_, result)| result)
    }

    /// Deletes topics; one result per topic, in the order given.
    pub async fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let request = DeleteTopicsRequest {
            names: names.to_vec(),
        };
        let response = if self.to_coordinator() {
            self.call(|channel| {
                let request = request.clone();
                async move { coordinator_client(channel).delete_topics(request).await }
            })
            .await?
        } else {
            self.call(|channel| {
                let request = request.clone();
                async move { broker_client(channel).delete_topics(request).await }
            })
            .await?
        };
        Ok(per_topic_results(names, &response.topics))
    }

    /// Raises the partition count of topics to the given totals.
    pub async fn create_partitions(
        &self,
        new_counts: &[(String, i32)],
        validate_only: bool,
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let request = CreatePartitionsRequest {
            topics: new_counts
                .iter()
                .map(|(name, count)| CreatePartitionsTopic {
                    name: name.clone(),
                    count: *count,
                    assignments: Vec::new(),
                })
                .collect(),
            validate_only,
        };
        let response = if self.to_coordinator() {
            self.call(|channel| {
                let request = request.clone();
                async move { coordinator_client(channel).create_partitions(request).await }
            })
            .await?
        } else {
            self.call(|channel| {
                let request = request.clone();
                async move { broker_client(channel).create_partitions(request).await }
            })
            .await?
        };
        let names: Vec<String> = new_counts.iter().map(|(name, _)| name.clone()).collect();
        Ok(per_topic_results(&names, &response.topics))
    }

    /// Every topic name, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        let response = if self.to_coordinator() {
            self.call(|channel| async move {
                coordinator_client(channel)
                    .list_topics(ListTopicsRequest {})
                    .await
            })
            .await?
        } else {
            self.call(|channel| async move {
                broker_client(channel)
                    .list_topics(ListTopicsRequest {})
                    .await
            })
            .await?
        };
        let mut names = response.names;
        names.sort();
        Ok(names)
    }

    /// Describes the named topics (every topic if `names` is empty), with
    /// the cluster's brokers.
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<TopicsDescription, ClientError> {
        let request = DescribeTopicsRequest {
            names: names.to_vec(),
        };
        let response = if self.to_coordinator() {
            self.call(|channel| {
                let request = request.clone();
                async move { coordinator_client(channel).describe_topics(request).await }
            })
            .await?
        } else {
            self.call(|channel| {
                let request = request.clone();
                async move { broker_client(channel).describe_topics(request).await }
            })
            .await?
        };
        let mut topics = Vec::new();
        let mut errors = Vec::new();
        for topic in response.topics {
            if let Some(error) = ClientError::from_kafka(topic.error_code, &topic.error_message) {
                errors.push((topic.name, error));
                continue;
            }
            let info = topic.topic.unwrap_or_default();
            let mut partitions: Vec<PartitionDescription> = topic
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    leader: (p.leader >= 0).then_some(p.leader),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicDescription {
                name: topic.name,
                topic_id: info.topic_id,
                configs: info.configs.into_iter().collect(),
                partitions,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for name in names {
            let answered =
                topics.iter().any(|t| &t.name == name) || errors.iter().any(|(n, _)| n == name);
            if !answered {
                errors.push((name.clone(), missing_result(name)));
            }
        }
        Ok(TopicsDescription {
            topics,
            errors,
            brokers: response
                .brokers
                .into_iter()
                .map(broker_description)
                .collect(),
        })
    }

    /// The cluster id and brokers. Through a broker, this comes from its
    /// metadata, which lists only brokers that are alive.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        if self.to_coordinator() {
            let response = self
                .call(|channel| async move {
                    coordinator_client(channel)
                        .describe_cluster(DescribeClusterRequest {})
                        .await
                })
                .await?;
            let mut brokers: Vec<BrokerDescription> = response
                .brokers
                .into_iter()
                .map(broker_description)
                .collect();
            brokers.sort_by_key(|b| b.id);
            return Ok(ClusterDescription {
                cluster_id: response.cluster_id,
                brokers,
                metadata_version: response.metadata_version,
            });
        }
        let response = self
            .call(|channel| async move {
                broker_client(channel)
                    .metadata(MetadataRequest {
                        topics: Vec::new(),
                        allow_auto_topic_creation: false,
                    })
                    .await
            })
            .await?;
        let mut brokers: Vec<BrokerDescription> = response
            .brokers
            .into_iter()
            .map(|b| BrokerDescription {
                id: b.broker_id,
                endpoints: vec![BrokerEndpoint {
                    listener: String::new(),
                    host: b.host,
                    port: b.port,
                }],
                rack: (!b.rack.is_empty()).then_some(b.rack),
                status: BrokerStatus::Active,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id,
            brokers,
            metadata_version: response.metadata_version,
        })
    }
}

fn coordinator_client(channel: Channel) -> CoordinatorClient<Channel> {
    CoordinatorClient::new(channel)
        .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
}

/// Statuses that say the server was not reached (or went away), so another
/// server may answer.
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

fn missing_result(name: &str) -> ClientError {
    ClientError::Kafka {
        code: protocol::ErrorCode::UnknownServerError,
        message: format!("the server's answer has no result for topic '{name}'"),
    }
}

fn per_topic_results(
    names: &[String],
    results: &[TopicResult],
) -> Vec<(String, Result<(), ClientError>)> {
    names
        .iter()
        .map(|name| {
            let result = match results.iter().find(|r| &r.name == name) {
                None => Err(missing_result(name)),
                Some(r) => {
                    ClientError::from_kafka(r.error_code, &r.error_message).map_or(Ok(()), Err)
                }
            };
            (name.clone(), result)
        })
        .collect()
}

fn broker_description(info: BrokerInfo) -> BrokerDescription {
    let status = match BrokerState::try_from(info.state) {
        Ok(BrokerState::Active) => BrokerStatus::Active,
        Ok(BrokerState::Fenced) => BrokerStatus::Fenced,
        Ok(BrokerState::ShuttingDown) => BrokerStatus::ShuttingDown,
        _ => BrokerStatus::Unknown,
    };
    BrokerDescription {
        id: info.broker_id,
        endpoints: info
            .endpoints
            .into_iter()
            .map(|e| BrokerEndpoint {
                listener: e.listener,
                host: e.host,
                port: e.port,
            })
            .collect(),
        rack: (!info.rack.is_empty()).then_some(info.rack),
        status,
    }
}
