//! The controller's decisions: pure functions from the metadata image and an
//! event (a request, a lapsed session, a timer) to the metadata records that
//! carry out the decision.
//!
//! Each decision pushes its records into a [`Changes`], which applies them to
//! the image as they are made, so the next decision of the same group commit
//! sees them. Nothing here does I/O, reads a clock or draws randomness it
//! was not handed: the writer task owns those, and tests call these
//! functions on a hand-built image.
//!
//! Invariants every decision keeps (checked by `check_invariants` in tests):
//! a leader is an assigned replica and a member of its ISR; an ISR is never
//! empty and holds only assigned replicas; every change of a partition bumps
//! its `partition_epoch`, every change of its leader its `leader_epoch`.

pub mod brokers;
pub mod partitions;
pub mod placement;
pub mod queries;
pub mod topics;

use protocol::ErrorCode;
use protocol::coordinator::MetadataRecord;
use protocol::image::MetadataImage;

/// The records decided so far in one group commit.
///
/// Every record is applied to the image the moment it is pushed, so that
/// decisions see the ones made before them; the image's `version` is left
/// at the last committed version until the writer commits the records.
#[derive(Debug)]
pub struct Changes<'a> {
    image: &'a mut MetadataImage,
    records: Vec<MetadataRecord>,
}

impl<'a> Changes<'a> {
    pub fn new(image: &'a mut MetadataImage) -> Changes<'a> {
        Changes {
            image,
            records: Vec::new(),
        }
    }

    /// The image with every record pushed so far applied.
    pub fn image(&self) -> &MetadataImage {
        self.image
    }

    /// The metadata version once the next record pushed is applied, i.e.
    /// that record's log offset plus one.
    pub fn next_version(&self) -> i64 {
        self.image.version + self.records.len() as i64 + 1
    }

    pub fn push(&mut self, record: impl Into<MetadataRecord>) {
        let record = record.into();
        self.image.apply(&record);
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> &[MetadataRecord] {
        &self.records
    }

    pub fn into_records(self) -> Vec<MetadataRecord> {
        self.records
    }
}

/// A refusal that travels in a response's `error_code` and `error_message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// A request that makes no sense as a whole (e.g. an empty list where one
/// is required): answered with gRPC `InvalidArgument`, nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// Asserts the invariants of the module docs over a whole image.
#[cfg(test)]
pub(crate) fn check_invariants(image: &MetadataImage) {
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            assert!(
                !p.isr.is_empty(),
                "{}-{} has an empty ISR",
                p.topic,
                p.partition
            );
            for r in &p.isr {
                assert!(
                    p.replicas.contains(r),
                    "{}-{}: ISR member {r} is not a replica",
                    p.topic,
                    p.partition
                );
            }
            if p.leader != protocol::NO_ID {
                assert!(
                    p.isr.contains(&p.leader),
                    "{}-{}: leader {} not in ISR {:?}",
                    p.topic,
                    p.partition,
                    p.leader,
                    p.isr
                );
            }
        }
    }
}

/// Hand-built images for the decision tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use bytes::Bytes;
    use protocol::coordinator::{BrokerInfo, BrokerState, Endpoint, PartitionState, TopicInfo};
    use protocol::image::MetadataImage;

    /// The epoch the test brokers are registered with.
    pub(crate) fn epoch_of(broker_id: i32) -> i64 {
        100 + i64::from(broker_id)
    }

    pub(crate) fn broker(broker_id: i32, state: BrokerState) -> BrokerInfo {
        BrokerInfo {
            broker_id,
            broker_epoch: epoch_of(broker_id),
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092 + broker_id,
            }],
            rack: String::new(),
            state: state as i32,
            incarnation_id: format!("incarnation-{broker_id}"),
            session_timeout_ms: 6000,
        }
    }

    /// Active brokers with the given ids, at version 1000.
    pub(crate) fn cluster(ids: &[i32]) -> MetadataImage {
        let mut image = MetadataImage {
            version: 1000,
            cluster_id: "test-cluster".into(),
            ..Default::default()
        };
        for &id in ids {
            image.brokers.insert(id, broker(id, BrokerState::Active));
        }
        image
    }

    pub(crate) fn set_state(image: &mut MetadataImage, broker_id: i32, state: BrokerState) {
        image.brokers.get_mut(&broker_id).unwrap().state = state as i32;
    }

    pub(crate) fn fence(image: &mut MetadataImage, broker_id: i32) {
        set_state(image, broker_id, BrokerState::Fenced);
    }

    pub(crate) fn activate(image: &mut MetadataImage, broker_id: i32) {
        set_state(image, broker_id, BrokerState::Active);
    }

    pub(crate) fn topic_id(name: &str) -> Bytes {
        let mut id = [7u8; 16];
        for (i, b) in name.bytes().enumerate().take(16) {
            id[i] = b;
        }
        Bytes::copy_from_slice(&id)
    }

    /// Adds a partition (and its topic if new) with epochs 0.
    pub(crate) fn add_partition(
        image: &mut MetadataImage,
        topic: &str,
        partition: i32,
        replicas: &[i32],
        leader: i32,
        isr: &[i32],
    ) {
        if !image.topics.contains_key(topic) {
            image.apply(
                &TopicInfo {
                    name: topic.into(),
                    topic_id: topic_id(topic),
                    configs: Default::default(),
                }
                .into(),
            );
        }
        image.apply(
            &PartitionState {
                topic: topic.into(),
                partition,
                replicas: replicas.to_vec(),
                leader,
                leader_epoch: 0,
                isr: isr.to_vec(),
                partition_epoch: 0,
                topic_id: topic_id(topic),
            }
            .into(),
        );
    }
}
