//! A cluster wired through the fault-injecting [`Network`]: every daemon
//! advertises its proxy (brokers through `advertised.listeners`, the
//! coordinator through each broker's `zookeeper.connect`), so clients,
//! brokers and the coordinator reach each other only through proxies.
//! Processes keep their ports across restarts. One broker's log dir may sit
//! on a small tmpfs so that the nemesis can fill its disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::{Context, Result, anyhow};

use super::proxy::{Network, Node};
use crate::{
    BROKER_LISTENING, BROKER_STARTED, COORDINATOR_READY, Process, READY_TIMEOUT, append_property,
    refuse_ignored_settings, start_daemon, workspace_root,
};

/// How long a broker's coordinator session lasts without a heartbeat. Short,
/// so that pauses and cuts longer than it fit in a CI run.
pub const SESSION_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug)]
struct Daemon {
    process: Option<Process>,
    /// The port the daemon binds (0 until its first start).
    port: Arc<AtomicU16>,
    /// The port everyone else uses: its proxy's.
    proxy_port: u16,
    config_path: PathBuf,
    starts: usize,
}

/// The tmpfs under one broker's log dir.
#[derive(Debug)]
struct SmallDisk {
    broker: i32,
    mount_point: PathBuf,
}

/// A coordinator and brokers behind proxies, in a temp dir.
#[derive(Debug)]
pub struct FaultCluster {
    /// `None` once kept for a post-mortem.
    dir: Option<tempfile::TempDir>,
    network: Network,
    coordinator: Daemon,
    brokers: BTreeMap<i32, Daemon>,
    small_disk: Option<SmallDisk>,
}

