//! The test harness: starts the project's real binaries as processes, in
//! temp dirs on ports the kernel picks, waits for their readiness lines (not
//! for time to pass), keeps every process's log and prints them when a test
//! fails, and kills everything on drop.
//!
//! Binaries are built once per test process with `cargo build --bins`, so a
//! test never runs a stale binary.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub mod faults;

/// Generous bound for a process to reach a readiness line on a loaded
/// 2-core machine. Tests wait for the line itself; this only bounds a hang.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory holding the freshly built binaries.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let profile_release = std::env::current_exe()
            .ok()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "release"));
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .current_dir(&root)
            .args(["build", "--quiet", "--workspace", "--bins"]);
        if profile_release {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("cargo build of the binaries could not start");
        assert!(status.success(), "cargo build of the binaries failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join(if profile_release { "release" } else { "debug" })
    })
}

pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

#[derive(Debug, Default)]
struct LogBuffer {
    lines: Mutex<Vec<String>>,
    /// Indexes into `lines` of the lines that came from stdout.
    stdout: Mutex<Vec<usize>>,
    changed: Condvar,
    streams_open: Mutex<usize>,
}

impl LogBuffer {
    fn push(&self, line: String, from_stdout: bool) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if from_stdout {
            self.stdout
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(lines.len());
        }
        lines.push(line);
        drop(lines);
        self.changed.notify_all();
    }

    fn close_stream(&self) {
        *self.streams_open.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.changed.notify_all();
    }

    fn open_streams(&self) -> usize {
        *self.streams_open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A child process with its output captured line by line (and copied to a
/// log file).
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: Arc<LogBuffer>,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr captured into
    /// `log_path`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log_path: &Path) -> Result<Process> {
        Process::spawn_inner(name, program, args, log_path, false)
    }

    fn spawn_inner(
        name: &str,
        program: &Path,
        args: &[String],
        log_path: &Path,
        piped_stdin: bool,
    ) -> Result<Process> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let log = Arc::new(LogBuffer::default());
        *log.streams_open.lock().unwrap_or_else(|e| e.into_inner()) = 2;
        let file = Arc::new(Mutex::new(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .with_context(|| format!("opening {}", log_path.display()))?,
        ));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (stream, from_stdout) in [(stdout, true), (stderr, false)] {
            let Some(stream) = stream else { continue };
            let log = log.clone();
            let file = file.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    log.push(line, from_stdout);
                }
                log.close_stream();
            });
        }
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
            log_path: log_path.to_owned(),
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every line the process has written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the first line at or after line `from` containing `needle`
    /// and returns it. Fails early if the process exits first.
    /// The lines the process wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let lines = self.log.lines.lock().unwrap_or_else(|e| e.into_inner());
        let stdout = self.log.stdout.lock().unwrap_or_else(|e| e.into_inner());
        stdout
            .iter()
            .filter_map(|&i| lines.get(i).cloned())
            .collect()
    }

    /// Starts a long-running tool (a console consumer, say) of this build.
    pub fn tool(name: &str, args: &[&str], log_path: &Path) -> Result<Process> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Process::spawn(name, &binary(name), &args, log_path)
    }

    /// Starts a tool whose stdin the test writes (a console producer fed
    /// line by line); close it by dropping the returned handle.
    pub fn tool_with_stdin(
        name: &str,
        args: &[&str],
        log_path: &Path,
    ) -> Result<(Process, std::process::ChildStdin)> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut process = Process::spawn_inner(name, &binary(name), &args, log_path, true)?;
        let stdin = process
            .child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin pipe for {name}"))?;
        Ok((process, stdin))
    }

    pub fn wait_for_line_from(
        &mut self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = lines.iter().skip(from).find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(lines);
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            if self.log.open_streams() == 0 {
                drop(lines);
                let status = self.child.wait().ok();
                bail!(
                    "{} exited ({status:?}) before logging {needle:?}; its log:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            lines = self
                .log
                .changed
                .wait_timeout(lines, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_line_from(0, needle, timeout)
    }

    pub fn line_count(&self) -> usize {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }

    pub fn signal(&self, signal: i32) -> Result<()> {
        // SAFETY: kill(2) with the pid of a child this struct owns and has
        // not reaped (reaping happens only in `wait`, which records it).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.pid(), signal) };
        if rc != 0 {
            bail!(
                "kill({}, {signal}) failed: {}",
                self.pid(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Result<()> {
        if self.exit.is_none() {
            self.signal(libc::SIGKILL)?;
            self.wait(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if self.exit.is_none() {
            self.signal(libc::SIGTERM)?;
        }
        self.wait(timeout)
    }

    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exit = Some(status);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            // Polling a child's exit has no readiness signal short of
            // SIGCHLD handling; a short poll is the honest way here.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            // Reaped here, so remember it: signalling the pid later would
            // fail (or reach another process that took the pid).
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Err(_) => false,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of running a tool to completion.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// `output` if the tool succeeded, else an error with its status and both
/// streams (for tests that only go on after a successful tool).
pub fn ok(output: ToolOutput) -> Result<ToolOutput> {
    if !output.success() {
        bail!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            output.stdout,
            output.stderr
        );
    }
    Ok(output)
}

/// Runs a tool binary with `args` and `stdin`, with a time limit.
pub fn run_tool(
    name: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<ToolOutput> {
    let mut command = Command::new(binary(name));
    command.args(args);
    run_command(&mut command, stdin, timeout)
}

/// Runs any prepared command (program, arguments, environment, working
/// directory) to completion with `stdin`, capturing stdout and stderr, with a
/// time limit: for the external programs a test drives (docker, scripts).
/// On timeout the command is killed and its stderr so far is in the error.
pub fn run_command(
    command: &mut Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<ToolOutput> {
    let described = format!(
        "{} {:?}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    );
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {described}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let (err_sender, err_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = err_sender.send(read_all(stderr));
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // A grandchild may still hold the pipe open; do not wait on it
            // for long.
            let stderr = err_receiver
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            bail!("{described} did not finish within {timeout:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(ToolOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_receiver.recv().unwrap_or_default(),
    })
}

fn read_all(mut stream: impl Read) -> String {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The line a coordinator logs once it serves, with the bound port.
pub const COORDINATOR_READY: &str = "binding to port ";
/// The line a broker logs per listener, with the bound address.
pub const BROKER_LISTENING: &str = "Awaiting socket connections on ";
/// The line a broker logs once registered and unfenced.
pub const BROKER_STARTED: &str = "], started";

fn port_after(line: &str, marker: &str) -> Result<u16> {
    let rest = line
        .split(marker)
        .nth(1)
        .ok_or_else(|| anyhow!("no {marker:?} in {line:?}"))?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '(')
        .collect();
    let addr = addr.trim_end_matches('.');
    let port = addr
        .rsplit(':')
        .next()
        .ok_or_else(|| anyhow!("no port in {line:?}"))?;
    port.parse()
        .with_context(|| format!("port {port:?} in {line:?}"))
}

/// Starts the daemon binary `program` on its properties file `config`,
/// logging to `log`, and waits for its `ready` line, which names the port
/// it bound. `spawned` sees the process before it is ready.
pub(crate) fn start_daemon(
    name: &str,
    program: &str,
    config: &Path,
    log: &Path,
    ready: &str,
    spawned: impl FnOnce(&Process),
) -> Result<(Process, u16)> {
    let mut process = Process::spawn(name, &binary(program), &[config.display().to_string()], log)?;
    spawned(&process);
    let line = process.wait_for_line(ready, READY_TIMEOUT)?;
    let port = port_after(&line, ready)?;
    refuse_ignored_settings(&process)?;
    Ok((process, port))
}

/// Appends `key=value` to a properties file; the last value of a key wins,
/// so this pins a port learnt at the first start for every restart.
pub(crate) fn append_property(path: &Path, key: &str, value: &str) -> Result<()> {
    let mut text =
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.push_str(&format!("{key}={value}\n"));
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A setting the daemon warned about (`Property x is not valid`) is one the
/// test believes it made and did not: refuse to go on.
pub(crate) fn refuse_ignored_settings(process: &Process) -> Result<()> {
    let unknown: Vec<String> = process
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("is not valid"))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{} ignored configuration the test set: {unknown:?}",
            process.name()
        );
    }
    Ok(())
}

#[derive(Debug)]
struct BrokerSlot {
    process: Option<Process>,
    config_path: PathBuf,
    port: u16,
    starts: usize,
}

/// A coordinator and brokers running as real processes in a temp dir.
#[derive(Debug)]
pub struct Cluster {
    /// `None` only while dropping (kept for a post-mortem after a failure).
    dir: Option<tempfile::TempDir>,
    coordinator: Option<Process>,
    coordinator_config: PathBuf,
    coordinator_port: u16,
    coordinator_starts: usize,
    brokers: BTreeMap<i32, BrokerSlot>,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// Base properties file per broker id (default: the repo's
    /// config/server.properties with broker.id replaced).
    pub broker_configs: Vec<(i32, Option<PathBuf>)>,
    pub broker_overrides: Vec<(String, String)>,
    pub coordinator_overrides: Vec<(String, String)>,
}

impl ClusterSpec {
    /// `n` brokers with ids 0..n from config/server.properties.
    pub fn brokers(n: i32) -> ClusterSpec {
        ClusterSpec {
            broker_configs: (0..n).map(|id| (id, None)).collect(),
            ..ClusterSpec::default()
        }
    }

    pub fn broker_property(mut self, key: &str, value: &str) -> Self {
        self.broker_overrides.push((key.into(), value.into()));
        self
    }

    pub fn coordinator_property(mut self, key: &str, value: &str) -> Self {
        self.coordinator_overrides.push((key.into(), value.into()));
        self
    }
}

impl Cluster {
    /// A coordinator and `n` brokers (ids 0..n), all started and unfenced.
    pub fn start(n: i32) -> Result<Cluster> {
        Cluster::start_spec(&ClusterSpec::brokers(n))
    }

    pub fn start_spec(spec: &ClusterSpec) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("kafka-rs-test").tempdir()?;
        let coordinator_config = dir.path().join("zookeeper.properties");
        let mut zk = format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n",
            dir.path().join("zookeeper").display()
        );
        for (k, v) in &spec.coordinator_overrides {
            zk.push_str(&format!("{k}={v}\n"));
        }
        fs::write(&coordinator_config, zk)?;
        let mut cluster = Cluster {
            dir: Some(dir),
            coordinator: None,
            coordinator_config,
            coordinator_port: 0,
            coordinator_starts: 0,
            brokers: BTreeMap::new(),
        };
        cluster.start_coordinator()?;
        for (id, base) in &spec.broker_configs {
            let base = base
                .clone()
                .unwrap_or_else(|| workspace_root().join("config/server.properties"));
            let mut text =
                fs::read_to_string(&base).with_context(|| format!("reading {}", base.display()))?;
            text.push_str("\n# Redirected by the test harness:\n");
            text.push_str(&format!("broker.id={id}\n"));
            text.push_str("listeners=PLAINTEXT://127.0.0.1:0\n");
            text.push_str(&format!(
                "log.dirs={}\n",
                cluster.dir().join(format!("kafka-logs-{id}")).display()
            ));
            text.push_str(&format!(
                "zookeeper.connect=127.0.0.1:{}\n",
                cluster.coordinator_port
            ));
            for (k, v) in &spec.broker_overrides {
                text.push_str(&format!("{k}={v}\n"));
            }
            let config_path = cluster.dir().join(format!("server-{id}.properties"));
            fs::write(&config_path, text)?;
            cluster.brokers.insert(
                *id,
                BrokerSlot {
                    process: None,
                    config_path,
                    port: 0,
                    starts: 0,
                },
            );
        }
        let ids: Vec<i32> = cluster.brokers.keys().copied().collect();
        for id in &ids {
            cluster.spawn_broker(*id)?;
        }
        for id in ids {
            cluster.wait_broker_started(id)?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    fn start_coordinator(&mut self) -> Result<()> {
        self.coordinator_starts += 1;
        let log = self
            .dir()
            .join(format!("zookeeper-{}.log", self.coordinator_starts));
        let (process, port) = start_daemon(
            "zookeeper",
            "zookeeper-server-start",
            &self.coordinator_config,
            &log,
            COORDINATOR_READY,
            |_| {},
        )?;
        if self.coordinator_port == 0 {
            // Later restarts keep the port, as a user's coordinator would.
            self.coordinator_port = port;
            append_property(&self.coordinator_config, "clientPort", &port.to_string())?;
        }
        self.coordinator = Some(process);
        Ok(())
    }

    fn spawn_broker(&mut self, id: i32) -> Result<()> {
        let dir = self.dir().to_path_buf();
        let slot = self
            .brokers
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no broker {id}"))?;
        slot.starts += 1;
        let log = dir.join(format!("broker-{id}-{}.log", slot.starts));
        let (process, port) = start_daemon(
            &format!("broker-{id}"),
            "kafka-server-start",
            &slot.config_path,
            &log,
            BROKER_LISTENING,
            |_| {},
        )?;
        if slot.port == 0 {
            slot.port = port;
            append_property(
                &slot.config_path,
                "listeners",
                &format!("PLAINTEXT://127.0.0.1:{port}"),
            )?;
        }
        slot.process = Some(process);
        Ok(())
    }

    fn wait_broker_started(&mut self, id: i32) -> Result<()> {
        let process = self.broker_mut(id)?;
        process.wait_for_line(BROKER_STARTED, READY_TIMEOUT)?;
        refuse_ignored_settings(process)
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    pub fn broker_port(&self, id: i32) -> Option<u16> {
        self.brokers.get(&id).map(|s| s.port)
    }

    pub fn broker_config_path(&self, id: i32) -> Option<&Path> {
        self.brokers.get(&id).map(|s| s.config_path.as_path())
    }

    pub fn broker_log_dir(&self, id: i32) -> PathBuf {
        self.dir().join(format!("kafka-logs-{id}"))
    }

    pub fn broker_mut(&mut self, id: i32) -> Result<&mut Process> {
        self.brokers
            .get_mut(&id)
            .and_then(|s| s.process.as_mut())
            .ok_or_else(|| anyhow!("broker {id} is not running"))
    }

    pub fn coordinator_mut(&mut self) -> Result<&mut Process> {
        self.coordinator
            .as_mut()
            .ok_or_else(|| anyhow!("the coordinator is not running"))
    }

    /// `127.0.0.1:<port>` of the coordinator, for `--zookeeper`.
    pub fn zookeeper_connect(&self) -> String {
        format!("127.0.0.1:{}", self.coordinator_port)
    }

    /// Every broker's address, for `--bootstrap-server` / `--broker-list`.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .values()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill_broker(&mut self, id: i32) -> Result<()> {
        self.broker_mut(id)?.kill9()
    }

    /// SIGTERM; returns the exit status.
    pub fn stop_broker(&mut self, id: i32) -> Result<ExitStatus> {
        self.broker_mut(id)?.terminate(Duration::from_secs(30))
    }

    /// Starts a stopped or killed broker again and waits until it is unfenced.
    pub fn restart_broker(&mut self, id: i32) -> Result<()> {
        if let Some(slot) = self.brokers.get_mut(&id)
            && let Some(mut old) = slot.process.take()
            && old.is_running()
        {
            old.kill9()?;
        }
        self.spawn_broker(id)?;
        self.wait_broker_started(id)
    }

    pub fn kill_coordinator(&mut self) -> Result<()> {
        self.coordinator_mut()?.kill9()
    }

    pub fn restart_coordinator(&mut self) -> Result<()> {
        if let Some(mut old) = self.coordinator.take()
            && old.is_running()
        {
            old.kill9()?;
        }
        self.start_coordinator()
    }

    /// Runs a tool to completion (60 s limit).
    pub fn tool(&self, name: &str, args: &[&str]) -> Result<ToolOutput> {
        run_tool(name, args, None, Duration::from_secs(60))
    }

    pub fn tool_with_stdin(&self, name: &str, args: &[&str], stdin: &str) -> Result<ToolOutput> {
        run_tool(name, args, Some(stdin), Duration::from_secs(60))
    }

    /// Prints the tail of every process log of this cluster, restarted
    /// processes' earlier logs included.
    fn dump_logs(&self) {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let mut out = String::new();
        for path in logs {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(200);
            out.push_str(&format!(
                "===== {}\n{}\n",
                path.display(),
                lines[start..].join("\n")
            ));
        }
        eprintln!("{out}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Always: the test runner shows a test's output only when it fails,
        // and a test that returns Err is a failure Drop cannot tell apart.
        self.dump_logs();
        if std::thread::panicking() {
            // Keep the directory for a post-mortem.
            if let Some(dir) = self.dir.take() {
                eprintln!("test logs and data kept in {}", dir.keep().display());
            }
        }
        for slot in self.brokers.values_mut() {
            if let Some(mut p) = slot.process.take() {
                let _ = p.kill9();
            }
        }
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill9();
        }
    }
}

/// Polls `condition` until it holds. For state that has no push signal a
/// test can await (a cluster's view converging after a failure); the poll
/// interval is short and the timeout only bounds a hang.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// gRPC clients for tests that talk to the daemons directly.
pub mod grpc {
    use std::time::Duration;

    use protocol::broker::broker_client::BrokerClient;
    use protocol::coordinator::coordinator_client::CoordinatorClient;
    use tonic::transport::{Channel, Endpoint};

    fn channel(address: &str) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy())
    }

    pub fn broker(address: &str) -> anyhow::Result<BrokerClient<Channel>> {
        Ok(BrokerClient::new(channel(address)?)
            .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES))
    }

    pub fn coordinator(address: &str) -> anyhow::Result<CoordinatorClient<Channel>> {
        Ok(CoordinatorClient::new(channel(address)?)
            .max_decoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(protocol::MAX_GRPC_MESSAGE_BYTES))
    }
}

/// Record batches for tests that speak the broker's gRPC API directly.
pub mod batches {
    use bytes::Bytes;
    use records::RecordBatchBuilder;

    /// One uncompressed batch holding `values`, in order.
    pub fn of<S: AsRef<str>>(values: &[S]) -> Bytes {
        let mut builder = RecordBatchBuilder::default();
        for v in values {
            builder.append(1_700_000_000_000, None, Some(v.as_ref().as_bytes()), &[]);
        }
        builder.finish()
    }

    /// The values of every record in back-to-back uncompressed batches (a
    /// fetch answer), stopping at a partial batch.
    pub fn values(records: &Bytes) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            let Some(size) = records::peek_batch_size(&records[pos..]) else {
                break;
            };
            if pos + size > records.len() {
                break;
            }
            let batch = records.slice(pos..pos + size);
            let Ok((_, decoded)) =
                records::decode_batch(&batch, |_, _| Err::<Vec<u8>, _>("no codec"))
            else {
                break;
            };
            out.extend(
                decoded
                    .into_iter()
                    .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned()),
            );
            pos += size;
        }
        out
    }
}
