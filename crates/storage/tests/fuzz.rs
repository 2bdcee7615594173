//! Fuzz target for recovery: random damage to any file of a log dir
//! (segments, offset and time indexes, the leader-epoch checkpoint,
//! `partition.metadata`, the dir's checkpoints and clean-shutdown marker)
//! after a clean or an unclean stop, then open. Opening never panics;
//! every batch before the first damaged byte of a segment reads back byte
//! for byte at its offset; reads anywhere return data or an error; and the
//! log takes appends that read back.
//!
//! And the `Log` API under hostile arguments (follower batches at any
//! offset and epoch, offsets, epochs, times and sizes at every extreme):
//! errors, never panics; the log start never passes the log end; what is
//! stored stays whole batches in offset order and survives a restart.
//!
//! Bounded for CI; `PROPTEST_CASES=5000 cargo nextest run -p storage
//! --test fuzz` runs it longer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use fuzz_support::{Damage, arb_file_damage, damage_file};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use records::{BatchHeader, Batches};
use storage::{LogConfig, LogManager};

fn config() -> LogConfig {
    small_config(2000)
}

/// The original log: its batches in offset order, and for each segment
/// file the range of batches it holds and where each one ends in it.
struct Original {
    dir: tempfile::TempDir,
    batches: Vec<(BatchHeader, Bytes)>,
    /// (file name, index of its first batch, end position of each batch).
    segments: Vec<(String, usize, Vec<u64>)>,
}

fn build(clean: bool) -> Original {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (manager, log) = open(dir.path(), config());
    for i in 0..16u8 {
        log.append_as_leader(&batch(3, 90, i64::from(i) * 10, i), i32::from(i / 5), 0)
            .expect("append");
        if i == 7 {
            log.flush().expect("flush");
            manager.checkpoint().expect("checkpoint");
        }
    }
    log.set_high_watermark(log.log_end_offset());
    let batches = read_all(&log, 0);
    if clean {
        manager.shutdown().expect("clean shutdown");
    } else {
        manager.checkpoint().expect("checkpoint");
    }
    drop(log);
    drop(manager);
    let mut segments = Vec::new();
    let mut first = 0;
    for path in segment_files(&dir.path().join(tp().dir_name())) {
        let bytes = fs::read(&path).expect("segment");
        let ends: Vec<u64> = Batches::new(&bytes, usize::MAX)
            .map(|b| b.expect("a valid original"))
            .scan(0u64, |end, (_, b)| {
                *end += b.len() as u64;
                Some(*end)
            })
            .collect();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let count = ends.len();
        segments.push((name.to_owned(), first, ends));
        first += count;
    }
    assert_eq!(first, batches.len());
    assert!(segments.len() >= 3, "{} segments", segments.len());
    Original {
        dir,
        batches,
        segments,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, target).expect("copy");
        }
    }
}

/// Every file damage can hit, relative to the log dir, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            for inner in fs::read_dir(&path).expect("list") {
                let inner = inner.expect("entry").path();
                out.push(inner.strip_prefix(root).expect("inside").to_path_buf());
            }
        } else if path.file_name().is_some_and(|n| n != ".lock") {
            out.push(path.strip_prefix(root).expect("inside").to_path_buf());
        }
    }
    out.sort();
    out
}

/// How many leading batches must survive damage to `file` from byte
/// `first_changed` on: for a segment, the batches before its damaged one;
/// for anything else (indexes, checkpoints), all of them.
fn protected(original: &Original, file: &Path, first_changed: u64) -> usize {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match original.segments.iter().find(|(n, _, _)| n == name) {
        Some((_, first, ends)) => first + ends.iter().filter(|&&end| end <= first_changed).count(),
        None => original.batches.len(),
    }
}

