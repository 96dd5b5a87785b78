//! The jobs HTTP API (payload format 2.0): `POST /jobs` (queued on SQS),
//! `GET /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}` and
//! `POST /jobs/{jobId}/updates`.

use jobcast_lambdas::{Error, JobsDoor, Wiring, init_tracing, run_jobs_api};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env()
        .await?
        .with_files_from_env()?
        .with_kinds_from_env()
        .await?;
    run_jobs_api(JobsDoor::Api, wiring).await
}
