//! Broker registrations and the state changes of a broker: fenced when its
//! session ends, active once caught up, shutting down on request.

use protocol::coordinator::{BrokerInfo, BrokerState, PartitionState, RegisterBrokerRequest};
use protocol::image::MetadataImage;

use super::partitions::{
    Election, check_broker_epoch, elect_leader, elect_offline_partitions, unclean_election_enabled,
    without_broker,
};
use super::{ApiError, Changes, Malformed};

/// What a registration handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// The metadata version at which the registration record is applied.
    pub broker_epoch: i64,
    /// False when this was a retry of a registration already made.
    pub is_new: bool,
}

/// Refuses registrations no broker could have meant.
pub fn validate_registration(request: &RegisterBrokerRequest) -> Result<(), Malformed> {
    if request.broker_id < 0 {
        return Err(Malformed(format!(
            "broker id {} is invalid: broker ids are non-negative",
            request.broker_id
        )));
    }
    if request.incarnation_id.is_empty() {
        return Err(Malformed(format!(
            "broker {}: incarnation_id is required (unique per broker start)",
            request.broker_id
        )));
    }
    if request.endpoints.is_empty() {
        return Err(Malformed(format!(
            "broker {}: no endpoint registered",
            request.broker_id
        )));
    }
    for endpoint in &request.endpoints {
        if endpoint.host.is_empty() || !(1..=65535).contains(&endpoint.port) {
            return Err(Malformed(format!(
                "broker {}: endpoint {}://{}:{} needs a host and a port in 1..65535",
                request.broker_id, endpoint.listener, endpoint.host, endpoint.port
            )));
        }
    }
    Ok(())
}

/// Registers a broker. A retry of the same incarnation gets the epoch it
/// already has. A new incarnation fences the previous epoch first (its
/// leaderships move as for a lapsed session), then registers with a new
/// epoch, fenced until its heartbeats say it has caught up.
pub fn register_broker(
    changes: &mut Changes<'_>,
    request: &RegisterBrokerRequest,
    session_timeout_ms: i32,
    unclean_default: bool,
) -> Result<Registration, Malformed> {
    validate_registration(request)?;
    let broker_id = request.broker_id;
    if let Some(existing) = changes.image().brokers.get(&broker_id)
        && existing.incarnation_id == request.incarnation_id
    {
        return Ok(Registration {
            broker_epoch: existing.broker_epoch,
            is_new: false,
        });
    }
    fence_broker(changes, broker_id, unclean_default);
    let broker_epoch = changes.next_version();
    changes.push(BrokerInfo {
        broker_id,
        broker_epoch,
        endpoints: request.endpoints.clone(),
        rack: request.rack.clone(),
        state: BrokerState::Fenced as i32,
        incarnation_id: request.incarnation_id.clone(),
        session_timeout_ms,
    });
    Ok(Registration {
        broker_epoch,
        is_new: true,
    })
}

/// Fences a broker: it leaves every ISR it is not the last member of, and
/// each partition it led gets a new leader or goes offline. Returns whether
/// anything changed (a fenced or unknown broker is left as it is).
pub fn fence_broker(changes: &mut Changes<'_>, broker_id: i32, unclean_default: bool) -> bool {
    let Some(broker) = changes.image().brokers.get(&broker_id) else {
        return false;
    };
    if broker.state == BrokerState::Fenced as i32 {
        return false;
    }
    let mut fenced = broker.clone();
    fenced.state = BrokerState::Fenced as i32;
    // First, so that the elections below see the broker as fenced.
    changes.push(fenced);
    let image = changes.image();
    let mut updates = Vec::new();
    for topic in image.topics.values() {
        let unclean = unclean_election_enabled(image, &topic.info.name, unclean_default);
        updates.extend(
            topic
                .partitions
                .values()
                .filter_map(|p| without_broker(image, p, broker_id, unclean)),
        );
    }
    for partition in updates {
        changes.push(partition);
    }
    true
}

/// A fenced broker has caught up with its registration: it becomes active,
/// and leads offline partitions it can lead.
pub fn unfence_broker(changes: &mut Changes<'_>, broker_id: i32, unclean_default: bool) -> bool {
    let Some(broker) = changes.image().brokers.get(&broker_id) else {
        return false;
    };
    if broker.state != BrokerState::Fenced as i32 {
        return false;
    }
    let mut active = broker.clone();
    active.state = BrokerState::Active as i32;
    changes.push(active);
    elect_offline_partitions(changes, broker_id, unclean_default);
    true
}

