//! The in-process worker pool of `jobcast serve`: runs accepted jobs (the
//! built-in `demo` kind) with bounded concurrency, reacts to cancellation
//! at once, and on start takes up what a previous run over the same
//! (DynamoDB) table left unfinished.

use crate::dispatch::Dispatcher;
use crate::handlers::{JobQueue, QueueError, worker};
use crate::publish::Publisher;
use crate::store::JobRecord;
use crate::telemetry;
use async_trait::async_trait;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Jobs waiting for a worker before `POST /jobs` answers 503.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The queue side handed to the jobs API.
pub struct LocalQueue {
    tx: mpsc::Sender<Queued>,
    cancels: DashMap<String, CancellationToken>,
}

/// A demo job waiting for a worker, and the trace it was queued in.
type Queued = (JobRecord, Option<telemetry::SpanContext>);

#[async_trait]
impl JobQueue for LocalQueue {
    async fn enqueue(&self, job: &JobRecord, _base_url: &str) -> Result<(), QueueError> {
        if !worker::KINDS.contains(&job.kind.as_str()) {
            return Err(QueueError::Unavailable(format!(
                "the demo worker pool runs only demo jobs, not '{}'",
                job.kind
            )));
        }
        self.cancels
            .insert(job.snapshot.job_id.clone(), CancellationToken::new());
        self.tx
            .try_send((job.clone(), telemetry::current()))
            .map_err(|e| {
                self.cancels.remove(&job.snapshot.job_id);
                match e {
                    mpsc::error::TrySendError::Full(_) => QueueError::Full,
                    mpsc::error::TrySendError::Closed(_) => {
                        QueueError::Unavailable("the server is shutting down".into())
                    }
                }
            })
    }

    fn cancel_hint(&self, job_id: &str) {
        if let Some(t) = self.cancels.get(job_id) {
            t.cancel();
        }
    }
}

/// Owns the dispatcher and the running jobs.
pub struct WorkerPool {
    queue: Arc<LocalQueue>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl WorkerPool {
    /// Starts the dispatcher; at most `concurrency` jobs run at once.
    pub fn new(publisher: Publisher, concurrency: usize) -> WorkerPool {
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE_CAPACITY);
        let queue = Arc::new(LocalQueue {
            tx,
            cancels: DashMap::new(),
        });
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let q = Arc::clone(&queue);
        let t = tracker.clone();
        let s = stop.clone();
        tracker.spawn(async move {
            loop {
                let (job, trace) = tokio::select! {
                    _ = s.cancelled() => break,
                    j = rx.recv() => match j { Some(j) => j, None => break },
                };
                let permit = tokio::select! {
                    _ = s.cancelled() => break,
                    p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                };
                let job_id = job.snapshot.job_id.clone();
                let cancel = q
                    .cancels
                    .get(&job_id)
                    .map(|c| c.clone())
                    .unwrap_or_default();
                let publisher = publisher.clone();
                let q2 = Arc::clone(&q);
                let s2 = s.clone();
                t.spawn(async move {
                    // Re-read: a cancel may have landed while the job waited.
                    let current = match publisher.store().get_job(&job_id).await {
                        Ok(Some(j)) => j,
                        Ok(None) => job,
                        Err(e) => {
                            tracing::error!(job_id, error = %e, "could not read job");
                            job
                        }
                    };
                    // The job's run joins the trace of the request that queued it.
                    let mut span = match trace {
                        Some(parent) => telemetry::start(format!("run {}", current.kind), telemetry::SpanKind::Internal, Some(parent)),
                        None => telemetry::Span::none(),
                    };
                    span.set("jobcast.job.id", job_id.as_str());
                    span.set("jobcast.job.kind", current.kind.as_str());
                    tokio::select! {
                        r = telemetry::within(&span, worker::run_job(&publisher, &current, &cancel)) => {
                            if let Err(e) = r {
                                span.fail(e.to_string());
                                tracing::error!(job_id, error = %e, "job ended with an error");
                            }
                        }
                        _ = s2.cancelled() => {}
                    }
                    span.end();
                    q2.cancels.remove(&job_id);
                    drop(permit);
                });
            }
        });
        WorkerPool {
            queue,
            tracker,
            stop,
        }
    }

