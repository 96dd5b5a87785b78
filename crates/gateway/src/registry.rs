//! The live connections of the local gateway: connection id -> a handle with
//! the bounded outbound queue of its writer task. Posting is a map lookup
//! and a push onto that queue; it never waits on a slow client.

use super::outbox::{Outbox, Refused};
use crate::metrics::Metrics;
use crate::protocol::CONNECTION_ID_LEN;
use crate::push::{ConnectionInfo, Delivered, Parcel, Payload, PushError, Pusher};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Messages queued between two yields of a batch (about a millisecond of
/// work).
const YIELD_EVERY: usize = 4096;

/// Close code and reason requested for a connection by someone other than its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    /// The close frame's code (1000 for a `DELETE`, 1001 at shutdown, …).
    pub code: u16,
    /// The close frame's reason, and `$disconnect`'s `disconnectReason`.
    pub reason: String,
}

/// One live connection as the rest of the gateway sees it.
pub struct ConnHandle {
    outbox: Outbox,
    close: CancellationToken,
    /// Mirrors `close` for the message path: an atomic load instead of the
    /// token's lock on every post.
    closing: AtomicBool,
    close_request: Mutex<Option<CloseRequest>>,
    /// When the handshake completed (`GET @connections` `connectedAt`).
    pub connected_at: DateTime<Utc>,
    last_active_ms: AtomicI64,
    /// The client's address (`identity.sourceIp`).
    pub source_ip: String,
    /// The client's `User-Agent` (`identity.userAgent`).
    pub user_agent: Option<String>,
}

impl ConnHandle {
    /// A connection whose outbound queue holds at most `queue_limit` messages.
    pub fn new(
        queue_limit: usize,
        connected_at: DateTime<Utc>,
        source_ip: String,
        user_agent: Option<String>,
    ) -> ConnHandle {
        ConnHandle {
            outbox: Outbox::new(queue_limit),
            close: CancellationToken::new(),
            closing: AtomicBool::new(false),
            close_request: Mutex::new(None),
            connected_at,
            last_active_ms: AtomicI64::new(connected_at.timestamp_millis()),
            source_ip,
            user_agent,
        }
    }

    /// Asks the connection's task to close with `code`; the first request wins.
    pub fn request_close(&self, code: u16, reason: &str) {
        if let Ok(mut slot) = self.close_request.lock()
            && slot.is_none()
        {
            *slot = Some(CloseRequest {
                code,
                reason: reason.to_string(),
            });
        }
        self.closing.store(true, Ordering::Release);
        self.close.cancel();
    }

    /// True once someone asked this connection to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Fires when someone asked this connection to close.
    pub fn close_token(&self) -> &CancellationToken {
        &self.close
    }

    /// The close requested, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.close_request.lock().ok().and_then(|s| s.clone())
    }

    /// The queue the connection's writer drains.
    pub(super) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Records client activity at `now`.
    pub fn touch(&self, now: DateTime<Utc>) {
        self.last_active_ms
            .store(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// When the client last sent anything (`GET @connections` `lastActiveAt`).
    pub fn last_active_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.last_active_ms.load(Ordering::Relaxed))
            .single()
            .unwrap_or(self.connected_at)
    }
}

/// Close code and reason sent to every client when the server shuts down.
pub const SHUTDOWN_CLOSE: (u16, &str) = (1001, "Going away: server shutting down");

/// Close code used when a client's outbound queue overflows.
pub const SLOW_CONSUMER_CLOSE: u16 = 1008;

/// A connection id as the registry keys it: the id's bytes inline, so a
/// lookup compares them in the map's own memory instead of following a
/// pointer to a string (a cache miss per message in a large fan-out).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u8; CONNECTION_ID_LEN]);

impl Key {
    /// None for anything not shaped like an id this gateway hands out:
    /// no connection has it.
    fn of(id: &str) -> Option<Key> {
        id.as_bytes().try_into().ok().map(Key)
    }
}

/// All live connections, plus the connection-count budget.
pub struct Registry {
    /// Keys are ids this server generated from a CSPRNG, so a fast hasher
    /// is safe here: callers cannot choose what lands in a bucket.
    conns: DashMap<Key, Arc<ConnHandle>, foldhash::fast::RandomState>,
    slots: AtomicUsize,
    max_connections: usize,
    metrics: Arc<Metrics>,
    /// Set by `close_all`; connections registered afterwards close at once.
    closing: AtomicBool,
}

/// A reserved connection slot, released on drop.
pub struct Slot {
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.slots.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    /// Most connections at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// An empty registry admitting `max_connections` at once, counting
    /// into `metrics`.
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Registry {
        Registry {
            conns: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            slots: AtomicUsize::new(0),
            max_connections,
            metrics,
            closing: AtomicBool::new(false),
        }
    }

