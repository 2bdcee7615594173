//! One partition's log: an ordered list of segments, the last one active,
//! plus log start offset, log end offset (LEO), high watermark (HW),
//! recovery point and the leader-epoch history.
//!
//! Concurrency, as the broker uses it (`Arc<Log>` shared by request
//! handlers and fetchers):
//!
//! - **One appender at a time** (`appender` mutex). It validates outside the
//!   lock, then writes each append with one `writev` and publishes, in this
//!   order, the segment's committed size and the LEO (release stores).
//! - **Readers take no lock the appender holds across I/O**: they load the
//!   LEO, clone the published segment list (an `RwLock` held only to clone
//!   an `Arc`) and `pread` below each segment's committed size, so they only
//!   ever see whole batches.
//! - **Truncation** (followers, rare) is the one writer that shrinks files.
//!   It bumps a sequence number to odd before and to even after; a reader
//!   that saw it change retries, so it never returns bytes that a
//!   truncation replaced under it.
//! - **fsync** never runs under the append lock: `flush` takes its own
//!   `flusher` lock, and concurrent callers share one fsync.

use std::fs;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use records::{BatchHeader, Batches, Compression, RecordIter, RecordsError, TimestampType};

use crate::checkpoint::TEMP_SUFFIX;
use crate::epoch::LeaderEpochCache;
use crate::index::remove_if_exists;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Segment, SegmentRead, TIME_INDEX_SUFFIX, lock, parse_file_name,
    read_lock, write_lock,
};
use crate::{LogConfig, StorageError, TopicPartition};

/// Positions in the batch header that a LogAppendTime stamp rewrites
/// (Kafka's fixed RecordBatch v2 layout).
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;

/// The largest segment a position in the index (`u32`) and Kafka's
/// `segment.bytes` (an int) allow.
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first record appended (the LEO before the append).
    pub first_offset: i64,
    pub last_offset: i64,
    /// Largest batch max-timestamp appended (the append time with
    /// LogAppendTime), -1 if none.
    pub max_timestamp: i64,
    /// Last offset of the batch that carried `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    pub record_count: u64,
    /// Bytes appended.
    pub bytes: usize,
    /// The time stamped into the batches with LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    /// The log start offset after the append (for the produce response).
    pub log_start_offset: i64,
}

/// What a read returned, with the offsets it was answered against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadInfo {
    /// Whole batches, back to back; empty at the end of the log (or bound).
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// Appender-only state.
#[derive(Debug)]
struct Appender {
    /// Max timestamp of the active segment's first batch, for `segment.ms`.
    rolling_timestamp: Option<i64>,
    /// When the active segment was created or loaded.
    created_ms: i64,
    /// A failed write left bytes that could not be cut back yet.
    needs_repair: bool,
}

/// Where a log's state comes from when it is opened.
#[derive(Debug, Clone)]
pub(crate) struct LogOpen {
    pub(crate) dir: PathBuf,
    pub(crate) topic_partition: TopicPartition,
    pub(crate) topic_id: [u8; 16],
    pub(crate) config: LogConfig,
    pub(crate) recovery_point: Option<i64>,
    pub(crate) log_start_offset: Option<i64>,
    pub(crate) high_watermark: Option<i64>,
    /// The log dir had a clean-shutdown marker: no scan needed.
    pub(crate) clean: bool,
    pub(crate) now_ms: i64,
}