/// Controlled shutdown: the broker takes no new leaderships and cannot join
/// ISRs; its leaderships move to other active in-sync replicas and it
/// leaves the ISRs where others remain. Returns the partitions it still
/// leads (no other replica could take over). A repeated request retries
/// the moves, in case a replica has become eligible since.
pub fn controlled_shutdown(
    changes: &mut Changes<'_>,
    broker_id: i32,
    broker_epoch: i64,
) -> Result<Vec<PartitionState>, ApiError> {
    check_broker_epoch(changes.image(), broker_id, broker_epoch)?;
    let broker = &changes.image().brokers[&broker_id];
    if broker.state == BrokerState::Active as i32 {
        let mut shutting_down = broker.clone();
        shutting_down.state = BrokerState::ShuttingDown as i32;
        changes.push(shutting_down);
    }
    let image = changes.image();
    let mut updates = Vec::new();
    for topic in image.topics.values() {
        for partition in topic.partitions.values() {
            if let Some(next) = moved_away_from(image, partition, broker_id) {
                updates.push(next);
            }
        }
    }
    for partition in updates {
        changes.push(partition);
    }
    Ok(leaderships(changes.image(), broker_id))
}

/// A partition without `broker_id` as leader or ISR member, where another
/// in-sync replica can take its place; `None` if nothing can change.
fn moved_away_from(
    image: &MetadataImage,
    partition: &PartitionState,
    broker_id: i32,
) -> Option<PartitionState> {
    let mut next = partition.clone();
    if partition.leader == broker_id {
        // Only a clean election: a shutdown must not lose committed data.
        let Some(Election::Clean(leader)) = elect_leader(image, partition, broker_id, false) else {
            return None;
        };
        next.leader = leader;
        next.leader_epoch += 1;
    } else if !(partition.isr.contains(&broker_id) && partition.isr.len() > 1) {
        return None;
    }
    next.isr.retain(|&r| r != broker_id);
    next.partition_epoch += 1;
    Some(next)
}

