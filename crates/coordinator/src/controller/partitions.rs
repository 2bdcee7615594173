//! Partition state changes: leader elections, ISR changes requested by
//! leaders (`AlterPartition`) and preferred-leader rebalancing.

use protocol::coordinator::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerState, PartitionState,
};
use protocol::image::MetadataImage;
use protocol::{ErrorCode, NO_ID};

use super::{ApiError, Changes};

/// The topic config that overrides the coordinator's default.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Whether `topic` may elect a replica outside its ISR: its own
/// `unclean.leader.election.enable` if set, else the coordinator's default.
pub fn unclean_election_enabled(image: &MetadataImage, topic: &str, default: bool) -> bool {
    image
        .topics
        .get(topic)
        .and_then(|t| t.info.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE))
        .map_or(default, |value| value.trim().eq_ignore_ascii_case("true"))
}

/// The leader a partition should have, leaving out `excluded`: the first
/// replica in `replicas` order that is active and in the ISR; failing that,
/// with unclean election allowed, the first active replica, whose ISR then
/// becomes just itself. `None`: the partition is offline.
pub fn elect_leader(
    image: &MetadataImage,
    partition: &PartitionState,
    excluded: i32,
    unclean: bool,
) -> Option<Election> {
    let eligible = |r: &&i32| **r != excluded && image.is_broker_active(**r);
    if let Some(&leader) = partition
        .replicas
        .iter()
        .filter(eligible)
        .find(|r| partition.isr.contains(r))
    {
        return Some(Election::Clean(leader));
    }
    if unclean {
        return partition
            .replicas
            .iter()
            .find(eligible)
            .map(|&r| Election::Unclean(r));
    }
    None
}

/// The outcome of [`elect_leader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// An in-sync replica: nothing committed is lost.
    Clean(i32),
    /// A replica outside the ISR: it becomes the whole ISR, and whatever
    /// only the old ISR held is lost.
    Unclean(i32),
}

impl Election {
    /// Gives `partition` the elected leader, bumping its leader epoch. The
    /// caller bumps the partition epoch once for the whole change.
    fn apply_to(self, partition: &mut PartitionState) {
        match self {
            Election::Clean(leader) => partition.leader = leader,
            Election::Unclean(leader) => {
                partition.leader = leader;
                partition.isr = vec![leader];
            }
        }
        partition.leader_epoch += 1;
    }
}

/// How a partition changes when `broker_id` may no longer lead it or be in
/// its ISR (it was fenced): it leaves the ISR unless it is the last member,
/// and if it led the partition a new leader is elected (or none: offline).
/// `None` when the partition does not involve the broker.
pub fn without_broker(
    image: &MetadataImage,
    partition: &PartitionState,
    broker_id: i32,
    unclean: bool,
) -> Option<PartitionState> {
    let leads = partition.leader == broker_id;
    let in_isr = partition.isr.contains(&broker_id);
    let leaves_isr = in_isr && partition.isr.len() > 1;
    if !leads && !leaves_isr {
        return None;
    }
    let mut next = partition.clone();
    if leaves_isr {
        next.isr.retain(|&r| r != broker_id);
    }
    if leads {
        match elect_leader(image, &next, broker_id, unclean) {
            Some(election) => election.apply_to(&mut next),
            None => {
                next.leader = NO_ID;
                next.leader_epoch += 1;
            }
        }
    }
    next.partition_epoch += 1;
    Some(next)
}

/// Elects leaders for offline partitions that `broker_id` (just become
/// active) can lead: it is in their ISR, or unclean election is allowed.
pub fn elect_offline_partitions(changes: &mut Changes<'_>, broker_id: i32, unclean_default: bool) {
    let image = changes.image();
    let mut elected = Vec::new();
    for topic in image.topics.values() {
        let unclean = unclean_election_enabled(image, &topic.info.name, unclean_default);
        for partition in topic.partitions.values() {
            if partition.leader != NO_ID || !partition.replicas.contains(&broker_id) {
                continue;
            }
            if let Some(election) = elect_leader(image, partition, NO_ID, unclean) {
                let mut next = partition.clone();
                election.apply_to(&mut next);
                next.partition_epoch += 1;
                elected.push(next);
            }
        }
    }
    for partition in elected {
        changes.push(partition);
    }
}

