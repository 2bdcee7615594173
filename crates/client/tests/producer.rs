//! The producer against the in-process fake cluster.

use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{ClientError, Compression, ErrorCode, Producer, ProducerConfig, ProducerRecord};
use fake_cluster::FakeCluster;

fn config(cluster: &FakeCluster) -> ProducerConfig {
    let mut config = ProducerConfig::new(&cluster.bootstrap()).unwrap();
    config.set("linger.ms", "0").unwrap();
    config.set("retry.backoff.ms", "20").unwrap();
    config
}

fn values(cluster: &FakeCluster, topic: &str, partition: i32) -> Vec<String> {
    cluster
        .values(topic, partition)
        .into_iter()
        .map(|(_, value)| String::from_utf8(value.to_vec()).unwrap())
        .collect()
}

async fn send_all(
    producer: &Producer,
    topic: &str,
    values: impl IntoIterator<Item = String>,
) -> Vec<client::DeliveryFuture> {
    let mut futures = Vec::new();
    for value in values {
        futures.push(
            producer
                .send(ProducerRecord::new(topic, value))
                .await
                .unwrap(),
        );
    }
    futures
}

#[tokio::test]
async fn records_are_delivered_in_order_with_their_offsets() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut config = config(&cluster);
    config.set("linger.ms", "5").unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..100).map(|i| format!("m{i}"))).await;
    for (i, future) in futures.into_iter().enumerate() {
        let metadata = future.await.unwrap();
        assert_eq!(
            (metadata.topic.as_str(), metadata.partition, metadata.offset),
            ("t", 0, i as i64)
        );
    }
    producer.flush().await.unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&cluster, "t", 0), expected);
    // Batching happened: far fewer requests than records.
    let requests = cluster.state().stats.produce_requests[&1];
    assert!(requests < 100, "{requests} requests for 100 records");
}

#[tokio::test]
async fn keyed_records_go_to_the_java_clients_partition() {
    let cluster = FakeCluster::start(3).await;
    cluster.create_topic("keyed", &[1, 2, 3]);
    let producer = Producer::new(config(&cluster)).unwrap();
    // murmur2("21") = -973932308; to_positive = 1173551340; % 3 = 0.
    // murmur2("foobar") = -790332482; to_positive = 1357151166; % 3 = 0.
    // murmur2("abc") = 479470107; % 3 = 0.
    // murmur2("12") = 126087238; % 3 = 1.
    for key in ["21", "foobar", "abc", "12"] {
        let metadata = producer
            .send(ProducerRecord::new("keyed", key).with_key(key))
            .await
            .unwrap()
            .await
            .unwrap();
        let expected =
            (client::partitioner::to_positive(client::partitioner::murmur2(key.as_bytes())) % 3)
                as i32;
        assert_eq!(metadata.partition, expected, "key {key}");
    }
    assert_eq!(values(&cluster, "keyed", 0), vec!["21", "foobar", "abc"]);
    assert_eq!(values(&cluster, "keyed", 1), vec!["12"]);
}

