//! Kafka's rack-unaware replica placement: partition `p`'s first replica is
//! broker `(p + start) mod n`, so leaders spread evenly; its followers
//! follow at a distance that shifts by one every `n` partitions, so the
//! followers of one broker's leaderships spread over the others too.

/// Replica lists for partitions `first_partition..first_partition +
/// num_partitions` over `brokers` (sorted, distinct, at least
/// `replication_factor` of them).
///
/// `start_index` and `replica_shift` are Kafka's two random draws (uniform
/// in `0..brokers.len()`); passing them in keeps this function
/// deterministic. Adding partitions to a topic passes the index of its
/// partition 0's first replica for both, as Kafka does.
pub fn assign_replicas(
    brokers: &[i32],
    num_partitions: usize,
    replication_factor: usize,
    first_partition: usize,
    start_index: usize,
    replica_shift: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    assert!(
        replication_factor >= 1 && replication_factor <= n,
        "replication factor {replication_factor} checked against {n} brokers by the caller"
    );
    let mut shift = replica_shift;
    let mut out = Vec::with_capacity(num_partitions);
    for partition in first_partition..first_partition + num_partitions {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = Vec::with_capacity(replication_factor);
        replicas.push(brokers[first]);
        for j in 0..replication_factor - 1 {
            // A distance in 1..n: never the first replica itself.
            let distance = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + distance) % n]);
        }
        out.push(replicas);
    }
    out
}

/// A small, seedable generator (SplitMix64) for the two draws above: the
/// writer seeds it from the OS, tests from a constant.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn from_entropy() -> Rng {
        Rng(uuid::Uuid::new_v4().as_u64_pair().0)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..bound` for placement (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_kafkas_layout() {
        // Five brokers, ten partitions, three replicas, both draws 0: the
        // example layout in Kafka's AdminUtils documentation.
        let brokers = [0, 1, 2, 3, 4];
        let got = assign_replicas(&brokers, 10, 3, 0, 0, 0);
        let want: Vec<Vec<i32>> = vec![
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 0],
            vec![4, 0, 1],
            vec![0, 2, 3],
            vec![1, 3, 4],
            vec![2, 4, 0],
            vec![3, 0, 1],
            vec![4, 1, 2],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn leaders_and_replicas_spread_evenly() {
        let brokers = [1, 2, 3, 4, 5, 6];
        let mut rng = Rng::seeded(42);
        for rf in 1..=brokers.len() {
            let start = rng.below(brokers.len());
            let shift = rng.below(brokers.len());
            let assignment = assign_replicas(&brokers, 600, rf, 0, start, shift);
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            let mut replicas: HashMap<i32, usize> = HashMap::new();
            for list in &assignment {
                assert_eq!(list.len(), rf);
                let mut distinct = list.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), rf, "duplicate broker in {list:?}");
                *leaders.entry(list[0]).or_default() += 1;
                for r in list {
                    *replicas.entry(*r).or_default() += 1;
                }
            }
            assert!(
                leaders.values().all(|&c| c == 100),
                "rf {rf}: leaders {leaders:?}"
            );
            assert!(
                replicas.values().all(|&c| c == 100 * rf),
                "rf {rf}: replicas {replicas:?}"
            );
        }
    }

    #[test]
    fn added_partitions_continue_the_leader_round_robin() {
        let brokers = [0, 1, 2, 3];
        let whole = assign_replicas(&brokers, 12, 2, 0, 1, 1);
        let tail = assign_replicas(&brokers, 4, 2, 8, 1, 1);
        let leaders = |lists: &[Vec<i32>]| lists.iter().map(|r| r[0]).collect::<Vec<_>>();
        assert_eq!(leaders(&whole[8..]), leaders(&tail));
    }
}
