//! The fault-injection suite: acks=all producers and concurrent consumers
//! against a three-broker cluster while a seeded nemesis kills, pauses,
//! isolates and starves its processes; then everything is read back and
//! checked (see `integration_tests::faults`).
//!
//! CI runs fixed seeds, bounded to a few minutes. The soak run is ignored
//! by default: `SOAK_SECS=1800 [SOAK_SEED=n] cargo nextest run -p
//! integration-tests --test jepsen --run-ignored only --no-capture`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use integration_tests::faults::workload::WorkloadSpec;
use integration_tests::faults::{RunSpec, run};

/// The seeds every CI run replays.
const CI_SEEDS: [u64; 2] = [1, 2];

/// How long the nemesis runs per CI seed.
const CI_FAULTS_FOR: Duration = Duration::from_secs(55);

fn spec(label: &str, seed: u64, faults_for: Duration) -> RunSpec {
    RunSpec {
        label: label.into(),
        seed,
        faults_for,
        workload: WorkloadSpec::default(),
        small_disk_mb: 256,
    }
}

#[test]
fn no_acknowledged_record_is_lost_under_faults() -> Result<()> {
    let mut summaries = Vec::new();
    for seed in CI_SEEDS {
        let result = run(&spec("ci", seed, CI_FAULTS_FOR))?;
        eprintln!("{}\n{}", result.summary, result.timeline);
        summaries.push(result.summary);
    }
    eprintln!("{}", summaries.join("\n"));
    Ok(())
}

#[test]
#[ignore = "a long soak run: set SOAK_SECS (and SOAK_SEED to replay one)"]
fn soak() -> Result<()> {
    let secs: u64 = std::env::var("SOAK_SECS")
        .unwrap_or_else(|_| "600".into())
        .parse()
        .context("SOAK_SECS must be a number of seconds")?;
    let seed: u64 = match std::env::var("SOAK_SEED") {
        Ok(seed) => seed.parse().context("SOAK_SEED must be a number")?,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    eprintln!("soak: SOAK_SECS={secs} SOAK_SEED={seed}");
    let result = run(&spec("soak", seed, Duration::from_secs(secs)))?;
    eprintln!("{}\n{}", result.summary, result.timeline);
    Ok(())
}
