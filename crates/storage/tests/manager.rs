//! The LogManager: dir locking, placement, checkpoints, reopen after a
//! clean and an unclean stop, deletion.

mod common;

use std::fs;

use common::*;
use storage::{LogConfig, LogManager, StorageError, TopicPartition};

#[test]
fn a_log_dir_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let first = LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).unwrap();
    let err = LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::LogDirLocked { .. }), "{err}");
    drop(first);
    LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).unwrap();
}

#[test]
fn partitions_go_to_the_dir_with_the_fewest() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let manager = LogManager::open(&dirs, LogConfig::default()).unwrap();
    for p in 0..6 {
        manager
            .get_or_create(&TopicPartition::new("t", p), TOPIC_ID, LogConfig::default())
            .unwrap();
    }
    let count = |d: &std::path::Path| {
        fs::read_dir(d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count()
    };
    assert_eq!(count(a.path()), 3);
    assert_eq!(count(b.path()), 3);
    let log = manager.get(&TopicPartition::new("t", 4)).unwrap();
    let metadata = fs::read_to_string(log.dir().join("partition.metadata")).unwrap();
    assert_eq!(
        metadata,
        "version: 0\ntopic_id: 07070707-0707-0707-0707-070707070707\n"
    );
    assert_eq!(manager.logs().len(), 6);
    // Same partition, another topic id: the topic was re-created.
    let err = manager
        .get_or_create(&TopicPartition::new("t", 4), [9; 16], LogConfig::default())
        .unwrap_err();
    assert!(
        matches!(err, StorageError::InconsistentTopicId { .. }),
        "{err}"
    );
    drop(manager);
    // Reopened: both dirs' partitions, with their topic ids.
    let manager = LogManager::open(&dirs, LogConfig::default()).unwrap();
    assert_eq!(manager.logs().len(), 6);
    assert_eq!(
        manager
            .get(&TopicPartition::new("t", 4))
            .unwrap()
            .topic_id(),
        TOPIC_ID
    );
}

#[test]
fn clean_shutdown_and_reopen_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(4096);
    let (manager, log) = open(dir.path(), config);
    for i in 0..40u8 {
        log.append_as_leader(&batch(3, 100, i64::from(i), i), i32::from(i / 10), 0)
            .unwrap();
    }
    log.advance_log_start_offset(7).unwrap();
    log.set_high_watermark(100);
    let before = read_all(&log, 7);
    let epochs = log.epoch_entries();
    manager.shutdown().unwrap();
    assert!(dir.path().join(".kafka_cleanshutdown").exists());
    let hw = fs::read_to_string(dir.path().join("replication-offset-checkpoint")).unwrap();
    assert_eq!(hw, "0\n1\ntest-topic 0 100\n");
    let start = fs::read_to_string(dir.path().join("log-start-offset-checkpoint")).unwrap();
    assert_eq!(start, "0\n1\ntest-topic 0 7\n");
    let rp = fs::read_to_string(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    assert_eq!(rp, "0\n1\ntest-topic 0 120\n");
    drop((manager, log));

    let (manager, log) = open(dir.path(), config);
    assert!(!dir.path().join(".kafka_cleanshutdown").exists());
    assert_eq!(log.log_start_offset(), 7);
    assert_eq!(log.high_watermark(), 100);
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(log.recovery_point(), 120);
    assert_eq!(read_all(&log, 7), before);
    assert_eq!(log.epoch_entries(), epochs);
    assert_eq!(log.offset_for_timestamp(39).unwrap(), Some((113, 39)));
    let info = log.append_as_leader(&batch(1, 10, 0, 0), 9, 0).unwrap();
    assert_eq!(info.first_offset, 120);
    drop(manager);
}

#[test]
fn unclean_reopen_without_checkpoints_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(4096);
    let (manager, log) = open(dir.path(), config);
    for i in 0..40u8 {
        log.append_as_leader(&batch(3, 100, 0, i), 1, 0).unwrap();
    }
    let before = read_all(&log, 0);
    // No shutdown, no checkpoint: as after kill -9.
    drop((manager, log));
    let (_manager, log) = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.recovery_point(), 120);
}

