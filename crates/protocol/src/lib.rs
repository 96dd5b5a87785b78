//! The wire protocol: what clients send over the WebSocket, what the server
//! pushes back, the job snapshot every progress message carries, and the
//! limits API Gateway enforces (mirrored by the local gateway).
//!
//! This crate is the floor every other part of jobcast stands on, the
//! worker library included: it holds no AWS SDK, no server and no store.

#![warn(missing_docs)]

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::time::Duration;

pub mod problem;
pub mod retry;

/// Largest client message API Gateway accepts (128 KiB); exactly this many bytes is fine.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Largest single WebSocket frame payload API Gateway accepts (32 KiB).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Largest `@connections` POST body (128 KiB), answered with 413 above it.
pub const MAX_POST_BYTES: usize = 128 * 1024;
/// Largest jobs API request body (1 MiB).
pub const MAX_JOB_BODY_BYTES: usize = 1024 * 1024;
/// Longest connection id the management API accepts before answering 400.
pub const MAX_CONNECTION_ID_LEN: usize = 128;

/// The length of the connection ids the local gateway hands out: the
/// standard base64 of 11 random bytes, as API Gateway's look.
pub const CONNECTION_ID_LEN: usize = 16;
/// API Gateway closes a connection idle for this long (close code 1001).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// API Gateway closes every connection after this long (close code 1001).
pub const MAX_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Subscriptions outlive the longest possible connection by this much before TTL removes them.
pub const SUBSCRIPTION_TTL: Duration = Duration::from_secs(2 * 60 * 60 + 10 * 60);

/// Formats a timestamp as RFC 3339 with milliseconds and a `Z`, as every message does.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde adapter for timestamps as RFC 3339 strings with milliseconds.
pub mod rfc3339_serde {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `t` as RFC 3339 with milliseconds.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        super::ser_rfc3339(t, s)
    }

    /// Reads any RFC 3339 timestamp, as UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Writes a timestamp as [`rfc3339`] does (a `serialize_with` helper).
pub fn ser_rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// Lifecycle of a job. The last three are terminal: once reached, nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, not started (seq 1).
    Queued,
    /// A worker reported on it.
    Running,
    /// Ended with a `result` (terminal).
    Succeeded,
    /// Ended with an `error` (terminal).
    Failed,
    /// Ended by its client's `DELETE` (terminal).
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// True for `succeeded`, `failed` and `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Why a job failed, carried in the `error` field of a `failed` snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// A stable, machine-readable reason (`worker_lost`, `dispatch_failed`, …).
    pub code: String,
    /// What a person reads.
    pub message: String,
}

/// The whole state of a job at one `seq`. Every progress message is one of
/// these, so the latest alone is complete recovery.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The job's id (`job_…`).
    pub job_id: String,
    /// Grows by one per accepted update, from 1 for `queued`.
    pub seq: u64,
    /// Where the job is in its lifecycle.
    pub status: Status,
    /// 0 to 100; never goes down.
    pub percent: f64,
    /// The latest update's message (an update without one clears it).
    pub message: Option<String>,
    /// Any JSON, set with `succeeded`.
    pub result: Option<Value>,
    /// Set with `failed`.
    pub error: Option<JobError>,
    /// When this `seq` was stored.
    #[serde(serialize_with = "ser_rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Each stream's length when the snapshot was read (CONTRACT section
    /// 10); absent while the job has none. Lengths grow without a new
    /// `seq`: only a terminal snapshot's are final.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub streams: std::collections::BTreeMap<String, u64>,
    /// The attached files with download URLs presigned when the snapshot
    /// is sent or read (CONTRACT section 11); absent while the job has
    /// none. Filled when a snapshot is shown (`files::FileLinks::show`),
    /// never stored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ShownFile>,
}

/// Most distinct file names one job may upload (CONTRACT section 11).
pub const MAX_FILES: usize = 20;

/// A file attached to a job, as the store keeps it (CONTRACT section 11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFile {
    /// The file's name within the job.
    pub name: String,
    /// Its size as stored (not as announced).
    pub size: u64,
    /// The content type it was uploaded with, if one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A file as a snapshot shows it (CONTRACT section 11): with a download
