//! How much one big topic request costs: a topic of 10,000 partitions, and
//! 1,000 topics of 10 partitions, each in one CreateTopics request, against
//! an in-process coordinator on a temp dir with three active brokers and
//! three watchers. Prints, per request: the time until it is acknowledged,
//! the fsyncs it cost, and when each watcher had applied it.
//!
//!     cargo bench -p coordinator --bench create_topics
//!
//! Not a timed test: the figures go to BENCHMARKS.md. Set TMPDIR to put the
//! data directory on the disk to measure (fsync cost depends on it).

use std::time::{Duration, Instant};

use coordinator::Settings;
use protocol::coordinator::coordinator_client::CoordinatorClient;
use protocol::coordinator::{
    CreatableTopic, CreateTopicsRequest, Endpoint, HeartbeatRequest, RegisterBrokerRequest,
    WatchMetadataRequest,
};
use protocol::image::MetadataImage;
use tokio::sync::mpsc;
use tonic::transport::Channel;

const ROUNDS: usize = 3;
const WATCHERS: usize = 3;

type Client = CoordinatorClient<Channel>;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // we need to honour beyond running quickly, which one round does.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        1
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench(rounds));
}

async fn bench(rounds: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    println!("data directory: {}", dir.path().display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let mut settings = Settings::new(dir.path());
    settings.auto_leader_rebalance_enable = false;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coordinator::run(settings, listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    let connect = || async {
        CoordinatorClient::connect(url.clone())
            .await
            .expect("connected")
            .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
    };
    let mut client = connect().await;
    let mut sessions = Vec::new();
    for broker_id in 1..=3 {
        sessions.push(activate(&mut client, broker_id).await);
    }

    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    for watcher in 0..WATCHERS {
        let mut client = connect().await;
        let seen = seen_tx.clone();
        tokio::spawn(async move {
            let mut stream = client
                .watch_metadata(WatchMetadataRequest { from_version: -1 })
                .await
                .expect("watching")
                .into_inner();
            let mut image = MetadataImage::default();
            while let Ok(Some(update)) = stream.message().await {
                image.apply_update(&update);
                let _ = seen.send((watcher, image.version, Instant::now()));
            }
        });
    }

    for round in 0..rounds {
        let big = vec![topic(&format!("big-{round}"), 10_000)];
        measure(
            &mut client,
            &mut seen_rx,
            "1 topic x 10,000 partitions, RF 3",
            big,
        )
        .await;
        let many = (0..1000)
            .map(|i| topic(&format!("many-{round}-{i:04}"), 10))
            .collect();
        measure(
            &mut client,
            &mut seen_rx,
            "1,000 topics x 10 partitions, RF 3",
            many,
        )
        .await;
    }

    drop(sessions);
    let _ = stop.send(());
    server.await.expect("joined").expect("clean stop");
}

fn topic(name: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: 3,
        configs: Default::default(),
        assignments: vec![],
    }
}

async fn measure(
    client: &mut Client,
    seen: &mut mpsc::UnboundedReceiver<(usize, i64, Instant)>,
    label: &str,
    topics: Vec<CreatableTopic>,
) {
    let fsyncs_before = coordinator::fsync_count();
    let start = Instant::now();
    let response = client
        .create_topics(CreateTopicsRequest {
            topics,
            validate_only: false,
        })
        .await
        .expect("created")
        .into_inner();
    let acked = start.elapsed();
    let fsyncs = coordinator::fsync_count() - fsyncs_before;
    assert!(
        response.topics.iter().all(|t| t.error_code == 0),
        "{:?}",
        response.topics.first()
    );
    let version = client
        .describe_cluster(protocol::coordinator::DescribeClusterRequest {})
        .await
        .expect("described")
        .into_inner()
        .metadata_version;

    let mut applied: [Option<Duration>; WATCHERS] = [None; WATCHERS];
    while applied.iter().any(Option::is_none) {
        let (watcher, watcher_version, at) = seen.recv().await.expect("watchers run");
        if watcher_version >= version && applied[watcher].is_none() {
            applied[watcher] = Some(at.saturating_duration_since(start));
        }
    }
    let applied: Vec<String> = applied
        .iter()
        .map(|d| format!("{:.1}", d.unwrap_or_default().as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{label}: acknowledged after {:.1} ms with {fsyncs} fsync(s); applied by {WATCHERS} watchers after {} ms",
        acked.as_secs_f64() * 1000.0,
        applied.join(" / ")
    );
}

/// Registers a broker and keeps it active with an open heartbeat stream.
async fn activate(client: &mut Client, broker_id: i32) -> mpsc::Sender<HeartbeatRequest> {
    let epoch = client
        .register_broker(RegisterBrokerRequest {
            broker_id,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092 + broker_id,
            }],
            rack: String::new(),
            incarnation_id: format!("bench-{broker_id}"),
            session_timeout_ms: 60_000,
            cluster_id: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .broker_epoch;
    let (heartbeats, requests) = mpsc::channel(1);
    heartbeats
        .send(HeartbeatRequest {
            broker_id,
            broker_epoch: epoch,
            metadata_version: epoch,
        })
        .await
        .expect("queued");
    let mut responses = client
        .broker_session(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("session")
        .into_inner();
    let response = responses.message().await.expect("answer").expect("open");
    assert!(!response.fenced, "broker {broker_id} is active");
    // Keep reading so the stream stays healthy.
    tokio::spawn(async move { while let Ok(Some(_)) = responses.message().await {} });
    heartbeats
}
