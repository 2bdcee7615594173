//! The leader-epoch history of one partition (`leader-epoch-checkpoint`):
//! for each leader epoch, the first offset written in it. Followers ask the
//! leader "where did my last epoch end?" (OffsetsForLeaderEpoch) and
//! truncate there, which is what keeps replicas from diverging.
//!
//! Kafka's text format, replaced atomically on every change:
//!
//! ```text
//! 0          <- version
//! 2          <- number of entries
//! 0 0        <- epoch start_offset
//! 3 1200
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::checkpoint::write_atomically;

pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

/// Entries strictly increasing in both epoch and start offset.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub(crate) fn empty(dir: &Path) -> Self {
        LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_FILE),
            entries: Vec::new(),
        }
    }

    /// Loads the checkpoint of the log in `dir`; a missing file is an empty
    /// history, a garbled one is [`StorageError::CorruptFile`] (the caller
    /// rebuilds the history from the batches themselves).
    pub(crate) fn load(dir: &Path) -> Result<Self, StorageError> {
        let mut cache = Self::empty(dir);
        let bytes = match fs::read(&cache.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(err) => return Err(StorageError::io("read", &cache.path)(err)),
        };
        let corrupt = |reason: String| StorageError::CorruptFile {
            path: cache.path.clone(),
            reason,
        };
        // Bytes that are not text are damage like any other, to be rebuilt
        // from the log, not an I/O error that stops the broker.
        let text = String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some("0") {
            return Err(corrupt("unsupported version".into()));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| corrupt("missing entry count".into()))?;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(e, o)| Some((e.parse::<i32>().ok()?, o.parse::<i64>().ok()?)));
            let Some((epoch, start_offset)) = parsed else {
                return Err(corrupt(format!("malformed line '{line}'")));
            };
            if let Some(last) = entries.last() {
                let last: &EpochEntry = last;
                if epoch <= last.epoch || start_offset < last.start_offset {
                    return Err(corrupt(format!(
                        "entry '{line}' does not follow the one before"
                    )));
                }
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if entries.len() != count {
            return Err(corrupt(format!(
                "expected {count} entries, found {}",
                entries.len()
            )));
        }
        cache.entries = entries;
        Ok(cache)
    }

    /// Puts back entries taken with [`LeaderEpochCache::entries`] (after a
    /// change that could not be persisted).
    pub(crate) fn restore(&mut self, entries: Vec<EpochEntry>) {
        self.entries = entries;
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if `epoch` is newer
    /// than every known one. Entries at or past `start_offset` (left by an
    /// append that failed) give way. Returns whether anything changed; the
    /// caller persists.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.would_assign(epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Whether [`assign`](Self::assign) would record `epoch`: only a valid
    /// epoch newer than the latest one changes the history.
    pub(crate) fn would_assign(&self, epoch: i32) -> bool {
        epoch >= 0 && self.entries.last().is_none_or(|last| epoch > last.epoch)
    }

    /// Drops the entries that start at or after `end_offset` (the log was
    /// truncated there). Returns whether anything changed.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Forgets what lies below `start_offset` (retention, DeleteRecords):
    /// the epoch in force at `start_offset` now starts there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let in_force = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if in_force == 0 {
            return false;
        }
        let changed = in_force > 1 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..in_force - 1);
        self.entries[0].start_offset = start_offset;
        changed
    }

    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// OffsetsForLeaderEpoch: the largest known epoch <= `epoch` and where
    /// it ended (the next epoch's start, or `log_end_offset` for the latest).
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let at_most = self.entries.partition_point(|e| e.epoch <= epoch);
        if at_most == 0 {
            return None;
        }
        let found = self.entries[at_most - 1];
        let end = self
            .entries
            .get(at_most)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    pub(crate) fn persist(&self) -> Result<(), StorageError> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomically(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(epoch, start_offset) in entries {
            assert!(c.assign(epoch, start_offset));
        }
        c
    }

    /// Found by the recovery fuzz target (`tests/fuzz.rs`): one byte that
    /// is not UTF-8 appended to the checkpoint made `load` an I/O error,
    /// which stopped the broker from opening its logs instead of
    /// rebuilding the history from the batches.
    #[test]
    fn a_checkpoint_that_is_not_text_is_corrupt_not_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LEADER_EPOCH_FILE), b"0\n1\n0 0\n\x80").unwrap();
        let err = LeaderEpochCache::load(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::CorruptFile { .. }), "{err:?}");
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert_eq!(c.end_offset_for(0, 300), None);
        assert_eq!(c.end_offset_for(1, 300), Some((1, 100)));
        assert_eq!(c.end_offset_for(2, 300), Some((1, 100)));
        assert_eq!(c.end_offset_for(3, 300), Some((3, 250)));
        assert_eq!(c.end_offset_for(4, 300), Some((4, 300)));
        assert_eq!(c.end_offset_for(9, 300), Some((4, 300)));
    }

    #[test]
    fn only_newer_epochs_are_assigned() {
        let mut c = cache(&[(2, 10)]);
        assert!(!c.assign(2, 20));
        assert!(!c.assign(1, 20));
        assert!(!c.assign(-1, 20));
        assert!(c.assign(5, 20));
        assert_eq!(c.latest_epoch(), Some(5));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert!(c.truncate_from_end(250));
        assert_eq!(c.latest_epoch(), Some(3));
        assert!(!c.truncate_from_end(250));
        assert!(c.truncate_from_start(150));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 150
            }]
        );
        assert!(!c.truncate_from_start(150));
        assert!(!c.truncate_from_start(10));
    }

    #[test]
    fn persists_in_kafka_format_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        c.assign(0, 0);
        c.assign(3, 1200);
        c.persist().unwrap();
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n3 1200\n");
        assert_eq!(
            LeaderEpochCache::load(dir.path()).unwrap().entries(),
            c.entries()
        );
        fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n2\n3 0\n1 5\n").unwrap();
        assert!(matches!(
            LeaderEpochCache::load(dir.path()),
            Err(StorageError::CorruptFile { .. })
        ));
    }
}
