//! The producer's I/O: one sender task that drains ready batches and
//! completes them, and one link task per broker that pipelines produce
//! requests over a `ProduceStream` (answers come back in order, each with
//! its request's correlation id).
//!
//! The sender task is the only one that touches the accumulator's
//! in-flight bookkeeping; link tasks only move requests and answers, so a
//! broker that hangs or dies never blocks the others.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::ErrorCode;
use protocol::broker::{ProducePartitionData, ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::accumulator::{BatchResult, ProducerBatch};
use crate::cluster::lock;
use crate::config::Acks;
use crate::error::{ClientError, DeliveryFailure};

/// Batches sent together in one produce request.
#[derive(Debug)]
struct InFlightRequest {
    broker: i32,
    batches: Vec<ProducerBatch>,
}

/// A link task's report: the request and its answer (or why there is none).
#[derive(Debug)]
struct Answered {
    request: InFlightRequest,
    result: Result<ProduceResponse, ClientError>,
}

/// How far in the future "no deadline" is.
const IDLE_WAKEUP: Duration = Duration::from_secs(3600);

pub(super) async fn run(shared: Arc<Shared>) {
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<Answered>();
    let mut links: HashMap<i32, mpsc::UnboundedSender<InFlightRequest>> = HashMap::new();
    let mut in_flight: HashMap<i32, usize> = HashMap::new();
    let mut metadata_updates = shared.metadata.subscribe();
    loop {
        while let Ok(answered) = answers.try_recv() {
            handle_answer(&shared, &mut in_flight, answered);
        }
        let now = Instant::now();
        let snapshot = shared.metadata.snapshot();
        let flushing =
            shared.flushing.load(Ordering::SeqCst) > 0 || shared.closed.load(Ordering::SeqCst);
        let mut next_wakeup = now + IDLE_WAKEUP;
        let mut leaderless = false;
        // Each drain builds at most one request per broker: drain again
        // while that yields requests and brokers have free slots.
        loop {
            let outcome = lock(&shared.accumulator).drain(
                now,
                flushing,
                |tp| {
                    snapshot
                        .leader(&tp.topic, tp.partition)
                        .map(|(leader, _)| leader)
                },
                &in_flight,
            );
            for (batch, error) in outcome.failed {
                fail_batch(&shared, batch, &error);
            }
            if let Some(at) = outcome.next_wakeup {
                next_wakeup = next_wakeup.min(at);
            }
            leaderless |= outcome.leaderless;
            if outcome.requests.is_empty() {
                break;
            }
            for drained in outcome.requests {
                tracing::trace!(
                    broker = drained.broker,
                    batches = drained.batches.len(),
                    "produce request"
                );
                let request = InFlightRequest {
                    broker: drained.broker,
                    batches: drained.batches,
                };
                *in_flight.entry(request.broker).or_default() += 1;
                let link = links.entry(request.broker).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(link(
                        Arc::clone(&shared),
                        request.broker,
                        rx,
                        answers_tx.clone(),
                    ));
                    tx
                });
                if let Err(mpsc::error::SendError(request)) = link.send(request) {
                    // The link task is gone (it only ends when its channel
                    // closes, so this is a runtime shutting down).
                    links.remove(&request.broker);
                    let error = ClientError::Kafka {
                        code: ErrorCode::NetworkException,
                        message: "the connection task stopped".into(),
                    };
                    handle_answer(
                        &shared,
                        &mut in_flight,
                        Answered {
                            request,
                            result: Err(error),
                        },
                    );
                }
            }
        }
        if leaderless {
            shared.metadata.request_update();
        }
        if shared.closed.load(Ordering::SeqCst) && lock(&shared.accumulator).is_empty() {
            tracing::debug!("producer closed and idle; sender stops");
            return;
        }
        tokio::select! {
            Some(answered) = answers.recv() => handle_answer(&shared, &mut in_flight, answered),
            () = shared.wakeup.notified() => {}
            Ok(()) = metadata_updates.changed() => {}
            () = tokio::time::sleep_until(next_wakeup.into()) => {}
        }
    }
}

