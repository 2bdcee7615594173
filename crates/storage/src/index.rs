//! The sparse `.index` (relative offset -> file position, 8 bytes an entry)
//! and `.timeindex` (timestamp -> relative offset, 12 bytes an entry) of a
//! segment, both in Kafka's big-endian layout and both binary-searched.
//!
//! Why not mmap, as Kafka does: the workspace denies `unsafe`, and a mapped
//! file that another process truncates turns a read into SIGBUS. Instead:
//!
//! - the **active** segment keeps its entries in a `Vec` (appending one is
//!   a push under a write lock held for nanoseconds; no I/O on the append
//!   path) and writes the not-yet-written tail at flush and roll;
//! - a **closed** segment keeps only every [`BLOCK`]th entry in memory and
//!   answers a lookup with one `pread` of a block, so thousands of closed
//!   segments cost little memory.
//!
//! Indexes are never trusted blindly: they are rebuilt from the log by
//! recovery when missing or inconsistent, and readers check what a lookup
//! points at.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::StorageError;
use crate::segment::{read_lock, write_lock};

/// Entries per block of a closed index: one block is read per lookup.
const BLOCK: usize = 128;

pub(crate) trait IndexEntry: Copy + std::fmt::Debug + PartialEq {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Self;
}

/// `.index` entry: the last offset of a batch (relative to the segment's
/// base offset) and the file position where that batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            position: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        }
    }
}

/// `.timeindex` entry: the largest timestamp seen so far in the segment and
/// the (relative) last offset of the batch that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        }
    }
}

/// Whether `entries` is a well-formed offset index for a log of `log_size`
/// bytes: offsets and positions strictly increasing, positions inside.
pub(crate) fn offset_entries_consistent(entries: &[OffsetEntry], log_size: u64) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
        && entries
            .last()
            .is_none_or(|e| u64::from(e.position) < log_size)
}

/// Whether `entries` is a well-formed time index: timestamps strictly
/// increasing, offsets never decreasing and none past `max_relative_offset`.
pub(crate) fn time_entries_consistent(entries: &[TimeEntry], max_relative_offset: u32) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset)
        && entries
            .last()
            .is_none_or(|e| e.relative_offset <= max_relative_offset)
}

enum State<E> {
    Active {
        entries: Vec<E>,
        persisted: usize,
    },
    Closed {
        summary: Vec<E>,
        len: usize,
        last: Option<E>,
    },
}

/// One index file and its in-memory form. Appends and state changes come
/// from the log's appender or flusher (serialised by the log); lookups from
/// any thread.
pub(crate) struct SparseIndex<E> {
    path: PathBuf,
    file: File,
    state: RwLock<State<E>>,
}