    /// Background tasks of this pool and of the dispatcher (command workers,
    /// hand-over retries): all end at shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Cancelled when the server shuts down.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Runs the liveness sweep every `every` until shutdown.
    pub fn sweep_lost_every(&self, publisher: Publisher, every: Duration) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = publisher.clock().now().timestamp();
                if let Err(e) = worker::sweep_lost(&publisher, now).await {
                    tracing::warn!(error = %e, "liveness sweep failed; retrying at the next tick");
                }
            }
        });
    }

    /// Takes up the work a previous run left in the store: a demo job that
    /// stopped mid-way resumes from its last published step, a job of a
    /// worker kind whose hand-over never completed is handed over again
    /// (`attempt` + 1), and a webhook still owed is delivered. A job another
    /// live process is running keeps publishing, so each demo job first
    /// waits out one step plus a margin and is resumed only if its `seq` has
    /// not moved meanwhile; either way the job's lease is taken with a
    /// conditional write first, so two processes starting together never
    /// both take one job.
    pub fn recover(&self, publisher: Publisher, dispatcher: Arc<Dispatcher>, base_url: String) {
        let queue = Arc::clone(&self.queue);
        let stop = self.stop.clone();
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            let jobs = tokio::select! {
                _ = stop.cancelled() => return,
                r = publisher.store().unfinished_jobs(QUEUE_CAPACITY) => r,
            };
            let jobs = match jobs {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for jobs left unfinished by a previous run");
                    return;
                }
            };
            if !jobs.is_empty() {
                tracing::info!(jobs = jobs.len(), "taking up jobs left unfinished by a previous run");
            }
            publisher
                .metrics()
                .recovery_found_total
                .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for job in jobs {
                let (publisher, queue, stop) = (publisher.clone(), Arc::clone(&queue), stop.clone());
                let (dispatcher, base_url) = (Arc::clone(&dispatcher), base_url.clone());
                tracker.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = recover_one(&publisher, &queue, &dispatcher, &base_url, job) => {}
                    }
                });
            }
        });
    }

    pub fn queue(&self) -> Arc<dyn JobQueue> {
        self.queue.clone()
    }

    /// Stops taking jobs and abandons running ones (their state stays as last published).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Margin over one step before a job counts as abandoned.
const ABANDONED_AFTER: Duration = Duration::from_secs(2);

/// What a job found unfinished at start needs: its owed webhook, the
/// resumption of a demo job, or the hand-over of a worker kind's job.
async fn recover_one(
    publisher: &Publisher,
    queue: &LocalQueue,
    dispatcher: &Dispatcher,
    base_url: &str,
    job: JobRecord,
) {
    let job_id = job.snapshot.job_id.clone();
    if job.webhook_owed() {
        match publisher.webhooks() {
            Some(w) => {
                tracing::info!(job_id, "delivering a webhook a previous run left owed");
                w.settle(&job).await;
            }
            None => tracing::warn!(
                job_id,
                "job has a webhook owed but JOBCAST_WEBHOOK_SECRET is not set: not delivered"
            ),
        }
    } else if job.snapshot.status.is_terminal() {
        // Ended and settled: nothing is left to do.
    } else if worker::KINDS.contains(&job.kind.as_str()) {
        resume_demo_job(publisher, queue, dispatcher, base_url, job).await;
    } else {
        // A worker kind: once its worker has it, the worker reports (and
        // liveness ends it if it stops). Only an unfinished hand-over is ours.
        hand_over_again(dispatcher, base_url, &job).await;
    }
    publisher
        .metrics()
        .recovered_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A queued job of a worker kind that was never handed over: hand it over.
async fn hand_over_again(dispatcher: &Dispatcher, base_url: &str, job: &JobRecord) {
    let job_id = job.snapshot.job_id.as_str();
    if job.snapshot.status != crate::protocol::Status::Queued || job.dispatched {
        return;
    }
    if !dispatcher.has_target(&job.kind) {
        tracing::warn!(job_id, kind = %job.kind, "a queued job of a kind this process has no target for; configure it with --kind to hand it over");
        return;
    }
    match dispatcher.redeliver(job, base_url).await {
        Ok(true) => tracing::info!(
            job_id,
            "handed over again a job a previous run had not handed over"
        ),
        Ok(false) => tracing::debug!(job_id, "another process holds the job"),
        Err(e) => {
            tracing::warn!(job_id, error = %e, "could not hand over a job left unfinished")
        }
    }
}

/// A demo job a previous run left unfinished: once it has been quiet for a
/// step and [`ABANDONED_AFTER`] (so a live worker elsewhere would have moved
/// it), take it over with a lease and queue it here.
async fn resume_demo_job(
    publisher: &Publisher,
    queue: &LocalQueue,
    dispatcher: &Dispatcher,
    base_url: &str,
    job: JobRecord,
) {
    let job_id = job.snapshot.job_id.as_str();
    let step = worker::DemoInput::parse(&job.input)
        .map(|i| Duration::from_millis(i.step_ms))
        .unwrap_or_default();
    let quiet_since = (publisher.clock().now() - job.snapshot.updated_at)
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep((step + ABANDONED_AFTER).saturating_sub(quiet_since)).await;
    let current = match publisher.store().get_job(job_id).await {
        Ok(Some(j)) => j,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job_id, error = %e, "could not re-read a job left unfinished; not resuming it");
            return;
        }
    };
    if current.snapshot.seq != job.snapshot.seq || current.snapshot.status.is_terminal() {
        tracing::debug!(job_id, "job moved on by itself; another worker runs it");
        return;
    }
    let now = publisher.clock().now().timestamp();
    let until = now + crate::store::HANDOVER_LEASE.as_secs() as i64;
    let current = match publisher
        .store()
        .hand_over(job_id, &dispatcher.settings().owner, until, now)
        .await
    {
        Ok(j) => j,
        Err(e) => {
            tracing::debug!(job_id, error = %e, "not resuming: another process took the job");
            return;
        }
    };
    tracing::info!(
        job_id,
        seq = current.snapshot.seq,
        percent = current.snapshot.percent,
        "resuming a job a previous run left unfinished"
    );
    if let Err(e) = queue.enqueue(&current, base_url).await {
        tracing::warn!(job_id, error = %e, "could not queue a job left unfinished");
    }
}