fn handle_answer(shared: &Shared, in_flight: &mut HashMap<i32, usize>, answered: Answered) {
    let Answered { request, result } = answered;
    if let Some(count) = in_flight.get_mut(&request.broker) {
        *count = count.saturating_sub(1);
    }
    let now = Instant::now();
    let mut refresh = false;
    for (index, batch) in request.batches.into_iter().enumerate() {
        let result = match &result {
            Err(error) => BatchResult::Error(error.clone()),
            Ok(response) => batch_result(&batch, index, response),
        };
        tracing::trace!(broker = request.broker, ?result, "produce answer");
        let completion = lock(&shared.accumulator).complete(batch, result, now);
        refresh |= completion.refresh_metadata;
        if let Some((batch, error)) = completion.failed {
            fail_batch(shared, batch, &error);
        }
    }
    if refresh {
        shared.metadata.request_update();
    }
}

/// The answer for the `index`-th batch of a request. The broker answers
/// entries in request order, one each, which tells apart several batches
/// of one partition; a search by partition covers any other answer shape.
fn batch_result(batch: &ProducerBatch, index: usize, response: &ProduceResponse) -> BatchResult {
    let tp = &batch.topic_partition;
    let matches = |p: &&protocol::broker::ProducePartitionResponse| {
        p.topic == tp.topic && p.partition == tp.partition
    };
    let Some(answer) = response
        .partitions
        .get(index)
        .filter(matches)
        .or_else(|| response.partitions.iter().find(matches))
    else {
        return BatchResult::Error(ClientError::partition(
            &tp.topic,
            tp.partition,
            ErrorCode::UnknownServerError,
            "the produce response has no result for this partition",
        ));
    };
    let code = ErrorCode::from_code(answer.error_code);
    if code.is_ok() {
        BatchResult::Success {
            base_offset: answer.base_offset,
            log_append_time_ms: answer.log_append_time_ms,
        }
    } else {
        BatchResult::Error(ClientError::partition(
            &tp.topic,
            tp.partition,
            code,
            answer.error_message.clone(),
        ))
    }
}

fn fail_batch(shared: &Shared, batch: ProducerBatch, error: &ClientError) {
    tracing::debug!(
        "{} record(s) to {} failed: {error}",
        batch.record_count(),
        batch.topic_partition
    );
    shared.record_failure(DeliveryFailure {
        topic: batch.topic_partition.topic.clone(),
        partition: batch.topic_partition.partition,
        records: batch.record_count(),
        error: error.clone(),
    });
    batch.fail(error);
}

/// One broker's produce stream. Opens it on the first request, keeps the
/// requests it sent in order until answered, and when the stream breaks or
/// an answer is later than `request.timeout.ms`, reports every request
/// without an answer as failed (retriably) and opens a new stream for the
/// next one.
async fn link(
    shared: Arc<Shared>,
    broker: i32,
    mut requests: mpsc::UnboundedReceiver<InFlightRequest>,
    answers: mpsc::UnboundedSender<Answered>,
) {
    let config = &shared.config;
    let acks = config.acks;
    let request_timeout = config.common.request_timeout();
    let timeout_ms = i32::try_from(config.common.request_timeout_ms).unwrap_or(i32::MAX);
    let mut next_correlation_id: i64 = 0;
    let mut waiting: Option<InFlightRequest> = None;
    loop {
        let first = match waiting.take() {
            Some(request) => request,
            None => match requests.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let (address, mut client) = match shared.metadata.broker(broker) {
            Ok(found) => found,
            Err(error) => {
                let _ = answers.send(Answered {
                    request: first,
                    result: Err(error),
                });
                continue;
            }
        };
        let (stream_tx, stream_rx) =
            mpsc::channel::<ProduceRequest>(config.max_in_flight_requests_per_connection + 1);
        let mut pending: VecDeque<(i64, Instant, InFlightRequest)> = VecDeque::new();
        let mut broken: Option<ClientError> = None;
        // The first request goes into the stream before it is opened: a
        // server may wait for a message before answering with headers.
        send_request(
            first,
            &mut next_correlation_id,
            acks,
            timeout_ms,
            &stream_tx,
            &mut pending,
            &answers,
        )
        .await;
        let opened = tokio::time::timeout(
            request_timeout,
            client.produce_stream(ReceiverStream::new(stream_rx)),
        )
        .await;
        tracing::trace!(broker, %address, ok = matches!(opened, Ok(Ok(_))), "produce stream opened");
        let mut responses = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                fail_pending(
                    &mut pending,
                    &answers,
                    &ClientError::from_status(&address, &status),
                );
                continue;
            }
            Err(_) => {
                fail_pending(
                    &mut pending,
                    &answers,
                    &timed_out(&address, config.common.request_timeout_ms),
                );
                continue;
            }
        };
        let mut requests_open = true;
        while broken.is_none() {
            if !requests_open && pending.is_empty() {
                return;
            }
            let deadline = pending
                .front()
                .map_or(Instant::now() + IDLE_WAKEUP, |(_, sent_at, _)| {
                    *sent_at + request_timeout
                });
            tokio::select! {
                request = requests.recv(), if requests_open => match request {
                    Some(request) => {
                        if stream_tx.is_closed() {
                            waiting = Some(request);
                            broken = Some(ClientError::Kafka {
                                code: ErrorCode::NetworkException,
                                message: format!("the produce stream to {address} closed"),
                            });
                        } else {
                            send_request(request, &mut next_correlation_id, acks, timeout_ms, &stream_tx, &mut pending, &answers).await;
                        }
                    }
                    None => requests_open = false,
                },
                message = responses.message() => match message {
                    Ok(Some(response)) => {
                        match pending.iter().position(|(id, _, _)| *id == response.correlation_id) {
                            Some(at) => {
                                if let Some((_, _, request)) = pending.remove(at) {
                                    let _ = answers.send(Answered { request, result: Ok(response) });
                                }
                            }
                            // An answer to an acks=0 request, already completed.
                            None => tracing::trace!("produce answer {} not awaited", response.correlation_id),
                        }
                    }
                    Ok(None) => {
                        broken = Some(ClientError::Kafka {
                            code: ErrorCode::NetworkException,
                            message: format!("{address} closed the produce stream"),
                        });
                    }
                    Err(status) => broken = Some(ClientError::from_status(&address, &status)),
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    broken = Some(timed_out(&address, config.common.request_timeout_ms));
                }
            }
        }
        if let Some(error) = broken {
            tracing::debug!("produce stream to broker {broker} at {address} broke: {error}");
            fail_pending(&mut pending, &answers, &error);
        }
        if !requests_open && waiting.is_none() {
            return;
        }
    }
}

