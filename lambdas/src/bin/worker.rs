//! Runs queued jobs from SQS, publishing every step; reports per-message
//! failures so one bad message does not fail its batch.
//!
//! New job kinds go in `jobcast::handlers::worker::run_job`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use jobcast::handlers::worker;
use jobcast_lambdas::{Error, LambdaEvent, Wiring, init_tracing, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = &*Box::leak(Box::new(Wiring::from_env().await?));
    let deps = &*Box::leak(Box::new(wiring.deps(&wiring.fixed_endpoint()?)));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let webhooks = wiring.webhooks.as_deref();
        Ok::<SqsBatchResponse, Error>(
            worker::handle_sqs(&deps.publisher, webhooks, event.payload).await,
        )
    }))
    .await
}
