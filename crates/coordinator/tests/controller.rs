//! Broker sessions and the controller's reactions, over real gRPC: a test
//! client plays the brokers, a watcher observes what the coordinator did.

mod common;

use std::time::Duration;

use common::*;
use protocol::coordinator::{
    BrokerState, ControlledShutdownRequest, DescribeClusterRequest, HeartbeatRequest,
};
use protocol::{ErrorCode, NO_ID};

#[tokio::test]
async fn a_broker_is_fenced_until_caught_up_and_retries_keep_their_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut broker = TestBroker::register(&coordinator, 1, "first", 2000).await;
    assert!(broker.epoch > 0);

    let cluster = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster.brokers[0].state, BrokerState::Fenced as i32);
    assert_eq!(cluster.metadata_version, broker.epoch);
    assert_eq!(cluster.cluster_id.len(), 22);

    // Behind its own registration: still fenced.
    broker.report_version(broker.epoch - 1);
    broker.open_stream();
    let response = broker.next_response().await;
    assert_eq!((response.error_code, response.fenced), (0, true));
    broker.report_version(broker.epoch);
    while broker.next_response().await.fenced {}
    let cluster = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster.brokers[0].state, BrokerState::Active as i32);

    // A retried registration (same incarnation) gets the same epoch.
    let again = client
        .register_broker(register_request(1, "first", 2000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.broker_epoch, broker.epoch);
    assert_eq!(again.session_timeout_ms, 2000);

    // Session timeouts are bounded by 2 and 20 ticks.
    let short = client
        .register_broker(register_request(2, "x", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short.session_timeout_ms, 200);

    // Malformed registrations are InvalidArgument.
    let status = client
        .register_broker(register_request(-5, "y", 2000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    drop(broker);
    coordinator.stop().await;
}

#[tokio::test]
async fn a_broker_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let cluster_id = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner()
        .cluster_id;

    let mut request = register_request(1, "elsewhere", 2000);
    request.cluster_id = "AAAAAAAAAAAAAAAAAAAAAA".into();
    let response = client.register_broker(request).await.unwrap().into_inner();
    assert_eq!(code(response.error_code), ErrorCode::InconsistentClusterId);
    assert!(
        response.error_message.contains("AAAAAAAAAAAAAAAAAAAAAA"),
        "{}",
        response.error_message
    );
    let cluster = client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(cluster.brokers.is_empty(), "nothing was registered");

    // Its own cluster id, or none yet, is welcome.
    let mut request = register_request(1, "home", 2000);
    request.cluster_id = cluster_id;
    let response = client.register_broker(request).await.unwrap().into_inner();
    assert_eq!(code(response.error_code), ErrorCode::None);
}

#[tokio::test]
async fn a_lapsed_session_fences_the_broker_and_moves_its_leaderships() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[2, 3], 2000).await;
    brokers.push(TestBroker::start(&coordinator, 1, 1000).await);
    watcher.wait_for_broker_state(1, BrokerState::Active).await;
    create_topics(
        &mut client,
        vec![
            assigned_topic("t", &[&[1, 2, 3], &[2, 1, 3]]),
            assigned_topic("solo", &[&[1]]),
        ],
    )
    .await;
    watcher
        .wait_for("topics", |i| {
            i.topics.contains_key("t") && i.topics.contains_key("solo")
        })
        .await;

    // Broker 1 hangs: its stream stays open, its heartbeats stop.
    brokers[2].pause();
    let image = watcher
        .wait_for("broker 1 fenced", |i| {
            i.brokers[&1].state == BrokerState::Fenced as i32
        })
        .await
        .clone();
    let p0 = partition(&image, "t", 0);
    assert_eq!(
        (
            p0.leader,
            p0.isr.clone(),
            p0.leader_epoch,
            p0.partition_epoch
        ),
        (2, vec![2, 3], 1, 1)
    );
    let p1 = partition(&image, "t", 1);
    assert_eq!(
        (
            p1.leader,
            p1.isr.clone(),
            p1.leader_epoch,
            p1.partition_epoch
        ),
        (2, vec![2, 3], 0, 1)
    );
    // The only replica was 1: offline, and 1 stays in the ISR.
    let p2 = partition(&image, "solo", 0);
    assert_eq!(
        (
            p2.leader,
            p2.isr.clone(),
            p2.leader_epoch,
            p2.partition_epoch
        ),
        (NO_ID, vec![1], 1, 1)
    );

    // Broker 1's epoch is still current, but it leads nothing now.
    let response = brokers[2].alter_partition(&p0, &[1, 2, 3]).await;
    assert_eq!(code(response.error_code), ErrorCode::NotLeaderOrFollower);

    // It comes back with the same epoch: active again, leads its offline
    // partition again with a new leader epoch, and nothing else.
    brokers[2].resume();
    let image = watcher
        .wait_for("solo-0 back online", |i| {
            i.partition("solo", 0).is_some_and(|p| p.leader == 1)
        })
        .await
        .clone();
    assert_eq!(image.brokers[&1].state, BrokerState::Active as i32);
    let p2 = partition(&image, "solo", 0);
    assert_eq!((p2.leader_epoch, p2.partition_epoch), (2, 2));
    assert_eq!(partition(&image, "t", 0).leader, 2);
    coordinator.stop().await;
}

