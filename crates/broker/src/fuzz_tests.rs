//! Fuzz target for request handling: arbitrary Produce, Fetch, ListOffsets
//! and Metadata requests (negative and huge partitions, unknown and empty
//! topics, absurd sizes and waits, bad acks, garbage and damaged record
//! batches, made-up replica ids, epochs and topic ids) through the gRPC
//! adapter into the transport-free core of a broker that leads and follows
//! real partitions, also between metadata updates a hostile coordinator
//! could send (any leader, epochs going back, an ISR without the leader). Every call is answered, every refusal carries a
//! Kafka error code, nothing panics, every stored byte stays a valid batch,
//! and what was written before the fuzzing reads back byte for byte, also
//! after the logs are closed and opened again.
//!
//! Bounded for CI; `PROPTEST_CASES=5000 cargo nextest run -p broker --lib
//! fuzz_tests` runs it longer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protocol::ErrorCode;
use protocol::broker::broker_server::Broker;
use protocol::broker::{
    FetchPartition, FetchRequest, ListOffsetsPartition, ListOffsetsRequest, MetadataRequest,
    ProducePartitionData, ProduceRequest,
};
use protocol::coordinator::{
    BrokerInfo, BrokerState, Endpoint, MetadataRecord, MetadataUpdate, PartitionState, TopicInfo,
};
use records::RecordBatchBuilder;
use storage::{LogConfig, LogManager, TopicPartition};
use tonic::Request;

use crate::link::{CoordinatorLink, Registration};
use crate::replica_manager::ReplicaManager;
use crate::service::BrokerService;

const ME: i32 = 1;
const TOPIC: &str = "t";
const TOPIC_ID: [u8; 16] = [9; 16];

fn batch(values: &[&[u8]]) -> Bytes {
    let mut builder = RecordBatchBuilder::default();
    for value in values {
        builder.append(1_000, Some(b"k"), Some(value), &[]);
    }
    builder.finish()
}

/// The broker under test: leader of `t-0` (ISR {1}) and `t-1` (ISR {1, 2}),
/// follower of `t-2` (led by broker 2, which is unreachable, as is the
/// coordinator: nothing here depends on another process).
struct Fixture {
    dir: tempfile::TempDir,
    core: Arc<ReplicaManager>,
    service: BrokerService,
}

fn settings(dir: &std::path::Path) -> Arc<crate::Settings> {
    let text = format!(
        "broker.id={ME}\nlog.dirs={}\nzookeeper.connect=127.0.0.1:1\nlisteners=PLAINTEXT://127.0.0.1:0\n",
        dir.display()
    );
    let props = config::Properties::parse(&text, "fuzz.properties").expect("properties");
    Arc::new(crate::Settings::from_properties(&props).expect("a valid config"))
}

fn broker_record(broker_id: i32) -> MetadataRecord {
    BrokerInfo {
        broker_id,
        broker_epoch: 10 + i64::from(broker_id),
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 1,
        }],
        rack: String::new(),
        state: BrokerState::Active as i32,
        incarnation_id: format!("i{broker_id}"),
        session_timeout_ms: 6000,
    }
    .into()
}

fn partition_record(partition: i32, leader: i32, replicas: &[i32]) -> MetadataRecord {
    PartitionState {
        topic: TOPIC.into(),
        partition,
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: 3,
        isr: replicas.to_vec(),
        partition_epoch: 5,
        topic_id: Bytes::copy_from_slice(&TOPIC_ID),
    }
    .into()
}

fn start(dir: tempfile::TempDir) -> Fixture {
    let settings = settings(dir.path());
    let logs = Arc::new(
        LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).expect("logs"),
    );
    let registration = Registration {
        broker_id: ME,
        endpoints: Vec::new(),
        rack: String::new(),
        incarnation_id: "fuzz".into(),
        session_timeout_ms: 6000,
    };
    let link = CoordinatorLink::new(
        &["127.0.0.1:1".to_owned()],
        Duration::from_millis(100),
        registration,
    )
    .expect("a link");
    let core = ReplicaManager::new(settings.clone(), logs, link, None);
    core.apply_metadata(&MetadataUpdate {
        version: 20,
        snapshot: true,
        cluster_id: "fuzz-cluster".into(),
        records: vec![
            broker_record(1),
            broker_record(2),
            TopicInfo {
                name: TOPIC.into(),
                topic_id: Bytes::copy_from_slice(&TOPIC_ID),
                configs: Default::default(),
            }
            .into(),
            partition_record(0, ME, &[1]),
            partition_record(1, ME, &[1, 2]),
            partition_record(2, 2, &[2, 1]),
        ],
    });
    let service = BrokerService::new(core.clone(), settings, "PLAINTEXT".into());
    Fixture { dir, core, service }
}

