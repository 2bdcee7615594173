//! The real `zookeeper-server-start` binary: started with a properties
//! file, killed with SIGKILL and restarted on the same dataDir, stopped
//! with SIGTERM, and refusing bad input with one line and exit status 1.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use protocol::coordinator::coordinator_client::CoordinatorClient;
use protocol::coordinator::{
    CreatableTopic, CreateTopicsRequest, DescribeTopicsRequest, Endpoint, HeartbeatRequest,
    ListTopicsRequest, RegisterBrokerRequest,
};
use tonic::transport::Channel;

const BINARY: &str = env!("CARGO_BIN_EXE_zookeeper-server-start");
const PATIENCE: Duration = Duration::from_secs(30);

fn write_properties(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("zookeeper.properties");
    std::fs::write(&path, body).unwrap();
    path
}

fn command(properties: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg(properties)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running coordinator process and its log lines.
struct Server {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the binary and waits for the line naming the bound port.
    fn start(properties: &Path) -> Server {
        let mut child = command(properties).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + PATIENCE;
        let port = loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let line = lines
                .recv_timeout(remaining)
                .expect("the server logs where it listens");
            if let Some(rest) = line.split("binding to port ").nth(1) {
                let address = rest.split_whitespace().next().unwrap();
                break address.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        Server { child, port, lines }
    }

    async fn client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap()
    }

    /// Waits for the process to exit and returns its status code and the
    /// log lines it wrote after those already read.
    fn wait(mut self) -> (Option<i32>, Vec<String>) {
        let status = self.child.wait().unwrap();
        let lines = self.lines.iter().collect();
        (status.code(), lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to its end, for inputs it must refuse.
fn run_to_exit(properties: &Path) -> (Option<i32>, Vec<String>) {
    let output = command(properties).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (
        output.status.code(),
        stderr.lines().map(str::to_owned).collect(),
    )
}

fn the_error(lines: &[String]) -> String {
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line in {lines:#?}");
    errors[0].clone()
}

/// A broker's open heartbeat stream: dropping it ends the session.
type Session = (
    tokio::sync::mpsc::Sender<HeartbeatRequest>,
    tonic::Streaming<protocol::coordinator::HeartbeatResponse>,
);

/// Registers broker 1 and heartbeats until it is active, so that topics
/// can be placed on it. The stream stays open as long as the session lives.
async fn activate_broker(
    client: &mut CoordinatorClient<Channel>,
    incarnation: &str,
) -> (i64, Session) {
    let epoch = client
        .register_broker(RegisterBrokerRequest {
            broker_id: 1,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
            }],
            rack: String::new(),
            incarnation_id: incarnation.into(),
            session_timeout_ms: 6000,
            cluster_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .broker_epoch;
    let heartbeat = HeartbeatRequest {
        broker_id: 1,
        broker_epoch: epoch,
        metadata_version: epoch,
    };
    let (heartbeats, requests) = tokio::sync::mpsc::channel(1);
    heartbeats.send(heartbeat).await.unwrap();
    let mut responses = client
        .broker_session(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(!response.fenced);
    (epoch, (heartbeats, responses))
}

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        assignments: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_survive_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let properties = write_properties(
        dir.path(),
        &format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n",
            dir.path().join("zookeeper").display()
        ),
    );
    let server = Server::start(&properties);
    let mut client = server.client().await;
    let (first_epoch, _session) = activate_broker(&mut client, "first").await;
    let response = client
        .create_topics(CreateTopicsRequest {
            topics: vec![
                topic("test", 1, &[]),
                topic("my-topic", 3, &[("retention.ms", "60000")]),
                topic("bad-config", 1, &[("retention.ms", "soon")]),
            ],
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
    assert_eq!(
        response.topics[1].error_code, 0,
        "{}",
        response.topics[1].error_message
    );
    // The real topic config check: INVALID_CONFIG, with the key named.
    assert_eq!(
        response.topics[2].error_code,
        protocol::ErrorCode::InvalidConfig.code()
    );
    assert!(
        response.topics[2].error_message.contains("retention.ms"),
        "{}",
        response.topics[2].error_message
    );
    let before = client
        .describe_topics(DescribeTopicsRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner()
        .topics;
    drop(client);

    // SIGKILL: no chance to clean up.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let server = Server::start(&properties);
    let mut client = server.client().await;
    let names = client
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["my-topic", "test"]);
    let after = client
        .describe_topics(DescribeTopicsRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(
        after, before,
        "ids, configs and assignments are as they were"
    );
    // Epochs keep growing across restarts.
    let (second_epoch, _session) = activate_broker(&mut client, "second").await;
    assert!(second_epoch > first_epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_it_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let properties = write_properties(
        dir.path(),
        &format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n",
            dir.path().join("zk").display()
        ),
    );
    let server = Server::start(&properties);
    // Serving: a call succeeds.
    let mut client = server.client().await;
    client.list_topics(ListTopicsRequest {}).await.unwrap();
    let pid = rustix::process::Pid::from_child(&server.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("Coordinator stopped")),
        "{lines:#?}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.properties");
    let (code, lines) = run_to_exit(&missing);
    assert_eq!(code, Some(1));
    assert!(
        the_error(&lines).contains("missing.properties"),
        "{lines:#?}"
    );

    let bad = write_properties(dir.path(), "dataDir=/tmp/x\nclientPort=twenty\n");
    let (code, lines) = run_to_exit(&bad);
    assert_eq!(code, Some(1));
    let error = the_error(&lines);
    assert!(
        error.contains("clientPort") && error.contains("twenty"),
        "{error}"
    );

    let no_data_dir = write_properties(dir.path(), "clientPort=0\n");
    let (code, lines) = run_to_exit(&no_data_dir);
    assert_eq!(code, Some(1));
    assert!(the_error(&lines).contains("dataDir"), "{lines:#?}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = write_properties(
        dir.path(),
        &format!(
            "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n",
            dir.path().join("zk").display()
        ),
    );
    let (code, lines) = run_to_exit(&in_use);
    assert_eq!(code, Some(1));
    let error = the_error(&lines);
    assert!(
        error.contains(&port.to_string()) && error.contains("in use"),
        "{error}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let unwritable = write_properties(
        dir.path(),
        &format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n",
            file.join("zk").display()
        ),
    );
    let (code, lines) = run_to_exit(&unwritable);
    assert_eq!(code, Some(1));
    let error = the_error(&lines);
    assert!(
        error.contains("cannot create dataDir") && error.contains("a-file"),
        "{error}"
    );

    let output = Command::new(BINARY)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("USAGE"));
}
