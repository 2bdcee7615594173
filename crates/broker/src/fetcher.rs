//! Follower replication: one fetcher task per source broker, pulling every
//! partition this broker follows from that leader with long-poll fetches.
//!
//! Each fetch carries the follower's log end offset and the epoch of its
//! last batch; the leader answers with records, or with the end of an epoch
//! where the follower's history diverged, and the follower truncates there
//! before fetching on. A partition moves between fetchers when its leader
//! changes; a fetch in flight is abandoned when the set of partitions
//! changes, so a new follower starts within a round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use protocol::ErrorCode;
use protocol::broker::broker_client::BrokerClient;
use protocol::broker::{FetchPartition as WireFetchPartition, FetchRequest as WireFetchRequest};
use storage::TopicPartition;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::link::{CoordinatorLink, status_reason};
use crate::partition::{FetchTarget, Partition};
use crate::replica_manager::ReplicaManager;
use crate::settings::Settings;

/// How long a partition waits before its next fetch after an error that
/// only new metadata can resolve (NOT_LEADER_OR_FOLLOWER and the like).
const PARTITION_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Kafka's replica.fetch.response.max.bytes default: the most one follower
/// fetch brings back over all its partitions.
const REPLICA_FETCH_RESPONSE_MAX_BYTES: i32 = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Assigned {
    partition: Arc<Partition>,
    leader_epoch: i32,
    delayed_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct FetcherShared {
    partitions: Mutex<HashMap<TopicPartition, Assigned>>,
    /// Woken when the partition set changes or the fetcher must stop.
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Fetcher {
    shared: Arc<FetcherShared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct FetcherManager {
    /// Set by `shutdown`: no fetcher starts after it.
    closed: std::sync::atomic::AtomicBool,
    settings: Arc<Settings>,
    link: Arc<CoordinatorLink>,
    manager: Weak<ReplicaManager>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherManager {
    pub(crate) fn new(
        settings: Arc<Settings>,
        link: Arc<CoordinatorLink>,
        manager: Weak<ReplicaManager>,
    ) -> FetcherManager {
        FetcherManager {
            closed: std::sync::atomic::AtomicBool::new(false),
            settings,
            link,
            manager,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Fetcher>> {
        self.fetchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches `partition` from `target.leader` from now on.
    pub(crate) fn assign(&self, partition: Arc<Partition>, target: FetchTarget) {
        let tp = partition.tp.clone();
        let mut fetchers = self.lock();
        // A leadership change applied during shutdown must not start a
        // fetcher that would outlive the logs.
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        for (leader, fetcher) in fetchers.iter() {
            if *leader != target.leader && remove_from(&fetcher.shared, &tp) {
                fetcher.shared.wake.notify_one();
            }
        }
        let fetcher = fetchers.entry(target.leader).or_insert_with(|| {
            let shared = Arc::new(FetcherShared::default());
            let task = tokio::spawn(run_fetcher(
                target.leader,
                shared.clone(),
                self.settings.clone(),
                self.link.clone(),
                self.manager.clone(),
            ));
            Fetcher { shared, task }
        });
        lock_partitions(&fetcher.shared).insert(
            tp,
            Assigned {
                partition,
                leader_epoch: target.leader_epoch,
                delayed_until: None,
            },
        );
        fetcher.shared.wake.notify_one();
    }

    /// Stops fetching `tp` from anyone.
    pub(crate) fn remove(&self, tp: &TopicPartition) {
        for fetcher in self.lock().values() {
            if remove_from(&fetcher.shared, tp) {
                fetcher.shared.wake.notify_one();
            }
        }
    }

    /// A broker's endpoint may have changed (it re-registered): every fetcher
    /// resolves its leader's address again before its next fetch.
    pub(crate) fn refresh_endpoints(&self) {
        for fetcher in self.lock().values() {
            fetcher.shared.wake.notify_one();
        }
    }

    pub(crate) async fn shutdown(&self) {
        let fetchers: Vec<Fetcher> = {
            let mut fetchers = self.lock();
            self.closed
                .store(true, std::sync::atomic::Ordering::Release);
            fetchers.drain().map(|(_, f)| f).collect()
        };
        for fetcher in &fetchers {
            fetcher
                .shared
                .stopped
                .store(true, std::sync::atomic::Ordering::Release);
            fetcher.shared.wake.notify_one();
        }
        for fetcher in fetchers {
            let _ = fetcher.task.await;
        }
    }
}

fn lock_partitions(
    shared: &FetcherShared,
) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Assigned>> {
    shared.partitions.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove_from(shared: &FetcherShared, tp: &TopicPartition) -> bool {
    lock_partitions(shared).remove(tp).is_some()
}

async fn run_fetcher(
    leader: i32,
    shared: Arc<FetcherShared>,
    settings: Arc<Settings>,
    link: Arc<CoordinatorLink>,
    manager: Weak<ReplicaManager>,
) {
    let mut connection: Option<(String, BrokerClient<Channel>)> = None;
    let fetch_backoff = Duration::from_millis(u64::from(settings.replica_fetch_backoff_ms));
    let mut reported_failure = false;
    loop {
        if shared.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let assigned: Vec<(TopicPartition, Assigned)> = lock_partitions(&shared)
            .iter()
            .map(|(tp, a)| (tp.clone(), a.clone()))
            .collect();
        let ready: Vec<&(TopicPartition, Assigned)> = assigned
            .iter()
            .filter(|(_, a)| a.delayed_until.is_none_or(|t| t <= now))
            .collect();
        if ready.is_empty() {
            let next = assigned.iter().filter_map(|(_, a)| a.delayed_until).min();
            wait_for_wake(&shared, next).await;
            continue;
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let address = manager.with_image(|image| {
            image.brokers.get(&leader).and_then(|b| {
                b.endpoints
                    .iter()
                    .find(|e| e.listener == settings.inter_broker_listener_name)
                    .or_else(|| b.endpoints.first())
                    .map(|e| format!("{}:{}", e.host, e.port))
            })
        });
        drop(manager);
        let Some(address) = address else {
            debug!("No endpoint known for leader broker {leader}; waiting for metadata");
            wait_for_wake(&shared, Some(Instant::now() + fetch_backoff)).await;
            continue;
        };
        let client = match &connection {
            Some((current, client)) if *current == address => client.clone(),
            _ => match connect(&address) {
                Ok(client) => {
                    connection = Some((address.clone(), client.clone()));
                    client
                }
                Err(err) => {
                    warn!("Invalid endpoint {address} for broker {leader}: {err}");
                    wait_for_wake(&shared, Some(Instant::now() + fetch_backoff)).await;
                    continue;
                }
            },
        };

        let request = WireFetchRequest {
            replica_id: settings.broker_id,
            broker_epoch: link.broker_epoch(),
            max_wait_ms: settings.replica_fetch_wait_max_ms as i32,
            min_bytes: settings.replica_fetch_min_bytes as i32,
            max_bytes: REPLICA_FETCH_RESPONSE_MAX_BYTES,
            partitions: ready
                .iter()
                .map(|(tp, a)| {
                    let (fetch_offset, last_fetched_epoch) = a.partition.follower_fetch_position();
                    WireFetchPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        fetch_offset,
                        current_leader_epoch: a.leader_epoch,
                        last_fetched_epoch,
                        partition_max_bytes: settings.replica_fetch_max_bytes as i32,
                        topic_id: bytes::Bytes::copy_from_slice(&a.partition.log.topic_id()),
                    }
                })
                .collect(),
        };
        let sent_epochs: HashMap<TopicPartition, i32> = ready
            .iter()
            .map(|(tp, a)| (tp.clone(), a.leader_epoch))
            .collect();
        let mut call_client = client.clone();
        let response = tokio::select! {
            response = call_client.fetch(request) => response,
            // The partition set changed: rebuild the request at once.
            () = shared.wake.notified() => continue,
        };
        let response = match response {
            Ok(response) => {
                if reported_failure {
                    info!("Fetching from broker {leader} at {address} again");
                    reported_failure = false;
                }
                response.into_inner()
            }
            Err(status) => {
                if !reported_failure {
                    warn!(
                        "Fetch from broker {leader} at {address} failed: {}",
                        status_reason(&status)
                    );
                    reported_failure = true;
                }
                wait_for_wake(&shared, Some(Instant::now() + fetch_backoff)).await;
                continue;
            }
        };
        for part in response.partitions {
            let tp = TopicPartition {
                topic: part.topic,
                partition: part.partition,
            };
            let current = lock_partitions(&shared).get(&tp).cloned();
            let Some(assigned) = current else { continue };
            if sent_epochs.get(&tp) != Some(&assigned.leader_epoch) {
                continue;
            }
            let partition = &assigned.partition;
            let epoch = assigned.leader_epoch;
            let code = ErrorCode::from_code(part.error_code);
            let outcome = match code {
                ErrorCode::None => match part.diverging_epoch {
                    Some(diverging) if diverging.epoch >= 0 || diverging.end_offset >= 0 => {
                        truncate_diverged(partition, epoch, diverging.epoch, diverging.end_offset)
                    }
                    _ => partition
                        .append_as_follower(
                            epoch,
                            &part.records,
                            part.high_watermark,
                            part.log_start_offset,
                        )
                        .map(drop)
                        .map_err(|e| e.to_string()),
                },
                ErrorCode::OffsetOutOfRange => {
                    handle_out_of_range(partition, epoch, part.log_start_offset)
                }
                other => {
                    debug!(
                        "Fetch of {tp} from broker {leader} answered {other}: {}",
                        part.error_message
                    );
                    delay(&shared, &tp, PARTITION_ERROR_BACKOFF);
                    Ok(())
                }
            };
            if let Err(err) = outcome {
                warn!("Replicating {tp} from broker {leader} failed: {err}");
                delay(&shared, &tp, fetch_backoff);
            }
        }
    }
}

/// Truncates a follower whose log diverged from the leader's: to the
/// leader's end offset of the epoch, or lower if this log's own last batch
/// of that epoch (or of the latest epoch below it) ends earlier. The next
/// fetch checks again, so a deeper divergence takes more rounds.
fn truncate_diverged(
    partition: &Partition,
    leader_epoch: i32,
    epoch: i32,
    leader_end_offset: i64,
) -> Result<(), String> {
    let log = &partition.log;
    let local_end = match log.end_offset_for_epoch(epoch) {
        Some((_, end_offset)) => end_offset,
        None => log.log_end_offset(),
    };
    let target = leader_end_offset.min(local_end).max(0);
    let before = log.log_end_offset();
    let Some(after) = partition
        .truncate_to(leader_epoch, target)
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if after < before {
        info!(
            "Truncated {} from {before} to {after}: its log diverged from the leader's at epoch {epoch}",
            partition.tp
        );
    }
    Ok(())
}

/// The fetch offset is outside the leader's log: behind its start (retention
/// deleted what this follower lacks) or, without epoch history, ahead of it.
fn handle_out_of_range(
    partition: &Partition,
    leader_epoch: i32,
    leader_log_start_offset: i64,
) -> Result<(), String> {
    let log = &partition.log;
    if log.log_end_offset() < leader_log_start_offset {
        info!(
            "{} is behind the leader's log start offset {leader_log_start_offset}; restarting the log there",
            partition.tp
        );
        partition
            .truncate_fully_and_start_at(leader_epoch, leader_log_start_offset)
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        let high_watermark = log.high_watermark();
        info!(
            "{} is ahead of its leader; truncating to the high watermark {high_watermark}",
            partition.tp
        );
        partition
            .truncate_to(leader_epoch, high_watermark)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

fn delay(shared: &FetcherShared, tp: &TopicPartition, backoff: Duration) {
    if let Some(assigned) = lock_partitions(shared).get_mut(tp) {
        assigned.delayed_until = Some(Instant::now() + backoff);
    }
}

async fn wait_for_wake(shared: &FetcherShared, until: Option<Instant>) {
    match until {
        Some(deadline) => {
            let _ = tokio::time::timeout_at(deadline, shared.wake.notified()).await;
        }
        None => shared.wake.notified().await,
    }
}

fn connect(address: &str) -> Result<BrokerClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_lazy();
    Ok(BrokerClient::new(channel)
        .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES))
}