impl<E> std::fmt::Debug for SparseIndex<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<E: IndexEntry> SparseIndex<E> {
    /// Reads an index file: `Ok(None)` if it does not exist, `CorruptFile`
    /// if its size is not a whole number of entries.
    pub(crate) fn read_entries(path: &Path) -> Result<Option<Vec<E>>, StorageError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StorageError::io("read", path)(err)),
        };
        if bytes.len() % E::SIZE != 0 {
            return Err(StorageError::CorruptFile {
                path: path.to_path_buf(),
                reason: format!(
                    "size {} is not a multiple of the {}-byte entry",
                    bytes.len(),
                    E::SIZE
                ),
            });
        }
        Ok(Some(bytes.chunks_exact(E::SIZE).map(E::decode).collect()))
    }

    /// An active index holding `entries`, of which the first `persisted`
    /// are already in the file; the file is cut to exactly those.
    pub(crate) fn active(
        path: PathBuf,
        entries: Vec<E>,
        persisted: usize,
    ) -> Result<Self, StorageError> {
        let file = open_rw(&path)?;
        let persisted = persisted.min(entries.len());
        file.set_len((persisted * E::SIZE) as u64)
            .map_err(StorageError::io("truncate", &path))?;
        Ok(SparseIndex {
            path,
            file,
            state: RwLock::new(State::Active { entries, persisted }),
        })
    }

    pub(crate) fn len(&self) -> usize {
        match &*read_lock(&self.state) {
            State::Active { entries, .. } => entries.len(),
            State::Closed { len, .. } => *len,
        }
    }

    pub(crate) fn last(&self) -> Option<E> {
        match &*read_lock(&self.state) {
            State::Active { entries, .. } => entries.last().copied(),
            State::Closed { last, .. } => *last,
        }
    }

    /// Appends an entry to an active index (a closed one ignores it: only
    /// the active segment is appended to).
    pub(crate) fn push(&self, entry: E) {
        if let State::Active { entries, .. } = &mut *write_lock(&self.state) {
            entries.push(entry);
        }
    }

    /// The last entry for which `below` holds, `below` being true for a
    /// prefix of the entries (binary search).
    pub(crate) fn lookup(&self, below: impl Fn(&E) -> bool) -> Result<Option<E>, StorageError> {
        Ok(self.lookup_around(below)?.0)
    }

    /// The last entry for which `below` holds and the first for which it
    /// does not (each if there is one). A closed index reads one block.
    pub(crate) fn lookup_around(
        &self,
        below: impl Fn(&E) -> bool,
    ) -> Result<(Option<E>, Option<E>), StorageError> {
        let state = read_lock(&self.state);
        match &*state {
            State::Active { entries, .. } => {
                let n = entries.partition_point(&below);
                Ok((
                    n.checked_sub(1).map(|i| entries[i]),
                    entries.get(n).copied(),
                ))
            }
            State::Closed { summary, len, .. } => {
                let n = summary.partition_point(&below);
                let Some(block) = n.checked_sub(1) else {
                    return Ok((None, summary.first().copied()));
                };
                // The block and the entry after it.
                let first = block * BLOCK;
                let count = (BLOCK + 1).min(len - first);
                let mut buf = vec![0u8; count * E::SIZE];
                self.file
                    .read_exact_at(&mut buf, (first * E::SIZE) as u64)
                    .map_err(StorageError::io("read", &self.path))?;
                let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
                let n = entries.partition_point(&below);
                Ok((
                    Some(n.checked_sub(1).map_or(summary[block], |i| entries[i])),
                    entries.get(n).copied(),
                ))
            }
        }
    }

    /// Writes the entries not yet in the file (active index).
    pub(crate) fn persist(&self) -> Result<(), StorageError> {
        let (from, buf, upto) = {
            let state = read_lock(&self.state);
            let State::Active { entries, persisted } = &*state else {
                return Ok(());
            };
            let mut buf = Vec::with_capacity((entries.len() - persisted) * E::SIZE);
            for e in &entries[*persisted..] {
                e.encode(&mut buf);
            }
            (*persisted, buf, entries.len())
        };
        if buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&buf, (from * E::SIZE) as u64)
            .map_err(StorageError::io("write", &self.path))?;
        if let State::Active { persisted, .. } = &mut *write_lock(&self.state) {
            *persisted = (*persisted).max(upto);
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io("fsync", &self.path))
    }

    /// Persists and fsyncs an active index and keeps only its summary in
    /// memory from then on.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        self.persist()?;
        self.sync()?;
        self.summarise();
        Ok(())
    }

    /// Keeps only the summary of an active index in memory; the caller has
    /// persisted it.
    pub(crate) fn summarise(&self) {
        let mut state = write_lock(&self.state);
        if let State::Active { entries, .. } = &*state {
            *state = summarise(entries);
        }
    }

    /// Makes a closed index active again (its segment became the last one
    /// after a truncation), loading its entries from the file.
    pub(crate) fn reopen(&self) -> Result<(), StorageError> {
        let mut state = write_lock(&self.state);
        if let State::Closed { len, .. } = &*state {
            let mut buf = vec![0u8; len * E::SIZE];
            self.file
                .read_exact_at(&mut buf, 0)
                .map_err(StorageError::io("read", &self.path))?;
            let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
            let persisted = entries.len();
            *state = State::Active { entries, persisted };
        }
        Ok(())
    }

    /// Keeps the entries for which `keep` holds (a prefix) and cuts the
    /// file to match. Active indexes only.
    pub(crate) fn truncate(&self, keep: impl Fn(&E) -> bool) -> Result<(), StorageError> {
        let mut state = write_lock(&self.state);
        if let State::Active { entries, persisted } = &mut *state {
            let n = entries.partition_point(keep);
            entries.truncate(n);
            if *persisted > n {
                *persisted = n;
                self.file
                    .set_len((n * E::SIZE) as u64)
                    .map_err(StorageError::io("truncate", &self.path))?;
            }
        }
        Ok(())
    }

    pub(crate) fn delete(&self) -> Result<(), StorageError> {
        remove_if_exists(&self.path)
    }
}

