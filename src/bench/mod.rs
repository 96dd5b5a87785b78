//! `jobcast bench`: load generators for this machine, loopback only.
//!
//! - [`load`] (`jobcast bench run`) measures any WebSocket gateway that
//!   speaks API Gateway's `@connections`: connect rate, post throughput,
//!   end-to-end latency, fan-out and the server's memory. `scripts/bench.sh`
//!   points it at `jobcast serve` and at serverless-offline in one run.
//! - [`soak`] (`jobcast bench soak`) churns connections and jobs for minutes
//!   and checks nothing is lost and nothing leaks.
//! - [`fanout`] (`jobcast bench fanout`) runs a gateway in this process and
//!   times the publisher's fan-out through each store and push path.
//! - [`updates`] (`jobcast bench updates`) loads the worker API: updates per
//!   second through `POST /jobs/{id}/updates` and the time from an update
//!   to the WebSocket client.

pub mod args;
pub mod chunks;
pub mod commands;
pub mod cost;
pub mod fanout;
pub mod files;
pub mod load;
pub mod roundtrip;
pub mod runtimes;
pub mod soak;
pub mod tokens;
pub mod updates;

pub use fanout::{BenchPush, BenchStore, FanoutReport, fanout};
pub use load::{LoadOptions, LoadReport, run};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every request a client sends (retries included).
#[derive(Debug, Default, Clone)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The value at fraction `p` of an ascending slice (0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Refuses endpoints that are not on this machine.
pub fn require_loopback(url: &str) -> Result<(), String> {
    if crate::aws::is_loopback_url(url) {
        Ok(())
    } else {
        Err(format!(
            "benchmarks run against loopback only; {url} is not on this machine"
        ))
    }
}

/// Stores a queued job of kind `bench` for a fan-out to follow.
pub(crate) async fn create_bench_job(
    store: &dyn crate::store::Store,
    job_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    store
        .create_job(crate::store::JobRecord::queued(
            job_id.to_string(),
            "bench",
            serde_json::Value::Null,
            None,
            now,
        ))
        .await
        .map_err(|e| e.to_string())
}

/// SDK configuration for targets on this machine: any credentials will do.
pub(crate) async fn local_sdk_config() -> aws_config::SdkConfig {
    crate::aws::sdk_config()
        .await
        .into_builder()
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("local", "local", None, None, "jobcast-bench"),
        ))
        .build()
}

/// One measured fan-out round: what arrived and how long it took.
pub(crate) struct Round {
    pub(crate) millis: f64,
    /// Until the publish call returned (every post answered): what a Lambda
    /// publishing it is billed for.
    pub(crate) publish_millis: f64,
    /// Subscribers that had the update when the round ended (at most `expected`).
    pub(crate) got: usize,
    pub(crate) report: crate::publish::PublishReport,
}

/// Publishes update `round` of `rounds` (the job running at
/// round / (rounds + 1)) and waits, up to 30 s, until `arrived()` reaches
/// `expected`, woken by `done`.
pub(crate) async fn timed_round(
    publisher: &crate::publish::Publisher,
    job_id: &str,
    (round, rounds): (usize, usize),
    expected: usize,
    arrived: impl Fn() -> usize,
    done: &tokio::sync::Notify,
) -> Result<Round, String> {
    use std::time::{Duration, Instant};
    let mut update = crate::store::JobUpdate::status(crate::protocol::Status::Running);
    update.percent = Some(round as f64 * 100.0 / (rounds as f64 + 1.0));
    let started = Instant::now();
    let (_, report) = publisher
        .publish(job_id, update)
        .await
        .map_err(|e| e.to_string())?;
    let publish_millis = started.elapsed().as_secs_f64() * 1000.0;
    let deadline = started + Duration::from_secs(30);
    while arrived() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = tokio::time::timeout(left, done.notified()).await;
    }
    Ok(Round {
        millis: started.elapsed().as_secs_f64() * 1000.0,
        publish_millis,
        got: arrived().min(expected),
        report,
    })
}
