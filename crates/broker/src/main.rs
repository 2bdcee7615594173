//! `kafka-server-start server.properties [--override key=value]...`

use std::process::ExitCode;

use config::{BrokerConfig, Properties};
use tracing::{Level, error};

const USAGE: &str = "USAGE: kafka-server-start server.properties [--override property=value]*";

fn main() -> ExitCode {
    config::init_logging(Level::INFO);
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut overrides = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--override" => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--override needs property=value\n{USAGE}"))?;
                overrides.push(value);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            _ if path.is_none() => path = Some(arg),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    let path = path.ok_or_else(|| USAGE.to_owned())?;
    let mut props = Properties::load(&path).map_err(|e| e.to_string())?;
    for item in overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("--override {item}: expected property=value"))?;
        props.set_from(key.trim(), value.trim(), "--override");
    }
    let config = BrokerConfig::from_properties(&props).map_err(|e| e.to_string())?;
    config::log_properties(&props, &config.warnings);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let broker = broker::start(config)
            .await
            .map_err(|e| format!("Fatal error during broker startup: {e}"))?;
        wait_for_signal().await;
        broker
            .shutdown()
            .await
            .map_err(|e| format!("Shutdown failed: {e}"))
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the broker can still be killed; waiting
        // forever keeps it serving.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
