//! A WebSocket handler and a `REQUEST` authorizer that misbehave on
//! demand, for checking that `jobcast emulate` answers each case as API
//! Gateway does (tests/emulate/edges.yaml wires them, and
//! lambdas/tests/runner.rs runs it under emulate's own runner). Built with
//! the other binaries; no template deploys it.
//!
//! `$connect` reads its query: `status=N` answers N, `protocol=P` selects
//! subprotocol P, `fail=1` fails the invocation, `post=1` posts to its own
//! connection through `@connections` (at `http://` + domainName + stage)
//! and answers that post's status (410 while `$connect` runs, as in AWS). Messages by `action`:
//! `echo` answers the body, `slow` sleeps past the route's timeout, `boom`
//! fails, `whoami` answers `requestContext.authorizer`, `post` posts
//! `hello` to its own connection (the AWS SDK's management client) and
//! answers `posted N` with that post's status. As the authorizer
//! (an event with `"type": "REQUEST"`), the `Auth` header decides: `allow`
//! (principal `alice`, context `{"plan": "pro"}`), `deny`, anything else
//! fails with `Unauthorized`.

use jobcast_lambdas::{Error, LambdaEvent, init_tracing, run, service_fn};
use serde_json::{Value, json};
use std::time::Duration;

fn authorize(event: &Value) -> Result<Value, Error> {
    let effect = match event["headers"]["Auth"]
        .as_str()
        .or(event["headers"]["auth"].as_str())
    {
        Some("allow") => "Allow",
        Some("deny") => "Deny",
        _ => return Err("Unauthorized".into()),
    };
    Ok(json!({
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect,
                "Resource": event["methodArn"],
            }],
        },
        "context": { "plan": "pro" },
    }))
}

/// Posts to the connection `event` is about; the HTTP status it got.
async fn post_to_self(event: &Value) -> u16 {
    use jobcast_core::push::{ManagementApiPusher, Payload, PushError, Pusher};
    let c = &event["requestContext"];
    let endpoint = format!(
        "http://{}/{}",
        c["domainName"].as_str().unwrap_or_default(),
        c["stage"].as_str().unwrap_or_default()
    );
    let config = jobcast_core::aws::sdk_config().await;
    let pusher = ManagementApiPusher::new(&config, &endpoint);
    let id = c["connectionId"].as_str().unwrap_or_default();
    match pusher.post(id, Payload::text("hello".into())).await {
        Ok(()) => 200,
        Err(PushError::Gone) => 410,
        Err(e) => {
            tracing::warn!(error = %e, "post to self failed");
            500
        }
    }
}

async fn connect(event: &Value) -> Result<Value, Error> {
    let q = &event["queryStringParameters"];
    if q["fail"] == "1" {
        return Err("connect failed on purpose".into());
    }
    if q["post"] == "1" {
        return Ok(json!({ "statusCode": post_to_self(event).await }));
    }
    let status: u16 = q["status"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut answer = json!({ "statusCode": status, "body": "connect answered" });
    if let Some(p) = q["protocol"].as_str() {
        answer["headers"] = json!({ "Sec-WebSocket-Protocol": p });
    }
    Ok(answer)
}

async fn message(event: &Value) -> Result<Value, Error> {
    let body: Value = event["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    match body["action"].as_str() {
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(json!({ "statusCode": 200, "body": "too late" }))
        }
        Some("boom") => Err("boom on purpose".into()),
        Some("post") => Ok(json!({
            "statusCode": 200,
            "body": format!("posted {}", post_to_self(event).await),
        })),
        Some("whoami") => Ok(json!({
            "statusCode": 200,
            "body": event["requestContext"]["authorizer"].to_string(),
        })),
        _ => Ok(json!({ "statusCode": 200, "body": event["body"] })),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let e = event.payload;
        if e["type"] == "REQUEST" {
            return authorize(&e);
        }
        match e["requestContext"]["eventType"].as_str() {
            Some("CONNECT") => connect(&e).await,
            Some("DISCONNECT") => Ok(json!({ "statusCode": 200 })),
            _ => message(&e).await,
        }
    }))
    .await
}
