//! `kafka-consumer-perf-test`: Kafka's consumer performance test: the CSV header and line.
//! Bad arguments or an unreachable cluster: one line on stderr, exit 1.

use std::process::ExitCode;

use tools::consumer_perf::{ConsumerPerfArgs, run};

fn main() -> ExitCode {
    tools::main_with_stdout(
        |args: ConsumerPerfArgs, mut out| async move { run(&args, &mut out).await },
    )
}
