//! The consumer against the in-process fake cluster.

use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{
    ClientError, Compression, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode, TopicPartition,
};
use fake_cluster::{FakeCluster, batch_of};

fn config(cluster: &FakeCluster, reset: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&cluster.bootstrap()).unwrap();
    config.set("auto.offset.reset", reset).unwrap();
    config.set("retry.backoff.ms", "20").unwrap();
    config.set("fetch.max.wait.ms", "200").unwrap();
    config
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Polls until `count` records came (or 10 seconds passed).
async fn poll_n(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {} of {count} records came",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    out
}

fn values(records: &[ConsumerRecord]) -> Vec<(i64, String)> {
    records
        .iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn poll_reads_from_the_beginning_with_earliest() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["a", "b"]));
    cluster.append("t", 0, &batch_of(&["c"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    let records = poll_n(&mut consumer, 3).await;
    assert_eq!(
        values(&records),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    assert_eq!(&*records[0].topic, "t");
    assert_eq!(records[0].partition, 0);
    assert_eq!(records[1].timestamp, 1001);
    assert_eq!(consumer.position(&tp("t", 0)).await.unwrap(), 3);
    assert_eq!(consumer.high_watermark(&tp("t", 0)), Some(3));
}

#[tokio::test]
async fn latest_skips_what_is_there_and_sees_what_comes() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["old"]));
    let mut consumer = Consumer::new(config(&cluster, "latest")).unwrap();
    consumer.assign([tp("t", 0)]);
    assert_eq!(consumer.position(&tp("t", 0)).await.unwrap(), 1);
    assert!(
        consumer
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    cluster.append("t", 0, &batch_of(&["new"]));
    let records = poll_n(&mut consumer, 1).await;
    assert_eq!(values(&records), vec![(1, "new".into())]);
}

#[tokio::test]
async fn seek_moves_the_position() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["0", "1", "2", "3", "4", "5"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    let p0 = tp("t", 0);
    consumer.assign([p0.clone()]);
    consumer.seek(&p0, 4).unwrap();
    assert_eq!(
        values(&poll_n(&mut consumer, 2).await),
        vec![(4, "4".into()), (5, "5".into())]
    );
    consumer.seek_to_beginning(&[]).unwrap();
    assert_eq!(consumer.position(&p0).await.unwrap(), 0);
    assert_eq!(poll_n(&mut consumer, 6).await.len(), 6);
    consumer.seek_to_end(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.position(&p0).await.unwrap(), 6);
    let err = consumer.seek(&tp("other", 0), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No current assignment for partition other-0"
    );
}

#[tokio::test]
async fn max_poll_records_bounds_each_poll() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let values: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    cluster.append("t", 0, &batch_of(&refs));
    let mut config = config(&cluster, "earliest");
    config.set("max.poll.records", "10").unwrap();
    let mut consumer = Consumer::new(config).unwrap();
    consumer.assign([tp("t", 0)]);
    let mut sizes = Vec::new();
    let mut offsets = Vec::new();
    while offsets.len() < 25 {
        let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
        sizes.push(records.len());
        offsets.extend(records.iter().map(|r| r.offset));
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(offsets, (0..25).collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_record_arrives() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut config = config(&cluster, "earliest");
    config.set("fetch.max.wait.ms", "5000").unwrap();
    let mut consumer = Consumer::new(config).unwrap();
    consumer.assign([tp("t", 0)]);
    let started = Instant::now();
    let (records, ()) = tokio::join!(consumer.poll(Duration::from_secs(8)), async {
        while cluster.state().stats.fetch_requests.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.append("t", 0, &batch_of(&["ping"]));
    });
    assert_eq!(values(&records.unwrap()), vec![(0, "ping".into())]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_next_fetch_is_sent_while_the_application_works() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["a"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    assert_eq!(poll_n(&mut consumer, 1).await.len(), 1);
    assert_eq!(cluster.state().stats.fetch_requests[&1], 1);
    // No poll now: the next fetch goes out anyway, and long-polls.
    let started = Instant::now();
    while cluster.state().stats.fetch_requests[&1] < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no fetch ran ahead of the application"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.append("t", 0, &batch_of(&["b"]));
    let records = consumer.poll(Duration::from_millis(50)).await.unwrap();
    assert_eq!(values(&records), vec![(1, "b".into())]);
}

#[tokio::test]
async fn partitions_on_several_brokers_are_all_read() {
    let cluster = FakeCluster::start(2).await;
    cluster.create_topic("t", &[1, 2, 1]);
    for partition in 0..3 {
        cluster.append("t", partition, &batch_of(&[&format!("p{partition}")]));
    }
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    let partitions = consumer.partitions_for("t").await.unwrap();
    assert_eq!(
        partitions
            .iter()
            .map(|p| (p.partition, p.leader))
            .collect::<Vec<_>>(),
        vec![(0, Some(1)), (1, Some(2)), (2, Some(1))]
    );
    consumer.assign(partitions.iter().map(|p| tp("t", p.partition)));
    let mut got: Vec<String> = values(&poll_n(&mut consumer, 3).await)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    got.sort();
    assert_eq!(got, vec!["p0", "p1", "p2"]);
    let stats = &cluster.state().stats.fetch_requests;
    assert!(stats.contains_key(&1) && stats.contains_key(&2));
}

#[tokio::test]
async fn a_leader_move_is_followed_with_the_new_epoch() {
    let cluster = FakeCluster::start(2).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["before"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(0, "before".into())]
    );
    cluster.move_leader("t", 0, 2);
    cluster.append("t", 0, &batch_of(&["after"]));
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(1, "after".into())]
    );
    let state = cluster.state();
    assert!(state.stats.fetch_errors[&ErrorCode::NotLeaderOrFollower] >= 1);
    assert!(state.stats.fetch_requests[&2] >= 1);
    // Fetches carried the epoch the client believed current: 0, then 1.
    assert_eq!(state.stats.fetch_epochs.first(), Some(&0));
    assert_eq!(state.stats.fetch_epochs.last(), Some(&1));
}

#[tokio::test]
async fn fenced_leader_epoch_refreshes_metadata_and_goes_on() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["x"]));
    cluster.inject_fetch_error("t", 0, ErrorCode::FencedLeaderEpoch, 2);
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    let metadata_before = cluster.state().stats.metadata_requests;
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(0, "x".into())]
    );
    let state = cluster.state();
    assert_eq!(state.stats.fetch_errors[&ErrorCode::FencedLeaderEpoch], 2);
    assert!(state.stats.metadata_requests > metadata_before);
}