#[tokio::test]
async fn a_broken_stream_fences_after_the_grace_not_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.set_tick_time(Duration::from_millis(1000)); // sessions up to 20 s
    settings.broker_session_grace = Duration::from_millis(300);
    let coordinator = TestCoordinator::start(settings).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 20_000).await;
    create_topics(&mut client, vec![assigned_topic("t", &[&[1, 2]])]).await;
    watcher
        .wait_for("topic t", |i| i.topics.contains_key("t"))
        .await;

    // A process killed with -9: its connection, and so its stream, closes.
    brokers[0].close_stream();
    let (_, elapsed) = timed(watcher.wait_for_broker_state(1, BrokerState::Fenced)).await;
    assert!(
        elapsed < Duration::from_secs(10),
        "fenced after {elapsed:?}, not within the grace"
    );
    let p = partition(&watcher.image, "t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 1));
    coordinator.stop().await;
}

#[tokio::test]
async fn a_new_stream_within_the_grace_keeps_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.set_tick_time(Duration::from_millis(1000));
    settings.broker_session_grace = Duration::from_millis(300);
    let coordinator = TestCoordinator::start(settings).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1], 20_000).await;

    // Reconnect: the old stream closes, the new one heartbeats at once.
    brokers[0].open_stream();
    assert!(!brokers[0].next_response().await.fenced);
    // Well past the grace, the broker is still active (a change made now
    // is the next update the watcher sees; a fencing would come first).
    tokio::time::sleep(Duration::from_millis(900)).await;
    create_topics(&mut client, vec![topic("after", 1, 1)]).await;
    let update = watcher.next().await;
    assert!(
        watcher.image.topics.contains_key("after"),
        "unexpected update {update:?}"
    );
    assert_eq!(watcher.image.brokers[&1].state, BrokerState::Active as i32);
    coordinator.stop().await;
}

#[tokio::test]
async fn a_new_incarnation_fences_the_old_epoch_which_becomes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 2000).await;
    create_topics(
        &mut client,
        vec![
            assigned_topic("t", &[&[1, 2]]),
            assigned_topic("solo", &[&[1]]),
        ],
    )
    .await;
    watcher
        .wait_for("topics", |i| {
            i.topics.contains_key("t") && i.topics.contains_key("solo")
        })
        .await;
    let old_epoch = brokers[0].epoch;

    // Broker 1 restarts (kill -9 and start): a new incarnation registers
    // before the old session ended.
    let restarted = TestBroker::register(&coordinator, 1, "restarted", 2000).await;
    assert!(restarted.epoch > old_epoch);
    let image = watcher
        .wait_for("the new registration", |i| {
            i.brokers[&1].broker_epoch == restarted.epoch
        })
        .await
        .clone();
    assert_eq!(image.brokers[&1].state, BrokerState::Fenced as i32);
    let p0 = partition(&image, "t", 0);
    assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
    assert_eq!(partition(&image, "solo", 0).leader, NO_ID);

    // The old incarnation's heartbeats and requests are refused.
    let mut response = brokers[0].next_response().await;
    while response.error_code == 0 {
        response = brokers[0].next_response().await;
    }
    assert_eq!(code(response.error_code), ErrorCode::StaleBrokerEpoch);
    let response = brokers[0].alter_partition(&p0, &[2]).await;
    assert_eq!(code(response.error_code), ErrorCode::StaleBrokerEpoch);
    let response = client
        .controlled_shutdown(ControlledShutdownRequest {
            broker_id: 1,
            broker_epoch: old_epoch,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(response.error_code), ErrorCode::StaleBrokerEpoch);
    brokers[0].close_stream();

    // The new one catches up and leads the partition only it holds.
    let mut restarted = restarted;
    restarted.report_version(restarted.epoch);
    restarted.open_stream();
    let image = watcher
        .wait_for("solo-0 led by the new incarnation", |i| {
            i.partition("solo", 0).is_some_and(|p| p.leader == 1)
        })
        .await;
    assert_eq!(partition(image, "solo", 0).leader_epoch, 2);
    coordinator.stop().await;
}

