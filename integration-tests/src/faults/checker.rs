//! The checker: what the workload saw, against what the log holds after
//! the faults healed. Pure: it takes a [`History`] and returns a
//! [`Report`], so every anomaly it counts has a unit test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// One `send` of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub producer: usize,
    /// Increases with each send of the producer.
    pub seq: u64,
    pub partition: i32,
    /// Unique across the run.
    pub value: String,
    /// Since the start of the workload.
    pub sent_at: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acked {
        offset: i64,
        at: Duration,
    },
    /// The producer gave up; the record may or may not be in the log.
    Failed {
        error: String,
    },
    /// No answer before the workload stopped.
    Unknown,
}

/// A record a consumer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

/// Everything the workload recorded.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub attempts: Vec<Attempt>,
    /// What the consumers read while the faults ran.
    pub concurrent_reads: Vec<Read>,
    /// Every partition from its start to its high watermark, read after the
    /// faults healed: (offset, value) in offset order.
    pub final_log: BTreeMap<i32, Vec<(i64, String)>>,
    /// How long producers wrote; the unavailability windows end here.
    pub duration: Duration,
}

/// What the checker found. `lost`, `misplaced`, `reordered`, `unexpected`
/// and `diverged_reads` must all be 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub attempted: usize,
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Records read back in the final read.
    pub read: usize,
    /// Acknowledged records missing from the final read.
    pub lost: usize,
    /// Acknowledged records not at the offset their acknowledgement gave.
    pub misplaced: usize,
    /// Pairs of one producer's acknowledged records to one partition that
    /// the log holds in the other order.
    pub reordered: usize,
    /// Extra copies of records (retries of writes that had landed).
    pub duplicates: usize,
    /// Records read (finally or concurrently) that no producer sent.
    pub unexpected: usize,
    /// Concurrent reads that the final log contradicts (a record consumed
    /// and later gone or changed: a read above the true commit point).
    pub diverged_reads: usize,
    /// The longest time a partition acknowledged no write:
    /// (window, partition, window start).
    pub longest_unavailable: Option<(Duration, i32, Duration)>,
    /// A few examples of each anomaly, for the failure message.
    pub examples: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.misplaced == 0
            && self.reordered == 0
            && self.unexpected == 0
            && self.diverged_reads == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 20 {
            self.examples.push(text);
        }
    }
}

