//! Reporting from a Rust worker of your own job kind: the same calls as the
//! Python (`jobcast_worker`) and Node (`@jobcast/worker`) libraries.
//!
//! ```no_run
//! # async fn run(message: &str) -> Result<(), jobcast::worker_client::ReportError> {
//! use jobcast::worker_client::Job;
//! let job = Job::from_message(message)?;
//! job.progress(Some(50.0), Some("half way")).await?;
//! job.succeed(Some(serde_json::json!({"rows": 12})), None).await?;
//! # Ok(()) }
//! ```
//!
//! `429`, `5xx` and connection errors are retried with exponential backoff
//! and jitter, honouring `Retry-After`; any other `4xx` is not. Once the job
//! has ended (its client cancelled it, or jobcast ended it `worker_lost`)
//! every call fails with [`ReportError::Ended`], carrying the final snapshot:
//! the signal to stop.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RETRYABLE: [u16; 5] = [429, 500, 502, 503, 504];

/// Why an update did not land.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not a job message.
    #[error("not a jobcast job message: {0}")]
    BadMessage(String),
    /// The job has already ended (`409 terminal`); stop working on it.
    #[error("job {job_id} already ended {}", snapshot["status"].as_str().unwrap_or("?"))]
    Ended { job_id: String, snapshot: Value },
    /// jobcast refused the update (a 4xx, or a 429/5xx after every retry).
    #[error("update of job {job_id} refused ({status}): {detail}")]
    Refused {
        job_id: String,
        status: u16,
        /// The problem document (RFC 9457) jobcast answered with.
        problem: Value,
        detail: String,
    },
    /// jobcast could not be reached after every retry.
    #[error("could not reach jobcast for job {job_id}: {reason}")]
    Unreachable { job_id: String, reason: String },
}

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
    pub job_id: String,
    pub seq: u64,
    pub status: String,
}

/// How hard a job tries to get an update through.
#[derive(Clone, Debug)]
pub struct RetryOptions {
    /// Retries after the first try (of 429, 5xx and connection errors).
    pub retries: u32,
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
}

/// One job handed to this worker, and the calls that report on it.
pub struct Job {
    pub id: String,
    pub kind: Option<String>,
    pub input: Value,
    /// 1, then one more each time the same job is handed over again.
    pub attempt: u32,
    pub heartbeat_timeout: Duration,
    pub created_at: Option<String>,
    pub update_url: String,
    token: String,
    http: reqwest::Client,
    retry: RetryOptions,
    ended: AtomicBool,
    cancelled: AtomicBool,
    last: Mutex<Option<Value>>,
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
            id: m.job_id,
            kind: m.kind,
            input: m.input,
            attempt: m.attempt.unwrap_or(1),
            heartbeat_timeout: Duration::from_secs(m.heartbeat_timeout_seconds.unwrap_or(0)),
            created_at: m.created_at,
            update_url: m.update_url,
            token: m.worker_token,
            http: reqwest::Client::new(),
            retry: RetryOptions::default(),
            ended: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            last: Mutex::new(None),
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
    pub fn with_retry(mut self, retry: RetryOptions) -> Job {
        self.retry = retry;
        self
    }

    /// Reports progress (the job becomes `running`). An omitted message is cleared.
    pub async fn progress(
        &self,
        percent: Option<f64>,
        message: Option<&str>,
    ) -> Result<Accepted, ReportError> {
        let mut body = Map::new();
        body.insert("status".into(), json!("running"));
        if let Some(p) = percent {
            body.insert("percent".into(), json!(p));
        }
        if let Some(m) = message {
            body.insert("message".into(), json!(m));
        }
        self.send(Value::Object(body)).await
    }

    /// Tells jobcast the worker is alive, without a new snapshot.
    pub async fn heartbeat(&self) -> Result<Accepted, ReportError> {
        self.send(json!({})).await
    }