fn check(original: &Original, damages: &[(usize, Damage)]) -> Result<(), TestCaseError> {
    let copy = tempfile::tempdir().expect("a temp dir");
    copy_dir(original.dir.path(), copy.path());
    let mut must_survive = original.batches.len();
    let mut topic_id_damaged = false;
    let mut log_start_damaged = false;
    for (pick, damage) in damages {
        let candidates = files(copy.path());
        if candidates.is_empty() {
            break;
        }
        let file = &candidates[pick % candidates.len()];
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        topic_id_damaged |= name == "partition.metadata";
        log_start_damaged |= name == "log-start-offset-checkpoint";
        if let Some(first_changed) = damage_file(&copy.path().join(file), damage) {
            must_survive = must_survive.min(protected(original, file, first_changed));
        }
    }
    let manager = match LogManager::open(&[copy.path().to_path_buf()], config()) {
        Ok(manager) => manager,
        // A topic id that cannot be read stops the broker, as in Kafka:
        // it must not guess which topic the log belongs to.
        Err(err) if topic_id_damaged => {
            prop_assert!(err.to_string().contains("partition.metadata"), "{err}");
            return Ok(());
        }
        Err(err) => return Err(TestCaseError::fail(format!("open failed: {err}"))),
    };
    let log = match manager.get_or_create(&tp(), TOPIC_ID, config()) {
        Ok(log) => log,
        Err(err) if topic_id_damaged => {
            prop_assert!(err.to_string().contains("topic"), "{err}");
            return Ok(());
        }
        Err(err) => return Err(TestCaseError::fail(format!("get_or_create failed: {err}"))),
    };
    let log_start = log.log_start_offset();
    for (header, bytes) in &original.batches[..must_survive] {
        // A garbled log-start checkpoint may name a later start; Kafka
        // trusts it too. Nothing else may move the start past a batch
        // that survives.
        if log_start_damaged && header.base_offset < log_start {
            continue;
        }
        let read = log
            .read(header.base_offset, 1, None)
            .map_err(|e| TestCaseError::fail(format!("read at {}: {e}", header.base_offset)))?;
        let got = read.records.slice(..bytes.len().min(read.records.len()));
        prop_assert_eq!(&got, bytes, "batch at {} changed", header.base_offset);
    }
    // Reads anywhere answer (data or an error), and what they return is
    // whole batches.
    let end = log.log_end_offset();
    for offset in [
        log_start - 1,
        log_start,
        end / 2,
        end - 1,
        end,
        end + 1,
        i64::MAX,
    ] {
        if let Ok(read) = log.read(offset, 4096, None) {
            let _ = records::valid_prefix(&read.records, usize::MAX);
        }
    }
    let _ = log.offset_for_timestamp(75);
    if let Some(epoch) = log.latest_epoch() {
        let _ = log.end_offset_for_epoch(epoch);
    }
    // The log is usable: an append lands at the end and reads back.
    let fresh = batch(2, 10, 0, 99);
    let info = log
        .append_as_leader(&fresh, 9, 0)
        .map_err(|e| TestCaseError::fail(format!("append after recovery: {e}")))?;
    prop_assert_eq!(info.first_offset, end);
    let read = log
        .read(end, 1, None)
        .map_err(|e| TestCaseError::fail(format!("read of the new batch: {e}")))?;
    let (header, _) = Batches::new(&read.records, usize::MAX)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| TestCaseError::fail("the appended batch does not read back"))?;
    prop_assert_eq!(header.base_offset, end);
    Ok(())
}

fn fuzz_recovery(clean: bool) {
    let original = build(clean);
    let mut runner = TestRunner::new(fuzz_support::config(48));
    let result = runner.run(
        &proptest::collection::vec((any::<usize>(), arb_file_damage()), 1..4),
        |damages| check(&original, &damages),
    );
    if let Err(err) = result {
        panic!("clean={clean}: {err}");
    }
}

#[test]
fn damage_after_an_unclean_stop_loses_nothing_before_it() {
    fuzz_recovery(false);
}

#[test]
fn damage_after_a_clean_stop_loses_nothing_before_it() {
    fuzz_recovery(true);
}

// ------------------------------------------------------------ hostile arguments

