//! Fuzz targets for the coordinator.
//!
//! - The controller's decisions under random sequences of operations
//!   (registrations, fencing, controlled shutdowns, topic creation and
//!   deletion, AlterPartition with random epochs and ISRs, partition
//!   additions, config changes, rebalances), with hostile values in every
//!   field. After each one: a leader is a replica in the ISR on a broker
//!   that is not fenced, or there is none; an ISR is a non-empty set of
//!   replicas; leader and partition epochs only grow, and grow whenever
//!   what they cover changes; broker epochs only grow; and the records
//!   decided rebuild the same image when replayed, as a restart would.
//! - The daemon under arbitrary requests over gRPC: every call is answered
//!   (an error code or status, never a dropped connection), and after a
//!   restart the coordinator has exactly the topics it had.
//!
//! Bounded for CI; `PROPTEST_CASES=5000 cargo nextest run -p coordinator
//! --test fuzz` runs them longer.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use coordinator::controller::brokers::{
    controlled_shutdown, fence_broker, register_broker, unfence_broker,
};
use coordinator::controller::partitions::{alter_partition, rebalance_preferred_leaders};
use coordinator::controller::placement::Rng;
use coordinator::controller::topics::{
    alter_configs, create_partitions, create_topics, delete_topics,
};
use coordinator::controller::{Changes, queries};
use coordinator::metadata_log::MetadataLog;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protocol::coordinator::{
    AlterConfigsRequest, AlterPartitionRequest, AlterableTopicConfigs, BrokerState,
    ControlledShutdownRequest, CreatableTopic, CreatePartitionsRequest, CreatePartitionsTopic,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeTopicsRequest,
    ListTopicsRequest, ReplicaAssignment, WatchMetadataRequest,
};
use protocol::image::MetadataImage;
use protocol::{ErrorCode, NO_ID};

// ------------------------------------------------------------ operations

/// Names that exist, collide ('.' vs '_'), or are illegal.
const NAMES: &[&str] = &["a", "b", "a.b", "a_b", "", ".", "..", "bad name!", "é"];

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(NAMES).prop_map(str::to_owned),
        1 => Just("x".repeat(250)),
        1 => "\\PC{0,6}",
    ]
}

fn arb_id() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0i32..5, 1 => Just(-1), 1 => Just(i32::MAX), 1 => any::<i32>()]
}

fn arb_count() -> impl Strategy<Value = i32> {
    prop_oneof![6 => -1i32..5, 1 => Just(0), 1 => Just(i32::MAX), 1 => Just(i32::MIN), 1 => any::<i32>()]
}

/// An epoch relative to the current one: mostly right, sometimes off by
/// one either way, sometimes anything.
fn arb_delta() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0i64), 2 => -1i64..=1, 1 => any::<i32>().prop_map(i64::from)]
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        broker_id: i32,
        incarnation: u8,
        rack: bool,
    },
    Fence(i32),
    Unfence(i32),
    ControlledShutdown {
        broker_id: i32,
        epoch_delta: i64,
    },
    CreateTopic(CreatableTopic, bool),
    DeleteTopics(Vec<String>),
    AlterPartition {
        topic: String,
        partition: i32,
        /// `None`: the partition's leader sends it.
        sender: Option<i32>,
        broker_epoch_delta: i64,
        leader_epoch_delta: i64,
        partition_epoch_delta: i64,
        /// `None`: the current ISR plus or minus a replica.
        new_isr: Option<Vec<i32>>,
        grow: bool,
    },
    CreatePartitions {
        topic: String,
        count: i32,
        assignments: Vec<Vec<i32>>,
    },
    AlterConfigs {
        topic: String,
        key: String,
        value: String,
        delete: bool,
    },
    Rebalance(u32),
}

