//! Connections to brokers and the client's view of the cluster.
//!
//! [`Connections`] owns one tonic channel per broker (lazily connected,
//! reconnecting by itself) and knows the bootstrap list. [`Metadata`] keeps
//! the latest `Metadata` answer for the topics the client cares about and
//! refreshes it in a background task: when asked (after a retriable error
//! that invalidates metadata) and at least every `metadata.max.age.ms`.
//! Producer and consumer read snapshots from it and never block on it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::ErrorCode;
use protocol::broker::broker_client::BrokerClient;
use protocol::broker::{MetadataRequest, MetadataResponse};
use tokio::sync::{Notify, watch};
use tonic::transport::{Channel, Endpoint};

use crate::config::{CommonConfig, ServerAddress, display_list};
use crate::error::ClientError;

/// HTTP/2 flow-control windows sized for megabyte batches in flight.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// The longest pause between failed metadata refreshes.
const MAX_REFRESH_BACKOFF: Duration = Duration::from_secs(1);

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    /// Kafka's `topic-partition` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

impl Node {
    pub fn address(&self) -> ServerAddress {
        ServerAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

/// One topic of a metadata snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMetadata {
    /// Tells a topic from an earlier one of the same name (whose leader
    /// epochs started again from 0).
    pub(crate) topic_id: bytes::Bytes,
    /// The topic-level error, if the broker gave one (unknown topic, ...).
    pub(crate) error: Option<(ErrorCode, String)>,
    /// Sorted by partition index.
    pub(crate) partitions: Vec<PartitionInfo>,
    /// Partitions that have a leader the client can reach.
    pub(crate) available: Vec<i32>,
}

impl TopicMetadata {
    pub(crate) fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// A map keyed by topic name (or another small key) that a send looks up
/// per record. FNV, not SipHash: names are short and chosen by the
/// application, not an attacker, and SipHash of them was about 5% of the
/// producer's time per record.
pub(crate) type TopicMap<K, V> = HashMap<K, V, fnv::FnvBuildHasher>;

/// The cluster as of one `Metadata` answer.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSnapshot {
    /// Counts successful refreshes; 0 means "no answer yet".
    pub(crate) generation: u64,
    pub(crate) brokers: HashMap<i32, Node>,
    pub(crate) topics: TopicMap<String, TopicMetadata>,
}

impl ClusterSnapshot {
    fn empty() -> Self {
        ClusterSnapshot {
            generation: 0,
            brokers: HashMap::new(),
            topics: TopicMap::default(),
        }
    }

