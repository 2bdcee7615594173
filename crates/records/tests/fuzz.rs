//! Fuzz targets for the batch format: arbitrary bytes and damaged valid
//! batches through the header view, the validator, the batch iterator and
//! the record decoder. Whatever the bytes, every call returns (an error if
//! the bytes are wrong), never panics, and never allocates more than the
//! input could justify: a length or count field is a claim to check, not a
//! size to reserve. Round trips pin the builder against the decoder.
//!
//! Bounded for CI; `PROPTEST_CASES=100000 cargo nextest run -p records
//! --test fuzz` runs each target longer.

use bytes::Bytes;
use fuzz_support::{MeasuringAllocator, largest_allocation};
use proptest::prelude::*;
use records::varint::{get_varint, get_varlong, put_varlong};
use records::{
    BatchHeader, Batches, Compression, HEADER_LEN, HeaderRef, LOG_OVERHEAD, RecordBatchBuilder,
    RecordIter, TimestampType, decode_batch, peek_batch_size, set_base_offset_and_epoch,
    valid_prefix, validate_batch,
};

// ------------------------------------------------------------ allocations

#[global_allocator]
static GLOBAL: MeasuringAllocator = MeasuringAllocator;

/// What decoding `input_len` bytes may allocate at once: a `Vec<Record>`
/// with one slot per input byte at the very most (each record takes at
/// least one byte), plus small fixed buffers. A length field believed
/// would ask for gigabytes.
fn allocation_bound(input_len: usize) -> usize {
    input_len * std::mem::size_of::<records::Record>() + 4096
}

/// The identity "codec": compressed batches reach the decoder with the
/// records section as it is, so damage to them is fuzzed too.
fn identity_codec(_: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    Ok(data.to_vec())
}

const MAX: usize = 1 << 20;

/// Every read path over `data`. Returns whether it validated as one batch.
fn exercise(data: &[u8]) -> bool {
    let _ = BatchHeader::parse(data).map(|h| {
        // Derived values must not overflow whatever the fields hold.
        let _ = (h.size_in_bytes(), h.last_offset(), h.next_offset());
        let _ = (h.compression(), h.timestamp_type(), h.is_control());
    });
    let _ = peek_batch_size(data);
    let valid = validate_batch(data, MAX).is_ok();
    let mut end = 0;
    for item in Batches::new(data, MAX) {
        match item {
            Ok((header, bytes)) => {
                assert_eq!(bytes.len(), header.size_in_bytes());
                end += bytes.len();
            }
            Err(_) => break,
        }
    }
    let (prefix, err) = valid_prefix(data, MAX);
    assert_eq!(prefix, end, "valid_prefix and Batches disagree");
    assert!(prefix <= data.len());
    assert_eq!(err.is_none(), prefix == data.len());
    let bytes = Bytes::copy_from_slice(data);
    if let Ok((header, records)) = decode_batch(&bytes, identity_codec) {
        assert!(records.len() <= header.record_count.max(0) as usize);
        for record in &records {
            // Every borrowed field lies inside the input.
            let len = record.key.as_ref().map_or(0, Bytes::len)
                + record.value.as_ref().map_or(0, Bytes::len);
            assert!(len <= data.len());
        }
    }
    if data.len() > HEADER_LEN {
        let count = i32::from_be_bytes([data[57], data[58], data[59], data[60]]);
        for record in RecordIter::new(&data[HEADER_LEN..], count) {
            match record {
                Ok(r) => {
                    let _ = r.headers();
                }
                Err(_) => break,
            }
        }
    }
    valid
}

fn assert_bounded(data: &[u8]) {
    let largest = largest_allocation(|| {
        exercise(data);
    });
    assert!(
        largest <= allocation_bound(data.len()),
        "{largest} bytes allocated at once for {} bytes of input",
        data.len()
    );
}

// ------------------------------------------------------------ valid batches