fn arb_topic() -> impl Strategy<Value = CreatableTopic> {
    (
        arb_name(),
        arb_count(),
        arb_count(),
        proptest::option::of(proptest::collection::vec(
            (arb_count(), proptest::collection::vec(arb_id(), 0..4)),
            0..4,
        )),
        proptest::option::of(prop::sample::select(vec![
            ("unclean.leader.election.enable", "true"),
            ("unclean.leader.election.enable", "false"),
            ("min.insync.replicas", "2"),
            ("retention.ms", "bogus"),
            ("no.such.config", "1"),
        ])),
    )
        .prop_map(
            |(name, num_partitions, replication_factor, assignments, config)| CreatableTopic {
                name,
                num_partitions,
                replication_factor,
                configs: config
                    .map(|(k, v)| HashMap::from([(k.to_owned(), v.to_owned())]))
                    .unwrap_or_default(),
                assignments: assignments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(partition, replicas)| ReplicaAssignment {
                        partition,
                        replicas,
                    })
                    .collect(),
            },
        )
}

/// A topic the controller accepts while enough brokers are active, so
/// that sequences have partitions to elect, shrink and grow.
fn arb_good_topic() -> impl Strategy<Value = CreatableTopic> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        1i32..4,
        1i32..4,
        any::<bool>(),
    )
        .prop_map(
            |(name, num_partitions, replication_factor, unclean)| CreatableTopic {
                name: name.to_owned(),
                num_partitions,
                replication_factor,
                configs: HashMap::from([(
                    "unclean.leader.election.enable".to_owned(),
                    unclean.to_string(),
                )]),
                assignments: Vec::new(),
            },
        )
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (arb_id(), 0u8..3, any::<bool>())
            .prop_map(|(broker_id, incarnation, rack)| Op::Register { broker_id, incarnation, rack }),
        2 => arb_id().prop_map(Op::Fence),
        3 => arb_id().prop_map(Op::Unfence),
        1 => (arb_id(), arb_delta())
            .prop_map(|(broker_id, epoch_delta)| Op::ControlledShutdown { broker_id, epoch_delta }),
        3 => (arb_topic(), any::<bool>()).prop_map(|(t, validate_only)| Op::CreateTopic(t, validate_only)),
        4 => arb_good_topic().prop_map(|t| Op::CreateTopic(t, false)),
        1 => proptest::collection::vec(arb_name(), 0..3).prop_map(Op::DeleteTopics),
        8 => (
            prop_oneof![4 => prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned), 1 => arb_name()],
            prop_oneof![4 => 0i32..3, 1 => arb_count()],
            proptest::option::weighted(0.2, arb_id()),
            arb_delta(),
            arb_delta(),
            arb_delta(),
            proptest::option::weighted(0.2, proptest::collection::vec(arb_id(), 0..4)),
            any::<bool>(),
        )
            .prop_map(|(topic, partition, sender, b, l, p, new_isr, grow)| Op::AlterPartition {
                topic,
                partition,
                sender,
                broker_epoch_delta: b,
                leader_epoch_delta: l,
                partition_epoch_delta: p,
                new_isr,
                grow,
            }),
        1 => (arb_name(), arb_count(), proptest::collection::vec(
                proptest::collection::vec(arb_id(), 0..4), 0..3))
            .prop_map(|(topic, count, assignments)| Op::CreatePartitions { topic, count, assignments }),
        1 => (
            arb_name(),
            prop::sample::select(vec!["unclean.leader.election.enable", "retention.ms", "nope", ""]),
            prop::sample::select(vec!["true", "false", "1000", "bogus", ""]),
            any::<bool>(),
        )
            .prop_map(|(topic, key, value, delete)| Op::AlterConfigs {
                topic,
                key: key.to_owned(),
                value: value.to_owned(),
                delete,
            }),
        1 => prop_oneof![Just(0u32), Just(10), any::<u32>()].prop_map(Op::Rebalance),
    ]
}

fn accept_configs(key: &str, value: &str) -> Result<(), String> {
    if value == "bogus" {
        Err(format!("Invalid value bogus for configuration {key}"))
    } else {
        Ok(())
    }
}

