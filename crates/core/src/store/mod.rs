//! Where the gateway keeps its state: each job's latest snapshot, which
//! connections follow which job, and idempotency keys. `MemoryStore` serves
//! `jobcast serve`; a DynamoDB store with the same semantics backs Lambda.

mod dynamo;
mod error;
mod memory;
mod owners;
pub mod streams;

pub use dynamo::{DynamoStore, TableStatus};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use owners::{Follower, JobPage, JobQuery, owner_order_key};

use crate::protocol::{JobError, ServerMessage, Snapshot, Status, rfc3339};
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
    /// How many times the job was handed to a worker (1 for the first hand-over).
    pub attempt: u32,
    /// The process responsible for handing the job over or running it, until when.
    pub lease: Option<Lease>,
    /// A worker target confirmed it has the job (so nobody hands it over again).
    pub dispatched: bool,
    /// Liveness deadline (epoch seconds) of a job whose worker reports through
    /// the update endpoint: past it without an update or heartbeat, the job
    /// ends `failed` `worker_lost`. Absent once terminal.
    pub deadline: Option<i64>,
    /// A worker has reported on the job (an update or a heartbeat through
    /// the update endpoint). Until then a deadline is the start deadline
    /// set at hand-over, and missing it ends the job `not_started`.
    pub worker_seen: bool,
    /// Who created the job (the `sub` of their token) when owners are on.
    pub owner: Option<String>,
    /// The owner's labels for the job (at most [`MAX_TAGS`]).
    pub tags: Vec<String>,
    /// The per-owner limit the job was created under: it counts against
    /// its owner's unfinished jobs until it ends.
    pub owner_limit: Option<u32>,
    /// When the latest reports were stored, as far as updates and appends
    /// asked to keep it ([`JobUpdate::track_recent`]).
    pub recent: Recent,
    /// Chunks coalescing holds: per stream, the first index not pushed
    /// yet (see [`crate::publish::coalesce`]); empty when none is held.
    pub held: std::collections::BTreeMap<String, u64>,
    /// The files updates attached, by name (CONTRACT section 11).
    pub files: Vec<crate::protocol::JobFile>,
    /// The distinct names the job's worker asked to upload.
    pub uploads: std::collections::BTreeSet<String>,
}

/// When a job's latest report (an update or an append) and the two before
/// it were stored: whether the latest opened a coalescing window or came
/// inside one (see [`crate::publish::coalesce`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recent {
    /// The latest one; `None` for jobs whose reports kept no times (then
    /// the snapshot's `updatedAt` stands for it).
    pub latest: Option<DateTime<Utc>>,
    /// The one before the latest.
    pub previous: Option<DateTime<Utc>>,
    /// The one before that.
    pub before_previous: Option<DateTime<Utc>>,
}

impl Recent {
    /// A report stored at `now`; `updated_at` is the snapshot's time
    /// before it (the latest report's when none was kept).
    pub fn shift(&mut self, updated_at: DateTime<Utc>, now: DateTime<Utc>) {
        *self = Recent {
            latest: Some(now),
            previous: self.latest.or(Some(updated_at)),
            before_previous: self.previous,
        };
    }
}

pub use crate::protocol::{MAX_TAG_CHARS, MAX_TAGS};

/// How long a process holds a job it is handing over before another
/// process may take the hand-over up (after a crash, say).
pub const HANDOVER_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// A time-bounded claim of one process on one job, taken with a conditional
/// write so two processes over one table never both hand over, resume or
/// run the same job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    /// Epoch seconds; after it, another process may take the job over.
    pub until: i64,
}

impl JobRecord {
    /// The job as `GET /jobs/{id}` shows it (the progress message plus
    /// `createdAt`), without delivery bookkeeping: also the webhook body.
    pub fn public_view(&self) -> Value {
        let mut v = serde_json::to_value(ServerMessage::Progress(&self.snapshot))
            .unwrap_or_else(|_| Value::Object(Default::default()));
        if let Value::Object(o) = &mut v {
            o.insert("createdAt".into(), Value::String(rfc3339(self.created_at)));
            if let Some(owner) = &self.owner {
                o.insert("owner".into(), Value::String(owner.clone()));
                o.insert("tags".into(), serde_json::json!(self.tags));
            }
        }
        v
    }

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
                streams: Default::default(),
                files: Vec::new(),
            },
            kind: kind.into(),
            input,
            callback_url,
            created_at: now,
            cancel_requested: false,
            webhook: None,
            attempt: 1,
            lease: None,
            dispatched: false,
            deadline: None,
            worker_seen: false,
            owner: None,
            tags: Vec::new(),
            owner_limit: None,
            recent: Recent::default(),
            held: Default::default(),
            files: Vec::new(),
            uploads: Default::default(),
        }
    }

    /// The same record, owned by `owner` with `tags`.
    pub fn owned_by(mut self, owner: impl Into<String>, tags: Vec<String>) -> JobRecord {
        self.owner = Some(owner.into());
        self.tags = tags;
        self
    }

    /// The same record, counted against its owner's limit of `limit`
    /// unfinished jobs: creating it fails with `OwnerLimit` when the owner
    /// has that many already.
    pub fn within_owner_limit(mut self, limit: u32) -> JobRecord {
        self.owner_limit = Some(limit);
        self
    }

    /// The owner whose limit this job counts against, if any.
    pub fn counted_owner(&self) -> Option<&str> {
        self.owner.as_deref().filter(|_| self.owner_limit.is_some())
    }

    /// The same record, leased to `owner` until `until` (epoch seconds).
    pub fn leased_to(mut self, owner: impl Into<String>, until: i64) -> JobRecord {
        self.lease = Some(Lease {
            owner: owner.into(),
            until,
        });
        self
    }

    /// True when `owner` may take the job: nobody holds it, the holder's
    /// lease has run out, or `owner` holds it already.
    pub fn lease_free_for(&self, owner: &str, now: i64) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|l| l.owner == owner || l.until <= now)
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

