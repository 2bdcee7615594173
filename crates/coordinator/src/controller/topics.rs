//! Topic administration: create (with Kafka's validation and placement),
//! delete, add partitions, and alter topic configs. Each topic of a request succeeds or fails on
//! its own; a refused topic changes nothing.

use std::collections::HashMap;

use bytes::Bytes;
use protocol::ErrorCode;
use protocol::coordinator::{
    AlterConfigsRequest, AlterableTopicConfigs, CreatableTopic, CreatableTopicResult,
    CreatePartitionsRequest, CreatePartitionsTopic, CreateTopicsRequest, PartitionState,
    RemoveTopic, ReplicaAssignment, TopicInfo, TopicResult, metadata_record::Record,
};
use protocol::image::MetadataImage;

use super::placement::{Rng, assign_replicas};
use super::{ApiError, Changes, Malformed};

/// Kafka's limit on topic names (the partition directory name must fit
/// the file system's 255 bytes with a partition suffix).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Partitions one topic may have. Kafka sets no such limit; one is needed
/// so that a typo cannot make the coordinator build millions of records.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// New partitions one request may create, over all its topics.
pub const MAX_NEW_PARTITIONS_PER_REQUEST: usize = 200_000;

/// Checks one topic config; the error message names the key and the value.
pub type ConfigValidator<'a> = &'a dyn Fn(&str, &str) -> Result<(), String>;

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |message: String| Err(ApiError::new(ErrorCode::InvalidTopicException, message));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty.".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\".".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka refuses a topic whose name equals an existing one once '.' is read
/// as '_': both would have the same metric names.
fn check_collision(image: &MetadataImage, name: &str) -> Result<(), ApiError> {
    if !name.contains(['.', '_']) {
        return Ok(());
    }
    let normalized = name.replace('.', "_");
    match image
        .topics
        .keys()
        .find(|existing| existing.as_str() != name && existing.replace('.', "_") == normalized)
    {
        Some(existing) => Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("Topic '{name}' collides with existing topic: {existing}"),
        )),
        None => Ok(()),
    }
}

/// A topic ready to be written: its record and its partitions' records.
#[derive(Debug, Clone, PartialEq)]
struct NewTopic {
    info: TopicInfo,
    partitions: Vec<PartitionState>,
}

impl NewTopic {
    fn replication_factor(&self) -> i32 {
        self.partitions
            .first()
            .map_or(0, |p| p.replicas.len() as i32)
    }
}

/// Creates topics. Returns one result per requested topic, in request order.
pub fn create_topics(
    changes: &mut Changes<'_>,
    request: &CreateTopicsRequest,
    rng: &mut Rng,
    validate_config: ConfigValidator<'_>,
) -> Result<Vec<CreatableTopicResult>, Malformed> {
    if request.topics.is_empty() {
        return Err(Malformed("CreateTopics names no topic".into()));
    }
    let occurrences = count_names(request.topics.iter().map(|t| t.name.as_str()));
    let mut budget = MAX_NEW_PARTITIONS_PER_REQUEST;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let planned = if occurrences[topic.name.as_str()] > 1 {
            Err(duplicate(&topic.name))
        } else {
            plan_topic(changes.image(), topic, rng, validate_config, &mut budget)
        };
        let result = match planned {
            Ok(new_topic) => {
                let result = CreatableTopicResult {
                    name: topic.name.clone(),
                    error_code: ErrorCode::None.code(),
                    error_message: String::new(),
                    topic_id: new_topic.info.topic_id.clone(),
                    num_partitions: new_topic.partitions.len() as i32,
                    replication_factor: new_topic.replication_factor(),
                };
                if !request.validate_only {
                    changes.push(new_topic.info);
                    for partition in new_topic.partitions {
                        changes.push(partition);
                    }
                }
                result
            }
            Err(error) => CreatableTopicResult {
                name: topic.name.clone(),
                error_code: error.code.code(),
                error_message: error.message,
                topic_id: Bytes::new(),
                num_partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
            },
        };
        results.push(result);
    }
    Ok(results)
}

fn count_names<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

fn duplicate(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("Topic '{name}' appears more than once in the request."),
    )
}