    /// The snapshot of a `Metadata` answer. A partition whose leader epoch
    /// is older than the one `previous` knows keeps its `previous` entry: a
    /// broker that has not caught up with the coordinator yet answers with
    /// stale leaders, and following one would move the partition back to a
    /// broker that no longer leads it (as Kafka's clients, KIP-320, never
    /// accept a lower leader epoch).
    fn from_response(
        generation: u64,
        response: MetadataResponse,
        previous: &ClusterSnapshot,
    ) -> Self {
        let brokers: HashMap<i32, Node> = response
            .brokers
            .into_iter()
            .filter_map(|b| {
                let node = Node {
                    id: b.broker_id,
                    host: b.host,
                    port: u16::try_from(b.port).ok()?,
                    rack: (!b.rack.is_empty()).then_some(b.rack),
                };
                Some((node.id, node))
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .map(|topic| {
                let error = ErrorCode::from_code(topic.error_code);
                let known = previous
                    .topics
                    .get(&topic.name)
                    .filter(|known| known.topic_id == topic.topic_id);
                let mut partitions: Vec<PartitionInfo> = topic
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        topic: topic.name.clone(),
                        partition: p.partition,
                        leader: (p.leader >= 0).then_some(p.leader),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas,
                        isr: p.isr,
                        offline_replicas: p.offline_replicas,
                    })
                    .map(|fresh| {
                        let stale = known
                            .and_then(|k| {
                                k.partitions
                                    .binary_search_by_key(&fresh.partition, |p| p.partition)
                                    .ok()
                                    .map(|i| &k.partitions[i])
                            })
                            .filter(|old| old.leader_epoch > fresh.leader_epoch);
                        stale.cloned().unwrap_or(fresh)
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                let available = partitions
                    .iter()
                    .filter(|p| p.leader.is_some_and(|leader| brokers.contains_key(&leader)))
                    .map(|p| p.partition)
                    .collect();
                let metadata = TopicMetadata {
                    topic_id: topic.topic_id,
                    error: (!error.is_ok()).then_some((error, topic.error_message)),
                    partitions,
                    available,
                };
                (topic.name, metadata)
            })
            .collect();
        ClusterSnapshot {
            generation,
            brokers,
            topics,
        }
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        let partitions = &self.topics.get(topic)?.partitions;
        partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .map(|i| &partitions[i])
    }

    /// The leader of a partition, if it has one whose endpoint is known.
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let info = self.partition(topic, partition)?;
        let leader = info.leader?;
        self.brokers
            .contains_key(&leader)
            .then_some((leader, info.leader_epoch))
    }
}

/// Channels to brokers, by id and by address.
#[derive(Debug)]
pub(crate) struct Connections {
    config: CommonConfig,
    channels: Mutex<HashMap<ServerAddress, Channel>>,
}

impl Connections {
    pub(crate) fn new(config: CommonConfig) -> Self {
        Connections {
            config,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &CommonConfig {
        &self.config
    }

    /// A lazily connecting channel to `address`, shared by every caller.
    /// tonic reconnects it on the next call after a failure.
    pub(crate) fn channel(&self, address: &ServerAddress) -> Result<Channel, ClientError> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = endpoint(address, self.config.connection_setup_timeout_ms)?.connect_lazy();
        channels.insert(address.clone(), channel.clone());
        Ok(channel)
    }

    /// A broker client on the shared channel to `address`.
    pub(crate) fn broker(
        &self,
        address: &ServerAddress,
    ) -> Result<BrokerClient<Channel>, ClientError> {
        Ok(broker_client(self.channel(address)?))
    }

    /// Asks for metadata: first any broker of `known` (the last snapshot),
    /// then each bootstrap server in turn, skipping those that cannot be
    /// reached.
    pub(crate) async fn fetch_metadata(
        &self,
        known: &[ServerAddress],
        request: MetadataRequest,
    ) -> Result<MetadataResponse, ClientError> {
        let mut last_error = None;
        let mut tried = Vec::new();
        for address in known.iter().chain(&self.config.bootstrap_servers) {
            if tried.contains(&address) {
                continue;
            }
            tried.push(address);
            let mut client = match self.broker(address) {
                Ok(client) => client,
                Err(err) => {
                    last_error = Some(err);
                    continue;
                }
            };
            let call = client.metadata(request.clone());
            match tokio::time::timeout(self.config.request_timeout(), call).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => {
                    tracing::debug!(%address, %status, "metadata request failed");
                    last_error = Some(ClientError::from_status(address, &status));
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
            servers: display_list(&self.config.bootstrap_servers),
            last_error: last_error
                .map_or_else(|| "no server configured".to_owned(), |e| e.to_string()),
        })
    }
}

/// The endpoint settings every channel of the client uses.
pub(crate) fn endpoint(
    address: &ServerAddress,
    connect_timeout_ms: u64,
) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(address.uri()).map_err(|e| ClientError::Connection {
        address: address.to_string(),
        message: e.to_string(),
    })?;
    // tonic's client builder does not expose the HTTP/2 max frame size; the
    // servers raise theirs (protocol::HTTP2_MAX_FRAME_BYTES), which is what
    // our large produce frames need.
    Ok(endpoint
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(connect_timeout_ms))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

pub(crate) fn broker_client(channel: Channel) -> BrokerClient<Channel> {
    BrokerClient::new(channel)
        .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
}

/// The metadata cache and its refresher task.
#[derive(Debug)]
pub(crate) struct Metadata {
    shared: Arc<MetadataShared>,
    refresher: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct MetadataShared {
    connections: Connections,
    allow_auto_topic_creation: bool,
    topics: Mutex<BTreeSet<String>>,
    snapshot: watch::Sender<Arc<ClusterSnapshot>>,
    update_requested: Notify,
    last_error: Mutex<Option<ClientError>>,
}

impl Drop for Metadata {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Metadata {
    /// Starts the cache; the first refresh runs at once.
    pub(crate) fn start(config: CommonConfig, allow_auto_topic_creation: bool) -> Self {
        let (snapshot, _) = watch::channel(Arc::new(ClusterSnapshot::empty()));
        let shared = Arc::new(MetadataShared {
            connections: Connections::new(config),
            allow_auto_topic_creation,
            topics: Mutex::new(BTreeSet::new()),
            snapshot,
            update_requested: Notify::new(),
            last_error: Mutex::new(None),
        });
        let refresher = tokio::spawn(refresh_loop(Arc::clone(&shared)));
        Metadata { shared, refresher }
    }

