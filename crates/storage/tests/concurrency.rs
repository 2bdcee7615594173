//! One appender and many readers hammering the same log: a reader never
//! sees a partial batch, a CRC failure or a gap, whatever the appender
//! (rolling, flushing, truncating) does meanwhile.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use storage::{Log, StorageError};

/// Checks one read at `offset`: whole valid batches, contiguous, the first
/// holding `offset`. Returns the offset after the last batch.
fn check_read(log: &Log, offset: i64, max_bytes: usize) -> Option<i64> {
    let read = match log.read(offset, max_bytes, None) {
        Ok(read) => read,
        // A truncation or retention moved the log under the reader.
        Err(StorageError::OffsetOutOfRange { .. }) => return None,
        Err(err) => panic!("read at {offset}: {err}"),
    };
    if read.records.is_empty() {
        return None;
    }
    let mut at = 0;
    let mut expected = None;
    let mut next = offset;
    while at < read.records.len() {
        let size = records::peek_batch_size(&read.records[at..]).expect("partial length field");
        assert!(at + size <= read.records.len(), "partial batch at {at}");
        let header = records::validate_batch(&read.records[at..at + size], usize::MAX)
            .unwrap_or_else(|err| panic!("read at {offset}: {err}"));
        match expected {
            None => assert!(
                header.base_offset <= offset && offset <= header.last_offset(),
                "first batch [{}, {}] does not hold {offset}",
                header.base_offset,
                header.last_offset()
            ),
            Some(e) => assert_eq!(header.base_offset, e, "gap in a read at {offset}"),
        }
        let batch = read.records.slice(at..at + size);
        let values = values(&batch);
        let tag = values[0][1..].to_vec();
        for v in &values {
            assert_eq!(v[1..], tag[..], "mixed batch");
        }
        expected = Some(header.next_offset());
        next = header.next_offset();
        at += size;
    }
    Some(next)
}

#[test]
fn readers_never_see_partial_batches_while_appending_and_rolling() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(64 * 1024));
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for reader in 0..3u64 {
            let (log, done, reads) = (&log, &done, &reads);
            scope.spawn(move || {
                let mut offset = 0;
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) {
                    // Tail the log, and now and then read from elsewhere.
                    n += 1;
                    let max_bytes = [1, 700, 5000, 1 << 20][(n + reader) as usize % 4];
                    match check_read(log, offset, max_bytes) {
                        Some(next) => offset = next,
                        None => std::thread::yield_now(),
                    }
                    if n.is_multiple_of(7) {
                        let leo = log.log_end_offset();
                        if leo > 0 {
                            check_read(log, (n as i64 * 7919) % leo, max_bytes);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                log.flush().unwrap();
                std::thread::yield_now();
            }
        });
        for i in 0..3000usize {
            let b = batch(1 + i % 7, 20 + i % 300, i as i64, (i % 251) as u8);
            log.append_as_leader(&b, 0, 0).unwrap();
        }
        // On a loaded machine the readers may have had little CPU so far:
        // let them finish a fair number of reads (they tail the log).
        while reads.load(Ordering::Relaxed) < 300 {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Release);
    });
    assert!(log.segment_count() > 5);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 3000);
}

#[test]
fn readers_survive_concurrent_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(16 * 1024));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for reader in 0..2i64 {
            let (log, done) = (&log, &done);
            scope.spawn(move || {
                let mut n = reader;
                while !done.load(Ordering::Acquire) {
                    n += 1;
                    let leo = log.log_end_offset();
                    let offset = if leo > 0 {
                        (n * 104_729) % (leo + 1)
                    } else {
                        0
                    };
                    check_read(log, offset, [300, 1 << 16][n as usize % 2]);
                }
            });
        }
        for round in 0..60usize {
            for i in 0..40usize {
                let b = batch(
                    1 + i % 5,
                    50 + (i * 37 + round) % 400,
                    0,
                    (round % 250) as u8,
                );
                log.append_as_leader(&b, round as i32, 0).unwrap();
            }
            // Follower-style: cut back to somewhere in the last rounds.
            let leo = log.log_end_offset();
            let new_end = log.truncate_to(leo - 1 - (round as i64 * 13) % 60).unwrap();
            assert!(new_end < leo);
        }
        done.store(true, Ordering::Release);
    });
    let all = read_all(&log, 0);
    let mut next = 0;
    for (header, _) in &all {
        assert_eq!(header.base_offset, next);
        next = header.next_offset();
    }
    assert_eq!(next, log.log_end_offset());
}
