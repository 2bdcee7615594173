//! The batch format against hand-laid bytes, and every kind of damage the
//! validator must catch. Property round trips and arbitrary input live in
//! the fuzz target beside it (`tests/fuzz.rs`).

use bytes::Bytes;
use records::{
    BatchHeader, Batches, Compression, HEADER_LEN, HeaderRef, RecordBatchBuilder, RecordsError,
    TimestampType, decode_batch, peek_batch_size, rewritten_prefix, set_base_offset_and_epoch,
    valid_prefix, validate_batch,
};

const MAX: usize = 1 << 20;

fn no_codec(_: Compression, _: &[u8]) -> Result<Vec<u8>, String> {
    Err("no codec in this test".into())
}

fn one_batch(values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::default();
    for (i, value) in values.iter().enumerate() {
        builder.append(1_000 + i as i64, None, Some(value.as_bytes()), &[]);
    }
    builder.finish()
}

#[test]
fn crc_is_castagnoli() {
    // The standard check value of CRC-32C, which Kafka's batches use.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn a_single_record_batch_is_laid_out_as_kafka_does() {
    let mut builder = RecordBatchBuilder::default();
    builder.append(1_600_000_000_000, Some(b"k"), Some(b"v"), &[]);
    let batch = builder.finish();

    // Record: attributes 0, timestamp delta 0, offset delta 0, key len 1 "k",
    // value len 1 "v", 0 headers; length 8 as zig-zag = 0x10.
    let record = [0x10, 0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00];
    let mut expected = Vec::new();
    expected.extend_from_slice(&0i64.to_be_bytes()); // base offset
    expected.extend_from_slice(&((49 + record.len()) as i32).to_be_bytes()); // batch length
    expected.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    expected.push(2); // magic
    expected.extend_from_slice(&[0; 4]); // CRC, filled below
    expected.extend_from_slice(&0i16.to_be_bytes()); // attributes
    expected.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    expected.extend_from_slice(&1_600_000_000_000i64.to_be_bytes()); // base timestamp
    expected.extend_from_slice(&1_600_000_000_000i64.to_be_bytes()); // max timestamp
    expected.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    expected.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    expected.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    expected.extend_from_slice(&1i32.to_be_bytes()); // record count
    expected.extend_from_slice(&record);
    let crc = crc32c::crc32c(&expected[21..]);
    expected[17..21].copy_from_slice(&crc.to_be_bytes());

    assert_eq!(&batch[..], &expected[..]);
    let header = validate_batch(&batch, MAX).expect("valid batch");
    assert_eq!(header.record_count, 1);
    assert_eq!(header.size_in_bytes(), batch.len());
    assert_eq!(peek_batch_size(&batch), Some(batch.len()));
}

#[test]
fn header_view_reads_every_field() {
    let mut builder = RecordBatchBuilder::default()
        .producer(7, 3, 42)
        .timestamp_type(TimestampType::LogAppendTime);
    builder.append(10, None, Some(b"a"), &[]);
    builder.append(30, None, Some(b"b"), &[]);
    builder.append(20, None, Some(b"c"), &[]);
    let batch = builder.finish();
    let header = BatchHeader::parse(&batch).expect("header");
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.partition_leader_epoch, -1);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.last_offset(), 2);
    assert_eq!(header.next_offset(), 3);
    assert_eq!(header.base_timestamp, 10);
    assert_eq!(header.max_timestamp, 30);
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (7, 3, 42)
    );
    assert_eq!(header.record_count, 3);
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.compression(), Some(Compression::None));
    assert!(!header.is_transactional() && !header.is_control());
}

#[test]
fn offsets_and_epoch_rewrite_outside_the_crc() {
    let batch = one_batch(&["x", "y"]);
    let mut in_place = batch.to_vec();
    set_base_offset_and_epoch(&mut in_place, 1_000, 7);
    let header = validate_batch(&in_place, MAX).expect("still valid after rewrite");
    assert_eq!(
        (header.base_offset, header.partition_leader_epoch),
        (1_000, 7)
    );

    let mut spliced = rewritten_prefix(&batch, 1_000, 7).to_vec();
    spliced.extend_from_slice(&batch[16..]);
    assert_eq!(spliced, in_place);
}

#[test]
fn every_flipped_bit_after_the_offset_fields_is_caught() {
    let batch = one_batch(&["hello", "world"]);
    for byte in 16..batch.len() {
        for bit in 0..8 {
            let mut damaged = batch.to_vec();
            damaged[byte] ^= 1 << bit;
            assert!(
                validate_batch(&damaged, MAX).is_err(),
                "flip of bit {bit} in byte {byte} went unnoticed"
            );
        }
    }
}

#[test]
fn truncation_bad_magic_and_size_limits_are_typed_errors() {
    let batch = one_batch(&["hello"]);
    for cut in 0..batch.len() {
        assert!(validate_batch(&batch[..cut], MAX).is_err(), "cut at {cut}");
    }
    let mut magic = batch.to_vec();
    magic[16] = 1;
    assert_eq!(validate_batch(&magic, MAX), Err(RecordsError::BadMagic(1)));
    assert!(matches!(
        validate_batch(&batch, batch.len() - 1),
        Err(RecordsError::TooLarge { .. })
    ));
    let mut longer = batch.to_vec();
    longer.push(0);
    assert!(matches!(
        validate_batch(&longer, MAX),
        Err(RecordsError::LengthMismatch { .. })
    ));
    let mut negative = batch.to_vec();
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(validate_batch(&negative, MAX).is_err());
}

