//! Reporting from a Rust worker of your own job kind: the same calls as the
//! Python (`jobcast_worker`) and Node (`@jobcast/worker`) libraries.
//!
//! ```no_run
//! # async fn run(message: &str) -> Result<(), jobcast_worker::ReportError> {
//! use jobcast_worker::Job;
//! let job = Job::from_message(message)?;
//! job.progress(Some(50.0), Some("half way")).await?;
//! job.succeed(Some(serde_json::json!({"rows": 12})), None).await?;
//! # Ok(()) }
//! ```
//!
//! With [`Job::with_min_interval`], progress reported faster than that is
//! merged and sent at most once per interval, the newest state last.
//!
//! `429`, `5xx` and connection errors are retried with exponential backoff
//! and jitter, honouring `Retry-After`; any other `4xx` is not. Once the job
//! has ended (its client cancelled it, or jobcast ended it `worker_lost`)
//! every call fails with [`ReportError::Ended`], carrying the final snapshot:
//! the signal to stop.

#![warn(missing_docs)]

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

mod core;
mod files;

pub use files::{Upload, Uploaded};

use self::core::Core;

/// Why an update did not land.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not a job message.
    #[error("not a jobcast job message: {0}")]
    BadMessage(String),
    /// The job has already ended (`409 terminal`); stop working on it.
    #[error("job {job_id} already ended {}", snapshot["status"].as_str().unwrap_or("?"))]
    Ended {
        /// The job.
        job_id: String,
        /// Its final snapshot, as jobcast answered it.
        snapshot: Value,
    },
    /// jobcast refused the update (a 4xx, or a 429/5xx after every retry).
    #[error("update of job {job_id} refused ({status}): {detail}")]
    Refused {
        /// The job.
        job_id: String,
        /// The HTTP status.
        status: u16,
        /// The problem document (RFC 9457) jobcast answered with.
        problem: Value,
        /// The problem's `detail`: what to fix.
        detail: String,
    },
    /// jobcast could not be reached after every retry.
    #[error("could not reach jobcast for job {job_id}: {reason}")]
    Unreachable {
        /// The job.
        job_id: String,
        /// The last error, with its causes.
        reason: String,
    },
    /// A chunk the job's streams cannot take (a bad stream name, too large).
    #[error("{0}")]
    BadChunk(String),
}

/// How long chunks are gathered by default before they go out.
pub const DEFAULT_CHUNK_INTERVAL: Duration = Duration::from_millis(100);
/// Gathered chunks of this many bytes go out at once.
const APPEND_SEND_BYTES: usize = 48 * 1024;

impl ReportError {
    /// True when the job ended because its client cancelled it.
    pub fn cancelled(&self) -> bool {
        matches!(self, ReportError::Ended { snapshot, .. } if snapshot["status"] == "cancelled")
    }
}

/// What jobcast answers to an accepted update.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The job.
    pub job_id: String,
    /// The job's `seq` after the update (unchanged by a heartbeat or an append alone).
    pub seq: u64,
    /// The job's status after the update.
    pub status: String,
    /// With chunks: each of their streams' length after them.
    #[serde(default)]
    pub streams: std::collections::BTreeMap<String, u64>,
}

