//! The log's behaviour, one feature at a time, through the public API.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use records::{RecordsError, TimestampType};
use storage::{LogConfig, StorageError};

#[test]
fn leader_appends_assign_offsets_and_epochs_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    let first = batch(5, 10, 1_000, 1);
    let info = log.append_as_leader(&first, 3, 2_000).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 4));
    assert_eq!(info.record_count, 5);
    assert_eq!(info.bytes, first.len());
    assert_eq!(info.max_timestamp, 1_004);
    assert_eq!(info.offset_of_max_timestamp, 4);
    assert_eq!(info.log_append_time_ms, -1);
    let second = batch(2, 10, 1_005, 2);
    let info = log.append_as_leader(&second, 3, 2_000).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (5, 6));
    assert_eq!(log.log_end_offset(), 7);

    let all = read_all(&log, 0);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0.base_offset, 0);
    assert_eq!(all[0].0.partition_leader_epoch, 3);
    assert_eq!(all[1].0.base_offset, 5);
    // Everything but the first 16 bytes is the producer's, untouched.
    assert_eq!(all[0].1[16..], first[16..]);
    assert_eq!(all[1].1[16..], second[16..]);
    let mut value = vec![2u8; 10];
    value[0] = 0;
    let first_value = value.clone();
    value[0] = 1;
    assert_eq!(values(&all[1].1), vec![first_value, value]);

    // A read from the middle of a batch starts with that batch.
    let read = log.read(6, 1, None).unwrap();
    assert_eq!(split(&read.records)[0].0.base_offset, 5);
    assert_eq!(read.log_end_offset, 7);
    // At the LEO: empty; past it or below the start: out of range.
    assert!(log.read(7, 1000, None).unwrap().records.is_empty());
    assert!(matches!(
        log.read(8, 1000, None),
        Err(StorageError::OffsetOutOfRange {
            offset: 8,
            log_start_offset: 0,
            log_end_offset: 7
        })
    ));
    assert!(matches!(
        log.read(-1, 1000, None),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 7)));
}

#[test]
fn reads_respect_max_bytes_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    let b = batch(10, 100, 0, 1);
    for _ in 0..10 {
        log.append_as_leader(&b, 0, 0).unwrap();
    }
    let size = b.len();
    // max_bytes smaller than a batch still returns one whole batch.
    let read = log.read(0, 10, None).unwrap();
    assert_eq!(read.records.len(), size);
    // Room for two and a half: two.
    let read = log.read(25, size * 5 / 2, None).unwrap();
    let batches = split(&read.records);
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].0.base_offset, 20);
    // The bound (a consumer's HW) cuts batches starting at or past it.
    let read = log.read(0, 1 << 20, Some(35)).unwrap();
    assert_eq!(split(&read.records).len(), 4);
    assert!(log.read(30, 1 << 20, Some(30)).unwrap().records.is_empty());
    assert!(log.read(40, 1 << 20, Some(35)).unwrap().records.is_empty());
}

#[test]
fn segments_roll_on_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(4096));
    let mut expected = Vec::new();
    for i in 0..50u8 {
        let b = batch(3, 200, i64::from(i) * 10, i);
        log.append_as_leader(&b, 0, 0).unwrap();
        expected.push(b);
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let files = segment_files(&log.dir());
    assert_eq!(files.len(), log.segment_count());
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 4096);
    }
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 50);
    for (i, (header, bytes)) in all.iter().enumerate() {
        assert_eq!(header.base_offset, i as i64 * 3);
        assert_eq!(bytes[16..], expected[i][16..]);
    }
    // Every offset reads back the batch that holds it.
    for offset in 0..150 {
        let read = log.read(offset, 1, None).unwrap();
        assert_eq!(split(&read.records)[0].0.base_offset, offset / 3 * 3);
    }
}

#[test]
fn segments_roll_on_time_and_on_a_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..small_config(1 << 20)
    };
    let (_m, log) = open(dir.path(), config);
    log.append_as_leader(&batch(1, 10, 10_000, 0), 0, 10_000)
        .unwrap();
    log.append_as_leader(&batch(1, 10, 10_500, 0), 0, 10_500)
        .unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append_as_leader(&batch(1, 10, 11_001, 0), 0, 11_001)
        .unwrap();
    assert_eq!(log.segment_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_index_bytes: 8 * 4,
        index_interval_bytes: 1,
        ..small_config(1 << 20)
    };
    let (_m, log) = open(dir.path(), config);
    for _ in 0..20 {
        log.append_as_leader(&batch(1, 10, 0, 0), 0, 0).unwrap();
    }
    assert!(log.segment_count() >= 4, "{}", log.segment_count());
    assert_eq!(read_all(&log, 0).len(), 20);
}