    pub(crate) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.shared.snapshot.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.shared.snapshot.subscribe()
    }

    /// Asks the refresher for a new snapshot as soon as it may.
    pub(crate) fn request_update(&self) {
        self.shared.update_requested.notify_one();
    }

    /// Adds topics the client needs metadata for; refreshes if any is new.
    pub(crate) fn add_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let mut added = false;
        {
            let mut known = lock(&self.shared.topics);
            for topic in topics {
                if !known.contains(topic) {
                    known.insert(topic.to_owned());
                    added = true;
                }
            }
        }
        if added {
            self.request_update();
        }
    }

    /// A broker client for `broker_id`, from the latest snapshot's endpoints.
    pub(crate) fn broker(
        &self,
        broker_id: i32,
    ) -> Result<(ServerAddress, BrokerClient<Channel>), ClientError> {
        let snapshot = self.snapshot();
        let node = snapshot
            .brokers
            .get(&broker_id)
            // Retriable: the broker left the metadata since the caller chose
            // it as a leader; a refresh names the new one.
            .ok_or_else(|| ClientError::Kafka {
                code: ErrorCode::LeaderNotAvailable,
                message: format!("broker {broker_id} is no longer in the cluster metadata"),
            })?;
        let address = node.address();
        let client = self.shared.connections.broker(&address)?;
        Ok((address, client))
    }

    /// Waits until `topic` has partitions in the metadata, until `deadline`.
    /// Fails at once on a topic error that retrying cannot fix.
    pub(crate) async fn await_topic(
        &self,
        topic: &str,
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<(Arc<ClusterSnapshot>, i32), ClientError> {
        self.add_topics([topic]);
        let mut updates = self.subscribe();
        loop {
            let snapshot = updates.borrow_and_update().clone();
            if let Some(metadata) = snapshot.topics.get(topic) {
                match &metadata.error {
                    None if !metadata.partitions.is_empty() => {
                        let count = metadata.partition_count();
                        return Ok((snapshot, count));
                    }
                    Some((code, message)) if !code.is_retriable() => {
                        return Err(ClientError::Kafka {
                            code: *code,
                            message: message.clone(),
                        });
                    }
                    _ => self.request_update(),
                }
            } else if snapshot.generation > 0 {
                self.request_update();
            }
            match tokio::time::timeout_at(deadline.into(), updates.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let mut message =
                        format!("Topic {topic} not present in metadata after {timeout_ms} ms.");
                    if let Some(err) = lock(&self.shared.last_error).as_ref() {
                        message.push_str(&format!(" Last metadata error: {err}"));
                    }
                    return Err(ClientError::TimedOut { message });
                }
            }
        }
    }