/// How hard a job tries to get an update through.
#[derive(Clone, Debug)]
pub struct RetryOptions {
    /// Retries after the first try (of 429, 5xx and connection errors).
    pub retries: u32,
    /// The first wait between tries; each later one may double it.
    pub base_backoff: Duration,
    /// Longest wait between tries, `Retry-After` included.
    pub max_backoff: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for RetryOptions {
    fn default() -> RetryOptions {
        RetryOptions {
            retries: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    job_id: String,
    worker_token: String,
    update_url: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    heartbeat_timeout_seconds: Option<u64>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
}

/// One job handed to this worker, and the calls that report on it.
pub struct Job {
    /// The job's id.
    pub id: String,
    /// Its kind, as the client created it.
    pub kind: Option<String>,
    /// The client's input.
    pub input: Value,
    /// 1, then one more each time the same job is handed over again.
    pub attempt: u32,
    /// Longest silence before jobcast ends the job `worker_lost` (zero: never).
    pub heartbeat_timeout: Duration,
    /// When the client created the job (RFC 3339).
    pub created_at: Option<String>,
    /// The W3C trace context jobcast handed the job over in, when its
    /// traces are on: every update carries it back (so they join the trace
    /// `POST /jobs` began); start your own spans under it to join too.
    pub traceparent: Option<String>,
    /// Where updates go: `POST {update_url}`.
    pub update_url: String,
    /// Shortest time between two progress updates sent (zero: every call).
    pub min_interval: Duration,
    /// How long chunks are gathered before they go out (zero: each call sends).
    pub chunk_interval: Duration,
    core: Arc<Core>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The worker token stays out of logs.
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job from its message's JSON text (an SQS body, standard input).
    pub fn from_message(text: impl AsRef<[u8]>) -> Result<Job, ReportError> {
        let value: Value = serde_json::from_slice(text.as_ref())
            .map_err(|e| ReportError::BadMessage(format!("not JSON: {e}")))?;
        Job::from_value(value)
    }

    /// A job from its message as JSON (a Lambda event).
    pub fn from_value(message: Value) -> Result<Job, ReportError> {
        let Value::Object(obj) = &message else {
            return Err(ReportError::BadMessage(
                "a job message is a JSON object".into(),
            ));
        };
        let missing: Vec<&str> = ["jobId", "workerToken", "updateUrl"]
            .into_iter()
            .filter(|k| {
                obj.get(*k)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .collect();
        if !missing.is_empty() {
            return Err(ReportError::BadMessage(format!(
                "missing {} (pass the whole message jobcast sent)",
                missing.join(", ")
            )));
        }
        let m: Message =
            serde_json::from_value(message).map_err(|e| ReportError::BadMessage(e.to_string()))?;
        Ok(Job {
            id: m.job_id.clone(),
            kind: m.kind,
            input: m.input,
            attempt: m.attempt.unwrap_or(1),
            heartbeat_timeout: Duration::from_secs(m.heartbeat_timeout_seconds.unwrap_or(0)),
            created_at: m.created_at,
            core: Arc::new(Core::new(
                m.job_id,
                m.update_url.clone(),
                m.worker_token,
                m.traceparent.clone(),
            )),
            traceparent: m.traceparent,
            update_url: m.update_url,
            min_interval: Duration::ZERO,
            chunk_interval: DEFAULT_CHUNK_INTERVAL,
        })
    }

    /// The job of a `command:` worker: `JOBCAST_JOB`, else standard input.
    pub fn from_env() -> Result<Job, ReportError> {
        match std::env::var("JOBCAST_JOB") {
            Ok(text) if !text.is_empty() => Job::from_message(text),
            _ => {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
                    .map_err(|e| ReportError::BadMessage(format!("cannot read stdin: {e}")))?;
                Job::from_message(text)
            }
        }
    }

    /// Replaces the retry options.
    pub fn with_retry(self, retry: RetryOptions) -> Job {
        *self
            .core
            .retry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = retry;
        self
    }

    /// Sends progress at most once per `interval`: a call sooner than that
    /// after the previous progress sent is held (and answers `None`), the
    /// next one replacing it. The newest held progress goes out when the
    /// interval is up (from a task on the tokio runtime), or earlier with
    /// [`Job::flush`], [`Job::heartbeat`] or the job's end. Fewer updates
    /// mean fewer pushes, invocations and table writes; browsers see the
    /// newest state at most `interval` late.
    pub fn with_min_interval(mut self, interval: Duration) -> Job {
        self.min_interval = interval;
        self
    }

    /// Gathers chunks for `interval` before sending them (default 100 ms).
    pub fn with_chunk_interval(mut self, interval: Duration) -> Job {
        self.chunk_interval = interval;
        self
    }

    /// Adds chunks (any JSON) to one of the job's streams. They go out
    /// within the chunk interval (from a task on the tokio runtime), with
    /// the next update if one is sent first, and always before the job
    /// ends. A bad stream name, or a chunk over 64 KiB, is refused here.
    pub async fn append(&self, stream: &str, chunks: Vec<Value>) -> Result<(), ReportError> {
        if !jobcast_protocol::valid_stream_name(stream) {
            return Err(ReportError::BadChunk(format!(
                "'{stream}' is not a stream name: [a-z][a-z0-9_-]{{0,31}}"
            )));
        }
        let max = jobcast_protocol::MAX_APPEND_BYTES;
        let mut send_now = false;
        let mut arm = None;
        for chunk in chunks {
            let size = jobcast_protocol::chunk_bytes(&chunk) as usize;
            if size > max {
                return Err(ReportError::BadChunk(format!(
                    "a chunk is at most {max} bytes of JSON, this one {size}"
                )));
            }
            let full = {
                let mut held = self.core.held();
                if let Some(e) = self.core.late_error(&mut held) {
                    return Err(e);
                }
                let p = self.core.pending();
                p.bytes + size > max
            };
            if full {
                self.core.send(json!({})).await?;
            }
            let mut p = self.core.pending();
            let first = p.chunks.is_empty();
            p.chunks.entry(stream.to_string()).or_default().push(chunk);
            p.bytes += size;
            if p.bytes >= APPEND_SEND_BYTES || self.chunk_interval.is_zero() {
                send_now = true;
            } else if first {
                arm = Some(p.generation);
            }
        }
        if send_now {
            self.core.send(json!({})).await?;
        } else if let Some(generation) = arm {
            self.core.arm_chunks(generation, self.chunk_interval);
        }
        Ok(())
    }

    /// Adds one line to the job's `log` stream.
    pub async fn log(&self, line: impl Into<String>) -> Result<(), ReportError> {
        self.append("log", vec![Value::String(line.into())]).await
    }

    /// Each stream's length after the last update that appended to it.
    pub fn streams(&self) -> std::collections::BTreeMap<String, u64> {
        self.core
            .streams
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Reports progress (the job becomes `running`). An omitted message is
    /// cleared. `None` when held by [`Job::with_min_interval`]; an error
    /// that sending held progress met is returned by the next call.
    pub async fn progress(
        &self,
        percent: Option<f64>,
        message: Option<&str>,
    ) -> Result<Option<Accepted>, ReportError> {
        let mut body = Map::new();
        body.insert("status".into(), json!("running"));
        if let Some(p) = percent {
            body.insert("percent".into(), json!(p));
        }
        if let Some(m) = message {
            body.insert("message".into(), json!(m));
        }
        {
            let mut held = self.core.held();
            if let Some(e) = self.core.late_error(&mut held) {
                return Err(e);
            }
            if !body.contains_key("percent")
                && let Some(p) = held.body.as_ref().and_then(|b| b.get("percent"))
            {
                body.insert("percent".into(), p.clone());
            }
            let now = Instant::now();
            let finished = self.core.finished.load(Ordering::Relaxed);
            match held.sent_at.map(|t| t + self.min_interval) {
                Some(due) if due > now && !finished => {
                    // The first progress held starts the timer; later ones replace it.
                    if held.body.replace(body).is_none() {
                        self.core.arm(held.generation, due);
                    }
                    return Ok(None);
                }
                _ => {
                    held.take();
                    held.sent_at = Some(now);
                }
            }
        }
        self.core.send(Value::Object(body)).await.map(Some)
    }

    /// Sends held progress and gathered chunks now; `None` when nothing is
    /// held.
    pub async fn flush(&self) -> Result<Option<Accepted>, ReportError> {
        let body = {
            let mut held = self.core.held();
            if let Some(e) = self.core.late_error(&mut held) {
                return Err(e);
            }
            let body = held.take();
            if body.is_some() {
                held.sent_at = Some(Instant::now());
            }
            body
        };
        match body {
            Some(b) => self.core.send(Value::Object(b)).await.map(Some),
            None if !self.core.pending().chunks.is_empty() => {
                self.core.send(json!({})).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// Tells jobcast the worker is alive, without a new snapshot (held
    /// progress, if any, goes out instead: it counts as a heartbeat too).
    pub async fn heartbeat(&self) -> Result<Accepted, ReportError> {
        let holding = self.core.held().body.is_some();
        if holding && let Some(accepted) = self.flush().await? {
            return Ok(accepted);
        }
        self.core.send(json!({})).await
    }

    /// Ends the job `succeeded` (percent 100), with an optional result.
    pub async fn succeed(
        &self,
        result: Option<Value>,
        message: Option<&str>,
    ) -> Result<Accepted, ReportError> {
        self.succeed_with_files(result, message, &[]).await
    }

    /// Ends the job `failed` with `error {code, message}` (at the percent of
    /// any progress still held).
    pub async fn fail(&self, code: &str, message: &str) -> Result<Accepted, ReportError> {
        let mut body = Map::new();
        body.insert("status".into(), json!("failed"));
        body.insert("message".into(), json!(message));
        body.insert("error".into(), json!({"code": code, "message": message}));
        if let Some(p) = self
            .core
            .held()
            .take()
            .and_then(|mut h| h.remove("percent"))
        {
            body.insert("percent".into(), p);
        }
        self.core.send(Value::Object(body)).await
    }

    /// True once a call learned that the job was cancelled.
    pub fn cancelled(&self) -> bool {
        self.core.cancelled.load(Ordering::Relaxed)
    }

    /// True once a call learned that the job had ended.
    pub fn ended(&self) -> bool {
        self.core.ended.load(Ordering::Relaxed)
    }

    /// The final snapshot, once a call learned that the job had ended.
    pub fn final_snapshot(&self) -> Option<Value> {
        self.core.last.lock().ok().and_then(|g| g.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_from_text_or_json_and_names_what_is_missing() {
        let m = json!({"type": "job", "jobId": "job_1", "kind": "export", "input": {"a": 1},
                       "attempt": 2, "workerToken": "wt", "updateUrl": "http://h/jobs/job_1/updates",
                       "heartbeatTimeoutSeconds": 300, "createdAt": "2026-12-02T10:00:00Z"});
        let job = Job::from_message(m.to_string()).unwrap();
        assert_eq!((job.id.as_str(), job.attempt), ("job_1", 2));
        assert_eq!(job.heartbeat_timeout, Duration::from_secs(300));
        assert_eq!(job.input, json!({"a": 1}));
        assert!(
            !format!("{job:?}").contains("wt"),
            "token kept out of Debug"
        );
        let e = Job::from_value(json!({"jobId": "job_1"})).unwrap_err();
        assert!(e.to_string().contains("workerToken, updateUrl"), "{e}");
        assert!(Job::from_message("{nope").is_err());
        assert!(Job::from_value(json!([1])).is_err());
    }

    /// A stand-in for jobcast: answers each request as an accepted update
    /// and keeps every request's head.
    async fn stand_in() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/jobs/job_1/updates",
            listener.local_addr().unwrap()
        );
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let head = text[..end].to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        seen.lock().unwrap().push(head);
                        buf.drain(..end + 4 + length);
                        let body = r#"{"jobId":"job_1","seq":2,"status":"running"}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, heads)
    }

    #[tokio::test]
    async fn the_job_messages_traceparent_goes_back_with_every_update() {
        let (url, heads) = stand_in().await;
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let job = Job::from_value(
            json!({"jobId": "job_1", "workerToken": "wt", "updateUrl": url,
                                         "traceparent": traceparent}),
        )
        .unwrap();
        assert_eq!(job.traceparent.as_deref(), Some(traceparent));
        job.progress(Some(10.0), None).await.unwrap();
        job.heartbeat().await.unwrap();
        let untraced =
            Job::from_value(json!({"jobId": "job_1", "workerToken": "wt", "updateUrl": url}))
                .unwrap();
        assert_eq!(untraced.traceparent, None);
        untraced.heartbeat().await.unwrap();
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3);
        let line = format!("traceparent: {traceparent}");
        assert!(
            heads[0].contains(&line) && heads[1].contains(&line),
            "{heads:?}"
        );
        assert!(!heads[2].contains("traceparent"), "{heads:?}");
    }
}
