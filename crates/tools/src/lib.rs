//! Kafka's command-line tools as thin front-ends over the `client` crate:
//! `kafka-topics`, `kafka-console-producer`, `kafka-console-consumer` and
//! the performance tools `kafka-producer-perf-test`,
//! `kafka-consumer-perf-test` and `kafka-e2e-latency`, with Kafka's option
//! names, output and exit codes.
//!
//! Each tool is a module with a clap argument struct, a validation step
//! that gives Kafka's one-line messages, and a `run` that writes to the
//! streams it is given (so tests can read them). The binaries in `src/bin`
//! only parse arguments, set up logging, run, and turn the outcome into an
//! exit status. Nothing here talks to a server except through `client`.

pub mod console_consumer;
pub mod console_producer;
pub mod consumer_perf;
pub mod e2e_latency;
pub mod perf;
pub mod producer_perf;
pub mod topics;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

/// Why a tool stopped.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong; the message says how.
    Usage(String),
    /// The command ran and failed.
    Command(anyhow::Error),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    /// Prints the failure as the tools do (a usage message as it is, a
    /// command error after `ERROR`) and gives exit status 1.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(message) => eprintln!("{message}"),
            Failure::Command(err) => eprintln!("ERROR {err:#}"),
        }
        ExitCode::FAILURE
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Command(err)
    }
}

impl From<client::ClientError> for Failure {
    fn from(err: client::ClientError) -> Self {
        Failure::Command(err.into())
    }
}

/// Parses a tool's arguments. `--help` prints and exits 0; anything else
/// clap refuses becomes one line on stderr and exit status 1.
pub fn parse_args<T: Parser>(args: impl IntoIterator<Item = OsString>) -> Result<T, ExitCode> {
    match T::try_parse_from(args) {
        Ok(parsed) => Ok(parsed),
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            Err(ExitCode::SUCCESS)
        }
        Err(err) => {
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{}", capitalize_error(line));
            Err(ExitCode::FAILURE)
        }
    }
}

/// clap's `error: ...` reads as `Error: ...`, the form every tool uses.
fn capitalize_error(line: &str) -> String {
    match line.strip_prefix("error: ") {
        Some(rest) => format!("Error: {rest}"),
        None => line.to_owned(),
    }
}

/// Splits each `key=value` (`--config`, `--property`,
/// `--producer-property`); `what` names the option in the error.
pub fn parse_key_values(entries: &[String], what: &str) -> Result<Vec<(String, String)>, Failure> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.to_owned()))
            }
            _ => Err(Failure::usage(format!(
                "Invalid {what}: all {what}s must be in the format \"key=val\", got \"{entry}\"."
            ))),
        })
        .collect()
}

/// A client properties file (`--producer.config`, `--consumer.config`,
/// `--command-config`) as key/value pairs in file order.
pub fn load_properties(path: &Path) -> Result<Vec<(String, String)>, Failure> {
    let properties =
        config::Properties::load(path).map_err(|err| Failure::Usage(err.to_string()))?;
    Ok(properties
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect())
}

/// The runtime every tool runs on: two workers are plenty for one client.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, the signals that end a console
/// tool cleanly. If a handler cannot be installed, that signal keeps its
/// default action (the process dies), which is the best left to do.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs a tool whose output goes to standard output: parse, run on the
/// tools' runtime, and turn the outcome into one line on stderr and an
/// exit status (1 for any failure).
pub fn main_with_stdout<T, F, Fut>(run: F) -> ExitCode
where
    T: Parser,
    F: FnOnce(T, std::io::Stdout) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    config::init_logging(tracing::Level::WARN);
    let args: T = match parse_args(std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ERROR cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args, std::io::stdout()));
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Whether a Kafka-style boolean property says true (`true`, any case).
pub fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        let parsed =
            parse_key_values(&["a=1".into(), "b=x=y".into(), "c=".into()], "config").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("c".into(), String::new())
            ]
        );
        let Err(Failure::Usage(message)) = parse_key_values(&["novalue".into()], "config") else {
            panic!("accepted an entry without '='");
        };
        assert_eq!(
            message,
            "Invalid config: all configs must be in the format \"key=val\", got \"novalue\"."
        );
    }

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(
            capitalize_error("error: unexpected argument '--x' found"),
            "Error: unexpected argument '--x' found"
        );
    }
}