/// Every byte of a partition's log, read straight from storage.
fn stored(core: &ReplicaManager, partition: i32) -> Vec<u8> {
    let tp = TopicPartition::new(TOPIC, partition);
    let Some(log) = core.logs().get(&tp) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, None).expect("a stored log reads");
        let records = read.records;
        if records.is_empty() {
            break;
        }
        let mut last_next = offset;
        for b in records::Batches::new(&records, usize::MAX) {
            let (header, _) = b.expect("every stored byte is a valid batch");
            last_next = header.next_offset();
        }
        out.extend_from_slice(&records);
        offset = last_next;
    }
    out
}

// ------------------------------------------------------------ requests

fn arb_topic() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => Just(TOPIC.to_owned()),
        1 => Just(String::new()),
        1 => Just("unknown".to_owned()),
        1 => Just("x".repeat(300)),
        1 => "\\PC{0,8}",
    ]
}

fn arb_partition() -> impl Strategy<Value = i32> {
    prop_oneof![
        16 => 0i32..3,
        1 => Just(-1),
        1 => Just(3),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
}

fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -3i64..12,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

/// A leader epoch: the current one (3), none (-1), or anything.
fn arb_epoch() -> impl Strategy<Value = i32> {
    prop_oneof![3 => Just(3), 2 => Just(-1), 2 => arb_i32()]
}

fn arb_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -3i32..8,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => any::<i32>(),
    ]
}

/// Record bytes: a valid batch, several, garbage, a valid batch damaged
/// (bit flip, truncation, a lying length or record count), or nothing.
fn arb_records() -> impl Strategy<Value = Bytes> {
    let valid = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..4)
        .prop_map(|values| {
            let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            batch(&values).to_vec()
        });
    prop_oneof![
        4 => valid.clone(),
        1 => proptest::collection::vec(valid.clone(), 2..4).prop_map(|b| b.concat()),
        1 => proptest::collection::vec(any::<u8>(), 0..100),
        1 => Just(Vec::new()),
        3 => (valid, any::<usize>(), 0u8..8, 0u8..4, any::<i32>()).prop_map(
            |(mut b, at, bit, how, value)| {
                let len = b.len();
                match how {
                    0 => b[at % len] ^= 1 << bit,
                    1 => b.truncate(at % len),
                    2 => b[8..12].copy_from_slice(&value.to_be_bytes()),
                    _ => {
                        // A lying count with a CRC that matches it.
                        b[57..61].copy_from_slice(&value.to_be_bytes());
                        let crc = crc32c::crc32c(&b[21..]);
                        b[17..21].copy_from_slice(&crc.to_be_bytes());
                    }
                }
                b
            }
        ),
    ]
    .prop_map(Bytes::from)
}

#[derive(Debug, Clone)]
enum Call {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    /// What a confused or hostile coordinator could stream: partition
    /// states with any leader, epochs, ISR and replicas (always including
    /// this broker, so no log is deleted), brokers in any state.
    Update(MetadataUpdate),
}

fn arb_update() -> impl Strategy<Value = Call> {
    let replicas = proptest::collection::vec(prop_oneof![Just(2), Just(3), arb_i32()], 0..3)
        .prop_map(|mut others| {
            others.retain(|&r| r != ME);
            let mut replicas = vec![ME];
            replicas.extend(others);
            replicas
        });
    let partition = (
        0i32..4,
        prop_oneof![3 => Just(ME), 2 => Just(2), 1 => Just(-1), 1 => arb_i32()],
        prop_oneof![3 => 2i32..8, 1 => arb_i32()],
        replicas,
        proptest::collection::vec(prop_oneof![Just(ME), Just(2), arb_i32()], 0..3),
        prop_oneof![3 => 4i32..12, 1 => arb_i32()],
    )
        .prop_map(
            |(partition, leader, leader_epoch, replicas, isr, partition_epoch)| -> MetadataRecord {
                PartitionState {
                    topic: TOPIC.into(),
                    partition,
                    replicas,
                    leader,
                    leader_epoch,
                    isr,
                    partition_epoch,
                    topic_id: Bytes::copy_from_slice(&TOPIC_ID),
                }
                .into()
            },
        );
    let broker = (1i32..4, 0i32..4, arb_i64()).prop_map(|(broker_id, state, epoch)| {
        let mut record = broker_record(broker_id);
        if let Some(protocol::coordinator::metadata_record::Record::Broker(b)) = &mut record.record
        {
            b.state = state;
            b.broker_epoch = epoch;
        }
        record
    });
    (
        proptest::collection::vec(prop_oneof![4 => partition, 1 => broker], 1..4),
        arb_i64(),
    )
        .prop_map(|(records, version)| {
            Call::Update(MetadataUpdate {
                version,
                snapshot: false,
                records,
                cluster_id: String::new(),
            })
        })
}