fn epoch_of(image: &MetadataImage, broker_id: i32) -> i64 {
    image.brokers.get(&broker_id).map_or(-1, |b| b.broker_epoch)
}

fn shifted(value: i64, delta: i64) -> i64 {
    value.saturating_add(delta)
}

fn shifted32(value: i32, delta: i64) -> i32 {
    i32::try_from(i64::from(value).saturating_add(delta)).unwrap_or(i32::MAX)
}

/// Carries out one operation as the writer would, returning the records.
/// `unclean`: the coordinator's `unclean.leader.election.enable`, which
/// topics without their own setting follow.
fn decide(changes: &mut Changes<'_>, op: &Op, rng: &mut Rng, unclean: bool) {
    match op {
        Op::Register {
            broker_id,
            incarnation,
            rack,
        } => {
            let request = protocol::coordinator::RegisterBrokerRequest {
                broker_id: *broker_id,
                endpoints: vec![endpoint(9092)],
                rack: if *rack { "r1".into() } else { String::new() },
                incarnation_id: format!("i{incarnation}"),
                session_timeout_ms: 6000,
                cluster_id: String::new(),
            };
            let _ = register_broker(changes, &request, 6000, unclean);
        }
        Op::Fence(id) => {
            fence_broker(changes, *id, unclean);
        }
        Op::Unfence(id) => {
            unfence_broker(changes, *id, unclean);
        }
        Op::ControlledShutdown {
            broker_id,
            epoch_delta,
        } => {
            let epoch = shifted(epoch_of(changes.image(), *broker_id), *epoch_delta);
            let _ = controlled_shutdown(changes, *broker_id, epoch);
        }
        Op::CreateTopic(topic, validate_only) => {
            let request = CreateTopicsRequest {
                topics: vec![topic.clone()],
                validate_only: *validate_only,
            };
            let _ = create_topics(changes, &request, rng, &accept_configs);
        }
        Op::DeleteTopics(names) => {
            let _ = delete_topics(changes, names, true);
        }
        Op::AlterPartition {
            topic,
            partition,
            sender,
            broker_epoch_delta,
            leader_epoch_delta,
            partition_epoch_delta,
            new_isr,
            grow,
        } => {
            let current = changes.image().partition(topic, *partition).cloned();
            let (leader, leader_epoch, partition_epoch, isr, replicas) = current
                .map(|p| {
                    (
                        p.leader,
                        p.leader_epoch,
                        p.partition_epoch,
                        p.isr,
                        p.replicas,
                    )
                })
                .unwrap_or((NO_ID, 0, 0, Vec::new(), Vec::new()));
            let broker_id = sender.unwrap_or(leader);
            let new_isr = new_isr.clone().unwrap_or_else(|| {
                let mut isr = isr.clone();
                if *grow {
                    if let Some(r) = replicas.iter().find(|r| !isr.contains(r)) {
                        isr.push(*r);
                    }
                } else if let Some(r) = isr.iter().position(|&r| r != leader) {
                    isr.remove(r);
                }
                isr
            });
            let request = AlterPartitionRequest {
                broker_id,
                broker_epoch: shifted(epoch_of(changes.image(), broker_id), *broker_epoch_delta),
                topic: topic.clone(),
                partition: *partition,
                leader_epoch: shifted32(leader_epoch, *leader_epoch_delta),
                partition_epoch: shifted32(partition_epoch, *partition_epoch_delta),
                new_isr,
            };
            let response = alter_partition(changes, &request);
            // The answer carries the partition as it now stands.
            if let Some(state) = &response.partition {
                assert_eq!(Some(state), changes.image().partition(topic, *partition));
            }
        }
        Op::CreatePartitions {
            topic,
            count,
            assignments,
        } => {
            let request = CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: topic.clone(),
                    count: *count,
                    assignments: assignments
                        .iter()
                        .enumerate()
                        .map(|(i, replicas)| ReplicaAssignment {
                            partition: i as i32,
                            replicas: replicas.clone(),
                        })
                        .collect(),
                }],
                validate_only: false,
            };
            let _ = create_partitions(changes, &request, rng);
        }
        Op::AlterConfigs {
            topic,
            key,
            value,
            delete,
        } => {
            let mut change = AlterableTopicConfigs {
                name: topic.clone(),
                ..Default::default()
            };
            if *delete {
                change.delete.push(key.clone());
            } else {
                change.set.insert(key.clone(), value.clone());
            }
            let request = AlterConfigsRequest {
                topics: vec![change],
                validate_only: false,
            };
            let _ = alter_configs(changes, &request, &accept_configs);
        }
        Op::Rebalance(percentage) => {
            rebalance_preferred_leaders(changes, *percentage);
        }
    }
}