#[tokio::test]
async fn offset_out_of_range_resets_per_auto_offset_reset() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["0", "1", "2"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    consumer.seek(&tp("t", 0), 100).unwrap();
    assert_eq!(poll_n(&mut consumer, 3).await[0].offset, 0);

    // Retention removed offsets 0-1 while a consumer was at 0: it resets.
    cluster.append("t", 0, &batch_of(&["3"]));
    cluster.truncate_start("t", 0, 3);
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    consumer.seek(&tp("t", 0), 0).unwrap();
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(3, "3".into())]
    );

    let mut consumer = Consumer::new(config(&cluster, "none")).unwrap();
    consumer.assign([tp("t", 0)]);
    consumer.seek(&tp("t", 0), 100).unwrap();
    let started = Instant::now();
    let err = loop {
        match consumer.poll(Duration::from_millis(500)).await {
            Err(err) => break err,
            Ok(records) => assert!(records.is_empty()),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    };
    assert_eq!(
        err.to_string(),
        "Offsets out of range with no configured reset policy for partitions: {t-0=100}"
    );
}

#[tokio::test]
async fn no_position_and_reset_none_is_an_error() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    let mut consumer = Consumer::new(config(&cluster, "none")).unwrap();
    consumer.assign([tp("t", 0)]);
    let err = consumer.poll(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, ClientError::NoOffsetForPartition { .. }));
    assert_eq!(
        err.to_string(),
        "Undefined offset with no reset policy for partitions: [t-0]"
    );
}

