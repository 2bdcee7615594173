//! Fuzz target for the consumer's full batch decoder: `records::decode_batch`
//! with the real codecs, on compressed batches whose records section is
//! damaged or made up (what a broken or hostile broker could send). It
//! returns records or an error, never panics, and never allocates much more
//! than the bytes it was given could decompress to: a length field in a
//! codec's framing is a claim to check, not a size to reserve.
//!
//! Bounded for CI; `PROPTEST_CASES=100000 cargo nextest run -p client
//! --test fuzz` runs it longer.

use bytes::Bytes;
use client::codec::{compress, decompress};
use fuzz_support::{MeasuringAllocator, largest_allocation};
use proptest::prelude::*;
use records::{Compression, RecordBatchBuilder, decode_batch};

#[global_allocator]
static GLOBAL: MeasuringAllocator = MeasuringAllocator;

/// What decompressing `input_len` bytes may allocate at once: what the
/// densest of the four codecs could expand them to (zstd and gzip reach
/// about 1000:1 on runs, snappy about 20:1), plus the decoders' own
/// windows and tables. A believed length field asks for up to the 256 MiB
/// cap from a handful of bytes.
fn allocation_bound(input_len: usize) -> usize {
    input_len * 1100 + (8 << 20)
}

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn decoded(batch: &Bytes) {
    let _ = decode_batch(batch, decompress);
}

/// A compressed batch of `values`, its records section then damaged.
fn damaged_batch(codec: Compression, values: &[Vec<u8>], damage: &[(usize, u8)]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::default();
    for value in values {
        builder.append(1_000, None, Some(value), &[]);
    }
    let batch = builder
        .finish_compressed(codec, |raw, out| compress(codec, raw, out))
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mut batch = batch;
    let header = records::HEADER_LEN;
    if batch.len() > header {
        let body = batch.len() - header;
        for &(at, byte) in damage {
            batch[header + at % body] = byte;
        }
        // Re-seal, so the damage reaches the codec instead of the CRC check.
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    batch
}

proptest! {
    #![proptest_config(fuzz_support::config(256))]

    #[test]
    fn arbitrary_compressed_sections_are_errors_or_bounded(
        codec in prop::sample::select(CODECS.to_vec()),
        section in proptest::collection::vec(any::<u8>(), 0..64),
        xerial in any::<bool>(),
    ) {
        let mut input = Vec::new();
        if xerial && codec == Compression::Snappy {
            input.extend_from_slice(&[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        }
        input.extend_from_slice(&section);
        let largest = largest_allocation(|| {
            let _ = decompress(codec, &input);
        });
        prop_assert!(
            largest <= allocation_bound(input.len()),
            "{codec:?}: {largest} bytes allocated at once for {} bytes of input",
            input.len()
        );
    }

    #[test]
    fn damaged_compressed_batches_are_errors_not_panics(
        codec in prop::sample::select(CODECS.to_vec()),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
        damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let batch = Bytes::from(damaged_batch(codec, &values, &damage));
        let largest = largest_allocation(|| decoded(&batch));
        prop_assert!(
            largest <= allocation_bound(batch.len()),
            "{codec:?}: {largest} bytes allocated at once for a {}-byte batch",
            batch.len()
        );
        if damage.is_empty() {
            let (_, records) = decode_batch(&batch, decompress)?;
            prop_assert_eq!(records.len(), values.len());
        }
    }
}