// ------------------------------------------------------------ invariants

/// The invariants every committed image must satisfy on its own.
fn check_image(image: &MetadataImage) -> Result<(), String> {
    for topic in image.topics.values() {
        for (&index, p) in &topic.partitions {
            let name = format!("{}-{index}", topic.info.name);
            if p.partition != index || p.topic != topic.info.name {
                return Err(format!("{name} is filed under the wrong key"));
            }
            if p.replicas.is_empty() {
                return Err(format!("{name} has no replicas"));
            }
            if p.isr.is_empty() {
                return Err(format!("{name} has an empty ISR"));
            }
            for (i, r) in p.isr.iter().enumerate() {
                if !p.replicas.contains(r) {
                    return Err(format!(
                        "{name}: ISR {:?} ⊄ replicas {:?}",
                        p.isr, p.replicas
                    ));
                }
                if p.isr[..i].contains(r) {
                    return Err(format!("{name}: ISR {:?} names {r} twice", p.isr));
                }
            }
            for (i, r) in p.replicas.iter().enumerate() {
                if p.replicas[..i].contains(r) {
                    return Err(format!("{name}: replicas {:?} name {r} twice", p.replicas));
                }
            }
            if p.leader != NO_ID {
                if !p.isr.contains(&p.leader) {
                    return Err(format!(
                        "{name}: leader {} not in ISR {:?}",
                        p.leader, p.isr
                    ));
                }
                let alive = image
                    .brokers
                    .get(&p.leader)
                    .is_some_and(|b| b.state != BrokerState::Fenced as i32);
                if !alive {
                    return Err(format!("{name}: leader {} is fenced or unknown", p.leader));
                }
            }
        }
    }
    Ok(())
}

/// What may change between two committed images: epochs never go back,
/// and every change of a partition is covered by its epochs.
fn check_transition(before: &MetadataImage, after: &MetadataImage) -> Result<(), String> {
    for (id, b) in &before.brokers {
        let a = after
            .brokers
            .get(id)
            .ok_or(format!("broker {id} vanished"))?;
        if a.broker_epoch < b.broker_epoch {
            return Err(format!(
                "broker {id} epoch {} -> {}",
                b.broker_epoch, a.broker_epoch
            ));
        }
    }
    for (name, topic) in &before.topics {
        let Some(now) = after.topics.get(name) else {
            continue;
        };
        if now.info.topic_id != topic.info.topic_id {
            continue; // deleted and created again: a new topic
        }
        for (index, b) in &topic.partitions {
            let a = now
                .partitions
                .get(index)
                .ok_or(format!("{name}-{index} vanished from a live topic"))?;
            let what = format!("{name}-{index}");
            if a.leader_epoch < b.leader_epoch || a.partition_epoch < b.partition_epoch {
                return Err(format!("{what}: epochs went back: {b:?} -> {a:?}"));
            }
            if a.leader != b.leader && a.leader_epoch == b.leader_epoch {
                return Err(format!("{what}: leader changed without a new leader epoch"));
            }
            let changed = a.leader != b.leader || a.isr != b.isr || a.replicas != b.replicas;
            if changed && a.partition_epoch == b.partition_epoch {
                return Err(format!(
                    "{what}: changed without a new partition epoch: {b:?} -> {a:?}"
                ));
            }
        }
    }
    Ok(())
}

