//! The errors every store reports.

use crate::protocol::Status;

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
    /// A conditional write lost to another writer (a lease held elsewhere,
    /// a deadline refreshed meanwhile); nothing was changed.
    #[error("job {job_id}: {reason}")]
    Conflict { job_id: String, reason: String },
    /// A stored item that cannot be read back as a job (hand-edited or
    /// written by an incompatible version); retrying will not help.
    #[error("job item is corrupt: {0}")]
    Corrupt(String),
    /// A value too large for what the store can hold.
    #[error("{what} is {size} bytes; the most a job can hold is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// An append would take a stream past one of its limits (chunks or
    /// bytes); nothing was appended.
    #[error("stream '{stream}' of job {job_id} would pass its limit of {limit}")]
    StreamFull {
        job_id: String,
        stream: String,
        limit: u64,
    },
    /// An append would give a job more streams than it may have; nothing
    /// was appended.
    #[error("job {job_id} may have at most {limit} streams")]
    TooManyStreams { job_id: String, limit: usize },
    /// An upload of a new name was asked for a job that has its
    /// [`crate::protocol::MAX_FILES`] names.
    #[error("job {job_id} may upload at most {limit} distinct files")]
    TooManyFiles { job_id: String, limit: usize },
    /// An update attaches a file that was not uploaded.
    #[error("job {job_id}: file '{name}' cannot be attached: {why}")]
    FileMissing {
        job_id: String,
        name: String,
        why: String,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A request the store could not even build (a bug, not bad input):
    /// neither the caller's fault nor worth a retry.
    #[error("could not build a store request: {0}")]
    Request(String),
    /// The store refused the request for its rate (DynamoDB throttling).
    #[error("store throttled: {0}")]
    Throttled(String),
    /// The owner already has as many unfinished jobs as the limit the job
    /// was created under allows.
    #[error("{owner} already has {limit} unfinished jobs, the most allowed")]
    OwnerLimit { owner: String, limit: u32 },
}
