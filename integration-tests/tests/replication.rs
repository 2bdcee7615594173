//! Replication across three real broker processes: acks=all, ISR changes,
//! failover after kill -9, min.insync.replicas, and divergent logs of a dead
//! leader truncated when it returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use integration_tests::{Cluster, ClusterSpec, batches, grpc, wait_until};
use protocol::ErrorCode;
use protocol::broker::broker_client::BrokerClient;
use protocol::broker::{
    FetchPartition, FetchRequest, MetadataRequest, PartitionMetadata, ProducePartitionData,
    ProduceRequest,
};
use protocol::coordinator::{CreatableTopic, CreateTopicsRequest};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// A small client over raw gRPC: finds leaders through Metadata from any
/// live broker and talks to them.
struct Client {
    rt: Runtime,
    brokers: BTreeMap<i32, BrokerClient<Channel>>,
}

impl Client {
    fn new(cluster: &Cluster) -> Result<Client> {
        let rt = Runtime::new()?;
        let mut brokers = BTreeMap::new();
        {
            let _guard = rt.enter();
            for id in cluster.broker_ids() {
                let port = cluster.broker_port(id).ok_or_else(|| anyhow!("no port"))?;
                brokers.insert(id, grpc::broker(&format!("127.0.0.1:{port}"))?);
            }
        }
        Ok(Client { rt, brokers })
    }

    /// The partition's metadata as the first answering broker other than
    /// `avoid` reports it.
    fn partition(&mut self, topic: &str, avoid: Option<i32>) -> Option<PartitionMetadata> {
        for (id, broker) in &mut self.brokers {
            if Some(*id) == avoid {
                continue;
            }
            let Ok(response) = self.rt.block_on(broker.metadata(MetadataRequest {
                topics: vec![topic.into()],
                allow_auto_topic_creation: false,
            })) else {
                continue;
            };
            return response
                .into_inner()
                .topics
                .into_iter()
                .next()
                .and_then(|t| t.partitions.into_iter().next());
        }
        None
    }

    fn create_topic(&mut self, name: &str, rf: i32, configs: &[(&str, &str)]) -> Result<()> {
        let broker = self
            .brokers
            .values_mut()
            .next()
            .ok_or_else(|| anyhow!("no broker"))?;
        let response = self.rt.block_on(broker.create_topics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: 1,
                replication_factor: rf,
                configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            }],
            validate_only: false,
        }))?;
        let result = &response.get_ref().topics[0];
        ensure!(
            result.error_code == 0,
            "create {name}: {}",
            result.error_message
        );
        let n = rf as usize;
        wait_until(
            &format!("{name} has a leader and a full ISR"),
            Duration::from_secs(30),
            || {
                self.partition(name, None)
                    .is_some_and(|p| p.leader >= 0 && p.isr.len() == n)
            },
        )
    }

    fn produce(
        &mut self,
        leader: i32,
        topic: &str,
        acks: i32,
        values: &[String],
    ) -> Result<(ErrorCode, String)> {
        let broker = self
            .brokers
            .get_mut(&leader)
            .ok_or_else(|| anyhow!("no broker {leader}"))?;
        let response = self.rt.block_on(broker.produce(ProduceRequest {
            correlation_id: 0,
            acks,
            timeout_ms: 10_000,
            partitions: vec![ProducePartitionData {
                topic: topic.into(),
                partition: 0,
                records: batches::of(values),
            }],
        }))?;
        let p = &response.get_ref().partitions[0];
        Ok((ErrorCode::from_code(p.error_code), p.error_message.clone()))
    }

    /// Produces with acks=all to whoever leads, following leader changes.
    fn produce_acked(&mut self, topic: &str, values: &[String], avoid: Option<i32>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = self.partition(topic, avoid)
                && p.leader >= 0
                && Some(p.leader) != avoid
                && let Ok((ErrorCode::None, _)) = self.produce(p.leader, topic, -1, values)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no acks=all produce to {topic} succeeded in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn read_all(&mut self, broker: i32, topic: &str) -> Result<Vec<String>> {
        let client = self
            .brokers
            .get_mut(&broker)
            .ok_or_else(|| anyhow!("no broker {broker}"))?;
        let mut offset = 0;
        let mut values = Vec::new();
        loop {
            let response = self.rt.block_on(client.fetch(FetchRequest {
                replica_id: -1,
                broker_epoch: -1,
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition: 0,
                    fetch_offset: offset,
                    current_leader_epoch: -1,
                    last_fetched_epoch: -1,
                    partition_max_bytes: 1 << 20,
                    topic_id: Default::default(),
                }],
            }))?;
            let p = &response.get_ref().partitions[0];
            ensure!(
                p.error_code == 0,
                "fetch from {broker}: {}",
                p.error_message
            );
            let got = batches::values(&p.records);
            if got.is_empty() {
                return Ok(values);
            }
            offset += got.len() as i64;
            values.extend(got);
            if offset >= p.high_watermark {
                return Ok(values);
            }
        }
    }
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn three_brokers(extra: &[(&str, &str)]) -> Result<Cluster> {
    let mut spec = ClusterSpec::brokers(3)
        // Fast failure detection for tests; the grace is the coordinator's.
        .broker_property("zookeeper.session.timeout.ms", "6000");
    for (k, v) in extra {
        spec = spec.broker_property(k, v);
    }
    Cluster::start_spec(&spec)
}

