//! Publishing progress: store the new snapshot, then push it to every
//! subscriber of the job. The one code path used by the demo worker, the
//! CLI and worker Lambdas.

use crate::metrics::Metrics;
use crate::protocol::{ServerMessage, Snapshot};
use crate::push::{Payload, PushError, Pusher};
use crate::retry::backoff;
use crate::store::{JobRecord, JobUpdate, Store, StoreError};
use crate::webhook::Webhooks;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod chunks;
pub mod coalesce;
pub mod invoke;
pub mod pace;

pub use chunks::chunk_payloads;
pub use coalesce::{Flusher, Held, InProcess};
pub use invoke::InvokeFlush;
pub use pace::Pace;

/// How a fan-out behaves.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Posts in flight at once, at least (fewer only after 429s).
    pub concurrency: usize,
    /// Posts in flight at most, when the observed round trip calls for more
    /// than `concurrency` to finish within `fan_out_target`. Equal to
    /// `concurrency`: a fixed number.
    pub max_concurrency: usize,
    /// The time a fan-out aims to finish within (or half a Lambda's time
    /// left, when less).
    pub fan_out_target: Duration,
    /// Attempts per connection for retryable errors (429, 5xx), first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, full jitter, capped by `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Coalescing window ([`coalesce`]); zero pushes every update.
    pub coalesce: Duration,
}

impl Default for PublishOptions {
    fn default() -> PublishOptions {
        PublishOptions {
            concurrency: 64,
            max_concurrency: 256,
            fan_out_target: Duration::from_millis(100),
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            coalesce: Duration::ZERO,
        }
    }
}

/// What happened to one fan-out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishReport {
    /// Connections that received the message.
    pub delivered: usize,
    /// Connections that were gone (their subscription was deleted).
    pub gone: usize,
    /// Retries performed after 429 / 5xx.
    pub retried: usize,
    /// Connections that could not be reached, with the last error.
    pub failed: Vec<(String, PushError)>,
    /// The update was stored but not pushed: a newer one of its coalescing
    /// window is pushed when the window ends.
    pub held: bool,
}

/// Stores snapshots and fans them out.
#[derive(Clone)]
pub struct Publisher {
    store: Arc<dyn Store>,
    pusher: Arc<dyn Pusher>,
    metrics: Arc<Metrics>,
    options: PublishOptions,
    pace: Arc<Pace>,
    webhooks: Option<Arc<Webhooks>>,
    /// Set when updates are coalesced.
    flusher: Option<Arc<dyn Flusher>>,
}

/// Serializes a snapshot once into a payload shared by all its recipients.
pub fn snapshot_payload(snapshot: &Snapshot) -> Payload {
    Payload::text(ServerMessage::Progress(snapshot).to_json())
}

enum Outcome {
    Delivered { retries: usize },
    Gone { retries: usize },
    Failed { retries: usize, error: PushError },
}

/// Posts answered at once between two yields of a fan-out (about a
/// millisecond of work).
const YIELD_EVERY: usize = 4096;

/// One connection's outcome, and whether any attempt was answered 429.
struct Posted {
    conn: String,
    outcome: Outcome,
    throttled: bool,
}

impl Posted {
    /// A post answered on the first attempt, without a 429.
    fn at_once(conn: String, outcome: Outcome) -> Posted {
        Posted {
            conn,
            outcome,
            throttled: false,
        }
    }
}

impl Publisher {
    pub fn new(
        store: Arc<dyn Store>,
        pusher: Arc<dyn Pusher>,
        metrics: Arc<Metrics>,
        options: PublishOptions,
    ) -> Publisher {
        let pace = Arc::new(Pace::new(options.max_concurrency.max(options.concurrency)));
        Publisher {
            store,
            pusher,
            metrics,
            options,
            pace,
            webhooks: None,
            flusher: None,
        }
    }

    /// The same publisher, learning its pace in `pace` (shared by every
    /// publisher of one host, so what one fan-out learned serves the next).
    pub fn with_pace(mut self, pace: Arc<Pace>) -> Publisher {
        self.pace = pace;
        self
    }

    pub fn pace(&self) -> &Arc<Pace> {
        &self.pace
    }

