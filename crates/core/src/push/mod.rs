//! The seam to reach connected clients: deliver a batch, post, look up,
//! disconnect. In AWS this is the API Gateway Management API
//! (`@connections`); inside `jobcast serve` it is the gateway's own
//! registry. The publisher decides *what* goes to whom (a batch of
//! [`Parcel`]s); the pusher decides *how*: the registry loops over its
//! queues in process, the Management API pusher paces its requests
//! ([`fan_out`]). Both report the same typed errors.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Bytes known to be UTF-8: a text frame's payload. Shared by reference
/// count like [`Bytes`], and checked once, where it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor stores UTF-8 only (an owned String, or
        // bytes that passed `std::str::from_utf8`), and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The UTF-8 bytes, for a transport to frame.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Text, Self::Error> {
        std::str::from_utf8(&b)?;
        Ok(Text(b))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message for one or many clients, serialized once and shared by
/// reference count: cloning it for each subscriber copies no bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Text(Text),
    Binary(Bytes),
}

impl Payload {
    /// A text payload from an owned string.
    pub fn text(s: String) -> Payload {
        Payload::Text(Text::from(s))
    }

    /// Text when the bytes are UTF-8, binary otherwise (as `@connections` delivers a POST body).
    pub fn from_bytes(b: Bytes) -> Payload {
        match Text::try_from(b.clone()) {
            Ok(t) => Payload::Text(t),
            Err(_) => Payload::Binary(b),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `GET @connections/{id}` answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionInfo {
    pub connected_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// The management API's typed errors, named as the AWS SDKs name them.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PushError {
    /// 410: the connection is unknown or closed.
    #[error("GoneException: connection is gone")]
    Gone,
    /// 413: the message is larger than 128 KiB.
    #[error("PayloadTooLargeException: message is larger than 128 KiB")]
    PayloadTooLarge,
    /// 429: the caller is being throttled.
    #[error("LimitExceededException: rate limit exceeded")]
    LimitExceeded,
    /// 403: the request was not authorised.
    #[error("ForbiddenException: {0}")]
    Forbidden(String),
    /// 400: the connection id is malformed.
    #[error("BadRequestException: {0}")]
    BadRequest(String),
    /// A 5xx answer or a transport failure: worth retrying.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refused the connection: nothing listens there, so
    /// nothing was delivered. Worth retrying against AWS; a `serve`
    /// process that refuses is gone, and its sockets with it.
    #[error("{0}")]
    Refused(String),
}

impl PushError {
    /// True for errors a publisher should retry with backoff (429, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PushError::LimitExceeded | PushError::Unavailable(_) | PushError::Refused(_)
        )
    }
}

/// The same messages for many connections: each connection receives
/// `payloads` in order. Payloads are shared, so a parcel for 10,000
/// connections holds each message once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parcel {
    pub connections: Vec<String>,
    pub payloads: Vec<Payload>,
}

/// What a batch delivery did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Messages delivered (a connection and a payload each).
    pub messages: usize,
    /// Connections answered 410 (nothing more was sent to them).
    pub gone: Vec<String>,
    /// Retries made after 429 / 5xx.
    pub retried: usize,
    /// Connections whose messages stopped at an error retries did not cure.
    pub failed: Vec<(String, PushError)>,
    /// Connections posted to at once, when the pusher posts by request.
    pub in_flight: Option<usize>,
    /// The smoothed round trip of a post, when the pusher posts by request.
    pub round_trip: Option<std::time::Duration>,
}

impl Delivered {
    /// Adds what another delivery of the same batch did.
    pub fn merge(&mut self, other: Delivered) {
        self.messages += other.messages;
        self.gone.extend(other.gone);
        self.retried += other.retried;
        self.failed.extend(other.failed);
        self.in_flight = self.in_flight.max(other.in_flight);
        self.round_trip = self.round_trip.max(other.round_trip);
    }
}

/// Reaches connected clients by connection id.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Delivers a batch: every connection of a parcel gets its payloads,
    /// and a connection in several parcels gets them in the parcels' order.
    /// A connection that is gone gets nothing more of the batch.
    async fn deliver(&self, parcels: &[Parcel]) -> Delivered;
    /// Delivers one message to one connection.
    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError>;
    /// Describes a live connection.
    async fn get(&self, connection_id: &str) -> Result<ConnectionInfo, PushError>;
    /// Closes a connection (code 1000); its `$disconnect` runs.
    async fn delete(&self, connection_id: &str) -> Result<(), PushError>;
}

/// Another pusher whose every call answers `delay` later, as a real
/// `@connections` call takes a network round trip (serve
/// `--management-latency`): fan-out times at AWS latency, locally.
pub struct Delayed {
    pub inner: std::sync::Arc<dyn Pusher>,
    pub delay: std::time::Duration,
    /// Paced as the Management API pusher is.
    pub paced: Paced,
}

#[async_trait]
impl Pusher for Delayed {
    async fn deliver(&self, parcels: &[Parcel]) -> Delivered {
        self.paced
            .deliver(parcels, |conn, payload| async move {
                self.post(&conn, payload).await
            })
            .await
    }

    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        let r = self.inner.post(connection_id, payload).await;
        tokio::time::sleep(self.delay).await;
        r
    }

    async fn get(&self, connection_id: &str) -> Result<ConnectionInfo, PushError> {
        let r = self.inner.get(connection_id).await;
        tokio::time::sleep(self.delay).await;
        r
    }

    async fn delete(&self, connection_id: &str) -> Result<(), PushError> {
        let r = self.inner.delete(connection_id).await;
        tokio::time::sleep(self.delay).await;
        r
    }
}

pub mod fan_out;
mod management_api;
pub mod pace;

pub use fan_out::{PaceOptions, Paced};
pub use management_api::ManagementApiPusher;

/// True when `e` or one of its sources is a refused TCP connection.
pub fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}