type Rec = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn arb_record() -> impl Strategy<Value = Rec> {
    (
        // Any i64: the builder and decoder must agree even where the delta
        // from the first timestamp does not fit (Kafka's Java wraps).
        prop_oneof![any::<i64>(), 0i64..1 << 42, Just(-1i64)],
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        proptest::collection::vec(
            (
                "\\PC{0,6}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            ),
            0..3,
        ),
    )
}

fn build(records: &[Rec], timestamp_type: TimestampType) -> RecordBatchBuilder {
    let mut builder = RecordBatchBuilder::default().timestamp_type(timestamp_type);
    for (ts, key, value, headers) in records {
        let headers: Vec<HeaderRef<'_>> = headers
            .iter()
            .map(|(k, v)| HeaderRef {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let predicted = builder.record_size(*ts, key.as_deref(), value.as_deref(), &headers);
        let before = builder.size_in_bytes();
        builder.append(*ts, key.as_deref(), value.as_deref(), &headers);
        assert_eq!(builder.size_in_bytes() - before, predicted);
    }
    builder
}

fn arb_batch() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(arb_record(), 1..8),
        any::<bool>(),
        any::<i64>(),
    )
        .prop_map(|(records, compressed, base_offset)| {
            let builder = build(&records, TimestampType::CreateTime);
            let batch = if compressed {
                builder
                    .finish_compressed(Compression::Gzip, |raw, out| {
                        out.extend_from_slice(raw);
                        Ok::<(), String>(())
                    })
                    .unwrap_or_default()
            } else {
                builder.finish()
            };
            let mut batch = batch.to_vec();
            set_base_offset_and_epoch(&mut batch, base_offset, 0);
            batch
        })
}

// ------------------------------------------------------------ damage

/// Offsets of the header's fields, where damage means the most.
const FIELDS: [(usize, usize); 13] = [
    (0, 8),  // base offset
    (8, 4),  // batch length
    (12, 4), // partition leader epoch
    (16, 1), // magic
    (17, 4), // crc
    (21, 2), // attributes
    (23, 4), // last offset delta
    (27, 8), // base timestamp
    (35, 8), // max timestamp
    (43, 8), // producer id
    (51, 2), // producer epoch
    (53, 4), // base sequence
    (57, 4), // record count
];

#[derive(Debug, Clone)]
enum Damage {
    FlipBit(usize, u8),
    Truncate(usize),
    /// A header field set to an extreme or off-by-one value.
    Field(usize, i64),
    /// A byte of the records section set to a value that means "more
    /// varint bytes follow" or "-1", or anything.
    Byte(usize, u8),
    /// Bytes inserted or removed inside the records section.
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// A varint length inside the records section replaced by a huge one.
    HugeVarint(usize, i64),
}

fn arb_damage() -> impl Strategy<Value = Damage> {
    let extreme = prop_oneof![
        Just(0i64),
        Just(-1),
        Just(1),
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MIN)),
        Just(i64::MAX),
        Just(i64::MIN),
        -100i64..100,
        any::<i64>(),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
        any::<usize>().prop_map(Damage::Truncate),
        (0..FIELDS.len(), extreme.clone()).prop_map(|(f, v)| Damage::Field(f, v)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0x80u8),
                Just(0xff),
                Just(0x01),
                Just(0x00),
                any::<u8>()
            ]
        )
            .prop_map(|(at, b)| Damage::Byte(at, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
        (any::<usize>(), 1usize..12).prop_map(|(at, n)| Damage::Remove(at, n)),
        (any::<usize>(), extreme).prop_map(|(at, v)| Damage::HugeVarint(at, v)),
    ]
}

fn apply(batch: &mut Vec<u8>, damage: &Damage) {
    let len = batch.len();
    let body = |at: usize| HEADER_LEN + at % (len - HEADER_LEN).max(1);
    match damage {
        Damage::FlipBit(at, bit) => batch[at % len] ^= 1 << bit,
        Damage::Truncate(at) => batch.truncate(at % len),
        Damage::Field(field, value) if FIELDS[*field].0 + FIELDS[*field].1 <= len => {
            let (offset, width) = FIELDS[*field];
            let bytes = value.to_be_bytes();
            batch[offset..offset + width].copy_from_slice(&bytes[8 - width..]);
        }
        Damage::Byte(at, b) if len > HEADER_LEN => {
            let at = body(*at);
            batch[at] = *b;
        }
        Damage::Insert(at, bytes) if len > HEADER_LEN => {
            let at = body(*at);
            batch.splice(at..at, bytes.iter().copied());
        }
        Damage::Remove(at, n) if len > HEADER_LEN => {
            let at = body(*at);
            let end = (at + n).min(len);
            batch.drain(at..end);
        }
        Damage::HugeVarint(at, value) if len > HEADER_LEN => {
            let at = body(*at);
            let mut varint = Vec::new();
            put_varlong(&mut varint, *value);
            batch.splice(at..(at + 1).min(len), varint);
        }
        _ => {}
    }
}