    /// Reserves room for one more connection, or `None` when at `--max-connections`.
    pub fn try_reserve(self: &Arc<Self>) -> Option<Slot> {
        let mut cur = self.slots.load(Ordering::Acquire);
        loop {
            if cur >= self.max_connections {
                return None;
            }
            match self
                .slots
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Slot {
                        registry: Arc::clone(self),
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Registers a connection under an id from `new_connection_id`;
    /// false (and nothing registered) for an id of another shape.
    pub fn insert(&self, id: &str, handle: Arc<ConnHandle>) -> bool {
        let Some(key) = Key::of(id) else {
            return false;
        };
        self.conns.insert(key, Arc::clone(&handle));
        self.metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        // After the insert: either `close_all` iterates past this entry, or
        // this load sees its flag (both SeqCst), so no connection whose
        // `$connect` ends during shutdown stays open.
        if self.closing.load(Ordering::SeqCst) {
            handle.request_close(SHUTDOWN_CLOSE.0, SHUTDOWN_CLOSE.1);
        }
        true
    }

    /// Forgets a connection (its socket is done).
    pub fn remove(&self, id: &str) {
        if let Some(key) = Key::of(id)
            && self.conns.remove(&key).is_some()
        {
            self.metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The live connection with this id, if any.
    pub fn handle(&self, id: &str) -> Option<Arc<ConnHandle>> {
        self.conns.get(&Key::of(id)?).map(|h| Arc::clone(&h))
    }

    /// Queues a message for a connection, without waiting: a lookup and a
    /// push onto its outbound queue, under the map's read lock.
    fn push(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        let key = Key::of(connection_id).ok_or(PushError::Gone)?;
        let handle = self.conns.get(&key).ok_or(PushError::Gone)?;
        if handle.is_closing() {
            return Err(PushError::Gone);
        }
        match handle.outbox.push(payload) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => {
                tracing::warn!(connection_id, "outbound queue full: closing slow consumer");
                self.metrics
                    .slow_consumer_closes_total
                    .fetch_add(1, Ordering::Relaxed);
                handle.request_close(SLOW_CONSUMER_CLOSE, "slow consumer: outbound queue full");
                Err(PushError::Gone)
            }
            Err(Refused::Closed) => Err(PushError::Gone),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Asks every connection, present and future, to close (server shutdown).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for entry in self.conns.iter() {
            entry
                .value()
                .request_close(SHUTDOWN_CLOSE.0, SHUTDOWN_CLOSE.1);
        }
    }
}

#[async_trait]
impl Pusher for Registry {
    /// Puts each message on its connection's queue, in the caller's task:
    /// no future per connection. Writers woken meanwhile run on the other
    /// threads and find several messages queued (one write for them all);
    /// a yield now and then bounds how long one batch holds its thread.
    async fn deliver(&self, parcels: &[Parcel]) -> Delivered {
        let mut done = Delivered::default();
        let mut gone: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut since_yield = 0usize;
        for parcel in parcels {
            for conn in &parcel.connections {
                if parcels.len() > 1 && gone.contains(conn.as_str()) {
                    continue;
                }
                for payload in &parcel.payloads {
                    since_yield += 1;
                    if self.push(conn, payload.clone()).is_err() {
                        // Every refusal of the registry means the
                        // connection is gone (or closed as slow).
                        gone.insert(conn);
                        done.gone.push(conn.clone());
                        break;
                    }
                    done.messages += 1;
                }
                if since_yield >= YIELD_EVERY {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
        }
        done
    }

    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        self.push(connection_id, payload)
    }

    async fn get(&self, connection_id: &str) -> Result<ConnectionInfo, PushError> {
        let h = self.handle(connection_id).ok_or(PushError::Gone)?;
        Ok(ConnectionInfo {
            connected_at: h.connected_at,
            last_active_at: h.last_active_at(),
            source_ip: h.source_ip.clone(),
            user_agent: h.user_agent.clone(),
        })
    }

    async fn delete(&self, connection_id: &str) -> Result<(), PushError> {
        let h = self.handle(connection_id).ok_or(PushError::Gone)?;
        if h.is_closing() {
            return Err(PushError::Gone);
        }
        h.request_close(1000, "closed by the management API");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Arc<ConnHandle> {
        Arc::new(ConnHandle::new(8, Utc::now(), "127.0.0.1".into(), None))
    }

    #[test]
    fn a_connection_registered_after_shutdown_began_is_closed_at_once() {
        let registry = Registry::new(10, Arc::new(Metrics::default()));
        let before = handle();
        assert!(registry.insert("AAAAAAAAAAAAAAA=", Arc::clone(&before)));
        registry.close_all();
        assert!(before.is_closing());
        // Its $connect finished after close_all: it must not stay open
        // until the grace period ends.
        let late = handle();
        assert!(registry.insert("BBBBBBBBBBBBBBB=", Arc::clone(&late)));
        assert!(late.is_closing());
        assert_eq!(
            late.close_request(),
            Some(CloseRequest {
                code: SHUTDOWN_CLOSE.0,
                reason: SHUTDOWN_CLOSE.1.into()
            })
        );
    }
}