fn plan_topic(
    image: &MetadataImage,
    topic: &CreatableTopic,
    rng: &mut Rng,
    validate_config: ConfigValidator<'_>,
    budget: &mut usize,
) -> Result<NewTopic, ApiError> {
    let name = topic.name.as_str();
    validate_topic_name(name)?;
    if image.topics.contains_key(name) {
        return Err(ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    check_collision(image, name)?;
    let mut keys: Vec<&String> = topic.configs.keys().collect();
    keys.sort();
    for key in keys {
        validate_config(key, &topic.configs[key])
            .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    }
    let replicas = if topic.assignments.is_empty() {
        check_partition_count(topic.num_partitions)?;
        let brokers = placement_brokers(image, topic.replication_factor)?;
        let start_index = rng.below(brokers.len());
        let replica_shift = rng.below(brokers.len());
        take_budget(budget, topic.num_partitions as usize)?;
        assign_replicas(
            &brokers,
            topic.num_partitions as usize,
            topic.replication_factor as usize,
            0,
            start_index,
            replica_shift,
        )
    } else {
        if topic.num_partitions > 0 || topic.replication_factor > 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        check_partition_count(topic.assignments.len() as i32)?;
        take_budget(budget, topic.assignments.len())?;
        validate_assignment(image, &topic.assignments, 0, None)?
    };
    let topic_id = new_topic_id(rng);
    let partitions = replicas
        .into_iter()
        .enumerate()
        .map(|(partition, replicas)| {
            new_partition(image, name, &topic_id, partition as i32, replicas)
        })
        .collect();
    Ok(NewTopic {
        info: TopicInfo {
            name: name.to_owned(),
            topic_id,
            configs: topic.configs.clone(),
        },
        partitions,
    })
}

fn check_partition_count(count: i32) -> Result<(), ApiError> {
    if count == -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            "Number of partitions was not given, and the coordinator has no num.partitions default.",
        ));
    }
    if count < 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            "Number of partitions must be larger than 0.",
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "Number of partitions {count} is larger than the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."
            ),
        ));
    }
    Ok(())
}

fn take_budget(budget: &mut usize, partitions: usize) -> Result<(), ApiError> {
    if partitions > *budget {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "This request would create more than {MAX_NEW_PARTITIONS_PER_REQUEST} partitions; create them in several requests."
            ),
        ));
    }
    *budget -= partitions;
    Ok(())
}

/// The sorted active brokers, if there are enough for `replication_factor`.
fn placement_brokers(image: &MetadataImage, replication_factor: i32) -> Result<Vec<i32>, ApiError> {
    if replication_factor == -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            "Replication factor was not given, and the coordinator has no default.replication.factor.",
        ));
    }
    if replication_factor < 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    // BTreeMap keys: already sorted.
    let brokers: Vec<i32> = image
        .brokers
        .keys()
        .copied()
        .filter(|&id| image.is_broker_active(id))
        .collect();
    if replication_factor as usize > brokers.len() {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "Replication factor: {replication_factor} larger than available brokers: {}.",
                brokers.len()
            ),
        ));
    }
    Ok(brokers)
}

