//! Kafka's error codes, as carried in every per-partition and per-topic
//! result. The numbers are Kafka's own and are never reused or renumbered.

use std::fmt;

/// Defines `ErrorCode` and its table from one list, so no variant can lack
/// its number, name or retriability.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $retriable:literal, $name:literal, $description:literal;)*) => {
        /// A Kafka protocol error code.
        ///
        /// Callers branch on [`ErrorCode::is_retriable`]: a retriable error means the
        /// same request may succeed later, usually after a metadata refresh.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($variant,)*
        }

        /// (variant, wire code, retriable, Kafka's name, what it means)
        const TABLE: &[(ErrorCode, i32, bool, &str, &str)] = &[
            $((ErrorCode::$variant, $code, $retriable, $name, $description),)*
        ];
    };
}

error_codes! {
    UnknownServerError = -1, false, "UNKNOWN_SERVER_ERROR", "the server hit an unexpected error";
    None = 0, false, "NONE", "no error";
    OffsetOutOfRange = 1, false, "OFFSET_OUT_OF_RANGE", "the offset is outside the range the log holds";
    CorruptMessage = 2, true, "CORRUPT_MESSAGE", "a record batch failed its CRC check or is malformed";
    UnknownTopicOrPartition = 3, true, "UNKNOWN_TOPIC_OR_PARTITION", "this server does not host the topic-partition";
    InvalidFetchSize = 4, false, "INVALID_FETCH_SIZE", "the requested fetch size is invalid";
    LeaderNotAvailable = 5, true, "LEADER_NOT_AVAILABLE", "the partition has no leader at the moment";
    NotLeaderOrFollower = 6, true, "NOT_LEADER_OR_FOLLOWER", "this broker is not the partition's leader (or not a replica)";
    RequestTimedOut = 7, true, "REQUEST_TIMED_OUT", "the request timed out";
    BrokerNotAvailable = 8, false, "BROKER_NOT_AVAILABLE", "the broker is not available";
    ReplicaNotAvailable = 9, true, "REPLICA_NOT_AVAILABLE", "the replica is not available";
    MessageTooLarge = 10, false, "MESSAGE_TOO_LARGE", "a record batch is larger than the server accepts";
    NetworkException = 13, true, "NETWORK_EXCEPTION", "the connection closed before a response arrived";
    InvalidTopicException = 17, false, "INVALID_TOPIC_EXCEPTION", "the topic name is invalid";
    RecordListTooLarge = 18, false, "RECORD_LIST_TOO_LARGE", "a record batch is larger than a log segment";
    NotEnoughReplicas = 19, true, "NOT_ENOUGH_REPLICAS", "fewer in-sync replicas than min.insync.replicas";
    NotEnoughReplicasAfterAppend = 20, true, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "written, but to fewer in-sync replicas than required";
    InvalidRequiredAcks = 21, false, "INVALID_REQUIRED_ACKS", "acks must be -1 (all), 0 or 1";
    InvalidTimestamp = 32, false, "INVALID_TIMESTAMP", "a record timestamp is out of the accepted range";
    UnsupportedVersion = 35, false, "UNSUPPORTED_VERSION", "the request version is not supported";
    TopicAlreadyExists = 36, false, "TOPIC_ALREADY_EXISTS", "a topic with this name already exists";
    InvalidPartitions = 37, false, "INVALID_PARTITIONS", "the number of partitions is invalid";
    InvalidReplicationFactor = 38, false, "INVALID_REPLICATION_FACTOR", "the replication factor is below 1 or above the number of available brokers";
    InvalidReplicaAssignment = 39, false, "INVALID_REPLICA_ASSIGNMENT", "the replica assignment is invalid";
    InvalidConfig = 40, false, "INVALID_CONFIG", "a configuration is invalid";
    NotController = 41, true, "NOT_CONTROLLER", "this server is not the controller";
    InvalidRequest = 42, false, "INVALID_REQUEST", "the request is malformed";
    PolicyViolation = 44, false, "POLICY_VIOLATION", "the request violates a configured policy";
    KafkaStorageError = 56, true, "KAFKA_STORAGE_ERROR", "a disk error on the broker";
    TopicDeletionDisabled = 73, false, "TOPIC_DELETION_DISABLED", "topic deletion is disabled (delete.topic.enable=false)";
    FencedLeaderEpoch = 74, true, "FENCED_LEADER_EPOCH", "the leader epoch in the request is older than the broker's";
    UnknownLeaderEpoch = 75, true, "UNKNOWN_LEADER_EPOCH", "the leader epoch in the request is newer than the broker's";
    UnsupportedCompressionType = 76, false, "UNSUPPORTED_COMPRESSION_TYPE", "the compression type is not supported";
    StaleBrokerEpoch = 77, false, "STALE_BROKER_EPOCH", "the broker epoch is not the current one";
    OffsetNotAvailable = 78, true, "OFFSET_NOT_AVAILABLE", "the offset is not available yet";
    EligibleLeadersNotAvailable = 83, true, "ELIGIBLE_LEADERS_NOT_AVAILABLE", "no eligible leader is available";
    InvalidRecord = 87, false, "INVALID_RECORD", "a record failed validation";
    InvalidUpdateVersion = 95, false, "INVALID_UPDATE_VERSION", "the partition epoch in the request is stale";
    UnknownTopicId = 100, true, "UNKNOWN_TOPIC_ID", "this server does not host the topic id";
    DuplicateBrokerRegistration = 101, false, "DUPLICATE_BROKER_REGISTRATION", "this broker id is already in use";
    BrokerIdNotRegistered = 102, false, "BROKER_ID_NOT_REGISTERED", "the broker id is not registered";
    InconsistentTopicId = 103, true, "INCONSISTENT_TOPIC_ID", "the log's topic id differs from the request's";
    InconsistentClusterId = 104, false, "INCONSISTENT_CLUSTER_ID", "the cluster id in the request differs from the server's";
    IneligibleReplica = 107, false, "INELIGIBLE_REPLICA", "the new ISR holds a replica that may not join it";
    NewLeaderElected = 108, false, "NEW_LEADER_ELECTED", "the partition has a new leader";
}

