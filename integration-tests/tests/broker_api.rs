//! The broker's gRPC surface against a real coordinator and broker process:
//! produce with every acks, fetch, list offsets, metadata with
//! auto-creation, bad batches refused without touching the log, and data
//! surviving SIGTERM and kill -9 restarts.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use integration_tests::{Cluster, ClusterSpec, batches, grpc, wait_until};
use protocol::ErrorCode;
use protocol::broker::{
    FetchPartition, FetchRequest, ListOffsetsPartition, ListOffsetsRequest, MetadataRequest,
    ProducePartitionData, ProduceRequest,
};
use protocol::coordinator::{CreatableTopic, CreateTopicsRequest};
use tokio::runtime::Runtime;

struct Api {
    rt: Runtime,
    broker: protocol::broker::broker_client::BrokerClient<tonic::transport::Channel>,
}

impl Api {
    fn new(cluster: &Cluster, broker_id: i32) -> Result<Api> {
        let rt = Runtime::new()?;
        let port = cluster.broker_port(broker_id).expect("broker port");
        let broker = {
            let _guard = rt.enter();
            grpc::broker(&format!("127.0.0.1:{port}"))?
        };
        Ok(Api { rt, broker })
    }

    fn create_topic(&mut self, name: &str, partitions: i32, rf: i32) -> Result<()> {
        let response = self
            .rt
            .block_on(self.broker.create_topics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: name.into(),
                    num_partitions: partitions,
                    replication_factor: rf,
                    ..Default::default()
                }],
                validate_only: false,
            }))?;
        let result = &response.get_ref().topics[0];
        anyhow::ensure!(
            result.error_code == 0,
            "create {name}: {}",
            result.error_message
        );
        // Wait until the broker leads every partition.
        wait_until(
            &format!("{name} has leaders"),
            Duration::from_secs(30),
            || {
                self.rt
                    .block_on(self.broker.metadata(MetadataRequest {
                        topics: vec![name.into()],
                        allow_auto_topic_creation: false,
                    }))
                    .map(|r| {
                        r.get_ref().topics.iter().all(|t| {
                            t.error_code == 0
                                && t.partitions.len() == partitions as usize
                                && t.partitions.iter().all(|p| p.leader >= 0)
                        })
                    })
                    .unwrap_or(false)
            },
        )
    }

    fn produce(
        &mut self,
        topic: &str,
        acks: i32,
        records: Bytes,
    ) -> Result<(ErrorCode, i64, String)> {
        let response = self.rt.block_on(self.broker.produce(ProduceRequest {
            correlation_id: 1,
            acks,
            timeout_ms: 10_000,
            partitions: vec![ProducePartitionData {
                topic: topic.into(),
                partition: 0,
                records,
            }],
        }))?;
        let p = &response.get_ref().partitions[0];
        Ok((
            ErrorCode::from_code(p.error_code),
            p.base_offset,
            p.error_message.clone(),
        ))
    }

    fn fetch(&mut self, topic: &str, offset: i64) -> Result<(ErrorCode, i64, Vec<String>)> {
        let response = self.rt.block_on(self.broker.fetch(FetchRequest {
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
        Ok((
            ErrorCode::from_code(p.error_code),
            p.high_watermark,
            batches::values(&p.records),
        ))
    }

    fn list_offset(&mut self, topic: &str, timestamp: i64) -> Result<i64> {
        let response = self
            .rt
            .block_on(self.broker.list_offsets(ListOffsetsRequest {
                replica_id: -1,
                partitions: vec![ListOffsetsPartition {
                    topic: topic.into(),
                    partition: 0,
                    timestamp,
                    current_leader_epoch: -1,
                }],
            }))?;
        let p = &response.get_ref().partitions[0];
        anyhow::ensure!(p.error_code == 0, "list offsets: {}", p.error_message);
        Ok(p.offset)
    }
}

#[test]
fn produce_fetch_and_offsets_on_one_broker() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let mut api = Api::new(&cluster, 0)?;
    api.create_topic("events", 1, 1)?;

    assert_eq!(
        api.produce("events", 1, batches::of(&["a", "b"]))?.0,
        ErrorCode::None
    );
    let (code, base, _) = api.produce("events", -1, batches::of(&["c"]))?;
    assert_eq!((code, base), (ErrorCode::None, 2));
    assert_eq!(
        api.produce("events", 0, batches::of(&["d"]))?.0,
        ErrorCode::None
    );

    let (code, hw, values) = api.fetch("events", 0)?;
    assert_eq!(code, ErrorCode::None);
    assert_eq!(hw, 4);
    assert_eq!(values, vec!["a", "b", "c", "d"]);
    // A fetch from the middle of a batch starts with the batch holding it.
    assert_eq!(api.fetch("events", 1)?.2, vec!["a", "b", "c", "d"]);
    assert_eq!(api.fetch("events", 3)?.2, vec!["d"]);
    assert_eq!(api.fetch("events", 4)?.2, Vec::<String>::new());
    assert_eq!(api.fetch("events", 5)?.0, ErrorCode::OffsetOutOfRange);

    assert_eq!(api.list_offset("events", protocol::EARLIEST_TIMESTAMP)?, 0);
    assert_eq!(api.list_offset("events", protocol::LATEST_TIMESTAMP)?, 4);
    assert_eq!(api.list_offset("events", 1_600_000_000_000)?, 0);
    Ok(())
}

#[test]
fn bad_batches_are_refused_and_change_nothing() -> Result<()> {
    let cluster =
        Cluster::start_spec(&ClusterSpec::brokers(1).broker_property("message.max.bytes", "2000"))?;
    let mut api = Api::new(&cluster, 0)?;
    api.create_topic("strict", 1, 1)?;
    assert_eq!(
        api.produce("strict", 1, batches::of(&["ok"]))?.0,
        ErrorCode::None
    );

    let big = "x".repeat(3000);
    let (code, _, message) = api.produce("strict", 1, batches::of(&[&big]))?;
    assert_eq!(code, ErrorCode::MessageTooLarge, "{message}");

    let mut corrupt = batches::of(&["flipped"]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let (code, _, message) = api.produce("strict", 1, Bytes::from(corrupt))?;
    assert_eq!(code, ErrorCode::CorruptMessage, "{message}");

    let (code, _, _) = api.produce("strict", 1, Bytes::from_static(b"not a batch at all"))?;
    assert_eq!(code, ErrorCode::CorruptMessage);

    let (code, _, _) = api.produce("strict", 7, batches::of(&["bad acks"]))?;
    assert_eq!(code, ErrorCode::InvalidRequiredAcks);

    let (code, _, _) = api.produce("no-such-topic", 1, batches::of(&["x"]))?;
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition);

    // Nothing of the above reached the log, and the broker still serves.
    assert_eq!(api.fetch("strict", 0)?.2, vec!["ok"]);
    assert_eq!(api.produce("strict", 1, batches::of(&["still ok"]))?.1, 1);
    Ok(())
}

#[test]
fn metadata_auto_creates_topics_when_allowed() -> Result<()> {
    let cluster =
        Cluster::start_spec(&ClusterSpec::brokers(1).broker_property("num.partitions", "3"))?;
    let mut api = Api::new(&cluster, 0)?;
    let lookup = |api: &mut Api, allow: bool| -> Result<(i32, usize)> {
        let response = api.rt.block_on(api.broker.metadata(MetadataRequest {
            topics: vec!["auto".into()],
            allow_auto_topic_creation: allow,
        }))?;
        let t = &response.get_ref().topics[0];
        Ok((t.error_code, t.partitions.len()))
    };
    assert_eq!(
        lookup(&mut api, false)?.0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    lookup(&mut api, true)?;
    wait_until("auto has 3 partitions", Duration::from_secs(30), || {
        matches!(lookup(&mut api, false), Ok((0, 3)))
    })?;
    Ok(())
}

#[test]
fn data_survives_sigterm_and_kill_9() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    let mut api = Api::new(&cluster, 0)?;
    api.create_topic("durable", 1, 1)?;
    assert_eq!(
        api.produce("durable", -1, batches::of(&["one", "two"]))?.0,
        ErrorCode::None
    );

    let status = cluster.stop_broker(0)?;
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    let log = cluster.broker_mut(0)?.log_lines().join("\n");
    assert!(log.contains("shut down completed"), "{log}");
    cluster.restart_broker(0)?;
    let mut api = Api::new(&cluster, 0)?;
    wait_until(
        "the broker leads durable again",
        Duration::from_secs(30),
        || matches!(api.fetch("durable", 0), Ok((ErrorCode::None, _, v)) if v.len() == 2),
    )?;
    assert_eq!(
        api.produce("durable", -1, batches::of(&["three"]))?.0,
        ErrorCode::None
    );

    cluster.kill_broker(0)?;
    cluster.restart_broker(0)?;
    let mut api = Api::new(&cluster, 0)?;
    wait_until(
        "the broker leads durable again",
        Duration::from_secs(30),
        || matches!(api.fetch("durable", 0), Ok((ErrorCode::None, _, v)) if v.len() == 3),
    )?;
    assert_eq!(api.fetch("durable", 0)?.2, vec!["one", "two", "three"]);
    assert_eq!(api.produce("durable", -1, batches::of(&["four"]))?.1, 3);
    Ok(())
}

#[test]
fn a_broker_rides_through_a_coordinator_restart() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    let mut api = Api::new(&cluster, 0)?;
    api.create_topic("steady", 1, 1)?;
    cluster.kill_coordinator()?;
    // Without a coordinator the broker keeps serving what it leads.
    assert_eq!(
        api.produce("steady", -1, batches::of(&["during"]))?.0,
        ErrorCode::None
    );
    cluster.restart_coordinator()?;
    api.create_topic("after", 1, 1)?;
    assert_eq!(
        api.produce("after", -1, batches::of(&["x"]))?.0,
        ErrorCode::None
    );
    assert_eq!(api.fetch("steady", 0)?.2, vec!["during"]);
    Ok(())
}

#[test]
fn a_coordinator_on_an_empty_data_dir_cannot_make_a_broker_drop_its_logs() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    let mut api = Api::new(&cluster, 0)?;
    api.create_topic("precious", 1, 1)?;
    assert_eq!(
        api.produce("precious", -1, batches::of(&["a", "b"]))?.0,
        ErrorCode::None
    );

    // The coordinator comes back with none of its state: a new cluster.
    cluster.kill_coordinator()?;
    std::fs::remove_dir_all(cluster.dir().join("zookeeper"))?;
    cluster.restart_coordinator()?;
    let broker = cluster.broker_mut(0)?;
    broker.wait_for_line(
        "Refusing metadata of cluster",
        integration_tests::READY_TIMEOUT,
    )?;
    broker.wait_for_line("INCONSISTENT_CLUSTER_ID", integration_tests::READY_TIMEOUT)?;

    // The log is intact and still served.
    let log_dir = cluster.broker_log_dir(0).join("precious-0");
    assert!(log_dir.join("00000000000000000000.log").metadata()?.len() > 0);
    assert_eq!(api.fetch("precious", 0)?.2, vec!["a", "b"]);
    Ok(())
}