    /// Hands each terminal snapshot of a job with a `callbackUrl` to
    /// `webhooks`, which delivers it in the background or before `publish`
    /// returns, as it was built to.
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Publisher {
        self.webhooks = Some(webhooks);
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn webhooks(&self) -> Option<&Arc<Webhooks>> {
        self.webhooks.as_ref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn pusher(&self) -> &Arc<dyn Pusher> {
        &self.pusher
    }

    /// Applies `update` to the job and pushes the resulting snapshot to its subscribers.
    pub async fn publish(
        &self,
        job_id: &str,
        mut update: JobUpdate,
    ) -> Result<(JobRecord, PublishReport), StoreError> {
        update.track_recent = self.coalescing();
        let job = self
            .store
            .update_job(job_id, update, chrono::Utc::now())
            .await?;
        let status = job.snapshot.status;
        // Every accepted update is seq + 1 from `queued` at 1, so seq 2 is the
        // one update that leaves `queued`; a terminal status is reached once.
        if status.is_terminal()
            || (status == crate::protocol::Status::Running && job.snapshot.seq == 2)
        {
            self.metrics.job_entered(status);
        }
        if status.is_terminal() {
            match &job.snapshot.error {
                Some(e) => tracing::info!(
                    job_id,
                    kind = %job.kind,
                    status = status.as_str(),
                    code = %e.code,
                    "job ended: {}",
                    e.message
                ),
                None => tracing::info!(
                    job_id,
                    kind = %job.kind,
                    status = status.as_str(),
                    "job ended"
                ),
            }
        }
        if let Some(held) = self.hold(&job).await {
            return Ok((job, held));
        }
        let webhook = match &self.webhooks {
            Some(w) if status.is_terminal() && job.callback_url.is_some() => Some(w),
            _ => None,
        };
        let subscribers = self.store.subscribers(job_id).await?;
        let report = self
            .fan_out(job_id, subscribers, snapshot_payload(&job.snapshot))
            .await;
        if let Some(w) = webhook {
            w.settle(&job).await;
        }
        Ok((job, report))
    }

    /// Posts one payload to many connections, as many in flight as the
    /// pace plans (see [`pace`]), halving them when a 429 comes back.
    pub async fn fan_out(
        &self,
        job_id: &str,
        connections: Vec<String>,
        payload: Payload,
    ) -> PublishReport {
        let started = Instant::now();
        let target = pace::budget(self.options.fan_out_target, started);
        let mut limit = self
            .pace
            .plan(connections.len(), self.options.concurrency, target);
        self.metrics
            .publish_concurrency
            .store(limit as i64, Ordering::Relaxed);
        let mut report = PublishReport::default();
        let mut throttled_any = false;
        let mut last_cut = started;
        let mut waiting = connections.into_iter();
        let mut running = FuturesUnordered::new();
        let mut answered_at_once = 0usize;
        loop {
            while running.len() < limit {
                let Some(conn) = waiting.next() else { break };
                // Answered at once (the local registry): no future and no
                // timing. Writers woken meanwhile run on the other threads
                // and find several messages queued: one write for them all.
                // A yield now and then bounds how long one fan-out holds its
                // thread.
                match self.post_at_once(job_id, conn, &payload, &mut report).await {
                    Some(conn) => running.push(self.post_with_retry(conn, payload.clone())),
                    None => {
                        answered_at_once += 1;
                        if answered_at_once.is_multiple_of(YIELD_EVERY) {
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
            let Some(posted) = running.next().await else {
                break;
            };
            // One cut per round trip: the posts already out saw the same limit.
            if posted.throttled && last_cut.elapsed() >= self.pace.latency() {
                throttled_any = true;
                limit = self.pace.throttled(limit.min(running.len() + 1));
                last_cut = Instant::now();
            }
            self.record(job_id, posted, &mut report).await;
        }
        if !throttled_any {
            self.pace.clean();
        }
        let m = &self.metrics;
        m.publish_delivered_total
            .fetch_add(report.delivered as u64, Ordering::Relaxed);
        m.publish_gone_total
            .fetch_add(report.gone as u64, Ordering::Relaxed);
        m.publish_retries_total
            .fetch_add(report.retried as u64, Ordering::Relaxed);
        m.publish_failed_total
            .fetch_add(report.failed.len() as u64, Ordering::Relaxed);
        m.publish_post_latency_us
            .store(self.pace.latency().as_micros() as i64, Ordering::Relaxed);
        report
    }

    /// Posts through the pusher's immediate path when it has one; gives the
    /// connection back when the post needs the asynchronous path (no
    /// immediate path, or an answer worth retrying).
    async fn post_at_once(
        &self,
        job_id: &str,
        conn: String,
        payload: &Payload,
        report: &mut PublishReport,
    ) -> Option<String> {
        let outcome = match self.pusher.post_now(&conn, payload) {
            None => return Some(conn),
            Some(Ok(())) => {
                report.delivered += 1;
                return None;
            }
            Some(Err(PushError::Gone)) => Outcome::Gone { retries: 0 },
            Some(Err(e)) if e.is_retryable() => return Some(conn),
            Some(Err(error)) => Outcome::Failed { retries: 0, error },
        };
        self.record(job_id, Posted::at_once(conn, outcome), report)
            .await;
        None
    }

    async fn record(&self, job_id: &str, posted: Posted, report: &mut PublishReport) {
        let conn = posted.conn;
        match posted.outcome {
            Outcome::Delivered { retries } => {
                report.delivered += 1;
                report.retried += retries;
            }
            Outcome::Gone { retries } => {
                report.gone += 1;
                report.retried += retries;
                if let Err(e) = self.store.unsubscribe(job_id, &conn).await {
                    tracing::warn!(job_id, connection_id = %conn, error = %e, "could not delete gone subscription");
                }
            }
            Outcome::Failed { retries, error } => {
                report.retried += retries;
                tracing::warn!(job_id, connection_id = %conn, %error, "could not deliver progress");
                report.failed.push((conn, error));
            }
        }
    }

    async fn post_with_retry(&self, conn: String, payload: Payload) -> Posted {
        let mut attempt = 0u32;
        let mut throttled = false;
        let outcome = loop {
            let sent = Instant::now();
            let answer = self.pusher.post(&conn, payload.clone()).await;
            let retries = attempt as usize;
            match answer {
                Ok(()) => {
                    self.pace.observe(sent.elapsed());
                    break Outcome::Delivered { retries };
                }
                Err(PushError::Gone) => {
                    self.pace.observe(sent.elapsed());
                    break Outcome::Gone { retries };
                }
                Err(error) if error.is_retryable() && attempt + 1 < self.options.max_attempts => {
                    throttled |= error == PushError::LimitExceeded;
                    let wait =
                        backoff(attempt, self.options.base_backoff, self.options.max_backoff);
                    if pace::past_deadline(wait, Instant::now()) {
                        break Outcome::Failed { retries, error };
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => {
                    throttled |= error == PushError::LimitExceeded;
                    break Outcome::Failed { retries, error };
                }
            }
        };
        Posted {
            conn,
            outcome,
            throttled,
        }
    }
}
