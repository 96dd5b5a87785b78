//! The liveness sweep, run on a schedule: every running job of a worker
//! kind whose worker sent no update or heartbeat within
//! `heartbeatTimeoutSeconds` ends `failed` `worker_lost` (subscribers
//! pushed, webhook delivered). Lost jobs are found through the table's
//! sparse deadline index (GSI2), never a Scan; the update is conditional on
//! the deadline still being past, so overlapping runs end each job once.
//!
//! With coalescing on, the functions that publish also invoke it with
//! `{"jobcastFlush": …}` to push a window's newest update when it ends.

use jobcast_core::handlers::worker;
use jobcast_lambdas::{
    Error, LambdaEvent, Wiring, coalescing, init_tracing, run, service_fn, within_invocation,
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?.with_files_from_env()?;
    let deps = wiring.deps(&wiring.fixed_endpoint()?);
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let flush = coalescing::flush(&deps.publisher, &event.payload);
        if let Some(done) = within_invocation(&event.context, flush).await {
            return done;
        }
        let now = deps.clock.now().timestamp();
        let sweep = worker::sweep_lost(&deps.publisher, now);
        let ended = within_invocation(&event.context, sweep).await?;
        if ended > 0 {
            tracing::warn!(ended, "jobs ended worker_lost");
        }
        Ok::<Value, Error>(json!({ "ended": ended }))
    }))
    .await
}