#[test]
fn batches_iterates_and_stops_at_a_partial_tail() {
    let mut buf = Vec::new();
    for values in [&["a"][..], &["b", "c"][..], &["d"][..]] {
        buf.extend_from_slice(&one_batch(values));
    }
    let whole = buf.len();
    let counts: Vec<i32> = Batches::new(&buf, MAX)
        .map(|b| b.expect("valid").0.record_count)
        .collect();
    assert_eq!(counts, vec![1, 2, 1]);
    assert_eq!(valid_prefix(&buf, MAX), (whole, None));

    let last = one_batch(&["d"]).len();
    for cut in 1..last {
        let (valid, err) = valid_prefix(&buf[..whole - cut], MAX);
        assert_eq!(valid, whole - last, "cut {cut} bytes");
        assert!(matches!(err, Some(RecordsError::Truncated { .. })));
    }
}

#[test]
fn garbage_whose_length_field_runs_past_the_buffer_is_truncation_not_size() {
    let garbage = b"not a batch at all";
    let first = Batches::new(garbage, 100).next().expect("one item");
    assert!(
        matches!(first, Err(RecordsError::Truncated { .. })),
        "{first:?}"
    );
    let big = one_batch(&["a much longer value than the limit allows"]);
    let first = Batches::new(&big, 70).next().expect("one item");
    assert!(
        matches!(first, Err(RecordsError::TooLarge { .. })),
        "{first:?}"
    );
}

#[test]
fn decode_handles_null_keys_empty_values_and_headers() {
    let mut builder = RecordBatchBuilder::default();
    builder.append(5, None, Some(b""), &[]);
    builder.append(
        6,
        Some(b"key"),
        None,
        &[
            HeaderRef {
                key: "h1",
                value: Some(b"v1"),
            },
            HeaderRef {
                key: "h2",
                value: None,
            },
        ],
    );
    let mut batch = builder.finish().to_vec();
    set_base_offset_and_epoch(&mut batch, 100, 0);
    let (header, records) = decode_batch(&Bytes::from(batch), no_codec).expect("decodes");
    assert_eq!(header.base_offset, 100);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].offset, 100);
    assert_eq!(records[0].timestamp, 5);
    assert_eq!(records[0].key, None);
    assert_eq!(records[0].value.as_deref(), Some(&b""[..]));
    assert_eq!(records[1].offset, 101);
    assert_eq!(records[1].key.as_deref(), Some(&b"key"[..]));
    assert_eq!(records[1].value, None);
    assert_eq!(records[1].headers.len(), 2);
    assert_eq!(records[1].headers[0].key, "h1");
    assert_eq!(records[1].headers[1].value, None);
}

#[test]
fn compressed_batches_go_through_the_callers_codec() {
    // A stand-in codec (byte reversal) proves the builder and decoder hand
    // the records section to the codec and keep the header uncompressed.
    let mut builder = RecordBatchBuilder::default();
    builder.append(1, None, Some(b"one"), &[]);
    builder.append(2, None, Some(b"two"), &[]);
    let batch = builder
        .finish_compressed(Compression::Lz4, |raw: &[u8], out: &mut Vec<u8>| {
            out.extend(raw.iter().rev());
            Ok::<(), String>(())
        })
        .expect("compresses");
    let header = validate_batch(&batch, MAX).expect("valid");
    assert_eq!(header.compression(), Some(Compression::Lz4));
    let (_, records) = decode_batch(&batch, |codec, data| {
        assert_eq!(codec, Compression::Lz4);
        Ok::<_, String>(data.iter().rev().copied().collect())
    })
    .expect("decodes");
    let values: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(Bytes::from("one")), Some(Bytes::from("two"))]
    );
    assert!(matches!(
        decode_batch(&batch, no_codec),
        Err(RecordsError::Decompression(_))
    ));
}

#[test]
fn a_lying_record_count_is_an_error_not_a_huge_allocation() {
    let mut batch = one_batch(&["a", "b"]).to_vec();
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(validate_batch(&batch, MAX).is_err());
    assert!(decode_batch(&Bytes::from(batch), no_codec).is_err());
}

#[test]
fn record_size_predicts_growth() {
    let mut builder = RecordBatchBuilder::default();
    assert_eq!(builder.size_in_bytes(), HEADER_LEN);
    for i in 0..100i64 {
        let value = vec![b'x'; (i * 7) as usize];
        let headers = [HeaderRef {
            key: "k",
            value: Some(b"v"),
        }];
        let predicted =
            builder.record_size(1_000 + i * 1_000, Some(b"key"), Some(&value), &headers);
        let before = builder.size_in_bytes();
        builder.append(1_000 + i * 1_000, Some(b"key"), Some(&value), &headers);
        assert_eq!(builder.size_in_bytes() - before, predicted);
    }
}
