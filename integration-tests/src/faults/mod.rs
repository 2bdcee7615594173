//! The fault-injection suite (Jepsen-style): a workload of acks=all
//! producers and concurrent consumers against a three-broker cluster wired
//! through fault-injecting proxies ([`proxy`], [`cluster`]), a seeded
//! nemesis ([`nemesis`]) killing, pausing, isolating and starving
//! processes, and a checker ([`checker`]) that compares what was
//! acknowledged and read with what the log holds after the faults heal.
//!
//! [`run`] is one whole run; `tests/jepsen.rs` calls it with fixed seeds
//! (CI) or for `SOAK_SECS` (soak).

pub mod checker;
pub mod cluster;
pub mod nemesis;
pub mod proxy;
pub mod workload;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};

use checker::{History, Report, check};
use cluster::FaultCluster;
use nemesis::{Rng, Timeline};
use proxy::Node;
use workload::{Clients, WorkloadSpec};

/// How one run goes.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Names the run in its summary and result file (`ci`, `soak`).
    pub label: String,
    pub seed: u64,
    /// How long the nemesis runs.
    pub faults_for: Duration,
    pub workload: WorkloadSpec,
    /// Size of the tmpfs under one broker's log dir (0: no disk faults).
    pub small_disk_mb: u64,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub summary: String,
    pub timeline: String,
    pub report: Report,
}

/// Runs a cluster, the workload and the nemesis, heals, reads everything
/// back and checks it. On a failed check or any error, the cluster's
/// directory (every process's logs and data) is kept and its path is in
/// the error.
pub fn run(spec: &RunSpec) -> Result<RunResult> {
    let started = Instant::now();
    let mut timeline = Timeline::new(started);
    let small_disk = (spec.small_disk_mb > 0).then_some((2, spec.small_disk_mb));
    let mut cluster = FaultCluster::start(3, small_disk)?;
    timeline.log(format!(
        "{} seed={}: cluster up in {} (brokers {}, coordinator {})",
        spec.label,
        spec.seed,
        cluster.dir().display(),
        cluster.bootstrap_servers(),
        cluster.zookeeper_connect()
    ));
    let outcome = run_on(&mut cluster, spec, &mut timeline);
    let (history, report) = match outcome {
        Ok(found) => found,
        Err(e) => {
            bail!(
                "{} seed={} failed: {e:#}\ntimeline:\n{timeline}{}",
                spec.label,
                spec.seed,
                keep_logs(&mut cluster)
            );
        }
    };
    let summary = format!(
        "{} seed={} secs={} faults={} exits={} {report}",
        spec.label,
        spec.seed,
        history.duration.as_secs(),
        timeline.faults(),
        timeline.unexpected_exits
    );
    let result = RunResult {
        summary: summary.clone(),
        timeline: timeline.to_string(),
        report,
    };
    save(spec, &result);
    // A run proves something only if writes were acknowledged under
    // faults, and a daemon that died on its own is a failure in itself.
    let verdict = if result.report.acked == 0 || timeline.faults() == 0 {
        " (but nothing acknowledged, or no fault applied: proves nothing)"
    } else if timeline.unexpected_exits > 0 {
        " (but a daemon exited on its own)"
    } else {
        ""
    };
    if !result.report.passed() || !verdict.is_empty() {
        bail!(
            "{summary}{verdict}\nexamples:\n  {}\ntimeline:\n{timeline}{}",
            result.report.examples.join("\n  "),
            keep_logs(&mut cluster)
        );
    }
    Ok(result)
}

fn run_on(
    cluster: &mut FaultCluster,
    spec: &RunSpec,
    timeline: &mut Timeline,
) -> Result<(History, Report)> {
    let clients = Clients::new(
        cluster.bootstrap_servers(),
        cluster.zookeeper_connect(),
        spec.workload.clone(),
    )?;
    clients.create_topic()?;
    let brokers = cluster.broker_ids();
    clients.await_healthy(&brokers, nemesis::RECOVERY_TIMEOUT)?;
    // Every broker has registered through the coordinator's proxy by now;
    // if the proxy saw those connections as a client's, cutting a broker
    // off would cut nothing and the run would prove nothing.
    let wired = cluster.network().connections();
    for id in &brokers {
        ensure!(
            wired.contains_key(&(Node::Broker(*id), Node::Coordinator)),
            "the proxies could not tell broker-{id}'s connections apart (is /proc readable?); \
             connections seen: {wired:?}"
        );
    }
    timeline.log(format!(
        "topic {} ready: {} partitions, RF 3, min.insync.replicas=2; {} producers at {}/s, {} consumers",
        spec.workload.topic,
        spec.workload.partitions,
        spec.workload.producers,
        spec.workload.rate_per_producer,
        spec.workload.consumers
    ));
    let running = clients.start()?;
    let mut rng = Rng::new(spec.seed);
    let nemesis = nemesis::run(
        cluster,
        &clients,
        &mut rng,
        timeline,
        Instant::now() + spec.faults_for,
    );
    // Stop the workload even when the nemesis failed, so its tasks end.
    let stopped = clients.stop(running, Duration::from_secs(150));
    nemesis?;
    let (attempts, concurrent_reads, duration) = stopped?;
    timeline.log(format!(
        "workload stopped: {} sends, {} concurrent reads",
        attempts.len(),
        concurrent_reads.len()
    ));
    clients.await_healthy(&brokers, nemesis::RECOVERY_TIMEOUT)?;
    let links: Vec<String> = cluster
        .network()
        .connections()
        .iter()
        .map(|((from, to), n)| format!("{from}->{to}: {n}"))
        .collect();
    timeline.log(format!(
        "connections through the proxies: {}",
        links.join(", ")
    ));
    let final_log = clients.final_read(Duration::from_secs(120))?;
    timeline.log(format!(
        "final read: {} records",
        final_log.values().map(Vec::len).sum::<usize>()
    ));
    let history = History {
        attempts,
        concurrent_reads,
        final_log,
        duration,
    };
    let report = check(&history);
    Ok((history, report))
}

/// Keeps the cluster's directory and says where its logs are.
fn keep_logs(cluster: &mut FaultCluster) -> String {
    let logs: Vec<String> = cluster
        .log_files()
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    let kept = cluster.keep();
    format!(
        "every process's logs and data are kept in {}:\n{}",
        kept.display(),
        logs.join("\n")
    )
}

/// Writes the summary and timeline to `target/jepsen/<label>-seed<seed>.txt`.
fn save(spec: &RunSpec, result: &RunResult) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
        .join("jepsen");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(
        dir.join(format!("{}-seed{}.txt", spec.label, spec.seed)),
        format!("{}\n{}", result.summary, result.timeline),
    );
}
