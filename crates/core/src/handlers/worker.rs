//! Job kinds and the code that runs them. Every progress step goes through
//! the `Publisher`, so subscribers see it wherever the worker runs.

use crate::protocol::{JobError, Status};
use crate::publish::Publisher;
use crate::store::{JobRecord, JobUpdate, Liveness, StoreError};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Job kinds this build knows how to run.
pub const KINDS: [&str; 1] = ["demo"];

/// Input of the built-in `demo` kind: `steps` steps of `step_ms` each,
/// optionally failing at step `fail_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoInput {
    pub steps: u32,
    pub step_ms: u64,
    pub fail_at: Option<u32>,
}

/// Why a job's kind or input is refused (a 400 `bad_input` problem, or a
/// demo job failed `bad_input`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input must be a JSON object")]
    NotAnObject,
    #[error("unknown input field '{0}'; demo accepts steps, stepMs and failAt")]
    UnknownField(String),
    #[error("{name} must be an integer from {lo} to {hi}, got {got}")]
    OutOfRange {
        name: &'static str,
        lo: u64,
        hi: u64,
        got: String,
    },
    #[error(
        "unknown job kind '{kind}'; this server accepts: {accepted} (add yours with --kind {kind}=TARGET or JOBCAST_KINDS)"
    )]
    UnknownKind { kind: String, accepted: String },
}

impl DemoInput {
    /// Validates the input object; out-of-range values are errors, never clamped.
    pub fn parse(input: &Value) -> Result<DemoInput, InputError> {
        let obj = match input {
            Value::Object(o) => o,
            Value::Null => return Ok(DemoInput::default()),
            _ => return Err(InputError::NotAnObject),
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["steps", "stepMs", "failAt"].contains(&k.as_str()))
        {
            return Err(InputError::UnknownField(k.clone()));
        }
        let int = |name: &'static str, lo: u64, hi: u64| -> Result<Option<u64>, InputError> {
            match obj.get(name) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                    _ => Err(InputError::OutOfRange {
                        name,
                        lo,
                        hi,
                        got: v.to_string(),
                    }),
                },
            }
        };
        let steps = int("steps", 1, 1000)?.unwrap_or(10) as u32;
        let step_ms = int("stepMs", 0, 60_000)?.unwrap_or(500);
        let fail_at = int("failAt", 1, steps as u64)?.map(|n| n as u32);
        Ok(DemoInput {
            steps,
            step_ms,
            fail_at,
        })
    }
}

impl Default for DemoInput {
    fn default() -> DemoInput {
        DemoInput {
            steps: 10,
            step_ms: 500,
            fail_at: None,
        }
    }
}

/// Checks a job's kind and input before it is accepted. `kinds` lists every
/// accepted kind; the user's own kinds judge their input themselves.
pub fn validate(kind: &str, input: &Value, kinds: &[String]) -> Result<(), InputError> {
    match kind {
        crate::protocol::DEMO_KIND => DemoInput::parse(input).map(|_| ()),
        k if kinds.iter().any(|e| e == k) => Ok(()),
        other => Err(InputError::UnknownKind {
            kind: other.to_string(),
            accepted: kinds.join(", "),
        }),
    }
}

/// Most lost jobs one sweep ends.
pub const SWEEP_BATCH: usize = 1000;

/// The liveness sweep: ends `failed` every job whose deadline has passed:
/// `worker_lost` when its worker had reported and then fell silent past
/// the heartbeat timeout, `not_started` when no worker reported on it
/// within the start timeout of its hand-over. The update is conditional on
/// the deadline still being past, so a worker reporting at the last moment
/// wins, and two sweepers never both end one job. Returns how many jobs it
/// ended.
pub async fn sweep_lost(publisher: &Publisher, now: i64) -> Result<usize, StoreError> {
    // Deadlines are whole seconds (the last report's second plus the
    // timeout): one is past only once the whole second after it has begun,
    // so no job is ended before its worker has had the full timeout.
    let due = now - 1;
    let ids = publisher.store().lost_jobs(due, SWEEP_BATCH).await?;
    let mut ended = 0;
    for job_id in ids {
        let started = match publisher.store().get_job(&job_id).await {
            Ok(Some(job)) => job.worker_seen,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "could not read a job past its deadline");
                continue;
            }
        };
        let (code, message, detail) = if started {
            (
                "worker_lost",
                "worker lost",
                "no update or heartbeat from the worker within heartbeatTimeoutSeconds",
            )
        } else {
            (
                "not_started",
                "no worker started the job",
                "no worker reported on the job within the start timeout of its hand-over",
            )
        };
        let mut u = JobUpdate::status(Status::Failed);
        u.message = Some(message.into());
        u.error = Some(JobError {
            code: code.into(),
            message: detail.into(),
        });
        u.liveness = Liveness::ExpiredBy(due);
        match publisher.publish(&job_id, u).await {
            Ok(_) => {
                ended += 1;
                if started {
                    publisher.metrics().worker_lost();
                } else {
                    publisher.metrics().not_started();
                }
                tracing::warn!(job_id, code, "the job ended failed: {message}");
            }
            Err(
                StoreError::Terminal { .. } | StoreError::Conflict { .. } | StoreError::NotFound(_),
            ) => {}
            Err(e) => tracing::warn!(job_id, error = %e, "could not end a lost job"),
        }
    }
    Ok(ended)
}