/// Checks an explicit placement of partitions `first..first + n` and
/// returns the replica lists in partition order.
fn validate_assignment(
    image: &MetadataImage,
    assignments: &[ReplicaAssignment],
    first: i32,
    replication_factor: Option<usize>,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let invalid =
        |message: String| Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, message));
    let mut sorted: Vec<&ReplicaAssignment> = assignments.iter().collect();
    sorted.sort_by_key(|a| a.partition);
    let last = first + assignments.len() as i32 - 1;
    if sorted
        .iter()
        .enumerate()
        .any(|(i, a)| a.partition != first + i as i32)
    {
        return invalid(format!(
            "The assignment must name each of partitions {first} to {last} once."
        ));
    }
    let replication_factor = replication_factor.unwrap_or(sorted[0].replicas.len());
    let mut unknown: Vec<i32> = Vec::new();
    for assignment in &sorted {
        let (p, replicas) = (assignment.partition, &assignment.replicas);
        if replicas.is_empty() {
            return invalid(format!("The replica assignment of partition {p} is empty."));
        }
        if replicas.len() != replication_factor {
            return invalid(format!(
                "Inconsistent replication factor: partition {p} has {} replicas where {replication_factor} are expected.",
                replicas.len()
            ));
        }
        for (i, r) in replicas.iter().enumerate() {
            if replicas[..i].contains(r) {
                return invalid(format!(
                    "Duplicate brokers not allowed in replica assignment: {} for partition id {p}.",
                    join(replicas)
                ));
            }
            if !image.brokers.contains_key(r) && !unknown.contains(r) {
                unknown.push(*r);
            }
        }
        if unknown.is_empty() && !replicas.iter().any(|&r| image.is_broker_active(r)) {
            return invalid(format!(
                "All brokers in the assignment of partition {p} ({}) are fenced or shutting down.",
                join(replicas)
            ));
        }
    }
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return invalid(format!(
            "Unknown broker(s) in replica assignment: {}.",
            join(&unknown)
        ));
    }
    Ok(sorted.into_iter().map(|a| a.replicas.clone()).collect())
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new partition: its active replicas form the ISR, the first of them
/// leads; epochs start at 0. (Validation ensures one replica is active;
/// were none, the partition would start offline with every replica in its
/// ISR rather than break the never-empty ISR rule.)
fn new_partition(
    image: &MetadataImage,
    topic: &str,
    topic_id: &Bytes,
    partition: i32,
    replicas: Vec<i32>,
) -> PartitionState {
    let mut isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|&r| image.is_broker_active(r))
        .collect();
    let leader = isr.first().copied().unwrap_or(protocol::NO_ID);
    if isr.is_empty() {
        isr.clone_from(&replicas);
    }
    PartitionState {
        topic: topic.to_owned(),
        partition,
        leader,
        leader_epoch: 0,
        isr,
        replicas,
        partition_epoch: 0,
        topic_id: topic_id.clone(),
    }
}

fn new_topic_id(rng: &mut Rng) -> Bytes {
    loop {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        // All zeros is Kafka's "no topic id".
        if id != [0u8; 16] {
            return Bytes::copy_from_slice(&id);
        }
    }
}

/// Deletes topics (RemoveTopic records); unknown names are reported.
/// With `deletion_enabled` false (`delete.topic.enable=false`) every topic
/// is refused.
pub fn delete_topics(
    changes: &mut Changes<'_>,
    names: &[String],
    deletion_enabled: bool,
) -> Result<Vec<TopicResult>, Malformed> {
    if names.is_empty() {
        return Err(Malformed("DeleteTopics names no topic".into()));
    }
    let occurrences = count_names(names.iter().map(String::as_str));
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let outcome = if occurrences[name.as_str()] > 1 {
            Err(duplicate(name))
        } else if !deletion_enabled {
            Err(ApiError::new(
                ErrorCode::TopicDeletionDisabled,
                "Topic deletion is disabled (delete.topic.enable=false).",
            ))
        } else if let Some(topic) = changes.image().topics.get(name) {
            let remove = RemoveTopic {
                name: name.clone(),
                topic_id: topic.info.topic_id.clone(),
            };
            changes.push(protocol::coordinator::MetadataRecord {
                record: Some(Record::RemoveTopic(remove)),
            });
            Ok(())
        } else {
            Err(unknown_topic(name))
        };
        results.push(topic_result(name, outcome));
    }
    Ok(results)
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("Topic '{name}' does not exist."),
    )
}

fn topic_result(name: &str, outcome: Result<(), ApiError>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name: name.to_owned(),
            error_code: ErrorCode::None.code(),
            error_message: String::new(),
        },
        Err(e) => TopicResult {
            name: name.to_owned(),
            error_code: e.code.code(),
            error_message: e.message,
        },
    }
}

/// Sets and removes topic configs. Each topic's change is validated whole
/// (every key set as at creation, every key removed a known topic config)
/// and lands as one upsert of the topic, so brokers apply it at once.
pub fn alter_configs(
    changes: &mut Changes<'_>,
    request: &AlterConfigsRequest,
    validate_config: ConfigValidator<'_>,
) -> Result<Vec<TopicResult>, Malformed> {
    if request.topics.is_empty() {
        return Err(Malformed("AlterConfigs names no topic".into()));
    }
    let occurrences = count_names(request.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let planned = if occurrences[topic.name.as_str()] > 1 {
            Err(duplicate(&topic.name))
        } else {
            plan_configs(changes.image(), topic, validate_config)
        };
        let outcome = planned.map(|info| {
            if !request.validate_only {
                changes.push(info);
            }
        });
        results.push(topic_result(&topic.name, outcome));
    }
    Ok(results)
}

