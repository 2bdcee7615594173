//! The workload: producers (the project's own `client::Producer`, acks=all)
//! writing unique values to a replicated topic and recording every
//! outcome, consumers reading the topic while the faults run, and the
//! final read of everything once the faults healed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use client::{
    Admin, AdminConfig, BrokerStatus, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::checker::{Attempt, Outcome, Read};

/// What to write.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub topic: String,
    pub partitions: i32,
    pub producers: usize,
    /// Records each producer sends per second.
    pub rate_per_producer: u32,
    pub consumers: usize,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            topic: "jepsen".into(),
            partitions: 6,
            producers: 3,
            rate_per_producer: 50,
            consumers: 2,
        }
    }
}

/// The client side of a run: a runtime and the addresses it talks to.
#[derive(Debug)]
pub struct Clients {
    runtime: Runtime,
    bootstrap: String,
    zookeeper: String,
    spec: WorkloadSpec,
}

/// Producers and consumers running.
#[derive(Debug)]
pub struct Running {
    started: Instant,
    stop: watch::Sender<bool>,
    producers: Vec<JoinHandle<Vec<Attempt>>>,
    consumers: Vec<JoinHandle<Vec<Read>>>,
}

impl Clients {
    pub fn new(bootstrap: String, zookeeper: String, spec: WorkloadSpec) -> Result<Clients> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("workload")
            .enable_all()
            .build()?;
        Ok(Clients {
            runtime,
            bootstrap,
            zookeeper,
            spec,
        })
    }

    fn partitions(&self) -> Vec<TopicPartition> {
        (0..self.spec.partitions)
            .map(|p| TopicPartition::new(self.spec.topic.clone(), p))
            .collect()
    }

    /// Creates the topic: RF 3, min.insync.replicas=2.
    pub fn create_topic(&self) -> Result<()> {
        let admin = Admin::new(AdminConfig::coordinator(&self.zookeeper)?);
        let topic = NewTopic::new(self.spec.topic.clone(), self.spec.partitions, 3)
            .with_config("min.insync.replicas", "2");
        self.runtime
            .block_on(admin.create_topic(topic))
            .with_context(|| format!("creating topic {}", self.spec.topic))?;
        Ok(())
    }

    /// Waits until every broker in `brokers` is active and every partition
    /// has a leader and all of `brokers` in its ISR. Returns how long that
    /// took.
    pub fn await_healthy(&self, brokers: &[i32], timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let admin = Admin::new(AdminConfig::coordinator(&self.zookeeper)?);
        let names = [self.spec.topic.clone()];
        loop {
            let last = match self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), admin.describe_topics(&names)).await
            }) {
                Ok(Ok(description)) => {
                    let inactive: Vec<i32> = brokers
                        .iter()
                        .copied()
                        .filter(|id| {
                            !description
                                .brokers
                                .iter()
                                .any(|b| b.id == *id && b.status == BrokerStatus::Active)
                        })
                        .collect();
                    let unhealthy: Vec<String> = description
                        .topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter(|p| {
                            p.leader.is_none() || !brokers.iter().all(|b| p.isr.contains(b))
                        })
                        .map(|p| format!("p{} leader {:?} isr {:?}", p.partition, p.leader, p.isr))
                        .collect();
                    let described = description.topics.iter().any(|t| t.name == names[0]);
                    if described && inactive.is_empty() && unhealthy.is_empty() {
                        return Ok(started.elapsed());
                    }
                    format!("inactive brokers {inactive:?}, partitions {unhealthy:?}")
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "describe timed out".into(),
            };
            if started.elapsed() > timeout {
                bail!("the cluster did not heal within {timeout:?}: {last}");
            }
            // The coordinator has no push signal for "every ISR is full"
            // that a client can await; poll it.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The cluster as the coordinator sees it, in one line: which brokers
    /// are active, each partition's leader and ISR size (for the timeline,
    /// so it shows that a fault took effect).
    pub fn cluster_state(&self) -> String {
        let Ok(config) = AdminConfig::coordinator(&self.zookeeper) else {
            return "no coordinator address".into();
        };
        let admin = Admin::new(config);
        let names = [self.spec.topic.clone()];
        let described = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), admin.describe_topics(&names)).await
        });
        let description = match described {
            Ok(Ok(description)) => description,
            Ok(Err(e)) => return format!("coordinator unreachable: {e}"),
            Err(_) => return "coordinator unreachable: no answer within 2s".into(),
        };
        let active: Vec<i32> = description
            .brokers
            .iter()
            .filter(|b| b.status == BrokerStatus::Active)
            .map(|b| b.id)
            .collect();
        let partitions: Vec<String> = description
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| {
                let leader = p.leader.map_or("-".to_owned(), |l| l.to_string());
                format!("p{}:{leader}/{}", p.partition, p.isr.len())
            })
            .collect();
        format!(
            "active brokers {active:?}; leader/isr size {}",
            partitions.join(" ")
        )
    }

    /// Starts the producers and consumers.
    pub fn start(&self) -> Result<Running> {
        let started = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let _guard = self.runtime.enter();
        let mut producers = Vec::new();
        for id in 0..self.spec.producers {
            let mut config = ProducerConfig::new(&self.bootstrap)?;
            for (key, value) in [
                ("acks", "all"),
                ("linger.ms", "2"),
                // Short, so a black-holed request is retried within a fault.
                ("request.timeout.ms", "5000"),
                ("delivery.timeout.ms", "120000"),
                ("retry.backoff.ms", "50"),
            ] {
                config.set(key, value)?;
            }
            let producer = Producer::new(config)?;
            producers.push(tokio::spawn(produce(
                id,
                producer,
                self.spec.clone(),
                started,
                stopped.clone(),
            )));
        }
        let mut consumers = Vec::new();
        for _ in 0..self.spec.consumers {
            let consumer = self.consumer()?;
            consumers.push(tokio::spawn(consume(consumer, stopped.clone())));
        }
        Ok(Running {
            started,
            stop,
            producers,
            consumers,
        })
    }

    fn consumer(&self) -> Result<Consumer> {
        let mut config = ConsumerConfig::new(&self.bootstrap)?;
        config.set("auto.offset.reset", "earliest")?;
        config.set("request.timeout.ms", "5000")?;
        let mut consumer = Consumer::new(config)?;
        consumer.assign(self.partitions());
        Ok(consumer)
    }

    /// Stops sending, waits up to `drain` for the answers of records in
    /// flight, stops the consumers. Returns the attempts, the concurrent
    /// reads and how long producers wrote.
    pub fn stop(
        &self,
        running: Running,
        drain: Duration,
    ) -> Result<(Vec<Attempt>, Vec<Read>, Duration)> {
        let duration = running.started.elapsed();
        running.stop.send_replace(true);
        let mut attempts = Vec::new();
        let mut reads = Vec::new();
        self.runtime.block_on(async {
            for producer in running.producers {
                let mut answered = tokio::time::timeout(drain, producer)
                    .await
                    .map_err(|_| anyhow!("a producer did not finish within {drain:?}"))??;
                attempts.append(&mut answered);
            }
            for consumer in running.consumers {
                reads.append(&mut consumer.await?);
            }
            Ok::<_, anyhow::Error>(())
        })?;
        Ok((attempts, reads, duration))
    }

    /// Reads every partition from its start to its high watermark.
    pub fn final_read(&self, timeout: Duration) -> Result<BTreeMap<i32, Vec<(i64, String)>>> {
        let mut consumer = self.runtime.block_on(async { self.consumer() })?;
        let partitions = self.partitions();
        self.runtime.block_on(async {
            let deadline = Instant::now() + timeout;
            let ends = consumer.end_offsets(&partitions).await?;
            consumer.seek_to_beginning(&partitions)?;
            let mut log: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
            let mut positions: HashMap<i32, i64> = HashMap::new();
            loop {
                let done = partitions.iter().all(|tp| {
                    let end = ends.get(tp).copied().unwrap_or(0);
                    end == 0 || positions.get(&tp.partition).is_some_and(|p| *p >= end)
                });
                if done {
                    return Ok(log);
                }
                if Instant::now() > deadline {
                    bail!("the final read did not reach the end offsets {ends:?} within {timeout:?}; at {positions:?}");
                }
                for record in consumer.poll(Duration::from_millis(500)).await? {
                    positions.insert(record.partition, record.offset + 1);
                    let end = ends
                        .get(&TopicPartition::new(self.spec.topic.clone(), record.partition))
                        .copied()
                        .unwrap_or(0);
                    if record.offset < end {
                        log.entry(record.partition).or_default().push((
                            record.offset,
                            value_text(record.value.as_deref()),
                        ));
                    }
                }
            }
        })
    }
}

