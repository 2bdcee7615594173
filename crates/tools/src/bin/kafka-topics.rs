//! `kafka-topics`: create, list, describe, alter and delete topics.
//! Exit status 0 on success, 1 with a one-line error otherwise.

use std::process::ExitCode;

use tools::Failure;
use tools::topics::{TopicsArgs, run};

fn main() -> ExitCode {
    config::init_logging(tracing::Level::WARN);
    let args: TopicsArgs = match tools::parse_args(std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let runtime = match tools::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("Error while executing topic command : cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &mut std::io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
        Err(Failure::Command(err)) => {
            eprintln!("Error while executing topic command : {err:#}");
            ExitCode::FAILURE
        }
    }
}
