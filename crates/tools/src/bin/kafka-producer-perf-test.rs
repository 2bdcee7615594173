//! `kafka-producer-perf-test`: Kafka's producer performance test: progress every 5 s, then the summary line.
//! Bad arguments or an unreachable cluster: one line on stderr, exit 1.

use std::process::ExitCode;

use tools::producer_perf::{ProducerPerfArgs, run};

fn main() -> ExitCode {
    tools::main_with_stdout(
        |args: ProducerPerfArgs, mut out| async move { run(&args, &mut out).await },
    )
}
