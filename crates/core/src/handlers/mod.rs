//! The handlers: plain async functions over the real Lambda event types and
//! a context of dependencies. `lambdas/` wraps each in `lambda_runtime`;
//! `jobcast serve` builds the same events from live sockets and calls the
//! very same functions.

pub mod jobs_api;
pub mod owners;
mod replies;
pub mod websocket;
pub mod worker;

use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::store::{JobRecord, Store};
use crate::token::TokenKey;
use async_trait::async_trait;
use std::sync::Arc;

/// Why a job could not be handed to a worker.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is full")]
    Full,
    #[error("the job queue is unavailable: {0}")]
    Unavailable(String),
    /// The worker's target refused the job for good (a misconfigured
    /// target, a command that cannot start): the same request would fail
    /// the same way, so it is never answered as "retry later".
    #[error("the worker target refused the job: {0}")]
    Refused(String),
}

/// Hands accepted jobs to workers: the demo worker (an in-process pool in
/// `serve`, a queue in AWS) or the target of the job's kind.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Hands over a job that was just stored as `queued`. `base_url` is the
    /// jobs API's public base, for the update URL a worker reports to.
    async fn enqueue(&self, job: &JobRecord, base_url: &str) -> Result<(), QueueError>;
    /// Tells a running worker, if any, that the job was cancelled. The store
    /// already records the request; this only makes the worker react sooner.
    fn cancel_hint(&self, job_id: &str);
    /// The job kinds accepted.
    fn kinds(&self) -> Vec<String> {
        vec![crate::protocol::DEMO_KIND.to_string()]
    }
    /// Why `job`'s message is too large for its kind's target, if it is
    /// (checked before the job is stored: a 413, not a failed hand-over).
    fn too_large(&self, _job: &JobRecord, _base_url: &str) -> Option<String> {
        None
    }
}

/// Where clients reach the APIs, used to build `statusUrl` and `websocketUrl`.
#[derive(Clone, Debug, Default)]
pub struct Links {
    /// Base URL of the jobs API (`https://api.example.com`); derived from the
    /// request's `Host` when unset.
    pub public_url: Option<String>,
    /// Base URL of the WebSocket API including the stage
    /// (`wss://abc.execute-api.eu-west-1.amazonaws.com/prod`); derived from
    /// the request's `Host` and `stage` when unset.
    pub websocket_url: Option<String>,
    /// Base URL workers send `POST /jobs/{id}/updates` to, put in each job
    /// message's `updateUrl` (in AWS, the updates function's URL); the jobs
    /// API's base URL when unset.
    pub update_url: Option<String>,
    /// The WebSocket API stage.
    pub stage: String,
}

/// Everything a handler needs, built once per process and shared.
#[derive(Clone)]
pub struct Deps {
    /// Stores snapshots and fans them out; its store is the handlers' store.
    pub publisher: Publisher,
    pub tokens: TokenKey,
    pub queue: Arc<dyn JobQueue>,
    pub metrics: Arc<Metrics>,
    pub links: Links,
    /// How long a worker may stay silent before its job ends `worker_lost`
    /// (zero: never).
    pub heartbeat_timeout: std::time::Duration,
    /// Identifies this process in job leases.
    pub lease_owner: Arc<str>,
    /// Verifies callers' JWTs when owners are on (an issuer is configured);
    /// None: jobs have no owner.
    pub identity: Option<Arc<crate::auth::JwtVerifier>>,
    /// Most unfinished (queued or running) jobs one owner may have; None:
    /// no limit.
    pub owner_limit: Option<u32>,
    /// Where "now" comes from: token expiry, deadlines, timestamps.
    pub clock: crate::clock::SharedClock,
}

impl Deps {
    /// The store every handler reads and writes (the publisher's own).
    pub fn store(&self) -> &Arc<dyn Store> {
        self.publisher.store()
    }
}
