//! `kafka-topics`: create, list, describe, alter and delete topics, through
//! a broker (`--bootstrap-server`) or the coordinator (`--zookeeper`).
//!
//! Output is Kafka's: `Created topic "test".`, and for `--describe` the
//! 0.8 layout: `Topic:test`, `PartitionCount:1`, `ReplicationFactor:1`,
//! `Configs:` joined by tabs, then one tab-indented line per partition.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Parser;
use client::{Admin, AdminConfig, ClientError, ErrorCode, NewTopic, TopicDescription};

use crate::{Failure, load_properties, parse_key_values};

/// The largest replication factor Kafka accepts (a Java short).
const MAX_REPLICATION_FACTOR: i32 = 32_767;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-topics",
    about = "Create, delete, describe, or change a topic.",
    disable_version_flag = true
)]
pub struct TopicsArgs {
    /// Create a new topic.
    #[arg(long)]
    pub create: bool,
    /// List all available topics.
    #[arg(long)]
    pub list: bool,
    /// List details for the given topics.
    #[arg(long)]
    pub describe: bool,
    /// Delete a topic.
    #[arg(long)]
    pub delete: bool,
    /// Alter the number of partitions of a topic.
    #[arg(long)]
    pub alter: bool,
    /// The Kafka server to connect to (host:port, comma-separated list).
    #[arg(long, value_name = "server to connect to")]
    pub bootstrap_server: Option<String>,
    /// The coordinator (ZooKeeper replacement) to connect to, host:port.
    #[arg(long, value_name = "hosts")]
    pub zookeeper: Option<String>,
    /// The topic to create, alter, describe or delete (comma-separated for several).
    #[arg(long)]
    pub topic: Option<String>,
    /// The number of partitions for the topic being created or altered.
    #[arg(long, value_name = "# of partitions")]
    pub partitions: Option<i32>,
    /// The replication factor for each partition in the topic being created.
    #[arg(long, value_name = "replication factor")]
    pub replication_factor: Option<i32>,
    /// Manual partition-to-broker assignment: `b1:b2,b3:b4` (partition 0 on
    /// brokers b1 and b2, partition 1 on b3 and b4).
    #[arg(
        long,
        value_name = "broker_id_for_part1_replica1:broker_id_for_part1_replica2,..."
    )]
    pub replica_assignment: Option<String>,
    /// A topic configuration override, `name=value`; may be repeated.
    #[arg(long = "config", value_name = "name=value")]
    pub configs: Vec<String>,
    /// Properties for the admin client (request.timeout.ms, ...).
    #[arg(long, value_name = "command config property file")]
    pub command_config: Option<PathBuf>,
    /// With --create: do nothing if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// With --alter, --delete or --describe: do nothing if the topic does not exist.
    #[arg(long)]
    pub if_exists: bool,
    /// With --describe: only partitions whose ISR is smaller than their replica set.
    #[arg(long)]
    pub under_replicated_partitions: bool,
    /// With --describe: only partitions whose leader is not available.
    #[arg(long)]
    pub unavailable_partitions: bool,
}

/// What to do, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Create(NewTopic),
    List,
    Describe,
    Delete,
    Alter { partitions: i32 },
}