#[test]
fn acks_all_replicates_to_every_replica_and_survives_leader_kill() -> Result<()> {
    let mut cluster = three_brokers(&[])?;
    let mut client = Client::new(&cluster)?;
    client.create_topic("replicated", 3, &[("min.insync.replicas", "2")])?;
    client.produce_acked("replicated", &numbered("a", 0..10), None)?;

    let leader = client
        .partition("replicated", None)
        .map(|p| p.leader)
        .unwrap_or(-1);
    ensure!(leader >= 0, "a leader");
    let killed_at = Instant::now();
    cluster.kill_broker(leader)?;
    wait_until("a new leader is elected", Duration::from_secs(10), || {
        client
            .partition("replicated", Some(leader))
            .is_some_and(|p| p.leader >= 0 && p.leader != leader && !p.isr.contains(&leader))
    })?;
    let failover = killed_at.elapsed();
    client.produce_acked("replicated", &numbered("b", 0..10), Some(leader))?;
    eprintln!("failover took {failover:?}");

    let new_leader = client
        .partition("replicated", Some(leader))
        .map(|p| p.leader)
        .unwrap_or(-1);
    let mut expected = numbered("a", 0..10);
    expected.extend(numbered("b", 0..10));
    assert_eq!(client.read_all(new_leader, "replicated")?, expected);

    // The killed broker comes back, catches up and rejoins the ISR.
    cluster.restart_broker(leader)?;
    wait_until(
        "the restarted broker rejoins the ISR",
        Duration::from_secs(30),
        || {
            client
                .partition("replicated", None)
                .is_some_and(|p| p.isr.len() == 3)
        },
    )?;
    Ok(())
}

#[test]
fn min_insync_replicas_refuses_acks_all_but_not_acks_1() -> Result<()> {
    let mut cluster = three_brokers(&[])?;
    let mut client = Client::new(&cluster)?;
    client.create_topic("guarded", 3, &[("min.insync.replicas", "2")])?;
    let leader = client
        .partition("guarded", None)
        .map(|p| p.leader)
        .unwrap_or(-1);
    for id in cluster.broker_ids() {
        if id != leader {
            cluster.kill_broker(id)?;
        }
    }
    wait_until(
        "the ISR shrinks to the leader",
        Duration::from_secs(15),
        || {
            client
                .partition("guarded", None)
                .is_some_and(|p| p.isr == vec![leader])
        },
    )?;
    let (code, message) = client.produce(leader, "guarded", -1, &numbered("x", 0..1))?;
    assert_eq!(code, ErrorCode::NotEnoughReplicas, "{message}");
    assert!(message.contains("min.insync.replicas=2"), "{message}");
    let (code, _) = client.produce(leader, "guarded", 1, &numbered("y", 0..1))?;
    assert_eq!(code, ErrorCode::None);
    assert_eq!(client.read_all(leader, "guarded")?, vec!["y-0"]);
    Ok(())
}

