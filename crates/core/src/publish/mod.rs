//! Publishing progress: store the new snapshot (and the chunks appended
//! with it), then push them to the job's subscribers in one delivery. The
//! one code path used by the demo worker, the update endpoint, the CLI
//! and worker Lambdas. The publisher decides what goes to whom; the
//! [`Pusher`] decides how (see [`crate::push`]).

use crate::clock::SharedClock;
use crate::files::FileLinks;
use crate::metrics::Metrics;
use crate::protocol::{ServerMessage, Snapshot};
use crate::push::{PaceOptions, Parcel, Payload, PushError, Pusher};
use crate::store::streams::{AppendOptions, AppendOutcome, Appended, StreamAppend};
use crate::store::{JobRecord, JobUpdate, Store, StoreError};
use crate::webhook::Webhooks;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod chunks;
pub mod coalesce;
pub mod invoke;

pub use chunks::chunk_payloads;
pub use coalesce::{Flusher, Held, InProcess};
pub use invoke::InvokeFlush;

/// How publishing behaves.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// How pushers that post by request pace a batch (the host builds them
    /// with it; see [`crate::push::fan_out`]).
    pub fan_out: PaceOptions,
    /// Coalescing window ([`coalesce`]); zero pushes every update.
    pub coalesce: Duration,
}

/// What happened to one push.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishReport {
    /// Messages delivered (one per connection for a snapshot).
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
    /// Coalescing window (zero: off).
    coalesce: Duration,
    webhooks: Option<Arc<Webhooks>>,
    /// Set when updates are coalesced.
    flusher: Option<Arc<dyn Flusher>>,
    /// Where job files are, to show their download URLs.
    files: Option<FileLinks>,
    /// Where "now" comes from: update times, coalescing windows, URL expiry.
    clock: SharedClock,
}

/// Serializes a snapshot once into a payload shared by all its recipients.
pub fn snapshot_payload(snapshot: &Snapshot) -> Payload {
    Payload::text(ServerMessage::Progress(snapshot).to_json())
}

impl Publisher {
    pub fn new(store: Arc<dyn Store>, pusher: Arc<dyn Pusher>, metrics: Arc<Metrics>) -> Publisher {
        Publisher {
            store,
            pusher,
            metrics,
            coalesce: Duration::ZERO,
            webhooks: None,
            flusher: None,
            files: None,
            clock: crate::clock::system(),
        }
    }

