//! Runs queued `demo` jobs from SQS, publishing every step; reports
//! per-message failures so one bad message does not fail its batch.
//!
//! Jobs of your own kinds never come here: they go to their own targets
//! (`JOBCAST_KINDS`).

use aws_lambda_events::sqs::SqsEvent;
use jobcast_lambdas::{
    Error, LambdaEvent, Wiring, init_tracing, run, service_fn, within_invocation,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?.with_files_from_env()?;
    // Fails at start, not per event, when the endpoint is missing.
    wiring.fixed_endpoint()?;
    let wiring = &wiring;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        within_invocation(&event.context, wiring.run_worker_batch(event.payload)).await
    }))
    .await
}