impl FaultCluster {
    /// Starts a coordinator and `n` brokers (ids 0..n). With
    /// `small_disk_broker`, that broker's log dir is a tmpfs of
    /// `small_disk_mb` (needs root; without it, no tmpfs and the returned
    /// cluster has `small_disk_broker() == None`).
    pub fn start(n: i32, small_disk: Option<(i32, u64)>) -> Result<FaultCluster> {
        let dir = tempfile::Builder::new()
            .prefix("kafka-rs-faults")
            .tempdir()?;
        let network = Network::new()?;
        let coordinator_port = Arc::new(AtomicU16::new(0));
        let coordinator_proxy = network.proxy(Node::Coordinator, coordinator_port.clone())?;
        let coordinator_config = dir.path().join("zookeeper.properties");
        fs::write(
            &coordinator_config,
            format!(
                // tickTime bounds session timeouts to 2..20 ticks, as in
                // ZooKeeper: 500 ms lets brokers ask for SESSION_TIMEOUT_MS.
                // Preferred leaders move back within seconds of a heal, so
                // runs see those leader changes too.
                "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
                 tickTime=500\nleader.imbalance.check.interval.seconds=5\n",
                dir.path().join("zookeeper").display()
            ),
        )?;
        let mut cluster = FaultCluster {
            dir: Some(dir),
            network,
            coordinator: Daemon {
                process: None,
                port: coordinator_port,
                proxy_port: coordinator_proxy,
                config_path: coordinator_config,
                starts: 0,
            },
            brokers: BTreeMap::new(),
            small_disk: None,
        };
        if let Some((broker, size_mb)) = small_disk {
            cluster.small_disk = mount_small_disk(&cluster.broker_log_dir(broker), broker, size_mb);
        }
        cluster.start_coordinator()?;
        let base = fs::read_to_string(workspace_root().join("config/server.properties"))?;
        for id in 0..n {
            let port = Arc::new(AtomicU16::new(0));
            let proxy_port = cluster.network.proxy(Node::Broker(id), port.clone())?;
            let config_path = cluster.dir().join(format!("server-{id}.properties"));
            let mut text = base.clone();
            text.push_str("\n# Set by the fault-injection harness:\n");
            for (key, value) in [
                ("broker.id", id.to_string()),
                ("listeners", "PLAINTEXT://127.0.0.1:0".to_owned()),
                (
                    "advertised.listeners",
                    format!("PLAINTEXT://127.0.0.1:{proxy_port}"),
                ),
                ("log.dirs", cluster.broker_log_dir(id).display().to_string()),
                (
                    "zookeeper.connect",
                    format!("127.0.0.1:{}", cluster.coordinator.proxy_port),
                ),
                (
                    "zookeeper.session.timeout.ms",
                    SESSION_TIMEOUT_MS.to_string(),
                ),
                ("zookeeper.connection.timeout.ms", "2000".to_owned()),
                ("replica.lag.time.max.ms", "3000".to_owned()),
                ("default.replication.factor", "3".to_owned()),
                ("min.insync.replicas", "2".to_owned()),
                ("log.segment.bytes", "1048576".to_owned()),
                ("auto.create.topics.enable", "false".to_owned()),
            ] {
                text.push_str(&format!("{key}={value}\n"));
            }
            fs::write(&config_path, text)?;
            cluster.brokers.insert(
                id,
                Daemon {
                    process: None,
                    port,
                    proxy_port,
                    config_path,
                    starts: 0,
                },
            );
        }
        for id in 0..n {
            cluster.spawn_broker(id)?;
        }
        for id in 0..n {
            cluster.wait_broker_started(id)?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The broker whose log dir is a tmpfs, if one is.
    pub fn small_disk_broker(&self) -> Option<i32> {
        self.small_disk.as_ref().map(|d| d.broker)
    }

    pub fn broker_log_dir(&self, id: i32) -> PathBuf {
        self.dir().join(format!("kafka-logs-{id}"))
    }

    /// Every broker's proxy address, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .values()
            .map(|d| format!("127.0.0.1:{}", d.proxy_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The coordinator's proxy address, for `--zookeeper` style clients.
    pub fn zookeeper_connect(&self) -> String {
        format!("127.0.0.1:{}", self.coordinator.proxy_port)
    }

    fn start_coordinator(&mut self) -> Result<()> {
        self.coordinator.starts += 1;
        let log = self
            .dir()
            .join(format!("zookeeper-{}.log", self.coordinator.starts));
        let network = &self.network;
        let (process, port) = start_daemon(
            "zookeeper",
            "zookeeper-server-start",
            &self.coordinator.config_path,
            &log,
            COORDINATOR_READY,
            |p| network.register(p.pid() as u32, Node::Coordinator),
        )?;
        if self.coordinator.port.swap(port, Ordering::SeqCst) == 0 {
            append_property(
                &self.coordinator.config_path,
                "clientPort",
                &port.to_string(),
            )?;
        }
        self.coordinator.process = Some(process);
        Ok(())
    }

    fn spawn_broker(&mut self, id: i32) -> Result<()> {
        let dir = self.dir().to_path_buf();
        let daemon = self
            .brokers
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no broker {id}"))?;
        daemon.starts += 1;
        let log = dir.join(format!("broker-{id}-{}.log", daemon.starts));
        let network = &self.network;
        let (process, port) = start_daemon(
            &format!("broker-{id}"),
            "kafka-server-start",
            &daemon.config_path,
            &log,
            BROKER_LISTENING,
            |p| network.register(p.pid() as u32, Node::Broker(id)),
        )?;
        if daemon.port.swap(port, Ordering::SeqCst) == 0 {
            append_property(
                &daemon.config_path,
                "listeners",
                &format!("PLAINTEXT://127.0.0.1:{port}"),
            )?;
        }
        daemon.process = Some(process);
        Ok(())
    }

    fn wait_broker_started(&mut self, id: i32) -> Result<()> {
        let process = self.broker_mut(id)?;
        process.wait_for_line(BROKER_STARTED, READY_TIMEOUT)?;
        refuse_ignored_settings(process)
    }

    pub fn broker_mut(&mut self, id: i32) -> Result<&mut Process> {
        self.brokers
            .get_mut(&id)
            .and_then(|d| d.process.as_mut())
            .ok_or_else(|| anyhow!("broker {id} is not running"))
    }

    pub fn coordinator_mut(&mut self) -> Result<&mut Process> {
        self.coordinator
            .process
            .as_mut()
            .ok_or_else(|| anyhow!("the coordinator is not running"))
    }

    /// Whether the broker's process is alive (a paused one is).
    pub fn broker_running(&mut self, id: i32) -> bool {
        self.brokers
            .get_mut(&id)
            .and_then(|d| d.process.as_mut())
            .is_some_and(Process::is_running)
    }

    pub fn coordinator_running(&mut self) -> bool {
        self.coordinator
            .process
            .as_mut()
            .is_some_and(Process::is_running)
    }

    /// The last lines of a broker's current log (for the timeline, when a
    /// broker exits on its own).
    pub fn broker_log_tail(&self, id: i32, n: usize) -> String {
        self.brokers
            .get(&id)
            .and_then(|d| d.process.as_ref())
            .map(|p| p.log_tail(n))
            .unwrap_or_default()
    }

    /// Starts a broker again (killing what is left of it) and waits until it
    /// is registered and unfenced.
    pub fn restart_broker(&mut self, id: i32) -> Result<()> {
        if let Some(daemon) = self.brokers.get_mut(&id)
            && let Some(mut old) = daemon.process.take()
        {
            // A paused process would ignore everything but SIGKILL anyway.
            old.kill9()?;
        }
        self.spawn_broker(id)?;
        self.wait_broker_started(id)
    }

    pub fn restart_coordinator(&mut self) -> Result<()> {
        if let Some(mut old) = self.coordinator.process.take() {
            old.kill9()?;
        }
        self.start_coordinator()
    }

    /// Fills the small disk up to the last byte; returns the bytes written.
    pub fn fill_disk(&self) -> Result<u64> {
        let disk = self
            .small_disk
            .as_ref()
            .ok_or_else(|| anyhow!("no small disk mounted"))?;
        let path = disk.mount_point.join(FILLER);
        let mut file =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            use std::io::Write;
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
        Ok(written)
    }

    /// Frees what [`FaultCluster::fill_disk`] took.
    pub fn free_disk(&self) -> Result<()> {
        if let Some(disk) = &self.small_disk {
            let path = disk.mount_point.join(FILLER);
            if path.exists() {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Keeps the directory (logs and data) after the cluster is dropped and
    /// returns where it is.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(disk) = &self.small_disk {
            // The tmpfs goes away with the cluster: copy its data out first.
            let saved = self.dir().join(format!("kafka-logs-{}.saved", disk.broker));
            let _ = Command::new("cp")
                .arg("-a")
                .arg(&disk.mount_point)
                .arg(&saved)
                .status();
        }
        match self.dir.take() {
            Some(dir) => dir.keep(),
            None => PathBuf::from("/nonexistent"),
        }
    }

    /// The log files of every process, restarts included.
    pub fn log_files(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.dir())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }
}

/// The file that fills the small disk.
const FILLER: &str = "disk-filler";

fn mount_small_disk(mount_point: &Path, broker: i32, size_mb: u64) -> Option<SmallDisk> {
    if !is_root() {
        eprintln!(
            "disk-full fault skipped: mounting a tmpfs for broker {broker}'s log dir needs root"
        );
        return None;
    }
    if let Err(e) = fs::create_dir_all(mount_point) {
        eprintln!("disk-full fault skipped: {}: {e}", mount_point.display());
        return None;
    }
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
        .arg(mount_point)
        .status();
    match status {
        Ok(s) if s.success() => Some(SmallDisk {
            broker,
            mount_point: mount_point.to_owned(),
        }),
        other => {
            eprintln!(
                "disk-full fault skipped: mount -t tmpfs on {} failed ({other:?})",
                mount_point.display()
            );
            None
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        for daemon in self.brokers.values_mut() {
            if let Some(mut p) = daemon.process.take() {
                let _ = p.kill9();
            }
        }
        if let Some(mut p) = self.coordinator.process.take() {
            let _ = p.kill9();
        }
        if let Some(disk) = &self.small_disk {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&disk.mount_point)
                .status();
        }
    }
}
