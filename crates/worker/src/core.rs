//! What a job's calls share with the timer that sends held progress: the
//! transport (one request at a time, retried) and the held progress.

use super::{Accepted, ReportError, RetryOptions};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::time::Instant;

const RETRYABLE: [u16; 5] = [429, 500, 502, 503, 504];

/// Progress held back by the job's minimum interval.
#[derive(Default)]
pub(super) struct Held {
    pub(super) body: Option<Map<String, Value>>,
    /// When the last progress went out.
    pub(super) sent_at: Option<Instant>,
    /// Bumped whenever held progress is taken, so the timer of an earlier
    /// hold wakes to nothing. A timer is pending exactly while `body` is set.
    pub(super) generation: u64,
    /// What sending held progress from the timer met, for the next call.
    late: Option<ReportError>,
}

impl Held {
    /// Takes the held progress; a sleeping timer will find nothing.
    pub(super) fn take(&mut self) -> Option<Map<String, Value>> {
        self.generation += 1;
        self.body.take()
    }
}

/// Chunks gathered for the job's streams, waiting to go out.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) chunks: std::collections::BTreeMap<String, Vec<Value>>,
    pub(super) bytes: usize,
    /// Bumped whenever the chunks are taken, so an earlier timer wakes to
    /// nothing. A timer is pending exactly while `chunks` is not empty.
    pub(super) generation: u64,
}

impl Pending {
    pub(super) fn take(&mut self) -> Option<Map<String, Value>> {
        self.generation += 1;
        self.bytes = 0;
        if self.chunks.is_empty() {
            return None;
        }
        let chunks = std::mem::take(&mut self.chunks);
        Some(
            chunks
                .into_iter()
                .map(|(k, v)| (k, Value::Array(v)))
                .collect(),
        )
    }
}

/// One job's connection to jobcast.
pub(super) struct Core {
    pub(super) job_id: String,
    pub(super) update_url: String,
    pub(super) token: String,
    /// The job's W3C trace context, sent back with every request so the
    /// updates join the trace of the job's creation.
    pub(super) traceparent: Option<String>,
    pub(super) http: reqwest::Client,
    pub(super) retry: Mutex<RetryOptions>,
    pub(super) ended: AtomicBool,
    pub(super) cancelled: AtomicBool,
    /// This worker's own terminal update was accepted: later calls go out
    /// at once, to learn the final snapshot from jobcast's `409`.
    pub(super) finished: AtomicBool,
    pub(super) last: Mutex<Option<Value>>,
    pub(super) held: Mutex<Held>,
    pub(super) pending: Mutex<Pending>,
    /// Each stream's length after the last update that appended to it.
    pub(super) streams: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Updates of one job go out one at a time, in the order they were made.
    sending: tokio::sync::Mutex<()>,
}

impl Core {
    pub(super) fn new(
        job_id: String,
        update_url: String,
        token: String,
        traceparent: Option<String>,
    ) -> Core {
        Core {
            job_id,
            update_url,
            token,
            traceparent,
            http: reqwest::Client::new(),
            retry: Mutex::new(RetryOptions::default()),
            ended: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            last: Mutex::new(None),
            held: Mutex::new(Held::default()),
            pending: Mutex::new(Pending::default()),
            streams: Mutex::new(Default::default()),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the gathered chunks after `after`, unless they were taken
    /// meanwhile (the generation moved on).
    pub(super) fn arm_chunks(self: &Arc<Core>, generation: u64, after: std::time::Duration) {
        let core = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            {
                let p = core.pending();
                if p.generation != generation || p.chunks.is_empty() {
                    return;
                }
            }
            if let Err(e) = core.send(serde_json::json!({})).await {
                core.held().late = Some(e);
            }
        });
    }

    /// The error a call must raise before anything else: the job has ended,
    /// or held progress sent from the timer met one.
    pub(super) fn late_error(&self, held: &mut Held) -> Option<ReportError> {
        if self.ended.load(Ordering::Relaxed) {
            let snapshot = self
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or(Value::Null);
            return Some(ReportError::Ended {
                job_id: self.job_id.clone(),
                snapshot,
            });
        }
        held.late.take()
    }

