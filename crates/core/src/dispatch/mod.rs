//! Handing jobs of the user's own kinds to the user's workers.
//!
//! A kind is configured as `KIND=TARGET` (`serve --kind`, `JOBCAST_KINDS`);
//! the target says how the job message reaches the worker: an SQS queue, an
//! asynchronous Lambda invoke, a signed HTTP POST, or a local command. The
//! worker reports back through `POST /jobs/{id}/updates` with the worker
//! token the message carries. The built-in `demo` kind goes to the demo
//! worker (the in-process pool in `serve`, the demo queue in AWS).

mod command;
pub mod ecs;
pub mod events;
mod http;
mod kinds;
mod lambda;
mod sqs;
pub mod states;

pub use kinds::{KindError, Kinds, Target, parse_kind_spec};

use crate::handlers::{JobQueue, QueueError};
use crate::protocol::{JobError, Status, rfc3339};
use crate::publish::Publisher;
use crate::store::{JobRecord, JobUpdate, StoreError};
use crate::token::TokenKey;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

use crate::protocol::DEMO_KIND;
use crate::store::HANDOVER_LEASE;

/// What a worker receives (CONTRACT section 8).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    #[serde(rename = "type")]
    pub message_type: &'static str,
    pub job_id: String,
    pub kind: String,
    pub input: Value,
    pub created_at: String,
    pub attempt: u32,
    pub worker_token: String,
    pub update_url: String,
    pub heartbeat_timeout_seconds: u64,
    /// The W3C trace context of the hand-over, when traces are on: the
    /// worker libraries send it back with each update, so the job's work
    /// joins the trace its `POST /jobs` began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// How long a handed-over job waits for its worker's first report by
/// default: an hour, so a queue's ordinary backlog never ends a job.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Worth another try later (unreachable, throttled, 5xx).
    #[error("{0}")]
    Retryable(String),
    /// Will fail again the same way (misconfigured target, refused).
    #[error("{0}")]
    Fatal(String),
}

/// One way of delivering job messages.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// One attempt to hand `message` (serialized as `body`) to the worker.
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError>;
    /// The largest job message (serialized) the target takes, when it has
    /// a limit: a job whose message would not fit is refused at `POST
    /// /jobs` (413), never handed over to fail.
    fn max_message_bytes(&self) -> Option<usize> {
        None
    }
    /// What a message counts against that limit (its bytes, unless the
    /// target carries it escaped inside JSON of its own).
    fn message_size(&self, body: &str) -> usize {
        body.len()
    }
}

/// A failed AWS call as a hand-over failure: a 4xx other than 429 will
/// fail again (a missing resource, no permission); the rest may not.
pub(crate) fn aws_failure<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> DispatchError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let line = crate::aws::error_line(e);
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(s) if (400..500).contains(&s) && s != 429 => DispatchError::Fatal(line),
        _ => DispatchError::Retryable(line),
    }
}

/// How the dispatcher retries targets that can be retried (`http`, `states`, `events`, `ecs`).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Retry in the background (`serve`) or before answering (Lambda, where
    /// nothing may outlive the invocation).
    pub background: bool,
}

impl Default for RetryPolicy {
    /// The webhook schedule: 8 attempts, exponential backoff with full jitter.
    fn default() -> RetryPolicy {
        RetryPolicy::like_webhooks(&crate::webhook::WebhookOptions::default())
    }
}

impl RetryPolicy {
    /// The schedule webhooks are retried on, retried in the background.
    pub fn like_webhooks(w: &crate::webhook::WebhookOptions) -> RetryPolicy {
        RetryPolicy {
            max_attempts: w.max_attempts,
            base_backoff: w.base_backoff,
            max_backoff: w.max_backoff,
            background: true,
        }
    }
}

