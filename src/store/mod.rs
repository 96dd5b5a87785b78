//! Where the gateway keeps its state: each job's latest snapshot, which
//! connections follow which job, and idempotency keys. `MemoryStore` serves
//! `jobcast serve`; a DynamoDB store with the same semantics backs Lambda.

mod dynamo;
mod memory;

pub use dynamo::{DynamoStore, TableStatus};
pub use memory::MemoryStore;

use crate::protocol::{JobError, Snapshot, Status};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Everything known about one job: its latest snapshot plus what created it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub snapshot: Snapshot,
    pub kind: String,
    pub input: Value,
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Set by `DELETE /jobs/{id}`; the worker ends the job `cancelled` when it sees it.
    pub cancel_requested: bool,
    /// Delivery state of the `callbackUrl` webhook, once there is one.
    pub webhook: Option<WebhookState>,
}

impl JobRecord {
    /// A new job as it is first stored: `queued`, seq 1, percent 0.
    pub fn queued(
        job_id: impl Into<String>,
        kind: impl Into<String>,
        input: Value,
        callback_url: Option<String>,
        now: DateTime<Utc>,
    ) -> JobRecord {
        JobRecord {
            snapshot: Snapshot {
                job_id: job_id.into(),
                seq: 1,
                status: Status::Queued,
                percent: 0.0,
                message: Some("queued".into()),
                result: None,
                error: None,
                updated_at: now,
            },
            kind: kind.into(),
            input,
            callback_url,
            created_at: now,
            cancel_requested: false,
            webhook: None,
        }
    }

    /// True while the job still owes work: it is not terminal, or it is
    /// terminal with a `callbackUrl` whose webhook has not been settled.
    pub fn unfinished(&self) -> bool {
        !self.snapshot.status.is_terminal() || self.webhook_owed()
    }

    /// Terminal, with a `callbackUrl`, and no delivery settled yet.
    pub fn webhook_owed(&self) -> bool {
        self.snapshot.status.is_terminal()
            && self.callback_url.is_some()
            && self
                .webhook
                .as_ref()
                .is_none_or(|w| w.status == WebhookStatus::Pending)
    }
}

/// Where delivery of a job's webhook stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// Attempts are under way (or waiting for a retry).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; nothing more will be tried.
    Failed,
}

/// Bookkeeping of a webhook delivery, shown by `GET /jobs/{id}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookState {
    pub status: WebhookStatus,
    pub attempts: u32,
    /// HTTP status of the last answer, if the receiver answered at all.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "crate::protocol::rfc3339_serde")]
    pub updated_at: DateTime<Utc>,
}

/// A change to a job. `seq` is always the stored one plus one; fields left
/// `None` keep their value.
#[derive(Clone, Debug, PartialEq)]
pub struct JobUpdate {
    pub status: Status,
    pub percent: Option<f64>,
    pub message: Option<String>,
    pub result: Option<Value>,
    pub error: Option<JobError>,
}

impl JobUpdate {
    /// An update that only changes the status.
    pub fn status(status: Status) -> JobUpdate {
        JobUpdate {
            status,
            percent: None,
            message: None,
            result: None,
            error: None,
        }
    }
}

/// What an idempotency key remembers: the request it was first used with and
/// the response that request got, to replay it.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub job_id: String,
    pub response: Value,
}

/// Errors every store reports the same way, so callers can map them to HTTP
/// statuses and CLI messages without knowing the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {0} already exists")]
    AlreadyExists(String),
    #[error("job {job_id} is already {status:?} and accepts no further update")]
    Terminal { job_id: String, status: Status },
    #[error("percent may not go down (job {job_id} is at {current}, update says {requested})")]
    PercentBackwards {
        job_id: String,
        current: f64,
        requested: f64,
    },
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Outcome of recording an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub enum IdempotencyOutcome {
    /// The key was new and is now bound to the given record.
    Recorded,
    /// The key was already used; here is what it was bound to.
    Existing(IdempotencyRecord),
}

