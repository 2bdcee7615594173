//! The cluster's metadata as a value: brokers, topics and partition states,
//! built by applying metadata records in log order.
//!
//! The coordinator holds one as its state and appends the records that change
//! it; brokers and tools hold one fed by `WatchMetadata`. Because every record
//! is an upsert of a whole object, applying is replacing, and two processes
//! that applied the same records hold equal images.

use std::collections::BTreeMap;

use crate::coordinator::{
    BrokerInfo, BrokerState, MetadataRecord, MetadataUpdate, PartitionState, TopicInfo,
    metadata_record::Record,
};

/// One topic: its info and its partitions by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicImage {
    pub info: TopicInfo,
    pub partitions: BTreeMap<i32, PartitionState>,
}

/// Everything the coordinator has committed up to `version`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataImage {
    /// The number of metadata records applied (the metadata log end offset).
    pub version: i64,
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicImage>,
}

impl MetadataImage {
    /// Applies one update from the watch stream. A snapshot replaces the
    /// whole image.
    pub fn apply_update(&mut self, update: &MetadataUpdate) {
        if update.snapshot {
            *self = MetadataImage::default();
        }
        for record in &update.records {
            self.apply(record);
        }
        if !update.cluster_id.is_empty() {
            self.cluster_id.clone_from(&update.cluster_id);
        }
        self.version = update.version;
    }

    /// Applies one record. Does not move `version`: the caller does, once per
    /// committed group of records.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match &record.record {
            Some(Record::Broker(broker)) => {
                self.brokers.insert(broker.broker_id, broker.clone());
            }
            Some(Record::Topic(topic)) => {
                let entry = self.topics.entry(topic.name.clone()).or_default();
                if entry.info.topic_id != topic.topic_id {
                    // A topic of the same name with a new id is a new topic.
                    entry.partitions.clear();
                }
                entry.info = topic.clone();
            }
            Some(Record::Partition(partition)) => {
                if let Some(topic) = self.topics.get_mut(&partition.topic) {
                    topic
                        .partitions
                        .insert(partition.partition, partition.clone());
                }
            }
            Some(Record::RemoveTopic(remove)) => {
                let same_topic = self.topics.get(&remove.name).is_some_and(|t| {
                    remove.topic_id.is_empty() || t.info.topic_id == remove.topic_id
                });
                if same_topic {
                    self.topics.remove(&remove.name);
                }
            }
            None => {}
        }
    }

    /// The records that rebuild this image from nothing: brokers, then each
    /// topic followed by its partitions.
    pub fn snapshot_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::with_capacity(
            self.brokers.len()
                + self
                    .topics
                    .values()
                    .map(|t| 1 + t.partitions.len())
                    .sum::<usize>(),
        );
        for broker in self.brokers.values() {
            records.push(MetadataRecord {
                record: Some(Record::Broker(broker.clone())),
            });
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord {
                record: Some(Record::Topic(topic.info.clone())),
            });
            for partition in topic.partitions.values() {
                records.push(MetadataRecord {
                    record: Some(Record::Partition(partition.clone())),
                });
            }
        }
        records
    }

    /// This image as one snapshot update.
    pub fn snapshot_update(&self) -> MetadataUpdate {
        MetadataUpdate {
            version: self.version,
            snapshot: true,
            records: self.snapshot_records(),
            cluster_id: self.cluster_id.clone(),
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(&partition)
    }

    /// Whether a broker is in session and eligible to lead or be in an ISR.
    pub fn is_broker_active(&self, broker_id: i32) -> bool {
        self.brokers
            .get(&broker_id)
            .is_some_and(|b| b.state == BrokerState::Active as i32)
    }

    /// Brokers in session: active or in controlled shutdown.
    pub fn live_broker_ids(&self) -> impl Iterator<Item = i32> + '_ {
        self.brokers.values().filter_map(|b| {
            let live = b.state == BrokerState::Active as i32
                || b.state == BrokerState::ShuttingDown as i32;
            live.then_some(b.broker_id)
        })
    }
}

/// Shorthand constructors for records, so callers do not spell the oneof.
impl From<BrokerInfo> for MetadataRecord {
    fn from(value: BrokerInfo) -> Self {
        MetadataRecord {
            record: Some(Record::Broker(value)),
        }
    }
}

impl From<TopicInfo> for MetadataRecord {
    fn from(value: TopicInfo) -> Self {
        MetadataRecord {
            record: Some(Record::Topic(value)),
        }
    }
}

impl From<PartitionState> for MetadataRecord {
    fn from(value: PartitionState) -> Self {
        MetadataRecord {
            record: Some(Record::Partition(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::RemoveTopic;
    use bytes::Bytes;

    fn topic(name: &str, id: u8) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            topic_id: Bytes::from(vec![id; 16]),
            configs: Default::default(),
        }
    }

    fn partition(name: &str, id: u8, p: i32, leader: i32) -> PartitionState {
        PartitionState {
            topic: name.into(),
            partition: p,
            replicas: vec![1, 2],
            leader,
            leader_epoch: 0,
            isr: vec![1, 2],
            partition_epoch: 0,
            topic_id: Bytes::from(vec![id; 16]),
        }
    }

    #[test]
    fn records_upsert_and_snapshot_rebuilds_the_same_image() {
        let mut image = MetadataImage::default();
        image.apply_update(&MetadataUpdate {
            version: 3,
            snapshot: false,
            records: vec![
                topic("t", 1).into(),
                partition("t", 1, 0, 1).into(),
                partition("t", 1, 0, 2).into(),
            ],
            cluster_id: "c".into(),
        });
        assert_eq!(image.version, 3);
        assert_eq!(image.partition("t", 0).map(|p| p.leader), Some(2));

        let mut rebuilt = MetadataImage::default();
        rebuilt.apply_update(&image.snapshot_update());
        assert_eq!(rebuilt, image);
    }

    #[test]
    fn a_recreated_topic_starts_without_the_old_partitions() {
        let mut image = MetadataImage::default();
        image.apply(&topic("t", 1).into());
        image.apply(&partition("t", 1, 0, 1).into());
        image.apply(&partition("t", 1, 1, 1).into());
        image.apply(&MetadataRecord {
            record: Some(Record::RemoveTopic(RemoveTopic {
                name: "t".into(),
                topic_id: Bytes::from(vec![1; 16]),
            })),
        });
        assert!(image.topics.is_empty());
        image.apply(&topic("t", 2).into());
        image.apply(&partition("t", 2, 0, 2).into());
        assert_eq!(image.topics["t"].partitions.len(), 1);
    }
}