/// URL presigned when the snapshot is sent or read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShownFile {
    /// The file's name within the job.
    pub name: String,
    /// Its size as stored.
    pub size: u64,
    /// The content type it was uploaded with, if one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A GET URL, presigned when the snapshot was sent or read.
    pub url: String,
    /// When `url` stops working.
    #[serde(serialize_with = "ser_rfc3339")]
    pub expires_at: DateTime<Utc>,
}

/// Most streams one job may have (CONTRACT section 10).
pub const MAX_STREAMS: usize = 8;

/// True for a stream name of the contract's form: `[a-z][a-z0-9_-]{0,31}`.
pub fn valid_stream_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Most chunks one stream may hold.
pub const MAX_STREAM_CHUNKS: u64 = 100_000;
/// Most bytes (compact JSON, UTF-8) one stream may hold.
pub const MAX_STREAM_BYTES: u64 = 8 * 1024 * 1024;
/// Most bytes of chunks one request may append, over all its streams.
pub const MAX_APPEND_BYTES: usize = 64 * 1024;

/// The size a chunk counts for: its compact JSON in UTF-8 bytes.
pub fn chunk_bytes(chunk: &Value) -> u64 {
    chunk.to_string().len() as u64
}

/// An error and each of its causes, on one line: what a user needs to see
/// to fix it (an SDK's top-level error alone often says only "service error").
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let line = s.to_string();
        if !out.contains(&line) {
            out.push_str(": ");
            out.push_str(&line);
        }
        src = s.source();
    }
    out
}