/// The state seam. Every method is atomic on its own; `update_job` in
/// particular increments `seq` and refuses updates after a terminal status
/// without a read-modify-write race.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new job (its snapshot must be `queued`, seq 1).
    async fn create_job(&self, job: JobRecord) -> Result<(), StoreError>;
    /// The job's record, or `None` when unknown.
    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Applies an update: seq + 1, percent never down, nothing after terminal.
    async fn update_job(
        &self,
        job_id: &str,
        update: JobUpdate,
        now: DateTime<Utc>,
    ) -> Result<JobRecord, StoreError>;
    /// Marks a job for cancellation; fails with `Terminal` when it already ended.
    async fn request_cancel(&self, job_id: &str) -> Result<JobRecord, StoreError>;
    /// Records that `connection_id` follows `job_id` (idempotent).
    async fn subscribe(
        &self,
        job_id: &str,
        connection_id: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes one subscription; true when it existed.
    async fn unsubscribe(&self, job_id: &str, connection_id: &str) -> Result<bool, StoreError>;
    /// The connections following a job.
    async fn subscribers(&self, job_id: &str) -> Result<Vec<String>, StoreError>;
    /// The jobs a connection follows.
    async fn connection_jobs(&self, connection_id: &str) -> Result<Vec<String>, StoreError>;
    /// Removes every subscription of a connection; returns how many there were.
    async fn remove_connection(&self, connection_id: &str) -> Result<usize, StoreError>;
    /// Up to `limit` jobs that still owe work (see `JobRecord::unfinished`),
    /// so a restarted `serve` can take them up again. It reads the whole
    /// table: run once at start, never on a message path.
    async fn unfinished_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError>;
    /// Records the webhook delivery state of a job (no seq change).
    async fn set_webhook(&self, job_id: &str, state: WebhookState) -> Result<(), StoreError>;
    /// Binds an idempotency key to a record unless it is bound already.
    async fn put_idempotency(
        &self,
        key: &str,
        record: IdempotencyRecord,
    ) -> Result<IdempotencyOutcome, StoreError>;
}

/// Checks what an update can be judged on without the stored job.
pub fn validate_update(update: &JobUpdate) -> Result<(), StoreError> {
    if update.status == Status::Queued {
        return Err(StoreError::InvalidUpdate(
            "a job cannot go back to queued".into(),
        ));
    }
    if let Some(p) = update.percent
        && (!p.is_finite() || !(0.0..=100.0).contains(&p))
    {
        return Err(StoreError::InvalidUpdate(format!(
            "percent must be between 0 and 100, got {p}"
        )));
    }
    Ok(())
}

/// The percent an update leaves: `succeeded` is always 100.
pub fn effective_percent(update: &JobUpdate) -> Option<f64> {
    if update.status == Status::Succeeded {
        Some(100.0)
    } else {
        update.percent
    }
}

/// Applies `update` to `job` in place, enforcing the invariants every store
/// shares: nothing after terminal, seq + 1, percent never down and within 0..=100.
pub fn apply_update(
    job: &mut JobRecord,
    update: JobUpdate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    validate_update(&update)?;
    let snap = &mut job.snapshot;
    if snap.status.is_terminal() {
        return Err(StoreError::Terminal {
            job_id: snap.job_id.clone(),
            status: snap.status,
        });
    }
    let percent = effective_percent(&update).unwrap_or(snap.percent);
    if percent < snap.percent {
        return Err(StoreError::PercentBackwards {
            job_id: snap.job_id.clone(),
            current: snap.percent,
            requested: percent,
        });
    }
    snap.seq += 1;
    snap.status = update.status;
    snap.percent = percent;
    if update.message.is_some() {
        snap.message = update.message;
    }
    if update.result.is_some() {
        snap.result = update.result;
    }
    if update.error.is_some() {
        snap.error = update.error;
    }
    snap.updated_at = now;
    Ok(())
}
