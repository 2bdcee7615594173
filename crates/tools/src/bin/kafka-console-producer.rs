//! `kafka-console-producer`: one record per line of standard input. Exit
//! status 0 only if every line was acknowledged; otherwise one line says
//! how many failed and why, and the status is 1.

use std::process::ExitCode;

use tools::console_producer::{ProducerArgs, run};

fn main() -> ExitCode {
    config::init_logging(tracing::Level::WARN);
    let args: ProducerArgs = match tools::parse_args(std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let runtime = match tools::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ERROR cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let stdin = tokio::io::BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let outcome = runtime.block_on(run(&args, stdin, tools::shutdown_signal()));
    // Do not wait for a blocked stdin read on the way out.
    runtime.shutdown_background();
    match outcome {
        Ok(summary) => match summary.failure_message() {
            None => ExitCode::SUCCESS,
            Some(message) => {
                eprintln!("ERROR {message}");
                ExitCode::FAILURE
            }
        },
        Err(failure) => failure.report(),
    }
}