/// Settings shared by every hand-over.
#[derive(Clone)]
pub struct DispatchSettings {
    pub tokens: TokenKey,
    /// `heartbeatTimeoutSeconds` of job messages; zero turns liveness off.
    pub heartbeat_timeout: Duration,
    /// How long after its hand-over a job may wait for its worker's first
    /// report before it ends `not_started`; zero: forever.
    pub start_timeout: Duration,
    /// Identifies this process in leases.
    pub owner: String,
    pub retry: RetryPolicy,
}

/// Routes each job to the demo worker or its kind's target.
pub struct Dispatcher {
    demo: Arc<dyn JobQueue>,
    targets: BTreeMap<String, Arc<dyn Deliver>>,
    kinds: Kinds,
    settings: DispatchSettings,
    publisher: Publisher,
    tasks: TaskTracker,
    stop: tokio_util::sync::CancellationToken,
}

/// What `command:` targets need: they run only in `serve` (never in Lambda,
/// where `deliverers` gets `None`).
pub struct CommandHost<'a> {
    /// Ends a job whose command exits non-zero.
    pub publisher: &'a Publisher,
    /// Watches the commands.
    pub tasks: &'a TaskTracker,
    /// Cancelled at shutdown: the commands are stopped.
    pub stop: &'a tokio_util::sync::CancellationToken,
}

/// Builds the deliverers for `kinds`.
pub async fn deliverers(
    kinds: &Kinds,
    webhook_secret: Option<&str>,
    commands: Option<CommandHost<'_>>,
) -> Result<BTreeMap<String, Arc<dyn Deliver>>, KindError> {
    let mut out: BTreeMap<String, Arc<dyn Deliver>> = BTreeMap::new();
    let mut sdk = None;
    for (kind, target) in &kinds.0 {
        let d: Arc<dyn Deliver> = match target {
            Target::Sqs(url) => Arc::new(sqs::SqsTarget::new(
                aws_sdk_sqs::Client::new(aws_settings(&mut sdk).await),
                url.clone(),
            )),
            Target::Lambda(function) => Arc::new(lambda::LambdaTarget::new(
                aws_sdk_lambda::Client::new(aws_settings(&mut sdk).await),
                function.clone(),
            )),
            Target::States(arn) => Arc::new(states::StatesTarget::new(
                aws_sdk_sfn::Client::new(aws_settings(&mut sdk).await),
                arn.clone(),
            )),
            Target::Events(bus) => Arc::new(events::EventsTarget::new(
                aws_sdk_eventbridge::Client::new(aws_settings(&mut sdk).await),
                bus.clone(),
            )),
            Target::Ecs(spec) => Arc::new(ecs::EcsTarget::new(
                aws_sdk_ecs::Client::new(aws_settings(&mut sdk).await),
                spec.clone(),
            )),
            Target::Http(url) => {
                let secret = webhook_secret.ok_or_else(|| KindError::UnsignedHttp {
                    kind: kind.clone(),
                    url: url.clone(),
                })?;
                Arc::new(http::HttpTarget::new(url.clone(), secret.as_bytes())?)
            }
            Target::Command(cmd) => {
                let Some(host) = &commands else {
                    return Err(KindError::CommandNotHere(kind.clone()));
                };
                Arc::new(command::CommandTarget::new(
                    cmd.clone(),
                    host.publisher.clone(),
                    host.tasks.clone(),
                    host.stop.clone(),
                ))
            }
        };
        out.insert(kind.clone(), d);
    }
    Ok(out)
}

/// The AWS settings, read the first time a target needs them.
async fn aws_settings(sdk: &mut Option<aws_config::SdkConfig>) -> &aws_config::SdkConfig {
    let config = match sdk.take() {
        Some(c) => c,
        None => crate::aws::sdk_config().await,
    };
    sdk.insert(config)
}

