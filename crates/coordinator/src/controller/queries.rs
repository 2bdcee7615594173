//! Read-only answers from the image: list, describe topics, describe the
//! cluster.

use protocol::ErrorCode;
use protocol::coordinator::{
    DescribeClusterResponse, DescribeTopicsResponse, ListTopicsResponse, TopicDescription,
};
use protocol::image::MetadataImage;

/// Every topic name, sorted.
pub fn list_topics(image: &MetadataImage) -> ListTopicsResponse {
    ListTopicsResponse {
        names: image.topics.keys().cloned().collect(),
    }
}

/// The named topics (every topic when `names` is empty), sorted by name,
/// with the cluster's brokers. An unknown name gets its own error entry.
pub fn describe_topics(image: &MetadataImage, names: &[String]) -> DescribeTopicsResponse {
    let mut wanted: Vec<&String> = if names.is_empty() {
        image.topics.keys().collect()
    } else {
        names.iter().collect()
    };
    wanted.sort();
    wanted.dedup();
    let topics = wanted
        .into_iter()
        .map(|name| match image.topics.get(name) {
            Some(topic) => TopicDescription {
                name: name.clone(),
                error_code: ErrorCode::None.code(),
                error_message: String::new(),
                topic: Some(topic.info.clone()),
                partitions: topic.partitions.values().cloned().collect(),
            },
            None => TopicDescription {
                name: name.clone(),
                error_code: ErrorCode::UnknownTopicOrPartition.code(),
                error_message: format!("Topic '{name}' does not exist."),
                topic: None,
                partitions: Vec::new(),
            },
        })
        .collect();
    DescribeTopicsResponse {
        topics,
        brokers: image.brokers.values().cloned().collect(),
    }
}

pub fn describe_cluster(image: &MetadataImage) -> DescribeClusterResponse {
    DescribeClusterResponse {
        cluster_id: image.cluster_id.clone(),
        brokers: image.brokers.values().cloned().collect(),
        metadata_version: image.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests_support::*;

    #[test]
    fn describe_sorts_dedups_and_reports_unknown_names() {
        let mut image = cluster(&[1]);
        add_partition(&mut image, "b", 1, &[1], 1, &[1]);
        add_partition(&mut image, "b", 0, &[1], 1, &[1]);
        add_partition(&mut image, "a", 0, &[1], 1, &[1]);
        let all = describe_topics(&image, &[]);
        let names: Vec<&str> = all.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let parts: Vec<i32> = all.topics[1]
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(parts, [0, 1]);
        assert_eq!(all.brokers.len(), 1);
        let some = describe_topics(&image, &["zz".into(), "b".into(), "b".into()]);
        assert_eq!(some.topics.len(), 2);
        assert_eq!(some.topics[0].name, "b");
        assert_eq!(
            ErrorCode::from_code(some.topics[1].error_code),
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(list_topics(&image).names, ["a", "b"]);
    }
}