/// Runs one job to a terminal state, publishing every step. `cancel` fires
/// when `DELETE /jobs/{id}` asks for the job to stop.
pub async fn run_job(
    publisher: &Publisher,
    job: &JobRecord,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let job_id = job.snapshot.job_id.as_str();
    if job.cancel_requested || cancel.is_cancelled() {
        return finish_cancelled(publisher, job_id).await;
    }
    match job.kind.as_str() {
        "demo" => run_demo(publisher, job, cancel).await,
        other => {
            let mut u = JobUpdate::status(Status::Failed);
            u.error = Some(JobError {
                code: "unknown_kind".into(),
                message: format!(
                    "the demo worker runs only demo jobs; kind '{other}' reached it by mistake"
                ),
            });
            publisher.publish(job_id, u).await.map(|_| ())
        }
    }
}

async fn finish_cancelled(publisher: &Publisher, job_id: &str) -> Result<(), StoreError> {
    let mut u = JobUpdate::status(Status::Cancelled);
    u.message = Some("cancelled".into());
    match publisher.publish(job_id, u).await {
        Ok(_) | Err(StoreError::Terminal { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long a worker keeps retrying an update the store cannot take.
const STORE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Publishes, retrying with backoff while the store is unavailable (a
/// DynamoDB outage, throttling), so a running job carries on by itself once
/// the store is back. Gives up after `STORE_RETRY_FOR`, or when cancelled.
async fn publish_retrying(
    publisher: &Publisher,
    job_id: &str,
    update: JobUpdate,
    cancel: &CancellationToken,
) -> Result<(JobRecord, crate::publish::PublishReport), StoreError> {
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        match publisher.publish(job_id, update.clone()).await {
            Err(StoreError::Unavailable(e)) if started.elapsed() < STORE_RETRY_FOR => {
                attempt += 1;
                let wait = crate::retry::backoff(
                    attempt,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                );
                tracing::warn!(job_id, attempt, error = %e, "store unavailable; retrying the update");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return Err(StoreError::Unavailable(e)),
                }
            }
            other => return other,
        }
    }
}

/// Appends one line to a demo job's `log` stream, before the update it
/// goes with (as a worker's request carries both), and pushes it.
async fn demo_log(publisher: &Publisher, job_id: &str, line: String) {
    let append = [crate::store::streams::StreamAppend::new(
        "log",
        vec![Value::String(line)],
    )];
    if let Err(e) = publisher.append(job_id, &append, None).await
        && !matches!(e, StoreError::Terminal { .. })
    {
        tracing::warn!(job_id, error = %e, "could not append to the demo job's log");
    }
}

async fn run_demo(
    publisher: &Publisher,
    job: &JobRecord,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let job_id = job.snapshot.job_id.as_str();
    let input = match DemoInput::parse(&job.input) {
        Ok(i) => i,
        Err(e) => {
            let mut u = JobUpdate::status(Status::Failed);
            u.error = Some(JobError {
                code: "bad_input".into(),
                message: e.to_string(),
            });
            return publisher.publish(job_id, u).await.map(|_| ());
        }
    };
    // Resume where a previous attempt stopped (a redelivered queue message).
    let done = (job.snapshot.percent / 100.0 * input.steps as f64).round() as u32;
    for k in done.min(input.steps) + 1..=input.steps {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(input.step_ms)) => {}
            _ = cancel.cancelled() => return finish_cancelled(publisher, job_id).await,
        }
        if input.fail_at == Some(k) {
            let mut u = JobUpdate::status(Status::Failed);
            u.message = Some(format!("failed at step {k}/{}", input.steps));
            u.error = Some(JobError {
                code: "demo_failure".into(),
                message: format!("demo job failed at step {k} as requested by failAt"),
            });
            return publisher.publish(job_id, u).await.map(|_| ());
        }
        demo_log(publisher, job_id, format!("step {k}/{}", input.steps)).await;
        let mut u = JobUpdate::status(Status::Running);
        // Two decimals: what a bar can show (46.67, not 46.666666666666664).
        u.percent = Some((10_000.0 * k as f64 / input.steps as f64).round() / 100.0);
        u.message = Some(format!("step {k}/{}", input.steps));
        match publish_retrying(publisher, job_id, u, cancel).await {
            // The stored record carries a cancel request made through the
            // store alone (by a jobs API in another process).
            Ok((record, _)) if record.cancel_requested => {
                return finish_cancelled(publisher, job_id).await;
            }
            Ok(_) => {}
            // Cancelled between our check and this update: the job is over.
            Err(StoreError::Terminal { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    demo_log(publisher, job_id, "done".into()).await;
    let mut u = JobUpdate::status(Status::Succeeded);
    u.percent = Some(100.0);
    u.message = Some("done".into());
    u.result = Some(json!({ "steps": input.steps }));
    match publish_retrying(publisher, job_id, u, cancel).await {
        Ok(_) | Err(StoreError::Terminal { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_input_defaults_and_ranges() {
        assert_eq!(DemoInput::parse(&json!({})), Ok(DemoInput::default()));
        assert_eq!(
            DemoInput::parse(&json!({"steps": 3, "stepMs": 0, "failAt": 3})),
            Ok(DemoInput {
                steps: 3,
                step_ms: 0,
                fail_at: Some(3)
            })
        );
        for bad in [
            json!({"failAt": null}),
            json!({"stepMs": null}),
            json!({"steps": 0}),
            json!({"steps": 1001}),
            json!({"steps": 2.5}),
            json!({"steps": "5"}),
            json!({"stepMs": 60001}),
            json!({"stepMs": -1}),
            json!({"steps": 3, "failAt": 4}),
            json!({"failAt": 0}),
            json!({"other": 1}),
            json!([1]),
        ] {
            assert!(DemoInput::parse(&bad).is_err(), "{bad}");
        }
    }
}

/// The message a jobs API puts on the job queue.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedJob {
    pub job_id: String,
}

/// Runs each queued job of an SQS batch. Failures are reported per message
/// (`batchItemFailures`), so one bad message does not fail the others; the
/// queue's redrive policy sends a message that keeps failing to its DLQ.
pub async fn handle_sqs(
    publisher: &Publisher,
    event: aws_lambda_events::sqs::SqsEvent,
) -> aws_lambda_events::sqs::SqsBatchResponse {
    let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if let Err(why) = run_queued(publisher, record.body.as_deref()).await {
            tracing::error!(message_id = %id, error = %why, "queued job failed; reporting it for retry");
            let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Why one queued job could not be run (the message goes back for retry).
#[derive(Debug, thiserror::Error)]
enum QueuedError {
    #[error("malformed queue message ({0}); expected {{\"jobId\": \"...\"}}")]
    Malformed(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn run_queued(publisher: &Publisher, body: Option<&str>) -> Result<(), QueuedError> {
    let queued: QueuedJob =
        serde_json::from_str(body.unwrap_or("")).map_err(QueuedError::Malformed)?;
    let job = publisher.store().get_job(&queued.job_id).await?;
    let Some(job) = job else {
        // Expired or never stored: nothing left to run.
        tracing::warn!(job_id = %queued.job_id, "queued job not found; dropping it");
        return Ok(());
    };
    if !job.snapshot.status.is_terminal() {
        run_job(publisher, &job, &CancellationToken::new()).await?;
    }
    // A webhook still owed (its delivery was cut short by an earlier
    // invocation). One that the publish above delivered is settled already.
    if let Some(w) = publisher.webhooks()
        && let Ok(Some(done)) = publisher.store().get_job(&queued.job_id).await
        && done.webhook_owed()
    {
        w.settle(&done).await;
    }
    Ok(())
}
