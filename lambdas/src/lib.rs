//! AWS Lambda entry points for jobcast.
//!
//! Each function in `src/bin/` is a thin wrapper: it builds a [`Wiring`] once
//! per execution environment (SDK clients, store, token key) and hands every
//! event to the library handler that `jobcast serve` also runs.
//!
//! Configuration comes from the environment (set by `infra/template.yaml`):
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `JOBCAST_TABLE` | all | DynamoDB table |
//! | `JOBCAST_TOKEN_SECRET` | connect, message, jobs_api, updates | signs job tokens (16+ bytes) |
//! | `JOBCAST_QUEUE_URL` | jobs_api | SQS queue of accepted jobs |
//! | `JOBCAST_WEBSOCKET_URL` | jobs_api | `wss://…/{stage}` put in `websocketUrl` |
//! | `JOBCAST_UPDATE_URL` | jobs_api | base of each job message's `updateUrl` (the updates function's URL); the jobs API's own when unset |
//! | `JOBCAST_MANAGEMENT_ENDPOINT` | worker, jobs_api; optional for the others | `https://{api}.execute-api.{region}.amazonaws.com/{stage}`; set it for custom domains |
//! | `JOBCAST_RETENTION_SECONDS` | all | job and idempotency retention (default 86400) |
//! | `JOBCAST_WEBHOOK_SECRET` | jobs_api, worker, sweeper | signs webhooks and `http` hand-overs; `callbackUrl` is refused without it |
//! | `JOBCAST_KINDS` | jobs_api | your job kinds: `KIND=TARGET,…` (`sqs:`, `lambda:`, `http(s)://`) |
//! | `JOBCAST_HEARTBEAT_TIMEOUT_SECONDS` | jobs_api | worker liveness: seconds without an update before `worker_lost` (default 300, 0 off) |
//! | `JOBCAST_START_TIMEOUT_SECONDS` | jobs_api | seconds after a hand-over before a job no worker reported on ends `not_started` (default 3600, 0 off) |
//! | `JOBCAST_COALESCE_MS` | jobs_api, updates, worker | coalescing window in milliseconds (0 off, at most 10000) |
//! | `JOBCAST_FLUSH_FUNCTION` | jobs_api, updates, worker | with a window: the function invoked to push each window's newest update (the sweeper) |

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use dashmap::DashMap;
use jobcast_core::dispatch::{Kinds, RetryPolicy, deliverers};
use jobcast_core::handlers::worker::{self, QueuedJob};
use jobcast_core::handlers::{Deps, JobQueue, QueueError};
use jobcast_core::push::Pusher;
use jobcast_core::store::{DynamoStore, JobRecord, Store};
use jobcast_core::token::TokenKey;
use jobcast_core::webhook::{Delivery, WebhookOptions};
use jobcast_core::wiring::DepsBuilder;
use std::sync::Arc;
use std::time::Duration;

pub use lambda_runtime::{Error, LambdaEvent, run, service_fn};

pub mod coalescing;

/// Lease owner of the Lambda functions (they never resume one another's work).
const LEASE_OWNER: &str = "lambda";

/// The WebSocket API's integrations.
#[derive(Clone, Copy, Debug)]
pub enum WebSocketRoute {
    Connect,
    Disconnect,
    Message,
}

/// Runs one WebSocket integration over `wiring`: each event handed to its
/// library handler with a pusher for the event's endpoint.
pub async fn run_websocket(route: WebSocketRoute, wiring: Wiring) -> Result<(), Error> {
    use aws_lambda_events::apigw::ApiGatewayProxyResponse;
    use jobcast_core::handlers::websocket;
    // Borrowed by every invocation: `run` only returns when the function stops.
    let wiring = &wiring;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            let deps = wiring.deps(&wiring.endpoint_for(&event.payload));
            let handled = async {
                match route {
                    WebSocketRoute::Connect => websocket::connect(&deps, event.payload).await,
                    WebSocketRoute::Disconnect => websocket::disconnect(&deps, event.payload).await,
                    WebSocketRoute::Message => websocket::message(&deps, event.payload).await,
                }
            };
            let response: ApiGatewayProxyResponse =
                within_invocation(&event.context, handled).await;
            Ok::<_, Error>(response)
        },
    ))
    .await
}

/// Which requests of the jobs HTTP API a function serves.
#[derive(Clone, Copy, Debug)]
pub enum JobsDoor {
    /// Every route, behind the HTTP API.
    Api,
    /// `POST /jobs/{jobId}/updates` alone, behind the function's own URL.
    Updates,
}