/// Calls with what a hostile leader's fetch answer or a confused caller
/// could pass: follower batches at any offset and epoch (with valid CRCs,
/// since the base offset and epoch lie outside it), and offsets, epochs,
/// timestamps and sizes at every extreme.
#[derive(Debug, Clone)]
enum Call {
    Leader {
        records: usize,
        epoch: i32,
    },
    Follower {
        base_offsets: Vec<i64>,
        epoch: i32,
    },
    TruncateTo(i64),
    TruncateFullyAndStartAt(i64),
    AdvanceLogStart(i64),
    SetHighWatermark(i64),
    AssignEpoch(i32),
    Read {
        offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
    },
    OffsetForTimestamp(i64),
    EndOffsetForEpoch(i32),
    DeleteRetained(i64),
    Reopen,
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -2i64..40,
        1 => Just(i64::MAX),
        1 => Just(i64::MAX - 1),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

fn extreme_i32() -> impl Strategy<Value = i32> {
    prop_oneof![6 => -2i32..10, 1 => Just(i32::MAX), 1 => Just(i32::MIN), 1 => any::<i32>()]
}

fn arb_call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => (1usize..4, extreme_i32()).prop_map(|(records, epoch)| Call::Leader { records, epoch }),
        3 => (proptest::collection::vec(extreme_i64(), 1..3), extreme_i32())
            .prop_map(|(base_offsets, epoch)| Call::Follower { base_offsets, epoch }),
        1 => extreme_i64().prop_map(Call::TruncateTo),
        1 => extreme_i64().prop_map(Call::TruncateFullyAndStartAt),
        1 => extreme_i64().prop_map(Call::AdvanceLogStart),
        1 => extreme_i64().prop_map(Call::SetHighWatermark),
        1 => extreme_i32().prop_map(Call::AssignEpoch),
        3 => (extreme_i64(), prop_oneof![Just(0usize), Just(1), 0usize..5000, Just(usize::MAX)],
              proptest::option::of(extreme_i64()))
            .prop_map(|(offset, max_bytes, max_offset)| Call::Read { offset, max_bytes, max_offset }),
        1 => extreme_i64().prop_map(Call::OffsetForTimestamp),
        1 => extreme_i32().prop_map(Call::EndOffsetForEpoch),
        1 => extreme_i64().prop_map(Call::DeleteRetained),
        1 => Just(Call::Reopen),
    ]
}

/// Every batch from the log start to the log end, checked to be whole,
/// valid and in offset order.
fn contents(log: &storage::Log) -> Result<Vec<u8>, TestCaseError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut last_next = i64::MIN;
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 20, None)
            .map_err(|e| TestCaseError::fail(format!("read at {offset} below the LEO: {e}")))?;
        if read.records.is_empty() {
            // A truncation inside a gap between a follower's batches (a
            // compacted leader's) ends the log past its last batch, as in
            // Kafka; nothing else may.
            break;
        }
        for b in Batches::new(&read.records, usize::MAX) {
            let (header, _) = b.map_err(|e| TestCaseError::fail(format!("stored: {e}")))?;
            prop_assert!(header.base_offset >= last_next, "offsets go back");
            last_next = header.next_offset();
            offset = last_next;
        }
        out.extend_from_slice(&read.records);
    }
    Ok(out)
}

fn apply_call(log: &storage::Log, call: &Call) {
    match call {
        Call::Leader { records, epoch } => {
            let _ = log.append_as_leader(&batch(*records, 20, 1_000, 1), *epoch, 0);
        }
        Call::Follower {
            base_offsets,
            epoch,
        } => {
            let mut bytes = Vec::new();
            for (i, base) in base_offsets.iter().enumerate() {
                let mut b = batch(2, 10, 2_000, i as u8).to_vec();
                records::set_base_offset_and_epoch(&mut b, *base, *epoch);
                bytes.extend_from_slice(&b);
            }
            let _ = log.append_as_follower(&Bytes::from(bytes));
        }
        Call::TruncateTo(offset) => {
            let _ = log.truncate_to(*offset);
        }
        Call::TruncateFullyAndStartAt(offset) => {
            let _ = log.truncate_fully_and_start_at(*offset);
        }
        Call::AdvanceLogStart(offset) => {
            let _ = log.advance_log_start_offset(*offset);
        }
        Call::SetHighWatermark(offset) => {
            let _ = log.set_high_watermark(*offset);
        }
        Call::AssignEpoch(epoch) => {
            let _ = log.assign_leader_epoch(*epoch);
        }
        Call::Read {
            offset,
            max_bytes,
            max_offset,
        } => {
            if let Ok(read) = log.read(*offset, *max_bytes, *max_offset) {
                let (valid, err) = records::valid_prefix(&read.records, usize::MAX);
                assert!(err.is_none() && valid == read.records.len(), "{err:?}");
            }
        }
        Call::OffsetForTimestamp(timestamp) => {
            let _ = log.offset_for_timestamp(*timestamp);
        }
        Call::EndOffsetForEpoch(epoch) => {
            let _ = log.end_offset_for_epoch(*epoch);
        }
        Call::DeleteRetained(now_ms) => {
            let _ = log.delete_retained_segments(*now_ms);
        }
        Call::Reopen => {}
    }
}