#[tokio::test]
async fn an_unknown_topic_is_auto_created_through_metadata() {
    let cluster = FakeCluster::start(1).await;
    let producer = Producer::new(config(&cluster)).unwrap();
    let metadata = producer
        .send(ProducerRecord::new("fresh", "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(metadata.offset, 0);
    assert_eq!(values(&cluster, "fresh", 0), vec!["v"]);
}

#[tokio::test]
async fn a_leader_move_is_followed_after_not_leader_or_follower() {
    let cluster = FakeCluster::start(2).await;
    cluster.create_topic("t", &[1]);
    let producer = Producer::new(config(&cluster)).unwrap();
    for future in send_all(&producer, "t", (0..5).map(|i| format!("a{i}"))).await {
        future.await.unwrap();
    }
    cluster.move_leader("t", 0, 2);
    let futures = send_all(&producer, "t", (0..5).map(|i| format!("b{i}"))).await;
    let mut offsets = Vec::new();
    for future in futures {
        offsets.push(future.await.unwrap().offset);
    }
    assert_eq!(offsets, vec![5, 6, 7, 8, 9]);
    {
        let state = cluster.state();
        assert!(state.stats.produce_errors[&ErrorCode::NotLeaderOrFollower] >= 1);
        assert!(state.stats.produce_requests[&2] >= 1);
    }
    drop(producer);
    let expected: Vec<String> = (0..5)
        .map(|i| format!("a{i}"))
        .chain((0..5).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(values(&cluster, "t", 0), expected);
}

#[tokio::test]
async fn not_enough_replicas_is_retried_until_it_clears() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.inject_produce_error("t", 0, ErrorCode::NotEnoughReplicas, "", 3);
    let producer = Producer::new(config(&cluster)).unwrap();
    let metadata = producer
        .send(ProducerRecord::new("t", "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(metadata.offset, 0);
    assert_eq!(
        cluster.state().stats.produce_errors[&ErrorCode::NotEnoughReplicas],
        3
    );
    producer.flush().await.unwrap();
}

/// Waits (bounded) until the fake has refused `count` produce requests.
async fn await_refusals(cluster: &FakeCluster, code: ErrorCode, count: usize) {
    let started = Instant::now();
    while cluster
        .state()
        .stats
        .produce_errors
        .get(&code)
        .copied()
        .unwrap_or(0)
        < count
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fewer than {count} refusals"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn batches_refused_while_in_flight_are_resent_first_in_order() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.state().produce_delay = Duration::from_millis(10);
    // Every record its own batch, five requests in flight, all refused
    // while the partition is short of replicas.
    cluster
        .state()
        .refusing
        .insert(("t".into(), 0), ErrorCode::NotEnoughReplicas);
    let mut config = config(&cluster);
    config.set("batch.size", "1").unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..30).map(|i| format!("m{i}"))).await;
    await_refusals(&cluster, ErrorCode::NotEnoughReplicas, 12).await;
    cluster.state().refusing.clear();
    for (i, future) in futures.into_iter().enumerate() {
        assert_eq!(future.await.unwrap().offset, i as i64);
    }
    let expected: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&cluster, "t", 0), expected);
}

#[tokio::test]
async fn one_request_in_flight_keeps_order_when_only_some_batches_fail() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    // Alternate failures: with several requests in flight a later batch
    // could land before an earlier one that failed (as in Kafka without
    // idempotence); max.in.flight.requests.per.connection=1 prevents it.
    for _ in 0..5 {
        cluster.inject_produce_error("t", 0, ErrorCode::NotEnoughReplicas, "", 1);
    }
    let mut config = config(&cluster);
    config.set("batch.size", "1").unwrap();
    config
        .set("max.in.flight.requests.per.connection", "1")
        .unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..10).map(|i| format!("m{i}"))).await;
    for (i, future) in futures.into_iter().enumerate() {
        assert_eq!(future.await.unwrap().offset, i as i64);
    }
    assert_eq!(cluster.state().stats.max_outstanding_produce, 1);
}

#[tokio::test]
async fn errors_past_delivery_timeout_fail_the_records_and_flush_reports_them() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.inject_produce_error("t", 0, ErrorCode::NotEnoughReplicas, "", 100_000);
    let mut config = config(&cluster);
    config.set("request.timeout.ms", "500").unwrap();
    config.set("delivery.timeout.ms", "800").unwrap();
    config.set("retry.backoff.ms", "50").unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..3).map(|i| i.to_string())).await;
    let started = Instant::now();
    let err = producer.flush().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ClientError::DeliveryFailed { failures } = &err else {
        panic!("expected DeliveryFailed, got {err}");
    };
    assert_eq!(failures.iter().map(|f| f.records).sum::<usize>(), 3);
    assert!(
        err.to_string()
            .starts_with("3 record(s) could not be delivered: 3 x "),
        "{err}"
    );
    for future in futures {
        let err = future.await.unwrap_err();
        assert!(
            matches!(err, ClientError::DeliveryTimeout { .. })
                || err.code() == Some(ErrorCode::NotEnoughReplicas),
            "{err}"
        );
    }
    // Reported once: the next flush is clean.
    producer.flush().await.unwrap();
    assert!(cluster.values("t", 0).is_empty());
}

#[tokio::test]
async fn non_retriable_errors_fail_at_once_with_the_brokers_message() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.inject_produce_error(
        "t",
        0,
        ErrorCode::InvalidRecord,
        "record 0 has a null key in a compacted topic",
        1,
    );
    let producer = Producer::new(config(&cluster)).unwrap();
    let err = producer
        .send(ProducerRecord::new("t", "v"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t-0: INVALID_RECORD: record 0 has a null key in a compacted topic"
    );
    assert_eq!(err.code(), Some(ErrorCode::InvalidRecord));
    assert_eq!(cluster.state().stats.produce_requests[&1], 1);
    let err = producer.flush().await.unwrap_err();
    assert!(err.to_string().contains("INVALID_RECORD"), "{err}");
}

