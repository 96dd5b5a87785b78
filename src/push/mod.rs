//! The seam to reach a connected client: post, look up, disconnect. In AWS
//! this is the API Gateway Management API (`@connections`); inside
//! `jobcast serve` it is the gateway's own registry. Both report the same
//! typed errors so the publisher handles them alike.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A message for one or many clients, serialized once and shared by
/// reference count: cloning it for each subscriber copies no bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Payload {
    /// A text payload from an owned string.
    pub fn text(s: String) -> Payload {
        Payload::Text(Utf8Bytes::from(s))
    }

    /// Text when the bytes are UTF-8, binary otherwise (as `@connections` delivers a POST body).
    pub fn from_bytes(b: Bytes) -> Payload {
        match Utf8Bytes::try_from(b.clone()) {
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

/// Reaches connected clients by connection id.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Delivers one message to one connection.
    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError>;
    /// Delivers at once, when this pusher can without waiting (the local
    /// gateway's registry): a fan-out then skips building a future per
    /// subscriber. `None`: use `post`.
    fn post_now(&self, _connection_id: &str, _payload: &Payload) -> Option<Result<(), PushError>> {
        None
    }
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
}

#[async_trait]
impl Pusher for Delayed {
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

mod management_api;

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
