//! The Docker image and the docker-compose cluster, driven from the host the
//! way a user drives them: `bin-scripts/docker-build.sh` builds the image,
//! `docker-compose` runs the repository's `docker-compose.yml`, and the
//! project's tools (`kafka-topics`, the console producer and consumer) talk
//! to the ports it publishes.
//!
//! Needs a Docker daemon and Compose (the `docker compose` plugin or the
//! standalone `docker-compose`). Without them the test fails, unless
//! `SKIP_DOCKER_TESTS=1` is set. The cluster runs under a project name of its
//! own on free host ports, so it never meets a user's cluster on 2181/9092,
//! and is torn down (`down -v`) however the test ends; the containers' logs
//! are printed when it fails. The image packages the debug binaries the
//! tests already built rather than building release ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use integration_tests::{ToolOutput, bin_dir, run_command, run_tool, workspace_root};

/// The brokers docker-compose.yml defines: service `kafka-<id>`.
const BROKERS: [i32; 3] = [1, 2, 3];

/// Bounds a hang, not a wait: every wait below ends on a readiness signal.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);
const CLUSTER_STATE_TIMEOUT: Duration = Duration::from_secs(120);
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn compose_cluster_survives_a_killed_leader_and_a_rolling_restart() {
    if std::env::var("SKIP_DOCKER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIP_DOCKER_TESTS=1: the Docker test is skipped");
        return;
    }
    let compose = match compose_command() {
        Ok(compose) => compose,
        Err(err) => panic!(
            "Docker is not usable here ({err:#}). The Docker test needs a running daemon and \
             Compose; set SKIP_DOCKER_TESTS=1 to skip it."
        ),
    };
    let mut timings = Timings::default();
    // The tools on the host and the binaries in the image are one build.
    let bin_dir = bin_dir();
    let mut cluster = ComposeCluster::new(compose).expect("choosing ports for the cluster");

    let result = (|| -> Result<()> {
        let started = Instant::now();
        cluster.build_image(bin_dir)?;
        timings.record("build the image (debug binaries)", started);

        let started = Instant::now();
        cluster.compose(&["up", "-d"], Duration::from_secs(300))?;
        cluster.wait_healthy(&["zookeeper", "kafka-1", "kafka-2", "kafka-3"])?;
        timings.record("docker-compose up -d until all four are healthy", started);

        killed_leader(&cluster, &mut timings).context("the killed leader")?;
        rolling_restart(&cluster, &mut timings).context("the rolling restart")?;
        Ok(())
    })();
    match result {
        Ok(()) => cluster.passed = true,
        Err(err) => {
            eprintln!("{timings}");
            panic!("{err:#}")
        }
    }
    let started = Instant::now();
    drop(cluster);
    timings.record("docker-compose down --volumes and image removal", started);
    eprintln!("{timings}");
}

