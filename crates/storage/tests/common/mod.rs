//! Helpers shared by the storage integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use records::{BatchHeader, RecordBatchBuilder, decode_batch};
use storage::{Log, LogConfig, LogManager, TopicPartition};

pub const TOPIC_ID: [u8; 16] = [7; 16];

/// A batch of `records` records with `value_len`-byte values; timestamps
/// from `timestamp`, one ms apart; values tagged with `tag` so batches
/// differ.
pub fn batch(records: usize, value_len: usize, timestamp: i64, tag: u8) -> Bytes {
    let mut builder = RecordBatchBuilder::with_capacity(records * (value_len + 8));
    let mut value = vec![tag; value_len];
    for i in 0..records {
        if let Some(first) = value.first_mut() {
            *first = i as u8;
        }
        builder.append(timestamp + i as i64, None, Some(&value), &[]);
    }
    builder.finish()
}

pub fn tp() -> TopicPartition {
    TopicPartition::new("test-topic", 0)
}

pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, config: LogConfig) -> (LogManager, Arc<Log>) {
    let manager = LogManager::open(&[dir.to_path_buf()], config).unwrap();
    let log = manager.get_or_create(&tp(), TOPIC_ID, config).unwrap();
    (manager, log)
}

/// Splits back-to-back batches into (header, bytes).
pub fn split(records: &Bytes) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let header = records::validate_batch(
            &records[at..at + records::peek_batch_size(&records[at..]).unwrap()],
            usize::MAX,
        )
        .unwrap();
        let size = header.size_in_bytes();
        out.push((header, records.slice(at..at + size)));
        at += size;
    }
    out
}

/// Reads the whole log from `from` to the LEO, batch by batch.
pub fn read_all(log: &Log, from: i64) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let read = log.read(offset, 64 * 1024, None).unwrap();
        if read.records.is_empty() {
            assert!(
                offset >= log.log_end_offset(),
                "empty read at {offset} below the LEO"
            );
            return out;
        }
        for (header, bytes) in split(&read.records) {
            offset = header.next_offset();
            out.push((header, bytes));
        }
    }
}

/// The values of a batch's records.
pub fn values(batch: &Bytes) -> Vec<Vec<u8>> {
    decode_batch(batch, |_, _| Err::<Vec<u8>, String>("no codec".into()))
        .unwrap()
        .1
        .into_iter()
        .map(|r| r.value.map(|v| v.to_vec()).unwrap_or_default())
        .collect()
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}