impl Dispatcher {
    pub fn new(
        demo: Arc<dyn JobQueue>,
        kinds: Kinds,
        targets: BTreeMap<String, Arc<dyn Deliver>>,
        settings: DispatchSettings,
        publisher: Publisher,
        tasks: TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> Dispatcher {
        Dispatcher {
            demo,
            targets,
            kinds,
            settings,
            publisher,
            tasks,
            stop,
        }
    }

    /// True for a kind configured with a target here.
    pub fn has_target(&self, kind: &str) -> bool {
        self.targets.contains_key(kind)
    }

    pub fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// The message for one hand-over of `job`.
    pub fn message(&self, job: &JobRecord, base_url: &str) -> JobMessage {
        let job_id = job.snapshot.job_id.clone();
        let now = self.publisher.clock().now().timestamp();
        JobMessage {
            message_type: "job",
            worker_token: self.settings.tokens.issue_worker(&job_id, now),
            update_url: format!("{}/jobs/{job_id}/updates", base_url.trim_end_matches('/')),
            kind: job.kind.clone(),
            input: job.input.clone(),
            created_at: rfc3339(job.created_at),
            attempt: job.attempt.max(1),
            heartbeat_timeout_seconds: self.settings.heartbeat_timeout.as_secs(),
            traceparent: crate::telemetry::current_traceparent(),
            job_id,
        }
    }

    /// Takes up a worker-kind job whose hand-over never completed (a
    /// previous process died first): takes the lease, counts the attempt,
    /// hands it over again. Returns false when another process holds it.
    pub async fn redeliver(&self, job: &JobRecord, base_url: &str) -> Result<bool, QueueError> {
        let now = self.publisher.clock().now().timestamp();
        let until = now + HANDOVER_LEASE.as_secs() as i64;
        match self
            .publisher
            .store()
            .hand_over(&job.snapshot.job_id, &self.settings.owner, until, now)
            .await
        {
            Ok(taken) => self.enqueue(&taken, base_url).await.map(|_| true),
            Err(StoreError::Conflict { .. } | StoreError::Terminal { .. }) => Ok(false),
            Err(e) => Err(QueueError::Unavailable(e.to_string())),
        }
    }

    async fn hand_over(&self, job: &JobRecord, base_url: &str) -> Result<(), QueueError> {
        let mut span = crate::telemetry::child(
            format!("dispatch {}", job.kind),
            crate::telemetry::SpanKind::Producer,
        );
        span.set("jobcast.job.id", job.snapshot.job_id.as_str());
        span.set("jobcast.job.kind", job.kind.as_str());
        span.set("jobcast.job.attempt", u64::from(job.attempt.max(1)));
        if let Some(scheme) = self.kinds.0.get(job.kind.as_str()).map(Target::scheme) {
            span.set("jobcast.target", scheme);
        }
        let done = crate::telemetry::within(&span, self.hand_over_traced(job, base_url)).await;
        if let Err(e) = &done {
            span.fail(e.to_string());
        }
        span.end();
        done
    }

    async fn hand_over_traced(&self, job: &JobRecord, base_url: &str) -> Result<(), QueueError> {
        let kind = job.kind.as_str();
        let Some(target) = self.targets.get(kind).cloned() else {
            return Err(QueueError::Unavailable(format!(
                "no target for kind '{kind}'"
            )));
        };
        let scheme = self.kinds.0.get(kind).map(Target::scheme).unwrap_or("");
        let message = self.message(job, base_url);
        let body =
            serde_json::to_string(&message).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        if !RETRIED.contains(&scheme) {
            target.deliver(&message, &body).await.map_err(|e| match e {
                DispatchError::Fatal(m) => QueueError::Refused(m),
                DispatchError::Retryable(m) => QueueError::Unavailable(m),
            })?;
            self.confirm(&message.job_id, scheme).await;
            return Ok(());
        }
        // Retried on the webhook schedule, then the job fails.
        let run = retry_hand_over(
            target,
            message,
            self.settings.clone(),
            self.publisher.clone(),
            scheme,
        );
        if self.settings.retry.background {
            let stop = self.stop.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = run => {}
                    // Left to the next start, which hands it over again.
                    _ = stop.cancelled() => {}
                }
            });
        } else {
            run.await;
        }
        Ok(())
    }

    async fn confirm(&self, job_id: &str, scheme: &str) {
        tracing::info!(job_id, target = scheme, "job handed to its worker");
        record_hand_over(&self.publisher, job_id, self.settings.start_timeout).await;
    }
}

