//! The workers' door: `POST /jobs/{jobId}/updates` behind a Lambda
//! function URL (payload format 2.0, as the HTTP API's). Every other
//! request is refused here; the rest of the jobs API stays behind the HTTP
//! API and its authorizer.

use jobcast_lambdas::{Error, JobsDoor, Wiring, init_tracing, run_jobs_api};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?.with_files_from_env()?;
    run_jobs_api(JobsDoor::Updates, wiring).await
}