fn check_calls(calls: &[Call]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = LogConfig {
        retention_ms: Some(1),
        ..small_config(600)
    };
    let (mut manager, mut log) = open(dir.path(), config);
    for call in calls {
        if let Call::Reopen = call {
            let before = contents(&log)?;
            let start = log.log_start_offset();
            manager
                .shutdown()
                .map_err(|e| TestCaseError::fail(format!("shutdown: {e}")))?;
            drop(log);
            drop(manager);
            (manager, log) = open(dir.path(), config);
            prop_assert_eq!(log.log_start_offset(), start);
            prop_assert_eq!(
                contents(&log)?,
                before,
                "the log changed across a clean restart"
            );
            continue;
        }
        apply_call(&log, call);
        prop_assert!(log.log_start_offset() <= log.log_end_offset());
        contents(&log)?;
    }
    Ok(())
}

#[test]
fn hostile_arguments_are_errors_not_panics() {
    let mut runner = TestRunner::new(fuzz_support::config(64));
    let result = runner.run(&proptest::collection::vec(arb_call(), 1..25), |calls| {
        check_calls(&calls)
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

// ------------------------------------------------------------ regressions
// The minimal cases of what these targets found, fixed at their cause.

/// Found by `hostile_arguments_are_errors_not_panics`: truncating to -1
/// restarted the log at offset -1 (a segment named for it), and the next
/// retention pass moved the log start to 0, past the log end.
#[test]
fn a_negative_truncation_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_manager, log) = open(dir.path(), config());
    log.append_as_leader(&batch(2, 10, 0, 1), 0, 0)
        .expect("append");
    assert!(matches!(
        log.truncate_to(-1),
        Err(storage::StorageError::OffsetOutOfRange { offset: -1, .. })
    ));
    assert!(log.truncate_fully_and_start_at(-1).is_err());
    log.delete_retained_segments(0).expect("retention");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 2));
}

/// Found by the same target: retention computed `now - max timestamp` with
/// `-`, which overflows for a clock (or batch timestamps) at the extremes.
#[test]
fn retention_at_extreme_times_does_not_overflow() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = LogConfig {
        retention_ms: Some(1),
        ..config()
    };
    let (_manager, log) = open(dir.path(), config);
    for i in 0..30u8 {
        log.append_as_leader(&batch(3, 90, i64::MAX - 10, i), 0, 0)
            .expect("append");
    }
    log.set_high_watermark(log.log_end_offset());
    log.delete_retained_segments(i64::MIN).expect("retention");
    log.delete_retained_segments(i64::MAX).expect("retention");
}

/// Found by the same target: a log a leader restarted at `i64::MAX` (its
/// log start offset comes over the network) could not be opened again:
/// recovery computed `log end + 1` with `+`.
#[test]
fn a_log_restarted_at_the_last_offset_opens_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (manager, log) = open(dir.path(), config());
    log.truncate_fully_and_start_at(i64::MAX).expect("restart");
    manager.shutdown().expect("shutdown");
    drop((manager, log));
    let (_manager, log) = open(dir.path(), config());
    assert_eq!(log.log_end_offset(), i64::MAX);
}

/// Found by `damage_after_an_unclean_stop_loses_nothing_before_it`: two
/// flipped bits in the offset index of a segment below the recovery point
/// (loaded, not rebuilt: only its last entry is checked, as in Kafka) left
/// entries pointing inside batches, where a header happened to parse, and
/// reads of the offsets there returned nothing. Readers now check that the
/// batch at an entry's position is the one it names.
#[test]
fn a_damaged_index_entry_does_not_hide_its_batches() {
    let original = build(false);
    let copy = tempfile::tempdir().expect("a temp dir");
    copy_dir(original.dir.path(), copy.path());
    let index = copy
        .path()
        .join(tp().dir_name())
        .join("00000000000000000000.index");
    for at in [14, 23] {
        damage_file(&index, &Damage::FlipBit { at, bit: 0 });
    }
    let (_manager, log) = open(copy.path(), config());
    for (header, bytes) in &original.batches {
        for offset in header.base_offset..header.next_offset() {
            let read = log.read(offset, 1, None).expect("reads");
            assert!(read.records.starts_with(bytes), "offset {offset}");
        }
    }
    // Truncation finds its batch through the same index.
    assert_eq!(log.truncate_to(10).expect("truncates"), 9);
    assert_eq!(log.log_end_offset(), 9);
}