/// Targets whose hand-overs are retried with backoff (the job accepted at
/// once), then end `dispatch_failed`: a signed POST, and the services whose
/// calls are safe to repeat for one job (an execution named by the job, a
/// task started with the job's client token) or whose consumers tell
/// repeats apart (events). The others are tried once while `POST /jobs`
/// waits, a failure answered to the caller.
const RETRIED: [&str; 4] = ["http", "states", "events", "ecs"];

/// Hands the job message over until the target takes it or the attempts
/// run out; then the job ends `failed` `dispatch_failed` (at once for a
/// refusal that will not change). Every retry is a new hand-over
/// (`attempt` + 1).
async fn retry_hand_over(
    target: Arc<dyn Deliver>,
    mut message: JobMessage,
    settings: DispatchSettings,
    publisher: Publisher,
    scheme: &'static str,
) {
    let DispatchSettings {
        retry: policy,
        owner,
        start_timeout,
        ..
    } = settings;
    let job_id = message.job_id.clone();
    let mut last = String::new();
    for n in 0..policy.max_attempts.max(1) {
        if n > 0 {
            tokio::time::sleep(crate::retry::backoff(
                n,
                policy.base_backoff,
                policy.max_backoff,
            ))
            .await;
            let now = publisher.clock().now().timestamp();
            let until = now + HANDOVER_LEASE.as_secs() as i64;
            match publisher
                .store()
                .hand_over(&job_id, &owner, until, now)
                .await
            {
                Ok(job) => message.attempt = job.attempt,
                // Ended meanwhile (cancelled) or taken by another process.
                Err(StoreError::Terminal { .. } | StoreError::Conflict { .. }) => return,
                Err(e) => {
                    tracing::warn!(job_id, error = %e, "could not record a hand-over attempt")
                }
            }
        }
        let body = match serde_json::to_string(&message) {
            Ok(b) => b,
            Err(e) => {
                last = e.to_string();
                break;
            }
        };
        match target.deliver(&message, &body).await {
            Ok(()) => {
                tracing::info!(
                    job_id,
                    attempt = message.attempt,
                    target = scheme,
                    "job handed to its worker"
                );
                record_hand_over(&publisher, &job_id, start_timeout).await;
                return;
            }
            Err(DispatchError::Fatal(e)) => {
                last = e;
                break;
            }
            Err(DispatchError::Retryable(e)) => {
                tracing::warn!(job_id, attempt = message.attempt, error = %e, "worker did not take the job; retrying");
                last = e;
            }
        }
    }
    tracing::error!(job_id, error = %last, "giving up handing the job to its worker");
    fail_job(
        &publisher,
        &job_id,
        "dispatch_failed",
        format!("the worker did not take the job: {last}"),
    )
    .await;
}

/// Records that the worker has the job, with its start deadline.
async fn record_hand_over(publisher: &Publisher, job_id: &str, start_timeout: Duration) {
    let start_by = (!start_timeout.is_zero())
        .then(|| publisher.clock().now().timestamp() + start_timeout.as_secs() as i64);
    if let Err(e) = publisher.store().mark_dispatched(job_id, start_by).await {
        tracing::warn!(job_id, error = %e, "could not record the hand-over");
    }
}

/// Ends a job `failed` with `code`, unless it has ended already.
pub(crate) async fn fail_job(publisher: &Publisher, job_id: &str, code: &str, message: String) {
    let mut u = JobUpdate::status(Status::Failed);
    u.message = Some(message.clone());
    u.error = Some(JobError {
        code: code.into(),
        message,
    });
    match publisher.publish(job_id, u).await {
        Ok(_) | Err(StoreError::Terminal { .. }) => {}
        Err(e) => tracing::error!(job_id, code, error = %e, "could not record the job's failure"),
    }
}

