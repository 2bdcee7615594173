//! What the three performance tools share: the reachability check that
//! turns an unreachable cluster into one line instead of a minute-long
//! wait, Kafka's megabyte (1024 * 1024 bytes), latency percentiles as
//! Kafka's tools compute them, client configuration from `key=value`
//! pairs, and the line writer of their reports.

use std::time::Duration;

use client::{Admin, AdminConfig, ClientError, ConsumerConfig, ProducerConfig, ServerAddress};

use crate::Failure;

/// Kafka's perf tools divide by 1024 * 1024 and call it MB.
pub const MEGABYTE: f64 = 1024.0 * 1024.0;

/// Writes one line of a tool's report and flushes it, so progress shows
/// as it happens even when standard output is a pipe.
pub fn write_line(out: &mut impl std::io::Write, line: &str) -> Result<(), Failure> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|err| Failure::Command(anyhow::anyhow!("cannot write to standard output: {err}")))
}

/// How long the reachability check waits for a broker's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails with one line when no server of `bootstrap_servers` answers a
/// metadata request, so a mistyped address does not hang a benchmark for
/// the client's own (minute-long) metadata timeout.
pub async fn ensure_reachable(servers: &[ServerAddress]) -> Result<(), Failure> {
    let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
    let mut config =
        AdminConfig::brokers(&list.join(",")).map_err(|err| Failure::usage(err.to_string()))?;
    config
        .set("request.timeout.ms", &PROBE_TIMEOUT.as_millis().to_string())
        .map_err(|err| Failure::usage(err.to_string()))?;
    Admin::new(config).describe_cluster().await?;
    Ok(())
}

/// A producer configuration from properties in order (later ones win);
/// unknown keys are warned about, as Kafka's clients do.
pub fn producer_config(properties: &[(String, String)]) -> Result<ProducerConfig, Failure> {
    let config = apply(ProducerConfig::default(), properties, ProducerConfig::set)?;
    config
        .validate()
        .map_err(|err| Failure::usage(err.to_string()))?;
    Ok(config)
}

/// A consumer configuration from properties in order (later ones win).
pub fn consumer_config(properties: &[(String, String)]) -> Result<ConsumerConfig, Failure> {
    let config = apply(ConsumerConfig::default(), properties, ConsumerConfig::set)?;
    config
        .validate()
        .map_err(|err| Failure::usage(err.to_string()))?;
    Ok(config)
}

fn apply<C>(
    mut config: C,
    properties: &[(String, String)],
    set: impl Fn(&mut C, &str, &str) -> Result<bool, ClientError>,
) -> Result<C, Failure> {
    for (key, value) in properties {
        let known = set(&mut config, key, value).map_err(|err| Failure::usage(err.to_string()))?;
        if !known {
            tracing::warn!("The configuration '{key}' was supplied but isn't a known config.");
        }
    }
    Ok(config)
}

/// The value at `fraction` of sorted samples, picked as Kafka's tools do
/// (`sorted[(len * fraction) as usize]`); 0 for no samples.
pub fn percentile<T: Copy + Default>(sorted: &[T], fraction: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let at = ((sorted.len() as f64) * fraction) as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// A small, seedable xorshift generator: payloads need letters that do not
/// compress to nothing, not cryptographic randomness.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    /// A seed from the clock, so runs differ as Kafka's do.
    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
        XorShift::new(nanos)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `len` random upper-case letters, as Kafka's producer perf test makes
    /// its payload.
    pub fn letters(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| b'A' + (self.next_u64() % 26) as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_index_as_kafka_does() {
        let sorted: Vec<u64> = (0..1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 500);
        assert_eq!(percentile(&sorted, 0.99), 990);
        assert_eq!(percentile(&sorted, 0.999), 999);
        assert_eq!(percentile(&sorted[..1], 0.999), 0);
        assert_eq!(percentile::<u64>(&[], 0.5), 0);
    }

    #[test]
    fn payload_letters_are_upper_case() {
        let letters = XorShift::new(7).letters(1000);
        assert_eq!(letters.len(), 1000);
        assert!(letters.iter().all(u8::is_ascii_uppercase));
        assert!(letters.iter().any(|&b| b != letters[0]));
    }
}