#[tokio::test]
async fn unclean_election_only_where_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 2000).await;
    let mut unclean = assigned_topic("unclean", &[&[1, 2]]);
    unclean
        .configs
        .insert("unclean.leader.election.enable".into(), "true".into());
    create_topics(
        &mut client,
        vec![assigned_topic("clean", &[&[1, 2]]), unclean],
    )
    .await;
    let image = watcher
        .wait_for("both topics", |i| {
            i.topics.contains_key("clean") && i.topics.contains_key("unclean")
        })
        .await
        .clone();
    // The leader drops broker 2 from both ISRs (it fell behind).
    for name in ["clean", "unclean"] {
        let response = brokers[0]
            .alter_partition(&partition(&image, name, 0), &[1])
            .await;
        assert_eq!(response.error_code, 0, "{}", response.error_message);
    }

    brokers[0].close_stream();
    watcher.wait_for_broker_state(1, BrokerState::Fenced).await;
    let clean = partition(&watcher.image, "clean", 0);
    assert_eq!((clean.leader, clean.isr.clone()), (NO_ID, vec![1]));
    let unclean = partition(&watcher.image, "unclean", 0);
    assert_eq!(
        (unclean.leader, unclean.isr.clone(), unclean.leader_epoch),
        (2, vec![2], 1)
    );
    drop(brokers);
    coordinator.stop().await;
}

#[tokio::test]
async fn alter_partition_is_compare_and_set_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2, 3], 2000).await;
    create_topics(&mut client, vec![assigned_topic("t", &[&[1, 2, 3]])]).await;
    let before = partition(
        watcher
            .wait_for("topic t", |i| i.topics.contains_key("t"))
            .await,
        "t",
        0,
    );

    let response = brokers[0].alter_partition(&before, &[1, 2]).await;
    assert_eq!(response.error_code, 0, "{}", response.error_message);
    let after = response.partition.unwrap();
    assert_eq!(
        (after.isr.clone(), after.partition_epoch, after.leader_epoch),
        (vec![1, 2], 1, 0)
    );

    // The same request again carries a stale partition epoch.
    let response = brokers[0].alter_partition(&before, &[1]).await;
    assert_eq!(code(response.error_code), ErrorCode::InvalidUpdateVersion);
    assert_eq!(
        response.partition.unwrap(),
        after,
        "the answer holds the current state"
    );
    // A wrong leader epoch, a follower, a leader without itself in the ISR.
    let mut wrong_epoch = after.clone();
    wrong_epoch.leader_epoch = 7;
    assert_eq!(
        code(
            brokers[0]
                .alter_partition(&wrong_epoch, &[1])
                .await
                .error_code
        ),
        ErrorCode::FencedLeaderEpoch
    );
    assert_eq!(
        code(brokers[1].alter_partition(&after, &[2]).await.error_code),
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(
        code(brokers[0].alter_partition(&after, &[2]).await.error_code),
        ErrorCode::InvalidRequest
    );

    // Broker 3 is fenced: it may not rejoin the ISR.
    brokers[2].close_stream();
    watcher.wait_for_broker_state(3, BrokerState::Fenced).await;
    let response = brokers[0].alter_partition(&after, &[1, 2, 3]).await;
    assert_eq!(code(response.error_code), ErrorCode::IneligibleReplica);
    // Once back, it may.
    brokers[2].open_stream();
    watcher.wait_for_broker_state(3, BrokerState::Active).await;
    let response = brokers[0].alter_partition(&after, &[1, 2, 3]).await;
    assert_eq!(response.error_code, 0, "{}", response.error_message);
    let image = watcher
        .wait_for("ISR 1,2,3", |i| {
            i.partition("t", 0).is_some_and(|p| p.isr.len() == 3)
        })
        .await;
    assert_eq!(partition(image, "t", 0).partition_epoch, 2);
    coordinator.stop().await;
}