fn arb_call() -> impl Strategy<Value = Call> {
    let produce = (
        prop_oneof![3 => prop::sample::select(vec![-1, 0, 1]), 1 => arb_i32()],
        -2i32..4,
        proptest::collection::vec(
            (arb_topic(), arb_partition(), arb_records()).prop_map(
                |(topic, partition, records)| ProducePartitionData {
                    topic,
                    partition,
                    records,
                },
            ),
            0..4,
        ),
        any::<i64>(),
    )
        .prop_map(|(acks, timeout_ms, partitions, correlation_id)| {
            Call::Produce(ProduceRequest {
                acks,
                timeout_ms,
                partitions,
                correlation_id,
            })
        });
    let fetch = (
        prop_oneof![2 => Just(-1), 1 => Just(2), 1 => Just(ME), 1 => arb_i32()],
        // Broker 2's epoch is 12.
        prop_oneof![2 => Just(12i64), 1 => arb_i64()],
        // Waits stay short: a long poll with nothing to return waits.
        -2i32..4,
        arb_i32(),
        arb_i32(),
        proptest::collection::vec(
            (
                arb_topic(),
                arb_partition(),
                arb_i64(),
                arb_epoch(),
                arb_epoch(),
                arb_i32(),
                prop_oneof![
                    Just(Bytes::new()),
                    Just(Bytes::copy_from_slice(&TOPIC_ID)),
                    Just(Bytes::from_static(&[1; 16])),
                    Just(Bytes::from_static(&[1; 3])),
                ],
            )
                .prop_map(
                    |(topic, partition, fetch_offset, epoch, last_epoch, max_bytes, topic_id)| {
                        FetchPartition {
                            topic,
                            partition,
                            fetch_offset,
                            current_leader_epoch: epoch,
                            last_fetched_epoch: last_epoch,
                            partition_max_bytes: max_bytes,
                            topic_id,
                        }
                    },
                ),
            0..4,
        ),
    )
        .prop_map(
            |(replica_id, broker_epoch, max_wait_ms, min_bytes, max_bytes, partitions)| {
                Call::Fetch(FetchRequest {
                    replica_id,
                    broker_epoch,
                    max_wait_ms,
                    min_bytes,
                    max_bytes,
                    partitions,
                })
            },
        );
    let list_offsets = (
        arb_i32(),
        proptest::collection::vec(
            (arb_topic(), arb_partition(), arb_i64(), arb_epoch()).prop_map(
                |(topic, partition, timestamp, current_leader_epoch)| ListOffsetsPartition {
                    topic,
                    partition,
                    timestamp,
                    current_leader_epoch,
                },
            ),
            0..4,
        ),
    )
        .prop_map(|(replica_id, partitions)| {
            Call::ListOffsets(ListOffsetsRequest {
                replica_id,
                partitions,
            })
        });
    let metadata = (proptest::collection::vec(arb_topic(), 0..3), any::<bool>()).prop_map(
        |(topics, allow_auto_topic_creation)| {
            Call::Metadata(MetadataRequest {
                topics,
                allow_auto_topic_creation,
            })
        },
    );
    prop_oneof![4 => produce, 4 => fetch, 2 => list_offsets, 1 => metadata]
}

/// A per-partition answer: no error, or a known Kafka code with a message.
fn check_code(code: i32, message: &str, what: &str) -> Result<(), TestCaseError> {
    if code != 0 {
        let known = ErrorCode::from_code(code);
        prop_assert!(
            known != ErrorCode::UnknownServerError && known.code() == code,
            "{what}: code {code} ({message})"
        );
        prop_assert!(!message.is_empty(), "{what}: code {code} without a message");
    }
    Ok(())
}

