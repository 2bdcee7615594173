//! `kafka-console-consumer`: prints a topic's records, one per line. On
//! SIGINT/SIGTERM or when done it prints `Processed a total of N messages`
//! to stderr and exits 0 (1 after an error, which it prints first).

use std::process::ExitCode;

use tools::Failure;
use tools::console_consumer::{ConsumerArgs, run};

fn main() -> ExitCode {
    config::init_logging(tracing::Level::WARN);
    let args: ConsumerArgs = match tools::parse_args(std::env::args_os()) {
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
    let (processed, outcome) =
        runtime.block_on(run(&args, &mut std::io::stdout(), tools::shutdown_signal()));
    runtime.shutdown_background();
    let status = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
        Err(Failure::Command(err)) => {
            eprintln!("ERROR Error processing message, terminating consumer process: {err:#}");
            ExitCode::FAILURE
        }
    };
    eprintln!("Processed a total of {processed} messages");
    status
}
