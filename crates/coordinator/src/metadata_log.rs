//! The metadata log in `dataDir`: every committed change, durable before it
//! is acknowledged, plus snapshots that bound how much a restart replays.
//!
//! Layout (one coordinator per directory, enforced with `flock` on `.lock`):
//!
//! - `meta.properties`: `cluster.id`, written once when the cluster starts.
//! - `<version, 20 digits>.log` (in `dataLogDir` when it is set, with a
//!   lock of its own): segments of RecordBatch v2 batches, one
//!   batch per group commit. A batch's base offset is the metadata version
//!   before it, its records' values are encoded `MetadataRecord`s, so the
//!   version after it is its base offset plus its record count.
//! - `<version, 20 digits>.snapshot`: the whole image at that version, as
//!   batches of records; written to a `.tmp` file, fsynced, then renamed.
//!   Each batch carries the snapshot's record count, so a snapshot cut
//!   short is refused, never loaded as a smaller state. A snapshot starts
//!   a new segment and makes the segments before it (and older snapshots)
//!   deletable.
//!
//! Recovery loads the newest snapshot, replays the batches after it and
//! truncates a torn tail (what `kill -9` in the middle of a write leaves);
//! a gap or a batch that does not decode is refused rather than skipped,
//! because skipping would silently drop acknowledged changes.
//!
//! This module never decides anything: it stores and returns records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use protocol::coordinator::{MetadataRecord, MetadataUpdate};
use protocol::image::MetadataImage;
use records::{Batches, RecordBatchBuilder, decode_batch, rewritten_prefix, valid_prefix};

/// The largest batch the log writes or reads. Request limits keep a group
/// commit far below it; a length field above it is damage.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// Records per batch in a snapshot file.
const SNAPSHOT_BATCH_RECORDS: usize = 10_000;

const META_FILE: &str = "meta.properties";
const LOCK_FILE: &str = ".lock";
const LOG_SUFFIX: &str = ".log";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const TMP_SUFFIX: &str = ".tmp";

static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// fsync calls made by every metadata log of this process since it
/// started (log appends, snapshots and directory syncs).
pub fn fsync_count() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// Why the metadata log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create dataDir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "dataDir {path} is in use by another coordinator (it holds the lock on {path}/{LOCK_FILE})"
    )]
    Locked { path: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} holds metadata but no {META_FILE} with a cluster.id: restore that file, or empty the directory to start a new cluster"
    )]
    MissingMeta { path: PathBuf },
    #[error("{path} is damaged: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("a metadata batch of {size} bytes is larger than the limit of {MAX_BATCH_BYTES}")]
    BatchTooLarge { size: usize },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A torn tail cut during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub path: PathBuf,
    pub kept_bytes: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

/// What [`MetadataLog::open`] found.
#[derive(Debug)]
pub struct Recovered {
    pub log: MetadataLog,
    /// The image at the log's end version.
    pub image: MetadataImage,
    /// The snapshot recovery started from, if any.
    pub snapshot_version: Option<i64>,
    /// The batches replayed after the snapshot, in order, as the updates a
    /// watcher resuming from their versions needs.
    pub replayed: Vec<MetadataUpdate>,
    pub truncated: Vec<Truncation>,
    /// True when this start created the cluster (and its id).
    pub created: bool,
}

/// The open metadata log: appends group commits, writes snapshots.
#[derive(Debug)]
pub struct MetadataLog {
    /// `dataDir`: snapshots, `meta.properties`, the lock.
    dir: PathBuf,
    /// `dataLogDir` (or `dataDir`): the log segments.
    log_dir: PathBuf,
    /// Held for the life of the log: the flocks are released when they close.
    _locks: Vec<File>,
    segment: File,
    segment_base: i64,
    end_version: i64,
    records_since_snapshot: u64,
}

