//! The per-record work of the clients, on one 16 KiB batch of 100-byte
//! records: `RecordBatchBuilder::append` (the producer's encoding) and
//! `decode_batch` (the consumer's decoding).
//!
//!     cargo bench -p records --bench codec
//!
//! Results, before and after each optimisation, are in BENCHMARKS.md.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use records::{RecordBatchBuilder, decode_batch};

const BATCH_BYTES: usize = 16 * 1024;
const VALUE: [u8; 100] = [b'v'; 100];

fn fill(builder: &mut RecordBatchBuilder) -> u64 {
    let mut count = 0;
    let timestamp = 1_700_000_000_000;
    while builder.size_in_bytes() + builder.record_size(timestamp, None, Some(&VALUE), &[])
        <= BATCH_BYTES
    {
        builder.append(timestamp, None, Some(&VALUE), &[]);
        count += 1;
    }
    count
}

fn codec(c: &mut Criterion) {
    let mut probe = RecordBatchBuilder::with_capacity(BATCH_BYTES);
    let count = fill(&mut probe);
    let batch: Bytes = probe.finish();

    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(count));
    group.bench_function("append_16KiB_batch_100B", |b| {
        b.iter(|| {
            let mut builder = RecordBatchBuilder::with_capacity(BATCH_BYTES);
            black_box(fill(&mut builder));
            black_box(builder.finish())
        });
    });
    group.bench_function("decode_16KiB_batch_100B", |b| {
        b.iter(|| {
            let decoded = decode_batch(&batch, |_, _| Err::<Vec<u8>, &str>("uncompressed"));
            black_box(decoded.expect("decodes"))
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
