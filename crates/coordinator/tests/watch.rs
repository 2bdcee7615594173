//! WatchMetadata: order, resumption with deltas, snapshots for versions no
//! longer kept.

mod common;

use common::*;
use protocol::coordinator::{DeleteTopicsRequest, DescribeClusterRequest, WatchMetadataRequest};

#[tokio::test]
async fn watchers_see_the_same_updates_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut first = Watcher::start(&mut client, -1).await;
    let mut second = Watcher::start(&mut coordinator.client().await, 0).await;
    let _brokers = start_brokers(&coordinator, &mut first, &[1, 2, 3], 2000).await;

    // Changes from several clients at once, so that some share a commit.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = coordinator.client().await;
        tasks.push(tokio::spawn(async move {
            create_topics(&mut client, vec![topic(&format!("topic-{i}"), 3, 2)]).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    client
        .delete_topics(DeleteTopicsRequest {
            names: vec!["topic-3".into()],
        })
        .await
        .unwrap();
    let version = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner()
        .metadata_version;

    first.wait_for_version(version).await;
    second.wait_for_version(version).await;
    assert_eq!(first.image, second.image);
    assert_eq!(first.image.topics.len(), 19);

    // `first` began with a snapshot of the empty cluster, `second` from
    // version 0 with deltas: after that, the same updates.
    assert!(first.updates[0].snapshot);
    assert!(second.updates.iter().all(|u| !u.snapshot));
    let deltas = |w: &Watcher| {
        w.updates
            .iter()
            .filter(|u| !u.snapshot)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(deltas(&first), deltas(&second));
    let versions: Vec<i64> = second.updates.iter().map(|u| u.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    coordinator.stop().await;
}

#[tokio::test]
async fn resuming_from_a_recent_version_gets_the_changes_since() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1], 2000).await;
    create_topics(&mut client, vec![topic("a", 1, 1)]).await;
    watcher
        .wait_for("topic a", |i| i.topics.contains_key("a"))
        .await;
    let at_resume = watcher.image.clone();
    let resume_at = at_resume.version;
    create_topics(&mut client, vec![topic("b", 2, 1)]).await;
    watcher
        .wait_for("topic b", |i| i.topics.contains_key("b"))
        .await;

    let mut resumed = Watcher::start(&mut client, resume_at).await;
    resumed.image = at_resume;
    let update = resumed.next().await;
    assert!(!update.snapshot);
    assert_eq!(update.version - update.records.len() as i64, resume_at);
    resumed.wait_for_version(watcher.image.version).await;
    assert_eq!(resumed.image, watcher.image);

    // From the current version: nothing until the next change.
    let mut current = Watcher::start(&mut client, watcher.image.version).await;
    create_topics(&mut client, vec![topic("c", 1, 1)]).await;
    let update = current.next().await;
    assert!(!update.snapshot);
    assert!(
        update
            .records
            .iter()
            .any(|r| format!("{r:?}").contains("\"c\""))
    );
    coordinator.stop().await;
}

#[tokio::test]
async fn versions_no_longer_kept_get_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.retained_update_records = 3;
    let coordinator = TestCoordinator::start(settings).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1], 2000).await;
    for name in ["a", "b", "c"] {
        create_topics(&mut client, vec![topic(name, 2, 1)]).await;
    }
    watcher
        .wait_for("three topics", |i| i.topics.len() == 3)
        .await;

    let mut late = Watcher::start(&mut client, 1).await;
    let update = late.next().await;
    assert!(update.snapshot, "version 1 is long gone: a snapshot first");
    assert_eq!(update.version, watcher.image.version);
    assert_eq!(late.image, watcher.image);

    // A version from the future (another cluster's, say): a snapshot too.
    let mut confused = Watcher::start(&mut client, watcher.image.version + 100).await;
    assert!(confused.next().await.snapshot);

    let status = client
        .watch_metadata(WatchMetadataRequest { from_version: -7 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    coordinator.stop().await;
}

#[tokio::test]
async fn watch_streams_end_when_the_coordinator_stops() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut stream = client
        .watch_metadata(WatchMetadataRequest { from_version: -1 })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().unwrap().snapshot);
    coordinator.stop().await;
    // Ends (cleanly or with an error), instead of hanging.
    let end = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap();
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}