fn plan_configs(
    image: &MetadataImage,
    request: &AlterableTopicConfigs,
    validate_config: ConfigValidator<'_>,
) -> Result<TopicInfo, ApiError> {
    let name = request.name.as_str();
    let topic = image.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    if request.set.is_empty() && request.delete.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("No config to set or delete was given for topic '{name}'."),
        ));
    }
    let mut keys: Vec<&String> = request.set.keys().collect();
    keys.sort();
    for key in keys {
        if request.delete.contains(key) {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("Config {key} is both set and deleted."),
            ));
        }
        validate_config(key, &request.set[key])
            .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    }
    for key in &request.delete {
        if !config::topic_config_names().any(|known| known == key) {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("Unknown topic config name: {key}"),
            ));
        }
    }
    let mut info = topic.info.clone();
    for key in &request.delete {
        info.configs.remove(key);
    }
    for (key, value) in &request.set {
        info.configs.insert(key.clone(), value.clone());
    }
    Ok(info)
}

/// Raises topics' partition counts, placing the new partitions as Kafka
/// does (continuing the pattern of the existing ones).
pub fn create_partitions(
    changes: &mut Changes<'_>,
    request: &CreatePartitionsRequest,
    rng: &mut Rng,
) -> Result<Vec<TopicResult>, Malformed> {
    if request.topics.is_empty() {
        return Err(Malformed("CreatePartitions names no topic".into()));
    }
    let occurrences = count_names(request.topics.iter().map(|t| t.name.as_str()));
    let mut budget = MAX_NEW_PARTITIONS_PER_REQUEST;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let planned = if occurrences[topic.name.as_str()] > 1 {
            Err(duplicate(&topic.name))
        } else {
            plan_partitions(changes.image(), topic, rng, &mut budget)
        };
        let outcome = planned.map(|partitions| {
            if !request.validate_only {
                for partition in partitions {
                    changes.push(partition);
                }
            }
        });
        results.push(topic_result(&topic.name, outcome));
    }
    Ok(results)
}

