//! In-process store on sharded maps: no global lock on the message path.

use super::streams::{self, AppendOptions, AppendOutcome, Appended, ChunkPage, StreamAppend};
use super::{
    Follower, IdempotencyOutcome, IdempotencyRecord, JobPage, JobQuery, JobRecord, JobUpdate,
    Lease, Store, StoreError, WebhookState, apply_update, owner_order_key,
};
use crate::clock::SharedClock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::collections::{BTreeMap, HashSet};

/// The `memory` store: state lives as long as the process, and jobs and
/// idempotency keys untouched for longer than the retention are swept, as
/// DynamoDB's TTL removes them.
pub struct MemoryStore {
    jobs: DashMap<String, JobRecord>,
    by_job: DashMap<String, HashSet<String>>,
    by_connection: DashMap<String, HashSet<String>>,
    idempotency: DashMap<String, (IdempotencyRecord, DateTime<Utc>)>,
    /// Owner → the connections following their jobs.
    followers: DashMap<String, HashSet<Follower>>,
    /// Connection → the owners it follows (with each follow's tag).
    following: DashMap<String, HashSet<(String, Follower)>>,
    /// Owner → their unfinished jobs created under a limit.
    active: DashMap<String, u32>,
    /// Connection → the gateway holding it.
    places: DashMap<String, String>,
    /// Job → its subscribed connections that asked for streams → those streams.
    wants: DashMap<String, std::collections::HashMap<String, HashSet<String>>>,
    /// (job, stream) → its chunks and their bytes.
    chunks: DashMap<(String, String), (Vec<serde_json::Value>, u64)>,
    clock: SharedClock,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore {
            jobs: DashMap::default(),
            by_job: DashMap::default(),
            by_connection: DashMap::default(),
            idempotency: DashMap::default(),
            followers: DashMap::default(),
            following: DashMap::default(),
            active: DashMap::default(),
            places: DashMap::default(),
            chunks: DashMap::default(),
            wants: DashMap::default(),
            clock: crate::clock::system(),
        }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The same store reading "now" (its sweeps, idempotency keys) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> MemoryStore {
        self.clock = clock;
        self
    }

