//! `kafka-e2e-latency`: Kafka's end-to-end latency test: one record at a time, produced then consumed.
//! Bad arguments or an unreachable cluster: one line on stderr, exit 1.

use std::process::ExitCode;

use tools::e2e_latency::{E2eArgs, run};

fn main() -> ExitCode {
    tools::main_with_stdout(|args: E2eArgs, mut out| async move { run(&args, &mut out).await })
}
