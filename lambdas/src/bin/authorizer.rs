//! The `REQUEST` authorizer of `$connect` when owners are on: verifies the
//! JWT a connection brings (`?access_token=` or `Sec-WebSocket-Protocol:
//! jobcast, <JWT>`) with the same code `serve` runs, and passes its `sub`
//! on as the owner in every later event's `requestContext.authorizer`. No
//! token is allowed (the connection may still follow jobs by their job
//! tokens); a token that does not verify is denied (403).

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use jobcast_core::handlers::owners::{ConnectAuth, authorize, authorizer_response};
use jobcast_lambdas::{Error, LambdaEvent, init_tracing, owners_from_env, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let Some(verifier) = owners_from_env().await? else {
        return Err("the authorizer needs owners: set JOBCAST_JWT_ISSUER and JOBCAST_JWT_AUDIENCE (the template's JwtIssuer and JwtAudience)".into());
    };
    let verifier = &verifier;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            let e = event.payload;
            let decision = authorize(Some(verifier), &e.headers, &e.query_string_parameters);
            if let ConnectAuth::Refused(why) = &decision {
                tracing::info!(reason = %why, "denying $connect: sign-in token refused");
            }
            let arn = e.method_arn.unwrap_or_default();
            Ok::<_, Error>(authorizer_response(&decision, &arn))
        },
    ))
    .await
}
