//! The jobs HTTP API (payload format 2.0): `POST /jobs` (queued on SQS),
//! `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use jobcast::handlers::jobs_api;
use jobcast_lambdas::{
    Error, LambdaEvent, Wiring, init_tracing, run, service_fn, within_invocation,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let deps = Wiring::fixed_deps_from_env().await?;
    let deps = &deps;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let handled = jobs_api::handle(deps, event.payload);
            Ok::<ApiGatewayV2httpResponse, Error>(within_invocation(&event.context, handled).await)
        },
    ))
    .await
}