/// A replication-factor-3 topic survives `docker-compose kill` of its
/// leader's container: a new leader is elected among the others, which serve
/// every record written before and during the outage; the restarted
/// container rejoins the Isr.
fn killed_leader(cluster: &ComposeCluster, timings: &mut Timings) -> Result<()> {
    let topic = "failover";
    cluster.create_topic(topic, 1)?;
    let partitions = cluster.wait_for_topic(topic, "every replica is in the Isr", |p| {
        p.len() == 1 && all_in_sync(p)
    })?;
    let leader = partitions[0]
        .leader
        .ok_or_else(|| anyhow!("{topic} has no leader: {partitions:?}"))?;

    let before: Vec<String> = (1..=200).map(|i| format!("{topic}-{i:04}")).collect();
    produce(&cluster.bootstrap(&BROKERS), topic, &before)?;
    let read = consume(&cluster.bootstrap(&BROKERS), topic, Some(before.len()))?;
    ensure!(
        read == before,
        "read back {} records, not the {} produced: {read:?}",
        read.len(),
        before.len()
    );

    let service = format!("kafka-{leader}");
    let others: Vec<i32> = BROKERS.into_iter().filter(|id| *id != leader).collect();
    let killed = Instant::now();
    cluster.compose(&["kill", &service], TOOL_TIMEOUT)?;
    let partitions = cluster.wait_for_topic(
        topic,
        &format!("a leader other than {leader} is elected and {leader} leaves the Isr"),
        |p| p[0].leader.is_some_and(|l| l != leader) && !p[0].isr.contains(&leader),
    )?;
    timings.record(
        &format!("kill the leader (kafka-{leader}) until another leads"),
        killed,
    );
    ensure!(
        partitions[0].isr.len() == 2,
        "after the kill the Isr should be the two others: {partitions:?}"
    );

    // Written and read with only the surviving brokers as bootstrap servers:
    // acks=all with min.insync.replicas=2 holds with two in sync.
    let during: Vec<String> = (201..=300).map(|i| format!("{topic}-{i:04}")).collect();
    produce(&cluster.bootstrap(&others), topic, &during)?;
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    let read = consume(&cluster.bootstrap(&others), topic, Some(all.len()))?;
    ensure!(
        read == all,
        "the surviving brokers served {} records, not the {} produced: {read:?}",
        read.len(),
        all.len()
    );

    let restarted = Instant::now();
    cluster.compose(&["start", &service], TOOL_TIMEOUT)?;
    cluster.wait_healthy(&[&service])?;
    cluster.wait_for_topic(topic, &format!("{leader} is back in the Isr"), |p| {
        p[0].isr.contains(&leader) && all_in_sync(p)
    })?;
    timings.record(
        &format!("docker-compose start kafka-{leader} until it is back in the Isr"),
        restarted,
    );
    Ok(())
}

/// Every broker restarted in turn (`docker-compose restart`: SIGTERM, a
/// controlled shutdown, a new start), each once the previous one is back in
/// every Isr, while an acks=all producer keeps writing: every acknowledged
/// record is read back.
fn rolling_restart(cluster: &ComposeCluster, timings: &mut Timings) -> Result<()> {
    let topic = "rolling";
    cluster.create_topic(topic, 3)?;
    cluster.wait_for_topic(topic, "every replica is in the Isr", |p| {
        p.len() == 3 && all_in_sync(p)
    })?;

    let producer = BatchProducer::start(cluster.bootstrap(&BROKERS), topic.to_owned());
    producer.wait_for_acknowledged(2)?;
    let mut windows = Vec::new();
    for id in BROKERS {
        let service = format!("kafka-{id}");
        let started = Instant::now();
        cluster.compose(&["restart", "--timeout", "30", &service], TOOL_TIMEOUT)?;
        cluster.wait_healthy(&[&service])?;
        cluster.wait_for_topic(
            topic,
            &format!("{id} is back in the Isr of every partition"),
            |p| p.len() == 3 && all_in_sync(p),
        )?;
        timings.record(
            &format!("restart kafka-{id} until every Isr is full"),
            started,
        );
        windows.push((id, started, Instant::now()));
    }
    // One more batch after the last restart, so the producer outlives it.
    producer.wait_for_acknowledged(producer.acknowledged() + 1)?;
    let batches = producer.stop()?;

    let started = Instant::now();
    let read = consume(&cluster.bootstrap(&BROKERS), topic, None)?;
    timings.record(&format!("read back {} records", read.len()), started);

    let acknowledged: Vec<&Batch> = batches.iter().filter(|b| b.failure.is_none()).collect();
    let produced: HashSet<&str> = batches
        .iter()
        .flat_map(|b| b.lines.iter().map(String::as_str))
        .collect();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for line in &read {
        ensure!(
            produced.contains(line.as_str()),
            "read a record that was never produced: {line:?}"
        );
        *copies.entry(line.as_str()).or_default() += 1;
    }
    let acknowledged_lines: Vec<&str> = acknowledged
        .iter()
        .flat_map(|b| b.lines.iter().map(String::as_str))
        .collect();
    let lost: Vec<&str> = acknowledged_lines
        .iter()
        .copied()
        .filter(|line| !copies.contains_key(line))
        .collect();
    let failures: Vec<String> = batches
        .iter()
        .filter_map(|b| {
            b.failure
                .as_ref()
                .map(|f| format!("batch {}: {f}", b.index))
        })
        .collect();
    ensure!(
        lost.is_empty(),
        "{} of {} acknowledged records were lost, e.g. {:?}; failed batches: {failures:?}",
        lost.len(),
        acknowledged_lines.len(),
        &lost[..lost.len().min(10)]
    );
    for (id, start, end) in &windows {
        ensure!(
            acknowledged
                .iter()
                .any(|b| b.started < *end && b.finished > *start),
            "no batch was acknowledged while kafka-{id} restarted, so the restart was not \
             under load; failed batches: {failures:?}"
        );
    }
    let duplicates = copies.values().filter(|n| **n > 1).count();
    eprintln!(
        "rolling restart: {} batches, {} records acknowledged and all read back; \
         {} batches not acknowledged {failures:?}; {duplicates} records read twice (retries)",
        batches.len(),
        acknowledged_lines.len(),
        failures.len()
    );
    Ok(())
}