async fn send(fixture: &Fixture, call: Call) -> Result<(), TestCaseError> {
    let service = &fixture.service;
    let failed = |e: tonic::Status| TestCaseError::fail(format!("the call failed: {e:?}"));
    match call {
        Call::Update(update) => {
            fixture.core.apply_metadata(&update);
        }
        Call::Produce(request) => {
            let correlation_id = request.correlation_id;
            let asked = request.partitions.len();
            let response = service
                .produce(Request::new(request))
                .await
                .map_err(failed)?
                .into_inner();
            prop_assert_eq!(response.correlation_id, correlation_id);
            prop_assert_eq!(response.partitions.len(), asked);
            for p in &response.partitions {
                check_code(p.error_code, &p.error_message, "produce")?;
                if p.error_code == 0 {
                    prop_assert!(p.base_offset >= 0, "{p:?}");
                }
            }
        }
        Call::Fetch(request) => {
            let asked = request.partitions.len();
            let response = service
                .fetch(Request::new(request))
                .await
                .map_err(failed)?
                .into_inner();
            prop_assert_eq!(response.partitions.len(), asked);
            for p in &response.partitions {
                check_code(p.error_code, &p.error_message, "fetch")?;
                // Fetched bytes are whole, valid batches.
                let (valid, err) = records::valid_prefix(&p.records, usize::MAX);
                prop_assert!(err.is_none() && valid == p.records.len(), "{err:?}");
            }
        }
        Call::ListOffsets(request) => {
            let asked = request.partitions.len();
            let response = service
                .list_offsets(Request::new(request))
                .await
                .map_err(failed)?
                .into_inner();
            prop_assert_eq!(response.partitions.len(), asked);
            for p in &response.partitions {
                check_code(p.error_code, &p.error_message, "list offsets")?;
            }
        }
        Call::Metadata(request) => {
            let response = service
                .metadata(Request::new(request))
                .await
                .map_err(failed)?
                .into_inner();
            for t in &response.topics {
                check_code(t.error_code, &t.error_message, "metadata")?;
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_requests_are_answered_and_stored_data_survives() {
    fuzz_requests(arb_call().boxed());
}

#[test]
fn arbitrary_metadata_between_requests_keeps_stored_data() {
    fuzz_requests(prop_oneof![arb_call(), arb_update()].boxed());
}

fn fuzz_requests(calls: BoxedStrategy<Call>) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let fixture = runtime.block_on(async { start(tempfile::tempdir().expect("a temp dir")) });
    // Data written before the fuzzing, which it must not damage.
    let before: Vec<Vec<u8>> = runtime.block_on(async {
        for partition in [0, 1] {
            let request = ProduceRequest {
                acks: 1,
                timeout_ms: 1000,
                partitions: vec![ProducePartitionData {
                    topic: TOPIC.into(),
                    partition,
                    records: batch(&[b"kept", b"also kept"]),
                }],
                ..Default::default()
            };
            let response = fixture
                .service
                .produce(Request::new(request))
                .await
                .expect("produce")
                .into_inner();
            assert_eq!(response.partitions[0].error_code, 0, "{response:?}");
        }
        (0..3).map(|p| stored(&fixture.core, p)).collect()
    });
    assert!(!before[0].is_empty() && !before[1].is_empty());

    let mut runner = TestRunner::new(fuzz_support::config(256));
    let result = runner.run(&proptest::collection::vec(calls, 1..6), |calls| {
        runtime.block_on(async {
            for call in calls {
                send(&fixture, call).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
        for (partition, kept) in before.iter().enumerate() {
            let now = stored(&fixture.core, partition as i32);
            prop_assert!(now.starts_with(kept), "t-{partition} lost what it had");
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }

    // Closed and opened again, the logs still hold it all.
    let Fixture { dir, core, service } = fixture;
    let after: Vec<Vec<u8>> = (0..3).map(|p| stored(&core, p)).collect();
    runtime.block_on(async {
        core.stop_all_partitions();
        core.stop_fetchers().await;
        core.logs().shutdown().expect("clean shutdown");
    });
    drop(service);
    drop(core);
    drop(runtime);
    let reopened = LogManager::open(&[dir.path().to_path_buf()], LogConfig::default())
        .expect("the logs open again");
    for (partition, (kept, all)) in before.iter().zip(&after).enumerate() {
        let tp = TopicPartition::new(TOPIC, partition as i32);
        let Some(log) = reopened.get(&tp) else {
            assert!(all.is_empty(), "t-{partition} vanished");
            continue;
        };
        let read = log.read(0, 1 << 24, None).expect("reads");
        assert!(
            read.records.starts_with(kept),
            "t-{partition} lost what it had"
        );
        assert_eq!(
            &read.records[..],
            &all[..],
            "t-{partition} changed on reopening"
        );
    }
}