impl MetadataLog {
    /// Opens (creating if needed) the log with its snapshots in `dir` and
    /// its segments in `log_dir` (ZooKeeper's `dataDir` and `dataLogDir`;
    /// usually the same directory) and recovers its image.
    pub fn open(dir: &Path, log_dir: &Path) -> Result<Recovered, LogError> {
        let separate = dir != log_dir;
        let mut locks = Vec::new();
        for d in if separate {
            vec![dir, log_dir]
        } else {
            vec![dir]
        } {
            fs::create_dir_all(d).map_err(|source| LogError::CreateDir {
                path: d.to_owned(),
                source,
            })?;
            locks.push(lock_dir(d)?);
        }
        let files = DirFiles::scan(dir)?;
        let log_files = if separate {
            DirFiles::scan(log_dir)?
        } else {
            DirFiles::default()
        };
        if separate && !files.segments.is_empty() {
            // Reading only dataLogDir would silently lose these records.
            return Err(LogError::Corrupt {
                path: dir.to_owned(),
                problem: format!(
                    "it holds metadata log segments, but dataLogDir is {}: move the .log files there, or unset dataLogDir",
                    log_dir.display()
                ),
            });
        }
        for tmp in files.temporary.iter().chain(&log_files.temporary) {
            fs::remove_file(tmp).map_err(io_error("remove", tmp))?;
        }
        let segments = if separate {
            &log_files.segments
        } else {
            &files.segments
        };

        let meta_path = dir.join(META_FILE);
        let (cluster_id, created) = match read_cluster_id(&meta_path)? {
            Some(id) => (id, false),
            None if files.snapshots.is_empty() && segments.is_empty() => {
                let id = new_cluster_id();
                write_atomically(
                    dir,
                    META_FILE,
                    format!("version=1\ncluster.id={id}\n").as_bytes(),
                )?;
                (id, true)
            }
            None => {
                return Err(LogError::MissingMeta {
                    path: dir.to_owned(),
                });
            }
        };

        let mut image = MetadataImage {
            cluster_id: cluster_id.clone(),
            ..Default::default()
        };
        let snapshot_version = files.snapshots.last().copied();
        if let Some(version) = snapshot_version {
            load_snapshot(&snapshot_path(dir, version), version, &mut image)?;
            image.version = version;
        }
        let covered = snapshot_version.unwrap_or(0);
        for &old in files.snapshots.iter().filter(|&&v| v < covered) {
            remove_quietly(&snapshot_path(dir, old));
        }
        // A segment is wholly covered by the snapshot when the next one
        // starts at or before it.
        let mut live = Vec::new();
        for (i, &base) in segments.iter().enumerate() {
            match segments.get(i + 1) {
                Some(&next) if next <= covered => remove_quietly(&segment_path(log_dir, base)),
                _ => live.push(base),
            }
        }

        let mut replayed = Vec::new();
        let mut truncated = Vec::new();
        for &base in &live {
            let path = segment_path(log_dir, base);
            if let Some(cut) = replay_segment(&path, base, &mut image, &mut replayed)? {
                truncated.push(cut);
            }
        }

        let segment_base = match live.last() {
            Some(&base) => base,
            None => {
                let path = segment_path(log_dir, image.version);
                File::create(&path).map_err(io_error("create", &path))?;
                sync_dir(log_dir)?;
                image.version
            }
        };
        let path = segment_path(log_dir, segment_base);
        let segment = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let log = MetadataLog {
            dir: dir.to_owned(),
            log_dir: log_dir.to_owned(),
            _locks: locks,
            segment,
            segment_base,
            end_version: image.version,
            records_since_snapshot: (image.version - covered) as u64,
        };
        Ok(Recovered {
            log,
            image,
            snapshot_version,
            replayed,
            truncated,
            created,
        })
    }

    /// The version after the last record appended.
    pub fn end_version(&self) -> i64 {
        self.end_version
    }