async fn send_request(
    request: InFlightRequest,
    next_correlation_id: &mut i64,
    acks: Acks,
    timeout_ms: i32,
    stream: &mpsc::Sender<ProduceRequest>,
    pending: &mut VecDeque<(i64, Instant, InFlightRequest)>,
    answers: &mpsc::UnboundedSender<Answered>,
) {
    let correlation_id = *next_correlation_id;
    *next_correlation_id += 1;
    let message = ProduceRequest {
        correlation_id,
        acks: acks.wire_value(),
        timeout_ms,
        partitions: request
            .batches
            .iter()
            .map(|batch| ProducePartitionData {
                topic: batch.topic_partition.topic.clone(),
                partition: batch.topic_partition.partition,
                records: batch.encoded.clone().unwrap_or_default(),
            })
            .collect(),
    };
    if stream.send(message).await.is_err() {
        let error = ClientError::Kafka {
            code: ErrorCode::NetworkException,
            message: "the produce stream closed before the request was sent".into(),
        };
        let _ = answers.send(Answered {
            request,
            result: Err(error),
        });
        return;
    }
    if acks == Acks::None {
        // Nobody answers acks=0: the records count as sent, offset unknown.
        let response = ProduceResponse {
            correlation_id,
            partitions: request
                .batches
                .iter()
                .map(|batch| protocol::broker::ProducePartitionResponse {
                    topic: batch.topic_partition.topic.clone(),
                    partition: batch.topic_partition.partition,
                    error_code: 0,
                    error_message: String::new(),
                    base_offset: -1,
                    log_append_time_ms: -1,
                    log_start_offset: -1,
                })
                .collect(),
        };
        let _ = answers.send(Answered {
            request,
            result: Ok(response),
        });
        return;
    }
    pending.push_back((correlation_id, Instant::now(), request));
}

fn fail_pending(
    pending: &mut VecDeque<(i64, Instant, InFlightRequest)>,
    answers: &mpsc::UnboundedSender<Answered>,
    error: &ClientError,
) {
    for (_, _, request) in pending.drain(..) {
        let _ = answers.send(Answered {
            request,
            result: Err(error.clone()),
        });
    }
}

fn timed_out(address: &impl std::fmt::Display, request_timeout_ms: u64) -> ClientError {
    ClientError::Rpc {
        address: address.to_string(),
        status: tonic::Code::DeadlineExceeded,
        message: format!("no produce answer within request.timeout.ms ({request_timeout_ms} ms)"),
    }
}