/// Runs a jobs API function over `wiring`: each request (payload format
/// 2.0) handed to the library handler of its door.
pub async fn run_jobs_api(door: JobsDoor, wiring: Wiring) -> Result<(), Error> {
    use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
    use jobcast_core::handlers::jobs_api;
    let deps = wiring.deps(&wiring.fixed_endpoint()?);
    let deps = &deps;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let handled = async {
                match door {
                    JobsDoor::Api => jobs_api::handle(deps, event.payload).await,
                    JobsDoor::Updates => jobs_api::handle_updates(deps, event.payload).await,
                }
            };
            let response: ApiGatewayV2httpResponse =
                within_invocation(&event.context, handled).await;
            Ok::<_, Error>(response)
        },
    ))
    .await
}

/// Logs as JSON lines without colour or timestamps (CloudWatch adds its own).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        .init();
    // Traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set (the ADOT layer's
    // collector, or any OTLP/HTTP endpoint); each invocation flushes them.
    let service = var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "jobcast".into());
    if let Err(e) = jobcast_core::telemetry::install_from_env(None, &service) {
        tracing::error!(error = %e, "traces are off: fix the OTEL_ settings");
    }
}

/// Runs `fut` with the invocation's end as the deadline of every publish
/// inside it: fan-outs plan their pace for the time left and give up retries
/// that would outlast it.
pub async fn within_invocation<F: std::future::Future>(
    context: &lambda_runtime::Context,
    fut: F,
) -> F::Output {
    let left = context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let out = jobcast_core::push::pace::within(std::time::Instant::now() + left, fut).await;
    // A sandbox is frozen between invocations: send the spans now.
    jobcast_core::telemetry::flush().await;
    out
}

/// A positive whole number from the environment, or `default` when unset.
fn positive_var(name: &str, default: usize) -> Result<usize, Error> {
    match var(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} must be a whole number above 0, got '{v}'").into()),
        },
    }
}

/// A duration given in whole seconds (0 for off), or `default` when unset.
fn seconds_var(name: &str, default: Duration) -> Result<Duration, Error> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name} must be whole seconds (0 for off), got '{v}'").into()),
    }
}

pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Owners, as the template's JwtIssuer, JwtAudience and JwksUrl set them
/// (the keys read once, at cold start); off when no issuer is set.
pub async fn owners_from_env() -> Result<Option<Arc<jobcast_core::auth::JwtVerifier>>, Error> {
    let setup = jobcast_core::auth::OwnersSetup {
        dev_tokens: false,
        issuer: var("JOBCAST_JWT_ISSUER"),
        audience: var("JOBCAST_JWT_AUDIENCE"),
        jwks_file: var("JOBCAST_JWKS").map(Into::into),
        jwks_url: var("JOBCAST_JWKS_URL"),
    };
    Ok(setup.load().await?.map(Arc::new))
}

/// JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER: a limit when above 0 (needs owners).
fn owner_limit_from_env(owners_on: bool) -> Result<Option<u32>, Error> {
    let Some(v) = var("JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER") else {
        return Ok(None);
    };
    let n: u32 = v.trim().parse().map_err(|_| {
        format!("JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER must be a whole number (0: no limit), got '{v}'")
    })?;
    match n {
        0 => Ok(None),
        _ if !owners_on => Err("JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER counts each owner's jobs, and owners are off: set the template's JwtIssuer and JwtAudience".into()),
        n => Ok(Some(n)),
    }
}

fn required(name: &str) -> Result<String, Error> {
    var(name).ok_or_else(|| format!("environment variable {name} is not set").into())
}

/// Enqueues accepted jobs on SQS as `{"jobId": "..."}`.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: &JobRecord, _base_url: &str) -> Result<(), QueueError> {
        let body = serde_json::to_string(&QueuedJob {
            job_id: job.snapshot.job_id.clone(),
        })
        .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(jobcast_core::aws::error_line(&e)))
    }

    fn cancel_hint(&self, _job_id: &str) {
        // The worker sees the request on the job record at its next update.
    }
}

/// A queue for functions that never accept jobs.
struct NoQueue;

#[async_trait]
impl JobQueue for NoQueue {
    async fn enqueue(&self, _job: &JobRecord, _base_url: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(
            "this function does not accept jobs".into(),
        ))
    }

    fn cancel_hint(&self, _job_id: &str) {}
}

/// Everything a function needs, built once per execution environment.
pub struct Wiring {
    sdk: SdkConfig,
    /// What every host shares: store, tokens, metrics, links, the user's
    /// kinds and their targets, webhooks (delivered inline here).
    pub parts: DepsBuilder,
    /// Where demo jobs go (SQS in the template).
    pub queue: Arc<dyn JobQueue>,
    /// Overrides the endpoint derived from events (custom domains).
    pub management_endpoint: Option<String>,
    pushers: DashMap<String, Arc<dyn Pusher>>,
}

