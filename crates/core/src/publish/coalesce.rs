//! Coalescing (off by default): while a job's reports keep coming, each
//! window of time pushes only its newest snapshot, when it ends, together
//! with every chunk appended meanwhile; a report after a quiet window is
//! pushed at once. The snapshots in between are stored but never sent; the
//! chunks are never dropped: the store marks, per stream, the first index
//! not pushed yet, and the window's push sends everything from there. Every accepted update still takes its own seq and is what
//! `GET /jobs/{id}`, `subscribe` and `sync` answer, so a subscriber sees
//! seq grow by more than one between two messages and nothing else
//! changes: each message is a whole snapshot, terminal ones are never
//! held, and no subscriber waits longer than one window for the newest
//! state. What it saves is messages, which API Gateway bills one per
//! subscriber per push.
//!
//! Windows are fixed slices of wall-clock time (`updatedAt` divided by the
//! window), so hosts that share a table agree on them without talking.
//! The store tells each update when the two before it came
//! ([`crate::store::Recent`]); from that alone an update knows whether it
//! follows a quiet window (pushed), is its window's first held one (it
//! arranges the push at the window's end through a [`Flusher`]) or a later
//! held one.

use super::{PublishReport, Publisher};
use crate::store::{JobRecord, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Longest window accepted: a subscriber may see a state this late.
pub const MAX_WINDOW: Duration = Duration::from_secs(10);

/// How long after its window's end a flush reads the job: an update whose
/// write completed before the end is visible to it. One whose write
/// completed after the end pushes itself (see [`Publisher::hold`]).
const FLUSH_GRACE_MS: i64 = 20;

/// A window with held updates, whose newest is pushed when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub job_id: String,
    /// Which window: `updatedAt` in epoch milliseconds divided by `window_ms`.
    pub window: i64,
    pub window_ms: i64,
}

impl Held {
    /// When the window ends, in epoch milliseconds.
    pub fn due_ms(&self) -> i64 {
        (self.window + 1).saturating_mul(self.window_ms)
    }

    /// Whether `job`'s latest update was stored in this window.
    fn holds_latest_of(&self, job: &JobRecord) -> bool {
        window_of(job.snapshot.updated_at, self.window_ms) == self.window
    }
}

/// What one stored update does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Push it now.
    Push,
    /// Do not push it: `window`'s newest is pushed when it ends. `first`:
    /// this update is the window's first held one, which arranges that.
    Hold { window: Held, first: bool },
}

fn window_of(t: DateTime<Utc>, window_ms: i64) -> i64 {
    t.timestamp_millis().div_euclid(window_ms)
}

/// Decides for a job just updated, under a window of `window` (zero: off).
pub fn decide(window: Duration, job: &JobRecord) -> Decision {
    let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
    if window_ms == 0 || job.snapshot.status.is_terminal() {
        return Decision::Push;
    }
    let current = window_of(
        job.recent.latest.unwrap_or(job.snapshot.updated_at),
        window_ms,
    );
    // An update after a whole window without one (or the job's first) is
    // news: pushed at once. One that continues a stream waits for its
    // window's end with the others.
    let quiet_before =
        |t: Option<DateTime<Utc>>, w: i64| t.is_none_or(|t| window_of(t, window_ms) < w - 1);
    if quiet_before(job.recent.previous, current) {
        return Decision::Push;
    }
    // The window's first held update arranges its push: the previous update
    // was of an earlier window, or was of this one and pushed at once.
    let previous_in_current = job
        .recent
        .previous
        .is_some_and(|t| window_of(t, window_ms) == current);
    let first = !previous_in_current || quiet_before(job.recent.before_previous, current);
    let window = Held {
        job_id: job.snapshot.job_id.clone(),
        window: current,
        window_ms,
    };
    Decision::Hold { window, first }
}

/// Runs [`Publisher::flush_held`] when a window ends: a task of this
/// process (`serve`), or another function invoked now that waits for it
/// (Lambda, where nothing may outlive the invocation that holds).
#[async_trait]
pub trait Flusher: Send + Sync {
    async fn schedule(&self, publisher: &Publisher, held: Held) -> Result<(), String>;
}

/// Flushes on a task of this process.
pub struct InProcess;

#[async_trait]
impl Flusher for InProcess {
    async fn schedule(&self, publisher: &Publisher, held: Held) -> Result<(), String> {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.flush_held(&held).await {
                tracing::warn!(job_id = %held.job_id, error = %e, "could not push the newest held update");
            }
        });
        Ok(())
    }
}

impl Publisher {
    /// The same publisher, coalescing each job's updates into windows of
    /// `window` (zero: every update pushed) and pushing held ones through
    /// `flusher`.
    pub fn with_coalescing(mut self, window: Duration, flusher: Arc<dyn Flusher>) -> Publisher {
        self.coalesce = window.min(MAX_WINDOW);
        self.flusher = (!window.is_zero()).then_some(flusher);
        self
    }