#[tokio::test]
async fn message_too_large_splits_batches_and_fails_lone_oversized_records() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.state().message_max_bytes = 400;
    let mut config = config(&cluster);
    config.set("batch.size", "100000").unwrap();
    config.set("linger.ms", "50").unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..20).map(|i| format!("{i:0>50}"))).await;
    for (i, future) in futures.into_iter().enumerate() {
        assert_eq!(future.await.unwrap().offset, i as i64);
    }
    let expected: Vec<String> = (0..20).map(|i| format!("{i:0>50}")).collect();
    assert_eq!(values(&cluster, "t", 0), expected);
    assert!(cluster.state().stats.produce_errors[&ErrorCode::MessageTooLarge] >= 1);

    let err = producer
        .send(ProducerRecord::new("t", vec![b'x'; 500]))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t-0: MESSAGE_TOO_LARGE: The request included a message larger than the max message size the server will accept."
    );
}

#[tokio::test]
async fn records_larger_than_max_request_size_are_refused_at_send() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut config = config(&cluster);
    config.set("max.request.size", "1000").unwrap();
    let producer = Producer::new(config).unwrap();
    let err = producer
        .send(ProducerRecord::new("t", vec![0u8; 2000]))
        .await
        .unwrap_err();
    let ClientError::RecordTooLarge {
        size,
        max: 1000,
        config: "max.request.size",
    } = err
    else {
        panic!("unexpected {err}");
    };
    assert!(err.to_string().starts_with(&format!(
        "The message is {size} bytes when serialized which is larger than 1000"
    )));
}

#[tokio::test]
async fn produce_requests_are_pipelined_up_to_max_in_flight() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.state().produce_delay = Duration::from_millis(50);
    let mut config = config(&cluster);
    config.set("batch.size", "1").unwrap();
    config
        .set("max.in.flight.requests.per.connection", "5")
        .unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..20).map(|i| format!("m{i}"))).await;
    for (i, future) in futures.into_iter().enumerate() {
        assert_eq!(future.await.unwrap().offset, i as i64);
    }
    let outstanding = cluster.state().stats.max_outstanding_produce;
    assert!(
        (3..=5).contains(&outstanding),
        "at most {outstanding} requests were in flight"
    );
}

#[tokio::test]
async fn answers_slower_than_request_timeout_are_retried() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.state().produce_delay = Duration::from_millis(1500);
    let mut config = config(&cluster);
    config.set("request.timeout.ms", "300").unwrap();
    let producer = Producer::new(config).unwrap();
    let delivery = producer
        .send(ProducerRecord::new("t", "slow"))
        .await
        .unwrap();
    // Speed the broker up once the first request arrived.
    let started = Instant::now();
    while cluster.state().stats.produce_requests.is_empty()
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.state().produce_delay = Duration::ZERO;
    let metadata = delivery.await.unwrap();
    assert!(metadata.offset >= 0);
    // The slow first attempt may still land: without idempotence, a
    // timed-out request can be a duplicate. The record is there at least once.
    assert!(values(&cluster, "t", 0).contains(&"slow".to_owned()));
}