/// A change to a job. `seq` is always the stored one plus one; a `percent`
/// left `None` keeps its value, a `message` left `None` is cleared (each
/// snapshot says what is happening now), `result` and `error` are kept.
#[derive(Clone, Debug, PartialEq)]
pub struct JobUpdate {
    pub status: Status,
    pub percent: Option<f64>,
    pub message: Option<String>,
    pub result: Option<Value>,
    pub error: Option<JobError>,
    /// What the update does to the job's liveness deadline.
    pub liveness: Liveness,
    /// Keep when this update and the one before it came ([`Recent`]); a
    /// publisher that coalesces asks for it on every update.
    pub track_recent: bool,
    /// Files this update attaches (each replacing an attached one of the
    /// same name), as storage holds them.
    pub files: Vec<crate::protocol::JobFile>,
}

/// How an update treats the liveness deadline. A terminal update always
/// removes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// Leave it as it is (the built-in demo worker, the CLI).
    #[default]
    Keep,
    /// Set it to these epoch seconds (a worker reported).
    Refresh(i64),
    /// A worker reported while liveness is off: no deadline any more (a
    /// start deadline is met).
    Reported,
    /// Apply the update only if the deadline has passed by these epoch
    /// seconds (the liveness sweep ending a lost job), else `Conflict`.
    ExpiredBy(i64),
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
            liveness: Liveness::Keep,
            track_recent: false,
            files: Vec::new(),
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
    /// One page of `owner`'s jobs that match `query`, newest first (from an
    /// index in DynamoDB, never a Scan).
    async fn owner_jobs(&self, owner: &str, query: &JobQuery) -> Result<JobPage, StoreError>;
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
    ) -> Result<(), StoreError> {
        self.subscribe_streams(job_id, connection_id, connected_at, &[])
            .await
    }
    /// Records that `connection_id` follows `job_id` and wants the chunks
    /// of `streams` too, besides any it asked for before (idempotent).
    async fn subscribe_streams(
        &self,
        job_id: &str,
        connection_id: &str,
        connected_at: DateTime<Utc>,
        streams: &[String],
    ) -> Result<(), StoreError>;
    /// The connections following a job that asked for the chunks of `stream`.
    async fn stream_subscribers(
        &self,
        job_id: &str,
        stream: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Removes one subscription; true when it existed.
    async fn unsubscribe(&self, job_id: &str, connection_id: &str) -> Result<bool, StoreError>;
    /// The connections following a job.
    async fn subscribers(&self, job_id: &str) -> Result<Vec<String>, StoreError>;
    /// The jobs a connection follows.
    async fn connection_jobs(&self, connection_id: &str) -> Result<Vec<String>, StoreError>;
    /// Removes every subscription and owner follow of a connection, and
    /// where it is held; returns how many subscriptions and follows there
    /// were.
    async fn remove_connection(&self, connection_id: &str) -> Result<usize, StoreError>;
    /// Records which gateway holds a connection: the `@connections` base
    /// URL of the `serve` process its socket is open on, so another
    /// process over the same table posts to it there. Written before any
    /// subscription of the connection; removed with them.
    async fn place_connection(
        &self,
        connection_id: &str,
        gateway: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The gateway that holds `connection_id`, if one recorded it.
    async fn connection_place(&self, connection_id: &str) -> Result<Option<String>, StoreError>;
    /// Appends chunks to the job's streams, all or none: each stream's
    /// chunks take the next indices in order, two appends never share an
    /// index and leave no gap. Refused as a whole, nothing written, for an
    /// unknown job (`NotFound`), an ended one (`Terminal`), too many streams
    /// (`TooManyStreams`) or a stream past its limits (`StreamFull`).
    /// `options` say what else the same write records (the worker's
    /// report, held chunks, the time).
    async fn append_chunks(
        &self,
        job_id: &str,
        appends: &[streams::StreamAppend],
        now: DateTime<Utc>,
        options: streams::AppendOptions,
    ) -> Result<streams::AppendOutcome, StoreError>;
    /// Records that the job's worker asked to upload `name`: at most
    /// [`crate::protocol::MAX_FILES`] distinct names a job (`TooManyFiles`;
    /// a name asked for again is no new one); `NotFound`, `Terminal`.
    async fn record_upload(&self, job_id: &str, name: &str) -> Result<(), StoreError>;
    /// Records that each stream's chunks below `pushed[stream]` were pushed:
    /// held marks at or past them are left for a later push, and a mark
    /// that has nothing left to hold is dropped ([`streams::released`]).
    /// Nothing for an unknown job.
    async fn release_held(
        &self,
        job_id: &str,
        pushed: &std::collections::BTreeMap<String, u64>,
    ) -> Result<(), StoreError>;
    /// Up to `limit` chunks of `stream` from index `from`, stopping before
    /// `max_bytes` (at least one chunk when there is one); an empty page
    /// for a stream the job does not have (yet). `NotFound` for an unknown
    /// job.
    async fn read_chunks(
        &self,
        job_id: &str,
        stream: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<streams::ChunkPage, StoreError>;
    /// Records that `connection_id` follows every job of `owner`, or with
    /// `tag` only those carrying it (idempotent).
    async fn follow_owner(
        &self,
        owner: &str,
        tag: Option<&str>,
        connection_id: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The connections following `owner`'s jobs.
    async fn owner_followers(&self, owner: &str) -> Result<Vec<Follower>, StoreError>;
    /// Removes one follow; true when it existed.
    async fn unfollow_owner(&self, owner: &str, follower: &Follower) -> Result<bool, StoreError>;
    /// A worker's heartbeat, without a new seq: the job's liveness
    /// deadline moves to `deadline` (None: liveness is off, and no deadline
    /// is left), and the worker counts as seen; fails with `Terminal` once
    /// the job has ended.
    async fn heartbeat(&self, job_id: &str, deadline: Option<i64>)
    -> Result<JobRecord, StoreError>;
    /// Up to `limit` ids of unfinished jobs whose liveness deadline is at or
    /// before `now` (epoch seconds), from an index of deadlines (never a Scan).
    async fn lost_jobs(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Takes the job's lease for `owner` until `until` and counts one more
    /// hand-over (`attempt` + 1), if the job is not terminal, not yet with
    /// its worker (`dispatched`), and its lease is free for `owner` at
    /// `now`; `Conflict` when another process holds it or a worker has it.
    async fn hand_over(
        &self,
        job_id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<JobRecord, StoreError>;
    /// Records that a worker target has the job; the lease is released.
    /// With `start_by` (epoch seconds), a job no worker has reported on yet
    /// gets it as its deadline: the start deadline, swept like a liveness
    /// one (`not_started`). A worker that reported first keeps its own.
    async fn mark_dispatched(&self, job_id: &str, start_by: Option<i64>) -> Result<(), StoreError>;
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
    /// Unbinds an idempotency key if it is still bound to `job_id` (a job
    /// that was never stored or enqueued), so a retry with the key is a
    /// fresh attempt. Does nothing if it is bound to another job.
    async fn release_idempotency(&self, key: &str, job_id: &str) -> Result<(), StoreError>;
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
    if update.files.len() > crate::protocol::MAX_FILES {
        return Err(StoreError::InvalidUpdate(format!(
            "an update attaches at most {} files",
            crate::protocol::MAX_FILES
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
    if job.snapshot.status.is_terminal() {
        return Err(StoreError::Terminal {
            job_id: job.snapshot.job_id.clone(),
            status: job.snapshot.status,
        });
    }
    if let Liveness::ExpiredBy(by) = update.liveness
        && job.deadline.is_none_or(|d| d > by)
    {
        return Err(StoreError::Conflict {
            job_id: job.snapshot.job_id.clone(),
            reason: "its worker reported in time".into(),
        });
    }
    let snap = &mut job.snapshot;
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
    snap.message = update.message;
    if update.result.is_some() {
        snap.result = update.result;
    }
    if update.error.is_some() {
        snap.error = update.error;
    }
    attach(&mut job.files, update.files);
    if update.track_recent {
        job.recent.shift(snap.updated_at, now);
    }
    let snap = &mut job.snapshot;
    snap.updated_at = now;
    if job.snapshot.status.is_terminal() {
        job.deadline = None;
        job.lease = None;
    } else if let Liveness::Refresh(d) = update.liveness {
        job.deadline = Some(d);
        job.worker_seen = true;
    } else if update.liveness == Liveness::Reported {
        job.deadline = None;
        job.worker_seen = true;
    }
    Ok(())
}

/// Adds `new` files to `attached`: one of a name already there replaces
/// it; the list stays in name order.
pub fn attach(attached: &mut Vec<crate::protocol::JobFile>, new: Vec<crate::protocol::JobFile>) {
    for f in new {
        match attached.binary_search_by(|a| a.name.cmp(&f.name)) {
            Ok(i) => attached[i] = f,
            Err(i) => attached.insert(i, f),
        }
    }
}

/// Most bytes a job's `input` may take as JSON, on every store: with the
/// largest update (128 KiB) it stays inside DynamoDB's 400 KB item.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
