//! The admin client against the fake cluster, through brokers and through
//! the coordinator: the same calls must give the same answers.

use client::{Admin, AdminConfig, BrokerStatus, ClientError, ErrorCode, NewTopic};
use fake_cluster::FakeCluster;

/// Both ways of reaching the cluster.
fn admins(cluster: &FakeCluster) -> Vec<(&'static str, Admin)> {
    vec![
        (
            "brokers",
            Admin::new(AdminConfig::brokers(&cluster.bootstrap()).unwrap()),
        ),
        (
            "coordinator",
            Admin::new(AdminConfig::coordinator(&cluster.coordinator.to_string()).unwrap()),
        ),
    ]
}

#[tokio::test]
async fn create_list_describe_alter_delete() {
    let cluster = FakeCluster::start(3).await;
    for (via, admin) in admins(&cluster) {
        let name = format!("topic-{via}");
        let created = admin
            .create_topic(NewTopic::new(&name, 3, 2).with_config("retention.ms", "1000"))
            .await
            .unwrap();
        assert_eq!(
            (created.num_partitions, created.replication_factor),
            (3, 2),
            "{via}"
        );
        assert_eq!(created.topic_id.len(), 16);

        assert!(admin.list_topics().await.unwrap().contains(&name), "{via}");

        let described = admin
            .describe_topics(std::slice::from_ref(&name))
            .await
            .unwrap();
        assert!(described.errors.is_empty(), "{via}: {:?}", described.errors);
        let topic = &described.topics[0];
        assert_eq!(topic.name, name);
        assert_eq!(topic.replication_factor(), 2);
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        let layout: Vec<_> = topic
            .partitions
            .iter()
            .map(|p| (p.partition, p.leader, p.replicas.clone(), p.isr.clone()))
            .collect();
        assert_eq!(
            layout,
            vec![
                (0, Some(1), vec![1, 2], vec![1, 2]),
                (1, Some(2), vec![2, 3], vec![2, 3]),
                (2, Some(3), vec![3, 1], vec![3, 1]),
            ],
            "{via}"
        );
        assert_eq!(described.live_broker_ids(), vec![1, 2, 3], "{via}");

        let altered = admin
            .create_partitions(&[(name.clone(), 5)], false)
            .await
            .unwrap();
        assert!(altered[0].1.is_ok(), "{via}: {:?}", altered[0].1);
        let described = admin
            .describe_topics(std::slice::from_ref(&name))
            .await
            .unwrap();
        assert_eq!(described.topics[0].partitions.len(), 5);
        let shrink = admin
            .create_partitions(&[(name.clone(), 2)], false)
            .await
            .unwrap();
        let err = shrink[0].1.as_ref().unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidPartitions), "{via}");

        let deleted = admin
            .delete_topics(std::slice::from_ref(&name))
            .await
            .unwrap();
        assert!(deleted[0].1.is_ok(), "{via}");
        assert!(!admin.list_topics().await.unwrap().contains(&name), "{via}");
    }
}

#[tokio::test]
async fn errors_carry_the_kafka_code_and_the_servers_message() {
    let cluster = FakeCluster::start(1).await;
    for (via, admin) in admins(&cluster) {
        let err = admin
            .create_topic(NewTopic::new("big", 1, 3))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Replication factor: 3 larger than available brokers: 1.",
            "{via}"
        );
        assert_eq!(err.code(), Some(ErrorCode::InvalidReplicationFactor));
        assert!(!err.is_retriable());

        let name = format!("dup-{via}");
        admin
            .create_topic(NewTopic::new(&name, 1, 1))
            .await
            .unwrap();
        let err = admin
            .create_topic(NewTopic::new(&name, 1, 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TopicAlreadyExists), "{via}");
        assert_eq!(err.to_string(), format!("Topic '{name}' already exists."));

        let err = admin
            .create_topic(NewTopic::new("bad name!", 1, 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidTopicException), "{via}");

        let described = admin
            .describe_topics(&["missing".to_owned()])
            .await
            .unwrap();
        assert!(described.topics.is_empty());
        assert_eq!(described.errors[0].0, "missing");
        assert_eq!(
            described.errors[0].1.code(),
            Some(ErrorCode::UnknownTopicOrPartition),
            "{via}"
        );

        let deleted = admin.delete_topics(&["missing".to_owned()]).await.unwrap();
        assert_eq!(
            deleted[0].1.as_ref().unwrap_err().code(),
            Some(ErrorCode::UnknownTopicOrPartition)
        );
    }
}

#[tokio::test]
async fn validate_only_creates_nothing() {
    let cluster = FakeCluster::start(1).await;
    for (via, admin) in admins(&cluster) {
        let results = admin
            .create_topics(&[NewTopic::new("dry", 2, 1)], true)
            .await
            .unwrap();
        assert!(results[0].1.is_ok(), "{via}");
        assert!(admin.list_topics().await.unwrap().is_empty(), "{via}");
    }
}

#[tokio::test]
async fn describe_cluster_lists_brokers_and_their_state() {
    let cluster = FakeCluster::start(2).await;
    cluster.set_broker_down(2, true);
    let coordinator =
        Admin::new(AdminConfig::coordinator(&cluster.coordinator.to_string()).unwrap());
    let description = coordinator.describe_cluster().await.unwrap();
    assert_eq!(description.cluster_id, "fake-cluster");
    let states: Vec<(i32, BrokerStatus)> = description
        .brokers
        .iter()
        .map(|b| (b.id, b.status))
        .collect();
    assert_eq!(
        states,
        vec![(1, BrokerStatus::Active), (2, BrokerStatus::Fenced)]
    );

    // Through a broker: its metadata, which holds only live brokers.
    let through_broker = Admin::new(AdminConfig::brokers(&cluster.broker_address(1)).unwrap());
    let description = through_broker.describe_cluster().await.unwrap();
    assert_eq!(
        description.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(
        description.brokers[0].endpoints[0].port.to_string(),
        cluster.broker_address(1).rsplit(':').next().unwrap()
    );
}

#[tokio::test]
async fn unreachable_servers_are_skipped_and_reported_when_none_answers() {
    let cluster = FakeCluster::start(2).await;
    cluster.set_broker_down(1, true);
    let dead = fake_cluster::dead_address().await;
    let servers = format!(
        "{dead},{},{}",
        cluster.broker_address(1),
        cluster.broker_address(2)
    );
    let admin = Admin::new(AdminConfig::brokers(&servers).unwrap());
    admin.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    assert_eq!(admin.list_topics().await.unwrap(), vec!["t"]);

    let admin = Admin::new(AdminConfig::coordinator(&dead).unwrap());
    let err = admin.list_topics().await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoServerAvailable { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("no server could be reached at {dead}: ")),
        "{err}"
    );
    assert!(err.is_retriable());
}
