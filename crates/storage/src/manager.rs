//! The `log.dirs` of one broker: each dir locked against a second process,
//! its partition directories (`<topic>-<partition>`) opened and recovered at
//! start-up, new partitions placed on the dir with the fewest, the per-dir
//! offset checkpoints, retention and time-based flushing passes, and the
//! clean-shutdown marker that lets the next start skip recovery.
//!
//! Per log dir:
//!
//! ```text
//! .lock                              held (flock) while a LogManager lives
//! .kafka_cleanshutdown               written by shutdown, removed by open
//! recovery-point-offset-checkpoint   replication-offset-checkpoint
//! log-start-offset-checkpoint
//! my-topic-0/                        a partition: segments, partition.metadata,
//!                                    leader-epoch-checkpoint
//! my-topic-1.<uuid>-delete/          a deleted partition not yet removed
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::checkpoint::{
    HIGH_WATERMARK_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, read_offsets, sync_dir,
    write_atomically, write_offsets,
};
use crate::index::remove_if_exists;
use crate::log::{Log, LogOpen};
use crate::segment::{lock, read_lock, write_lock};
use crate::{LogConfig, StorageError, TopicPartition};

pub(crate) const LOCK_FILE: &str = ".lock";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub(crate) const PARTITION_METADATA_FILE: &str = "partition.metadata";
const DELETE_SUFFIX: &str = "-delete";

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    /// Held for the manager's lifetime: the OS lock goes with the handle.
    _lock: File,
}

/// All the logs of a broker. `Send + Sync`; share it as `Arc<LogManager>`.
#[derive(Debug)]
pub struct LogManager {
    dirs: Vec<LogDir>,
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
    /// Serialises creation and deletion of partition directories.
    create: Mutex<()>,
    /// Serialises checkpoint writes (they share temp file names).
    checkpointing: Mutex<()>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn uuid_string(topic_id: [u8; 16]) -> String {
    uuid::Uuid::from_bytes(topic_id).to_string()
}

/// Reads a partition's `partition.metadata` (`version: 0` then
/// `topic_id: <uuid>`); a missing file is the all-zero id.
fn read_topic_id(dir: &Path) -> Result<[u8; 16], StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok([0; 16]),
        Err(err) => return Err(StorageError::io("read", &path)(err)),
    };
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("topic_id:"))
        .map(str::trim)
        .ok_or_else(|| StorageError::CorruptFile {
            path: path.clone(),
            reason: "no topic_id line".into(),
        })?;
    uuid::Uuid::parse_str(value)
        .map(|u| *u.as_bytes())
        .map_err(|err| StorageError::CorruptFile {
            path,
            reason: format!("topic_id '{value}': {err}"),
        })
}

fn write_topic_id(dir: &Path, topic_id: [u8; 16]) -> Result<(), StorageError> {
    let text = format!("version: 0\ntopic_id: {}\n", uuid_string(topic_id));
    write_atomically(&dir.join(PARTITION_METADATA_FILE), text.as_bytes())
}

