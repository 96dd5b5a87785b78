//! `--require-sigv4`: the real AWS SDK signing with the right key works;
//! the wrong secret, a foreign key or no signature at all get the typed
//! 403 `ForbiddenException` AWS answers, and nothing is delivered.

use crate::common::*;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::StreamExt;
use jobcast::gateway::sigv4::Verifier;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "AKIDJOBCASTLOCAL";
const SECRET: &str = "right-secret-key";

#[tokio::test]
async fn signed_calls_pass_and_wrong_or_missing_signatures_are_forbidden() {
    let srv =
        start_with(|c| c.gateway.require_sigv4 = Some(Verifier::new(KEY.into(), SECRET.into())))
            .await;
    let (mut client, id) = srv.connected().await;
    let endpoint = srv.url("/dev");
    let right = sdk_as(endpoint.clone(), RetryConfig::disabled(), KEY, SECRET);
    let wrong_secret = sdk_as(
        endpoint.clone(),
        RetryConfig::disabled(),
        KEY,
        "not-the-secret",
    );
    let foreign_key = sdk_as(
        endpoint.clone(),
        RetryConfig::disabled(),
        "AKIDSOMEONEELSE",
        SECRET,
    );

    // Connection ids carry '=' (and may carry '+' and '/'), which the signer
    // percent-encodes twice in its canonical request: the check must agree.
    assert!(id.ends_with('='));
    right
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"signed":true}"#))
        .send()
        .await
        .expect("a correctly signed post");
    match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), r#"{"signed":true}"#),
        other => panic!("{other:?}"),
    }
    right
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("a correctly signed get");

    for (who, api) in [
        ("wrong secret", &wrong_secret),
        ("foreign key", &foreign_key),
    ] {
        let err = api
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new("must not arrive"))
            .send()
            .await
            .expect_err(who)
            .into_service_error();
        assert!(
            matches!(err, PostToConnectionError::ForbiddenException(_)),
            "{who}: {err:?}"
        );
        let err = api
            .get_connection()
            .connection_id(&id)
            .send()
            .await
            .expect_err(who)
            .into_service_error();
        assert!(
            matches!(err, GetConnectionError::ForbiddenException(_)),
            "{who}: {err:?}"
        );
    }

    // No signature at all.
    let res = srv
        .http
        .post(srv.url(&format!(
                "/dev/@connections/{}",
                id.replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            )))
        .body("unsigned")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-amzn-errortype"], "ForbiddenException");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["message"], "Missing Authentication Token");

    // Nothing forbidden was delivered; a later signed post still is.
    right
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("after"))
        .send()
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "after"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        srv.metric("jobcast_management_requests_total{method=\"POST\",status=\"403\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn without_the_flag_any_signature_is_accepted() {
    let srv = start().await;
    let (_client, id) = srv.connected().await;
    let api = sdk_as(
        srv.url("/dev"),
        RetryConfig::disabled(),
        "ANYKEY",
        "any-secret",
    );
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hi"))
        .send()
        .await
        .expect("no verification by default, as serverless-offline users expect");
}