/// One partition's log. See the module docs for its thread-safety.
#[derive(Debug)]
pub struct Log {
    topic_partition: TopicPartition,
    dir: PathBuf,
    topic_id: Mutex<[u8; 16]>,
    config: RwLock<LogConfig>,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_end_offset: AtomicI64,
    log_start_offset: AtomicI64,
    high_watermark: AtomicI64,
    recovery_point: AtomicI64,
    /// Odd while a truncation rewrites files (a sequence lock for readers).
    truncations: AtomicU64,
    appender: Mutex<Appender>,
    /// Serialises fsyncs, index writes and segment closes.
    flusher: Mutex<()>,
    /// Segments a roll left, to be closed (fsynced, indexes written) off
    /// the append path: by the next flush or the manager's periodic pass.
    rolled: Mutex<Vec<Arc<Segment>>>,
    epochs: Mutex<LeaderEpochCache>,
    deleted: AtomicBool,
    last_flush_ms: AtomicI64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Log {
    /// Opens (and recovers, if the stop was unclean) the log in `open.dir`,
    /// creating an empty one if the directory holds no segment.
    pub(crate) fn open(open: LogOpen) -> Result<Log, StorageError> {
        let dir = &open.dir;
        let mut bases = Vec::new();
        let mut indexes = Vec::new();
        let entries = fs::read_dir(dir).map_err(StorageError::io("list", dir))?;
        for entry in entries {
            let entry = entry.map_err(StorageError::io("list", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(TEMP_SUFFIX)
                || name.ends_with(".deleted")
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
            {
                remove_if_exists(&path)?;
            } else if let Some(base) = parse_file_name(name, LOG_SUFFIX) {
                bases.push(base);
            } else if let Some(base) = parse_file_name(name, INDEX_SUFFIX)
                .or_else(|| parse_file_name(name, TIME_INDEX_SUFFIX))
            {
                indexes.push((base, path));
            }
        }
        bases.sort_unstable();
        for (base, path) in indexes {
            if bases.binary_search(&base).is_err() {
                remove_if_exists(&path)?;
            }
        }

        let (mut epochs, rebuild_epochs) = match LeaderEpochCache::load(dir) {
            Ok(cache) => (cache, false),
            Err(StorageError::CorruptFile { path, reason }) => {
                tracing::warn!(
                    file = %path.display(),
                    %reason,
                    "leader-epoch checkpoint is corrupt; rebuilding it from the log"
                );
                (LeaderEpochCache::empty(dir), true)
            }
            Err(err) => return Err(err),
        };

        // Below the recovery point everything was fsynced: only what lies
        // past it needs validating after an unclean stop.
        let scan_from = if rebuild_epochs {
            Some(i64::MIN)
        } else if open.clean {
            None
        } else {
            Some(open.recovery_point.unwrap_or(0))
        };
        let interval = open.config.index_interval_bytes;
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
        let mut scanned_epochs = Vec::new();
        let mut scanned = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let limit = bases.get(i + 1).copied();
            let scan = scan_from.is_some_and(|rp| limit.is_none_or(|next| next > rp));
            let loaded = Segment::load(dir, base, scan, limit, interval)?;
            scanned_epochs.extend(loaded.epochs);
            scanned.push(loaded.scanned);
            segments.push(Arc::new(loaded.segment));
            if let Some(damage) = loaded.damage {
                for &later in &bases[i + 1..] {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment = later,
                        position = damage.position,
                        "deleting a segment that follows damage in an earlier one"
                    );
                    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        remove_if_exists(&dir.join(crate::segment::file_name(later, suffix)))?;
                    }
                }
                break;
            }
        }
        if segments.is_empty() {
            let base = open.log_start_offset.unwrap_or(0).max(0);
            segments.push(Arc::new(Segment::create(dir, base)?));
            scanned.push(true);
        }
        // Closed segments keep only index summaries; whatever a scan
        // rewrote is made durable before the recovery point moves past it.
        let last = segments.len() - 1;
        for (segment, &was_scanned) in segments.iter().zip(&scanned).take(last) {
            if was_scanned {
                segment.close()?;
            } else {
                segment.close_loaded()?;
            }
        }
        if scanned[last] {
            segments[last].flush()?;
        }
        if scanned.iter().any(|&s| s) {
            crate::checkpoint::sync_dir(dir)?;
        }

        let active = Arc::clone(&segments[last]);
        let log_end_offset = active.next_offset();
        let first_base = segments[0].base_offset;
        let log_start_offset = open
            .log_start_offset
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        let high_watermark = open
            .high_watermark
            .unwrap_or(log_start_offset)
            .clamp(log_start_offset, log_end_offset);

        let mut epochs_changed = false;
        if rebuild_epochs {
            for (epoch, offset) in scanned_epochs {
                epochs.assign(epoch, offset);
            }
            epochs_changed = true;
        }
        // An epoch that starts exactly at the LEO (no batch written in it
        // yet, or all below the log start) is still knowledge: keep it.
        // (Saturating: a log a leader restarted at i64::MAX ends there.)
        epochs_changed |= epochs.truncate_from_end(log_end_offset.saturating_add(1));
        epochs_changed |= epochs.truncate_from_start(log_start_offset);
        if epochs_changed {
            epochs.persist()?;
        }

        let rolling_timestamp = active
            .first_batch()
            .map(|h| h.max_timestamp)
            .filter(|&ts| ts >= 0);
        Ok(Log {
            topic_partition: open.topic_partition,
            dir: open.dir.clone(),
            topic_id: Mutex::new(open.topic_id),
            config: RwLock::new(open.config),
            segments: RwLock::new(Arc::new(segments)),
            log_end_offset: AtomicI64::new(log_end_offset),
            log_start_offset: AtomicI64::new(log_start_offset),
            high_watermark: AtomicI64::new(high_watermark),
            recovery_point: AtomicI64::new(log_end_offset),
            truncations: AtomicU64::new(0),
            appender: Mutex::new(Appender {
                rolling_timestamp,
                created_ms: open.now_ms,
                needs_repair: false,
            }),
            flusher: Mutex::new(()),
            rolled: Mutex::new(Vec::new()),
            epochs: Mutex::new(epochs),
            deleted: AtomicBool::new(false),
            last_flush_ms: AtomicI64::new(open.now_ms),
        })
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }

    pub fn topic_id(&self) -> [u8; 16] {
        *lock(&self.topic_id)
    }

    pub(crate) fn set_topic_id(&self, topic_id: [u8; 16]) {
        *lock(&self.topic_id) = topic_id;
    }