impl Wiring {
    /// Reads the environment and builds what every function shares: the
    /// store, tokens, links, webhooks, owners, pacing and coalescing. A
    /// function adds only what it uses ([`Wiring::with_files_from_env`],
    /// [`Wiring::with_kinds_from_env`]), so its binary links only the AWS
    /// clients it calls: `$connect` has no S3, Step Functions or ECS in it.
    pub async fn from_env() -> Result<Wiring, Error> {
        let sdk = jobcast_core::aws::sdk_config().await;
        let retention = Duration::from_secs(
            var("JOBCAST_RETENTION_SECONDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(86_400),
        );
        let store: Arc<dyn Store> = Arc::new(DynamoStore::new(
            jobcast_core::aws::dynamodb(&sdk),
            required("JOBCAST_TABLE")?,
            retention,
        ));
        let tokens = match var("JOBCAST_TOKEN_SECRET") {
            Some(s) => TokenKey::new(s.into_bytes(), Duration::from_secs(24 * 3600))
                .map_err(|e| Error::from(e.to_string()))?,
            None => {
                // Functions that never check tokens (disconnect, worker) run without one.
                TokenKey::random(Duration::from_secs(1))
            }
        };
        let mut wiring = Wiring::new(sdk, store, tokens, Arc::new(NoQueue));
        wiring.parts.links.websocket_url = var("JOBCAST_WEBSOCKET_URL");
        wiring.parts.links.public_url = var("JOBCAST_PUBLIC_URL");
        wiring.parts.links.update_url = var("JOBCAST_UPDATE_URL");
        wiring.management_endpoint = var("JOBCAST_MANAGEMENT_ENDPOINT");
        let secret = var("JOBCAST_WEBHOOK_SECRET");
        let parts = &mut wiring.parts;
        parts.heartbeat_timeout =
            seconds_var("JOBCAST_HEARTBEAT_TIMEOUT_SECONDS", parts.heartbeat_timeout)?;
        parts.start_timeout = seconds_var("JOBCAST_START_TIMEOUT_SECONDS", parts.start_timeout)?;
        if let Some(secret) = secret {
            wiring = wiring.with_webhook_secret(&secret, WebhookOptions::default())?;
        }
        let publish = &mut wiring.parts.publish.fan_out;
        publish.concurrency = positive_var("JOBCAST_PUBLISH_CONCURRENCY", publish.concurrency)?;
        publish.max_concurrency =
            positive_var("JOBCAST_PUBLISH_MAX_CONCURRENCY", publish.max_concurrency)?
                .max(publish.concurrency);
        wiring.parts.identity = owners_from_env().await?;
        wiring.parts.owner_limit = owner_limit_from_env(wiring.parts.identity.is_some())?;
        if let Some((window, flusher)) = coalescing::from_env(&wiring.sdk)? {
            wiring.parts.publish.coalesce = window;
            wiring.parts.flusher = Some(flusher);
        }
        Ok(wiring)
    }

    /// Job files in `JOBCAST_FILES_BUCKET` (S3), for the functions that
    /// show snapshots or take uploads.
    pub fn with_files_from_env(mut self) -> Result<Wiring, Error> {
        if let Some(bucket) = var("JOBCAST_FILES_BUCKET") {
            let ttl = seconds_var(
                "JOBCAST_FILE_URL_TTL_SECONDS",
                jobcast_core::files::DEFAULT_DOWNLOAD_TTL,
            )?;
            if ttl.is_zero() || ttl > jobcast_core::files::MAX_DOWNLOAD_TTL {
                return Err(format!(
                    "JOBCAST_FILE_URL_TTL_SECONDS must be 1 to {} (7 days), got {}",
                    jobcast_core::files::MAX_DOWNLOAD_TTL.as_secs(),
                    ttl.as_secs()
                )
                .into());
            }
            let s3 = Arc::new(jobcast_core::files::S3Files::new(&self.sdk, &bucket));
            self.parts.files = Some(jobcast_core::files::FileLinks::new(s3, ttl));
        }
        Ok(self)
    }

    /// Where jobs go, for the function that creates them: the demo kind's
    /// queue (`JOBCAST_QUEUE_URL`, SQS) and the user's kinds
    /// (`JOBCAST_KINDS`) with a client for each target.
    pub async fn with_kinds_from_env(mut self) -> Result<Wiring, Error> {
        if var("JOBCAST_EXTERNAL_KINDS").is_some() {
            return Err("JOBCAST_EXTERNAL_KINDS was replaced by JOBCAST_KINDS (KIND=TARGET,…): redeploy with the template's Kinds parameter".into());
        }
        if let Some(url) = var("JOBCAST_QUEUE_URL") {
            self.queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&self.sdk), url));
        }
        if let Some(list) = var("JOBCAST_KINDS") {
            self.parts.kinds =
                Kinds::parse_list(&list).map_err(|e| format!("JOBCAST_KINDS: {e}"))?;
        }
        let secret = var("JOBCAST_WEBHOOK_SECRET");
        self.parts.targets = deliverers(&self.parts.kinds, secret.as_deref(), None).await?;
        Ok(self)
    }

    /// Signs and delivers webhooks (and signs `http` hand-overs) with
    /// `secret`, inline: nothing may outlive an invocation. Attempts are
    /// capped, since each is bounded by the function's own timeout.
    pub fn with_webhook_secret(
        mut self,
        secret: &str,
        options: WebhookOptions,
    ) -> Result<Wiring, Error> {
        let options = WebhookOptions {
            max_attempts: options.max_attempts.min(4),
            ..options
        };
        self.parts = self
            .parts
            .webhooks(Some(secret), options, Delivery::Inline)
            .map_err(Error::from)?;
        Ok(self)
    }

    /// The worker function: runs each queued job of an SQS batch through
    /// the shipped dependencies (webhooks delivered inline, once).
    pub async fn run_worker_batch(&self, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
        let deps = self.deps(&self.fixed_endpoint()?);
        Ok(worker::handle_sqs(&deps.publisher, event).await)
    }

    /// Wiring over explicit parts (tests, custom hosts).
    pub fn new(
        sdk: SdkConfig,
        store: Arc<dyn Store>,
        tokens: TokenKey,
        queue: Arc<dyn JobQueue>,
    ) -> Wiring {
        let mut parts = DepsBuilder::new(store, Arc::new(jobcast_core::metrics::Metrics::new()));
        parts.tokens = tokens;
        parts.lease_owner = LEASE_OWNER.into();
        // Nothing may outlive the invocation: a few quick tries, then the
        // job fails `dispatch_failed`.
        parts.dispatch_retry = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            background: false,
        };
        Wiring {
            sdk,
            parts,
            queue,
            management_endpoint: None,
            pushers: DashMap::new(),
        }
    }

    fn pusher(&self, endpoint: &str) -> Arc<dyn Pusher> {
        self.pushers
            .entry(endpoint.to_string())
            .or_insert_with(|| self.parts.management_pusher(&self.sdk, endpoint))
            .clone()
    }

    /// The handlers' dependencies, posting through `endpoint`. Webhooks are
    /// delivered before a publish returns: nothing may outlive an invocation.
    pub fn deps(&self, endpoint: &str) -> Deps {
        let publisher = self.parts.publisher(self.pusher(endpoint));
        let queue = self.parts.dispatcher(
            &publisher,
            Arc::clone(&self.queue),
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        self.parts.deps(publisher, queue)
    }

    /// The management endpoint for a WebSocket event: the override when set,
    /// else `https://{domainName}/{stage}` as API Gateway addresses itself.
    /// (Behind a custom domain the event carries the custom name, whose
    /// `@connections` answers 403: set JOBCAST_MANAGEMENT_ENDPOINT then.)
    pub fn endpoint_for(&self, event: &ApiGatewayWebsocketProxyRequest) -> String {
        if let Some(e) = &self.management_endpoint {
            return e.clone();
        }
        let c = &event.request_context;
        format!(
            "https://{}/{}",
            c.domain_name.as_deref().unwrap_or("localhost"),
            c.stage.as_deref().unwrap_or("")
        )
    }

    /// The endpoint workers and the jobs API post through.
    pub fn fixed_endpoint(&self) -> Result<String, Error> {
        self.management_endpoint
            .clone()
            .ok_or_else(|| "environment variable JOBCAST_MANAGEMENT_ENDPOINT is not set".into())
    }
}

#[cfg(test)]
mod tests {
    use super::within_invocation;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    #[tokio::test]
    async fn publishes_inside_an_invocation_see_its_deadline() {
        let mut context = lambda_runtime::Context::default();
        let in_ten_seconds = SystemTime::now() + Duration::from_secs(10);
        context.deadline = in_ten_seconds
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        assert!(jobcast_core::push::pace::deadline().is_none());
        let seen =
            within_invocation(&context, async { jobcast_core::push::pace::deadline() }).await;
        let left = seen
            .expect("a deadline inside the invocation")
            .saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(8) && left <= Duration::from_secs(10),
            "{left:?}"
        );
        // A retry that would end after it is not made; one well before it is.
        within_invocation(&context, async {
            let now = Instant::now();
            assert!(jobcast_core::push::pace::past_deadline(
                Duration::from_secs(10),
                now
            ));
            assert!(!jobcast_core::push::pace::past_deadline(
                Duration::from_secs(1),
                now
            ));
        })
        .await;
    }
}
