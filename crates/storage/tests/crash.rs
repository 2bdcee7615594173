//! Crash and corruption: cut the last segment at every byte of its last
//! batch, flip bits, delete or garble index files. After reopening, every
//! complete batch before the damage reads back byte for byte, and appends
//! continue at the right offset.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use records::BatchHeader;
use storage::LogConfig;

fn config() -> LogConfig {
    small_config(3000)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A log of several segments whose recovery point lies in an earlier
/// segment, left as after `kill -9` (or cleanly shut down). Returns the
/// batches as read back.
fn build(dir: &Path, clean: bool) -> Vec<(BatchHeader, Bytes)> {
    let (manager, log) = open(dir, config());
    for i in 0..20u8 {
        log.append_as_leader(&batch(4, 90, i64::from(i) * 10, i), i32::from(i / 4), 0)
            .unwrap();
        if i == 8 {
            log.flush().unwrap();
            manager.checkpoint().unwrap();
        }
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    let batches = read_all(&log, 0);
    if clean {
        manager.shutdown().unwrap();
    }
    batches
}

fn partition_dir(root: &Path) -> PathBuf {
    root.join(tp().dir_name())
}

/// Reopens and checks that exactly `expected` is there, then that an
/// append lands right after it and reads back.
fn check_reopened(root: &Path, expected: &[(BatchHeader, Bytes)], what: &str) {
    let (_manager, log) = open(root, config());
    let end = expected.last().map_or(0, |(h, _)| h.next_offset());
    assert_eq!(log.log_end_offset(), end, "{what}");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), expected.len(), "{what}");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.1, e.1, "{what}: batch at {}", e.0.base_offset);
    }
    // Every offset reads the batch that holds it (indexes are right).
    for (header, _) in expected {
        for offset in header.base_offset..header.next_offset() {
            let read = log.read(offset, 1, None).unwrap();
            assert_eq!(
                split(&read.records)[0].0.base_offset,
                header.base_offset,
                "{what}"
            );
        }
    }
    assert!(
        log.latest_epoch()
            .is_none_or(|e| log.end_offset_for_epoch(e).unwrap().1 == end)
    );
    for (epoch, start) in log.epoch_entries() {
        assert!(
            start < end || (start == 0 && end == 0),
            "{what}: epoch {epoch} at {start}"
        );
    }
    let info = log.append_as_leader(&batch(2, 10, 0, 99), 7, 0).unwrap();
    assert_eq!(info.first_offset, end, "{what}");
    let last = read_all(&log, end);
    assert_eq!(last.len(), 1, "{what}");
    assert_eq!(values(&last[0].1).len(), 2);
}

#[test]
fn cutting_the_last_batch_anywhere_loses_only_that_batch() {
    for clean in [false, true] {
        let original = tempfile::tempdir().unwrap();
        let batches = build(original.path(), clean);
        let segment = segment_files(&partition_dir(original.path()))
            .pop()
            .unwrap();
        let size = fs::metadata(&segment).unwrap().len();
        let last = batches.last().unwrap().1.len() as u64;
        let keep = &batches[..batches.len() - 1];
        // Clean: a few cuts (the shutdown marker must not hide them);
        // unclean: every byte of the last batch.
        let step = if clean { 37 } else { 1 };
        for cut in (size - last..size).step_by(step) {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(original.path(), copy.path());
            let file = partition_dir(copy.path()).join(segment.file_name().unwrap());
            OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(cut)
                .unwrap();
            check_reopened(copy.path(), keep, &format!("clean={clean} cut at {cut}"));
        }
    }
}