fn run_ops(ops: &[Op], seed: u64, unclean: bool) -> Result<(), TestCaseError> {
    let mut image = MetadataImage {
        cluster_id: "fuzz".into(),
        ..Default::default()
    };
    let mut rng = Rng::seeded(seed);
    let mut log: Vec<protocol::coordinator::MetadataRecord> = Vec::new();
    // A cluster to start from: brokers 0 to 3, registered and active.
    let preamble = (0..4).flat_map(|id| {
        [
            Op::Register {
                broker_id: id,
                incarnation: 0,
                rack: false,
            },
            Op::Unfence(id),
        ]
    });
    let ops: Vec<Op> = preamble.chain(ops.iter().cloned()).collect();
    for (step, op) in ops.iter().enumerate() {
        let before = image.clone();
        let mut changes = Changes::new(&mut image);
        decide(&mut changes, op, &mut rng, unclean);
        let records = changes.into_records();
        // The writer commits: the version moves by the records appended.
        image.version += records.len() as i64;
        log.extend(records);
        let context = |e: String| TestCaseError::fail(format!("step {step} {op:?}: {e}"));
        check_image(&image).map_err(context)?;
        check_transition(&before, &image).map_err(context)?;
        // Queries answer on any image.
        let _ = queries::describe_cluster(&image);
        let _ = queries::list_topics(&image);
    }
    // Replaying the log, as a restarted coordinator does, gives the same
    // image.
    let mut replayed = MetadataImage {
        cluster_id: "fuzz".into(),
        ..Default::default()
    };
    for record in &log {
        replayed.apply(record);
    }
    replayed.version = log.len() as i64;
    prop_assert_eq!(replayed, image);
    Ok(())
}

#[test]
fn controller_invariants_hold_under_random_operations() {
    let mut runner = TestRunner::new(fuzz_support::config(256));
    let result = runner.run(
        &(
            proptest::collection::vec(arb_op(), 1..60),
            any::<u64>(),
            any::<bool>(),
        ),
        |(ops, seed, unclean)| run_ops(&ops, seed, unclean),
    );
    if let Err(err) = result {
        panic!("{err}");
    }
}

// ------------------------------------------------------------ the daemon

#[derive(Debug, Clone)]
enum Call {
    Create(Vec<CreatableTopic>, bool),
    Delete(Vec<String>),
    CreatePartitions(Vec<CreatePartitionsTopic>),
    AlterConfigs(Vec<AlterableTopicConfigs>),
    Describe(Vec<String>),
    AlterPartition(AlterPartitionRequest),
    Shutdown(ControlledShutdownRequest),
    Register(protocol::coordinator::RegisterBrokerRequest),
    Watch(i64),
    /// A heartbeat stream carrying these heartbeats, then closed.
    Heartbeats(Vec<protocol::coordinator::HeartbeatRequest>),
}