    /// Sends what is held at `due`, unless it was taken meanwhile (the
    /// generation moved on).
    pub(super) fn arm(self: &Arc<Core>, generation: u64, due: Instant) {
        let core = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let body = {
                let mut h = core.held();
                if h.generation != generation {
                    return;
                }
                h.sent_at = Some(Instant::now());
                h.take()
            };
            if let Some(body) = body
                && let Err(e) = core.send(Value::Object(body)).await
            {
                core.held().late = Some(e);
            }
        });
    }

    pub(super) async fn send(&self, body: Value) -> Result<Accepted, ReportError> {
        let _turn = self.sending.lock().await;
        // Gathered chunks go with whatever is sent (before it, on the server).
        let mut body = body;
        if let (Some(chunks), Value::Object(map)) = (self.pending().take(), &mut body) {
            map.insert("append".into(), Value::Object(chunks));
        }
        let retry = self.retry_options();
        let body = body.to_string();
        let mut attempt = 0;
        loop {
            let answer = self.post_once(&body, &retry).await;
            match answer.status {
                Some(200) => {
                    let accepted: Accepted =
                        serde_json::from_value(answer.body).map_err(|e| ReportError::Refused {
                            job_id: self.job_id.clone(),
                            status: 200,
                            problem: Value::Null,
                            detail: format!("unreadable answer: {e}"),
                        })?;
                    if let Ok(mut s) = self.streams.lock() {
                        s.extend(accepted.streams.iter().map(|(k, v)| (k.clone(), *v)));
                    }
                    if matches!(
                        accepted.status.as_str(),
                        "succeeded" | "failed" | "cancelled"
                    ) {
                        self.finished.store(true, Ordering::Relaxed);
                    }
                    return Ok(accepted);
                }
                Some(409) if answer.body["code"] == "terminal" => {
                    return Err(self.ended_with(answer.body["snapshot"].clone()));
                }
                _ => {}
            }
            match retry_wait(&answer, attempt, &retry) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(self.failure(answer)),
            }
            attempt += 1;
        }
    }

    fn retry_options(&self) -> RetryOptions {
        self.retry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One request retried as updates are (429, 5xx, no answer), built
    /// afresh by `make` for each attempt; the body of a 2xx answer.
    pub(super) async fn call<F, Fut>(&self, make: F) -> Result<Value, ReportError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, ReportError>>,
    {
        let retry = self.retry_options();
        let mut attempt = 0;
        loop {
            let sent = make()
                .await?
                .header(
                    reqwest::header::USER_AGENT,
                    concat!("jobcast-worker-rust/", env!("CARGO_PKG_VERSION")),
                )
                .timeout(retry.timeout)
                .send()
                .await;
            let answer = Answer::of(sent).await;
            match answer.status {
                Some(s) if (200..300).contains(&s) => return Ok(answer.body),
                Some(409) if answer.body["code"] == "terminal" => {
                    return Err(self.ended_with(answer.body["snapshot"].clone()));
                }
                _ => {}
            }
            match retry_wait(&answer, attempt, &retry) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(self.failure(answer)),
            }
            attempt += 1;
        }
    }
    /// `req` with the job's `traceparent`, when it has one.
    pub(super) fn traced(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.traceparent {
            Some(t) => req.header("traceparent", t.as_str()),
            None => req,
        }
    }

    /// One POST of `body` to the update endpoint.
    async fn post_once(&self, body: &str, retry: &RetryOptions) -> Answer {
        let sent = self
            .traced(self.http.post(&self.update_url))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("jobcast-worker-rust/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(retry.timeout)
            .body(body.to_string())
            .send()
            .await;
        Answer::of(sent).await
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
            job_id: self.job_id.clone(),
            snapshot,
        }
    }

    /// The error for an answer that is neither accepted nor worth a retry.
    fn failure(&self, answer: Answer) -> ReportError {
        match answer.status {
            None => ReportError::Unreachable {
                job_id: self.job_id.clone(),
                reason: answer.reason,
            },
            Some(status) => ReportError::Refused {
                job_id: self.job_id.clone(),
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

/// How long to wait before trying `answer`'s request again (`Retry-After`
/// when given, else backoff); `None` when it is not worth another try.
fn retry_wait(answer: &Answer, attempt: u32, retry: &RetryOptions) -> Option<std::time::Duration> {
    let retryable = answer.status.is_none_or(|s| RETRYABLE.contains(&s));
    if !retryable || attempt >= retry.retries {
        return None;
    }
    Some(match answer.retry_after {
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            std::time::Duration::from_secs_f64(secs).min(retry.max_backoff)
        }
        _ => jobcast_protocol::retry::backoff(attempt, retry.base_backoff, retry.max_backoff),
    })
}

impl Answer {
    async fn of(sent: Result<reqwest::Response, reqwest::Error>) -> Answer {
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
                reason: jobcast_protocol::causes(&e),
                body: Value::Null,
            },
        }
    }
}

/// What one request came back with.
struct Answer {
    /// None when no answer came (connection refused, timeout).
    status: Option<u16>,
    retry_after: Option<f64>,
    /// The status line's text, or why nothing came back.
    reason: String,
    body: Value,
}