/// Moves leadership back to the preferred replica (the first of
/// `replicas`) wherever it is active, in the ISR and not the leader, for
/// each broker whose imbalance (the share of the partitions it prefers to
/// lead that others lead) is above `imbalance_percentage`, as Kafka's
/// `leader.imbalance.per.broker.percentage` asks. Returns how many
/// partitions changed.
pub fn rebalance_preferred_leaders(changes: &mut Changes<'_>, imbalance_percentage: u32) -> usize {
    let image = changes.image();
    // Per preferred broker: partitions it prefers, and those led by others.
    let mut counts: std::collections::BTreeMap<i32, (u64, u64)> = Default::default();
    for partition in image.topics.values().flat_map(|t| t.partitions.values()) {
        if let Some(&preferred) = partition.replicas.first() {
            let entry = counts.entry(preferred).or_default();
            entry.0 += 1;
            entry.1 += u64::from(partition.leader != preferred);
        }
    }
    let imbalanced = |broker: i32| {
        counts.get(&broker).is_some_and(|&(preferred, elsewhere)| {
            elsewhere * 100 > preferred * u64::from(imbalance_percentage)
        })
    };
    let mut moved = Vec::new();
    for partition in image.topics.values().flat_map(|t| t.partitions.values()) {
        let Some(&preferred) = partition.replicas.first() else {
            continue;
        };
        if partition.leader != preferred
            && image.is_broker_active(preferred)
            && partition.isr.contains(&preferred)
            && imbalanced(preferred)
        {
            let mut next = partition.clone();
            Election::Clean(preferred).apply_to(&mut next);
            next.partition_epoch += 1;
            moved.push(next);
        }
    }
    let count = moved.len();
    for partition in moved {
        changes.push(partition);
    }
    count
}

