//! Choosing a record's partition, as Kafka's Java producer does.
//!
//! Keyed records go to `to_positive(murmur2(key)) % partitions`, so the same
//! key lands on the same partition as with the Java client (and so librdkafka's
//! `murmur2_random`). Unkeyed records use the sticky partitioner of KIP-794:
//! stay on one partition until about `batch.size` bytes went there, then move
//! to another one chosen at random, preferring partitions that have a leader.
//! `partitioner.class=...RoundRobinPartitioner` cycles instead.

use std::hash::{BuildHasher, RandomState};

use crate::cluster::TopicMap;

/// Kafka's murmur2 hash of a key (`Utils.murmur2`), as a signed 32-bit value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which
/// overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java client picks for a keyed record.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    to_positive(murmur2(key)) % partition_count.max(1)
}

/// How unkeyed records are spread (`partitioner.class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnkeyedPartitioning {
    /// KIP-794's uniform sticky partitioner, Kafka's default since 3.3.
    #[default]
    Sticky,
    /// `org.apache.kafka.clients.producer.RoundRobinPartitioner`.
    RoundRobin,
}

/// Per-topic state for unkeyed records. Not thread-safe; the producer keeps
/// it under its accumulator lock.
#[derive(Debug)]
pub(crate) struct UnkeyedPartitioner {
    mode: UnkeyedPartitioning,
    batch_size: usize,
    topics: TopicMap<String, StickyState>,
    rng: XorShift,
}

#[derive(Debug, Clone, Copy)]
struct StickyState {
    partition: i32,
    /// Bytes produced to `partition` since it was chosen.
    produced_bytes: usize,
    /// Round-robin: the next counter value.
    counter: u32,
}

impl UnkeyedPartitioner {
    pub(crate) fn new(mode: UnkeyedPartitioning, batch_size: usize) -> Self {
        UnkeyedPartitioner {
            mode,
            batch_size: batch_size.max(1),
            topics: TopicMap::default(),
            rng: XorShift::from_entropy(),
        }
    }

    /// The partition for an unkeyed record of `record_bytes` bytes.
    /// `available` are the partitions with a leader (may be empty: then any
    /// partition is chosen, and the record waits for a leader).
    pub(crate) fn partition(
        &mut self,
        topic: &str,
        partition_count: i32,
        available: &[i32],
        record_bytes: usize,
    ) -> i32 {
        let partition_count = partition_count.max(1);
        let rng = &mut self.rng;
        let state = match self.topics.get_mut(topic) {
            Some(state) => state,
            None => {
                let partition = choose(rng, partition_count, available, None);
                self.topics.entry(topic.to_owned()).or_insert(StickyState {
                    partition,
                    produced_bytes: 0,
                    counter: rng.next_u32(),
                })
            }
        };
        match self.mode {
            UnkeyedPartitioning::RoundRobin => {
                let n = state.counter;
                state.counter = state.counter.wrapping_add(1);
                if available.is_empty() {
                    (n % partition_count as u32) as i32
                } else {
                    available[n as usize % available.len()]
                }
            }
            UnkeyedPartitioning::Sticky => {
                let stale = state.partition >= partition_count
                    || (!available.is_empty() && !available.contains(&state.partition));
                if stale || state.produced_bytes >= self.batch_size {
                    state.partition =
                        choose(rng, partition_count, available, Some(state.partition));
                    state.produced_bytes = 0;
                }
                state.produced_bytes += record_bytes;
                state.partition
            }
        }
    }
}

fn choose(rng: &mut XorShift, partition_count: i32, available: &[i32], avoid: Option<i32>) -> i32 {
    let candidates: Vec<i32> = if available.is_empty() {
        (0..partition_count).collect()
    } else {
        available.to_vec()
    };
    if candidates.len() == 1 {
        return candidates[0];
    }
    loop {
        let pick = candidates[rng.next_u32() as usize % candidates.len()];
        if Some(pick) != avoid {
            return pick;
        }
    }
}

/// A small xorshift generator: partition choice needs spread, not secrecy.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn from_entropy() -> Self {
        let seed = RandomState::new().hash_one(std::time::SystemTime::now());
        XorShift(seed | 1)
    }

    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of Kafka's own `UtilsTest.testMurmur2`, and the akka/kafka
    /// compatibility vectors computed with the Java client.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()), *expected, "murmur2({key:?})");
        }
    }

    #[test]
    fn keyed_partition_is_to_positive_modulo() {
        // -973932308 & 0x7fffffff = 1173551340; % 3 = 0; % 10 = 0; % 7 = 4.
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        for n in 1..20 {
            let p = partition_for_key(b"some key", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn sticky_stays_until_a_batch_worth_of_bytes_then_moves() {
        let mut partitioner = UnkeyedPartitioner::new(UnkeyedPartitioning::Sticky, 1000);
        let available = [0, 1, 2, 3];
        let first = partitioner.partition("t", 4, &available, 100);
        for _ in 0..9 {
            assert_eq!(partitioner.partition("t", 4, &available, 100), first);
        }
        // 1000 bytes went to `first`: the next record switches.
        let second = partitioner.partition("t", 4, &available, 100);
        assert_ne!(second, first);
        assert_eq!(partitioner.partition("t", 4, &available, 100), second);
    }

    #[test]
    fn sticky_prefers_partitions_with_a_leader() {
        let mut partitioner = UnkeyedPartitioner::new(UnkeyedPartitioning::Sticky, 10);
        for _ in 0..100 {
            let p = partitioner.partition("t", 5, &[3], 20);
            assert_eq!(p, 3);
        }
        // The sticky partition lost its leader: move at once.
        let p = partitioner.partition("t", 5, &[1, 2], 1);
        assert!(p == 1 || p == 2);
    }

    #[test]
    fn round_robin_cycles_through_available_partitions() {
        let mut partitioner = UnkeyedPartitioner::new(UnkeyedPartitioning::RoundRobin, 10);
        let seen: Vec<i32> = (0..6)
            .map(|_| partitioner.partition("t", 3, &[0, 1, 2], 1))
            .collect();
        let mut first_three = seen[..3].to_vec();
        first_three.sort_unstable();
        assert_eq!(first_three, vec![0, 1, 2]);
        assert_eq!(seen[..3], seen[3..]);
    }
}