impl ErrorCode {
    fn row(self) -> &'static (ErrorCode, i32, bool, &'static str, &'static str) {
        TABLE.iter().find(|row| row.0 == self).unwrap_or(&TABLE[0])
    }

    /// The number on the wire.
    pub fn code(self) -> i32 {
        self.row().1
    }

    /// Decodes a wire code; unknown codes become `UnknownServerError`, as in
    /// Kafka's clients.
    pub fn from_code(code: i32) -> ErrorCode {
        TABLE
            .iter()
            .find(|row| row.1 == code)
            .map_or(ErrorCode::UnknownServerError, |row| row.0)
    }

    /// Whether the same request may succeed if retried (after a metadata
    /// refresh where the error concerns leadership).
    pub fn is_retriable(self) -> bool {
        self.row().2
    }

    /// Kafka's name for the error, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub fn name(self) -> &'static str {
        self.row().3
    }

    /// A short description for messages shown to users.
    pub fn description(self) -> &'static str {
        self.row().4
    }

    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// Whether the client should refresh its metadata before retrying.
    pub fn invalidates_metadata(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::UnknownTopicId
                | ErrorCode::KafkaStorageError
                | ErrorCode::NetworkException
                | ErrorCode::BrokerNotAvailable
                | ErrorCode::ReplicaNotAvailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for row in TABLE {
            assert!(seen.insert(row.1), "code {} used twice", row.1);
            assert_eq!(ErrorCode::from_code(row.1), row.0);
            assert_eq!(row.0.code(), row.1);
        }
    }

    #[test]
    fn kafka_numbers_are_kept() {
        assert_eq!(ErrorCode::NotLeaderOrFollower.code(), 6);
        assert_eq!(ErrorCode::NotEnoughReplicas.code(), 19);
        assert_eq!(ErrorCode::TopicAlreadyExists.code(), 36);
        assert_eq!(ErrorCode::FencedLeaderEpoch.code(), 74);
        assert_eq!(ErrorCode::from_code(9999), ErrorCode::UnknownServerError);
        assert!(ErrorCode::NotLeaderOrFollower.is_retriable());
        assert!(!ErrorCode::MessageTooLarge.is_retriable());
    }
}
