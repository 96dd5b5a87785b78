//! `$connect`: checks the job token and records the subscription; 401/403 refuse the handshake.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use jobcast::handlers::websocket;
use jobcast_lambdas::{Error, LambdaEvent, Wiring, init_tracing, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = &*Box::leak(Box::new(Wiring::from_env().await?));
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            let deps = wiring.deps(&wiring.endpoint_for(&event.payload));
            Ok::<ApiGatewayProxyResponse, Error>(websocket::connect(&deps, event.payload).await)
        },
    ))
    .await
}