fn all_in_sync(partitions: &[PartitionState]) -> bool {
    partitions.iter().all(|p| {
        p.leader.is_some() && p.replicas.len() == BROKERS.len() && {
            let mut isr = p.isr.clone();
            let mut replicas = p.replicas.clone();
            isr.sort_unstable();
            replicas.sort_unstable();
            isr == replicas
        }
    })
}

/// `records` through kafka-console-producer (acks=all); every one must be
/// acknowledged.
fn produce(bootstrap: &str, topic: &str, records: &[String]) -> Result<()> {
    let out = run_producer(bootstrap, topic, records)?;
    ensure!(
        out.success(),
        "kafka-console-producer failed ({}): {}",
        out.status,
        out.stderr
    );
    Ok(())
}

fn run_producer(bootstrap: &str, topic: &str, records: &[String]) -> Result<ToolOutput> {
    let mut input = records.join("\n");
    input.push('\n');
    run_tool(
        "kafka-console-producer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--request-required-acks",
            "all",
            // Leadership moves during a restart; give the retries room.
            "--message-send-max-retries",
            "10",
        ],
        Some(&input),
        TOOL_TIMEOUT,
    )
}

/// The topic's records from the beginning: `expected` of them, or (None)
/// all there are, ending 5 s after the last one arrived.
fn consume(bootstrap: &str, topic: &str, expected: Option<usize>) -> Result<Vec<String>> {
    let mut args = vec![
        "--bootstrap-server".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        topic.to_owned(),
        "--from-beginning".to_owned(),
    ];
    match expected {
        Some(n) => args.extend([
            "--max-messages".to_owned(),
            n.to_string(),
            "--timeout-ms".to_owned(),
            "30000".to_owned(),
        ]),
        None => args.extend(["--timeout-ms".to_owned(), "5000".to_owned()]),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_tool("kafka-console-consumer", &args, None, TOOL_TIMEOUT)?;
    ensure!(
        out.success(),
        "kafka-console-consumer failed ({}): {}",
        out.status,
        out.stderr
    );
    Ok(out.stdout.lines().map(str::to_owned).collect())
}

/// One partition of `kafka-topics --describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    partition: i32,
    leader: Option<i32>,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// Parses the partition lines of `kafka-topics --describe`:
/// `\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3`.
fn parse_describe(stdout: &str) -> Result<Vec<PartitionState>> {
    let ids = |text: &str| -> Result<Vec<i32>> {
        text.split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().with_context(|| format!("broker id {id:?}")))
            .collect()
    };
    let mut partitions = Vec::new();
    for line in stdout.lines().filter(|l| l.contains("Partition:")) {
        let fields: BTreeMap<&str, &str> = line
            .split('\t')
            .filter_map(|field| field.split_once(':'))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect();
        let field = |key: &str| {
            fields
                .get(key)
                .copied()
                .ok_or_else(|| anyhow!("no {key} in {line:?}"))
        };
        let leader = match field("Leader")? {
            "none" | "-1" => None,
            id => Some(id.parse().with_context(|| format!("leader in {line:?}"))?),
        };
        partitions.push(PartitionState {
            partition: field("Partition")?.parse()?,
            leader,
            replicas: ids(field("Replicas")?)?,
            isr: ids(field("Isr")?)?,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    Ok(partitions)
}

/// `docker compose` when the plugin is there, else `docker-compose`; an
/// error when no Docker daemon answers.
fn compose_command() -> Result<Vec<String>> {
    let info = run_command(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        None,
        Duration::from_secs(60),
    )
    .context("running docker info")?;
    ensure!(
        info.success(),
        "no Docker daemon answers: docker info: {}",
        info.stderr.trim()
    );
    for candidate in [&["docker", "compose"][..], &["docker-compose"][..]] {
        let answered = run_command(
            Command::new(candidate[0])
                .args(&candidate[1..])
                .arg("version"),
            None,
            Duration::from_secs(60),
        );
        if answered.is_ok_and(|out| out.success()) {
            return Ok(candidate.iter().map(|s| (*s).to_owned()).collect());
        }
    }
    bail!("the Docker daemon answers but neither `docker compose` nor `docker-compose` works")
}

/// A compose project of the repository's docker-compose.yml. Dropping it
/// prints the containers' logs unless the test passed, then removes the
/// containers, volumes, network and the image.
#[derive(Debug)]
struct ComposeCluster {
    compose: Vec<String>,
    project: String,
    image: String,
    zookeeper_port: u16,
    broker_ports: BTreeMap<i32, u16>,
    passed: bool,
}

impl ComposeCluster {
    fn new(compose: Vec<String>) -> Result<ComposeCluster> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let project = format!("kafkars-test-{}-{nanos:x}", std::process::id());
        // Ports the kernel hands out now, held together so they differ; the
        // window until Docker binds them is short.
        let holders = (0..=BROKERS.len())
            .map(|_| TcpListener::bind("0.0.0.0:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = holders
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(ComposeCluster {
            compose,
            image: format!("kafka-rs-test:{project}"),
            project,
            zookeeper_port: ports[0],
            broker_ports: BROKERS
                .into_iter()
                .zip(ports[1..].iter().copied())
                .collect(),
            passed: false,
        })
    }

    fn build_image(&self, bin_dir: &Path) -> Result<()> {
        let script = workspace_root().join("bin-scripts/docker-build.sh");
        let out = run_command(
            Command::new("bash")
                .arg(&script)
                .arg("--bin-dir")
                .arg(bin_dir)
                .arg("--tag")
                .arg(&self.image)
                .env_remove("KAFKA_RS_IMAGE")
                .env_remove("KAFKA_RS_BIN_DIR"),
            None,
            Duration::from_secs(600),
        )?;
        ensure!(
            out.success(),
            "docker-build.sh failed ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        eprintln!("{}", out.stderr.trim());
        Ok(())
    }

    /// A compose command for this project, with the variables
    /// docker-compose.yml substitutes.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(workspace_root().join("docker-compose.yml"))
            .args(args)
            .env("KAFKA_RS_IMAGE", &self.image)
            .env("ZOOKEEPER_HOST_PORT", self.zookeeper_port.to_string())
            .env_remove("KAFKA_RS_ADVERTISED_HOST");
        for (id, port) in &self.broker_ports {
            command.env(format!("KAFKA_{id}_HOST_PORT"), port.to_string());
        }
        command
    }

    fn compose(&self, args: &[&str], timeout: Duration) -> Result<ToolOutput> {
        let out = run_command(&mut self.command(args), None, timeout)?;
        ensure!(
            out.success(),
            "{} {args:?} failed ({}): {}",
            self.compose.join(" "),
            out.status,
            out.stderr
        );
        Ok(out)
    }

    fn docker(args: &[&str]) -> Result<ToolOutput> {
        let out = run_command(
            Command::new("docker").args(args),
            None,
            Duration::from_secs(60),
        )?;
        ensure!(
            out.success(),
            "docker {args:?} failed ({}): {}",
            out.status,
            out.stderr
        );
        Ok(out)
    }

    /// The container of a service, running or not (`docker ps -a` by the
    /// labels Compose sets, which v1 and v2 share).
    fn container(&self, service: &str) -> Result<String> {
        let out = Self::docker(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])?;
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        match ids.as_slice() {
            [id] => Ok((*id).to_owned()),
            _ => bail!("expected one container for {service}, found {ids:?}"),
        }
    }

    /// Waits until the health check of every one of `services` passes; fails
    /// at once when one of them stops instead.
    fn wait_healthy(&self, services: &[&str]) -> Result<()> {
        for service in services {
            let container = self.container(service)?;
            poll(
                &format!("{service} is healthy"),
                HEALTHY_TIMEOUT,
                Duration::from_millis(250),
                || {
                    let out = Self::docker(&[
                        "inspect",
                        "--format",
                        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}",
                        &container,
                    ])?;
                    let state = out.stdout.trim();
                    match state.split_once(' ') {
                        Some(("running", "healthy")) => Ok(Check::Ready(())),
                        Some(("running" | "created", _)) => Ok(Check::Pending(state.to_owned())),
                        _ => bail!("{service} is {state}, not starting"),
                    }
                },
            )?;
        }
        Ok(())
    }

    fn bootstrap(&self, ids: &[i32]) -> String {
        ids.iter()
            .filter_map(|id| self.broker_ports.get(id))
            .map(|port| format!("localhost:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn zookeeper(&self) -> String {
        format!("localhost:{}", self.zookeeper_port)
    }

    fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let partitions = partitions.to_string();
        let out = run_tool(
            "kafka-topics",
            &[
                "--create",
                "--bootstrap-server",
                &self.bootstrap(&BROKERS),
                "--replication-factor",
                "3",
                "--partitions",
                &partitions,
                "--topic",
                topic,
            ],
            None,
            TOOL_TIMEOUT,
        )?;
        ensure!(
            out.success() && out.stdout.contains(&format!("Created topic \"{topic}\".")),
            "kafka-topics --create failed ({}): {}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    /// `kafka-topics --describe` through the coordinator, which answers
    /// whichever broker is down.
    fn describe(&self, topic: &str) -> Result<Vec<PartitionState>> {
        let out = run_tool(
            "kafka-topics",
            &[
                "--describe",
                "--zookeeper",
                &self.zookeeper(),
                "--topic",
                topic,
            ],
            None,
            TOOL_TIMEOUT,
        )?;
        ensure!(
            out.success(),
            "kafka-topics --describe failed ({}): {}",
            out.status,
            out.stderr
        );
        parse_describe(&out.stdout)
    }

    /// Describes `topic` until `condition` holds of its partitions, and
    /// returns them.
    fn wait_for_topic(
        &self,
        topic: &str,
        what: &str,
        condition: impl Fn(&[PartitionState]) -> bool,
    ) -> Result<Vec<PartitionState>> {
        poll(
            &format!("{what} ({topic})"),
            CLUSTER_STATE_TIMEOUT,
            Duration::from_millis(100),
            || {
                // The tool can fail while the cluster changes under it; that
                // is one more look, not the end of the wait.
                Ok(match self.describe(topic) {
                    Ok(partitions) if !partitions.is_empty() && condition(&partitions) => {
                        Check::Ready(partitions)
                    }
                    Ok(partitions) => Check::Pending(format!("{partitions:?}")),
                    Err(err) => Check::Pending(format!("{err:#}")),
                })
            },
        )
    }

    fn print_diagnostics(&self) {
        for args in [&["ps"][..], &["logs", "--no-color", "--timestamps"][..]] {
            match run_command(&mut self.command(args), None, Duration::from_secs(120)) {
                Ok(out) => eprintln!(
                    "===== {} {args:?}\n{}{}",
                    self.compose.join(" "),
                    out.stdout,
                    out.stderr
                ),
                Err(err) => eprintln!("{args:?}: {err:#}"),
            }
        }
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        if !self.passed {
            self.print_diagnostics();
        }
        let down = run_command(
            &mut self.command(&["down", "--volumes", "--remove-orphans", "--timeout", "10"]),
            None,
            Duration::from_secs(300),
        );
        match down {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!("docker-compose down failed: {}", out.stderr),
            Err(err) => eprintln!("docker-compose down failed: {err:#}"),
        }
        if let Err(err) = Self::docker(&["image", "rm", "--force", &self.image]) {
            eprintln!("removing the test image failed: {err:#}");
        }
    }
}

/// What one look at the cluster found.
enum Check<T> {
    Ready(T),
    /// Not yet; what was seen, for the message if it never becomes ready.
    Pending(String),
}

/// Calls `check` every `interval` until it is ready; an error from `check`
/// ends the wait at once. For cluster state that has no push signal a test
/// can await; the timeout only bounds a hang.
fn poll<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check()? {
            Check::Ready(value) => return Ok(value),
            Check::Pending(seen) => seen,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}; last seen: {seen}");
        }
        std::thread::sleep(interval);
    }
}

/// One run of kafka-console-producer in the background producer.
#[derive(Debug)]
struct Batch {
    index: usize,
    lines: Vec<String>,
    started: Instant,
    finished: Instant,
    /// Why not every line was acknowledged (the tool's exit status is 0
    /// only when all were).
    failure: Option<String>,
}

#[derive(Debug, Default)]
struct ProducerState {
    batches: Vec<Batch>,
    acknowledged: usize,
}

/// Produces batches of numbered lines, one kafka-console-producer run per
/// batch, back to back until stopped, so that each line is known to be
/// acknowledged or not.
#[derive(Debug)]
struct BatchProducer {
    state: Arc<(Mutex<ProducerState>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const LINES_PER_BATCH: usize = 50;

impl BatchProducer {
    fn start(bootstrap: String, topic: String) -> BatchProducer {
        let state = Arc::new((Mutex::new(ProducerState::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::SeqCst) {
                    let lines: Vec<String> = (0..LINES_PER_BATCH)
                        .map(|i| format!("{topic}-{index:05}-{i:03}"))
                        .collect();
                    let started = Instant::now();
                    let failure = match run_producer(&bootstrap, &topic, &lines) {
                        Ok(out) if out.success() => None,
                        Ok(out) => Some(format!("{}: {}", out.status, out.stderr.trim())),
                        Err(err) => Some(format!("{err:#}")),
                    };
                    let (lock, changed) = &*state;
                    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if failure.is_none() {
                        state.acknowledged += 1;
                    }
                    state.batches.push(Batch {
                        index,
                        lines,
                        started,
                        finished: Instant::now(),
                        failure,
                    });
                    changed.notify_all();
                    index += 1;
                }
            })
        };
        BatchProducer {
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn acknowledged(&self) -> usize {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acknowledged
    }

    /// Waits until `count` batches have been acknowledged in all.
    fn wait_for_acknowledged(&self, count: usize) -> Result<()> {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + CLUSTER_STATE_TIMEOUT;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        while state.acknowledged < count {
            let now = Instant::now();
            if now >= deadline {
                let failures: Vec<&String> = state
                    .batches
                    .iter()
                    .filter_map(|b| b.failure.as_ref())
                    .collect();
                bail!(
                    "the producer had {} of {count} batches acknowledged after {:?}; failures: {failures:?}",
                    state.acknowledged,
                    CLUSTER_STATE_TIMEOUT
                );
            }
            state = changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Stops after the batch in flight and returns every batch.
    fn stop(mut self) -> Result<Vec<Batch>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow!("the producer thread panicked"))?;
        }
        let mut state = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::take(&mut state.batches))
    }
}

impl Drop for BatchProducer {
    fn drop(&mut self) {
        // On a failed test: no new batch; the one in flight ends by itself.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How long each step took, printed at the end.
#[derive(Debug, Default)]
struct Timings(Vec<(String, Duration)>);

impl Timings {
    fn record(&mut self, step: &str, started: Instant) {
        self.0.push((step.to_owned(), started.elapsed()));
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "timings:")?;
        for (step, took) in &self.0 {
            writeln!(f, "  {:>7.1} s  {step}", took.as_secs_f64())?;
        }
        Ok(())
    }
}

#[test]
fn describe_output_parses() {
    let partitions = parse_describe(
        "Topic:t\tPartitionCount:2\tReplicationFactor:3\tConfigs:\n\
         \tTopic: t\tPartition: 1\tLeader: none\tReplicas: 3,1,2\tIsr: \n\
         \tTopic: t\tPartition: 0\tLeader: 2\tReplicas: 1,2,3\tIsr: 2,3\n",
    )
    .unwrap();
    assert_eq!(
        partitions,
        vec![
            PartitionState {
                partition: 0,
                leader: Some(2),
                replicas: vec![1, 2, 3],
                isr: vec![2, 3],
            },
            PartitionState {
                partition: 1,
                leader: None,
                replicas: vec![3, 1, 2],
                isr: vec![],
            },
        ]
    );
    assert!(!all_in_sync(&partitions));
}
