//! Where the gateway keeps its state: each job's latest snapshot, which
//! connections follow which job, and idempotency keys. `MemoryStore` serves
//! `jobcast serve`; a DynamoDB store with the same semantics backs Lambda.

mod memory;

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
    /// Binds an idempotency key to a record unless it is bound already.
    async fn put_idempotency(
        &self,
        key: &str,
        record: IdempotencyRecord,
    ) -> Result<IdempotencyOutcome, StoreError>;
}

/// Applies `update` to `job` in place, enforcing the invariants every store
/// shares: nothing after terminal, seq + 1, percent never down and within 0..=100.
pub fn apply_update(
    job: &mut JobRecord,
    update: JobUpdate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let snap = &mut job.snapshot;
    if snap.status.is_terminal() {
        return Err(StoreError::Terminal {
            job_id: snap.job_id.clone(),
            status: snap.status,
        });
    }
    if update.status == Status::Queued {
        return Err(StoreError::InvalidUpdate(
            "a job cannot go back to queued".into(),
        ));
    }
    let mut percent = match update.percent {
        Some(p) if !p.is_finite() || !(0.0..=100.0).contains(&p) => {
            return Err(StoreError::InvalidUpdate(format!(
                "percent must be between 0 and 100, got {p}"
            )));
        }
        Some(p) if p < snap.percent => {
            return Err(StoreError::PercentBackwards {
                job_id: snap.job_id.clone(),
                current: snap.percent,
                requested: p,
            });
        }
        Some(p) => p,
        None => snap.percent,
    };
    if update.status == Status::Succeeded {
        percent = 100.0;
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
