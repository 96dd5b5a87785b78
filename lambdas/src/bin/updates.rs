//! The workers' door: `POST /jobs/{jobId}/updates` behind a Lambda
//! function URL (payload format 2.0, as the HTTP API's). Every other
//! request is refused here; the rest of the jobs API stays behind the HTTP
//! API and its authorizer.

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
            let handled = jobs_api::handle_updates(deps, event.payload);
            Ok::<ApiGatewayV2httpResponse, Error>(within_invocation(&event.context, handled).await)
        },
    ))
    .await
}
