//! Random sequences of appends (leader and follower), reads, truncations,
//! log-start advances, rolls with tiny segments, and reopen after a clean
//! stop, a crash, and a torn last write, checked against a Vec of batches.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use storage::{Log, LogConfig, LogManager, StorageError};

#[derive(Debug, Clone)]
enum Op {
    Leader {
        records: usize,
        value_len: usize,
        new_epoch: bool,
    },
    Follower {
        records: usize,
        value_len: usize,
    },
    Read {
        at: u16,
        max_bytes: usize,
        bounded: Option<u16>,
    },
    Truncate {
        at: u16,
    },
    AdvanceStart {
        at: u16,
    },
    ReopenClean,
    ReopenCrashed,
    TornWrite {
        keep: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..6usize, 0..300usize, any::<bool>())
            .prop_map(|(records, value_len, e)| Op::Leader { records, value_len, new_epoch: e }),
        2 => (1..6usize, 0..300usize).prop_map(|(records, value_len)| Op::Follower { records, value_len }),
        5 => (any::<u16>(), 0..5000usize, proptest::option::of(any::<u16>()))
            .prop_map(|(at, max_bytes, bounded)| Op::Read { at, max_bytes, bounded }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::AdvanceStart { at }),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::ReopenCrashed),
        1 => any::<u16>().prop_map(|keep| Op::TornWrite { keep }),
    ]
}

/// The model: the batches as they must read back, the log start offset and
/// the leader-epoch history.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<(i64, i64, Bytes)>, // base offset, next offset, bytes
    start: i64,
    epoch: i32,
    epochs: Vec<(i32, i64)>,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.1).max(self.start)
    }

    /// `at` scaled into [start, end].
    fn pick(&self, at: u16) -> i64 {
        let span = self.end() - self.start + 1;
        self.start + i64::from(at) % span
    }

    fn assign_epoch(&mut self, epoch: i32, offset: i64) {
        if self.epochs.last().is_none_or(|&(e, _)| epoch > e) {
            self.epochs.retain(|&(_, s)| s < offset);
            self.epochs.push((epoch, offset));
        }
    }

    fn expected_read(&self, offset: i64, max_bytes: usize, bound: i64) -> Vec<u8> {
        let mut out = Vec::new();
        if offset >= bound {
            return out;
        }
        for (base, next, bytes) in &self.batches {
            if *next <= offset {
                continue;
            }
            if *base >= bound || (!out.is_empty() && out.len() + bytes.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(bytes);
        }
        out
    }
}

fn reopen(dir: &Path, config: LogConfig) -> (LogManager, Arc<Log>) {
    open(dir, config)
}

fn run(ops: Vec<Op>, segment_bytes: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 300,
        ..small_config(segment_bytes)
    };
    let (mut manager, mut log) = reopen(dir.path(), config);
    let mut model = Model::default();
    let mut tag = 0u8;
    for op in ops {
        tag = tag.wrapping_add(1);
        match op {
            Op::Leader {
                records,
                value_len,
                new_epoch,
            } => {
                if new_epoch {
                    model.epoch += 1;
                }
                let b = batch(records, value_len, i64::from(tag), tag);
                let info = log.append_as_leader(&b, model.epoch, 0).unwrap();
                let base = model.end();
                prop_assert_eq!(info.first_offset, base);
                let mut stored =
                    BytesMut::from(&records::rewritten_prefix(&b, base, model.epoch)[..]);
                stored.extend_from_slice(&b[16..]);
                model.assign_epoch(model.epoch, base);
                model
                    .batches
                    .push((base, base + records as i64, stored.freeze()));
            }
            Op::Follower { records, value_len } => {
                let base = model.end();
                let mut b = BytesMut::from(&batch(records, value_len, 0, tag)[..]);
                records::set_base_offset_and_epoch(&mut b, base, model.epoch);
                let b = b.freeze();
                log.append_as_follower(&b).unwrap();
                model.assign_epoch(model.epoch, base);
                model.batches.push((base, base + records as i64, b));
            }
            Op::Read {
                at,
                max_bytes,
                bounded,
            } => {
                let offset = model.pick(at);
                let bound = bounded.map(|b| model.pick(b));
                let read = log.read(offset, max_bytes, bound).unwrap();
                let expected = model.expected_read(offset, max_bytes, bound.unwrap_or(i64::MAX));
                prop_assert_eq!(
                    &read.records[..],
                    &expected[..],
                    "read at {} max {}",
                    offset,
                    max_bytes
                );
                if model.start > 0 {
                    let below = log.read(model.start - 1, max_bytes, None);
                    let out_of_range = matches!(below, Err(StorageError::OffsetOutOfRange { .. }));
                    prop_assert!(out_of_range);
                }
            }
            Op::Truncate { at } => {
                let offset = model.pick(at);
                let new_end = log.truncate_to(offset).unwrap();
                if offset < model.end() {
                    model.batches.retain(|b| b.1 <= offset);
                    // A cut batch may have begun below the start.
                    let end = model.batches.last().map_or(0, |b| b.1);
                    model.start = model.start.min(end);
                    model.epochs.retain(|&(_, s)| s < new_end);
                } else {
                    // Truncating at or past the end drops epochs that start
                    // at the end (begun without a batch).
                    let end = model.end();
                    model.epochs.retain(|&(_, s)| s < end);
                }
                prop_assert_eq!(new_end, model.end());
            }
            Op::AdvanceStart { at } => {
                let offset = model.pick(at);
                log.advance_log_start_offset(offset).unwrap();
                if offset > model.start {
                    model.start = offset;
                    let keep = model.epochs.partition_point(|&(_, s)| s <= offset);
                    if keep > 0 {
                        model.epochs.drain(..keep - 1);
                        model.epochs[0].1 = offset;
                    }
                }
            }
            Op::ReopenClean => {
                manager.shutdown().unwrap();
                drop((manager, log));
                (manager, log) = reopen(dir.path(), config);
            }
            Op::ReopenCrashed => {
                manager.checkpoint().unwrap();
                drop((manager, log));
                (manager, log) = reopen(dir.path(), config);
            }
            Op::TornWrite { keep } => {
                // A write that reached the file only in part before a crash.
                let partial = batch(3, 50, 0, tag);
                let keep = usize::from(keep) % partial.len();
                let dir = log.dir();
                // The log start offset survives a crash only as far as
                // the last checkpoint took it.
                manager.checkpoint().unwrap();
                drop((manager, log));
                let last = segment_files(&dir).pop().unwrap();
                let mut file = OpenOptions::new().append(true).open(last).unwrap();
                file.write_all(&partial[..keep]).unwrap();
                drop(file);
                (manager, log) = reopen(dir.parent().unwrap(), config);
            }
        }
        prop_assert_eq!(log.log_end_offset(), model.end());
        prop_assert_eq!(log.log_start_offset(), model.start);
        prop_assert_eq!(log.epoch_entries(), model.epochs.clone());
    }
    // Everything still there reads back exactly.
    let got = read_all(&log, model.start);
    let first = model
        .batches
        .iter()
        .position(|b| b.1 > model.start)
        .unwrap_or(model.batches.len());
    prop_assert_eq!(got.len(), model.batches.len() - first);
    for (g, m) in got.iter().zip(&model.batches[first..]) {
        prop_assert_eq!(&g.1, &m.2);
    }
    drop(manager);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_a_vec_of_batches(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 1800u64..6000,
    ) {
        run(ops, segment_bytes)?;
    }
}