#[test]
fn bad_batches_are_refused_and_the_log_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 2000,
        ..small_config(1 << 20)
    };
    let (_m, log) = open(dir.path(), config);
    let good = batch(2, 10, 0, 1);
    log.append_as_leader(&good, 0, 0).unwrap();
    let before = read_all(&log, 0);

    let mut bad_crc = BytesMut::from(&good[..]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_magic = BytesMut::from(&good[..]);
    bad_magic[16] = 1;
    let mut bad_length = BytesMut::from(&good[..]);
    bad_length[11] = bad_length[11].wrapping_add(1);
    let too_large = batch(1, 3000, 0, 1);
    // A good batch followed by a bad one: nothing at all is appended.
    let mut mixed = BytesMut::from(&good[..]);
    mixed.extend_from_slice(&bad_crc);
    let truncated = good.slice(..good.len() - 1);

    type Check = fn(&StorageError) -> bool;
    let cases: Vec<(&str, Bytes, Check)> = vec![
        ("crc", bad_crc.freeze(), |e| {
            matches!(
                e,
                StorageError::InvalidBatch(RecordsError::CrcMismatch { .. })
            )
        }),
        ("magic", bad_magic.freeze(), |e| {
            matches!(e, StorageError::InvalidBatch(RecordsError::BadMagic(1)))
        }),
        ("length", bad_length.freeze(), |e| {
            matches!(
                e,
                StorageError::InvalidBatch(RecordsError::Truncated { .. })
            )
        }),
        ("too large", too_large, |e| {
            matches!(e, StorageError::MessageTooLarge { max: 2000, .. })
        }),
        ("mixed", mixed.freeze(), |e| {
            matches!(
                e,
                StorageError::InvalidBatch(RecordsError::CrcMismatch { .. })
            )
        }),
        ("truncated", truncated, |e| {
            matches!(
                e,
                StorageError::InvalidBatch(RecordsError::Truncated { .. })
            )
        }),
    ];
    for (name, bytes, expected) in cases {
        for leader in [true, false] {
            let result = if leader {
                log.append_as_leader(&bytes, 0, 0)
            } else {
                log.append_as_follower(&bytes)
            };
            let err = result.expect_err(name);
            assert!(expected(&err), "{name}: {err}");
            assert_eq!(log.log_end_offset(), 2, "{name}");
            assert_eq!(read_all(&log, 0), before, "{name}");
        }
    }
    let segment = segment_files(&log.dir())[0].clone();
    assert_eq!(std::fs::metadata(segment).unwrap().len(), good.len() as u64);
}

#[test]
fn records_bigger_than_a_segment_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1000));
    let err = log
        .append_as_leader(&batch(1, 2000, 0, 0), 0, 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::RecordBatchTooLarge {
                segment_bytes: 1000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn follower_appends_keep_offsets_and_follow_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    let mut b1 = BytesMut::from(&batch(3, 10, 0, 1)[..]);
    records::set_base_offset_and_epoch(&mut b1, 0, 1);
    let mut b2 = BytesMut::from(&batch(2, 10, 0, 2)[..]);
    records::set_base_offset_and_epoch(&mut b2, 3, 4);
    let mut both = b1.clone();
    both.extend_from_slice(&b2);
    let info = log.append_as_follower(&both.freeze()).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 4));
    assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3)]);
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 3)));

    // Not at the LEO: refused.
    let mut b3 = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut b3, 9, 4);
    assert!(matches!(
        log.append_as_follower(&b3.clone().freeze()),
        Err(StorageError::OffsetMismatch {
            expected: 5,
            actual: 9
        })
    ));
    // Offsets that overflow an i64: refused, not a panic.
    let mut huge = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut huge, 5, 4);
    let mut overflow = BytesMut::from(&batch(3, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut overflow, i64::MAX - 1, 4);
    huge.extend_from_slice(&overflow);
    assert!(matches!(
        log.append_as_follower(&huge.freeze()),
        Err(StorageError::InvalidBatch(_))
    ));
    // A gap too wide for one segment's 32-bit relative offsets.
    let mut wide = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut wide, 5, 4);
    let mut far = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut far, 5 + (1 << 33), 4);
    wide.extend_from_slice(&far);
    assert!(matches!(
        log.append_as_follower(&wide.freeze()),
        Err(StorageError::InvalidBatch(_))
    ));
    records::set_base_offset_and_epoch(&mut b3, 5, 4);
    log.append_as_follower(&b3.freeze()).unwrap();
    // A follower batch far past the active segment's base rolls a segment.
    let mut jump = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut jump, 6, 4);
    let mut far = BytesMut::from(&batch(1, 10, 0, 3)[..]);
    records::set_base_offset_and_epoch(&mut far, 1 << 32, 4);
    let mut seq = jump.clone();
    seq.extend_from_slice(&far);
    log.append_as_follower(&seq.freeze()).unwrap();
    assert_eq!(log.log_end_offset(), 1 + (1 << 32));
    assert_eq!(log.segment_count(), 2);
    let read = log.read(1 << 32, 1, None).unwrap();
    assert_eq!(split(&read.records)[0].0.base_offset, 1 << 32);
    let read = log.read(7, 1, None).unwrap();
    assert_eq!(split(&read.records)[0].0.base_offset, 1 << 32);
    log.truncate_to(7).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(read_all(&log, 0)[1].1[..], b2[..]);
}

