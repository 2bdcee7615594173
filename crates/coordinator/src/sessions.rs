//! Broker sessions: who is heartbeating, until when, over which streams.
//!
//! Volatile by design: nothing here is in the metadata log. A restarted
//! coordinator gives every broker that was in session a fresh deadline and
//! lets the brokers reconnect. Time comes in as an argument, so the rules
//! are tested without clocks; the writer task is the only owner.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use protocol::coordinator::BrokerState;
use protocol::image::MetadataImage;
use tokio::time::Instant;

/// Identifies one `BrokerSession` stream for the life of the process.
pub type StreamId = u64;

#[derive(Debug, Clone)]
struct Session {
    broker_epoch: i64,
    session_timeout: Duration,
    /// `None`: not in session (lapsed, or not heard from since a restart
    /// while fenced).
    deadline: Option<Instant>,
    /// Heartbeat streams open for this epoch. When the last one ends, the
    /// deadline shrinks to the grace period.
    open_streams: BTreeSet<StreamId>,
    /// The broker asked for a controlled shutdown in this epoch: it is not
    /// unfenced again, whatever its heartbeats say.
    shutdown_requested: bool,
}

/// Every broker's session, by broker id.
#[derive(Debug, Clone, Default)]
pub struct SessionTable {
    sessions: HashMap<i32, Session>,
}

impl SessionTable {
    /// After a restart: every broker the image has in session (active or
    /// shutting down) gets a full session timeout from `now` to reconnect.
    pub fn restore(image: &MetadataImage, now: Instant, default_timeout: Duration) -> SessionTable {
        let mut table = SessionTable::default();
        for broker in image.brokers.values() {
            let in_session = broker.state == BrokerState::Active as i32
                || broker.state == BrokerState::ShuttingDown as i32;
            let session_timeout = match broker.session_timeout_ms {
                ms if ms > 0 => Duration::from_millis(ms as u64),
                _ => default_timeout,
            };
            table.sessions.insert(
                broker.broker_id,
                Session {
                    broker_epoch: broker.broker_epoch,
                    session_timeout,
                    deadline: in_session.then_some(now + session_timeout),
                    open_streams: BTreeSet::new(),
                    shutdown_requested: broker.state == BrokerState::ShuttingDown as i32,
                },
            );
        }
        table
    }

    /// A new registration (epoch) starts a session of its own.
    pub fn registered(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        session_timeout: Duration,
        now: Instant,
    ) {
        self.sessions.insert(
            broker_id,
            Session {
                broker_epoch,
                session_timeout,
                deadline: Some(now + session_timeout),
                open_streams: BTreeSet::new(),
                shutdown_requested: false,
            },
        );
    }

    /// A heartbeat of the broker's current epoch (the caller checked it)
    /// renews the session for a full timeout.
    pub fn heartbeat(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        session_timeout: Duration,
        stream: StreamId,
        now: Instant,
    ) {
        let session = self.sessions.entry(broker_id).or_insert_with(|| Session {
            broker_epoch,
            session_timeout,
            deadline: None,
            open_streams: BTreeSet::new(),
            shutdown_requested: false,
        });
        if session.broker_epoch != broker_epoch {
            *session = Session {
                broker_epoch,
                session_timeout,
                deadline: None,
                open_streams: BTreeSet::new(),
                shutdown_requested: false,
            };
        }
        session.open_streams.insert(stream);
        session.deadline = Some(now + session.session_timeout);
    }

    /// A heartbeat stream ended. If it was the epoch's last open stream, the
    /// session ends after `grace` unless a new stream heartbeats first.
    pub fn stream_closed(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        stream: StreamId,
        now: Instant,
        grace: Duration,
    ) {
        let Some(session) = self.sessions.get_mut(&broker_id) else {
            return;
        };
        if session.broker_epoch != broker_epoch || !session.open_streams.remove(&stream) {
            return;
        }
        if session.open_streams.is_empty()
            && let Some(deadline) = session.deadline
        {
            session.deadline = Some(deadline.min(now + grace));
        }
    }

    pub fn request_shutdown(&mut self, broker_id: i32, broker_epoch: i64) {
        if let Some(session) = self.sessions.get_mut(&broker_id)
            && session.broker_epoch == broker_epoch
        {
            session.shutdown_requested = true;
        }
    }

    pub fn shutdown_requested(&self, broker_id: i32) -> bool {
        self.sessions
            .get(&broker_id)
            .is_some_and(|s| s.shutdown_requested)
    }

    /// Ends every session whose deadline has passed and returns the broker
    /// ids, sorted. Their heartbeats may start a session again later.
    pub fn expire(&mut self, now: Instant) -> Vec<i32> {
        let mut expired: Vec<i32> = self
            .sessions
            .iter_mut()
            .filter(|(_, s)| s.deadline.is_some_and(|d| d <= now))
            .map(|(&id, s)| {
                s.deadline = None;
                s.open_streams.clear();
                id
            })
            .collect();
        expired.sort_unstable();
        expired
    }

    /// The earliest deadline of any session.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions.values().filter_map(|s| s.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(6000);
    const GRACE: Duration = Duration::from_millis(500);

    #[test]
    fn heartbeats_renew_and_silence_expires() {
        let t0 = Instant::now();
        let mut table = SessionTable::default();
        table.registered(1, 10, TIMEOUT, t0);
        assert_eq!(table.next_deadline(), Some(t0 + TIMEOUT));
        table.heartbeat(1, 10, TIMEOUT, 7, t0 + Duration::from_secs(5));
        assert!(table.expire(t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(table.expire(t0 + Duration::from_secs(11)), vec![1]);
        assert_eq!(table.next_deadline(), None);
        assert!(
            table.expire(t0 + Duration::from_secs(100)).is_empty(),
            "expires once"
        );
        // A later heartbeat of the same epoch starts a session again.
        table.heartbeat(1, 10, TIMEOUT, 8, t0 + Duration::from_secs(100));
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(106)));
    }

    #[test]
    fn a_closed_stream_leaves_only_the_grace() {
        let t0 = Instant::now();
        let mut table = SessionTable::default();
        table.registered(1, 10, TIMEOUT, t0);
        table.heartbeat(1, 10, TIMEOUT, 1, t0);
        table.heartbeat(1, 10, TIMEOUT, 2, t0);
        table.stream_closed(1, 10, 1, t0, GRACE);
        assert_eq!(
            table.next_deadline(),
            Some(t0 + TIMEOUT),
            "another stream is open"
        );
        table.stream_closed(1, 10, 2, t0, GRACE);
        assert_eq!(table.next_deadline(), Some(t0 + GRACE));
        // A new stream within the grace renews the session.
        table.heartbeat(1, 10, TIMEOUT, 3, t0 + Duration::from_millis(400));
        assert!(table.expire(t0 + Duration::from_millis(600)).is_empty());
        // Closing a stream of an old epoch changes nothing.
        table.registered(1, 20, TIMEOUT, t0);
        table.heartbeat(1, 20, TIMEOUT, 4, t0);
        table.stream_closed(1, 10, 3, t0, GRACE);
        assert_eq!(table.next_deadline(), Some(t0 + TIMEOUT));
    }

    #[test]
    fn shutdown_requests_belong_to_an_epoch() {
        let t0 = Instant::now();
        let mut table = SessionTable::default();
        table.registered(1, 10, TIMEOUT, t0);
        table.request_shutdown(1, 9);
        assert!(!table.shutdown_requested(1));
        table.request_shutdown(1, 10);
        assert!(table.shutdown_requested(1));
        table.registered(1, 11, TIMEOUT, t0);
        assert!(!table.shutdown_requested(1));
    }
}