    pub fn config(&self) -> LogConfig {
        *read_lock(&self.config)
    }

    /// Applies changed topic configs; they take effect from the next append
    /// (segment sizes) or retention pass.
    pub fn set_config(&self, config: LogConfig) {
        *write_lock(&self.config) = config;
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Everything below this offset is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Stores a new high watermark, clamped to `[log_start_offset,
    /// log_end_offset]`, and returns the stored value. Kept in memory;
    /// [`crate::LogManager::checkpoint`] persists it. The broker keeps it
    /// monotonic; truncation may lower it.
    pub fn set_high_watermark(&self, high_watermark: i64) -> i64 {
        let clamped = high_watermark.clamp(self.log_start_offset(), self.log_end_offset());
        self.high_watermark.store(clamped, Ordering::Release);
        clamped
    }

    /// Total bytes of the log's segments.
    pub fn size_in_bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.size()).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments().len()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        lock(&self.epochs).latest_epoch()
    }

    /// Kafka's OffsetsForLeaderEpoch answer: the largest epoch <= `epoch`
    /// in the history and the offset where it ended (the start of the next
    /// epoch, or the LEO for the latest). `None` if no epoch <= `epoch` is
    /// known.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let epochs = lock(&self.epochs);
        epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that `epoch` starts at the log end offset, if it is newer
    /// than every epoch in the history: a new leader does this before its
    /// first append, so a follower holding records of an older epoch finds
    /// where that epoch ended even if the new leader never writes. Returns
    /// whether the history changed.
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<bool, StorageError> {
        // The appender lock keeps the log end offset still while it is read.
        let _appender = lock(&self.appender);
        let mut epochs = lock(&self.epochs);
        let log_end_offset = self.log_end_offset();
        if !epochs.assign(epoch, log_end_offset) {
            return Ok(false);
        }
        if let Err(err) = epochs.persist() {
            // Memory must not claim what the disk does not hold.
            epochs.truncate_from_end(log_end_offset);
            return Err(err);
        }
        Ok(true)
    }

    /// The leader-epoch history, `(epoch, start_offset)` oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        lock(&self.epochs)
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&read_lock(&self.segments))
    }

    fn publish_segments(&self, segments: Vec<Arc<Segment>>) {
        *write_lock(&self.segments) = Arc::new(segments);
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Leader append: validates every batch (`message.max.bytes`, CRC,
    /// magic, length, at least one record), assigns offsets from the LEO and
    /// stamps `leader_epoch` into each batch, both outside the CRC, writing
    /// `rewritten_prefix + &batch[16..]` in one vectored write without
    /// copying the batch (LogAppendTime is the exception: it changes bytes
    /// under the CRC, so those batches are copied). Records `leader_epoch`
    /// in the epoch history when it is new. All or nothing.
    ///
    /// An empty `batches` appends nothing and returns `record_count == 0`.
    pub fn append_as_leader(
        &self,
        batches: &Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        self.append(batches, Some(leader_epoch), now_ms)
    }

    /// Follower append: the batches keep the offsets and epochs the leader
    /// gave them. The first must start at the LEO
    /// ([`StorageError::OffsetMismatch`] otherwise) and each must start
    /// after the one before. The epoch history follows the batches'
    /// partition leader epochs.
    pub fn append_as_follower(&self, batches: &Bytes) -> Result<LogAppendInfo, StorageError> {
        self.append(batches, None, now_ms())
    }

    fn append(
        &self,
        batches: &Bytes,
        leader_epoch: Option<i32>,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let config = self.config();
        let is_leader = leader_epoch.is_some();
        // Validation needs no lock: it only reads the caller's bytes.
        let mut headers: Vec<(BatchHeader, usize)> = Vec::new();
        let mut start = 0;
        for result in Batches::new(batches, config.max_message_bytes) {
            let (header, _) = result?;
            if header.compression().is_none() {
                return Err(StorageError::InvalidBatch(
                    RecordsError::UnsupportedCompression((header.attributes & 0x07) as u8),
                ));
            }
            if is_leader
                && (header.record_count < 1 || header.last_offset_delta != header.record_count - 1)
            {
                return Err(StorageError::InvalidBatch(RecordsError::CorruptRecord(
                    "record count does not match the batch's last offset delta",
                )));
            }
            headers.push((header, start));
            start += header.size_in_bytes();
        }
        let total = batches.len();
        let segment_bytes = config.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
        if total as u64 > segment_bytes {
            return Err(StorageError::RecordBatchTooLarge {
                size: total,
                segment_bytes,
            });
        }

        let mut appender = lock(&self.appender);
        if self.deleted.load(Ordering::Acquire) {
            return Err(StorageError::LogDeleted(self.topic_partition.clone()));
        }
        let segments = self.segments();
        let mut active = Arc::clone(segments.last().ok_or_else(|| self.no_segment())?);
        if appender.needs_repair {
            active.repair()?;
            appender.needs_repair = false;
        }
        let log_end_offset = self.log_end_offset();
        if headers.is_empty() {
            return Ok(LogAppendInfo {
                first_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                max_timestamp: -1,
                offset_of_max_timestamp: -1,
                record_count: 0,
                bytes: 0,
                log_append_time_ms: -1,
                log_start_offset: self.log_start_offset(),
            });
        }

        // Assign offsets (leader) or check them (follower).
        let mut next = log_end_offset;
        for (header, _) in headers.iter_mut() {
            if is_leader {
                header.base_offset = next;
            }
            if !crate::segment::offsets_fit(header) {
                return Err(StorageError::InvalidBatch(RecordsError::CorruptRecord(
                    "batch offsets overflow the offset range",
                )));
            }
            if !is_leader
                && (header.base_offset < next
                    || (next == log_end_offset && header.base_offset != next))
            {
                // The first batch must start exactly at the LEO; later ones
                // anywhere after the batch before (a compacted leader log
                // has gaps).
                return Err(StorageError::OffsetMismatch {
                    expected: next,
                    actual: header.base_offset,
                });
            }
            next = header.next_offset();
        }
        let first_offset = log_end_offset;
        let last_offset = next - 1;
        if last_offset - first_offset > i64::from(u32::MAX) {
            // One append goes into one segment, whose index names offsets
            // relative to its base in 32 bits.
            return Err(StorageError::InvalidBatch(RecordsError::CorruptRecord(
                "the offsets of one append span more than 2^32",
            )));
        }
        let log_append_time =
            is_leader && config.message_timestamp_type == TimestampType::LogAppendTime;
        let incoming_max_timestamp = if log_append_time {
            now_ms
        } else {
            headers
                .iter()
                .map(|(h, _)| h.max_timestamp)
                .max()
                .unwrap_or(-1)
        };

        let mut rolled = None;
        if self.should_roll(
            &appender,
            &active,
            &config,
            total as u64,
            incoming_max_timestamp,
            last_offset,
            now_ms,
        ) {
            let segment = Arc::new(Segment::create(&self.dir, first_offset)?);
            let mut list = Vec::with_capacity(segments.len() + 1);
            list.extend(segments.iter().cloned());
            list.push(Arc::clone(&segment));
            self.publish_segments(list);
            rolled = Some(std::mem::replace(&mut active, segment));
            // Closed off the append path (Kafka flushes a rolled segment
            // asynchronously too).
            appender.rolling_timestamp = None;
            appender.created_ms = now_ms;
        }

        // The epoch history first: if it cannot be written, nothing is (and
        // memory goes back to what the disk holds).
        let epoch_assigned = 'epochs: {
            let mut epochs = lock(&self.epochs);
            // Almost every append is in the latest epoch: nothing to assign,
            // so nothing to copy for a rollback.
            let new_epoch = match leader_epoch {
                Some(epoch) => epochs.would_assign(epoch),
                None => headers
                    .iter()
                    .any(|(header, _)| epochs.would_assign(header.partition_leader_epoch)),
            };
            if !new_epoch {
                break 'epochs false;
            }
            let before = epochs.entries().to_vec();
            let mut changed = false;
            match leader_epoch {
                Some(epoch) => changed |= epochs.assign(epoch, first_offset),
                None => {
                    for (header, _) in &headers {
                        changed |= epochs.assign(header.partition_leader_epoch, header.base_offset);
                    }
                }
            }
            if changed && let Err(err) = epochs.persist() {
                epochs.restore(before);
                return Err(err);
            }
            changed
        };

        let epoch_for =
            |header: &BatchHeader| leader_epoch.unwrap_or(header.partition_leader_epoch);
        let position = active.size();
        let write_result = if log_append_time {
            // Attributes and max timestamp lie under the CRC: copy, stamp,
            // re-checksum.
            let mut owned = Vec::with_capacity(total);
            for (header, start) in &headers {
                let batch = &batches[*start..*start + header.size_in_bytes()];
                let at = owned.len();
                owned.extend_from_slice(batch);
                stamp_log_append_time(&mut owned[at..], now_ms);
                records::set_base_offset_and_epoch(
                    &mut owned[at..],
                    header.base_offset,
                    epoch_for(header),
                );
            }
            active.write_vectored(&mut [IoSlice::new(&owned)])
        } else {
            let prefixes: Vec<[u8; 16]> = headers
                .iter()
                .map(|(header, start)| {
                    records::rewritten_prefix(
                        &batches[*start..],
                        header.base_offset,
                        epoch_for(header),
                    )
                })
                .collect();
            let mut slices = Vec::with_capacity(headers.len() * 2);
            for ((header, start), prefix) in headers.iter().zip(&prefixes) {
                slices.push(IoSlice::new(prefix));
                slices.push(IoSlice::new(
                    &batches[*start + 16..*start + header.size_in_bytes()],
                ));
            }
            active.write_vectored(&mut slices)
        };
        if let Err(err) = write_result {
            if active.repair().is_err() {
                appender.needs_repair = true;
            }
            if epoch_assigned {
                let mut epochs = lock(&self.epochs);
                if epochs.truncate_from_end(first_offset) {
                    let _ = epochs.persist();
                }
            }
            return Err(err);
        }

        let interval = config.index_interval_bytes;
        let mut at = position;
        let mut max_timestamp = -1;
        let mut offset_of_max_timestamp = -1;
        let mut record_count = 0u64;
        for (header, _) in headers.iter_mut() {
            if log_append_time {
                header.max_timestamp = now_ms;
            }
            if header.max_timestamp > max_timestamp || offset_of_max_timestamp < 0 {
                max_timestamp = header.max_timestamp;
                offset_of_max_timestamp = header.last_offset();
            }
            record_count += header.record_count.max(0) as u64;
            active.index_batch(at, header, interval);
            at += header.size_in_bytes() as u64;
        }
        if appender.rolling_timestamp.is_none() && position == 0 {
            appender.rolling_timestamp = Some(headers[0].0.max_timestamp).filter(|&t| t >= 0);
        }
        active.publish(at, next);
        self.log_end_offset.store(next, Ordering::Release);
        drop(appender);

        if let Some(closed) = rolled {
            lock(&self.rolled).push(closed);
        }
        if let Some(messages) = config.flush_interval_messages
            && next - self.recovery_point() >= messages as i64
        {
            self.flush()?;
        }
        Ok(LogAppendInfo {
            first_offset,
            last_offset,
            max_timestamp,
            offset_of_max_timestamp,
            record_count,
            bytes: total,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn should_roll(
        &self,
        appender: &Appender,
        active: &Segment,
        config: &LogConfig,
        bytes: u64,
        incoming_max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        // Even an empty segment cannot take offsets its index cannot name.
        let overflow = last_offset - active.base_offset > i64::from(u32::MAX);
        if active.is_empty() && !overflow {
            return false;
        }
        let segment_bytes = config.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
        let waited_ms = match appender.rolling_timestamp {
            Some(first) if incoming_max_timestamp >= 0 => incoming_max_timestamp - first,
            _ => now_ms - appender.created_ms,
        };
        let reason = if overflow {
            "relative offset overflow"
        } else if active.size() + bytes > segment_bytes {
            "segment.bytes"
        } else if waited_ms > config.segment_ms.min(i64::MAX as u64) as i64 {
            "segment.ms"
        } else if active.index_full(config.segment_index_bytes) {
            "segment.index.bytes"
        } else {
            return false;
        };
        tracing::debug!(
            partition = %self.topic_partition,
            reason,
            "rolling a new segment at offset {}",
            self.log_end_offset()
        );
        true
    }

    fn no_segment(&self) -> StorageError {
        StorageError::CorruptFile {
            path: self.dir.clone(),
            reason: "the log has no segment".into(),
        }
    }

    /// Whole batches from the one holding `offset`: up to `max_bytes`, but at
    /// least one batch (if one starts below the bound) even if larger; none
    /// whose base offset is >= `max_offset` (consumers pass the HW; `None`
    /// means the LEO). `offset` at the LEO (or the bound) gives empty
    /// records; below the log start offset or past the LEO it is
    /// [`StorageError::OffsetOutOfRange`].
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
    ) -> Result<ReadInfo, StorageError> {
        self.consistent(|| self.read_once(offset, max_bytes, max_offset))
    }

    /// Runs a read so that it never returns what a concurrent truncation
    /// replaced: retried when a truncation ran during it.
    fn consistent<T>(
        &self,
        mut read: impl FnMut() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        loop {
            let before = self.truncations.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let result = read();
            if self.truncations.load(Ordering::Acquire) == before {
                return result;
            }
        }
    }

    fn read_once(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
    ) -> Result<ReadInfo, StorageError> {
        // LEO before sizes: every size loaded after covers the LEO loaded.
        let log_end_offset = self.log_end_offset();
        let log_start_offset = self.log_start_offset();
        let high_watermark = self.high_watermark();
        let info = |records| ReadInfo {
            records,
            log_start_offset,
            log_end_offset,
            high_watermark,
        };
        if offset < log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let bound = max_offset.map_or(log_end_offset, |m| m.min(log_end_offset));
        if offset >= bound {
            return Ok(info(Bytes::new()));
        }
        let segments = self.segments();
        let first = segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        // Usually one segment answers; a read that reaches a segment's end
        // goes on into the next, which costs one copy to join the pieces.
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut collected = 0usize;
        let mut next_offset = offset;
        for segment in &segments[first..] {
            let size = segment.size();
            let remaining = max_bytes.saturating_sub(collected);
            match segment.read(next_offset, remaining, bound, size, pieces.is_empty())? {
                SegmentRead::Batches { records, to_end } => {
                    next_offset = segment.next_offset().min(bound);
                    collected += records.len();
                    pieces.push(records);
                    if !to_end || collected >= max_bytes {
                        break;
                    }
                }
                SegmentRead::AtBound => break,
                SegmentRead::NotHere => {}
            }
            if next_offset >= bound {
                break;
            }
        }
        let records = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().unwrap_or_default(),
            _ => {
                let mut joined = bytes::BytesMut::with_capacity(collected);
                for piece in &pieces {
                    joined.extend_from_slice(piece);
                }
                joined.freeze()
            }
        };
        Ok(info(records))
    }

    /// The first offset at or after the log start whose record timestamp is
    /// at least `timestamp`, with that timestamp. Segments and batches are found
    /// by their max timestamps (time index, then a short scan); inside an
    /// uncompressed CreateTime batch the records are walked to find the
    /// exact record, while compressed and LogAppendTime batches answer with
    /// their first offset and max timestamp (the broker holds no codecs).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
        self.consistent(|| {
            let log_start_offset = self.log_start_offset();
            let log_end_offset = self.log_end_offset();
            for segment in self.segments().iter() {
                if segment.max_timestamp() < timestamp || segment.next_offset() <= log_start_offset
                {
                    continue;
                }
                let Some((_, header, batch)) = segment.find_timestamp(timestamp)? else {
                    continue;
                };
                if header.base_offset >= log_end_offset {
                    return Ok(None);
                }
                let found = exact_record(&header, &batch, timestamp)
                    .unwrap_or((header.base_offset, header.max_timestamp));
                return Ok(Some((found.0.max(log_start_offset), found.1)));
            }
            Ok(None)
        })
    }

    /// Removes every batch at or after `offset`; a batch that holds `offset`
    /// goes whole, so the log ends on a batch boundary at or below it.
    /// Indexes and the epoch history follow. Returns the new LEO. Below the
    /// log start offset it empties the log and restarts it at `offset`
    /// (refused when negative, as by
    /// [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at)).
    pub fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        if offset < self.log_start_offset() {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        let mut appender = lock(&self.appender);
        let _flusher = lock(&self.flusher);
        let log_end_offset = self.log_end_offset();
        if offset >= log_end_offset {
            // No batch goes, but an epoch that starts at the log end does:
            // a broker that led an epoch without writing in it recorded
            // `(epoch, LEO)`, and as a follower it must forget that epoch or
            // every fetch would report it and be told to truncate here
            // again, forever. (Kafka truncates its epoch cache here too.)
            let mut epochs = lock(&self.epochs);
            if epochs.truncate_from_end(log_end_offset) {
                epochs.persist()?;
            }
            return Ok(log_end_offset);
        }
        let segments = self.segments();
        let keep = segments.partition_point(|s| s.base_offset <= offset).max(1);
        let target = Arc::clone(&segments[keep - 1]);
        let cut = target.find_batch(offset)?;

        self.truncations.fetch_add(1, Ordering::AcqRel);
        let result = (|| -> Result<i64, StorageError> {
            let new_end = match cut {
                Some((position, header)) => {
                    let new_end = offset.min(header.base_offset).max(target.base_offset);
                    self.publish_segments(segments[..keep].to_vec());
                    target.truncate(position, new_end)?;
                    new_end
                }
                None => {
                    self.publish_segments(segments[..keep].to_vec());
                    target.offset_index.reopen()?;
                    target.time_index.reopen()?;
                    target.next_offset()
                }
            };
            self.log_end_offset.store(new_end, Ordering::Release);
            // A cut batch may have started below the log start offset.
            self.log_start_offset.fetch_min(new_end, Ordering::AcqRel);
            self.high_watermark.fetch_min(new_end, Ordering::AcqRel);
            self.recovery_point.fetch_min(new_end, Ordering::AcqRel);
            for segment in &segments[keep..] {
                segment.delete()?;
            }
            Ok(new_end)
        })();
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let new_end = result?;

        {
            let mut epochs = lock(&self.epochs);
            if epochs.truncate_from_end(new_end) {
                epochs.persist()?;
            }
        }
        appender.rolling_timestamp = target
            .first_batch()
            .map(|h| h.max_timestamp)
            .filter(|&t| t >= 0);
        Ok(new_end)
    }

    /// Deletes every segment and restarts the log, empty, at `offset` (a
    /// follower whose fetch offset fell below the leader's log start). A
    /// negative `offset` is [`StorageError::OffsetOutOfRange`]: no log
    /// starts there.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.log_end_offset(),
            });
        }
        let mut appender = lock(&self.appender);
        let _flusher = lock(&self.flusher);
        let segments = self.segments();
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let result = (|| -> Result<(), StorageError> {
            let fresh = Arc::new(Segment::create(&self.dir, offset)?);
            self.publish_segments(vec![fresh]);
            self.log_end_offset.store(offset, Ordering::Release);
            self.log_start_offset.store(offset, Ordering::Release);
            self.high_watermark.store(offset, Ordering::Release);
            self.recovery_point.store(offset, Ordering::Release);
            for segment in segments.iter().filter(|s| s.base_offset != offset) {
                segment.delete()?;
            }
            Ok(())
        })();
        self.truncations.fetch_add(1, Ordering::AcqRel);
        result?;
        appender.rolling_timestamp = None;
        appender.created_ms = now_ms();
        appender.needs_repair = false;
        let mut epochs = lock(&self.epochs);
        if epochs.clear() {
            epochs.persist()?;
        }
        Ok(())
    }

    /// Moves the log start offset forward to `offset` (Kafka's
    /// DeleteRecords), deleting the segments that lie wholly below it.
    /// `offset` past the LEO is [`StorageError::OffsetOutOfRange`]; one at
    /// or below the current start changes nothing.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset,
            });
        }
        if offset <= self.log_start_offset() {
            return Ok(());
        }
        self.delete_segments(|_, _, next_base| next_base <= offset, Some(offset))?;
        Ok(())
    }

    /// Retention: deletes the oldest closed segments while they are older
    /// than `retention.ms` (by their largest timestamp) or the log exceeds
    /// `retention.bytes` by at least the segment's size, never the active
    /// segment nor one holding offsets at or past the HW. Returns the
    /// segments and bytes deleted.
    pub fn delete_retained_segments(&self, now_ms: i64) -> Result<(usize, u64), StorageError> {
        let config = self.config();
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        let mut excess = config
            .retention_bytes
            .map_or(0, |limit| self.size_in_bytes().saturating_sub(limit));
        self.delete_segments(
            |segment, size, next_base| {
                if next_base <= log_start_offset {
                    return true;
                }
                if next_base > high_watermark {
                    return false;
                }
                let by_time = config.retention_ms.is_some_and(|retention| {
                    let largest = Some(segment.max_timestamp())
                        .filter(|&t| t >= 0)
                        .or_else(|| segment.last_modified_ms())
                        .unwrap_or(now_ms);
                    // Saturating: both are times the caller and the
                    // batches chose, not necessarily sane ones.
                    now_ms.saturating_sub(largest) > retention
                });
                let by_size = config.retention_bytes.is_some() && excess >= size;
                if by_size || by_time {
                    excess = excess.saturating_sub(size);
                    true
                } else {
                    false
                }
            },
            None,
        )
    }

    /// Deletes the longest prefix of closed segments for which
    /// `deletable(segment, size, next_segment_base)` holds and moves the
    /// log start offset to `new_start` or the first remaining segment.
    fn delete_segments(
        &self,
        mut deletable: impl FnMut(&Segment, u64, i64) -> bool,
        new_start: Option<i64>,
    ) -> Result<(usize, u64), StorageError> {
        let appender = lock(&self.appender);
        let segments = self.segments();
        let mut count = 0;
        while count + 1 < segments.len()
            && deletable(
                &segments[count],
                segments[count].size(),
                segments[count + 1].base_offset,
            )
        {
            count += 1;
        }
        let start = new_start
            .unwrap_or(0)
            .max(segments[count].base_offset)
            .max(self.log_start_offset());
        if count == 0 && start == self.log_start_offset() {
            return Ok((0, 0));
        }
        if count > 0 {
            self.publish_segments(segments[count..].to_vec());
        }
        self.log_start_offset.store(start, Ordering::Release);
        self.high_watermark.fetch_max(start, Ordering::AcqRel);
        drop(appender);
        {
            let mut epochs = lock(&self.epochs);
            if epochs.truncate_from_start(start) {
                epochs.persist()?;
            }
        }
        let mut bytes = 0;
        for segment in &segments[..count] {
            bytes += segment.size();
            tracing::info!(
                partition = %self.topic_partition,
                segment = %segment.log_path().display(),
                "deleting segment below log start offset {start}"
            );
            segment.delete()?;
        }
        Ok((count, bytes))
    }

    /// fsyncs data and indexes up to the LEO and moves the recovery point
    /// there. Concurrent callers share one fsync.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.flush_to(self.log_end_offset())
    }

    /// Flushes when `log.flush.interval.ms` has passed since the last flush.
    pub(crate) fn flush_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let Some(interval) = self.config().flush_interval_ms else {
            return Ok(());
        };
        if now_ms - self.last_flush_ms.load(Ordering::Acquire) >= interval as i64 {
            self.flush()?;
            self.last_flush_ms.store(now_ms, Ordering::Release);
        }
        Ok(())
    }

    /// Closes the segments rolls left behind (fsync, index files written)
    /// and moves the recovery point past them.
    pub(crate) fn close_rolled_segments(&self) -> Result<(), StorageError> {
        let _flusher = lock(&self.flusher);
        self.close_rolled_locked()
    }

    fn close_rolled_locked(&self) -> Result<(), StorageError> {
        let rolled = std::mem::take(&mut *lock(&self.rolled));
        if rolled.is_empty() {
            return Ok(());
        }
        let segments = self.segments();
        let mut durable_to = None;
        for segment in &rolled {
            // A truncation may have made it active again, or retention
            // deleted it: then it is not closed here.
            let Some(i) = segments.iter().position(|s| Arc::ptr_eq(s, segment)) else {
                continue;
            };
            let Some(next) = segments.get(i + 1) else {
                continue;
            };
            if let Err(err) = segment.close() {
                // Keep the unfinished ones for the next attempt.
                lock(&self.rolled).extend(rolled.iter().cloned());
                return Err(err);
            }
            durable_to = Some(next.base_offset);
        }
        if let Some(offset) = durable_to {
            self.recovery_point
                .fetch_max(offset.min(self.log_end_offset()), Ordering::AcqRel);
        }
        Ok(())
    }

    /// Makes everything below `target` durable.
    fn flush_to(&self, target: i64) -> Result<(), StorageError> {
        let _flusher = lock(&self.flusher);
        self.close_rolled_locked()?;
        let segments = self.segments();
        let target = target.min(self.log_end_offset());
        let recovery_point = self.recovery_point();
        if target <= recovery_point {
            return Ok(());
        }
        for (i, segment) in segments.iter().enumerate() {
            let end = segments
                .get(i + 1)
                .map_or(i64::MAX, |next| next.base_offset);
            if end > recovery_point && segment.base_offset < target {
                segment.flush()?;
            }
        }
        self.recovery_point.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Flushes and writes the final index entries (clean shutdown).
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        self.flush()?;
        let _flusher = lock(&self.flusher);
        if let Some(last) = self.segments().last() {
            last.flush()?;
        }
        Ok(())
    }

    pub(crate) fn dir_path(&self) -> &Path {
        &self.dir
    }
}

