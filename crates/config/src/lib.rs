//! Configuration, as Kafka users write it: Java `.properties` files with
//! Kafka's (and, for the coordinator, ZooKeeper's) key names and defaults.
//!
//! - [`Properties`] reads `.properties` text exactly as
//!   `java.util.Properties.load` does, remembering the line of each key.
//! - [`BrokerConfig`] (`server.properties`) and [`CoordinatorConfig`]
//!   (`zookeeper.properties`) are the typed, validated configs of the two
//!   daemons; [`TopicConfig`] and [`validate_topic_config`] cover
//!   topic-level configs (`retention.ms`, ...).
//! - [`property_lines`] / [`log_properties`] give Kafka's start-up lines
//!   (`Property port is overridden to 9092`, `Property topic is not valid`).
//! - [`init_logging`] installs Kafka's log line layout. It lives here
//!   because every process main (daemons and tools) already depends on this
//!   crate; it is the only part of the crate with a side effect.
//!
//! Invariants: a value that does not parse or is out of range is a
//! [`ConfigError`] naming the key, the value and the file and line, never a
//! silent default; an unknown key is a warning, never an error (Kafka's
//! behaviour), except for topic configs, where Kafka refuses it too. This
//! crate never opens sockets, creates directories, or depends on another
//! crate of the workspace: it says what to do; the daemons do it.

mod address;
mod broker;
mod coordinator;
mod error;
mod logging;
mod properties;
mod startup;
mod topic;
mod value;

pub use address::{
    AddressError, DEFAULT_ZOOKEEPER_PORT, Endpoint, HostPort, ZkConnect, local_hostname,
};
pub use broker::BrokerConfig;
pub use coordinator::CoordinatorConfig;
pub use error::{ConfigError, ConfigWarning, Location};
pub use logging::{KafkaLogFormat, LOG_FILTER_ENV, init_logging};
pub use properties::Properties;
pub use startup::{PropertyLine, log_properties, property_lines, unknown_key_warnings};
pub use topic::{
    CleanupPolicy, CompressionType, TimestampType, TopicConfig, topic_config_names,
    validate_topic_config,
};