    /// Ends the job `succeeded` (percent 100), with an optional result.
    pub async fn succeed(
        &self,
        result: Option<Value>,
        message: Option<&str>,
    ) -> Result<Accepted, ReportError> {
        let mut body = Map::new();
        body.insert("status".into(), json!("succeeded"));
        if let Some(r) = result {
            body.insert("result".into(), r);
        }
        if let Some(m) = message {
            body.insert("message".into(), json!(m));
        }
        self.send(Value::Object(body)).await
    }

    /// Ends the job `failed` with `error {code, message}`.
    pub async fn fail(&self, code: &str, message: &str) -> Result<Accepted, ReportError> {
        self.send(json!({"status": "failed", "message": message,
                         "error": {"code": code, "message": message}}))
            .await
    }

    /// True once a call learned that the job was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// True once a call learned that the job had ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// The final snapshot, once a call learned that the job had ended.
    pub fn final_snapshot(&self) -> Option<Value> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    async fn send(&self, body: Value) -> Result<Accepted, ReportError> {
        let body = body.to_string();
        let mut attempt = 0;
        loop {
            let answer = self.post_once(&body).await;
            match answer.status {
                Some(200) => {
                    return serde_json::from_value(answer.body).map_err(|e| ReportError::Refused {
                        job_id: self.id.clone(),
                        status: 200,
                        problem: Value::Null,
                        detail: format!("unreadable answer: {e}"),
                    });
                }
                Some(409) if answer.body["code"] == "terminal" => {
                    return Err(self.ended_with(answer.body["snapshot"].clone()));
                }
                _ => {}
            }
            let retryable = answer.status.is_none_or(|s| RETRYABLE.contains(&s));
            if !retryable || attempt >= self.retry.retries {
                return Err(self.failure(answer));
            }
            let wait = match answer.retry_after {
                Some(secs) if secs.is_finite() && secs >= 0.0 => {
                    Duration::from_secs_f64(secs).min(self.retry.max_backoff)
                }
                _ => {
                    crate::retry::backoff(attempt, self.retry.base_backoff, self.retry.max_backoff)
                }
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One POST of `body` to the update endpoint.
    async fn post_once(&self, body: &str) -> Answer {
        let sent = self
            .http
            .post(&self.update_url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("jobcast-worker-rust/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(self.retry.timeout)
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(res) => Answer {
                status: Some(res.status().as_u16()),
                retry_after: res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok()),
                reason: res.status().to_string(),
                body: res.json().await.unwrap_or(Value::Null),
            },
            Err(e) => Answer {
                status: None,
                retry_after: None,
                reason: crate::aws::causes(&e),
                body: Value::Null,
            },
        }
    }

    /// The job has ended (409 `terminal`): remembered, so later reports
    /// and `cancelled()` know without asking.
    fn ended_with(&self, snapshot: Value) -> ReportError {
        self.ended.store(true, Ordering::Relaxed);
        self.cancelled
            .store(snapshot["status"] == "cancelled", Ordering::Relaxed);
        if let Ok(mut g) = self.last.lock() {
            *g = Some(snapshot.clone());
        }
        ReportError::Ended {
            job_id: self.id.clone(),
            snapshot,
        }
    }

    /// The error for an answer that is neither accepted nor worth a retry.
    fn failure(&self, answer: Answer) -> ReportError {
        match answer.status {
            None => ReportError::Unreachable {
                job_id: self.id.clone(),
                reason: answer.reason,
            },
            Some(status) => ReportError::Refused {
                job_id: self.id.clone(),
                status,
                detail: answer.body["detail"]
                    .as_str()
                    .unwrap_or(&answer.reason)
                    .to_string(),
                problem: answer.body,
            },
        }
    }
}

/// What one POST to the update endpoint came back with.
struct Answer {
    /// None when no answer came (connection refused, timeout).
    status: Option<u16>,
    retry_after: Option<f64>,
    /// The status line's text, or why nothing came back.
    reason: String,
    body: Value,
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
}
