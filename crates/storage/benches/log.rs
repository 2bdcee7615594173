//! Append and sequential-read throughput of one log, with 16 KiB batches of
//! 100-byte records, in a temp dir (the page cache, as Kafka runs).
//!
//!     cargo bench -p storage --bench log
//!
//! Results and the machine's own `dd` speed are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use records::RecordBatchBuilder;
use storage::{LogConfig, LogManager, TopicPartition};

const BATCH_BYTES: usize = 16 * 1024;
const RECORD_BYTES: usize = 100;
/// The log is emptied when it grows past this, outside the timed part, so
/// a long run does not fill the disk.
const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;

/// As close to 16 KiB as 100-byte records allow.
fn batch_16k() -> Bytes {
    let mut builder = RecordBatchBuilder::with_capacity(BATCH_BYTES);
    let value = [b'v'; RECORD_BYTES];
    let mut timestamp = 1_700_000_000_000;
    loop {
        let next = builder.record_size(timestamp, None, Some(&value), &[]);
        if builder.size_in_bytes() + next > BATCH_BYTES {
            break;
        }
        builder.append(timestamp, None, Some(&value), &[]);
        timestamp += 1;
    }
    builder.finish()
}

fn open() -> (tempfile::TempDir, LogManager, std::sync::Arc<storage::Log>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig::default();
    let manager = LogManager::open(&[dir.path().to_path_buf()], config).expect("open");
    let log = manager
        .get_or_create(&TopicPartition::new("bench", 0), [1; 16], config)
        .expect("create");
    (dir, manager, log)
}

fn append(c: &mut Criterion) {
    let batch = batch_16k();
    let (_dir, _manager, log) = open();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("16KiB_batch_100B_records", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(log.append_as_leader(&batch, 0, 0).expect("append"));
            }
            let elapsed = start.elapsed();
            if log.size_in_bytes() > MAX_LOG_BYTES {
                log.truncate_fully_and_start_at(log.log_end_offset())
                    .expect("truncate");
            }
            elapsed
        });
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = batch_16k();
    let (_dir, _manager, log) = open();
    let batches = 256 * 1024 * 1024 / batch.len();
    for _ in 0..batches {
        log.append_as_leader(&batch, 0, 0).expect("append");
    }
    let end = log.log_end_offset();
    let mut group = c.benchmark_group("sequential_read");
    for max_bytes in [16 * 1024, 1024 * 1024] {
        let per_read = log.read(0, max_bytes, None).expect("read").records.len();
        group.throughput(Throughput::Bytes(per_read as u64));
        group.bench_function(format!("max_bytes_{max_bytes}"), |b| {
            let mut offset = 0;
            b.iter(|| {
                let read = log.read(offset, max_bytes, None).expect("read");
                let records = black_box(read.records);
                let last = records::BatchHeader::parse(&records[records.len() - batch.len()..])
                    .expect("header");
                offset = last.next_offset();
                if offset >= end {
                    offset = 0;
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
