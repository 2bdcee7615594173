//! `zookeeper-server-start zookeeper.properties`: reads the configuration,
//! binds `clientPortAddress:clientPort` and runs the coordinator until
//! SIGTERM or SIGINT (exit 0). Anything that stops it from starting, or a
//! fatal error later, is one line on stderr and exit status 1.

use std::process::ExitCode;

use anyhow::Context;
use coordinator::Settings;
use tracing::{error, info};

fn main() -> ExitCode {
    config::init_logging(tracing::Level::INFO);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("USAGE: zookeeper-server-start zookeeper.properties");
        return ExitCode::FAILURE;
    };
    match start(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many errors
/// already print their source in their own message.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn start(path: &str) -> anyhow::Result<()> {
    info!("Reading configuration from: {path}");
    let properties = config::Properties::load(path)?;
    let zookeeper = config::CoordinatorConfig::from_properties(&properties)?;
    config::log_properties(&properties, &zookeeper.warnings);
    if properties.keys().any(|key| key.starts_with("autopurge.")) {
        info!(
            "autopurge.* has no effect: the coordinator keeps its latest snapshot and deletes the log it covers"
        );
    }
    let settings = Settings::from_config(&zookeeper);
    let bind_address = zookeeper.bind_address();

    // Two worker threads: the coordinator's work is small and bursty, and
    // fsyncs run on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Signal handlers first, so that a SIGTERM sent as soon as the port
        // is open is a graceful stop.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(&bind_address)
            .await
            .with_context(|| format!("cannot bind clientPortAddress:clientPort {bind_address}"))?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        info!("binding to port {}", coordinator::describe_bind(local));
        coordinator::run(settings, listener, shutdown).await?;
        Ok(())
    })
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => info!("Received SIGTERM"),
            _ = interrupt.recv() => info!("Received SIGINT"),
        }
    })
}