/// Marks a batch as LogAppendTime with `now_ms` as its max timestamp and
/// fixes its CRC.
fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes =
        i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The first record of an uncompressed CreateTime batch with a timestamp
/// at least `timestamp`: `(offset, timestamp)`.
fn exact_record(header: &BatchHeader, batch: &[u8], timestamp: i64) -> Option<(i64, i64)> {
    if header.timestamp_type() == TimestampType::LogAppendTime
        || header.compression() != Some(Compression::None)
    {
        return None;
    }
    let records = batch.get(records::HEADER_LEN..)?;
    for record in RecordIter::new(records, header.record_count) {
        let record = record.ok()?;
        let record_timestamp = header.base_timestamp + record.timestamp_delta;
        if record_timestamp >= timestamp {
            return Some((
                header.base_offset + i64::from(record.offset_delta),
                record_timestamp,
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::RecordBatchBuilder;

    fn open_log(dir: &Path, clean: bool) -> Log {
        Log::open(LogOpen {
            dir: dir.to_path_buf(),
            topic_partition: TopicPartition::new("t", 0),
            topic_id: [1; 16],
            config: LogConfig {
                segment_bytes: 1 << 20,
                index_interval_bytes: 100,
                ..LogConfig::default()
            },
            recovery_point: None,
            log_start_offset: None,
            high_watermark: None,
            clean,
            now_ms: 0,
        })
        .unwrap()
    }

    fn batch(records: usize, tag: u8) -> Bytes {
        let mut builder = RecordBatchBuilder::default();
        for i in 0..records {
            builder.append(i as i64, None, Some(&[tag; 50]), &[]);
        }
        builder.finish()
    }

    fn contents(log: &Log) -> Bytes {
        log.read(0, usize::MAX, None).unwrap().records
    }

    #[test]
    fn a_write_that_fails_midway_leaves_the_log_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), true);
        for tag in 0..3 {
            log.append_as_leader(&batch(3, tag), 1, 0).unwrap();
        }
        let before = contents(&log);
        let active = Arc::clone(log.segments().last().unwrap());
        let file_size = || fs::metadata(active.log_path()).unwrap().len();
        assert_eq!(file_size(), before.len() as u64);

        // Two batches, a new epoch, and the disk fills 100 bytes in.
        active.write_budget.store(100, Ordering::Relaxed);
        let mut two = bytes::BytesMut::from(&batch(2, 7)[..]);
        two.extend_from_slice(&batch(4, 8));
        let two = two.freeze();
        let err = log.append_as_leader(&two, 2, 0).unwrap_err();
        match &err {
            StorageError::Io { op, source, .. } => {
                assert_eq!(*op, "write");
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
            }
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(
            file_size(),
            before.len() as u64,
            "partial write not cut back"
        );
        assert_eq!(contents(&log), before);
        assert_eq!(log.latest_epoch(), Some(1), "epoch of a failed append kept");

        // Space again: the append lands where the failed one would have.
        active.write_budget.store(-1, Ordering::Relaxed);
        let info = log.append_as_leader(&two, 2, 0).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (9, 14));
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 9)));
        let after = contents(&log);
        drop(log);

        // And it all survives a reopen that scans everything.
        let log = open_log(dir.path(), false);
        assert_eq!(contents(&log), after);
        assert_eq!(log.log_end_offset(), 15);
    }
}
