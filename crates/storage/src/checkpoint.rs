//! Small text files written atomically: the per-log-dir offset checkpoints
//! (`recovery-point-offset-checkpoint`, `replication-offset-checkpoint`,
//! `log-start-offset-checkpoint`) in Kafka's format
//!
//! ```text
//! 0                  <- version
//! 2                  <- number of entries
//! my-topic 0 1200    <- topic partition offset
//! my-topic 1 977
//! ```
//!
//! and the helpers every other small file (leader-epoch checkpoint,
//! partition metadata) uses. A reader sees the old file or the new one,
//! never a mix: write a temp file, fsync it, rename it over, fsync the dir.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::{StorageError, TopicPartition};

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";

/// Suffix of the temp files of [`write_atomically`]; leftovers of a crash
/// are removed at open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `contents` so that a crash leaves either the old or
/// the new file, complete.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(TEMP_SUFFIX);
    let temp = Path::new(&temp_name);
    let mut file = File::create(temp).map_err(StorageError::io("create", temp))?;
    file.write_all(contents)
        .map_err(StorageError::io("write", temp))?;
    file.sync_all().map_err(StorageError::io("fsync", temp))?;
    drop(file);
    fs::rename(temp, path).map_err(StorageError::io("rename", temp))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync directory", dir))
}

/// Writes an offset checkpoint file, entries sorted for stable output.
pub(crate) fn write_offsets(
    path: &Path,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), StorageError> {
    let mut sorted: Vec<&(TopicPartition, i64)> = offsets.iter().collect();
    sorted.sort();
    let mut text = format!("0\n{}\n", sorted.len());
    for (tp, offset) in sorted {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    write_atomically(path, text.as_bytes())
}

/// Reads an offset checkpoint file; a missing file is an empty map.
pub(crate) fn read_offsets(path: &Path) -> Result<HashMap<TopicPartition, i64>, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(err) => return Err(StorageError::io("read", path)(err)),
    };
    let corrupt = |reason: String| StorageError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(corrupt(format!("unsupported version line {other:?}"))),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing entry count".into()))?;
    let mut offsets = HashMap::with_capacity(count.min(1 << 16));
    for line in lines.by_ref().take(count) {
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(corrupt(format!("malformed line '{line}'")));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| corrupt(format!("bad partition in '{line}'")))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| corrupt(format!("bad offset in '{line}'")))?;
        offsets.insert(TopicPartition::new(topic, partition), offset);
    }
    if offsets.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(format!(
            "expected {count} entries, found {}",
            offsets.len()
        )));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_FILE);
        let offsets = vec![
            (TopicPartition::new("b-topic", 1), 977),
            (TopicPartition::new("a", 0), 1200),
        ];
        write_offsets(&path, &offsets).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "0\n2\na 0 1200\nb-topic 1 977\n"
        );
        let read = read_offsets(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[&TopicPartition::new("a", 0)], 1200);
        assert!(
            !dir.path()
                .join("recovery-point-offset-checkpoint.tmp")
                .exists()
        );
    }

    #[test]
    fn a_missing_file_is_empty_and_a_garbled_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        assert!(read_offsets(&path).unwrap().is_empty());
        for garbage in [
            "",
            "1\n0\n",
            "0\n2\na 0 1\n",
            "0\n1\na 0\n",
            "0\n1\na x 1\n",
        ] {
            fs::write(&path, garbage).unwrap();
            assert!(
                matches!(read_offsets(&path), Err(StorageError::CorruptFile { .. })),
                "{garbage:?}"
            );
        }
    }
}