#[test]
fn truncation_removes_whole_batches_and_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(2048));
    for i in 0..30 {
        log.append_as_leader(&batch(4, 100, i, 0), i as i32 / 10, 0)
            .unwrap();
    }
    assert_eq!(log.log_end_offset(), 120);
    log.set_high_watermark(100);
    let segments_before = log.segment_count();
    // 50 lies inside the batch [48, 51]: that batch goes.
    assert_eq!(log.truncate_to(50).unwrap(), 48);
    assert_eq!(log.log_end_offset(), 48);
    assert_eq!(log.high_watermark(), 48);
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 40)]);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 12);
    // Appends continue at the new end, also across rolls.
    for _ in 0..10 {
        log.append_as_leader(&batch(4, 100, 0, 9), 5, 0).unwrap();
    }
    assert_eq!(log.log_end_offset(), 88);
    assert_eq!(read_all(&log, 0).len(), 22);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 48)));
    // At or past the end: nothing happens.
    assert_eq!(log.truncate_to(1000).unwrap(), 88);
    // To zero: empty log.
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert!(read_all(&log, 0).is_empty());
    assert_eq!(log.latest_epoch(), None);
}

#[test]
fn truncate_fully_restarts_the_log_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(2048));
    for _ in 0..10 {
        log.append_as_leader(&batch(4, 100, 0, 0), 2, 0).unwrap();
    }
    log.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!(log.log_start_offset(), 1000);
    assert_eq!(log.log_end_offset(), 1000);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(segment_files(&log.dir()).len(), 1);
    assert!(matches!(
        log.read(0, 100, None),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let info = log.append_as_leader(&batch(1, 10, 0, 0), 3, 0).unwrap();
    assert_eq!(info.first_offset, 1000);
    assert_eq!(log.epoch_entries(), vec![(3, 1000)]);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(2048));
    // Batch i holds records with timestamps 1000*i + 0..4.
    for i in 0..40i64 {
        log.append_as_leader(&batch(5, 50, 1000 * i, 0), 0, 0)
            .unwrap();
    }
    assert!(log.segment_count() > 3);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(3).unwrap(), Some((3, 3)));
    assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((5, 1000)));
    assert_eq!(
        log.offset_for_timestamp(17_002).unwrap(),
        Some((87, 17_002))
    );
    assert_eq!(
        log.offset_for_timestamp(39_004).unwrap(),
        Some((199, 39_004))
    );
    assert_eq!(log.offset_for_timestamp(39_005).unwrap(), None);
}

#[test]
fn log_append_time_stamps_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..small_config(1 << 20)
    };
    let (_m, log) = open(dir.path(), config);
    let info = log.append_as_leader(&batch(3, 10, 5, 0), 0, 777).unwrap();
    assert_eq!(info.log_append_time_ms, 777);
    assert_eq!(info.max_timestamp, 777);
    let (header, bytes) = read_all(&log, 0).remove(0);
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, 777);
    records::validate_batch(&bytes, usize::MAX).unwrap();
}

