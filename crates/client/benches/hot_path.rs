//! The client's per-record hot paths, against the in-memory fake cluster so
//! that neither a broker nor the disk is in the measurement:
//!
//! - `producer_send/100B`: `Producer::send` of one 100-byte record (the
//!   clock, partitioner, buffer permit, accumulator append into the open
//!   batch); the records are sent and acknowledged in the background.
//! - `consumer_poll/100B`: `Consumer::poll` handing out 100-byte records
//!   already fetched (batch decoding and the per-record bookkeeping).
//!
//!     cargo bench -p client --bench hot_path
//!
//! Results, before and after each optimisation, are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fake_cluster::FakeCluster;
use records::RecordBatchBuilder;
use tokio::runtime::Runtime;

const RECORD_BYTES: usize = 100;
/// Records per consumer pass: the fake cluster holds this many.
const CONSUMED: usize = 200_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn producer_send(c: &mut Criterion) {
    let rt = runtime();
    let cluster = rt.block_on(FakeCluster::start(1));
    cluster.create_topic("bench", &[1]);
    let mut config = ProducerConfig::new(&cluster.bootstrap()).expect("config");
    config.set("acks", "1").expect("acks");
    let producer = rt
        .block_on(async { Producer::new(config) })
        .expect("producer");
    let value = bytes::Bytes::from(vec![b'v'; RECORD_BYTES]);
    // Metadata in place before timing.
    rt.block_on(producer.partitions_for("bench"))
        .expect("metadata");
    let mut group = c.benchmark_group("producer_send");
    group.throughput(Throughput::Elements(1));
    group.bench_function("100B", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut last = None;
                for _ in 0..iters {
                    let delivery = producer
                        .send(ProducerRecord::new("bench", value.clone()))
                        .await
                        .expect("send");
                    last = Some(black_box(delivery));
                }
                let elapsed = start.elapsed();
                // Delivered outside the timed part, so buffer.memory
                // never blocks the next round; the fake broker keeps
                // everything, so it forgets what this round sent.
                if let Some(last) = last {
                    let offset = last.await.expect("delivered").offset;
                    cluster.truncate_start("bench", 0, offset + 1);
                }
                elapsed
            })
        });
    });
    group.finish();
}

fn consumer_poll(c: &mut Criterion) {
    let rt = runtime();
    let cluster = rt.block_on(FakeCluster::start(1));
    cluster.create_topic("bench", &[1]);
    let value = [b'v'; RECORD_BYTES];
    let mut appended = 0;
    while appended < CONSUMED {
        let mut builder = RecordBatchBuilder::with_capacity(16 * 1024);
        while appended < CONSUMED
            && builder.size_in_bytes() + builder.record_size(0, None, Some(&value), &[]) <= 16_384
        {
            builder.append(1_700_000_000_000, None, Some(&value), &[]);
            appended += 1;
        }
        cluster.append("bench", 0, &builder.finish());
    }
    let mut config = ConsumerConfig::new(&cluster.bootstrap()).expect("config");
    // The fetch left in flight at the end of a pass long-polls at the log
    // end; it must not hold the next pass up for the default 500 ms.
    config
        .set("fetch.max.wait.ms", "1")
        .expect("fetch.max.wait.ms");
    let mut consumer = rt
        .block_on(async { Consumer::new(config) })
        .expect("consumer");
    let tp = TopicPartition::new("bench", 0);
    consumer.assign([tp.clone()]);
    let mut group = c.benchmark_group("consumer_poll");
    group.throughput(Throughput::Elements(CONSUMED as u64));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("100B", |b| {
        b.iter(|| {
            rt.block_on(async {
                consumer.seek(&tp, 0).expect("seek");
                let mut read = 0;
                while read < CONSUMED {
                    let records = consumer.poll(Duration::from_secs(5)).await.expect("poll");
                    read += records.len();
                    black_box(records);
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, producer_send, consumer_poll);
criterion_main!(benches);