    /// Records appended since the last snapshot (or since the log began).
    pub fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }

    /// Appends one group commit as one batch and fsyncs it. `base_version`
    /// must be the log's end version. When this returns `Ok`, the records
    /// survive a crash; when it fails, the tail may hold a partial batch,
    /// which the next recovery truncates.
    pub fn append(
        &mut self,
        base_version: i64,
        records: &[MetadataRecord],
    ) -> Result<(), LogError> {
        assert_eq!(base_version, self.end_version, "appends follow the log end");
        if records.is_empty() {
            return Ok(());
        }
        let batch = encode_batch(records)?;
        let path = segment_path(&self.log_dir, self.segment_base);
        let prefix = rewritten_prefix(&batch, base_version, 0);
        self.segment
            .write_all(&prefix)
            .and_then(|()| self.segment.write_all(&batch[prefix.len()..]))
            .map_err(io_error("write", &path))?;
        fsync(&self.segment).map_err(io_error("sync", &path))?;
        self.end_version += records.len() as i64;
        self.records_since_snapshot += records.len() as u64;
        Ok(())
    }

    /// Writes the snapshot of `records` (the whole image at the log's end
    /// version), starts a new segment there and deletes what it covers.
    pub fn write_snapshot(&mut self, records: &[MetadataRecord]) -> Result<(), LogError> {
        let version = self.end_version;
        let name = snapshot_name(version);
        let bytes = encode_snapshot(records)?;
        write_atomically(&self.dir, &name, &bytes)?;

        if self.segment_base != version {
            let path = segment_path(&self.log_dir, version);
            let segment = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_error("create", &path))?;
            sync_dir(&self.log_dir)?;
            self.segment = segment;
            self.segment_base = version;
        }
        self.records_since_snapshot = 0;

        // Covered files are garbage now; failing to delete them costs only
        // disk space, and the next start retries.
        for &base in DirFiles::scan(&self.log_dir)?
            .segments
            .iter()
            .filter(|&&b| b < version)
        {
            remove_quietly(&segment_path(&self.log_dir, base));
        }
        for &old in DirFiles::scan(&self.dir)?
            .snapshots
            .iter()
            .filter(|&&v| v < version)
        {
            remove_quietly(&snapshot_path(&self.dir, old));
        }
        if self.log_dir != self.dir {
            sync_dir(&self.log_dir)?;
        }
        sync_dir(&self.dir)
    }
}

fn fsync(file: &File) -> io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let handle = File::open(dir).map_err(io_error("open", dir))?;
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    handle.sync_all().map_err(io_error("sync", dir))
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(
            "Could not delete {}, which a snapshot covers: {e}",
            path.display()
        );
    }
}

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LogError::Locked {
            path: dir.to_owned(),
        }),
        Err(e) => Err(LogError::Io {
            action: "lock",
            path,
            source: e.into(),
        }),
    }
}

/// Writes `name` in `dir` so that it exists whole or not at all.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(bytes).map_err(io_error("write", &tmp))?;
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_all().map_err(io_error("sync", &tmp))?;
    drop(file);
    fs::rename(&tmp, &target).map_err(io_error("rename", &tmp))?;
    sync_dir(dir)
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}{LOG_SUFFIX}"))
}

fn snapshot_name(version: i64) -> String {
    format!("{version:020}{SNAPSHOT_SUFFIX}")
}

fn snapshot_path(dir: &Path, version: i64) -> PathBuf {
    dir.join(snapshot_name(version))
}

/// The log files of a data directory, sorted by version.
#[derive(Debug, Default)]
struct DirFiles {
    segments: Vec<i64>,
    snapshots: Vec<i64>,
    temporary: Vec<PathBuf>,
}

