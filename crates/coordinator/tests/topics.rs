//! Topic administration over gRPC: create, delete, add partitions, list,
//! describe, with every validation error, and nothing changed by a refusal.

mod common;

use common::*;
use protocol::ErrorCode;
use protocol::coordinator::{
    CreatePartitionsRequest, CreatePartitionsTopic, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeTopicsRequest, ListTopicsRequest, ReplicaAssignment,
};

async fn create_one(
    client: &mut Client,
    topic: protocol::coordinator::CreatableTopic,
) -> (ErrorCode, String) {
    let response = client
        .create_topics(CreateTopicsRequest {
            topics: vec![topic],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.topics[0];
    (code(result.error_code), result.error_message.clone())
}

async fn version(client: &mut Client) -> i64 {
    client
        .describe_cluster(DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner()
        .metadata_version
}

#[tokio::test]
async fn create_list_describe_alter_delete() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1, 2, 3], 2000).await;

    let mut configured = topic("my-replicated-topic", 3, 3);
    configured
        .configs
        .insert("retention.ms".into(), "1000".into());
    let response = client
        .create_topics(CreateTopicsRequest {
            topics: vec![topic("test", 1, 1), configured],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    for result in &response.topics {
        assert_eq!(result.error_code, 0, "{}", result.error_message);
        assert_eq!(result.topic_id.len(), 16);
    }
    assert_eq!(
        (
            response.topics[1].num_partitions,
            response.topics[1].replication_factor
        ),
        (3, 3)
    );

    let names = client
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["my-replicated-topic", "test"]);

    let described = client
        .describe_topics(DescribeTopicsRequest {
            names: vec!["my-replicated-topic".into(), "nope".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.brokers.len(), 3);
    let topic = &described.topics[0];
    assert_eq!(
        topic.topic.as_ref().unwrap().configs["retention.ms"],
        "1000"
    );
    assert_eq!(topic.partitions.len(), 3);
    let mut leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
    leaders.sort_unstable();
    assert_eq!(leaders, [1, 2, 3], "leaders spread evenly");
    for p in &topic.partitions {
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.isr, p.replicas);
    }
    assert_eq!(
        code(described.topics[1].error_code),
        ErrorCode::UnknownTopicOrPartition
    );

    // --alter --partitions 6
    let response = client
        .create_partitions(CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "my-replicated-topic".into(),
                count: 6,
                assignments: vec![],
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.topics[0].error_code, 0,
        "{}",
        response.topics[0].error_message
    );
    let described = client
        .describe_topics(DescribeTopicsRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.topics.len(), 2);
    assert_eq!(described.topics[0].partitions.len(), 6);

    let response = client
        .delete_topics(DeleteTopicsRequest {
            names: vec!["test".into(), "missing".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(
        code(response.topics[1].error_code),
        ErrorCode::UnknownTopicOrPartition
    );
    let names = client
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["my-replicated-topic"]);
    coordinator.stop().await;
}

#[tokio::test]
async fn every_refusal_has_its_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1], 2000).await;
    create_topics(&mut client, vec![topic("taken", 2, 1), topic("a.b", 1, 1)]).await;
    let before = version(&mut client).await;

    assert_eq!(
        create_one(&mut client, topic("t", 1, 3)).await,
        (
            ErrorCode::InvalidReplicationFactor,
            "Replication factor: 3 larger than available brokers: 1.".to_string()
        )
    );
    let cases = [
        (topic("t", 1, 0), ErrorCode::InvalidReplicationFactor),
        (topic("t", 0, 1), ErrorCode::InvalidPartitions),
        (topic("t", -1, 1), ErrorCode::InvalidPartitions),
        (topic("taken", 1, 1), ErrorCode::TopicAlreadyExists),
        (topic("", 1, 1), ErrorCode::InvalidTopicException),
        (topic("..", 1, 1), ErrorCode::InvalidTopicException),
        (topic("has space", 1, 1), ErrorCode::InvalidTopicException),
        (
            topic(&"x".repeat(250), 1, 1),
            ErrorCode::InvalidTopicException,
        ),
        (topic("a_b", 1, 1), ErrorCode::InvalidTopicException),
        (
            assigned_topic("t", &[&[1, 1]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            assigned_topic("t", &[&[7]]),
            ErrorCode::InvalidReplicaAssignment,
        ),
    ];
    for (topic, expected) in cases {
        let name = topic.name.clone();
        let (got, message) = create_one(&mut client, topic).await;
        assert_eq!(got, expected, "{name:?}: {message}");
        assert!(!message.is_empty());
    }
    let mut bad_config = topic("t", 1, 1);
    bad_config
        .configs
        .insert("retention.ms".into(), "bogus".into());
    let (got, message) = create_one(&mut client, bad_config).await;
    assert_eq!(
        (got, message.as_str()),
        (
            ErrorCode::InvalidConfig,
            "Invalid value bogus for configuration retention.ms"
        )
    );

    // Alter: only increases, for existing topics, with valid assignments.
    let alter =
        |name: &str, count: i32, assignments: Vec<ReplicaAssignment>| CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: name.into(),
                count,
                assignments,
            }],
            validate_only: false,
        };
    for (request, expected) in [
        (alter("taken", 2, vec![]), ErrorCode::InvalidPartitions),
        (alter("taken", 1, vec![]), ErrorCode::InvalidPartitions),
        (
            alter("missing", 3, vec![]),
            ErrorCode::UnknownTopicOrPartition,
        ),
        (
            alter(
                "taken",
                4,
                vec![ReplicaAssignment {
                    partition: 2,
                    replicas: vec![1],
                }],
            ),
            ErrorCode::InvalidReplicaAssignment,
        ),
    ] {
        let response = client
            .create_partitions(request)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            code(response.topics[0].error_code),
            expected,
            "{}",
            response.topics[0].error_message
        );
    }

    // Validate-only answers as if, and creates nothing.
    let response = client
        .create_topics(CreateTopicsRequest {
            topics: vec![topic("dry", 4, 1)],
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            response.topics[0].error_code,
            response.topics[0].num_partitions
        ),
        (0, 4)
    );

    // Malformed requests: InvalidArgument.
    let status = client
        .create_topics(CreateTopicsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("no topic"),
        "{}",
        status.message()
    );
    let status = client
        .delete_topics(DeleteTopicsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .create_partitions(CreatePartitionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    assert_eq!(version(&mut client).await, before, "nothing changed");
    let names = client
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["a.b", "taken"]);
    coordinator.stop().await;
}

#[tokio::test]
async fn one_request_is_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = TestCoordinator::start(test_settings(dir.path())).await;
    let mut client = coordinator.client().await;
    let mut watcher = Watcher::start(&mut client, -1).await;
    let _brokers = start_brokers(&coordinator, &mut watcher, &[1, 2], 2000).await;
    let before = watcher.updates.len();
    let topics = (0..50).map(|i| topic(&format!("t{i}"), 4, 2)).collect();
    create_topics(&mut client, topics).await;
    let update = watcher.next().await;
    // 50 topics and 200 partitions in one update, one log batch.
    assert_eq!(update.records.len(), 250);
    assert_eq!(watcher.updates.len(), before + 1);
    assert_eq!(watcher.image.topics.len(), 50);
    coordinator.stop().await;
}
