//! An example worker for a job kind of your own, as a Lambda function a
//! `lambda:` target invokes with the job message as its event. Written with
//! `jobcast_worker`, the Rust counterpart of the Python and Node
//! worker libraries. Built only with `--features example-worker`; the smoke
//! test runs it under `cargo lambda watch`.
//!
//! Input: `{"steps": 1..100 (default 3), "stopAfter": n (optional)}`; with
//! `stopAfter` it reports n steps and then goes quiet, as a crashed worker
//! would, for the liveness sweep to find.

use jobcast_lambdas::{Error, LambdaEvent, init_tracing, run, service_fn};
use jobcast_worker::{Job, ReportError};
use serde_json::{Value, json};

async fn work(job: &Job) -> Result<Value, ReportError> {
    let steps = job.input["steps"].as_u64().unwrap_or(3).clamp(1, 100);
    let stop_after = job.input["stopAfter"].as_u64();
    for n in 1..=steps {
        if stop_after.is_some_and(|s| n > s) {
            return Ok(json!({"jobId": job.id, "stoppedAfter": n - 1}));
        }
        let message = format!("step {n} of {steps}");
        job.progress(Some(100.0 * n as f64 / steps as f64), Some(&message))
            .await?;
    }
    job.succeed(Some(json!({"steps": steps})), None).await?;
    Ok(json!({"jobId": job.id, "steps": steps}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let job = Job::from_value(event.payload)?;
        tracing::info!(job_id = %job.id, attempt = job.attempt, "working");
        match work(&job).await {
            Ok(v) => Ok::<Value, Error>(v),
            // Cancelled or expired: nothing more to do, and nothing to retry.
            Err(e @ ReportError::Ended { .. }) => {
                tracing::info!(job_id = %job.id, "{e}");
                Ok(json!({"jobId": job.id, "ended": true}))
            }
            Err(e) => Err(e.into()),
        }
    }))
    .await
}