    /// Whether updates are coalesced.
    pub fn coalescing(&self) -> bool {
        self.flusher.is_some()
    }

    /// Holds `job`'s update instead of pushing it, when coalescing says so,
    /// its window has not ended yet and the window's push could be
    /// arranged; `None`: push it now.
    pub(super) async fn hold(&self, job: &JobRecord) -> Option<PublishReport> {
        let flusher = self.flusher.as_ref()?;
        let Decision::Hold { window, first } = decide(self.coalesce, job) else {
            return None;
        };
        // Written after its window ended: the flush may have read the job
        // before this write landed, so push it now.
        if self.clock().now().timestamp_millis() >= window.due_ms() {
            return None;
        }
        if first && let Err(e) = flusher.schedule(self, window).await {
            // Better a message too many than a state nobody is shown.
            tracing::warn!(job_id = %job.snapshot.job_id, error = %e, "could not arrange the coalesced push; pushing now");
            return None;
        }
        self.metrics
            .publish_held_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(PublishReport {
            held: true,
            ..PublishReport::default()
        })
    }

    /// Waits for `held`'s window to end (and a grace for writes landing
    /// just then), then pushes in one delivery the chunks held so far and
    /// the job's snapshot if it is still the newest of that window (no
    /// later update pushed it or holds it). Nothing once the job ended (its
    /// terminal update pushed everything). `None`: nothing to push.
    pub async fn flush_held(&self, held: &Held) -> Result<Option<PublishReport>, StoreError> {
        let wait = held.due_ms() + FLUSH_GRACE_MS - self.clock().now().timestamp_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let Some(job) = self.store.get_job(&held.job_id).await? else {
            return Ok(None);
        };
        let snapshot = held.holds_latest_of(&job);
        if job.snapshot.status.is_terminal() || (!snapshot && job.held.is_empty()) {
            return Ok(None);
        }
        let report = self.push(&job, &[], snapshot).await?;
        self.metrics
            .publish_flushed_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use crate::store::Recent;
    use serde_json::json;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_default()
    }

    fn job(now: i64, previous: Option<i64>, before: Option<i64>) -> JobRecord {
        let mut j = JobRecord::queued("j", "export", json!({}), None, at(0));
        j.snapshot.status = Status::Running;
        j.snapshot.updated_at = at(now);
        j.recent = Recent {
            latest: None,
            previous: previous.map(at),
            before_previous: before.map(at),
        };
        j
    }

    const W: Duration = Duration::from_millis(500);

    fn held(window: i64, first: bool) -> Decision {
        Decision::Hold {
            window: Held {
                job_id: "j".into(),
                window: at(0).timestamp_millis().div_euclid(500) + window,
                window_ms: 500,
            },
            first,
        }
    }

    #[test]
    fn an_update_after_a_quiet_window_is_pushed_at_once() {
        assert_eq!(decide(W, &job(1010, Some(420), Some(300))), Decision::Push);
        assert_eq!(decide(W, &job(510, None, None)), Decision::Push);
    }

    #[test]
    fn a_stream_is_pushed_once_a_window_by_its_first_held_update() {
        // The first of window 1 after updates in window 0: held, and it
        // arranges window 1's push.
        assert_eq!(decide(W, &job(620, Some(480), Some(300))), held(1, true));
        // The next ones of window 1 rely on it.
        assert_eq!(decide(W, &job(700, Some(620), Some(480))), held(1, false));
        assert_eq!(decide(W, &job(990, Some(700), Some(620))), held(1, false));
        // After a quiet window the first is pushed, so the second arranges.
        assert_eq!(decide(W, &job(1600, Some(1510), Some(300))), held(3, true));
    }

    #[test]
    fn an_append_is_timed_by_the_latest_report_not_the_snapshot() {
        // The snapshot is old (updated at 0), the reports keep coming: an
        // append at 620 after reports at 480 and 300 is held like an update.
        let mut j = job(0, Some(480), Some(300));
        j.recent.latest = Some(at(620));
        assert_eq!(decide(W, &j), held(1, true));
    }

    #[test]
    fn terminal_updates_and_a_zero_window_always_push() {
        let mut done = job(700, Some(620), Some(510));
        done.snapshot.status = Status::Succeeded;
        assert_eq!(decide(W, &done), Decision::Push);
        assert_eq!(
            decide(Duration::ZERO, &job(700, Some(620), Some(510))),
            Decision::Push
        );
    }

    #[test]
    fn a_window_ends_where_the_next_begins() {
        let held = Held {
            job_id: "j".into(),
            window: 4,
            window_ms: 250,
        };
        assert_eq!(held.due_ms(), 1250);
        let body = serde_json::to_value(&held).unwrap_or_default();
        assert_eq!(body, json!({"jobId": "j", "window": 4, "windowMs": 250}));
    }
}