#[tokio::test]
async fn dead_bootstrap_entries_are_skipped() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let dead = fake_cluster::dead_address().await;
    let mut config = config(&cluster);
    config
        .set(
            "bootstrap.servers",
            &format!("{dead},{}", cluster.bootstrap()),
        )
        .unwrap();
    let producer = Producer::new(config).unwrap();
    let metadata = producer
        .send(ProducerRecord::new("t", "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(metadata.offset, 0);
}

#[tokio::test]
async fn no_reachable_broker_times_out_in_max_block_ms_naming_the_cause() {
    let dead = fake_cluster::dead_address().await;
    let mut config = ProducerConfig::new(&dead).unwrap();
    config.set("max.block.ms", "500").unwrap();
    let producer = Producer::new(config).unwrap();
    let started = Instant::now();
    let err = producer
        .send(ProducerRecord::new("t", "v"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(
        text.starts_with("Topic t not present in metadata after 500 ms."),
        "{text}"
    );
    assert!(text.contains(&dead), "{text}");
}

#[tokio::test]
async fn acks_zero_completes_without_offsets() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut config = config(&cluster);
    config.set("acks", "0").unwrap();
    let producer = Producer::new(config).unwrap();
    let metadata = producer
        .send(ProducerRecord::new("t", "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(metadata.offset, -1);
    let started = Instant::now();
    while cluster.values("t", 0).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the record never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn every_codec_reaches_the_broker_as_a_valid_batch() {
    let cluster = FakeCluster::start(1).await;
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = format!("t-{}", compression.name());
        cluster.create_topic(&topic, &[1]);
        let mut config = config(&cluster);
        config.compression_type = compression;
        config.set("linger.ms", "20").unwrap();
        let producer = Producer::new(config).unwrap();
        let futures = send_all(
            &producer,
            &topic,
            (0..50).map(|i| format!("record number {i}")),
        )
        .await;
        for future in futures {
            future.await.unwrap();
        }
        let state = cluster.state();
        let (_, _, first) = &state.topics[&topic].partitions[0].batches[0];
        let header = records::validate_batch(first, usize::MAX).unwrap();
        assert_eq!(header.compression(), Some(compression));
        drop(state);
        let expected: Vec<String> = (0..50).map(|i| format!("record number {i}")).collect();
        assert_eq!(values(&cluster, &topic, 0), expected);
    }
}

#[tokio::test]
async fn an_explicit_partition_outside_the_topic_is_refused() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let producer = Producer::new(config(&cluster)).unwrap();
    let err = producer
        .send(ProducerRecord::new("t", "v").with_partition(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid partition given with record: 1 is not in the range [0...1)."
    );
}

#[tokio::test]
async fn close_delivers_what_is_pending_and_refuses_new_records() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut config = config(&cluster);
    config.set("linger.ms", "60000").unwrap();
    config.set("delivery.timeout.ms", "120000").unwrap();
    let producer = Producer::new(config).unwrap();
    let futures = send_all(&producer, "t", (0..3).map(|i| i.to_string())).await;
    // linger.ms is a minute: only close (flush) sends them now.
    producer.close().await.unwrap();
    for future in futures {
        future.await.unwrap();
    }
    assert_eq!(values(&cluster, "t", 0), vec!["0", "1", "2"]);
    let err = producer
        .send(ProducerRecord::new("t", "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ProducerClosed));
}

#[tokio::test]
async fn a_full_buffer_blocks_send_for_max_block_ms() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.state().produce_delay = Duration::from_secs(3);
    let mut config = config(&cluster);
    config.set("buffer.memory", "1000").unwrap();
    config.set("max.block.ms", "200").unwrap();
    let producer = Producer::new(config).unwrap();
    let mut futures = Vec::new();
    let err = loop {
        match producer
            .send(ProducerRecord::new("t", Bytes::from(vec![0u8; 100])))
            .await
        {
            Ok(future) => futures.push(future),
            Err(err) => break err,
        }
        assert!(futures.len() < 20, "the buffer never filled");
    };
    assert_eq!(
        err.to_string(),
        "Failed to allocate memory within the configured max blocking time 200 ms."
    );
    assert!(!futures.is_empty());
}

#[tokio::test]
async fn headers_keys_and_timestamps_reach_the_broker() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let producer = Producer::new(config(&cluster)).unwrap();
    let record = ProducerRecord::new("t", "v")
        .with_key("k")
        .with_timestamp(1_234)
        .with_header("h", Some("hv"))
        .with_header("null", None::<Bytes>);
    let metadata = producer.send(record).await.unwrap().await.unwrap();
    assert_eq!(metadata.timestamp, 1_234);
    let state = cluster.state();
    let (_, _, batch) = &state.topics["t"].partitions[0].batches[0];
    let (_, records) = records::decode_batch(batch, client::codec::decompress).unwrap();
    assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(records[0].timestamp, 1_234);
    assert_eq!(records[0].headers.len(), 2);
    assert_eq!(records[0].headers[0].key, "h");
    assert_eq!(records[0].headers[0].value.as_deref(), Some(&b"hv"[..]));
    assert_eq!(records[0].headers[1].value, None);
}
