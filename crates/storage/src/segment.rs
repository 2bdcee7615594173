//! One segment: `<base offset>.log` holding whole batches back to back, its
//! `.index` and `.timeindex` ([`crate::index`]).
//!
//! Thread-safety: one appender (the log's append lock serialises it) writes
//! at the end of the active segment and then publishes the new
//! `committed_size` with release ordering; any number of readers `pread`
//! below the size they loaded, so they never see a partial batch. Readers
//! never take a lock that the appender holds across I/O.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use records::{BatchHeader, Batches, HEADER_LEN, RecordsError};

use crate::StorageError;
use crate::index::{
    OffsetEntry, SparseIndex, TimeEntry, offset_entries_consistent, remove_if_exists,
    time_entries_consistent,
};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Bytes read past `max_bytes` by a fetch's first `pread`, so that the walk
/// from the index entry to the wanted batch usually needs no second one.
const READ_SLACK: usize = 32 * 1024;
/// Chunk size of recovery and lookup scans.
const SCAN_CHUNK: usize = 1 << 20;

pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset a segment file's name stands for, if it is one.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Where an offset index entry says a batch is, and the last offset of
/// that batch (what the entry records).
#[derive(Debug, Clone, Copy)]
struct IndexedBatch {
    position: u64,
    last_offset: i64,
}

impl IndexedBatch {
    /// Whether `header`, read at this entry's position, is the batch it
    /// names.
    fn names(&self, header: Option<&BatchHeader>) -> bool {
        header.is_some_and(|h| h.last_offset() == self.last_offset)
    }
}

/// Whether a batch's offsets fit in an i64 (a corrupt or hostile base
/// offset may not); `last_offset()` and `next_offset()` are safe if so.
pub(crate) fn offsets_fit(header: &BatchHeader) -> bool {
    header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .and_then(|last| last.checked_add(1))
        .is_some()
}

pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a read found in one segment.
#[derive(Debug)]
pub(crate) enum SegmentRead {
    /// Whole batches, the first holding the wanted offset; `to_end` when
    /// they run to the end of the segment (as far as the caller's size).
    Batches { records: Bytes, to_end: bool },
    /// The batch holding the offset starts at or past the bound.
    AtBound,
    /// No batch in this segment reaches the offset: look in the next one.
    NotHere,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    file: File,
    /// Bytes of complete batches: what readers may read.
    committed_size: AtomicU64,
    /// The offset after the last batch (the segment's base if empty).
    next_offset: AtomicI64,
    /// Largest batch max-timestamp, -1 if none; and the last offset of the
    /// batch that carried it.
    max_timestamp: AtomicI64,
    offset_of_max_timestamp: AtomicI64,
    /// Bytes appended since the last offset-index entry (appender only).
    bytes_since_index: AtomicU64,
    pub(crate) offset_index: SparseIndex<OffsetEntry>,
    pub(crate) time_index: SparseIndex<TimeEntry>,
    /// Tests only: bytes the next write may put down before failing as a
    /// full disk would (-1: no limit).
    #[cfg(test)]
    pub(crate) write_budget: AtomicI64,
}

/// Why a segment's load stopped short of its file's end.
#[derive(Debug)]
pub(crate) struct Damage {
    pub(crate) position: u64,
    pub(crate) reason: String,
}

/// The result of loading a segment at start-up.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) segment: Segment,
    /// Set when the file was cut: later segments must go too.
    pub(crate) damage: Option<Damage>,
    /// (epoch, first offset) each time the batches' leader epoch rose, when
    /// the whole segment was scanned.
    pub(crate) epochs: Vec<(i32, i64)>,
    pub(crate) scanned: bool,
}