/// Makes the length field and the CRC agree with the bytes again, so the
/// damage reaches the record decoder instead of stopping at validation.
fn reseal(batch: &mut [u8]) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

proptest! {
    #![proptest_config(fuzz_support::config(512))]

    #[test]
    fn arbitrary_bytes_are_errors_not_panics(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            // Bytes that pass the magic check, so the length and count
            // fields are what gets fuzzed.
            proptest::collection::vec(any::<u8>(), HEADER_LEN..300).prop_map(|mut d| {
                d[16] = 2;
                d
            }),
        ]
    ) {
        assert_bounded(&data);
        let mut sealed = data.clone();
        reseal(&mut sealed);
        assert_bounded(&sealed);
    }

    #[test]
    fn damaged_batches_are_errors_not_panics(
        batch in arb_batch(),
        damages in proptest::collection::vec(arb_damage(), 1..4),
        sealed in any::<bool>(),
    ) {
        let mut damaged = batch.clone();
        for damage in &damages {
            if !damaged.is_empty() {
                apply(&mut damaged, damage);
            }
        }
        if sealed {
            reseal(&mut damaged);
        }
        assert_bounded(&damaged);
        if !sealed && damaged != batch && damaged.len() >= 16 && damaged[16..] != batch[16..] {
            // Damage past the offset fields breaks the CRC or the length.
            prop_assert!(validate_batch(&damaged, MAX).is_err());
        }
    }

    #[test]
    fn nothing_before_the_damage_is_lost(
        batches in proptest::collection::vec(arb_batch(), 1..5),
        tail in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut log = Vec::new();
        let mut ends = Vec::new();
        for batch in &batches {
            log.extend_from_slice(batch);
            ends.push(log.len());
        }
        let intact = log.len();
        log.extend_from_slice(&tail);
        let (prefix, err) = valid_prefix(&log, MAX);
        prop_assert!(prefix >= intact, "valid prefix {prefix} < {intact} intact bytes");
        prop_assert_eq!(err.is_none(), prefix == log.len());
        let yielded: Vec<usize> = Batches::new(&log, MAX)
            .map_while(Result::ok)
            .map(|(_, b)| b.len())
            .scan(0, |end, len| { *end += len; Some(*end) })
            .take(ends.len())
            .collect();
        prop_assert_eq!(yielded, ends);
    }

    #[test]
    fn build_decode_round_trips_any_timestamps(
        records in proptest::collection::vec(arb_record(), 1..20),
        log_append_time in any::<bool>(),
        compressed in any::<bool>(),
        producer in (any::<i64>(), any::<i16>(), any::<i32>()),
        base_offset in 0i64..1 << 62,
        epoch in any::<i32>(),
    ) {
        let timestamp_type = if log_append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        let builder = build(&records, timestamp_type).producer(producer.0, producer.1, producer.2);
        let predicted = builder.size_in_bytes();
        let batch = if compressed {
            // Byte reversal stands in for a codec.
            builder.finish_compressed(Compression::Zstd, |raw, out| {
                out.extend(raw.iter().rev());
                Ok::<(), String>(())
            }).map_err(TestCaseError::fail)?
        } else {
            builder.finish()
        };
        prop_assert_eq!(batch.len(), predicted);
        let mut batch = batch.to_vec();
        set_base_offset_and_epoch(&mut batch, base_offset, epoch);
        let batch = Bytes::from(batch);
        let header = validate_batch(&batch, usize::MAX)?;
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(header.base_offset, base_offset);
        prop_assert_eq!(header.partition_leader_epoch, epoch);
        prop_assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), producer);
        prop_assert_eq!(header.timestamp_type(), timestamp_type);
        prop_assert_eq!(header.base_timestamp, records[0].0);
        let max_timestamp = records.iter().map(|r| r.0).max().unwrap_or(-1).max(-1);
        prop_assert_eq!(header.max_timestamp, max_timestamp);
        let (_, decoded) = decode_batch(&batch, |codec, data| {
            if codec == Compression::Zstd {
                Ok(data.iter().rev().copied().collect())
            } else {
                Err(format!("unexpected codec {codec:?}"))
            }
        })?;
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (record, (ts, key, value, headers))) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(record.offset, base_offset + i as i64);
            let expected_ts = if log_append_time { max_timestamp } else { *ts };
            prop_assert_eq!(record.timestamp, expected_ts);
            prop_assert_eq!(record.key.as_deref(), key.as_deref());
            prop_assert_eq!(record.value.as_deref(), value.as_deref());
            prop_assert_eq!(record.headers.len(), headers.len());
            for (h, (k, v)) in record.headers.iter().zip(headers) {
                prop_assert_eq!(&h.key, k);
                prop_assert_eq!(h.value.as_deref(), v.as_deref());
            }
        }
    }

    #[test]
    fn varints_never_panic_and_consume_at_most_ten_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..16),
        start in 0usize..16,
    ) {
        let mut pos = start;
        if get_varlong(&data, &mut pos).is_ok() {
            prop_assert!(pos > start && pos - start <= 10 && pos <= data.len());
        }
        let mut pos = start;
        let _ = get_varint(&data, &mut pos);
    }
}