#[tokio::test]
async fn compressed_batches_with_keys_and_headers_are_decoded() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut builder = records::RecordBatchBuilder::default();
        builder.append(
            7,
            Some(b"key"),
            Some(codec.name().as_bytes()),
            &[records::HeaderRef {
                key: "h",
                value: Some(b"v"),
            }],
        );
        let batch = builder
            .finish_compressed(codec, |input, out| {
                client::codec::compress(codec, input, out)
            })
            .unwrap();
        cluster.append("t", 0, &batch);
    }
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    let records = poll_n(&mut consumer, 4).await;
    let got: Vec<String> = values(&records).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, vec!["gzip", "snappy", "lz4", "zstd"]);
    assert_eq!(records[0].key.as_deref(), Some(&b"key"[..]));
    assert_eq!(records[0].headers[0].key, "h");
    assert_eq!(records[0].headers[0].value, Some(Bytes::from("v")));
}

#[tokio::test]
async fn a_corrupt_batch_is_reported_with_check_crcs() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["value"]));
    {
        let mut state = cluster.state();
        let (_, _, batch) = &mut state.topics.get_mut("t").unwrap().partitions[0].batches[0];
        let mut bytes = batch.to_vec();
        let at = bytes.windows(5).position(|w| w == b"value").unwrap();
        bytes[at] = b'V';
        *batch = Bytes::from(bytes);
    }
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    let started = Instant::now();
    let err = loop {
        match consumer.poll(Duration::from_millis(500)).await {
            Err(err) => break err,
            Ok(records) => assert!(records.is_empty()),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    };
    assert!(
        matches!(err, ClientError::CorruptRecord { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");

    // Without check.crcs the same bytes are handed out.
    let mut config = config(&cluster, "earliest");
    config.set("check.crcs", "false").unwrap();
    let mut consumer = Consumer::new(config).unwrap();
    consumer.assign([tp("t", 0)]);
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(0, "Value".into())]
    );
}

#[tokio::test]
async fn beginning_end_and_time_offsets_are_listed() {
    let cluster = FakeCluster::start(2).await;
    cluster.create_topic("t", &[1, 2]);
    cluster.append("t", 0, &batch_of(&["a", "b", "c", "d"]));
    cluster.truncate_start("t", 0, 0);
    cluster.append("t", 1, &batch_of(&["x"]));
    let consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    let partitions = [tp("t", 0), tp("t", 1)];
    let beginning = consumer.beginning_offsets(&partitions).await.unwrap();
    let end = consumer.end_offsets(&partitions).await.unwrap();
    assert_eq!((beginning[&partitions[0]], end[&partitions[0]]), (0, 4));
    assert_eq!((beginning[&partitions[1]], end[&partitions[1]]), (0, 1));
    let found = consumer
        .offsets_for_times(&[(tp("t", 0), 1002), (tp("t", 1), 5000)])
        .await
        .unwrap();
    let at = found[&tp("t", 0)].unwrap();
    assert_eq!((at.offset, at.timestamp), (2, 1002));
    assert_eq!(found[&tp("t", 1)], None);
    let err = consumer.end_offsets(&[tp("t", 9)]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
}

#[tokio::test]
async fn a_zero_timeout_poll_before_the_position_is_known_is_empty_not_an_error() {
    let cluster = FakeCluster::start(1).await;
    cluster.create_topic("t", &[1]);
    cluster.append("t", 0, &batch_of(&["a"]));
    let mut consumer = Consumer::new(config(&cluster, "earliest")).unwrap();
    consumer.assign([tp("t", 0)]);
    // No metadata yet: nothing can be looked up in no time.
    assert!(consumer.poll(Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(
        values(&poll_n(&mut consumer, 1).await),
        vec![(0, "a".into())]
    );
}