impl Segment {
    /// A new, empty segment (a leftover file of the same name is emptied).
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(StorageError::io("create", &log_path))?;
        Segment::with_indexes(dir, base_offset, log_path, file, 0, Vec::new(), Vec::new())
    }

    /// A segment whose index files hold exactly the given entries (empty
    /// ones to rebuild them).
    fn with_indexes(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        file: File,
        size: u64,
        offset_entries: Vec<OffsetEntry>,
        time_entries: Vec<TimeEntry>,
    ) -> Result<Segment, StorageError> {
        let offsets_persisted = offset_entries.len();
        let times_persisted = time_entries.len();
        let (max_timestamp, offset_of_max_timestamp) =
            time_entries.last().map_or((-1, base_offset), |e| {
                (e.timestamp, base_offset + i64::from(e.relative_offset))
            });
        let offset_index = SparseIndex::active(
            dir.join(file_name(base_offset, INDEX_SUFFIX)),
            offset_entries,
            offsets_persisted,
        )?;
        let time_index = SparseIndex::active(
            dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
            time_entries,
            times_persisted,
        )?;
        Ok(Segment {
            base_offset,
            log_path,
            file,
            committed_size: AtomicU64::new(size),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(max_timestamp),
            offset_of_max_timestamp: AtomicI64::new(offset_of_max_timestamp),
            bytes_since_index: AtomicU64::new(0),
            #[cfg(test)]
            write_budget: AtomicI64::new(-1),
            offset_index,
            time_index,
        })
    }

    /// Opens an existing segment at start-up.
    ///
    /// With `scan` every batch is validated and both indexes are rebuilt
    /// (recovery after an unclean stop). Without it the index files are
    /// trusted if consistent, and only the batches after the last offset
    /// index entry are validated (which also yields the next offset); a
    /// missing or inconsistent index, or a bad tail, falls back to a scan.
    /// A scan cuts the file at the first bad batch: partial, over-long,
    /// failing its CRC, or with offsets that go backwards, leave the
    /// segment, or reach `limit_offset` (the next segment's base).
    pub(crate) fn load(
        dir: &Path,
        base_offset: i64,
        scan: bool,
        limit_offset: Option<i64>,
        index_interval_bytes: u64,
    ) -> Result<Loaded, StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(StorageError::io("open", &log_path))?;
        let file_size = file
            .metadata()
            .map_err(StorageError::io("stat", &log_path))?
            .len();
        if !scan {
            if let Some(loaded) = Segment::load_trusted(
                dir,
                base_offset,
                &log_path,
                &file,
                file_size,
                limit_offset,
                index_interval_bytes,
            )? {
                return Ok(loaded);
            }
            tracing::info!(
                segment = %log_path.display(),
                "index missing or inconsistent with the log, rebuilding it"
            );
        }
        let segment =
            Segment::with_indexes(dir, base_offset, log_path, file, 0, Vec::new(), Vec::new())?;
        let mut epochs = Vec::new();
        let damage = segment.scan_and_index(
            0,
            file_size,
            limit_offset,
            index_interval_bytes,
            &mut epochs,
        )?;
        if let Some(damage) = &damage {
            tracing::warn!(
                segment = %segment.log_path.display(),
                position = damage.position,
                reason = %damage.reason,
                "truncating the log at the first invalid batch"
            );
            segment
                .file
                .set_len(damage.position)
                .map_err(StorageError::io("truncate", &segment.log_path))?;
        }
        segment.seek_to_end()?;
        Ok(Loaded {
            segment,
            damage,
            epochs,
            scanned: true,
        })
    }

    fn load_trusted(
        dir: &Path,
        base_offset: i64,
        log_path: &Path,
        file: &File,
        file_size: u64,
        limit_offset: Option<i64>,
        index_interval_bytes: u64,
    ) -> Result<Option<Loaded>, StorageError> {
        let offsets_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let times_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let (Ok(Some(offset_entries)), Ok(Some(time_entries))) = (
            SparseIndex::<OffsetEntry>::read_entries(&offsets_path),
            SparseIndex::<TimeEntry>::read_entries(&times_path),
        ) else {
            return Ok(None);
        };
        if !offset_entries_consistent(&offset_entries, file_size)
            || !time_entries_consistent(&time_entries, u32::MAX)
        {
            return Ok(None);
        }
        // The last entry must point at the start of the batch it names.
        if let Some(last) = offset_entries.last() {
            let mut header = [0u8; HEADER_LEN];
            if file
                .read_exact_at(&mut header, u64::from(last.position))
                .is_err()
            {
                return Ok(None);
            }
            match BatchHeader::parse(&header) {
                Ok(h)
                    if offsets_fit(&h)
                        && h.last_offset() == base_offset + i64::from(last.relative_offset) => {}
                _ => return Ok(None),
            }
        }
        let tail_start = offset_entries.last().map_or(0, |e| u64::from(e.position));
        let file = file
            .try_clone()
            .map_err(StorageError::io("open", log_path))?;
        let segment = Segment::with_indexes(
            dir,
            base_offset,
            log_path.to_path_buf(),
            file,
            tail_start,
            offset_entries,
            time_entries,
        )?;
        let mut epochs = Vec::new();
        let damage = segment.scan_and_index(
            tail_start,
            file_size,
            limit_offset,
            index_interval_bytes,
            &mut epochs,
        )?;
        if damage.is_some() || segment.size() != file_size {
            return Ok(None);
        }
        let last_offset = segment.next_offset() - 1 - base_offset;
        if segment
            .time_index
            .last()
            .is_some_and(|e| i64::from(e.relative_offset) > last_offset)
        {
            return Ok(None);
        }
        segment.seek_to_end()?;
        Ok(Some(Loaded {
            segment,
            damage: None,
            epochs: Vec::new(),
            scanned: false,
        }))
    }

    /// Validates the batches in `[start, end)` and indexes them as appends
    /// would, publishing size and next offset as it goes. Returns where and
    /// why it stopped early, if it did.
    fn scan_and_index(
        &self,
        start: u64,
        end: u64,
        limit_offset: Option<i64>,
        index_interval_bytes: u64,
        epochs: &mut Vec<(i32, i64)>,
    ) -> Result<Option<Damage>, StorageError> {
        let mut expected = self.next_offset();
        let mut problem = None;
        let outcome = scan_batches(
            &self.file,
            &self.log_path,
            start,
            end,
            |position, header| {
                let reason = if !offsets_fit(header) {
                    Some(format!(
                        "batch at offset {} overflows the offset range",
                        header.base_offset
                    ))
                } else if header.base_offset < expected {
                    Some(format!(
                        "batch at offset {} goes back before offset {expected}",
                        header.base_offset
                    ))
                } else if header.last_offset() - self.base_offset > i64::from(u32::MAX) {
                    Some(format!(
                        "batch ending at offset {} does not fit a segment based at {}",
                        header.last_offset(),
                        self.base_offset
                    ))
                } else if limit_offset.is_some_and(|limit| header.last_offset() >= limit) {
                    Some(format!(
                        "batch ending at offset {} overlaps the next segment",
                        header.last_offset()
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    problem = Some(Damage { position, reason });
                    return false;
                }
                expected = header.next_offset();
                if epochs
                    .last()
                    .is_none_or(|&(epoch, _)| header.partition_leader_epoch > epoch)
                {
                    epochs.push((header.partition_leader_epoch, header.base_offset));
                }
                self.index_batch(position, header, index_interval_bytes);
                self.publish(
                    position + header.size_in_bytes() as u64,
                    header.next_offset(),
                );
                true
            },
        )?;
        Ok(problem.or(outcome.map(|(position, err)| Damage {
            position,
            reason: err.to_string(),
        })))
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn size(&self) -> u64 {
        self.committed_size.load(Ordering::Acquire)
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// The file's modification time, for retention of segments whose
    /// batches carry no timestamps.
    pub(crate) fn last_modified_ms(&self) -> Option<i64> {
        let modified = self.file.metadata().ok()?.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok()
    }

    /// Whether the offset index or time index has no room left under
    /// `segment.index.bytes`.
    pub(crate) fn index_full(&self, segment_index_bytes: u64) -> bool {
        let max_entries = |size: u64| (segment_index_bytes / size).max(1) as usize;
        self.offset_index.len() >= max_entries(8) || self.time_index.len() >= max_entries(12)
    }

    /// Records a batch just written at `position` in the in-memory indexes,
    /// by Kafka's rule: an offset entry when more than
    /// `log.index.interval.bytes` were appended since the last one, and a
    /// time entry beside it when the largest timestamp grew.
    pub(crate) fn index_batch(&self, position: u64, header: &BatchHeader, interval: u64) {
        if header.max_timestamp > self.max_timestamp.load(Ordering::Relaxed) {
            self.max_timestamp
                .store(header.max_timestamp, Ordering::Release);
            self.offset_of_max_timestamp
                .store(header.last_offset(), Ordering::Release);
        }
        let since = self.bytes_since_index.load(Ordering::Relaxed);
        if since > interval {
            self.offset_index.push(OffsetEntry {
                relative_offset: (header.last_offset() - self.base_offset) as u32,
                position: position as u32,
            });
            self.maybe_push_time_entry();
            self.bytes_since_index
                .store(header.size_in_bytes() as u64, Ordering::Relaxed);
        } else {
            self.bytes_since_index
                .store(since + header.size_in_bytes() as u64, Ordering::Relaxed);
        }
    }

    fn maybe_push_time_entry(&self) {
        let timestamp = self.max_timestamp.load(Ordering::Relaxed);
        if self
            .time_index
            .last()
            .map_or(timestamp >= 0, |last| timestamp > last.timestamp)
        {
            let offset = self.offset_of_max_timestamp.load(Ordering::Relaxed);
            self.time_index.push(TimeEntry {
                timestamp,
                relative_offset: (offset - self.base_offset) as u32,
            });
        }
    }

    /// Makes bytes up to `size` visible to readers.
    pub(crate) fn publish(&self, size: u64, next_offset: i64) {
        self.committed_size.store(size, Ordering::Release);
        self.next_offset.store(next_offset, Ordering::Release);
    }

    /// Writes `slices` at the end of the file with as few `writev` calls as
    /// the kernel allows (one, normally). On failure the caller cuts the
    /// file back with [`Segment::repair`].
    pub(crate) fn write_vectored(&self, slices: &mut [IoSlice<'_>]) -> Result<(), StorageError> {
        #[cfg(test)]
        self.fail_like_a_full_disk(slices)?;
        let mut slices = slices;
        while !slices.is_empty() {
            match (&self.file).write_vectored(slices) {
                Ok(0) => {
                    return Err(StorageError::io("write", &self.log_path)(
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(StorageError::io("write", &self.log_path)(err)),
            }
        }
        Ok(())
    }

    /// Tests only: writes part of `slices` and fails if they exceed the
    /// write budget, as a write that hits a full disk midway does.
    #[cfg(test)]
    fn fail_like_a_full_disk(&self, slices: &[IoSlice<'_>]) -> Result<(), StorageError> {
        let budget = self.write_budget.load(Ordering::Relaxed);
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if budget < 0 || total as i64 <= budget {
            return Ok(());
        }
        let partial: Vec<u8> = slices
            .iter()
            .flat_map(|s| s.iter().copied())
            .take(budget as usize)
            .collect();
        (&self.file)
            .write_all(&partial)
            .map_err(StorageError::io("write", &self.log_path))?;
        Err(StorageError::io("write", &self.log_path)(
            std::io::ErrorKind::StorageFull.into(),
        ))
    }

    /// Cuts whatever lies past the committed size and puts the write
    /// position back there.
    pub(crate) fn repair(&self) -> Result<(), StorageError> {
        self.file
            .set_len(self.size())
            .map_err(StorageError::io("truncate", &self.log_path))?;
        self.seek_to_end()
    }

    fn seek_to_end(&self) -> Result<(), StorageError> {
        (&self.file)
            .seek(SeekFrom::Start(self.size()))
            .map(|_| ())
            .map_err(StorageError::io("seek", &self.log_path))
    }

    /// Cuts the segment to `size` bytes (a batch boundary) whose last batch
    /// ends before `next_offset`, and its indexes to match.
    pub(crate) fn truncate(&self, size: u64, next_offset: i64) -> Result<(), StorageError> {
        self.file
            .set_len(size)
            .map_err(StorageError::io("truncate", &self.log_path))?;
        self.publish(size, next_offset);
        self.seek_to_end()?;
        let last_relative = next_offset - 1 - self.base_offset;
        self.offset_index.reopen()?;
        self.time_index.reopen()?;
        self.offset_index.truncate(|e| {
            u64::from(e.position) < size && i64::from(e.relative_offset) <= last_relative
        })?;
        self.time_index
            .truncate(|e| i64::from(e.relative_offset) <= last_relative)?;
        // Rebuild what the indexes knew about the tail.
        let tail_start = self
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
        self.max_timestamp.store(
            self.time_index.last().map_or(-1, |e| e.timestamp),
            Ordering::Release,
        );
        self.offset_of_max_timestamp.store(
            self.time_index.last().map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            }),
            Ordering::Release,
        );
        self.bytes_since_index.store(0, Ordering::Relaxed);
        let mut max = (-1i64, self.base_offset);
        let mut since = 0u64;
        scan_batches(&self.file, &self.log_path, tail_start, size, |_, header| {
            if header.max_timestamp > max.0 {
                max = (header.max_timestamp, header.last_offset());
            }
            since += header.size_in_bytes() as u64;
            true
        })?;
        if max.0 > self.max_timestamp() {
            self.max_timestamp.store(max.0, Ordering::Release);
            self.offset_of_max_timestamp.store(max.1, Ordering::Release);
        }
        self.bytes_since_index.store(since, Ordering::Relaxed);
        Ok(())
    }

    /// The file position of the first batch that holds an offset >=
    /// `offset`, with that batch's header; `None` if none does.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let start = self.index_position(offset)?;
        let mut found = None;
        scan_batches(
            &self.file,
            &self.log_path,
            start,
            self.size(),
            |position, header| {
                if header.last_offset() >= offset {
                    found = Some((position, *header));
                    return false;
                }
                true
            },
        )?;
        Ok(found)
    }

    /// Where to start looking for `offset`: the position of the last indexed
    /// batch ending before it, once the batch there is the one the entry
    /// names (else 0: the whole segment is scanned).
    fn index_position(&self, offset: i64) -> Result<u64, StorageError> {
        let Some(entry) = self.index_positions(offset)?.0 else {
            return Ok(0);
        };
        let mut header = [0u8; HEADER_LEN];
        let named = self.file.read_exact_at(&mut header, entry.position).is_ok()
            && entry.names(BatchHeader::parse(&header).as_ref().ok());
        if named {
            Ok(entry.position)
        } else {
            self.warn_misplaced_entry(entry);
            Ok(0)
        }
    }

    /// A loaded index is checked only at its last entry (as Kafka's is): an
    /// earlier entry damaged on disk can point inside a batch, where a
    /// header may even parse. Readers distrust it and scan the segment.
    fn warn_misplaced_entry(&self, entry: IndexedBatch) {
        tracing::warn!(
            segment = %self.log_path.display(),
            position = entry.position,
            last_offset = entry.last_offset,
            "an offset index entry does not point at the batch it names; scanning from the start"
        );
    }

    /// The last indexed batch ending before `offset` and the first ending
    /// at or after it. Entries name a batch's last offset, so the second is
    /// the batch holding `offset` whenever that batch is indexed: with
    /// batches larger than `log.index.interval.bytes`, every one but a
    /// segment's first is.
    fn index_positions(
        &self,
        offset: i64,
    ) -> Result<(Option<IndexedBatch>, Option<IndexedBatch>), StorageError> {
        let relative = offset - self.base_offset;
        if relative < 0 {
            return Ok((None, None));
        }
        let relative = u32::try_from(relative).unwrap_or(u32::MAX);
        let size = self.size();
        let (before, after) = self
            .offset_index
            .lookup_around(|e| e.relative_offset < relative)?;
        let indexed = |e: OffsetEntry| IndexedBatch {
            position: u64::from(e.position),
            last_offset: self.base_offset + i64::from(e.relative_offset),
        };
        let before = before.map(indexed).filter(|e| e.position < size);
        let after = after
            .map(indexed)
            .filter(|e| e.position < size && e.position > before.map_or(0, |b| b.position));
        Ok((before, after))
    }

    /// The first batch whose max timestamp is >= `timestamp`, with its
    /// position (the time index narrows the scan).
    pub(crate) fn find_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(u64, BatchHeader, Bytes)>, StorageError> {
        let start = match self.time_index.lookup(|e| e.timestamp < timestamp)? {
            Some(entry) => {
                self.index_position(self.base_offset + i64::from(entry.relative_offset))?
            }
            None => 0,
        };
        let mut found = None;
        let mut position_found = 0;
        scan_batches(
            &self.file,
            &self.log_path,
            start,
            self.size(),
            |position, header| {
                if header.max_timestamp >= timestamp {
                    found = Some(*header);
                    position_found = position;
                    return false;
                }
                true
            },
        )?;
        let Some(header) = found else {
            return Ok(None);
        };
        let bytes = self.read_exact(position_found, header.size_in_bytes())?;
        Ok(Some((position_found, header, bytes)))
    }

    fn read_exact(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(StorageError::io("read", &self.log_path))?;
        Ok(Bytes::from(buf))
    }

    /// Reads up to `len` bytes at `position`, fewer if the file is shorter
    /// (a concurrent truncation; the caller notices and retries).
    fn read_at_most(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..], position + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(StorageError::io("read", &self.log_path)(err)),
            }
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }

    /// Whole batches from the one holding `offset`: at most `max_bytes`
    /// unless the first batch alone is larger and `at_least_one`, none
    /// starting at or past `bound`, none past `size` (the committed size
    /// the caller loaded).
    /// Usually one `pread`, two when the index entry lies far before the
    /// batch or the first read fell short of `max_bytes`.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: i64,
        size: u64,
        at_least_one: bool,
    ) -> Result<SegmentRead, StorageError> {
        let (before, after) = self.index_positions(offset)?;
        // Optimistic first: the indexed batch after `before` usually holds
        // `offset`, and then one read of exactly `max_bytes` answers.
        let mut optimistic = after.is_some();
        // The index entry the read starts from, until its batch is seen.
        let mut entry = after.or(before);
        let mut position = entry.map_or(0, |e| e.position);
        let mut want = max_bytes.max(HEADER_LEN);
        if !optimistic {
            want = want.saturating_add(READ_SLACK);
        }
        let mut retried_from_start = false;
        // Find the batch holding `offset`.
        let (chunk, at, chunk_start) = 'locate: loop {
            if position >= size {
                return Ok(SegmentRead::NotHere);
            }
            let len = want.min((size - position) as usize);
            let chunk = self.read_at_most(position, len)?;
            let mut at = 0usize;
            while at + HEADER_LEN <= chunk.len() {
                let header = BatchHeader::parse(&chunk[at..]);
                if let Some(e) = entry.take()
                    && !e.names(header.as_ref().ok())
                {
                    self.warn_misplaced_entry(e);
                    optimistic = false;
                    retried_from_start = true;
                    position = 0;
                    want = want.saturating_add(READ_SLACK);
                    continue 'locate;
                }
                if optimistic && !header.as_ref().is_ok_and(|h| h.base_offset <= offset) {
                    // `offset` lies before that batch: walk from `before`.
                    optimistic = false;
                    entry = before;
                    position = before.map_or(0, |e| e.position);
                    want = want.saturating_add(READ_SLACK);
                    continue 'locate;
                }
                let header = match header {
                    Ok(header) => header,
                    Err(err) if position != 0 && !retried_from_start => {
                        // The index pointed at no batch: distrust it.
                        tracing::warn!(
                            segment = %self.log_path.display(),
                            error = %err,
                            "offset index points inside a batch; scanning from the start"
                        );
                        retried_from_start = true;
                        position = 0;
                        continue 'locate;
                    }
                    Err(err) => {
                        return Err(StorageError::CorruptFile {
                            path: self.log_path.clone(),
                            reason: format!("at position {}: {err}", position + at as u64),
                        });
                    }
                };
                if header.last_offset() >= offset {
                    break 'locate (chunk, at, position);
                }
                at += header.size_in_bytes();
            }
            if chunk.len() < len {
                // Short read: the file shrank under us; the caller retries.
                return Ok(SegmentRead::NotHere);
            }
            position += at as u64;
        };
        let first = chunk.slice(at..);
        let (len, ran_out) = whole_batches(&first, max_bytes, bound, at_least_one);
        if len == 0 && !ran_out {
            return Ok(SegmentRead::AtBound);
        }
        let chunk_end = chunk_start + chunk.len() as u64;
        if !ran_out || chunk_end >= size {
            if len == 0 {
                return Err(StorageError::CorruptFile {
                    path: self.log_path.clone(),
                    reason: format!(
                        "batch at position {} runs past the end",
                        chunk_start + at as u64
                    ),
                });
            }
            return Ok(SegmentRead::Batches {
                records: first.slice(..len),
                to_end: chunk_start + (at + len) as u64 >= size,
            });
        }
        // The first read stopped short: read again from the batch itself.
        let start = chunk_start + at as u64;
        let first_size = records::peek_batch_size(&first).unwrap_or(0);
        let len = max_bytes.max(first_size).min((size - start) as usize);
        let again = self.read_at_most(start, len)?;
        let (len, _) = whole_batches(&again, max_bytes, bound, at_least_one);
        if len == 0 {
            return Ok(SegmentRead::AtBound);
        }
        Ok(SegmentRead::Batches {
            records: again.slice(..len),
            to_end: start + len as u64 >= size,
        })
    }

    /// Writes the indexes' unwritten entries and fsyncs the log and them.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io("fsync", &self.log_path))?;
        self.offset_index.persist()?;
        self.offset_index.sync()?;
        self.time_index.persist()?;
        self.time_index.sync()
    }

    /// Reduces the indexes of a segment loaded at start-up that is not the
    /// last one to their summaries, writing any entry the load added.
    pub(crate) fn close_loaded(&self) -> Result<(), StorageError> {
        self.offset_index.persist()?;
        self.time_index.persist()?;
        self.offset_index.summarise();
        self.time_index.summarise();
        Ok(())
    }

    /// The first batch's header, if the segment has one.
    pub(crate) fn first_batch(&self) -> Option<BatchHeader> {
        if self.size() < HEADER_LEN as u64 {
            return None;
        }
        let mut header = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut header, 0).ok()?;
        BatchHeader::parse(&header).ok()
    }

    /// The segment stops being the active one: final time-index entry (so
    /// the segment's largest timestamp survives a restart), indexes written,
    /// everything fsynced, indexes reduced to their in-memory summaries.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        self.maybe_push_time_entry();
        self.file
            .sync_data()
            .map_err(StorageError::io("fsync", &self.log_path))?;
        self.offset_index.close()?;
        self.time_index.close()
    }

    /// Removes the segment's files; readers that still hold it keep reading
    /// the unlinked file.
    pub(crate) fn delete(&self) -> Result<(), StorageError> {
        remove_if_exists(&self.log_path)?;
        self.offset_index.delete()?;
        self.time_index.delete()
    }
}