#[tokio::test]
async fn controlled_shutdown_moves_leaderships_first() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2, 3], 2000).await;
    create_topics(
        &mut client,
        vec![
            assigned_topic("t", &[&[1, 2, 3]]),
            assigned_topic("solo", &[&[1]]),
            assigned_topic("follower", &[&[3, 1]]),
        ],
    )
    .await;
    watcher.wait_for("topics", |i| i.topics.len() == 3).await;

    let response = client
        .controlled_shutdown(ControlledShutdownRequest {
            broker_id: 1,
            broker_epoch: brokers[0].epoch,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.error_code, 0, "{}", response.error_message);
    let remaining: Vec<(String, i32)> = response
        .remaining_leaderships
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    assert_eq!(remaining, [("solo".to_string(), 0)]);

    // Durable and published before the answer: the watcher sees it next.
    let image = watcher
        .wait_for("broker 1 shutting down", |i| {
            i.brokers[&1].state == BrokerState::ShuttingDown as i32
        })
        .await
        .clone();
    let p0 = partition(&image, "t", 0);
    assert_eq!(
        (p0.leader, p0.isr.clone(), p0.leader_epoch),
        (2, vec![2, 3], 1)
    );
    let p2 = partition(&image, "follower", 0);
    assert_eq!((p2.leader, p2.isr.clone()), (3, vec![3]));
    assert_eq!(partition(&image, "solo", 0).leader, 1);

    // A shutting-down broker is not let back into an ISR.
    let response = brokers[1].alter_partition(&p0, &[2, 3, 1]).await;
    assert_eq!(code(response.error_code), ErrorCode::IneligibleReplica);

    // Heartbeats do not make it active again; when it stops, it is fenced.
    let response = brokers[0].next_response().await;
    assert_eq!(response.error_code, 0);
    brokers[0].close_stream();
    watcher.wait_for_broker_state(1, BrokerState::Fenced).await;
    let p1 = partition(&watcher.image, "solo", 0);
    assert_eq!((p1.leader, p1.isr.clone()), (NO_ID, vec![1]));
    coordinator.stop().await;
}

#[tokio::test]
async fn preferred_leaders_are_restored_when_rebalancing_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.auto_leader_rebalance_enable = true;
    settings.leader_imbalance_check_interval = Duration::from_millis(200);
    let coordinator = TestCoordinator::start(settings).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let mut brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 2000).await;
    create_topics(&mut client, vec![assigned_topic("t", &[&[1, 2]])]).await;
    watcher
        .wait_for("topic t", |i| i.topics.contains_key("t"))
        .await;

    brokers[0].close_stream();
    watcher.wait_for_broker_state(1, BrokerState::Fenced).await;
    assert_eq!(partition(&watcher.image, "t", 0).leader, 2);
    brokers[0].open_stream();
    watcher.wait_for_broker_state(1, BrokerState::Active).await;
    // Not in the ISR yet: leadership stays. The leader adds it back.
    let p = partition(&watcher.image, "t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    let response = brokers[1].alter_partition(&p, &[2, 1]).await;
    assert_eq!(response.error_code, 0, "{}", response.error_message);

    let image = watcher
        .wait_for("leadership back on 1", |i| {
            i.partition("t", 0).is_some_and(|p| p.leader == 1)
        })
        .await;
    let p = partition(image, "t", 0);
    assert_eq!((p.leader_epoch, p.partition_epoch), (2, 3));
    coordinator.stop().await;
}

#[tokio::test]
async fn heartbeats_for_unknown_brokers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(HeartbeatRequest {
        broker_id: 42,
        broker_epoch: 1,
        metadata_version: 0,
    })
    .await
    .unwrap();
    let mut responses = client
        .broker_session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert_eq!(code(response.error_code), ErrorCode::BrokerIdNotRegistered);
    assert!(response.fenced);
    drop(tx);
    coordinator.stop().await;
}