// ------------------------------------------------------------ regressions
// The minimal cases of what these targets found, fixed at their cause.

/// Found by `build_decode_round_trips_any_timestamps`: the builder computed
/// a record's timestamp delta with `-`, which overflows (a panic in debug
/// builds) for timestamps further apart than `i64::MAX`, and the decoder
/// added it back with `+`, which overflows for any damaged or hostile
/// base timestamp. Both now wrap, as Kafka's Java does, so they stay
/// inverses.
#[test]
fn timestamps_whose_delta_overflows_round_trip() {
    let mut builder = RecordBatchBuilder::default();
    builder.append(1_359_156_351_336_770_840, None, None, &[]);
    builder.append(-7_864_215_685_518_004_969, None, None, &[]);
    let (_, decoded) = decode_batch(&builder.finish(), identity_codec).expect("decodes");
    let timestamps: Vec<i64> = decoded.iter().map(|r| r.timestamp).collect();
    assert_eq!(
        timestamps,
        vec![1_359_156_351_336_770_840, -7_864_215_685_518_004_969]
    );

    let mut builder = RecordBatchBuilder::default();
    builder.append(i64::MAX, None, None, &[]);
    builder.append(i64::MIN, None, None, &[]);
    let (_, decoded) = decode_batch(&builder.finish(), identity_codec).expect("decodes");
    assert_eq!(decoded[1].timestamp, i64::MIN);
}

/// The base offset lies outside the CRC, so a damaged one passes
/// validation: `last_offset` and `next_offset` saturate instead of
/// overflowing, and the decoder's record offsets wrap instead of panicking.
#[test]
fn a_base_offset_near_the_limit_does_not_overflow() {
    let mut builder = RecordBatchBuilder::default();
    builder.append(0, None, None, &[]);
    builder.append(0, None, None, &[]);
    let mut batch = builder.finish().to_vec();
    set_base_offset_and_epoch(&mut batch, i64::MAX, 0);
    let header = validate_batch(&batch, MAX).expect("the CRC does not cover the base offset");
    assert_eq!(header.last_offset(), i64::MAX);
    assert_eq!(header.next_offset(), i64::MAX);
    let (_, decoded) = decode_batch(&Bytes::from(batch), identity_codec).expect("decodes");
    assert_eq!(
        decoded[1].offset,
        i64::MAX,
        "records saturate as the header's last offset does"
    );
}

/// The allocation bound above can fail: the measuring allocator sees a
/// large allocation made inside the measured call.
#[test]
fn the_allocation_measure_sees_large_allocations() {
    let largest = largest_allocation(|| {
        let buf = vec![0u8; 1 << 20];
        std::hint::black_box(&buf);
    });
    assert!(largest >= 1 << 20, "{largest}");
}