fn arb_call() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => (proptest::collection::vec(arb_topic(), 0..3), any::<bool>())
            .prop_map(|(t, v)| Call::Create(t, v)),
        1 => proptest::collection::vec(arb_name(), 0..3).prop_map(Call::Delete),
        1 => proptest::collection::vec(
                (arb_name(), arb_count()).prop_map(|(name, count)| CreatePartitionsTopic {
                    name, count, assignments: Vec::new(),
                }),
                0..3,
            ).prop_map(Call::CreatePartitions),
        1 => proptest::collection::vec(
                (arb_name(), ".{0,8}", ".{0,8}").prop_map(|(name, k, v)| AlterableTopicConfigs {
                    name, set: HashMap::from([(k.clone(), v)]), delete: vec![k],
                }),
                0..3,
            ).prop_map(Call::AlterConfigs),
        1 => proptest::collection::vec(arb_name(), 0..3).prop_map(Call::Describe),
        3 => (arb_id(), any::<i64>(), arb_name(), arb_count(), any::<i32>(), any::<i32>(),
              proptest::collection::vec(arb_id(), 0..4))
            .prop_map(|(broker_id, broker_epoch, topic, partition, l, p, new_isr)| {
                Call::AlterPartition(AlterPartitionRequest {
                    broker_id, broker_epoch, topic, partition,
                    leader_epoch: l, partition_epoch: p, new_isr,
                })
            }),
        1 => (arb_id(), any::<i64>()).prop_map(|(broker_id, broker_epoch)| {
            Call::Shutdown(ControlledShutdownRequest { broker_id, broker_epoch })
        }),
        2 => (arb_id(), "\\PC{0,4}", arb_count(), any::<i32>(), "\\PC{0,4}", "\\PC{0,4}")
            .prop_map(|(broker_id, host, port, session_timeout_ms, incarnation_id, cluster_id)| {
                Call::Register(protocol::coordinator::RegisterBrokerRequest {
                    broker_id,
                    endpoints: vec![protocol::coordinator::Endpoint {
                        listener: "PLAINTEXT".into(), host, port,
                    }],
                    rack: String::new(),
                    incarnation_id,
                    session_timeout_ms,
                    cluster_id,
                })
            }),
        1 => prop_oneof![Just(-1i64), Just(0), Just(i64::MIN), Just(i64::MAX)].prop_map(Call::Watch),
        2 => proptest::collection::vec(
                (arb_id(), prop_oneof![0i64..20, any::<i64>()], any::<i64>()).prop_map(
                    |(broker_id, broker_epoch, metadata_version)| {
                        protocol::coordinator::HeartbeatRequest {
                            broker_id,
                            broker_epoch,
                            metadata_version,
                        }
                    },
                ),
                0..4,
            ).prop_map(Call::Heartbeats),
    ]
}

/// Sends one call; any answer will do, but the coordinator must give one
/// (a status other than a broken or unavailable connection).
async fn send(client: &mut Client, call: Call) {
    let status = match call {
        Call::Create(topics, validate_only) => client
            .create_topics(CreateTopicsRequest {
                topics,
                validate_only,
            })
            .await
            .map(|r| {
                for t in r.into_inner().topics {
                    assert!(t.error_code == 0 || !t.error_message.is_empty(), "{t:?}");
                }
            })
            .err(),
        Call::Delete(names) => client
            .delete_topics(DeleteTopicsRequest { names })
            .await
            .err(),
        Call::CreatePartitions(topics) => client
            .create_partitions(CreatePartitionsRequest {
                topics,
                validate_only: false,
            })
            .await
            .err(),
        Call::AlterConfigs(topics) => client
            .alter_configs(AlterConfigsRequest {
                topics,
                validate_only: false,
            })
            .await
            .err(),
        Call::Describe(names) => client
            .describe_topics(DescribeTopicsRequest { names })
            .await
            .err(),
        Call::AlterPartition(request) => client
            .alter_partition(request)
            .await
            .map(|r| {
                let r = r.into_inner();
                assert!(r.error_code == 0 || !r.error_message.is_empty(), "{r:?}");
                assert_ne!(
                    ErrorCode::from_code(r.error_code),
                    ErrorCode::UnknownServerError
                );
            })
            .err(),
        Call::Shutdown(request) => client.controlled_shutdown(request).await.err(),
        Call::Register(request) => client.register_broker(request).await.err(),
        Call::Heartbeats(heartbeats) => {
            let sent = heartbeats.len();
            match client.broker_session(tokio_stream::iter(heartbeats)).await {
                Ok(response) => {
                    // One answer per heartbeat, then the stream ends with ours.
                    let mut responses = response.into_inner();
                    let mut answered = 0;
                    loop {
                        match responses.message().await {
                            Ok(Some(r)) => {
                                assert!(r.error_code == 0 || !r.error_message.is_empty(), "{r:?}");
                                answered += 1;
                            }
                            Ok(None) => break,
                            Err(status) => return check_status(&status),
                        }
                    }
                    assert_eq!(answered, sent, "heartbeats left unanswered");
                    None
                }
                Err(status) => Some(status),
            }
        }
        Call::Watch(from_version) => client
            .watch_metadata(WatchMetadataRequest { from_version })
            .await
            .err(),
    };
    if let Some(status) = status {
        check_status(&status);
    }
}