/// Checks that `broker_epoch` is the current epoch of a registered broker.
pub fn check_broker_epoch(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
) -> Result<(), ApiError> {
    match image.brokers.get(&broker_id) {
        None => Err(ApiError::new(
            ErrorCode::BrokerIdNotRegistered,
            format!("Broker {broker_id} is not registered."),
        )),
        Some(broker) if broker.broker_epoch != broker_epoch => Err(ApiError::new(
            ErrorCode::StaleBrokerEpoch,
            format!(
                "Broker {broker_id} sent epoch {broker_epoch}, but its current epoch is {}.",
                broker.broker_epoch
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// An ISR change requested by a partition leader: compare-and-set on the
/// partition epoch. The answer holds the partition as it stands afterwards
/// (changed or not).
pub fn alter_partition(
    changes: &mut Changes<'_>,
    request: &AlterPartitionRequest,
) -> AlterPartitionResponse {
    let current = changes
        .image()
        .partition(&request.topic, request.partition)
        .cloned();
    match check_alter_partition(changes.image(), request, current.as_ref()) {
        Ok(None) => answer(Ok(()), current),
        Ok(Some(next)) => {
            changes.push(next.clone());
            answer(Ok(()), Some(next))
        }
        Err(error) => answer(Err(error), current),
    }
}

fn answer(
    result: Result<(), ApiError>,
    partition: Option<PartitionState>,
) -> AlterPartitionResponse {
    let (error_code, error_message) = match result {
        Ok(()) => (ErrorCode::None.code(), String::new()),
        Err(e) => (e.code.code(), e.message),
    };
    AlterPartitionResponse {
        error_code,
        error_message,
        partition,
    }
}

/// The partition after the request, `None` if the ISR is unchanged.
fn check_alter_partition(
    image: &MetadataImage,
    request: &AlterPartitionRequest,
    current: Option<&PartitionState>,
) -> Result<Option<PartitionState>, ApiError> {
    let sender = request.broker_id;
    check_broker_epoch(image, sender, request.broker_epoch)?;
    let Some(current) = current else {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!(
                "Partition {}-{} does not exist.",
                request.topic, request.partition
            ),
        ));
    };
    let name = format!("{}-{}", current.topic, current.partition);
    if request.leader_epoch != current.leader_epoch {
        return Err(ApiError::new(
            ErrorCode::FencedLeaderEpoch,
            format!(
                "{name}: the request has leader epoch {}, the partition is at {}.",
                request.leader_epoch, current.leader_epoch
            ),
        ));
    }
    if current.leader != sender {
        return Err(ApiError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "{name}: broker {sender} is not the leader (the leader is {}).",
                current.leader
            ),
        ));
    }
    if request.partition_epoch != current.partition_epoch {
        return Err(ApiError::new(
            ErrorCode::InvalidUpdateVersion,
            format!(
                "{name}: the request has partition epoch {}, the partition is at {}.",
                request.partition_epoch, current.partition_epoch
            ),
        ));
    }
    let new_isr = &request.new_isr;
    if !new_isr.contains(&sender) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{name}: the new ISR {new_isr:?} does not contain the leader {sender}."),
        ));
    }
    for (i, replica) in new_isr.iter().enumerate() {
        if !current.replicas.contains(replica) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{name}: the new ISR {new_isr:?} contains {replica}, which is not an assigned replica {:?}.",
                    current.replicas
                ),
            ));
        }
        if new_isr[..i].contains(replica) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("{name}: the new ISR {new_isr:?} names {replica} twice."),
            ));
        }
        if !current.isr.contains(replica) {
            let state = image.brokers.get(replica).map(|b| b.state);
            if state != Some(BrokerState::Active as i32) {
                let why = match state.and_then(|s| BrokerState::try_from(s).ok()) {
                    Some(BrokerState::ShuttingDown) => "is shutting down",
                    Some(BrokerState::Fenced) => "is fenced",
                    _ => "is not registered",
                };
                return Err(ApiError::new(
                    ErrorCode::IneligibleReplica,
                    format!("{name}: replica {replica} cannot join the ISR: it {why}."),
                ));
            }
        }
    }
    let same_members =
        new_isr.len() == current.isr.len() && new_isr.iter().all(|r| current.isr.contains(r));
    if same_members {
        return Ok(None);
    }
    let mut next = current.clone();
    next.isr = new_isr.clone();
    next.partition_epoch += 1;
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::check_invariants;
    use crate::controller::tests_support::*;

    #[test]
    fn a_clean_election_takes_the_first_active_replica_in_the_isr() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 3, 2]);
        fence(&mut image, 2);
        let p = image.partition("t", 0).unwrap().clone();
        assert_eq!(elect_leader(&image, &p, 1, false), Some(Election::Clean(3)));
        // Order is `replicas` order, not ISR order.
        activate(&mut image, 2);
        assert_eq!(elect_leader(&image, &p, 1, false), Some(Election::Clean(2)));
    }

    #[test]
    fn no_eligible_replica_is_offline_unless_unclean() {
        let mut image = cluster(&[1, 2]);
        add_partition(&mut image, "t", 0, &[1, 2], 1, &[1]);
        let p = image.partition("t", 0).unwrap().clone();
        let next = without_broker(&image, &p, 1, false).unwrap();
        assert_eq!((next.leader, next.isr.clone()), (NO_ID, vec![1]));
        assert_eq!((next.leader_epoch, next.partition_epoch), (1, 1));
        let next = without_broker(&image, &p, 1, true).unwrap();
        assert_eq!((next.leader, next.isr.clone()), (2, vec![2]));
        assert_eq!((next.leader_epoch, next.partition_epoch), (1, 1));
    }

    #[test]
    fn a_follower_leaves_the_isr_without_a_leader_change() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 2, 3]);
        let p = image.partition("t", 0).unwrap().clone();
        let next = without_broker(&image, &p, 3, false).unwrap();
        assert_eq!((next.leader, next.isr.clone()), (1, vec![1, 2]));
        assert_eq!((next.leader_epoch, next.partition_epoch), (0, 1));
        // Not a member: nothing to do.
        let mut other = p.clone();
        other.isr = vec![1, 2];
        assert_eq!(without_broker(&image, &other, 3, false), None);
    }

    #[test]
    fn a_topic_config_overrides_the_unclean_default() {
        let mut image = cluster(&[1]);
        add_partition(&mut image, "t", 0, &[1], 1, &[1]);
        assert!(unclean_election_enabled(&image, "t", true));
        image
            .topics
            .get_mut("t")
            .unwrap()
            .info
            .configs
            .insert(UNCLEAN_LEADER_ELECTION_ENABLE.into(), "false".into());
        assert!(!unclean_election_enabled(&image, "t", true));
        assert!(!unclean_election_enabled(&image, "missing", false));
    }

    fn alter(isr: &[i32]) -> AlterPartitionRequest {
        AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: epoch_of(1),
            topic: "t".into(),
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: isr.to_vec(),
        }
    }

    fn alter_code(image: &mut MetadataImage, request: &AlterPartitionRequest) -> ErrorCode {
        let mut changes = Changes::new(image);
        let response = alter_partition(&mut changes, request);
        ErrorCode::from_code(response.error_code)
    }

    #[test]
    fn alter_partition_is_compare_and_set() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 2, 3]);
        let mut changes = Changes::new(&mut image);
        let response = alter_partition(&mut changes, &alter(&[1, 2]));
        assert_eq!(response.error_code, 0, "{}", response.error_message);
        let after = response.partition.unwrap();
        assert_eq!(
            (after.isr.clone(), after.partition_epoch, after.leader_epoch),
            (vec![1, 2], 1, 0)
        );
        assert_eq!(changes.len(), 1);
        drop(changes);
        check_invariants(&image);

        // The same request again is stale now.
        assert_eq!(
            alter_code(&mut image, &alter(&[1])),
            ErrorCode::InvalidUpdateVersion
        );
        let mut request = alter(&[1, 2, 3]);
        request.partition_epoch = 1;
        assert_eq!(alter_code(&mut image, &request), ErrorCode::None);
        assert_eq!(image.partition("t", 0).unwrap().isr, vec![1, 2, 3]);
    }

    #[test]
    fn alter_partition_refusals() {
        let mut image = cluster(&[1, 2, 3, 4]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 2]);
        fence(&mut image, 3);
        let before = image.clone();

        let mut r = alter(&[1]);
        r.broker_epoch += 1;
        assert_eq!(alter_code(&mut image, &r), ErrorCode::StaleBrokerEpoch);
        let mut r = alter(&[1]);
        r.broker_id = 9;
        assert_eq!(alter_code(&mut image, &r), ErrorCode::BrokerIdNotRegistered);
        let mut r = alter(&[1]);
        r.leader_epoch = 5;
        assert_eq!(alter_code(&mut image, &r), ErrorCode::FencedLeaderEpoch);
        let mut r = alter(&[2]);
        r.broker_id = 2;
        r.broker_epoch = epoch_of(2);
        assert_eq!(alter_code(&mut image, &r), ErrorCode::NotLeaderOrFollower);
        let mut r = alter(&[1]);
        r.partition = 7;
        assert_eq!(
            alter_code(&mut image, &r),
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            alter_code(&mut image, &alter(&[2])),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            alter_code(&mut image, &alter(&[1, 4])),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            alter_code(&mut image, &alter(&[1, 2, 2])),
            ErrorCode::InvalidRequest
        );
        // 3 is fenced: it may not join.
        assert_eq!(
            alter_code(&mut image, &alter(&[1, 2, 3])),
            ErrorCode::IneligibleReplica
        );
        assert_eq!(image, before, "a refused request changes nothing");

        // An unchanged ISR (in another order) is accepted without a record.
        let mut changes = Changes::new(&mut image);
        let response = alter_partition(&mut changes, &alter(&[2, 1]));
        assert_eq!(response.error_code, 0);
        assert!(changes.is_empty());
    }

    #[test]
    fn rebalance_moves_leadership_to_the_preferred_replica() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 2, &[1, 2, 3]);
        add_partition(&mut image, "t", 1, &[2, 3, 1], 3, &[3, 1]); // 2 not in the ISR
        add_partition(&mut image, "t", 2, &[3, 1, 2], 3, &[3, 1, 2]); // already preferred
        let mut changes = Changes::new(&mut image);
        assert_eq!(rebalance_preferred_leaders(&mut changes, 0), 1);
        drop(changes);
        let p = image.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 1));
        assert_eq!(image.partition("t", 1).unwrap().leader, 3);
        check_invariants(&image);
    }

    #[test]
    fn rebalance_waits_for_the_imbalance_percentage() {
        let mut image = cluster(&[1, 2]);
        // Broker 1 prefers ten partitions and leads nine of them.
        for p in 0..10 {
            let leader = if p == 0 { 2 } else { 1 };
            add_partition(&mut image, "t", p, &[1, 2], leader, &[1, 2]);
        }
        let mut changes = Changes::new(&mut image);
        assert_eq!(
            rebalance_preferred_leaders(&mut changes, 10),
            0,
            "10% is not above 10%"
        );
        assert_eq!(rebalance_preferred_leaders(&mut changes, 9), 1);
        assert!(
            changes.image().topics["t"]
                .partitions
                .values()
                .all(|p| p.leader == 1)
        );
    }
}