impl DirFiles {
    fn scan(dir: &Path) -> Result<DirFiles, LogError> {
        let mut files = DirFiles::default();
        for entry in fs::read_dir(dir).map_err(io_error("read", dir))? {
            let entry = entry.map_err(io_error("read", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) {
                files.temporary.push(entry.path());
            } else if let Some(version) = parse_version(name, LOG_SUFFIX) {
                files.segments.push(version);
            } else if let Some(version) = parse_version(name, SNAPSHOT_SUFFIX) {
                files.snapshots.push(version);
            }
        }
        files.segments.sort_unstable();
        files.snapshots.sort_unstable();
        Ok(files)
    }
}

fn parse_version(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_cluster_id(path: &Path) -> Result<Option<String>, LogError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let id = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "cluster.id")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    match id {
        Some(id) => Ok(Some(id)),
        None => Err(LogError::Corrupt {
            path: path.to_owned(),
            problem: "no cluster.id in it".into(),
        }),
    }
}

/// A cluster id as Kafka makes them: 16 random bytes in URL-safe base64
/// without padding (22 characters), never starting with '-' so that it
/// cannot be mistaken for a command-line option.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let mut id = String::with_capacity(22);
        for chunk in bytes.chunks(3) {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                id.push(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn encode_batch(records: &[MetadataRecord]) -> Result<Bytes, LogError> {
    encode_batch_in_snapshot(records, None)
}

/// Snapshot batches say how many records the whole snapshot holds (in the
/// producer id, a field metadata batches have no other use for) and the
/// index of their first record in it (in the base sequence), so that a
/// snapshot cut short at a batch boundary, or emptied, is damage rather
/// than a smaller state. Snapshots written before this carry -1 there and
/// are read as they always were.
fn encode_snapshot(records: &[MetadataRecord]) -> Result<Vec<u8>, LogError> {
    let total = records.len() as i64;
    let mut bytes = Vec::new();
    for (i, chunk) in records.chunks(SNAPSHOT_BATCH_RECORDS).enumerate() {
        let first = (i * SNAPSHOT_BATCH_RECORDS) as i32;
        bytes.extend_from_slice(&encode_batch_in_snapshot(chunk, Some((total, first)))?);
    }
    Ok(bytes)
}

/// `snapshot`: the snapshot's record count and this batch's first index.
fn encode_batch_in_snapshot(
    records: &[MetadataRecord],
    snapshot: Option<(i64, i32)>,
) -> Result<Bytes, LogError> {
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut builder =
        RecordBatchBuilder::with_capacity(records.iter().map(|r| r.encoded_len() + 8).sum());
    if let Some((total, first)) = snapshot {
        builder = builder.producer(total, 0, first);
    }
    let mut value = Vec::new();
    for record in records {
        value.clear();
        record.encode(&mut value).expect("a Vec grows to fit");
        builder.append(timestamp_ms, None, Some(&value), &[]);
    }
    let batch = builder.finish();
    if batch.len() > MAX_BATCH_BYTES {
        return Err(LogError::BatchTooLarge { size: batch.len() });
    }
    Ok(batch)
}

/// The metadata records of one validated batch.
fn decode_records(path: &Path, batch: &[u8]) -> Result<Vec<MetadataRecord>, LogError> {
    let corrupt = |problem: String| LogError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let batch = Bytes::copy_from_slice(batch);
    let (header, records) = decode_batch(&batch, |_, _| {
        Err::<Vec<u8>, _>("metadata batches are never compressed")
    })
    .map_err(|e| {
        corrupt(format!(
            "batch at version {}: {e}",
            read_base_offset(&batch)
        ))
    })?;
    records
        .iter()
        .map(|record| {
            let value = record.value.as_deref().unwrap_or_default();
            MetadataRecord::decode(value).map_err(|e| {
                corrupt(format!(
                    "record {} of the batch at version {} does not decode: {e}",
                    record.offset - header.base_offset,
                    header.base_offset
                ))
            })
        })
        .collect()
}

fn read_base_offset(batch: &[u8]) -> i64 {
    records::BatchHeader::parse(batch).map_or(-1, |h| h.base_offset)
}

fn load_snapshot(path: &Path, version: i64, image: &mut MetadataImage) -> Result<(), LogError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let corrupt = |problem: String| LogError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let (valid, error) = valid_prefix(&bytes, MAX_BATCH_BYTES);
    if let Some(error) = error {
        return Err(corrupt(format!("invalid batch at byte {valid}: {error}")));
    }
    // Every change is a record and none removes a broker, so the state at
    // any version past 0 has records: an empty snapshot of it is damage.
    if bytes.is_empty() && version > 0 {
        return Err(corrupt(format!(
            "it is empty, but the state at version {version} is not"
        )));
    }
    let mut loaded: i64 = 0;
    let mut total = None;
    for batch in Batches::new(&bytes, MAX_BATCH_BYTES) {
        let (header, batch) = batch.map_err(|e| corrupt(e.to_string()))?;
        if header.producer_id >= 0 {
            // Written with its record count: check it holds all of them.
            if total.is_some_and(|t| t != header.producer_id)
                || i64::from(header.base_sequence) != loaded
            {
                return Err(corrupt(format!(
                    "its batches disagree on its records: a batch says {} records from index {}, after {loaded} records",
                    header.producer_id, header.base_sequence
                )));
            }
            total = Some(header.producer_id);
        }
        let records = decode_records(path, batch)?;
        loaded += records.len() as i64;
        for record in records {
            image.apply(&record);
        }
    }
    if let Some(total) = total.filter(|&t| t != loaded) {
        return Err(corrupt(format!(
            "it holds {loaded} of its {total} records: it was cut short"
        )));
    }
    Ok(())
}

/// Applies the batches of one segment that lie past `image.version`, and
/// truncates the segment after its last valid batch.
fn replay_segment(
    path: &Path,
    base: i64,
    image: &mut MetadataImage,
    replayed: &mut Vec<MetadataUpdate>,
) -> Result<Option<Truncation>, LogError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let (valid, error) = valid_prefix(&bytes, MAX_BATCH_BYTES);
    let corrupt = |problem: String| LogError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let mut first = true;
    for batch in Batches::new(&bytes[..valid], MAX_BATCH_BYTES) {
        let (header, batch) = batch.map_err(|e| corrupt(e.to_string()))?;
        if first && header.base_offset != base {
            return Err(corrupt(format!(
                "its first batch is at version {}, but its name says {base}",
                header.base_offset
            )));
        }
        first = false;
        if header.record_count != header.last_offset_delta + 1 {
            return Err(corrupt(format!(
                "the batch at version {} counts {} records but spans {} offsets",
                header.base_offset,
                header.record_count,
                header.last_offset_delta + 1
            )));
        }
        let next = header.base_offset + i64::from(header.record_count);
        if next <= image.version {
            continue; // In the snapshot already.
        }
        if header.base_offset != image.version {
            return Err(corrupt(format!(
                "expected a batch at version {}, found one at {}: versions are missing",
                image.version, header.base_offset
            )));
        }
        let records = decode_records(path, batch)?;
        for record in &records {
            image.apply(record);
        }
        image.version = next;
        replayed.push(MetadataUpdate {
            version: next,
            snapshot: false,
            records,
            cluster_id: image.cluster_id.clone(),
        });
    }
    if first && base > image.version {
        return Err(corrupt(format!(
            "it starts at version {base}, but the metadata before it ends at {}",
            image.version
        )));
    }
    let Some(error) = error else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(valid as u64)
        .map_err(io_error("truncate", path))?;
    fsync(&file).map_err(io_error("sync", path))?;
    Ok(Some(Truncation {
        path: path.to_owned(),
        kept_bytes: valid as u64,
        dropped_bytes: (bytes.len() - valid) as u64,
        reason: error.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::coordinator::{BrokerInfo, TopicInfo};

    fn open_in(dir: &Path) -> Result<Recovered, LogError> {
        MetadataLog::open(dir, dir)
    }

    fn broker(id: i32, epoch: i64) -> MetadataRecord {
        BrokerInfo {
            broker_id: id,
            broker_epoch: epoch,
            ..Default::default()
        }
        .into()
    }

    fn topic(name: &str) -> MetadataRecord {
        TopicInfo {
            name: name.into(),
            topic_id: Bytes::from(vec![1; 16]),
            configs: Default::default(),
        }
        .into()
    }

    /// Appends `records` as one commit and applies them to `image`.
    fn commit(log: &mut MetadataLog, image: &mut MetadataImage, records: &[MetadataRecord]) {
        log.append(image.version, records).unwrap();
        for r in records {
            image.apply(r);
        }
        image.version += records.len() as i64;
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn reopening_replays_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log,
            mut image,
            created,
            ..
        } = open_in(dir.path()).unwrap();
        assert!(created);
        assert_eq!(image.version, 0);
        commit(&mut log, &mut image, &[broker(1, 1), broker(2, 2)]);
        commit(&mut log, &mut image, &[topic("t")]);
        drop(log);

        let recovered = open_in(dir.path()).unwrap();
        assert!(!recovered.created);
        assert_eq!(recovered.image, image);
        assert_eq!(recovered.log.end_version(), 3);
        let versions: Vec<i64> = recovered.replayed.iter().map(|u| u.version).collect();
        assert_eq!(versions, [2, 3]);
        assert!(recovered.truncated.is_empty());
    }

    #[test]
    fn a_second_coordinator_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_in(dir.path()).unwrap();
        let error = open_in(dir.path()).unwrap_err();
        assert!(matches!(error, LogError::Locked { .. }), "{error}");
        drop(first);
        open_in(dir.path()).unwrap();
    }

    #[test]
    fn torn_tails_are_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1)]);
        commit(&mut log, &mut image, &[topic("t"), broker(2, 2)]);
        drop(log);
        let path = segment_path(dir.path(), 0);
        let whole = fs::read(&path).unwrap();

        // Cut the last batch in half: the first commit survives.
        let first_len = records::peek_batch_size(&whole).unwrap();
        let cut = first_len + (whole.len() - first_len) / 2;
        fs::write(&path, &whole[..cut]).unwrap();
        let Recovered {
            mut log,
            image: recovered,
            truncated,
            ..
        } = open_in(dir.path()).unwrap();
        assert_eq!(recovered.version, 1);
        assert_eq!(recovered.brokers.len(), 1);
        assert_eq!(truncated.len(), 1);
        assert_eq!(truncated[0].kept_bytes, first_len as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), first_len as u64);
        let mut image = recovered;
        commit(&mut log, &mut image, &[topic("u")]);
        drop(log);

        // Garbage after the last batch.
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0xAB; 100]);
        fs::write(&path, &bytes).unwrap();
        let recovered = open_in(dir.path()).unwrap();
        assert_eq!(recovered.image, image);
        assert_eq!(recovered.truncated[0].dropped_bytes, 100);
    }

    #[test]
    fn snapshots_bound_replay_and_drop_covered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1), broker(2, 2)]);
        log.write_snapshot(&image.snapshot_records()).unwrap();
        assert_eq!(log.records_since_snapshot(), 0);
        commit(&mut log, &mut image, &[topic("t")]);
        drop(log);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".lock",
                "00000000000000000002.log",
                "00000000000000000002.snapshot",
                "meta.properties"
            ]
        );

        let recovered = open_in(dir.path()).unwrap();
        assert_eq!(recovered.snapshot_version, Some(2));
        assert_eq!(recovered.image, image);
        assert_eq!(recovered.replayed.len(), 1);
    }

    /// Found by the metadata-log fuzz target (`tests/fuzz.rs`): a snapshot
    /// truncated to nothing loaded as an empty state, and the segment after
    /// it replayed on top, so every topic and broker it held vanished
    /// without a word.
    #[test]
    fn an_emptied_snapshot_is_refused_not_read_as_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1), topic("t")]);
        log.write_snapshot(&image.snapshot_records()).unwrap();
        commit(&mut log, &mut image, &[broker(2, 3)]);
        drop(log);
        fs::write(snapshot_path(dir.path(), 2), b"").unwrap();
        let err = open_in(dir.path()).unwrap_err();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    /// The same damage at a batch boundary of a snapshot of several
    /// batches: each batch says how many records the snapshot holds.
    #[test]
    fn a_snapshot_cut_at_a_batch_boundary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        let brokers: Vec<MetadataRecord> = (0..SNAPSHOT_BATCH_RECORDS as i32 + 5)
            .map(|id| broker(id, 1))
            .collect();
        commit(&mut log, &mut image, &brokers);
        log.write_snapshot(&image.snapshot_records()).unwrap();
        drop(log);
        let path = snapshot_path(dir.path(), image.version);
        let bytes = fs::read(&path).unwrap();
        let first = records::peek_batch_size(&bytes).unwrap();
        assert!(first < bytes.len(), "the snapshot has a second batch");
        assert_eq!(open_in(dir.path()).unwrap().image, image);
        fs::write(&path, &bytes[..first]).unwrap();
        let err = open_in(dir.path()).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    /// Snapshots written before batches carried their record count (as
    /// this one, in the old format) still load.
    #[test]
    fn a_crash_between_snapshot_and_cleanup_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1), broker(2, 2)]);
        drop(log);
        // The snapshot landed, but the new segment was never created and
        // the old one still holds the covered batch.
        write_atomically(
            dir.path(),
            &snapshot_name(2),
            &encode_batch(&image.snapshot_records()).unwrap(),
        )
        .unwrap();
        let Recovered {
            mut log,
            image: recovered,
            ..
        } = open_in(dir.path()).unwrap();
        assert_eq!(recovered, image);
        commit(&mut log, &mut image, &[topic("t")]);
        drop(log);
        let recovered = open_in(dir.path()).unwrap();
        assert_eq!(recovered.image, image);
    }

    #[test]
    fn missing_versions_and_missing_meta_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = open_in(dir.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1)]);
        drop(log);
        // A segment that starts past the end of the one before it.
        fs::write(
            segment_path(dir.path(), 5),
            encode_batch_at(5, &[broker(2, 6)]),
        )
        .unwrap();
        let error = open_in(dir.path()).unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        fs::remove_file(segment_path(dir.path(), 5)).unwrap();

        fs::remove_file(dir.path().join(META_FILE)).unwrap();
        let error = open_in(dir.path()).unwrap_err();
        assert!(matches!(error, LogError::MissingMeta { .. }), "{error}");
    }

    fn encode_batch_at(base: i64, records: &[MetadataRecord]) -> Vec<u8> {
        let batch = encode_batch(records).unwrap();
        let mut bytes = batch.to_vec();
        records::set_base_offset_and_epoch(&mut bytes, base, 0);
        bytes
    }

    #[test]
    fn segments_can_live_in_their_own_directory() {
        let data = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let Recovered {
            mut log, mut image, ..
        } = MetadataLog::open(data.path(), logs.path()).unwrap();
        commit(&mut log, &mut image, &[broker(1, 1)]);
        log.write_snapshot(&image.snapshot_records()).unwrap();
        commit(&mut log, &mut image, &[topic("t")]);
        drop(log);
        assert!(segment_path(logs.path(), 1).exists());
        assert!(snapshot_path(data.path(), 1).exists());
        assert!(!segment_path(data.path(), 1).exists());
        let recovered = MetadataLog::open(data.path(), logs.path()).unwrap();
        assert_eq!(recovered.image, image);
        drop(recovered);
        // Segments left in dataDir when dataLogDir is set: refused, not ignored.
        fs::rename(segment_path(logs.path(), 1), segment_path(data.path(), 1)).unwrap();
        let error = MetadataLog::open(data.path(), logs.path()).unwrap_err();
        assert!(error.to_string().contains("dataLogDir"), "{error}");
    }

    #[test]
    fn an_unwritable_data_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let error = open_in(&file.join("data")).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot create dataDir"),
            "{error}"
        );
    }
}