/// A refusal is fine; a coordinator that could not answer is not.
fn check_status(status: &tonic::Status) {
    assert!(
        !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
        ),
        "the coordinator failed a request: {status:?}"
    );
}

/// Topics as a restarted coordinator must have them.
async fn topics(client: &mut Client) -> BTreeMap<String, String> {
    let names = client
        .list_topics(ListTopicsRequest {})
        .await
        .expect("list topics")
        .into_inner()
        .names;
    let described = client
        .describe_topics(DescribeTopicsRequest { names })
        .await
        .expect("describe topics")
        .into_inner();
    described
        .topics
        .into_iter()
        .map(|t| (t.name.clone(), format!("{:?} {:?}", t.topic, t.partitions)))
        .collect()
}

#[test]
fn arbitrary_requests_are_answered_and_the_log_survives_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (coordinator, _brokers) = runtime.block_on(async {
        let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
        let mut client = coordinator.client().await;
        let mut watcher = Watcher::start(&mut client, -1).await;
        let brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 2000).await;
        // Something stored before the fuzzing that must survive it.
        common::create_topics(
            &mut client,
            vec![assigned_topic("kept", &[&[1, 2], &[2, 1]])],
        )
        .await;
        (coordinator, brokers)
    });
    let client = runtime.block_on(coordinator.client());
    let mut runner = TestRunner::new(fuzz_support::config(24));
    let result = runner.run(&proptest::collection::vec(arb_call(), 1..8), |calls| {
        let mut client = client.clone();
        runtime.block_on(async {
            for call in calls {
                send(&mut client, call).await;
            }
            let cluster = client
                .describe_cluster(DescribeClusterRequest {})
                .await
                .map_err(|s| TestCaseError::fail(format!("describe cluster: {s:?}")))?;
            prop_assert!(cluster.into_inner().metadata_version > 0);
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    runtime.block_on(async {
        let mut client = client.clone();
        let before = topics(&mut client).await;
        assert!(before.contains_key("kept"), "{before:?}");
        coordinator.stop().await;
        let restarted = TestCoordinator::start(test_settings(dir.path())).await;
        let mut client = restarted.client().await;
        assert_eq!(topics(&mut client).await, before);
        restarted.stop().await;
    });
}

// ------------------------------------------------------------ the metadata log

/// A metadata log with a snapshot in the middle, and the image after every
/// commit (by version), for checking what recovery returns.
struct History {
    dir: tempfile::TempDir,
    images: BTreeMap<i64, MetadataImage>,
    /// Per segment file name: its base version and, for each batch, where
    /// it ends in the file and the version after it.
    segments: BTreeMap<String, (i64, Vec<(u64, i64)>)>,
}

fn build_history() -> History {
    use protocol::coordinator::{BrokerInfo, TopicInfo};
    let dir = tempfile::tempdir().expect("a temp dir");
    let recovered = MetadataLog::open(dir.path(), dir.path()).expect("a new log");
    let (mut log, mut image) = (recovered.log, recovered.image);
    let mut images = BTreeMap::from([(image.version, image.clone())]);
    for commit in 0..12i32 {
        let records: Vec<protocol::coordinator::MetadataRecord> = (0..=commit % 3)
            .map(|i| {
                if i == 1 {
                    TopicInfo {
                        name: format!("t{commit}"),
                        topic_id: bytes::Bytes::from(vec![commit as u8; 16]),
                        configs: Default::default(),
                    }
                    .into()
                } else {
                    BrokerInfo {
                        broker_id: commit + i,
                        broker_epoch: i64::from(commit),
                        ..Default::default()
                    }
                    .into()
                }
            })
            .collect();
        log.append(image.version, &records).expect("append");
        for record in &records {
            image.apply(record);
        }
        image.version += records.len() as i64;
        images.insert(image.version, image.clone());
        if commit == 5 {
            log.write_snapshot(&image.snapshot_records())
                .expect("snapshot");
        }
    }
    drop(log);
    let mut segments = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(base) = name
            .strip_suffix(".log")
            .and_then(|b| b.parse::<i64>().ok())
        else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("segment");
        let mut end = 0u64;
        let batches = records::Batches::new(&bytes, usize::MAX)
            .map(|b| {
                let (header, batch) = b.expect("a valid original");
                end += batch.len() as u64;
                (end, header.base_offset + i64::from(header.record_count))
            })
            .collect();
        segments.insert(name, (base, batches));
    }
    assert!(!segments.is_empty(), "{segments:?}");
    History {
        dir,
        images,
        segments,
    }
}

fn check_recovery(
    history: &History,
    damages: &[(usize, fuzz_support::Damage)],
) -> Result<(), TestCaseError> {
    let copy = tempfile::tempdir().expect("a temp dir");
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(history.dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        std::fs::copy(&path, copy.path().join(&name)).expect("copy");
        if name != ".lock" {
            names.push(name);
        }
    }
    names.sort();
    // The newest version recovery must reach: everything before the first
    // damaged byte of a segment. Damage elsewhere (snapshot, cluster id)
    // may stop the start instead, but never be replayed as data.
    let mut protected = history.images.keys().copied().max().unwrap_or(0);
    let mut meta_damaged = false;
    for (pick, damage) in damages {
        let name = &names[pick % names.len()];
        let path = copy.path().join(name);
        if !path.exists() {
            continue;
        }
        let Some(first) = fuzz_support::damage_file(&path, damage) else {
            continue;
        };
        meta_damaged |= name == "meta.properties";
        if name.ends_with(".snapshot") {
            // The only copy of everything up to its version: a start
            // without it may refuse, or (every segment gone too) begin
            // anew, but never replay something else.
            protected = 0;
        }
        if let Some((base, batches)) = history.segments.get(name) {
            let kept = batches
                .iter()
                .take_while(|(end, _)| *end <= first)
                .last()
                .map_or(*base, |(_, version)| *version);
            protected = protected.min(kept);
        }
    }
    match MetadataLog::open(copy.path(), copy.path()) {
        Ok(recovered) => {
            let version = recovered.image.version;
            prop_assert!(
                version >= protected,
                "recovered {version}, {protected} were intact"
            );
            let mut expected = history
                .images
                .get(&version)
                .cloned()
                .ok_or_else(|| TestCaseError::fail(format!("no commit ended at {version}")))?;
            if meta_damaged {
                expected.cluster_id.clone_from(&recovered.image.cluster_id);
            }
            prop_assert_eq!(
                &recovered.image,
                &expected,
                "recovered a state that never was"
            );
            // The log takes appends again, and they survive a restart.
            let mut log = recovered.log;
            let record: protocol::coordinator::MetadataRecord = protocol::coordinator::BrokerInfo {
                broker_id: 99,
                ..Default::default()
            }
            .into();
            log.append(version, std::slice::from_ref(&record))
                .map_err(|e| TestCaseError::fail(format!("append after recovery: {e}")))?;
            drop(log);
            let again = MetadataLog::open(copy.path(), copy.path())
                .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
            prop_assert_eq!(again.image.version, version + 1);
        }
        // Refusing to start is allowed for damage it cannot repair without
        // losing acknowledged changes; it must say what is damaged.
        Err(err) => {
            let message = err.to_string();
            prop_assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn metadata_log_recovery_keeps_what_precedes_damage() {
    let history = build_history();
    let mut runner = TestRunner::new(fuzz_support::config(96));
    let result = runner.run(
        &proptest::collection::vec((any::<usize>(), fuzz_support::arb_file_damage()), 1..3),
        |damages| check_recovery(&history, &damages),
    );
    if let Err(err) = result {
        panic!("{err}");
    }
}