fn value_text(value: Option<&[u8]>) -> String {
    String::from_utf8_lossy(value.unwrap_or_default()).into_owned()
}

/// One producer: a record every `1/rate` seconds to the partitions in
/// turn, each outcome recorded.
async fn produce(
    id: usize,
    producer: Producer,
    spec: WorkloadSpec,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<Attempt> {
    let mut attempts: Vec<Attempt> = Vec::new();
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel::<(usize, Outcome)>();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / spec.rate_per_producer.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let partition = ((seq + id as u64) % spec.partitions as u64) as i32;
        let value = format!("p{id}-{seq:09}");
        let index = attempts.len();
        attempts.push(Attempt {
            producer: id,
            seq,
            partition,
            value: value.clone(),
            sent_at: started.elapsed(),
            outcome: Outcome::Unknown,
        });
        seq += 1;
        let record = ProducerRecord::new(spec.topic.clone(), value).with_partition(partition);
        let sent = tokio::select! {
            sent = producer.send(record) => sent,
            _ = stop.changed() => break,
        };
        match sent {
            Ok(delivery) => {
                let outcomes = outcomes_tx.clone();
                tokio::spawn(async move {
                    let outcome = match delivery.await {
                        Ok(metadata) => Outcome::Acked {
                            offset: metadata.offset,
                            at: started.elapsed(),
                        },
                        Err(e) => Outcome::Failed {
                            error: e.to_string(),
                        },
                    };
                    let _ = outcomes.send((index, outcome));
                });
            }
            Err(e) => {
                attempts[index].outcome = Outcome::Failed {
                    error: e.to_string(),
                }
            }
        }
    }
    drop(outcomes_tx);
    // Every delivery future resolves (acknowledged, or failed by
    // delivery.timeout.ms); the caller bounds how long that may take.
    let producer = Arc::new(producer);
    let flush = {
        let producer = Arc::clone(&producer);
        tokio::spawn(async move { producer.flush().await })
    };
    while let Some((index, outcome)) = outcomes.recv().await {
        if let Some(attempt) = attempts.get_mut(index) {
            attempt.outcome = outcome;
        }
    }
    let _ = flush.await;
    attempts
}

/// One consumer reading every partition from the beginning until stopped.
async fn consume(mut consumer: Consumer, mut stop: watch::Receiver<bool>) -> Vec<Read> {
    let mut reads = Vec::new();
    loop {
        let polled = tokio::select! {
            polled = consumer.poll(Duration::from_millis(500)) => polled,
            _ = stop.changed() => break,
        };
        match polled {
            Ok(records) => reads.extend(records.into_iter().map(|r| Read {
                partition: r.partition,
                offset: r.offset,
                value: value_text(r.value.as_deref()),
            })),
            Err(_) => {
                // A failed poll is retried; back off so an outage is not a
                // busy loop.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    reads
}
