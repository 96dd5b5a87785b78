//! The jobs HTTP API (payload format 2.0): `POST /jobs` (queued on SQS),
//! `GET /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}` and
//! `POST /jobs/{jobId}/updates`.

use jobcast_lambdas::{Error, JobsDoor, run_jobs_api};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_jobs_api(JobsDoor::Api).await
}