#[test]
fn flipped_bits_in_a_batch_cut_the_log_there() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path(), false);
    let files = segment_files(&partition_dir(original.path()));
    // Damage in the last batch of the last segment, and in the first batch
    // of the second segment (later segments then go too).
    let second_base: i64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let damaged_batch = batches
        .iter()
        .position(|(h, _)| h.base_offset == second_base)
        .unwrap();
    let cases = [
        (files.last().unwrap().clone(), batches.len() - 1),
        (files[1].clone(), damaged_batch),
    ];
    for (file, victim) in cases {
        let size = fs::metadata(&file).unwrap().len();
        let batch_len = batches[victim].1.len() as u64;
        let batch_start = if victim == batches.len() - 1 {
            size - batch_len
        } else {
            0
        };
        // Bytes 8.. (length, magic, CRC, attributes, ..., records); the
        // base offset and leader epoch lie outside the CRC by design.
        for at in (8..batch_len).filter(|a| !(12..16).contains(a)).step_by(5) {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(original.path(), copy.path());
            let target = partition_dir(copy.path()).join(file.file_name().unwrap());
            let mut bytes = fs::read(&target).unwrap();
            bytes[(batch_start + at) as usize] ^= 0x10;
            fs::write(&target, bytes).unwrap();
            check_reopened(
                copy.path(),
                &batches[..victim],
                &format!("{} byte {at}", file.display()),
            );
        }
    }
}

#[test]
fn missing_or_garbled_indexes_are_rebuilt() {
    for clean in [true, false] {
        let original = tempfile::tempdir().unwrap();
        let batches = build(original.path(), clean);
        type Damage = fn(&Path);
        let damages: [(&str, Damage); 5] = [
            ("deleted", |p| fs::remove_file(p).unwrap()),
            ("odd size", |p| {
                let mut b = fs::read(p).unwrap();
                b.push(1);
                fs::write(p, b).unwrap();
            }),
            ("zeroed", |p| {
                let len = fs::metadata(p).unwrap().len().max(24) as usize;
                fs::write(p, vec![0u8; len]).unwrap();
            }),
            ("garbage", |p| {
                let len = fs::metadata(p).unwrap().len().max(24) as usize;
                let garbage: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
                fs::write(p, garbage).unwrap();
            }),
            ("emptied", |p| fs::write(p, b"").unwrap()),
        ];
        for suffix in ["index", "timeindex"] {
            for (name, damage) in damages {
                let copy = tempfile::tempdir().unwrap();
                copy_dir(original.path(), copy.path());
                for file in fs::read_dir(partition_dir(copy.path())).unwrap() {
                    let path = file.unwrap().path();
                    if path.extension().is_some_and(|e| e == suffix) {
                        damage(&path);
                    }
                }
                let what = format!("clean={clean} {suffix} {name}");
                check_reopened(copy.path(), &batches, &what);
                // The time index answers as before.
                let (_m, log) = open(copy.path(), config());
                assert_eq!(
                    log.offset_for_timestamp(52).unwrap(),
                    Some((22, 52)),
                    "{what}"
                );
                assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)), "{what}");
            }
        }
    }
}

#[test]
fn a_log_cut_to_nothing_starts_over_at_its_base() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path(), false);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(original.path(), copy.path());
    let files = segment_files(&partition_dir(copy.path()));
    // The whole second segment is garbage: the first survives, the rest go.
    fs::write(&files[1], vec![0xffu8; 500]).unwrap();
    let base: i64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let keep: Vec<_> = batches
        .into_iter()
        .filter(|(h, _)| h.base_offset < base)
        .collect();
    check_reopened(copy.path(), &keep, "garbage second segment");
}

#[test]
fn a_base_offset_garbled_to_overflow_is_cut_not_a_panic() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path(), false);
    let file = segment_files(&partition_dir(original.path()))
        .pop()
        .unwrap();
    let size = fs::metadata(&file).unwrap().len() as usize;
    let last_start = size - batches.last().unwrap().1.len();
    for base in [i64::MAX - 1, i64::MAX, -5, 0] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        let target = partition_dir(copy.path()).join(file.file_name().unwrap());
        let mut bytes = fs::read(&target).unwrap();
        bytes[last_start..last_start + 8].copy_from_slice(&base.to_be_bytes());
        fs::write(&target, bytes).unwrap();
        check_reopened(
            copy.path(),
            &batches[..batches.len() - 1],
            &format!("base {base}"),
        );
    }
}