#[test]
fn deleted_partitions_are_gone_and_half_deleted_ones_are_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, log) = open(dir.path(), small_config(4096));
    log.append_as_leader(&batch(1, 10, 0, 0), 0, 0).unwrap();
    manager.delete(&tp()).unwrap();
    assert!(manager.get(&tp()).is_none());
    assert!(!log.dir().exists());
    assert!(matches!(
        log.append_as_leader(&batch(1, 10, 0, 0), 0, 0),
        Err(StorageError::LogDeleted(_))
    ));
    // A crash between rename and removal leaves a -delete dir behind.
    let leftover = dir
        .path()
        .join("gone-0.0123456789abcdef0123456789abcdef-delete");
    fs::create_dir(&leftover).unwrap();
    fs::write(leftover.join("00000000000000000000.log"), b"x").unwrap();
    drop(manager);
    let manager = LogManager::open(&[dir.path().to_path_buf()], LogConfig::default()).unwrap();
    assert!(!leftover.exists());
    assert!(manager.logs().is_empty());
}

#[test]
fn corrupt_checkpoints_mean_recovery_not_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(4096);
    let (manager, log) = open(dir.path(), config);
    for i in 0..10u8 {
        log.append_as_leader(&batch(3, 100, 0, i), 1, 0).unwrap();
    }
    let before = read_all(&log, 0);
    manager.shutdown().unwrap();
    drop((manager, log));
    fs::write(
        dir.path().join("recovery-point-offset-checkpoint"),
        "garbage",
    )
    .unwrap();
    fs::write(
        dir.path().join("test-topic-0/leader-epoch-checkpoint"),
        "0\n9\nx",
    )
    .unwrap();
    let (_manager, log) = open(dir.path(), config);
    assert_eq!(read_all(&log, 0), before);
    // The epoch history was rebuilt from the batches.
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
}

#[test]
fn checkpoints_are_per_dir() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let manager = LogManager::open(
        &[a.path().to_path_buf(), b.path().to_path_buf()],
        small_config(4096),
    )
    .unwrap();
    for p in 0..2 {
        let log = manager
            .get_or_create(&TopicPartition::new("x", p), TOPIC_ID, small_config(4096))
            .unwrap();
        log.append_as_leader(&batch(2, 10, 0, 0), 0, 0).unwrap();
        log.set_high_watermark(1 + i64::from(p));
    }
    manager.checkpoint().unwrap();
    let a_hw = fs::read_to_string(a.path().join("replication-offset-checkpoint")).unwrap();
    let b_hw = fs::read_to_string(b.path().join("replication-offset-checkpoint")).unwrap();
    assert_eq!(a_hw, "0\n1\nx 0 1\n");
    assert_eq!(b_hw, "0\n1\nx 1 2\n");
}

#[test]
fn flush_due_closes_rolled_segments_and_flushes_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_ms: Some(60_000),
        ..small_config(4096)
    };
    let (manager, log) = open(dir.path(), config);
    for i in 0..60u8 {
        log.append_as_leader(&batch(3, 100, 0, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    // Rolls do not fsync on the append path.
    assert_eq!(log.recovery_point(), 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    manager.flush_due(now).unwrap();
    // The rolled segments are closed: durable, with their index files.
    let files = segment_files(&log.dir());
    let active_base: i64 = files
        .last()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(log.recovery_point(), active_base);
    for file in &files[..files.len() - 1] {
        let index = file.with_extension("index");
        let timeindex = file.with_extension("timeindex");
        assert!(fs::metadata(index).unwrap().len() > 0, "{}", file.display());
        assert_eq!(fs::metadata(timeindex).unwrap().len() % 12, 0);
    }
    // flush.ms elapsed: everything is durable.
    manager.flush_due(now + 120_000).unwrap();
    assert_eq!(log.recovery_point(), 180);
}