impl fmt::Display for Report {
    /// The one summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempted={} acked={} failed={} unknown={} read={} lost={} misplaced={} \
             reordered={} duplicates={} unexpected={} diverged_reads={}",
            self.attempted,
            self.acked,
            self.failed,
            self.unknown,
            self.read,
            self.lost,
            self.misplaced,
            self.reordered,
            self.duplicates,
            self.unexpected,
            self.diverged_reads,
        )?;
        if let Some((window, partition, start)) = self.longest_unavailable {
            write!(
                f,
                " longest_unavailable={:.1}s(p{partition}@{:.1}s)",
                window.as_secs_f64(),
                start.as_secs_f64()
            )?;
        }
        write!(f, " {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

pub fn check(history: &History) -> Report {
    let mut report = Report {
        attempted: history.attempts.len(),
        ..Report::default()
    };
    let sent: HashSet<&str> = history.attempts.iter().map(|a| a.value.as_str()).collect();
    // Where each value is in the final log: (partition, offsets in order).
    let mut found: HashMap<&str, (i32, Vec<i64>)> = HashMap::new();
    let mut at_offset: HashMap<(i32, i64), &str> = HashMap::new();
    for (partition, records) in &history.final_log {
        for (offset, value) in records {
            report.read += 1;
            at_offset.insert((*partition, *offset), value);
            if !sent.contains(value.as_str()) {
                report.unexpected += 1;
                report.example(format!(
                    "unexpected: p{partition}@{offset} holds {value:?}, never sent"
                ));
            }
            let entry = found
                .entry(value.as_str())
                .or_insert_with(|| (*partition, Vec::new()));
            if entry.0 != *partition || !entry.1.is_empty() {
                report.duplicates += 1;
            }
            entry.1.push(*offset);
        }
    }

    let mut by_stream: BTreeMap<(usize, i32), Vec<&Attempt>> = BTreeMap::new();
    let mut acks_by_partition: BTreeMap<i32, Vec<Duration>> = BTreeMap::new();
    for attempt in &history.attempts {
        match &attempt.outcome {
            Outcome::Acked { offset, at } => {
                report.acked += 1;
                acks_by_partition
                    .entry(attempt.partition)
                    .or_default()
                    .push(*at);
                by_stream
                    .entry((attempt.producer, attempt.partition))
                    .or_default()
                    .push(attempt);
                if !found.contains_key(attempt.value.as_str()) {
                    report.lost += 1;
                    report.example(format!(
                        "lost: {:?} acknowledged at p{}@{offset} is not in the log",
                        attempt.value, attempt.partition
                    ));
                } else if at_offset.get(&(attempt.partition, *offset)) != Some(&&*attempt.value) {
                    report.misplaced += 1;
                    report.example(format!(
                        "misplaced: {:?} acknowledged at p{}@{offset}, which holds {:?}",
                        attempt.value,
                        attempt.partition,
                        at_offset.get(&(attempt.partition, *offset))
                    ));
                }
            }
            Outcome::Failed { .. } => report.failed += 1,
            Outcome::Unknown => report.unknown += 1,
        }
    }

    // Order: one producer's acknowledged records to one partition appear in
    // the log (first copies) in the order they were sent.
    for ((producer, partition), mut stream) in by_stream {
        stream.sort_by_key(|a| a.seq);
        let mut previous: Option<(&Attempt, i64)> = None;
        for attempt in stream {
            let Some((_, offsets)) = found.get(attempt.value.as_str()) else {
                continue;
            };
            let Some(&first) = offsets.first() else {
                continue;
            };
            if let Some((before, before_offset)) = previous
                && before_offset > first
            {
                report.reordered += 1;
                report.example(format!(
                    "reordered: producer {producer} sent {:?} before {:?} to p{partition}, \
                     the log has them at {before_offset} and {first}",
                    before.value, attempt.value
                ));
            }
            previous = Some((attempt, first));
        }
    }

    for read in &history.concurrent_reads {
        if !sent.contains(read.value.as_str()) {
            report.unexpected += 1;
            report.example(format!(
                "unexpected: a consumer read {:?} at p{}@{}, never sent",
                read.value, read.partition, read.offset
            ));
        }
        if at_offset.get(&(read.partition, read.offset)) != Some(&read.value.as_str()) {
            report.diverged_reads += 1;
            report.example(format!(
                "diverged: a consumer read {:?} at p{}@{}, the final log has {:?}",
                read.value,
                read.partition,
                read.offset,
                at_offset.get(&(read.partition, read.offset))
            ));
        }
    }

    for (partition, mut acks) in acks_by_partition {
        acks.sort();
        let mut previous = Duration::ZERO;
        for at in acks.into_iter().chain([history.duration]) {
            let window = at.saturating_sub(previous);
            if report
                .longest_unavailable
                .is_none_or(|(longest, _, _)| window > longest)
            {
                report.longest_unavailable = Some((window, partition, previous));
            }
            previous = previous.max(at);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(producer: usize, seq: u64, partition: i32, offset: i64) -> Attempt {
        Attempt {
            producer,
            seq,
            partition,
            value: format!("p{producer}-{seq}"),
            sent_at: Duration::from_millis(seq * 10),
            outcome: Outcome::Acked {
                offset,
                at: Duration::from_millis(seq * 10 + 5),
            },
        }
    }

    fn history(attempts: Vec<Attempt>, log: &[(i32, i64, &str)]) -> History {
        let mut final_log: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for (partition, offset, value) in log {
            final_log
                .entry(*partition)
                .or_default()
                .push((*offset, (*value).to_owned()));
        }
        History {
            attempts,
            concurrent_reads: Vec::new(),
            final_log,
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let h = history(
            vec![acked(0, 0, 0, 0), acked(0, 1, 0, 1), acked(1, 0, 1, 0)],
            &[(0, 0, "p0-0"), (0, 1, "p0-1"), (1, 0, "p1-0")],
        );
        let report = check(&h);
        assert!(report.passed(), "{report}: {:?}", report.examples);
        assert_eq!((report.acked, report.read, report.duplicates), (3, 3, 0));
        assert!(report.to_string().ends_with("PASS"));
    }

    #[test]
    fn a_missing_acknowledged_record_is_lost() {
        let h = history(
            vec![acked(0, 0, 0, 0), acked(0, 1, 0, 1)],
            &[(0, 0, "p0-0")],
        );
        let report = check(&h);
        assert_eq!(report.lost, 1);
        assert!(!report.passed());
        assert!(report.to_string().ends_with("FAIL"));
    }

    #[test]
    fn an_acknowledged_offset_holding_another_record_is_misplaced() {
        // p0-1 was acknowledged at 1, truncated, and came back at 2 only
        // through a retry: its acknowledged copy was lost.
        let h = history(
            vec![acked(0, 0, 0, 0), acked(0, 1, 0, 1), acked(1, 0, 0, 1)],
            &[(0, 0, "p0-0"), (0, 1, "p1-0"), (0, 2, "p0-1")],
        );
        let report = check(&h);
        assert_eq!((report.lost, report.misplaced), (0, 1));
    }

    #[test]
    fn records_of_one_producer_in_the_wrong_order_are_reordered() {
        let h = history(
            vec![acked(0, 0, 0, 1), acked(0, 1, 0, 0)],
            &[(0, 0, "p0-1"), (0, 1, "p0-0")],
        );
        assert_eq!(check(&h).reordered, 1);
    }

    #[test]
    fn duplicates_are_counted_and_do_not_fail_the_run() {
        let h = history(
            vec![acked(0, 0, 0, 1), acked(0, 1, 0, 2)],
            &[(0, 0, "p0-0"), (0, 1, "p0-0"), (0, 2, "p0-1")],
        );
        let report = check(&h);
        assert_eq!(report.duplicates, 1);
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn a_record_never_sent_is_unexpected() {
        let h = history(vec![acked(0, 0, 0, 0)], &[(0, 0, "p0-0"), (0, 1, "ghost")]);
        assert_eq!(check(&h).unexpected, 1);
    }

    #[test]
    fn a_concurrent_read_the_final_log_contradicts_diverged() {
        let mut h = history(
            vec![acked(0, 0, 0, 0), acked(0, 1, 0, 1)],
            &[(0, 0, "p0-0"), (0, 1, "p0-1")],
        );
        h.concurrent_reads = vec![
            Read {
                partition: 0,
                offset: 0,
                value: "p0-0".into(),
            },
            Read {
                partition: 0,
                offset: 1,
                value: "p0-0".into(),
            },
        ];
        assert_eq!(check(&h).diverged_reads, 1);
    }

    #[test]
    fn failed_and_unknown_writes_may_be_present_or_not() {
        let mut maybe = acked(0, 1, 0, 1);
        maybe.outcome = Outcome::Failed {
            error: "timed out".into(),
        };
        let mut unknown = acked(0, 2, 0, 2);
        unknown.outcome = Outcome::Unknown;
        let h = history(
            vec![acked(0, 0, 0, 0), maybe, unknown],
            &[(0, 0, "p0-0"), (0, 1, "p0-1")],
        );
        let report = check(&h);
        assert!(report.passed(), "{report}");
        assert_eq!((report.failed, report.unknown), (1, 1));
    }

    #[test]
    fn the_longest_window_without_an_acknowledgement_is_found() {
        let mut late = acked(0, 1, 1, 0);
        late.outcome = Outcome::Acked {
            offset: 0,
            at: Duration::from_millis(900),
        };
        let h = history(
            vec![acked(0, 0, 0, 0), late],
            &[(0, 0, "p0-0"), (1, 0, "p0-1")],
        );
        let report = check(&h);
        // p0 acknowledged at 5 ms and then nothing until the end at 1 s.
        assert_eq!(
            report.longest_unavailable,
            Some((Duration::from_millis(995), 0, Duration::from_millis(5)))
        );
    }
}