    /// Removes jobs not updated since `now - retention` and idempotency keys
    /// older than that. Returns how many entries went.
    pub fn sweep(&self, now: DateTime<Utc>, retention: std::time::Duration) -> usize {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return 0;
        };
        let cutoff = now - retention;
        let before = self.jobs.len() + self.idempotency.len();
        let mut uncounted = Vec::new();
        let mut gone = Vec::new();
        self.jobs.retain(|id, j| {
            let keep = j.snapshot.updated_at >= cutoff;
            if !keep {
                gone.push((
                    id.clone(),
                    j.snapshot.streams.keys().cloned().collect::<Vec<_>>(),
                ));
            }
            if !keep && j.owner_limit.is_some() && !j.snapshot.status.is_terminal() {
                uncounted.extend(j.owner.clone());
            }
            keep
        });
        for owner in uncounted {
            self.active.alter(&owner, |_, n| n.saturating_sub(1));
        }
        self.idempotency.retain(|_, (_, at)| *at >= cutoff);
        // Only the swept jobs' streams go: no lock of one map is held
        // while the other is taken.
        for (job, streams) in gone {
            for stream in streams {
                self.chunks.remove(&(job.clone(), stream));
            }
            self.wants.remove(&job);
        }
        before - (self.jobs.len() + self.idempotency.len())
    }

    /// Sweeps every `every` on the current runtime, for as long as the store lives.
    pub fn spawn_sweeper(
        self: &std::sync::Arc<Self>,
        retention: std::time::Duration,
        every: std::time::Duration,
    ) {
        let weak = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                let n = store.sweep(store.clock.now(), retention);
                if n > 0 {
                    tracing::debug!(removed = n, "swept expired jobs and idempotency keys");
                }
            }
        });
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_job(&self, job: JobRecord) -> Result<(), StoreError> {
        let (Some(owner), Some(limit)) = (job.owner.clone(), job.owner_limit) else {
            return self.insert_new(job);
        };
        // The owner's count stays locked while the job goes in, so two
        // creations cannot both take the last place. (Never the other way
        // round: `update_job` releases the job before it counts down.)
        let mut active = self.active.entry(owner.clone()).or_insert(0);
        if *active >= limit {
            return Err(StoreError::OwnerLimit { owner, limit });
        }
        self.insert_new(job)?;
        *active += 1;
        Ok(())
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.jobs.get(job_id).map(|j| j.clone()))
    }

    async fn update_job(
        &self,
        job_id: &str,
        update: JobUpdate,
        now: DateTime<Utc>,
    ) -> Result<JobRecord, StoreError> {
        // The shard lock held by `get_mut` makes check-and-increment atomic.
        let mut job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| StoreError::NotFound(job_id.to_string()))?;
        apply_update(&mut job, update, now)?;
        let record = job.clone();
        drop(job);
        // `apply_update` refuses anything after a terminal status, so this
        // is the one update that ends the job.
        if let Some(owner) = record
            .counted_owner()
            .filter(|_| record.snapshot.status.is_terminal())
        {
            self.active.alter(owner, |_, n| n.saturating_sub(1));
        }
        Ok(record)
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        deadline: Option<i64>,
    ) -> Result<JobRecord, StoreError> {
        let mut job = self.live_job(job_id)?;
        job.deadline = deadline;
        job.worker_seen = true;
        Ok(job.clone())
    }

    async fn lost_jobs(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .jobs
            .iter()
            .filter(|j| j.deadline.is_some_and(|d| d <= now) && !j.snapshot.status.is_terminal())
            .take(limit)
            .map(|j| j.key().clone())
            .collect())
    }

    async fn hand_over(
        &self,
        job_id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<JobRecord, StoreError> {
        let mut job = self.live_job(job_id)?;
        if !job.lease_free_for(owner, now) {
            return Err(StoreError::Conflict {
                job_id: job_id.to_string(),
                reason: "another process holds its lease".into(),
            });
        }
        if job.dispatched {
            return Err(StoreError::Conflict {
                job_id: job_id.to_string(),
                reason: "its worker already has it".into(),
            });
        }
        job.lease = Some(Lease {
            owner: owner.to_string(),
            until,
        });
        job.attempt += 1;
        Ok(job.clone())
    }

    async fn mark_dispatched(&self, job_id: &str, start_by: Option<i64>) -> Result<(), StoreError> {
        let mut job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| StoreError::NotFound(job_id.to_string()))?;
        job.dispatched = true;
        job.lease = None;
        if !job.worker_seen && !job.snapshot.status.is_terminal() && start_by.is_some() {
            job.deadline = start_by;
        }
        Ok(())
    }

    async fn request_cancel(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let mut job = self.live_job(job_id)?;
        job.cancel_requested = true;
        Ok(job.clone())
    }

    async fn subscribe_streams(
        &self,
        job_id: &str,
        connection_id: &str,
        _connected_at: DateTime<Utc>,
        streams: &[String],
    ) -> Result<(), StoreError> {
        if !streams.is_empty() {
            self.wants
                .entry(job_id.to_string())
                .or_default()
                .entry(connection_id.to_string())
                .or_default()
                .extend(streams.iter().cloned());
        }
        self.by_job
            .entry(job_id.to_string())
            .or_default()
            .insert(connection_id.to_string());
        self.by_connection
            .entry(connection_id.to_string())
            .or_default()
            .insert(job_id.to_string());
        Ok(())
    }

    async fn stream_subscribers(
        &self,
        job_id: &str,
        stream: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .wants
            .get(job_id)
            .map(|conns| {
                conns
                    .iter()
                    .filter(|(_, streams)| streams.contains(stream))
                    .map(|(conn, _)| conn.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn unsubscribe(&self, job_id: &str, connection_id: &str) -> Result<bool, StoreError> {
        self.forget_wants(job_id, connection_id);
        let removed = remove_pair(&self.by_job, job_id, &connection_id.to_string());
        remove_pair(&self.by_connection, connection_id, &job_id.to_string());
        Ok(removed)
    }

    async fn subscribers(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .by_job
            .get(job_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn connection_jobs(&self, connection_id: &str) -> Result<Vec<String>, StoreError> {
        let mut jobs: Vec<String> = self
            .by_connection
            .get(connection_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        jobs.sort();
        Ok(jobs)
    }

    async fn place_connection(
        &self,
        connection_id: &str,
        gateway: &str,
        _connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.places
            .insert(connection_id.to_string(), gateway.to_string());
        Ok(())
    }

    async fn connection_place(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.places.get(connection_id).map(|p| p.clone()))
    }

    async fn append_chunks(
        &self,
        job_id: &str,
        appends: &[StreamAppend],
        now: DateTime<Utc>,
        options: AppendOptions,
    ) -> Result<AppendOutcome, StoreError> {
        // The job's entry stays locked for the whole append: appends to one
        // job are one after another.
        let mut job = self.live_job(job_id)?;
        let key = |stream: &str| (job_id.to_string(), stream.to_string());
        let bytes = appends
            .iter()
            .map(|a| {
                let b = self.chunks.get(&key(&a.stream)).map_or(0, |c| c.1);
                (a.stream.clone(), b)
            })
            .collect();
        let planned = streams::plan(job_id, &job.snapshot.streams, &bytes, appends)?;
        let mut appended = Vec::with_capacity(appends.len());
        for (a, (from, _)) in appends.iter().zip(planned) {
            let mut entry = self.chunks.entry(key(&a.stream)).or_default();
            entry.0.extend(a.chunks.iter().cloned());
            entry.1 += a.bytes;
            job.snapshot
                .streams
                .insert(a.stream.clone(), entry.0.len() as u64);
            if options.hold {
                streams::hold(&mut job.held, &a.stream, from);
            }
            appended.push(Appended {
                stream: a.stream.clone(),
                from,
                chunks: a.chunks.clone(),
            });
        }
        if let Some(deadline) = options.reported {
            job.deadline = deadline;
            job.worker_seen = true;
        }
        if options.track_recent {
            let updated_at = job.snapshot.updated_at;
            job.recent.shift(updated_at, now);
        }
        Ok(AppendOutcome {
            appended,
            lengths: job.snapshot.streams.clone(),
            job: job.clone(),
        })
    }

    async fn record_upload(&self, job_id: &str, name: &str) -> Result<(), StoreError> {
        let mut job = self.live_job(job_id)?;
        if !job.uploads.contains(name) {
            if job.uploads.len() >= crate::protocol::MAX_FILES {
                return Err(StoreError::TooManyFiles {
                    job_id: job_id.to_string(),
                    limit: crate::protocol::MAX_FILES,
                });
            }
            job.uploads.insert(name.to_string());
        }
        Ok(())
    }

    async fn release_held(
        &self,
        job_id: &str,
        pushed: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        if let Some(mut job) = self.jobs.get_mut(job_id) {
            job.held = streams::released(&job.held, &job.snapshot.streams, pushed);
        }
        Ok(())
    }

    async fn read_chunks(
        &self,
        job_id: &str,
        stream: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ChunkPage, StoreError> {
        if !self.jobs.contains_key(job_id) {
            return Err(StoreError::NotFound(job_id.to_string()));
        }
        let Some(entry) = self.chunks.get(&(job_id.to_string(), stream.to_string())) else {
            return Ok(ChunkPage {
                from,
                chunks: Vec::new(),
                next: from,
            });
        };
        let start = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(entry.0.len());
        let chunks = streams::take_page(&entry.0[start..], limit, max_bytes);
        Ok(ChunkPage {
            from,
            next: from + chunks.len() as u64,
            chunks,
        })
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<usize, StoreError> {
        self.places.remove(connection_id);
        let mut removed = 0;
        if let Some((_, jobs)) = self.by_connection.remove(connection_id) {
            for job in &jobs {
                self.forget_wants(job, connection_id);
                remove_pair(&self.by_job, job, &connection_id.to_string());
            }
            removed += jobs.len();
        }
        if let Some((_, follows)) = self.following.remove(connection_id) {
            for (owner, follower) in &follows {
                remove_pair(&self.followers, owner, follower);
            }
            removed += follows.len();
        }
        Ok(removed)
    }

    async fn follow_owner(
        &self,
        owner: &str,
        tag: Option<&str>,
        connection_id: &str,
        _connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let follower = Follower {
            connection_id: connection_id.to_string(),
            tag: tag.map(str::to_owned),
        };
        self.followers
            .entry(owner.to_string())
            .or_default()
            .insert(follower.clone());
        self.following
            .entry(connection_id.to_string())
            .or_default()
            .insert((owner.to_string(), follower));
        Ok(())
    }

    async fn owner_followers(&self, owner: &str) -> Result<Vec<Follower>, StoreError> {
        let mut all: Vec<Follower> = self
            .followers
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        all.sort();
        Ok(all)
    }

    async fn unfollow_owner(&self, owner: &str, follower: &Follower) -> Result<bool, StoreError> {
        let removed = remove_pair(&self.followers, owner, follower);
        remove_pair(
            &self.following,
            &follower.connection_id,
            &(owner.to_string(), follower.clone()),
        );
        Ok(removed)
    }

    async fn owner_jobs(&self, owner: &str, query: &JobQuery) -> Result<JobPage, StoreError> {
        let mut mine: Vec<(String, JobRecord)> = self
            .jobs
            .iter()
            .filter(|j| j.owner.as_deref() == Some(owner))
            .map(|j| (owner_order_key(&j), j.clone()))
            .filter(|(k, _)| query.after.as_ref().is_none_or(|a| k < a))
            .filter(|(_, j)| query.matches(j))
            .collect();
        mine.sort_by(|a, b| b.0.cmp(&a.0));
        let more = mine.len() > query.limit;
        mine.truncate(query.limit);
        Ok(JobPage {
            next: more.then(|| mine.last().map(|(k, _)| k.clone())).flatten(),
            jobs: mine.into_iter().map(|(_, j)| j).collect(),
        })
    }

    async fn unfinished_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        Ok(self
            .jobs
            .iter()
            .filter(|j| j.unfinished())
            .take(limit)
            .map(|j| j.clone())
            .collect())
    }

    async fn set_webhook(&self, job_id: &str, state: WebhookState) -> Result<(), StoreError> {
        let mut job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| StoreError::NotFound(job_id.to_string()))?;
        job.webhook = Some(state);
        Ok(())
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: IdempotencyRecord,
    ) -> Result<IdempotencyOutcome, StoreError> {
        match self.idempotency.entry(key.to_string()) {
            Entry::Occupied(e) => Ok(IdempotencyOutcome::Existing(e.get().0.clone())),
            Entry::Vacant(e) => {
                e.insert((record, self.clock.now()));
                Ok(IdempotencyOutcome::Recorded)
            }
        }
    }

    async fn release_idempotency(&self, key: &str, job_id: &str) -> Result<(), StoreError> {
        self.idempotency
            .remove_if(key, |_, (record, _)| record.job_id == job_id);
        Ok(())
    }
}

impl MemoryStore {
    fn insert_new(&self, job: JobRecord) -> Result<(), StoreError> {
        match self.jobs.entry(job.snapshot.job_id.clone()) {
            Entry::Occupied(e) => Err(StoreError::AlreadyExists(e.key().clone())),
            Entry::Vacant(e) => {
                e.insert(job);
                Ok(())
            }
        }
    }

    /// The job, locked for writing, unless it is unknown or terminal.
    /// Drops the streams a connection asked for on a job.
    fn forget_wants(&self, job_id: &str, connection_id: &str) {
        self.wants.remove_if_mut(job_id, |_, conns| {
            conns.remove(connection_id);
            conns.is_empty()
        });
    }

    fn live_job(
        &self,
        job_id: &str,
    ) -> Result<dashmap::mapref::one::RefMut<'_, String, JobRecord>, StoreError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| StoreError::NotFound(job_id.to_string()))?;
        if job.snapshot.status.is_terminal() {
            return Err(StoreError::Terminal {
                job_id: job_id.to_string(),
                status: job.snapshot.status,
            });
        }
        Ok(job)
    }
}

/// Removes `member` from the set at `key`, dropping the set when it empties.
fn remove_pair<T: Eq + std::hash::Hash>(
    map: &DashMap<String, HashSet<T>>,
    key: &str,
    member: &T,
) -> bool {
    let mut removed = false;
    map.remove_if_mut(key, |_, set| {
        removed = set.remove(member);
        set.is_empty()
    });
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sweep_removes_what_retention_has_passed() {
        let store = MemoryStore::new();
        let old = Utc::now() - chrono::Duration::hours(25);
        let job = |id: &str, at| JobRecord::queued(id, "demo", serde_json::Value::Null, None, at);
        store.create_job(job("old", old)).await.unwrap();
        store.create_job(job("new", Utc::now())).await.unwrap();
        assert_eq!(store.sweep(Utc::now(), Duration::from_secs(24 * 3600)), 1);
        assert!(store.get_job("old").await.unwrap().is_none());
        assert!(store.get_job("new").await.unwrap().is_some());
    }
}