#[test]
fn a_returning_leader_truncates_what_never_committed() -> Result<()> {
    let mut cluster = three_brokers(&[])?;
    let mut client = Client::new(&cluster)?;
    client.create_topic("diverge", 3, &[])?;
    client.produce_acked("diverge", &numbered("committed", 0..5), None)?;
    let old_leader = client
        .partition("diverge", None)
        .map(|p| p.leader)
        .unwrap_or(-1);
    let followers: Vec<i32> = cluster
        .broker_ids()
        .into_iter()
        .filter(|&b| b != old_leader)
        .collect();

    // Followers frozen: the leader takes acks=1 writes nobody else gets.
    for &f in &followers {
        cluster.broker_mut(f)?.pause()?;
    }
    const LOST: usize = 20;
    for i in 0..LOST {
        let (code, _) = client.produce(old_leader, "diverge", 1, &[format!("lost-{i}")])?;
        assert_eq!(code, ErrorCode::None);
    }
    cluster.kill_broker(old_leader)?;
    for &f in &followers {
        cluster.broker_mut(f)?.resume()?;
    }
    wait_until("a follower takes over", Duration::from_secs(20), || {
        client
            .partition("diverge", Some(old_leader))
            .is_some_and(|p| p.leader >= 0 && p.leader != old_leader)
    })?;
    client.produce_acked("diverge", &numbered("new", 0..4), Some(old_leader))?;

    cluster.restart_broker(old_leader)?;
    wait_until(
        "the old leader rejoins the ISR",
        Duration::from_secs(30),
        || {
            client
                .partition("diverge", None)
                .is_some_and(|p| p.isr.len() == 3)
        },
    )?;
    let leader = client
        .partition("diverge", None)
        .map(|p| p.leader)
        .unwrap_or(-1);
    let values = client.read_all(leader, "diverge")?;
    // A fetch answered just before the followers froze may have carried the
    // first acks=1 writes to one of them, which may then have led: those are
    // legitimately committed now. The rest existed only on the old leader.
    let kept = values.iter().filter(|v| v.starts_with("lost-")).count();
    let mut expected = numbered("committed", 0..5);
    expected.extend(numbered("lost", 0..kept));
    expected.extend(numbered("new", 0..4));
    assert_eq!(values, expected);
    assert!(
        kept < LOST,
        "no divergence was produced: every acks=1 write replicated"
    );
    let old_leader_log = cluster.broker_mut(old_leader)?.log_lines().join("\n");
    assert!(
        old_leader_log.contains("Truncated diverge-0"),
        "the returning leader did not truncate:\n{old_leader_log}"
    );

    // Every replica's log holds the same bytes below the high watermark.
    let logs: Vec<Vec<u8>> = cluster
        .broker_ids()
        .into_iter()
        .map(|id| {
            std::fs::read(
                cluster
                    .broker_log_dir(id)
                    .join("diverge-0/00000000000000000000.log"),
            )
            .map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    assert!(
        logs.iter().all(|l| l == &logs[0]),
        "replica logs differ: sizes {:?}",
        logs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn no_acknowledged_record_is_lost_across_repeated_leader_kills() -> Result<()> {
    let mut cluster = three_brokers(&[])?;
    let mut client = Client::new(&cluster)?;
    client.create_topic("numbers", 3, &[("min.insync.replicas", "2")])?;
    let mut acknowledged = Vec::new();
    let mut next = 0usize;
    let mut write = |client: &mut Client, count: usize, avoid: Option<i32>| -> Result<()> {
        for _ in 0..count {
            let value = vec![format!("n-{next}")];
            client.produce_acked("numbers", &value, avoid)?;
            acknowledged.push(value[0].clone());
            next += 1;
        }
        Ok(())
    };
    write(&mut client, 20, None)?;
    for _round in 0..3 {
        let leader = client
            .partition("numbers", None)
            .map(|p| p.leader)
            .unwrap_or(-1);
        ensure!(leader >= 0, "a leader");
        cluster.kill_broker(leader)?;
        // Writes continue through the failover, to whoever leads next.
        write(&mut client, 20, Some(leader))?;
        cluster.restart_broker(leader)?;
        wait_until("the ISR is full again", Duration::from_secs(30), || {
            client
                .partition("numbers", None)
                .is_some_and(|p| p.isr.len() == 3)
        })?;
        write(&mut client, 10, None)?;
    }
    let leader = client
        .partition("numbers", None)
        .map(|p| p.leader)
        .unwrap_or(-1);
    let read = client.read_all(leader, "numbers")?;
    // Every acknowledged record, in order; a retried write may appear twice
    // (acks=all timed out but the write had landed), never out of order.
    let mut deduplicated: Vec<String> = Vec::new();
    for value in read {
        if deduplicated.last() != Some(&value) {
            deduplicated.push(value);
        }
    }
    assert_eq!(deduplicated, acknowledged);
    Ok(())
}

#[test]
fn the_preferred_leader_returns_after_a_restart() -> Result<()> {
    let spec = ClusterSpec::brokers(3)
        .coordinator_property("leader.imbalance.check.interval.seconds", "1");
    let mut cluster = Cluster::start_spec(&spec)?;
    let mut client = Client::new(&cluster)?;
    client.create_topic("preferred", 3, &[])?;
    // Records first: the stand-in leader then leads an epoch without
    // writing, and after handing leadership back it must still be able to
    // follow (it once looped forever on "truncate to your log end").
    client.produce_acked("preferred", &numbered("p", 0..5), None)?;
    let partition = client
        .partition("preferred", None)
        .ok_or_else(|| anyhow!("metadata"))?;
    let preferred = partition.replicas[0];
    assert_eq!(
        partition.leader, preferred,
        "the first replica leads at creation"
    );
    cluster.kill_broker(preferred)?;
    wait_until("another replica leads", Duration::from_secs(10), || {
        client
            .partition("preferred", Some(preferred))
            .is_some_and(|p| p.leader >= 0 && p.leader != preferred)
    })?;
    cluster.restart_broker(preferred)?;
    wait_until(
        "the preferred replica leads again",
        Duration::from_secs(30),
        || {
            client
                .partition("preferred", None)
                .is_some_and(|p| p.leader == preferred)
        },
    )?;
    // Every replica follows the returned leader: the ISR is full again and
    // acks=all writes go through all three.
    wait_until("the ISR is full again", Duration::from_secs(30), || {
        client
            .partition("preferred", None)
            .is_some_and(|p| p.leader == preferred && p.isr.len() == 3)
    })?;
    client.produce_acked("preferred", &numbered("q", 0..5), None)?;
    let mut expected = numbered("p", 0..5);
    expected.extend(numbered("q", 0..5));
    assert_eq!(client.read_all(preferred, "preferred")?, expected);
    Ok(())
}