impl LogManager {
    /// Locks each log dir (creating it if needed), removes partitions left
    /// half-deleted, reads the checkpoints and opens every partition
    /// directory, recovering those of a dir without a clean-shutdown marker
    /// (on up to two threads). The markers are removed once all is open.
    pub fn open(
        log_dirs: &[PathBuf],
        default_config: LogConfig,
    ) -> Result<LogManager, StorageError> {
        if log_dirs.is_empty() {
            return Err(StorageError::NoLogDirs);
        }
        let mut dirs = Vec::with_capacity(log_dirs.len());
        let mut to_open = Vec::new();
        let mut seen: HashMap<TopicPartition, PathBuf> = HashMap::new();
        let now = now_ms();
        for path in log_dirs {
            fs::create_dir_all(path).map_err(StorageError::io("create directory", path))?;
            let lock_path = path.join(LOCK_FILE);
            let lock_file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(StorageError::io("open", &lock_path))?;
            match lock_file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StorageError::LogDirLocked { path: path.clone() });
                }
                Err(fs::TryLockError::Error(err)) => {
                    return Err(StorageError::io("lock", &lock_path)(err));
                }
            }
            let clean = path.join(CLEAN_SHUTDOWN_FILE).exists();
            let checkpoint = |name: &str| {
                read_offsets(&path.join(name)).map_err(|err| {
                    tracing::warn!(%err, "ignoring an unreadable checkpoint; its logs will be recovered");
                })
            };
            // A corrupt recovery-point checkpoint means nothing is known to
            // be durable: everything in this dir is recovered.
            let recovery_points = checkpoint(RECOVERY_POINT_FILE);
            let recovery_ok = recovery_points.is_ok();
            let recovery_points = recovery_points.unwrap_or_default();
            let high_watermarks = checkpoint(HIGH_WATERMARK_FILE).unwrap_or_default();
            let log_starts = checkpoint(LOG_START_OFFSET_FILE).unwrap_or_default();

            let entries = fs::read_dir(path).map_err(StorageError::io("list", path))?;
            for entry in entries {
                let entry = entry.map_err(StorageError::io("list", path))?;
                let child = entry.path();
                if !child.is_dir() {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.ends_with(DELETE_SUFFIX) {
                    tracing::info!(dir = %child.display(), "removing a partition left half-deleted");
                    fs::remove_dir_all(&child).map_err(StorageError::io("remove", &child))?;
                    continue;
                }
                let Ok(tp) = name.parse::<TopicPartition>() else {
                    tracing::warn!(dir = %child.display(), "ignoring a directory that is not <topic>-<partition>");
                    continue;
                };
                if let Some(first) = seen.insert(tp.clone(), path.clone()) {
                    return Err(StorageError::DuplicateLog {
                        topic_partition: tp,
                        first,
                        second: path.clone(),
                    });
                }
                to_open.push(LogOpen {
                    dir: child,
                    recovery_point: if recovery_ok {
                        recovery_points.get(&tp).copied()
                    } else {
                        Some(0)
                    },
                    log_start_offset: log_starts.get(&tp).copied(),
                    high_watermark: high_watermarks.get(&tp).copied(),
                    topic_partition: tp,
                    topic_id: [0; 16],
                    config: default_config,
                    clean: clean && recovery_ok,
                    now_ms: now,
                });
            }
            dirs.push(LogDir {
                path: path.clone(),
                _lock: lock_file,
            });
        }

        let logs = open_all(to_open)?;
        for dir in &dirs {
            remove_if_exists(&dir.path.join(CLEAN_SHUTDOWN_FILE))?;
            sync_dir(&dir.path)?;
        }
        Ok(LogManager {
            dirs,
            logs: RwLock::new(logs),
            create: Mutex::new(()),
            checkpointing: Mutex::new(()),
        })
    }

    /// The log dirs, in configuration order.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        read_lock(&self.logs).get(tp).cloned()
    }

    /// The partition's log, created empty (on the log dir holding the
    /// fewest partitions, with `partition.metadata` naming `topic_id`) if it
    /// does not exist. An existing log takes `config` (logs opened at
    /// start-up have the default config until then); one with a different
    /// (non-zero) topic id is [`StorageError::InconsistentTopicId`]. An
    /// all-zero `topic_id` matches any.
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
        config: LogConfig,
    ) -> Result<Arc<Log>, StorageError> {
        if let Some(log) = self.get(tp) {
            return self.existing(log, topic_id, config);
        }
        let _create = lock(&self.create);
        if let Some(log) = self.get(tp) {
            return self.existing(log, topic_id, config);
        }
        let counts = {
            let logs = read_lock(&self.logs);
            let mut counts = vec![0usize; self.dirs.len()];
            for log in logs.values() {
                if let Some(i) = self
                    .dirs
                    .iter()
                    .position(|d| log.dir_path().parent() == Some(&d.path))
                {
                    counts[i] += 1;
                }
            }
            counts
        };
        let chosen = (0..self.dirs.len())
            .min_by_key(|&i| counts[i])
            .ok_or(StorageError::NoLogDirs)?;
        let parent = &self.dirs[chosen].path;
        let dir = parent.join(tp.dir_name());
        fs::create_dir_all(&dir).map_err(StorageError::io("create directory", &dir))?;
        write_topic_id(&dir, topic_id)?;
        sync_dir(parent)?;
        let log = Arc::new(Log::open(LogOpen {
            dir,
            topic_partition: tp.clone(),
            topic_id,
            config,
            recovery_point: None,
            log_start_offset: None,
            high_watermark: None,
            clean: true,
            now_ms: now_ms(),
        })?);
        tracing::info!(partition = %tp, dir = %parent.display(), "created log");
        write_lock(&self.logs).insert(tp.clone(), Arc::clone(&log));
        Ok(log)
    }

    fn existing(
        &self,
        log: Arc<Log>,
        topic_id: [u8; 16],
        config: LogConfig,
    ) -> Result<Arc<Log>, StorageError> {
        let stored = log.topic_id();
        if stored == topic_id || topic_id == [0; 16] {
            log.set_config(config);
            return Ok(log);
        }
        if stored == [0; 16] {
            write_topic_id(log.dir_path(), topic_id)?;
            log.set_topic_id(topic_id);
            log.set_config(config);
            return Ok(log);
        }
        Err(StorageError::InconsistentTopicId {
            topic_partition: log.topic_partition().clone(),
            stored: uuid_string(stored),
            requested: uuid_string(topic_id),
        })
    }

    /// Every log, sorted by partition.
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        let mut all: Vec<_> = read_lock(&self.logs)
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Deletes a partition's log (topic deletion): its directory is renamed
    /// to `<topic>-<partition>.<uuid>-delete`, then removed; a crash in
    /// between is finished by the next open. Holders of the `Arc<Log>` get
    /// [`StorageError::LogDeleted`] on append. Deleting an unknown
    /// partition does nothing.
    pub fn delete(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let _create = lock(&self.create);
        let Some(log) = write_lock(&self.logs).remove(tp) else {
            return Ok(());
        };
        log.mark_deleted();
        let dir = log.dir_path().to_path_buf();
        let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let doomed = parent.join(format!(
            "{}.{}{DELETE_SUFFIX}",
            tp.dir_name(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::rename(&dir, &doomed).map_err(StorageError::io("rename", &dir))?;
        sync_dir(&parent)?;
        fs::remove_dir_all(&doomed).map_err(StorageError::io("remove", &doomed))?;
        tracing::info!(partition = %tp, "deleted log");
        Ok(())
    }

    /// Writes, in every log dir, the recovery points, high watermarks and
    /// log start offsets of its logs, each file atomically.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let _checkpointing = lock(&self.checkpointing);
        let logs = self.logs();
        for dir in &self.dirs {
            let mine: Vec<&(TopicPartition, Arc<Log>)> = logs
                .iter()
                .filter(|(_, log)| log.dir_path().parent() == Some(&dir.path))
                .collect();
            let collect = |f: fn(&Log) -> i64| -> Vec<(TopicPartition, i64)> {
                mine.iter().map(|(tp, log)| (tp.clone(), f(log))).collect()
            };
            write_offsets(
                &dir.path.join(RECOVERY_POINT_FILE),
                &collect(Log::recovery_point),
            )?;
            write_offsets(
                &dir.path.join(HIGH_WATERMARK_FILE),
                &collect(Log::high_watermark),
            )?;
            write_offsets(
                &dir.path.join(LOG_START_OFFSET_FILE),
                &collect(Log::log_start_offset),
            )?;
        }
        Ok(())
    }

    /// One retention pass over every log (`retention.ms`,
    /// `retention.bytes`); the broker runs it every
    /// `log.retention.check.interval.ms`. A failing log does not stop the
    /// pass; the first error is returned after it.
    pub fn run_retention(&self, now_ms: i64) -> Result<RetentionStats, StorageError> {
        let mut stats = RetentionStats::default();
        let mut first_error = None;
        for (tp, log) in self.logs() {
            match log.delete_retained_segments(now_ms) {
                Ok((segments, bytes)) => {
                    stats.segments_deleted += segments;
                    stats.bytes_deleted += bytes;
                }
                Err(err) => {
                    tracing::error!(partition = %tp, %err, "retention failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(stats), Err)
    }

    /// Closes segments left by rolls (fsync, index files) and flushes logs
    /// whose `flush.ms` has elapsed. Call it every second or so.
    pub fn flush_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let mut first_error = None;
        for (tp, log) in self.logs() {
            if let Err(err) = log
                .close_rolled_segments()
                .and_then(|()| log.flush_if_due(now_ms))
            {
                tracing::error!(partition = %tp, %err, "flush failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Flushes every log, writes the checkpoints and then the
    /// clean-shutdown marker in each dir, so the next open skips recovery.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        for (_, log) in self.logs() {
            log.close()?;
        }
        self.checkpoint()?;
        for dir in &self.dirs {
            write_atomically(&dir.path.join(CLEAN_SHUTDOWN_FILE), b"")?;
        }
        Ok(())
    }
}

/// Opens the logs, two at a time at most (the machine has two cores and
/// recovery is read-and-checksum bound).
fn open_all(to_open: Vec<LogOpen>) -> Result<HashMap<TopicPartition, Arc<Log>>, StorageError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2)
        .min(to_open.len().max(1));
    let queue = Mutex::new(to_open);
    let opened = Mutex::new(HashMap::new());
    let failed: Mutex<Option<StorageError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    if lock(&failed).is_some() {
                        return;
                    }
                    let Some(mut open) = lock(&queue).pop() else {
                        return;
                    };
                    let result = read_topic_id(&open.dir).and_then(|topic_id| {
                        open.topic_id = topic_id;
                        let tp = open.topic_partition.clone();
                        Log::open(open).map(|log| (tp, log))
                    });
                    match result {
                        Ok((tp, log)) => {
                            tracing::info!(
                                partition = %tp,
                                log_end_offset = log.log_end_offset(),
                                "loaded log"
                            );
                            lock(&opened).insert(tp, Arc::new(log));
                        }
                        Err(err) => {
                            lock(&failed).get_or_insert(err);
                        }
                    }
                }
            });
        }
    });
    if let Some(err) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(err);
    }
    Ok(opened
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}
