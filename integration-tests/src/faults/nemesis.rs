//! The nemesis: faults chosen by a seeded generator, one at a time, each
//! held for a while and healed, with the cluster's recovery awaited before
//! the next (so at most one broker is ever down, the condition under which
//! DESIGN.md promises no acknowledged record is lost). Every step goes into
//! a [`Timeline`] with its time since the run started.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::cluster::{FaultCluster, SESSION_TIMEOUT_MS};
use super::proxy::Node;
use super::workload::Clients;

/// SplitMix64: a tiny seeded generator; a seed replays the same schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`low` if the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.range(low, high))
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9`, then a restart when healed.
    KillBroker(i32),
    /// SIGSTOP, held longer than the session timeout, then SIGCONT.
    PauseBroker(i32),
    /// Every link between the broker and the other brokers and the
    /// coordinator cut, both ways.
    IsolateBroker(i32),
    /// `kill -9` of the coordinator, then a restart.
    KillCoordinator,
    /// The broker's log dir filled to the last byte, then freed.
    DiskFull(i32),
    /// Every link of the broker (to brokers, coordinator and clients)
    /// delayed by this many milliseconds per chunk, both ways.
    SlowBroker(i32, u64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillBroker(id) => write!(f, "kill -9 broker-{id}"),
            Fault::PauseBroker(id) => write!(f, "SIGSTOP broker-{id}"),
            Fault::IsolateBroker(id) => write!(f, "isolate broker-{id}"),
            Fault::KillCoordinator => write!(f, "kill -9 coordinator"),
            Fault::DiskFull(id) => write!(f, "fill the disk of broker-{id}"),
            Fault::SlowBroker(id, ms) => write!(f, "delay every link of broker-{id} by {ms} ms"),
        }
    }
}

/// Timestamped events of a run.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    events: Vec<(Duration, String)>,
    faults: usize,
    /// Daemons that exited without the nemesis killing them.
    pub unexpected_exits: usize,
}

impl Timeline {
    pub fn new(started: Instant) -> Timeline {
        Timeline {
            started,
            events: Vec::new(),
            faults: 0,
            unexpected_exits: 0,
        }
    }

    pub fn log(&mut self, text: impl Into<String>) {
        let at = self.started.elapsed();
        let text = text.into();
        // Live as well, so a hung run shows how far it got.
        eprintln!("[{:7.1}s] {text}", at.as_secs_f64());
        self.events.push((at, text));
    }

    pub fn faults(&self) -> usize {
        self.faults
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, text) in &self.events {
            writeln!(f, "  {:7.1}s  {text}", at.as_secs_f64())?;
        }
        Ok(())
    }
}

/// How long the cluster may take to heal after a fault before the run
/// counts it as a failure.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs faults until `until`.
pub fn run(
    cluster: &mut FaultCluster,
    clients: &Clients,
    rng: &mut Rng,
    timeline: &mut Timeline,
    until: Instant,
) -> Result<()> {
    let brokers = cluster.broker_ids();
    let mut kinds = vec!["kill", "pause", "isolate", "coordinator", "slow"];
    if cluster.small_disk_broker().is_some() {
        kinds.push("disk");
    }
    loop {
        // Quiet between faults, so producers get going again.
        let quiet = rng.millis(1_000, 3_000);
        // A fault takes its hold plus a recovery; do not start one that
        // cannot finish in the time left.
        if Instant::now() + quiet + Duration::from_millis(SESSION_TIMEOUT_MS * 3) > until {
            return Ok(());
        }
        std::thread::sleep(quiet);
        let broker = brokers[rng.range(0, brokers.len() as u64) as usize];
        let fault = match kinds[rng.range(0, kinds.len() as u64) as usize] {
            "kill" => Fault::KillBroker(broker),
            "pause" => Fault::PauseBroker(broker),
            "isolate" => Fault::IsolateBroker(broker),
            "coordinator" => Fault::KillCoordinator,
            "slow" => Fault::SlowBroker(broker, rng.range(50, 400)),
            _ => Fault::DiskFull(cluster.small_disk_broker().unwrap_or(broker)),
        };
        // Longer than the session timeout, so the fault is noticed.
        let hold = rng.millis(SESSION_TIMEOUT_MS + 500, SESSION_TIMEOUT_MS * 3);
        timeline.faults += 1;
        timeline.log(format!("start: {fault} (for {:.1}s)", hold.as_secs_f64()));
        apply(cluster, fault, timeline)?;
        std::thread::sleep(hold);
        timeline.log(format!("  before healing: {}", clients.cluster_state()));
        heal(cluster, fault, timeline)?;
        restart_exited(cluster, timeline)?;
        let took = clients
            .await_healthy(&brokers, RECOVERY_TIMEOUT)
            .with_context(|| format!("after {fault}"))?;
        timeline.log(format!(
            "healthy again {:.1}s after healing (every broker active, every ISR full)",
            took.as_secs_f64()
        ));
    }
}

fn apply(cluster: &mut FaultCluster, fault: Fault, timeline: &mut Timeline) -> Result<()> {
    match fault {
        Fault::KillBroker(id) => cluster.broker_mut(id)?.kill9(),
        Fault::PauseBroker(id) => cluster.broker_mut(id)?.pause(),
        Fault::IsolateBroker(id) => {
            let others = peers(cluster, id);
            cluster.network().isolate(Node::Broker(id), &others);
            Ok(())
        }
        Fault::SlowBroker(id, ms) => {
            let mut others = peers(cluster, id);
            others.push(Node::Client);
            cluster
                .network()
                .slow_down(Node::Broker(id), &others, Duration::from_millis(ms));
            Ok(())
        }
        Fault::KillCoordinator => cluster.coordinator_mut()?.kill9(),
        Fault::DiskFull(_) => {
            let written = cluster.fill_disk()?;
            timeline.log(format!("  disk filled with {} MiB", written >> 20));
            Ok(())
        }
    }
}

/// The other brokers and the coordinator.
fn peers(cluster: &FaultCluster, id: i32) -> Vec<Node> {
    cluster
        .broker_ids()
        .into_iter()
        .filter(|b| *b != id)
        .map(Node::Broker)
        .chain([Node::Coordinator])
        .collect()
}

fn heal(cluster: &mut FaultCluster, fault: Fault, timeline: &mut Timeline) -> Result<()> {
    match fault {
        Fault::KillBroker(id) => cluster.restart_broker(id)?,
        Fault::PauseBroker(id) => cluster.broker_mut(id)?.resume()?,
        Fault::IsolateBroker(_) | Fault::SlowBroker(..) => cluster.network().heal(),
        Fault::KillCoordinator => cluster.restart_coordinator()?,
        Fault::DiskFull(_) => cluster.free_disk()?,
    }
    timeline.log(format!("heal:  {fault}"));
    Ok(())
}

/// Restarts any daemon that exited on its own and notes it.
fn restart_exited(cluster: &mut FaultCluster, timeline: &mut Timeline) -> Result<()> {
    if !cluster.coordinator_running() {
        timeline.unexpected_exits += 1;
        timeline.log("  the coordinator had exited on its own; restarting it");
        cluster.restart_coordinator()?;
    }
    for id in cluster.broker_ids() {
        if !cluster.broker_running(id) {
            timeline.unexpected_exits += 1;
            let last = cluster.broker_log_tail(id, 3);
            timeline.log(format!(
                "  broker-{id} had exited on its own; its last lines:\n{last}\n  restarting it"
            ));
            cluster.restart_broker(id)?;
        }
    }
    Ok(())
}