fn plan_partitions(
    image: &MetadataImage,
    request: &CreatePartitionsTopic,
    rng: &mut Rng,
    budget: &mut usize,
) -> Result<Vec<PartitionState>, ApiError> {
    let name = request.name.as_str();
    let topic = image.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    let current = topic.partitions.len() as i32;
    let count = request.count;
    if count == current {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("Topic '{name}' already has {current} partitions."),
        ));
    }
    if count < current {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "Topic '{name}' has {current} partitions; the count can only be increased, not set to {count}."
            ),
        ));
    }
    check_partition_count(count)?;
    let added = (count - current) as usize;
    take_budget(budget, added)?;
    let first_replicas = topic
        .partitions
        .values()
        .next()
        .map(|p| p.replicas.clone())
        .unwrap_or_default();
    let replication_factor = first_replicas.len();
    let replicas = if request.assignments.is_empty() {
        let brokers = placement_brokers(image, replication_factor as i32)?;
        let start = match first_replicas
            .first()
            .and_then(|r| brokers.iter().position(|b| b == r))
        {
            Some(index) => index,
            None => rng.below(brokers.len()),
        };
        assign_replicas(
            &brokers,
            added,
            replication_factor,
            current as usize,
            start,
            start,
        )
    } else {
        if request.assignments.len() != added {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "Increasing the partition count from {current} to {count} needs {added} assignments; {} were given.",
                    request.assignments.len()
                ),
            ));
        }
        validate_assignment(
            image,
            &request.assignments,
            current,
            Some(replication_factor),
        )?
    };
    Ok(replicas
        .into_iter()
        .zip(current..)
        .map(|(replicas, partition)| {
            new_partition(image, name, &topic.info.topic_id, partition, replicas)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::check_invariants;
    use crate::controller::tests_support::*;
    use protocol::coordinator::BrokerState;

    fn accept_all(_: &str, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn topic(name: &str, partitions: i32, rf: i32) -> CreatableTopic {
        CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            configs: Default::default(),
            assignments: vec![],
        }
    }

    fn create(image: &mut MetadataImage, topics: Vec<CreatableTopic>) -> Vec<(ErrorCode, String)> {
        let request = CreateTopicsRequest {
            topics,
            validate_only: false,
        };
        // A new seed per call: topic ids must differ between calls.
        static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(7);
        let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut changes = Changes::new(image);
        let results =
            create_topics(&mut changes, &request, &mut Rng::seeded(seed), &accept_all).unwrap();
        results
            .into_iter()
            .map(|r| (ErrorCode::from_code(r.error_code), r.error_message))
            .collect()
    }

    fn code(image: &mut MetadataImage, t: CreatableTopic) -> ErrorCode {
        create(image, vec![t])[0].0
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_name("my-replicated_topic.1").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a b", "t/1", "é", &"a".repeat(250)] {
            let error = validate_topic_name(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidTopicException, "{bad:?}");
        }
    }

    #[test]
    fn creates_topics_with_leaders_first_and_full_isrs() {
        let mut image = cluster(&[1, 2, 3]);
        let results = create(&mut image, vec![topic("a", 6, 3), topic("b", 1, 1)]);
        assert!(results.iter().all(|(c, _)| c.is_ok()), "{results:?}");
        let a = &image.topics["a"];
        assert_eq!(a.partitions.len(), 6);
        assert_eq!(a.info.topic_id.len(), 16);
        for p in a.partitions.values() {
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
            assert_eq!(p.topic_id, a.info.topic_id);
        }
        let leaders: Vec<i32> = a.partitions.values().map(|p| p.leader).collect();
        for b in [1, 2, 3] {
            assert_eq!(
                leaders.iter().filter(|&&l| l == b).count(),
                2,
                "{leaders:?}"
            );
        }
        assert_ne!(image.topics["b"].info.topic_id, a.info.topic_id);
        check_invariants(&image);
    }

    #[test]
    fn every_validation_error() {
        let mut image = cluster(&[1, 2, 3]);
        image.brokers.insert(4, broker(4, BrokerState::Fenced));
        create(&mut image, vec![topic("taken", 1, 1), topic("a.b", 1, 1)]);
        let before = image.clone();

        let (c, m) = create(&mut image, vec![topic("t", 1, 4)]).remove(0);
        assert_eq!(
            (c, m.as_str()),
            (
                ErrorCode::InvalidReplicationFactor,
                "Replication factor: 4 larger than available brokers: 3."
            )
        );
        assert_eq!(
            code(&mut image, topic("t", 1, 0)),
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(
            code(&mut image, topic("t", 1, -1)),
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(
            code(&mut image, topic("t", 0, 1)),
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            code(&mut image, topic("t", -1, 1)),
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            code(&mut image, topic("t", MAX_PARTITIONS_PER_TOPIC + 1, 1)),
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            code(&mut image, topic("taken", 1, 1)),
            ErrorCode::TopicAlreadyExists
        );
        assert_eq!(
            code(&mut image, topic("bad name", 1, 1)),
            ErrorCode::InvalidTopicException
        );
        assert_eq!(
            code(&mut image, topic("a_b", 1, 1)),
            ErrorCode::InvalidTopicException
        );
        let results = create(&mut image, vec![topic("twice", 1, 1), topic("twice", 1, 1)]);
        assert_eq!(results[0].0, ErrorCode::InvalidRequest);
        assert_eq!(results[1].0, ErrorCode::InvalidRequest);

        let mut configured = topic("t", 1, 1);
        configured
            .configs
            .insert("retention.ms".into(), "soon".into());
        let request = CreateTopicsRequest {
            topics: vec![configured],
            validate_only: false,
        };
        let mut changes = Changes::new(&mut image);
        let reject = |k: &str, v: &str| Err(format!("Invalid value {v} for configuration {k}"));
        let results = create_topics(&mut changes, &request, &mut Rng::seeded(1), &reject).unwrap();
        assert_eq!(
            ErrorCode::from_code(results[0].error_code),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            results[0].error_message,
            "Invalid value soon for configuration retention.ms"
        );
        drop(changes);

        let assigned = |assignments: Vec<(i32, Vec<i32>)>| CreatableTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
            assignments: assignments
                .into_iter()
                .map(|(partition, replicas)| ReplicaAssignment {
                    partition,
                    replicas,
                })
                .collect(),
        };
        assert_eq!(
            code(&mut image, assigned(vec![(1, vec![1])])),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&mut image, assigned(vec![(0, vec![1, 1])])),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&mut image, assigned(vec![(0, vec![1, 2]), (1, vec![1])])),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&mut image, assigned(vec![(0, vec![1, 9])])),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&mut image, assigned(vec![(0, vec![4])])),
            ErrorCode::InvalidReplicaAssignment
        );
        assert_eq!(
            code(&mut image, assigned(vec![(0, vec![])])),
            ErrorCode::InvalidReplicaAssignment
        );
        let mut both = assigned(vec![(0, vec![1])]);
        both.num_partitions = 1;
        assert_eq!(code(&mut image, both), ErrorCode::InvalidRequest);
        assert_eq!(image, before, "refused topics change nothing");

        let mut changes = Changes::new(&mut image);
        let empty = CreateTopicsRequest::default();
        assert!(create_topics(&mut changes, &empty, &mut Rng::seeded(1), &accept_all).is_err());
    }

    #[test]
    fn explicit_assignments_and_validate_only() {
        let mut image = cluster(&[1, 2, 3]);
        image.brokers.insert(4, broker(4, BrokerState::Fenced));
        let t = CreatableTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
            assignments: vec![
                ReplicaAssignment {
                    partition: 1,
                    replicas: vec![4, 3],
                },
                ReplicaAssignment {
                    partition: 0,
                    replicas: vec![2, 1],
                },
            ],
        };
        let request = CreateTopicsRequest {
            topics: vec![t],
            validate_only: true,
        };
        let mut changes = Changes::new(&mut image);
        let results =
            create_topics(&mut changes, &request, &mut Rng::seeded(1), &accept_all).unwrap();
        assert_eq!(
            (
                results[0].error_code,
                results[0].num_partitions,
                results[0].replication_factor
            ),
            (0, 2, 2)
        );
        assert!(changes.is_empty());
        let request = CreateTopicsRequest {
            validate_only: false,
            ..request
        };
        create_topics(&mut changes, &request, &mut Rng::seeded(1), &accept_all).unwrap();
        drop(changes);
        let p1 = image.partition("t", 1).unwrap();
        // The fenced replica is assigned but not in the ISR.
        assert_eq!(
            (p1.replicas.clone(), p1.leader, p1.isr.clone()),
            (vec![4, 3], 3, vec![3])
        );
        assert_eq!(image.partition("t", 0).unwrap().replicas, vec![2, 1]);
        check_invariants(&image);
    }

    #[test]
    fn alter_configs_sets_and_removes_keys_and_refuses_bad_ones() {
        let mut image = cluster(&[1]);
        create(&mut image, vec![topic("t", 1, 1)]);
        let partition_epoch = image.partition("t", 0).unwrap().partition_epoch;
        let alter = |image: &mut MetadataImage, set: &[(&str, &str)], delete: &[&str]| {
            let request = AlterConfigsRequest {
                topics: vec![AlterableTopicConfigs {
                    name: "t".into(),
                    set: set
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    delete: delete.iter().map(|k| k.to_string()).collect(),
                }],
                validate_only: false,
            };
            let mut changes = Changes::new(image);
            let result = alter_configs(&mut changes, &request, &|key, value| {
                config::validate_topic_config(key, value).map_err(|e| e.to_string())
            })
            .unwrap();
            (
                ErrorCode::from_code(result[0].error_code),
                result[0].error_message.clone(),
            )
        };
        let configs = |image: &MetadataImage| {
            let mut c: Vec<(String, String)> =
                image.topics["t"].info.configs.clone().into_iter().collect();
            c.sort();
            c
        };
        assert_eq!(
            alter(
                &mut image,
                &[("retention.ms", "1000"), ("min.insync.replicas", "2")],
                &[]
            )
            .0,
            ErrorCode::None
        );
        assert_eq!(
            configs(&image),
            vec![
                ("min.insync.replicas".to_string(), "2".to_string()),
                ("retention.ms".to_string(), "1000".to_string())
            ]
        );
        assert_eq!(alter(&mut image, &[], &["retention.ms"]).0, ErrorCode::None);
        assert_eq!(
            configs(&image),
            vec![("min.insync.replicas".to_string(), "2".to_string())]
        );
        // Partitions are untouched by a config change.
        assert_eq!(
            image.partition("t", 0).unwrap().partition_epoch,
            partition_epoch
        );

        let (code, message) = alter(&mut image, &[("retention.ms", "soon")], &[]);
        assert_eq!(code, ErrorCode::InvalidConfig);
        assert!(message.contains("retention.ms"), "{message}");
        assert_eq!(
            alter(&mut image, &[], &["no.such.config"]).0,
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            alter(&mut image, &[("retention.ms", "1")], &["retention.ms"]).0,
            ErrorCode::InvalidConfig
        );
        assert_eq!(alter(&mut image, &[], &[]).0, ErrorCode::InvalidRequest);
        assert_eq!(
            configs(&image),
            vec![("min.insync.replicas".to_string(), "2".to_string())]
        );
    }

    #[test]
    fn delete_and_recreate() {
        let mut image = cluster(&[1]);
        create(&mut image, vec![topic("t", 2, 1)]);
        let old_id = image.topics["t"].info.topic_id.clone();
        let mut changes = Changes::new(&mut image);
        let refused = delete_topics(&mut changes, &["t".into()], false).unwrap();
        assert_eq!(
            ErrorCode::from_code(refused[0].error_code),
            ErrorCode::TopicDeletionDisabled
        );
        assert!(changes.is_empty());
        let results = delete_topics(&mut changes, &["t".into(), "missing".into()], true).unwrap();
        assert_eq!(results[0].error_code, 0);
        assert_eq!(
            ErrorCode::from_code(results[1].error_code),
            ErrorCode::UnknownTopicOrPartition
        );
        assert!(delete_topics(&mut changes, &[], true).is_err());
        drop(changes);
        assert!(image.topics.is_empty());
        create(&mut image, vec![topic("t", 1, 1)]);
        assert_ne!(image.topics["t"].info.topic_id, old_id);
        assert_eq!(image.topics["t"].partitions.len(), 1);
    }

    fn add(image: &mut MetadataImage, name: &str, count: i32) -> (ErrorCode, String) {
        let request = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: name.into(),
                count,
                assignments: vec![],
            }],
            validate_only: false,
        };
        let mut changes = Changes::new(image);
        let result = create_partitions(&mut changes, &request, &mut Rng::seeded(3))
            .unwrap()
            .remove(0);
        (
            ErrorCode::from_code(result.error_code),
            result.error_message,
        )
    }

    #[test]
    fn partitions_only_increase_and_continue_the_placement() {
        let mut image = cluster(&[1, 2, 3]);
        create(&mut image, vec![topic("t", 3, 2)]);
        assert_eq!(add(&mut image, "t", 3).0, ErrorCode::InvalidPartitions);
        assert_eq!(add(&mut image, "t", 2).0, ErrorCode::InvalidPartitions);
        assert_eq!(
            add(&mut image, "missing", 2).0,
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(add(&mut image, "t", 6), (ErrorCode::None, String::new()));
        let t = &image.topics["t"];
        assert_eq!(t.partitions.len(), 6);
        let leaders: Vec<i32> = t.partitions.values().map(|p| p.leader).collect();
        for b in [1, 2, 3] {
            assert_eq!(
                leaders.iter().filter(|&&l| l == b).count(),
                2,
                "{leaders:?}"
            );
        }
        assert!(
            t.partitions
                .values()
                .all(|p| p.replicas.len() == 2 && p.topic_id == t.info.topic_id)
        );
        check_invariants(&image);
        // Not enough brokers for the topic's replication factor any more.
        fence(&mut image, 2);
        fence(&mut image, 3);
        let (code, message) = add(&mut image, "t", 7);
        assert_eq!(code, ErrorCode::InvalidReplicationFactor);
        assert_eq!(
            message,
            "Replication factor: 2 larger than available brokers: 1."
        );
    }
}