    /// The same publisher, reading the time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Publisher {
        self.clock = clock;
        self
    }

    /// Where this publisher reads the time.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The same publisher, showing attached files with download URLs from
    /// `files`.
    pub fn with_files(mut self, files: FileLinks) -> Publisher {
        self.files = Some(files);
        self
    }

    /// Where job files are, when this host has file storage.
    pub fn files(&self) -> Option<&FileLinks> {
        self.files.as_ref()
    }

    /// `job` as shown now: its snapshot with download URLs for its files.
    pub async fn shown<'a>(&self, job: &'a JobRecord) -> std::borrow::Cow<'a, JobRecord> {
        FileLinks::shown(self.files.as_ref(), job, self.clock.now()).await
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
        update: JobUpdate,
    ) -> Result<(JobRecord, PublishReport), StoreError> {
        let (job, report, _) = self.publish_appending(job_id, update, &[]).await?;
        Ok((job, report))
    }

    /// Appends `appends` to the job's streams (all or none; nothing when
    /// empty), applies `update`, then pushes both in one delivery: each
    /// subscriber gets the chunks of the streams it asked for, then the
    /// snapshot. Returns the job, what was pushed, and what the append did.
    pub async fn publish_appending(
        &self,
        job_id: &str,
        mut update: JobUpdate,
        appends: &[StreamAppend],
    ) -> Result<(JobRecord, PublishReport, Option<AppendOutcome>), StoreError> {
        let appended = match appends {
            [] => None,
            _ => {
                let options = AppendOptions {
                    hold: self.coalescing(),
                    ..AppendOptions::default()
                };
                let out = self
                    .store
                    .append_chunks(job_id, appends, self.clock.now(), options)
                    .await?;
                Some(out)
            }
        };
        let own = appended.as_ref().map_or(&[][..], |o| o.appended.as_slice());
        update.track_recent = self.coalescing();
        let job = match self
            .store
            .update_job(job_id, update, self.clock.now())
            .await
        {
            Ok(job) => job,
            Err(e) => {
                // The chunks are kept even though the update was refused
                // (it raced another): their subscribers get them now.
                if let Some(out) = &appended
                    && let Err(pe) = self.push(&out.job, own, false).await
                {
                    tracing::warn!(job_id, error = %pe, "could not push appended chunks");
                }
                return Err(e);
            }
        };
        self.entered(&job);
        if let Some(held) = self.hold(&job).await {
            return Ok((job, held, appended));
        }
        let webhook = match &self.webhooks {
            Some(w) if job.snapshot.status.is_terminal() && job.callback_url.is_some() => Some(w),
            _ => None,
        };
        let report = self.push(&job, own, true).await?;
        if let Some(w) = webhook {
            w.settle(&*self.shown(&job).await).await;
        }
        Ok((job, report, appended))
    }

    /// Appends chunks to a job's streams (all or none) and pushes them, or
    /// holds them for the coalescing window's push. With `reported`, the
    /// append is also the worker's report (see [`AppendOptions`]).
    pub async fn append(
        &self,
        job_id: &str,
        appends: &[StreamAppend],
        reported: Option<Option<i64>>,
    ) -> Result<AppendOutcome, StoreError> {
        let options = AppendOptions {
            reported,
            hold: self.coalescing(),
            track_recent: self.coalescing(),
        };
        let out = self
            .store
            .append_chunks(job_id, appends, self.clock.now(), options)
            .await?;
        if self.hold(&out.job).await.is_none()
            && let Err(e) = self.push(&out.job, &out.appended, false).await
        {
            tracing::warn!(job_id, error = %e, "could not push appended chunks");
        }
        Ok(out)
    }

    /// Pushes in one delivery what is due of `job`: its stream chunks (those
    /// `own` just appended and any coalescing held), then, with
    /// `snapshot`, its snapshot. Held marks move past what was pushed.
    pub(crate) async fn push(
        &self,
        job: &JobRecord,
        own: &[Appended],
        snapshot: bool,
    ) -> Result<PublishReport, StoreError> {
        let job_id = job.snapshot.job_id.as_str();
        // One span per fan-out (not per message), inside a traced request.
        let mut span = crate::telemetry::child("fan-out", crate::telemetry::SpanKind::Producer);
        let (mut parcels, pushed) = self.chunk_parcels(job, own).await?;
        if snapshot {
            parcels.push(Parcel {
                connections: self.store.subscribers(job_id).await?,
                payloads: vec![snapshot_payload(&self.shown(job).await.snapshot)],
            });
        }
        let report = self.deliver(job_id, &parcels).await;
        if span.context().is_some() {
            span.set("jobcast.job.id", job_id);
            span.set("jobcast.job.seq", job.snapshot.seq);
            span.set("jobcast.job.status", job.snapshot.status.as_str());
            let subscribers = parcels
                .iter()
                .map(|p| p.connections.len())
                .max()
                .unwrap_or(0);
            span.set("jobcast.subscribers", subscribers);
            span.set(
                "jobcast.chunks",
                own.iter().map(|a| a.chunks.len()).sum::<usize>(),
            );
            span.set("jobcast.messages.delivered", report.delivered);
            span.set("jobcast.connections.gone", report.gone);
            if !report.failed.is_empty() {
                span.fail(format!("{} deliveries failed", report.failed.len()));
            }
        }
        span.end();
        if !job.held.is_empty()
            && !job.snapshot.status.is_terminal()
            && let Err(e) = self.store.release_held(job_id, &pushed).await
        {
            // The marks stay: a later push sends those chunks again, and
            // clients drop what they have.
            tracing::warn!(job_id, error = %e, "could not record pushed chunks");
        }
        Ok(report)
    }

    /// Counts a job entering `running` or a terminal status, and logs its end.
    fn entered(&self, job: &JobRecord) {
        let status = job.snapshot.status;
        // Every accepted update is seq + 1 from `queued` at 1, so seq 2 is the
        // one update that leaves `queued`; a terminal status is reached once.
        if status.is_terminal()
            || (status == crate::protocol::Status::Running && job.snapshot.seq == 2)
        {
            self.metrics.job_entered(status);
        }
        if !status.is_terminal() {
            return;
        }
        let job_id = job.snapshot.job_id.as_str();
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

    /// Hands a batch to the pusher, then settles what came back: a gone
    /// connection loses its subscriptions to the job, a failure is logged,
    /// and the counters move.
    pub async fn deliver(&self, job_id: &str, parcels: &[Parcel]) -> PublishReport {
        if parcels.iter().all(|p| p.connections.is_empty()) {
            return PublishReport::default();
        }
        let done = self.pusher.deliver(parcels).await;
        let m = &self.metrics;
        if let Some(n) = done.in_flight {
            m.publish_concurrency.store(n as i64, Ordering::Relaxed);
        }
        if let Some(t) = done.round_trip {
            m.publish_post_latency_us
                .store(t.as_micros() as i64, Ordering::Relaxed);
        }
        m.publish_delivered_total
            .fetch_add(done.messages as u64, Ordering::Relaxed);
        m.publish_gone_total
            .fetch_add(done.gone.len() as u64, Ordering::Relaxed);
        m.publish_retries_total
            .fetch_add(done.retried as u64, Ordering::Relaxed);
        m.publish_failed_total
            .fetch_add(done.failed.len() as u64, Ordering::Relaxed);
        for conn in &done.gone {
            if let Err(e) = self.store.unsubscribe(job_id, conn).await {
                tracing::warn!(job_id, connection_id = %conn, error = %e, "could not delete gone subscription");
            }
        }
        for (conn, error) in &done.failed {
            tracing::warn!(job_id, connection_id = %conn, %error, "could not deliver progress");
        }
        PublishReport {
            delivered: done.messages,
            gone: done.gone.len(),
            retried: done.retried,
            failed: done.failed,
            held: false,
        }
    }
}
