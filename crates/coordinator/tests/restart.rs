//! A restarted coordinator has everything it acknowledged: after a clean
//! stop, after snapshots, and after a crash that tore the last write.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use protocol::coordinator::{BrokerState, DeleteTopicsRequest, DescribeClusterRequest};
use protocol::image::MetadataImage;

/// The image as a fresh watcher of `coordinator` sees it.
async fn image_of(coordinator: &TestCoordinator) -> MetadataImage {
    let mut client = coordinator.client().await;
    let version = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner()
        .metadata_version;
    let mut watcher = Watcher::start(&mut client, -1).await;
    watcher.wait_for_version(version).await;
    watcher.image
}

fn log_segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

/// Brokers 1 and 2 with topics a and b, then b deleted: the last commit.
async fn build_state(coordinator: &TestCoordinator) -> (MetadataImage, MetadataImage) {
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let brokers = start_brokers(coordinator, &mut watcher, &[1, 2], 2000).await;
    create_topics(&mut client, vec![topic("a", 4, 2)]).await;
    create_topics(&mut client, vec![topic("b", 2, 1)]).await;
    watcher
        .wait_for("topic b", |i| i.topics.contains_key("b"))
        .await;
    let before_delete = watcher.image.clone();
    client
        .delete_topics(DeleteTopicsRequest {
            names: vec!["b".into()],
        })
        .await
        .unwrap();
    watcher
        .wait_for("b deleted", |i| !i.topics.contains_key("b"))
        .await;
    drop(brokers);
    (before_delete, watcher.image.clone())
}

#[tokio::test]
async fn a_restart_keeps_brokers_topics_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    build_state(&coordinator).await;
    let image = {
        // Brokers' streams closed when they were dropped: let that settle
        // into the image before comparing.
        let mut client = coordinator.client().await;
        let mut watcher = Watcher::start(&mut client, -1).await;
        watcher.next().await;
        watcher
            .wait_for("brokers fenced", |i| {
                i.brokers
                    .values()
                    .all(|b| b.state == BrokerState::Fenced as i32)
            })
            .await
            .clone()
    };
    assert!(image.topics.contains_key("a"));
    coordinator.stop().await;

    let restarted = TestCoordinator::start(test_settings(dir.path())).await;
    assert_eq!(image_of(&restarted).await, image);
    restarted.stop().await;
}

#[tokio::test]
async fn active_brokers_keep_their_epochs_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 1000).await;
    create_topics(&mut client, vec![assigned_topic("t", &[&[1, 2]])]).await;
    watcher
        .wait_for("topic t", |i| i.topics.contains_key("t"))
        .await;
    let addr = coordinator.addr;
    coordinator.stop().await;

    // Same port, so the brokers' clients reconnect by themselves.
    let mut settings = test_settings(dir.path());
    settings.data_dir = dir.path().to_owned();
    let listener = loop {
        // The old listener is closed; the port is free again.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(coordinator::run(settings, listener, async move {
        let _ = signal.await;
    }));

    // Broker 1 comes back on a new stream with its epoch; broker 2 never
    // does and is fenced after its session timeout.
    brokers[0].open_stream();
    assert_eq!(brokers[0].next_response().await.error_code, 0);
    let mut client = common::Client::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut watcher = Watcher::start(&mut client, -1).await;
    brokers[1].close_stream();
    watcher.wait_for_broker_state(2, BrokerState::Fenced).await;
    assert_eq!(watcher.image.brokers[&1].state, BrokerState::Active as i32);
    assert_eq!(watcher.image.brokers[&1].broker_epoch, brokers[0].epoch);
    let p = watcher.image.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    drop(brokers);
    let _ = shutdown.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_torn_last_write_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let (before_delete, _) = build_state(&coordinator).await;
    coordinator.stop().await;

    // Cut the log inside its last batch, as a crash in mid-write would.
    // The last batches are the brokers' fencing (streams closed) and the
    // delete; find the delete's batch by its version and cut into it.
    let segment = log_segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&segment).unwrap();
    let mut position = 0;
    let mut delete_batch = None;
    for batch in records::Batches::new(&bytes, usize::MAX) {
        let (header, slice) = batch.unwrap();
        if header.base_offset == before_delete.version {
            delete_batch = Some((position, slice.len()));
        }
        position += slice.len();
    }
    let (start, len) = delete_batch.expect("the delete's batch");
    fs::write(&segment, &bytes[..start + len / 2]).unwrap();

    let restarted = TestCoordinator::start(test_settings(dir.path())).await;
    let image = image_of(&restarted).await;
    // Everything before the torn batch, nothing after.
    assert_eq!(image.version, before_delete.version);
    assert!(image.topics.contains_key("b"));
    assert_eq!(image.topics, before_delete.topics);
    assert_eq!(fs::metadata(&segment).unwrap().len() as usize, start);
    // And it goes on from there.
    let mut client = restarted.client().await;
    client
        .delete_topics(DeleteTopicsRequest {
            names: vec!["b".into()],
        })
        .await
        .unwrap();
    restarted.stop().await;

    // Garbage appended after the last batch is cut too.
    let mut bytes = fs::read(&segment).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0x5A; 37]);
    fs::write(&segment, &bytes).unwrap();
    let restarted = TestCoordinator::start(test_settings(dir.path())).await;
    let image = image_of(&restarted).await;
    assert!(!image.topics.contains_key("b"));
    assert!(image.topics.contains_key("a"));
    assert_eq!(fs::metadata(&segment).unwrap().len() as usize, whole);
    restarted.stop().await;
}

#[tokio::test]
async fn snapshots_replace_the_log_they_cover() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.snapshot_min_records = 10;
    let coordinator = TestCoordinator::start(settings.clone()).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1], 2000).await;
    for i in 0..30 {
        create_topics(&mut client, vec![topic(&format!("t{i}"), 2, 1)]).await;
    }
    client
        .delete_topics(DeleteTopicsRequest {
            names: vec!["t7".into()],
        })
        .await
        .unwrap();
    let image = image_of(&coordinator).await;
    coordinator.stop().await;

    let snapshots: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    assert_eq!(
        snapshots.len(),
        1,
        "older snapshots are deleted: {snapshots:?}"
    );
    assert_eq!(
        log_segments(dir.path()).len(),
        1,
        "covered segments are deleted"
    );

    let restarted = TestCoordinator::start(settings).await;
    let mut recovered = image_of(&restarted).await;
    // Broker 1's stream closed at the stop; it is fenced after its session.
    recovered.brokers = image.brokers.clone();
    assert_eq!(recovered.topics, image.topics);
    assert_eq!(recovered.topics.len(), 29);
    restarted.stop().await;
}

#[tokio::test]
async fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    // Make sure the first one has opened its log.
    image_of(&coordinator).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = coordinator::run(test_settings(dir.path()), listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("in use by another coordinator"),
        "{error}"
    );
    coordinator.stop().await;
}
