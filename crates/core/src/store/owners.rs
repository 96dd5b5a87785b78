//! What the stores keep per owner: listing an owner's jobs (`GET /jobs`:
//! the query, the page, the order both stores keep) and the connections
//! that follow them.

use super::JobRecord;
use crate::protocol::Status;

/// What `GET /jobs` asks of an owner's jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub status: Option<Status>,
    pub tag: Option<String>,
    /// At most this many jobs (1 to 100).
    pub limit: usize,
    /// Only jobs after this one in the order (the previous page's last
    /// [`owner_order_key`]).
    pub after: Option<String>,
}

/// One page of an owner's jobs, newest first.
#[derive(Clone, Debug, Default)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts, when there may be one.
    pub next: Option<String>,
}

/// An owner's jobs sort by this, newest first: the creation time (fixed
/// width, microseconds) then the job id, so the order is total.
pub fn owner_order_key(job: &JobRecord) -> String {
    format!(
        "{}#{}",
        job.created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        job.snapshot.job_id
    )
}

impl JobQuery {
    /// Whether `job` is one this query lists (the owner aside).
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.status.is_none_or(|s| job.snapshot.status == s)
            && self.tag.as_ref().is_none_or(|t| job.tags.contains(t))
    }
}

/// A connection following an owner's jobs, all of them or those with `tag`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Follower {
    pub connection_id: String,
    pub tag: Option<String>,
}

impl Follower {
    /// Whether this follower is to hear of `job`.
    pub fn wants(&self, job: &JobRecord) -> bool {
        self.tag.as_ref().is_none_or(|t| job.tags.contains(t))
    }
}