impl TopicsArgs {
    /// Checks the option combinations Kafka's TopicCommand checks.
    fn action(&self) -> Result<Action, Failure> {
        let actions = [
            self.create,
            self.list,
            self.describe,
            self.delete,
            self.alter,
        ];
        if actions.iter().filter(|&&a| a).count() != 1 {
            return Err(Failure::usage(
                "Command must include exactly one action: --list, --describe, --create, --alter or --delete",
            ));
        }
        match (&self.bootstrap_server, &self.zookeeper) {
            (None, None) => {
                return Err(Failure::usage(
                    "Missing required argument \"[bootstrap-server]\" (or \"[zookeeper]\")",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Failure::usage(
                    "Only one of --bootstrap-server or --zookeeper must be specified",
                ));
            }
            _ => {}
        }
        if (self.create || self.delete || self.alter) && self.topic.is_none() {
            return Err(Failure::usage("Missing required argument \"[topic]\""));
        }
        if self.if_not_exists && !self.create {
            return Err(Failure::usage(
                "Option \"[if-not-exists]\" can only be used with option \"[create]\"",
            ));
        }
        if self.if_exists && !(self.alter || self.delete || self.describe) {
            return Err(Failure::usage(
                "Option \"[if-exists]\" can only be used with options \"[alter]\", \"[delete]\" or \"[describe]\"",
            ));
        }
        if (self.under_replicated_partitions || self.unavailable_partitions) && !self.describe {
            return Err(Failure::usage(
                "Options \"[under-replicated-partitions]\" and \"[unavailable-partitions]\" can only be used with option \"[describe]\"",
            ));
        }
        if !self.configs.is_empty() && !self.create {
            return Err(Failure::usage(if self.alter {
                "Altering topic configs with --alter --config is not supported yet: the cluster has no AlterConfigs call"
            } else {
                "Option \"[config]\" can only be used with option \"[create]\""
            }));
        }
        if let Some(partitions) = self.partitions {
            if !(self.create || self.alter) {
                return Err(Failure::usage(
                    "Option \"[partitions]\" can only be used with options \"[create]\" or \"[alter]\"",
                ));
            }
            if partitions < 1 {
                return Err(Failure::usage("The partitions must be greater than 0"));
            }
        }
        if let Some(replication_factor) = self.replication_factor {
            if !self.create {
                return Err(Failure::usage(
                    "Option \"[replication-factor]\" can only be used with option \"[create]\"",
                ));
            }
            if !(1..=MAX_REPLICATION_FACTOR).contains(&replication_factor) {
                return Err(Failure::usage(format!(
                    "The replication factor must be between 1 and {MAX_REPLICATION_FACTOR} inclusive"
                )));
            }
        }
        if self.list {
            return Ok(Action::List);
        }
        if self.describe {
            return Ok(Action::Describe);
        }
        if self.delete {
            return Ok(Action::Delete);
        }
        if self.alter {
            let Some(partitions) = self.partitions else {
                return Err(Failure::usage("Missing required argument \"[partitions]\""));
            };
            return Ok(Action::Alter { partitions });
        }
        self.new_topic().map(Action::Create)
    }

    fn new_topic(&self) -> Result<NewTopic, Failure> {
        let name = self.topic.clone().unwrap_or_default();
        let mut configs = BTreeMap::new();
        for (key, value) in parse_key_values(&self.configs, "topic config")? {
            config::validate_topic_config(&key, &value)
                .map_err(|err| Failure::usage(err.to_string()))?;
            configs.insert(key, value);
        }
        if let Some(assignment) = &self.replica_assignment {
            if self.partitions.is_some() || self.replication_factor.is_some() {
                return Err(Failure::usage(
                    "Option \"[replica-assignment]\" can't be used with options \"[partitions]\" or \"[replication-factor]\"",
                ));
            }
            return Ok(NewTopic {
                name,
                num_partitions: None,
                replication_factor: None,
                configs,
                replica_assignment: parse_replica_assignment(assignment)?,
            });
        }
        // The coordinator has no broker defaults to fill in, as ZooKeeper
        // had none in Kafka 0.8: both counts are required there.
        if self.zookeeper.is_some() {
            if self.partitions.is_none() {
                return Err(Failure::usage("Missing required argument \"[partitions]\""));
            }
            if self.replication_factor.is_none() {
                return Err(Failure::usage(
                    "Missing required argument \"[replication-factor]\"",
                ));
            }
        }
        Ok(NewTopic {
            name,
            num_partitions: self.partitions,
            replication_factor: self.replication_factor,
            configs,
            replica_assignment: BTreeMap::new(),
        })
    }

    fn admin_config(&self) -> Result<AdminConfig, Failure> {
        let mut config = match (&self.bootstrap_server, &self.zookeeper) {
            (Some(servers), _) => AdminConfig::brokers(servers),
            (None, Some(zookeeper)) => AdminConfig::coordinator(zookeeper),
            (None, None) => unreachable!("checked by action()"),
        }
        .map_err(|err| Failure::usage(err.to_string()))?;
        if let Some(path) = &self.command_config {
            for (key, value) in load_properties(path)? {
                if !config
                    .set(&key, &value)
                    .map_err(|err| Failure::usage(err.to_string()))?
                {
                    tracing::warn!(
                        "The configuration '{key}' was supplied but isn't a known config."
                    );
                }
            }
        }
        Ok(config)
    }

    fn topic_names(&self) -> Vec<String> {
        self.topic
            .iter()
            .flat_map(|topics| topics.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `1:2,2:3` -> partition 0 on [1, 2], partition 1 on [2, 3].
fn parse_replica_assignment(text: &str) -> Result<BTreeMap<i32, Vec<i32>>, Failure> {
    let mut assignment = BTreeMap::new();
    for (partition, replicas) in text.split(',').enumerate() {
        let replicas: Vec<i32> = replicas
            .split(':')
            .map(|id| id.trim().parse::<i32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Failure::usage(format!(
                    "Invalid replica assignment \"{text}\": broker ids must be integers"
                ))
            })?;
        let mut unique = replicas.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != replicas.len() {
            return Err(Failure::usage(format!(
                "Partition replica lists may not contain duplicate entries: {}",
                replicas
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        assignment.insert(partition as i32, replicas);
    }
    let mut sizes = assignment.values().map(Vec::len);
    let first = sizes.next().unwrap_or(0);
    if sizes.any(|size| size != first) {
        return Err(Failure::usage(format!(
            "Partition 1 has different replication factor: {text}"
        )));
    }
    Ok(assignment)
}

/// Runs the command, writing its output to `out`.
pub async fn run(args: &TopicsArgs, out: &mut impl Write) -> Result<(), Failure> {
    let action = args.action()?;
    let admin = Admin::new(args.admin_config()?);
    match action {
        Action::Create(topic) => create(&admin, args, topic, out).await,
        Action::List => {
            for name in admin.list_topics().await? {
                writeln!(out, "{name}").context("writing the topic list")?;
            }
            Ok(())
        }
        Action::Describe => describe(&admin, args, out).await,
        Action::Delete => delete(&admin, args, out).await,
        Action::Alter { partitions } => alter(&admin, args, partitions, out).await,
    }
}

async fn create(
    admin: &Admin,
    args: &TopicsArgs,
    topic: NewTopic,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if topic.name.contains('.') || topic.name.contains('_') {
        writeln!(
            out,
            "WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') could collide. To avoid issues it is best to use either, but not both."
        )
        .context("writing output")?;
    }
    let name = topic.name.clone();
    match admin.create_topic(topic).await {
        Ok(_) => {
            writeln!(out, "Created topic \"{name}\".").context("writing output")?;
            Ok(())
        }
        Err(err) if args.if_not_exists && err.code() == Some(ErrorCode::TopicAlreadyExists) => {
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// Which partitions `--describe` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescribeFilter {
    pub under_replicated: bool,
    pub unavailable: bool,
}

/// The `--describe` lines of one topic, Kafka 0.8's layout: a header line
/// (left out when a filter is given) and one line per partition shown.
pub fn describe_lines(
    topic: &TopicDescription,
    live_brokers: &[i32],
    filter: DescribeFilter,
) -> Vec<String> {
    let mut lines = Vec::new();
    if !filter.under_replicated && !filter.unavailable {
        let configs: Vec<String> = topic
            .configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(format!(
            "Topic:{}\tPartitionCount:{}\tReplicationFactor:{}\tConfigs:{}",
            topic.name,
            topic.partitions.len(),
            topic.replication_factor(),
            configs.join(",")
        ));
    }
    for partition in &topic.partitions {
        let under_replicated = partition.isr.len() < partition.replicas.len();
        let unavailable = partition
            .leader
            .is_none_or(|leader| !live_brokers.contains(&leader));
        if (filter.under_replicated && !under_replicated) || (filter.unavailable && !unavailable) {
            continue;
        }
        let leader = partition
            .leader
            .map_or_else(|| "none".to_owned(), |id| id.to_string());
        lines.push(format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            topic.name,
            partition.partition,
            leader,
            join_ids(&partition.replicas),
            join_ids(&partition.isr)
        ));
    }
    lines
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn describe(admin: &Admin, args: &TopicsArgs, out: &mut impl Write) -> Result<(), Failure> {
    let names = args.topic_names();
    let description = admin.describe_topics(&names).await?;
    if let Some(missing) = first_missing(&names, &description.errors, args.if_exists)? {
        return Err(missing);
    }
    let live = description.live_broker_ids();
    let filter = DescribeFilter {
        under_replicated: args.under_replicated_partitions,
        unavailable: args.unavailable_partitions,
    };
    for topic in &description.topics {
        for line in describe_lines(topic, &live, filter) {
            writeln!(out, "{line}").context("writing output")?;
        }
    }
    Ok(())
}

/// The error for the first requested topic that does not exist (none with
/// `--if-exists`); other per-topic errors are returned as they are.
fn first_missing(
    names: &[String],
    errors: &[(String, ClientError)],
    if_exists: bool,
) -> Result<Option<Failure>, Failure> {
    for (name, error) in errors {
        if !names.contains(name) {
            continue;
        }
        if error.code() == Some(ErrorCode::UnknownTopicOrPartition) {
            if if_exists {
                continue;
            }
            return Ok(Some(does_not_exist(name)));
        }
        return Err(Failure::Command(anyhow!(error.clone())));
    }
    Ok(None)
}

fn does_not_exist(name: &str) -> Failure {
    Failure::Command(anyhow!("Topic '{name}' does not exist as expected"))
}

async fn delete(admin: &Admin, args: &TopicsArgs, out: &mut impl Write) -> Result<(), Failure> {
    let names = args.topic_names();
    for (name, result) in admin.delete_topics(&names).await? {
        match result {
            Ok(()) => {
                writeln!(out, "Topic {name} is marked for deletion.").context("writing output")?
            }
            Err(err) if err.code() == Some(ErrorCode::UnknownTopicOrPartition) => {
                if !args.if_exists {
                    return Err(does_not_exist(&name));
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

async fn alter(
    admin: &Admin,
    args: &TopicsArgs,
    partitions: i32,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let names = args.topic_names();
    let counts: Vec<(String, i32)> = names
        .iter()
        .map(|name| (name.clone(), partitions))
        .collect();
    writeln!(
        out,
        "WARNING: If partitions are increased for a topic that has a key, the partition logic or ordering of the messages will be affected"
    )
    .context("writing output")?;
    for (name, result) in admin.create_partitions(&counts, false).await? {
        match result {
            Ok(()) => {}
            Err(err) if err.code() == Some(ErrorCode::UnknownTopicOrPartition) => {
                if !args.if_exists {
                    return Err(does_not_exist(&name));
                }
                continue;
            }
            Err(err) => return Err(err.into()),
        }
        writeln!(out, "Adding partitions succeeded!").context("writing output")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::PartitionDescription;

    fn parse(args: &[&str]) -> TopicsArgs {
        TopicsArgs::try_parse_from(std::iter::once("kafka-topics").chain(args.iter().copied()))
            .unwrap()
    }

    fn usage(args: &[&str]) -> String {
        match parse(args).action() {
            Err(Failure::Usage(message)) => message,
            other => panic!("expected a usage error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_quickstart_create_parses() {
        let args = parse(&[
            "--create",
            "--zookeeper",
            "localhost:2181",
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "test",
        ]);
        let Ok(Action::Create(topic)) = args.action() else {
            panic!("not a create");
        };
        assert_eq!(topic, NewTopic::new("test", 1, 1));
        assert_eq!(
            args.admin_config().unwrap(),
            AdminConfig::coordinator("localhost:2181").unwrap()
        );
    }

    #[test]
    fn bootstrap_server_create_may_leave_counts_to_the_broker() {
        let args = parse(&[
            "--create",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            "t",
            "--config",
            "retention.ms=1000",
        ]);
        let Ok(Action::Create(topic)) = args.action() else {
            panic!("not a create");
        };
        assert_eq!(
            (topic.num_partitions, topic.replication_factor),
            (None, None)
        );
        assert_eq!(topic.configs["retention.ms"], "1000");
    }

    #[test]
    fn wrong_combinations_get_kafkas_messages() {
        assert_eq!(
            usage(&["--zookeeper", "h:1"]),
            "Command must include exactly one action: --list, --describe, --create, --alter or --delete"
        );
        assert_eq!(
            usage(&["--list", "--describe", "--zookeeper", "h:1"]),
            "Command must include exactly one action: --list, --describe, --create, --alter or --delete"
        );
        assert_eq!(
            usage(&["--list"]),
            "Missing required argument \"[bootstrap-server]\" (or \"[zookeeper]\")"
        );
        assert_eq!(
            usage(&["--create", "--zookeeper", "h:1"]),
            "Missing required argument \"[topic]\""
        );
        assert_eq!(
            usage(&[
                "--create",
                "--zookeeper",
                "h:1",
                "--topic",
                "t",
                "--partitions",
                "1"
            ]),
            "Missing required argument \"[replication-factor]\""
        );
        assert_eq!(
            usage(&[
                "--create",
                "--zookeeper",
                "h:1",
                "--topic",
                "t",
                "--partitions",
                "0",
                "--replication-factor",
                "1"
            ]),
            "The partitions must be greater than 0"
        );
        assert_eq!(
            usage(&[
                "--create",
                "--zookeeper",
                "h:1",
                "--topic",
                "t",
                "--partitions",
                "1",
                "--replication-factor",
                "0"
            ]),
            "The replication factor must be between 1 and 32767 inclusive"
        );
        assert_eq!(
            usage(&["--list", "--zookeeper", "h:1", "--if-not-exists"]),
            "Option \"[if-not-exists]\" can only be used with option \"[create]\""
        );
        assert_eq!(
            usage(&["--alter", "--zookeeper", "h:1", "--topic", "t"]),
            "Missing required argument \"[partitions]\""
        );
        assert_eq!(
            usage(&[
                "--create",
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--config",
                "no.such.config=1"
            ]),
            "Unknown topic config name: no.such.config"
        );
        assert!(
            usage(&[
                "--create",
                "--bootstrap-server",
                "h:1",
                "--topic",
                "t",
                "--config",
                "retention.ms"
            ])
            .starts_with("Invalid topic config")
        );
    }

    #[test]
    fn replica_assignments_parse_per_partition() {
        let assignment = parse_replica_assignment("1:2,2:3,3:1").unwrap();
        assert_eq!(assignment[&0], vec![1, 2]);
        assert_eq!(assignment[&2], vec![3, 1]);
        assert!(parse_replica_assignment("1:1").is_err());
        assert!(parse_replica_assignment("1:2,3").is_err());
        assert!(parse_replica_assignment("a:b").is_err());
    }

    fn topic() -> TopicDescription {
        TopicDescription {
            name: "test".into(),
            topic_id: bytes::Bytes::new(),
            configs: [
                ("retention.ms".to_owned(), "1000".to_owned()),
                ("cleanup.policy".to_owned(), "delete".to_owned()),
            ]
            .into(),
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: Some(1),
                    leader_epoch: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                },
                PartitionDescription {
                    partition: 1,
                    leader: Some(2),
                    leader_epoch: 3,
                    replicas: vec![2, 3, 1],
                    isr: vec![2],
                },
                PartitionDescription {
                    partition: 2,
                    leader: None,
                    leader_epoch: 1,
                    replicas: vec![3, 1, 2],
                    isr: vec![],
                },
            ],
        }
    }

    #[test]
    fn describe_uses_kafkas_layout() {
        let lines = describe_lines(&topic(), &[1, 2, 3], DescribeFilter::default());
        assert_eq!(
            lines,
            vec![
                "Topic:test\tPartitionCount:3\tReplicationFactor:3\tConfigs:cleanup.policy=delete,retention.ms=1000",
                "\tTopic: test\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3",
                "\tTopic: test\tPartition: 1\tLeader: 2\tReplicas: 2,3,1\tIsr: 2",
                "\tTopic: test\tPartition: 2\tLeader: none\tReplicas: 3,1,2\tIsr: ",
            ]
        );
    }

    #[test]
    fn the_quickstart_describe_line_is_exact() {
        let topic = TopicDescription {
            name: "test".into(),
            topic_id: bytes::Bytes::new(),
            configs: BTreeMap::new(),
            partitions: vec![PartitionDescription {
                partition: 0,
                leader: Some(1234),
                leader_epoch: 0,
                replicas: vec![1234],
                isr: vec![1234],
            }],
        };
        assert_eq!(
            describe_lines(&topic, &[1234], DescribeFilter::default()),
            vec![
                "Topic:test\tPartitionCount:1\tReplicationFactor:1\tConfigs:",
                "\tTopic: test\tPartition: 0\tLeader: 1234\tReplicas: 1234\tIsr: 1234",
            ]
        );
    }

    #[test]
    fn filters_show_only_matching_partitions_without_the_header() {
        let under = describe_lines(
            &topic(),
            &[1, 2, 3],
            DescribeFilter {
                under_replicated: true,
                unavailable: false,
            },
        );
        assert_eq!(under.len(), 2);
        assert!(under[0].contains("Partition: 1"));
        assert!(under[1].contains("Partition: 2"));
        // Broker 2 is dead: partition 1's leader is unavailable too.
        let unavailable = describe_lines(
            &topic(),
            &[1, 3],
            DescribeFilter {
                under_replicated: false,
                unavailable: true,
            },
        );
        assert_eq!(unavailable.len(), 2);
        assert!(unavailable[0].contains("Partition: 1"));
        assert!(unavailable[1].contains("Leader: none"));
    }
}