/// Most tags one job carries.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// Messages the server pushes to a WebSocket client.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[allow(missing_docs)] // each variant's fields are its message's, as CONTRACT section 3 names them
pub enum ServerMessage<'a> {
    /// A job's whole state (`"type":"progress"`).
    Progress(&'a Snapshot),
    /// The answer to `ping`, naming the connection for `@connections`.
    #[serde(rename_all = "camelCase")]
    Pong { connection_id: &'a str },
    /// The answer to `unsubscribe`.
    #[serde(rename_all = "camelCase")]
    Unsubscribed { job_id: &'a str },
    /// The answer to following an owner's jobs (`tag` null for all of them).
    Subscribed { owner: bool, tag: Option<&'a str> },
    /// Chunks `from` … `from + n - 1` of one of a job's streams.
    #[serde(rename_all = "camelCase")]
    Chunks {
        job_id: &'a str,
        stream: &'a str,
        from: u64,
        chunks: &'a [Value],
    },
    /// A refused or unroutable client message; the connection stays open.
    #[serde(rename_all = "camelCase")]
    Error {
        code: ErrorCode,
        #[serde(skip_serializing_if = "Option::is_none")]
        job_id: Option<&'a str>,
        message: &'a str,
    },
}

impl ServerMessage<'_> {
    /// Serializes the message once; the text can then go to any number of clients.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every key is a string and no
        // value holds a non-finite float (percent is validated on update).
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The `code` of an error message sent to a WebSocket client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, no `action`, or bad fields.
    BadRequest,
    /// An `action` no route answers (the `$default` route).
    UnknownAction,
    /// A wrong or expired token for the job.
    Forbidden,
    /// No such job.
    NotFound,
    /// Following an owner's jobs without a signed-in identity.
    Unauthorized,
    /// The store failed; the client may retry.
    Internal,
}

/// A parsed client message, after route selection on `$request.body.action`.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // the fields are the message's, as CONTRACT sections 3 and 10 name them
pub enum ClientAction {
    /// Follow a job with its token (and, optionally, some of its streams).
    Subscribe {
        job_id: String,
        token: String,
        /// Stream name → the first chunk index wanted (CONTRACT section 10).
        streams: std::collections::BTreeMap<String, u64>,
    },
    /// Every chunk of `stream` from `from` to its current end.
    Replay {
        job_id: String,
        stream: String,
        from: u64,
        /// The job's token, for a connection that does not follow the job.
        token: Option<String>,
    },
    /// `{"action":"subscribe","owner":true}`: every job of the connection's
    /// owner (with `tag`, those carrying it), present and future.
    FollowOwner { tag: Option<String> },
    /// Stop following a job.
    Unsubscribe { job_id: String },
    /// The current snapshot of every job followed.
    Sync,
    /// Answered with `pong` and the connection id.
    Ping,
}

/// Why a client message could not be routed to an action.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The message is not one a route can read.
    #[error("{0}")]
    BadRequest(String),
    /// An `action` no route answers.
    #[error("unknown action '{0}'; expected subscribe, unsubscribe, sync, replay or ping")]
    UnknownAction(String),
}

/// A `subscribe`'s `streams`: absent, or an object of stream name → first
/// chunk index wanted (at most the streams a job may have).
fn wanted_streams(
    v: Option<&Value>,
) -> Result<std::collections::BTreeMap<String, u64>, ActionError> {
    let bad = || {
        ActionError::BadRequest(
            "\"streams\" must be an object of stream name → first chunk index, like {\"log\": 0}"
                .into(),
        )
    };
    match v {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(m)) if m.len() <= MAX_STREAMS => m
            .iter()
            .map(|(name, from)| match from.as_u64() {
                Some(from) if valid_stream_name(name) => Ok((name.clone(), from)),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Whether a `subscribe` message asks for the owner's jobs (`"owner": true`).
fn follows_owner(obj: &serde_json::Map<String, Value>) -> Result<bool, ActionError> {
    match obj.get("owner") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err(ActionError::BadRequest(
            "\"owner\" must be true (follow your jobs) or left out".into(),
        )),
    }
}

/// The route keys a client message can select, as `RouteSelectionExpression:
/// $request.body.action` does in API Gateway.
pub const ROUTES: [&str; 5] = ["subscribe", "unsubscribe", "sync", "replay", "ping"];

/// The route key API Gateway would select for this message body: the
/// `action` field when it names a known route, otherwise `$default`.
pub fn select_route(body: &str) -> &'static str {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Probe>(body) {
        Ok(Probe {
            action: Some(action),
        }) => ROUTES
            .into_iter()
            .find(|r| *r == action.as_ref())
            .unwrap_or("$default"),
        _ => "$default",
    }
}

impl ClientAction {
    /// Parses a client text frame.
    pub fn parse(body: &str) -> Result<ClientAction, ActionError> {
        let value: Value = serde_json::from_str(body)
            .map_err(|e| ActionError::BadRequest(format!("message is not valid JSON ({e})")))?;
        let Value::Object(obj) = value else {
            return Err(ActionError::BadRequest(
                "message must be a JSON object with an \"action\" field".into(),
            ));
        };
        let action = match obj.get("action") {
            Some(Value::String(a)) => a.as_str(),
            Some(_) => {
                return Err(ActionError::BadRequest(
                    "\"action\" must be a string".into(),
                ));
            }
            None => {
                return Err(ActionError::BadRequest(
                    "message has no \"action\" field".into(),
                ));
            }
        };
        let field = |name: &str| -> Result<String, ActionError> {
            match obj.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(ActionError::BadRequest(format!(
                    "action '{action}' needs a non-empty string \"{name}\""
                ))),
            }
        };
        match action {
            "subscribe" if follows_owner(&obj)? => Ok(ClientAction::FollowOwner {
                tag: match obj.get("tag") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t))
                        if !t.is_empty() && t.chars().count() <= MAX_TAG_CHARS =>
                    {
                        Some(t.clone())
                    }
                    Some(_) => {
                        return Err(ActionError::BadRequest(format!(
                            "\"tag\" must be a string of 1 to {} characters",
                            MAX_TAG_CHARS
                        )));
                    }
                },
            }),
            "subscribe" => Ok(ClientAction::Subscribe {
                job_id: field("jobId")?,
                token: field("token")?,
                streams: wanted_streams(obj.get("streams"))?,
            }),
            "replay" => Ok(ClientAction::Replay {
                job_id: field("jobId")?,
                stream: match obj.get("stream") {
                    Some(Value::String(s)) if valid_stream_name(s) => s.clone(),
                    _ => {
                        return Err(ActionError::BadRequest(
                            "replay needs \"stream\", a stream name ([a-z][a-z0-9_-]{0,31})".into(),
                        ));
                    }
                },
                from: match obj.get("from") {
                    Some(v) if v.as_u64().is_some() => v.as_u64().unwrap_or(0),
                    _ => {
                        return Err(ActionError::BadRequest(
                            "replay needs \"from\", a chunk index (a whole number from 0)".into(),
                        ));
                    }
                },
                token: match obj.get("token") {
                    Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                    _ => None,
                },
            }),
            "unsubscribe" => Ok(ClientAction::Unsubscribe {
                job_id: field("jobId")?,
            }),
            "sync" => Ok(ClientAction::Sync),
            "ping" => Ok(ClientAction::Ping),
            other => Err(ActionError::UnknownAction(other.to_string())),
        }
    }
}