#[async_trait]
impl JobQueue for Dispatcher {
    async fn enqueue(&self, job: &JobRecord, base_url: &str) -> Result<(), QueueError> {
        if job.kind == DEMO_KIND {
            self.demo.enqueue(job, base_url).await
        } else {
            self.hand_over(job, base_url).await
        }
    }

    fn cancel_hint(&self, job_id: &str) {
        self.demo.cancel_hint(job_id);
    }

    fn kinds(&self) -> Vec<String> {
        self.kinds.names()
    }

    fn too_large(&self, job: &JobRecord, base_url: &str) -> Option<String> {
        let target = self.targets.get(&job.kind)?;
        let limit = target.max_message_bytes()?;
        let body = serde_json::to_string(&self.message(job, base_url)).ok()?;
        let size = target.message_size(&body);
        (size > limit).then(|| {
            format!(
                "kind {}'s target takes job messages of at most {limit} bytes; this job's would be {size}: make the input smaller, or pass a reference to it (a key in your storage)",
                job.kind
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_list_keeps_a_targets_own_commas() {
        let kinds = Kinds::parse_list(
            "train=ecs:jobs/train?launchType=FARGATE&subnets=subnet-1,subnet-2&securityGroups=sg-1,sg-2, export=lambda:exporter",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        match kinds.0.get("train") {
            Some(Target::Ecs(spec)) => {
                assert_eq!(spec.subnets, ["subnet-1", "subnet-2"]);
                assert_eq!(spec.security_groups, ["sg-1", "sg-2"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            kinds.0.get("export"),
            Some(&Target::Lambda("exporter".into()))
        );
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("sqs:https://sqs.eu-west-1.amazonaws.com/1/q"),
            Ok(Target::Sqs(
                "https://sqs.eu-west-1.amazonaws.com/1/q".into()
            ))
        );
        assert_eq!(
            Target::parse("lambda:my-fn"),
            Ok(Target::Lambda("my-fn".into()))
        );
        assert_eq!(
            Target::parse("command:python3 worker.py"),
            Ok(Target::Command("python3 worker.py".into()))
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:9000/jobs"),
            Ok(Target::Http("http://127.0.0.1:9000/jobs".into()))
        );
        let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:render";
        assert_eq!(
            Target::parse(&format!("states:{machine}")),
            Ok(Target::States(machine.into()))
        );
        assert_eq!(
            Target::parse("events:default"),
            Ok(Target::Events("default".into()))
        );
        assert!(matches!(
            Target::parse("ecs:jobs/encode:3?container=worker"),
            Ok(Target::Ecs(spec)) if spec.cluster == "jobs" && spec.container.as_deref() == Some("worker")
        ));
        for bad in [
            "states:render",
            "states:arn:aws:lambda:us-east-1:1:function:f",
            "events:",
            "ecs:jobs",
            "ecs:jobs/encode?launchType=FARGATE",
            "",
            "sqs:",
            "sqs:queue-name",
            "lambda:",
            "ftp://x",
            "command: ",
            "export",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kind_lists() {
        let k = Kinds::parse_list("export=lambda:exp, encode=command:./encode.sh").unwrap();
        assert_eq!(k.names(), vec!["demo", "encode", "export"]);
        assert_eq!(Kinds::parse_list("demo=lambda:x"), Err(KindError::Demo));
        assert_eq!(
            Kinds::parse_list("a=lambda:x,a=lambda:y"),
            Err(KindError::Twice("a".into()))
        );
        assert!(matches!(
            Kinds::parse_list("Bad Kind=lambda:x"),
            Err(KindError::BadName(_))
        ));
        let e = Kinds::parse_list("export").unwrap_err();
        assert!(e.to_string().contains("KIND=TARGET"), "{e}");
    }
}