/// The length of the longest run of whole batches at the start of `buf`
/// that a read returns: the first batch even if larger than `max_bytes`
/// when `at_least_one`, then more while they fit; none whose base offset is
/// at or past `bound`. Also says whether the walk stopped only because `buf` ended.
fn whole_batches(buf: &[u8], max_bytes: usize, bound: i64, at_least_one: bool) -> (usize, bool) {
    let mut len = 0usize;
    loop {
        let rest = &buf[len..];
        let Some(size) = records::peek_batch_size(rest) else {
            return (len, true);
        };
        let mut base = [0u8; 8];
        base.copy_from_slice(&rest[..8]);
        if i64::from_be_bytes(base) >= bound {
            return (len, false);
        }
        if size < HEADER_LEN {
            // Not a batch; whatever follows cannot be returned.
            return (len, false);
        }
        if (len > 0 || !at_least_one) && len + size > max_bytes {
            return (len, false);
        }
        if size > rest.len() {
            return (len, true);
        }
        len += size;
    }
}

/// Calls `visit(position, header)` for each valid batch in `[start, end)`
/// of `file`, reading in chunks, until `visit` returns false or the range
/// ends. Returns the position and error of the first invalid batch, if any.
pub(crate) fn scan_batches(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    mut visit: impl FnMut(u64, &BatchHeader) -> bool,
) -> Result<Option<(u64, RecordsError)>, StorageError> {
    let mut position = start;
    let mut chunk_len = SCAN_CHUNK;
    let mut buf = Vec::new();
    while position < end {
        let len = chunk_len.min((end - position) as usize);
        buf.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], position + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(StorageError::io("read", path)(err)),
            }
        }
        buf.truncate(filled);
        let file_ended = (filled as u64) < (end - position).min(len as u64);
        // Validation limit: anything that fits in what is left of the range.
        let mut consumed = 0usize;
        let mut error = None;
        for result in Batches::new(&buf, usize::MAX) {
            match result {
                Ok((header, _)) => {
                    if !visit(position + consumed as u64, &header) {
                        return Ok(None);
                    }
                    consumed += header.size_in_bytes();
                }
                Err(err) => error = Some(err),
            }
        }
        match error {
            None if consumed > 0 => {
                position += consumed as u64;
                chunk_len = SCAN_CHUNK;
            }
            None => return Ok(None),
            Some(RecordsError::Truncated { needed, .. })
                if !file_ended
                    && consumed + needed > buf.len()
                    && position + (consumed + needed) as u64 <= end =>
            {
                // The batch continues past this chunk: read from its start.
                position += consumed as u64;
                chunk_len = needed.max(SCAN_CHUNK);
            }
            Some(err) => return Ok(Some((position + consumed as u64, err))),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_have_twenty_digits() {
        assert_eq!(file_name(0, LOG_SUFFIX), "00000000000000000000.log");
        assert_eq!(file_name(1234, INDEX_SUFFIX), "00000000000000001234.index");
        assert_eq!(
            parse_file_name("00000000000000001234.index", INDEX_SUFFIX),
            Some(1234)
        );
        assert_eq!(parse_file_name("0000000000000001234.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_file_name("0000000000000000123x.log", LOG_SUFFIX),
            None
        );
        assert_eq!(
            parse_file_name("00000000000000001234.log", INDEX_SUFFIX),
            None
        );
    }
}