/// The kind served by the built-in demo worker.
pub const DEMO_KIND: &str = "demo";

/// A job kind's name: lowercase letters, digits, '-' and '_', 1 to 64 of them.
pub fn parse_kind(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "a job kind uses lowercase letters, digits, '-' and '_' (like video-encode), got '{s}'"
        ));
    }
    Ok(s.to_string())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        assert_eq!(
            ClientAction::parse(r#"{"action":"subscribe","jobId":"j","token":"t"}"#),
            Ok(ClientAction::Subscribe {
                job_id: "j".into(),
                token: "t".into(),
                streams: Default::default(),
            })
        );
        assert_eq!(
            ClientAction::parse(
                r#"{"action":"subscribe","jobId":"j","token":"t","streams":{"log":0,"tokens":120}}"#
            ),
            Ok(ClientAction::Subscribe {
                job_id: "j".into(),
                token: "t".into(),
                streams: [("log".to_string(), 0), ("tokens".to_string(), 120)].into(),
            })
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"replay","jobId":"j","stream":"log","from":4}"#),
            Ok(ClientAction::Replay {
                job_id: "j".into(),
                stream: "log".into(),
                from: 4,
                token: None,
            })
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"unsubscribe","jobId":"j"}"#),
            Ok(ClientAction::Unsubscribe { job_id: "j".into() })
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"sync"}"#),
            Ok(ClientAction::Sync)
        );
        assert_eq!(
            ClientAction::parse(r#"{"action":"ping","extra":1}"#),
            Ok(ClientAction::Ping)
        );
    }

    #[test]
    fn rejects_malformed_messages() {
        for body in [
            "",
            "nope",
            "[1]",
            "42",
            "{}",
            r#"{"action":7}"#,
            "{\"action\":",
        ] {
            assert!(
                matches!(ClientAction::parse(body), Err(ActionError::BadRequest(_))),
                "{body}"
            );
        }
        assert!(matches!(
            ClientAction::parse(r#"{"action":"subscribe","jobId":"j"}"#),
            Err(ActionError::BadRequest(_))
        ));
        assert_eq!(
            ClientAction::parse(r#"{"action":"dance"}"#),
            Err(ActionError::UnknownAction("dance".into()))
        );
    }

    #[test]
    fn route_selection_matches_api_gateway() {
        assert_eq!(select_route(r#"{"action":"ping"}"#), "ping");
        assert_eq!(select_route(r#"{"action":"dance"}"#), "$default");
        assert_eq!(select_route("not json"), "$default");
        assert_eq!(select_route(r#"{"action":5}"#), "$default");
    }

    #[test]
    fn snapshot_wire_shape() {
        let snap = Snapshot {
            job_id: "j1".into(),
            seq: 7,
            status: Status::Running,
            percent: 42.5,
            message: Some("resizing".into()),
            result: None,
            error: None,
            updated_at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            streams: Default::default(),
            files: Vec::new(),
        };
        let v: Value = serde_json::from_str(&ServerMessage::Progress(&snap).to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"progress","jobId":"j1","seq":7,"status":"running",
                "percent":42.5,"message":"resizing","result":null,"error":null,
                "updatedAt":"2026-11-23T10:00:00.123Z"})
        );
    }
}