    /// Waits for the next successful refresh after the current one, or
    /// until `deadline`. Returns the error of the last failed refresh, if any.
    pub(crate) async fn await_update(&self, deadline: Instant) -> Result<(), ClientError> {
        let mut updates = self.subscribe();
        updates.borrow_and_update();
        self.request_update();
        match tokio::time::timeout_at(deadline.into(), updates.changed()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(lock(&self.shared.last_error).clone().unwrap_or_else(|| {
                ClientError::TimedOut {
                    message: "Timed out waiting for a metadata update".to_owned(),
                }
            })),
        }
    }
}

async fn refresh_loop(shared: Arc<MetadataShared>) {
    let config = shared.connections.config().clone();
    let max_age = Duration::from_millis(config.metadata_max_age_ms);
    let backoff = config.retry_backoff();
    let mut generation = 0u64;
    let mut last_success: Option<Instant> = None;
    let mut failures_in_a_row = 0u32;
    loop {
        // The first refresh runs at once; after that, on request or age.
        if let Some(at) = last_success {
            let _ =
                tokio::time::timeout_at((at + max_age).into(), shared.update_requested.notified())
                    .await;
        }
        let topics: Vec<String> = lock(&shared.topics).iter().cloned().collect();
        let known: Vec<ServerAddress> = shared
            .snapshot
            .borrow()
            .brokers
            .values()
            .map(Node::address)
            .collect();
        let request = MetadataRequest {
            topics,
            allow_auto_topic_creation: shared.allow_auto_topic_creation,
        };
        match shared.connections.fetch_metadata(&known, request).await {
            Ok(response) => {
                generation += 1;
                tracing::debug!(
                    generation,
                    brokers = response.brokers.len(),
                    topics = response.topics.len(),
                    "metadata refreshed"
                );
                *lock(&shared.last_error) = None;
                let previous = shared.snapshot.borrow().clone();
                shared
                    .snapshot
                    .send_replace(Arc::new(ClusterSnapshot::from_response(
                        generation, response, &previous,
                    )));
                last_success = Some(Instant::now());
                if failures_in_a_row > 0 {
                    tracing::info!(
                        "metadata refreshed again after {failures_in_a_row} failed attempts"
                    );
                }
                failures_in_a_row = 0;
            }
            Err(err) => {
                // One warning per outage, not one per attempt.
                if failures_in_a_row == 0 {
                    tracing::warn!("metadata refresh failed, retrying: {err}");
                } else {
                    tracing::debug!("metadata refresh failed again: {err}");
                }
                failures_in_a_row = failures_in_a_row.saturating_add(1);
                *lock(&shared.last_error) = Some(err);
                // Keep the request pending: retry after the backoff.
                shared.update_requested.notify_one();
            }
        }
        // At most one refresh per retry.backoff.ms, as Kafka's clients do;
        // while no server answers, back off exponentially up to
        // MAX_REFRESH_BACKOFF (Kafka's reconnect.backoff.max.ms).
        let pause = backoff
            .saturating_mul(1 << failures_in_a_row.saturating_sub(1).min(10))
            .min(MAX_REFRESH_BACKOFF.max(backoff));
        tokio::time::sleep(pause).await;
    }
}

/// Locks a mutex, recovering the data if another thread panicked with it:
/// every critical section here leaves the state consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use protocol::broker::{BrokerEndpoint, PartitionMetadata, TopicMetadata as WireTopic};

    use super::*;

    fn answer(topic_id: &'static [u8], leaders: &[(i32, i32)]) -> MetadataResponse {
        MetadataResponse {
            brokers: (0..3)
                .map(|id| BrokerEndpoint {
                    broker_id: id,
                    host: "127.0.0.1".into(),
                    port: 9092 + id,
                    rack: String::new(),
                })
                .collect(),
            topics: vec![WireTopic {
                name: "t".into(),
                topic_id: bytes::Bytes::from_static(topic_id),
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(partition, (leader, epoch))| PartitionMetadata {
                        partition: partition as i32,
                        leader: *leader,
                        leader_epoch: *epoch,
                        replicas: vec![0, 1, 2],
                        isr: vec![0, 1, 2],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_answer_never_moves_a_partition_back_to_an_older_leader() {
        // Under faults, a broker that has not yet seen an election answers
        // with the old leader; following it sends records to a broker that
        // no longer leads (or leads again later, under a new epoch).
        let first = ClusterSnapshot::from_response(
            1,
            answer(b"id-1", &[(1, 5), (2, 3)]),
            &ClusterSnapshot::empty(),
        );
        let stale = ClusterSnapshot::from_response(2, answer(b"id-1", &[(0, 4), (0, 4)]), &first);
        assert_eq!(stale.leader("t", 0), Some((1, 5)), "went back to epoch 4");
        assert_eq!(stale.leader("t", 1), Some((0, 4)), "a newer epoch is taken");
        assert_eq!(stale.generation, 2);
    }

    #[test]
    fn a_recreated_topic_starts_its_leader_epochs_again() {
        let old = ClusterSnapshot::from_response(
            1,
            answer(b"id-1", &[(1, 5)]),
            &ClusterSnapshot::empty(),
        );
        let recreated = ClusterSnapshot::from_response(2, answer(b"id-2", &[(2, 0)]), &old);
        assert_eq!(recreated.leader("t", 0), Some((2, 0)));
    }
}