#[test]
fn leader_batches_without_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    // A well-formed batch that claims no records.
    let mut empty = BytesMut::from(&batch(1, 10, 0, 0)[..]);
    empty[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&empty[21..]);
    empty[17..21].copy_from_slice(&crc.to_be_bytes());
    let empty = empty.freeze();
    assert!(matches!(
        log.append_as_leader(&empty, 0, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    let info = log.append_as_leader(&Bytes::new(), 0, 0).unwrap();
    assert_eq!(info.record_count, 0);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn retention_deletes_old_closed_segments_below_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..small_config(2048)
    };
    let (manager, log) = open(dir.path(), config);
    for i in 0..30i64 {
        log.append_as_leader(&batch(2, 300, i * 1000, 0), 0, 0)
            .unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 4);
    // Nothing committed yet: nothing may go.
    assert_eq!(manager.run_retention(100_000).unwrap().segments_deleted, 0);
    log.set_high_watermark(log.log_end_offset());
    // At 25_000 the segments whose newest record is older than 15_000 go.
    let stats = manager.run_retention(25_000).unwrap();
    assert!(stats.segments_deleted > 0);
    let start = log.log_start_offset();
    assert!(start > 0);
    let first = read_all(&log, start);
    assert!(
        first[0].0.max_timestamp >= 15_000 - 2_000,
        "{:?}",
        first[0].0
    );
    assert!(matches!(
        log.read(0, 100, None),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Far in the future: everything but the active segment goes.
    manager.run_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(segment_files(&log.dir()).len(), 1);
    log.append_as_leader(&batch(1, 10, 0, 0), 0, 0).unwrap();
}

#[test]
fn size_retention_keeps_the_log_under_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(8192),
        ..small_config(2048)
    };
    let (manager, log) = open(dir.path(), config);
    for _ in 0..40 {
        log.append_as_leader(&batch(2, 300, 0, 0), 0, 0).unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let before = log.size_in_bytes();
    let stats = manager.run_retention(0).unwrap();
    assert_eq!(before - stats.bytes_deleted, log.size_in_bytes());
    assert!(
        log.size_in_bytes() <= 8192 + 2048,
        "{}",
        log.size_in_bytes()
    );
    assert!(log.size_in_bytes() > 8192 - 2048);
}

#[test]
fn advance_log_start_offset_deletes_whole_segments_below() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(2048));
    for i in 0..20 {
        log.append_as_leader(&batch(2, 300, 0, 0), i / 5, 0)
            .unwrap();
    }
    let segments = log.segment_count();
    log.advance_log_start_offset(21).unwrap();
    assert_eq!(log.log_start_offset(), 21);
    assert!(log.segment_count() < segments);
    assert!(matches!(
        log.read(20, 100, None),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // 21 is inside the batch [20, 21]: that batch is returned.
    assert_eq!(
        split(&log.read(21, 1, None).unwrap().records)[0]
            .0
            .base_offset,
        20
    );
    assert_eq!(log.epoch_entries()[0], (2, 21));
    assert!(matches!(
        log.advance_log_start_offset(41),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.advance_log_start_offset(5).unwrap();
    assert_eq!(log.log_start_offset(), 21);
}

#[test]
fn flush_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: Some(10),
        ..small_config(1 << 20)
    };
    let (_m, log) = open(dir.path(), config);
    log.append_as_leader(&batch(5, 10, 0, 0), 0, 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append_as_leader(&batch(5, 10, 0, 0), 0, 0).unwrap();
    assert_eq!(log.recovery_point(), 10);
    log.append_as_leader(&batch(1, 10, 0, 0), 0, 0).unwrap();
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 11);
}

#[test]
fn a_new_leader_epoch_starts_at_the_log_end_even_before_any_append() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, log) = open(dir.path(), small_config(1 << 20));
    log.append_as_leader(&batch(3, 10, 1_000, 1), 0, 2_000)
        .unwrap();
    assert!(log.assign_leader_epoch(4).unwrap());
    assert!(
        !log.assign_leader_epoch(4).unwrap(),
        "an epoch is assigned once"
    );
    assert!(
        !log.assign_leader_epoch(2).unwrap(),
        "older epochs are ignored"
    );
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 3)]);
    // A follower holding epoch 0 records past offset 3 learns epoch 0 ended there.
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 3)));
    // Appends under the new epoch do not add another entry, and the
    // history survives a reopen.
    log.append_as_leader(&batch(2, 10, 1_003, 1), 4, 2_000)
        .unwrap();
    drop(log);
    manager.shutdown().unwrap();
    drop(manager);
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 3)]);
}

#[test]
fn truncating_at_the_end_forgets_an_epoch_begun_without_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(1 << 20));
    log.append_as_leader(&batch(3, 10, 1_000, 1), 0, 2_000)
        .unwrap();
    // Led epoch 1 without writing, then became a follower again.
    log.assign_leader_epoch(1).unwrap();
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.truncate_to(3).unwrap(), 3);
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    assert_eq!(log.latest_epoch(), Some(0));
    // Past the end too, and nothing else changes.
    log.assign_leader_epoch(2).unwrap();
    assert_eq!(log.truncate_to(10).unwrap(), 3);
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    assert_eq!(read_all(&log, 0).len(), 1);
}