fn summarise<E: IndexEntry>(entries: &[E]) -> State<E> {
    State::Closed {
        summary: entries.iter().step_by(BLOCK).copied().collect(),
        len: entries.len(),
        last: entries.last().copied(),
    }
}

fn open_rw(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StorageError::io("open", path))
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StorageError::io("remove", path)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u32) -> Vec<OffsetEntry> {
        (0..n)
            .map(|i| OffsetEntry {
                relative_offset: i * 10 + 9,
                position: i * 4096,
            })
            .collect()
    }

    #[test]
    fn active_and_closed_lookups_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let all = entries(1000);
        let index = SparseIndex::active(path.clone(), Vec::new(), 0).unwrap();
        for e in &all {
            index.push(*e);
        }
        let probe = |index: &SparseIndex<OffsetEntry>, target: u32| {
            index
                .lookup(|e| e.relative_offset <= target)
                .unwrap()
                .map(|e| e.position)
        };
        let before: Vec<_> = (0..10_100).step_by(7).map(|t| probe(&index, t)).collect();
        assert_eq!(probe(&index, 8), None);
        assert_eq!(probe(&index, 9), Some(0));
        assert_eq!(probe(&index, 5000), Some(499 * 4096));
        index.close().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 8000);
        let after: Vec<_> = (0..10_100).step_by(7).map(|t| probe(&index, t)).collect();
        assert_eq!(before, after);
        assert_eq!(index.last(), all.last().copied());

        index.reopen().unwrap();
        index.truncate(|e| e.relative_offset < 100).unwrap();
        assert_eq!(index.len(), 10);
        assert_eq!(fs::metadata(&path).unwrap().len(), 80);
        assert_eq!(
            SparseIndex::<OffsetEntry>::read_entries(&path)
                .unwrap()
                .unwrap(),
            all[..10]
        );
    }

    #[test]
    fn persist_writes_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let index = SparseIndex::active(path.clone(), Vec::new(), 0).unwrap();
        index.push(TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        });
        index.persist().unwrap();
        index.push(TimeEntry {
            timestamp: 9,
            relative_offset: 3,
        });
        index.persist().unwrap();
        let read = SparseIndex::<TimeEntry>::read_entries(&path)
            .unwrap()
            .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].timestamp, 9);
        fs::write(&path, [0u8; 13]).unwrap();
        assert!(SparseIndex::<TimeEntry>::read_entries(&path).is_err());
    }

    #[test]
    fn consistency_checks_catch_disorder() {
        let good = entries(5);
        assert!(offset_entries_consistent(&good, 5 * 4096));
        assert!(!offset_entries_consistent(&good, 4 * 4096));
        let mut bad = good.clone();
        bad.swap(1, 2);
        assert!(!offset_entries_consistent(&bad, 1 << 20));
        let times = [
            TimeEntry {
                timestamp: 1,
                relative_offset: 0,
            },
            TimeEntry {
                timestamp: 1,
                relative_offset: 2,
            },
        ];
        assert!(!time_entries_consistent(&times, 10));
        assert!(time_entries_consistent(&times[..1], 0));
    }
}