/// The partitions `broker_id` leads, by topic and partition.
pub fn leaderships(image: &MetadataImage, broker_id: i32) -> Vec<PartitionState> {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.leader == broker_id)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::check_invariants;
    use crate::controller::tests_support::*;
    use protocol::NO_ID;
    use protocol::coordinator::Endpoint;

    fn request(broker_id: i32, incarnation: &str) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            broker_id,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
            }],
            rack: String::new(),
            incarnation_id: incarnation.into(),
            session_timeout_ms: 6000,
            cluster_id: String::new(),
        }
    }

    #[test]
    fn registration_epochs_are_versions_and_retries_are_idempotent() {
        let mut image = cluster(&[]);
        let mut changes = Changes::new(&mut image);
        let first = register_broker(&mut changes, &request(1, "a"), 6000, false).unwrap();
        assert_eq!(
            first,
            Registration {
                broker_epoch: 1001,
                is_new: true
            }
        );
        let again = register_broker(&mut changes, &request(1, "a"), 6000, false).unwrap();
        assert_eq!(
            again,
            Registration {
                broker_epoch: 1001,
                is_new: false
            }
        );
        let second = register_broker(&mut changes, &request(2, "b"), 6000, false).unwrap();
        assert_eq!(second.broker_epoch, 1002);
        assert_eq!(changes.len(), 2);
        drop(changes);
        assert_eq!(image.brokers[&1].state, BrokerState::Fenced as i32);
        assert_eq!(image.brokers[&1].session_timeout_ms, 6000);
    }

    #[test]
    fn malformed_registrations_are_refused() {
        let mut image = cluster(&[]);
        let mut changes = Changes::new(&mut image);
        assert!(register_broker(&mut changes, &request(-1, "a"), 6000, false).is_err());
        assert!(register_broker(&mut changes, &request(1, ""), 6000, false).is_err());
        let mut no_port = request(1, "a");
        no_port.endpoints[0].port = 0;
        assert!(register_broker(&mut changes, &no_port, 6000, false).is_err());
        let mut none = request(1, "a");
        none.endpoints.clear();
        assert!(register_broker(&mut changes, &none, 6000, false).is_err());
        assert!(changes.is_empty());
    }

    #[test]
    fn a_new_incarnation_fences_the_old_epoch_first() {
        let mut image = cluster(&[1, 2]);
        add_partition(&mut image, "t", 0, &[1, 2], 1, &[1, 2]);
        let mut changes = Changes::new(&mut image);
        let registration = register_broker(&mut changes, &request(1, "new"), 6000, false).unwrap();
        // Broker fenced, partition moved, then the new registration.
        assert_eq!(changes.len(), 3);
        assert_eq!(registration.broker_epoch, 1003);
        drop(changes);
        let p = image.partition("t", 0).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
            (2, vec![2], 1, 1)
        );
        assert_eq!(image.brokers[&1].broker_epoch, 1003);
        assert_eq!(image.brokers[&1].state, BrokerState::Fenced as i32);
    }

    #[test]
    fn fencing_elects_new_leaders_and_shrinks_isrs() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 2, 3]);
        add_partition(&mut image, "t", 1, &[2, 3, 1], 2, &[2, 3, 1]);
        add_partition(&mut image, "t", 2, &[1], 1, &[1]);
        add_partition(&mut image, "u", 0, &[2, 3], 2, &[2, 3]);
        let mut changes = Changes::new(&mut image);
        assert!(fence_broker(&mut changes, 1, false));
        // broker + three partitions; u-0 is untouched.
        assert_eq!(changes.len(), 4);
        assert!(
            !fence_broker(&mut changes, 1, false),
            "fencing twice changes nothing"
        );
        drop(changes);
        check_invariants(&image);
        let p = image.partition("t", 0).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
            (2, vec![2, 3], 1, 1)
        );
        let p = image.partition("t", 1).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
            (2, vec![2, 3], 0, 1)
        );
        // The last ISR member stays; the partition is offline.
        let p = image.partition("t", 2).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
            (NO_ID, vec![1], 1, 1)
        );

        // Back: it leads its offline partition again, and nothing else.
        let mut changes = Changes::new(&mut image);
        assert!(unfence_broker(&mut changes, 1, false));
        assert_eq!(changes.len(), 2);
        drop(changes);
        let p = image.partition("t", 2).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 2, 2));
        assert_eq!(image.partition("t", 0).unwrap().leader, 2);
        check_invariants(&image);
    }

    #[test]
    fn an_offline_partition_waits_for_its_isr_unless_unclean() {
        let mut image = cluster(&[1, 2]);
        add_partition(&mut image, "t", 0, &[1, 2], 1, &[1]);
        fence(&mut image, 2);
        let mut changes = Changes::new(&mut image);
        fence_broker(&mut changes, 1, false);
        // 2 returns, but was not in the ISR: still offline.
        unfence_broker(&mut changes, 2, false);
        assert_eq!(changes.image().partition("t", 0).unwrap().leader, NO_ID);
        drop(changes);

        let mut changes = Changes::new(&mut image);
        fence_broker(&mut changes, 2, false);
        unfence_broker(&mut changes, 2, true);
        drop(changes);
        let p = image.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        check_invariants(&image);
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_and_reports_the_rest() {
        let mut image = cluster(&[1, 2, 3]);
        add_partition(&mut image, "t", 0, &[1, 2, 3], 1, &[1, 2, 3]);
        add_partition(&mut image, "t", 1, &[1, 2], 1, &[1]); // alone in its ISR
        add_partition(&mut image, "t", 2, &[3, 1], 3, &[3, 1]); // follower
        add_partition(&mut image, "t", 3, &[1, 3], 1, &[1, 3]);
        set_state(&mut image, 3, BrokerState::ShuttingDown);
        let before = image.clone();
        let mut changes = Changes::new(&mut image);
        let error = controlled_shutdown(&mut changes, 1, epoch_of(1) - 1).unwrap_err();
        assert_eq!(error.code, protocol::ErrorCode::StaleBrokerEpoch);
        assert!(changes.is_empty());
        drop(changes);
        assert_eq!(image, before);

        let mut changes = Changes::new(&mut image);
        let remaining = controlled_shutdown(&mut changes, 1, epoch_of(1)).unwrap();
        drop(changes);
        let remaining: Vec<_> = remaining.iter().map(|p| p.partition).collect();
        // t-1: no other in-sync replica; t-3: the other one is shutting down too.
        assert_eq!(remaining, vec![1, 3]);
        assert_eq!(image.brokers[&1].state, BrokerState::ShuttingDown as i32);
        let p = image.partition("t", 0).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
            (2, vec![2, 3], 1, 1)
        );
        let p = image.partition("t", 2).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.partition_epoch),
            (3, vec![3], 1)
        );
        // A shutting-down broker is not a candidate for leadership.
        let mut changes = Changes::new(&mut image);
        fence_broker(&mut changes, 2, false);
        drop(changes);
        assert_eq!(image.partition("t", 0).unwrap().leader, NO_ID);
        check_invariants(&image);
    }
}
