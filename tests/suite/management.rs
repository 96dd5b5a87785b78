//! The `@connections` management API (CONTRACT section 4) through the real
//! AWS SDK for Rust, pointed at the local gateway.

use crate::common::*;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

type Api = aws_sdk_apigatewaymanagement::Client;

/// One PostToConnection call, its typed error unwrapped.
async fn post(api: &Api, id: &str, data: impl Into<Vec<u8>>) -> Result<(), PostToConnectionError> {
    api.post_to_connection()
        .connection_id(id)
        .data(Blob::new(data.into()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error())
}

#[tokio::test]
async fn post_delivers_text_and_binary() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (mut c, id) = srv.connected().await;
    post(&api, &id, r#"{"hello":"world"}"#).await.expect("post");
    assert_eq!(
        next_json(&mut c).await,
        serde_json::json!({"hello": "world"})
    );
    post(&api, &id, vec![0xff, 0x00, 0xfe])
        .await
        .expect("post binary");
    let m = tokio::time::timeout(WAIT, c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::Binary(vec![0xff, 0x00, 0xfe].into()));
    assert_eq!(
        srv.metric("jobcast_management_requests_total{method=\"POST\",status=\"200\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn unknown_connection_is_a_typed_gone_exception() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let err = api
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    // The raw SDK error is a service error, not a transport or parse failure.
    match err {
        SdkError::ServiceError(e) => {
            assert!(matches!(e.err(), PostToConnectionError::GoneException(_)))
        }
        other => panic!("expected GoneException, got {other:?}"),
    }
    let err = api
        .get_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        GetConnectionError::GoneException(_)
    ));
    let err = api
        .delete_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        DeleteConnectionError::GoneException(_)
    ));
}

#[tokio::test]
async fn payload_limit_is_131072_bytes() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (mut c, id) = srv.connected().await;
    post(&api, &id, "a".repeat(131072))
        .await
        .expect("exactly 128 KiB is accepted");
    match tokio::time::timeout(WAIT, c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Message::Text(t) => assert_eq!(t.len(), 131072),
        other => panic!("{other:?}"),
    }
    let err = post(&api, &id, "a".repeat(131073)).await.unwrap_err();
    assert!(matches!(
        err,
        PostToConnectionError::PayloadTooLargeException(_)
    ));
    // The connection is unaffected.
    srv.connection_id(&mut c).await;
}

#[tokio::test]
async fn get_connection_is_parsed_by_the_sdk() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (_c, id) = srv.connected().await;
    let out = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get");
    let connected = out.connected_at().expect("connectedAt");
    let active = out.last_active_at().expect("lastActiveAt");
    assert!(active.secs() >= connected.secs());
    let now = chrono::Utc::now().timestamp();
    assert!((now - connected.secs()).abs() < 60);
    assert_eq!(
        out.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn delete_closes_with_1000_and_runs_disconnect() {
    let mut srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (mut c, id) = srv.connected().await;
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete");
    assert_eq!(close_code(&mut c).await, 1000);
    srv.expect_disconnect(&id, 1000, "management API").await;
    // Now gone for every verb.
    let err = post(&api, &id, "x").await.unwrap_err();
    assert!(matches!(err, PostToConnectionError::GoneException(_)));
}

#[tokio::test]
async fn what_was_posted_before_a_delete_arrives_before_the_close_frame() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let mut lost = 0;
    for round in 0..40 {
        let (mut c, id) = srv.connected().await;
        for i in 0..3 {
            post(&api, &id, format!("last words {round}.{i}"))
                .await
                .expect("post");
        }
        api.delete_connection()
            .connection_id(&id)
            .send()
            .await
            .expect("delete");
        let mut got = Vec::new();
        let code = loop {
            match tokio::time::timeout(WAIT, c.next()).await.expect("in time") {
                Some(Ok(Message::Text(t))) => got.push(t.to_string()),
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(code, Some(1000));
        if got.len() != 3 {
            lost += 1;
        }
    }
    assert_eq!(
        lost, 0,
        "rounds in which a posted message was lost to the close"
    );
}

#[tokio::test]
async fn custom_domain_path_without_stage() {
    let srv = start().await;
    let api = sdk(srv.url("")).await;
    let (mut c, id) = srv.connected().await;
    post(&api, &id, "via custom domain").await.expect("post");
    match tokio::time::timeout(WAIT, c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Message::Text(t) => assert_eq!(t.as_str(), "via custom domain"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn many_posts_arrive_in_order() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (mut c, id) = srv.connected().await;
    let n = 500;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < n {
            if let Message::Text(t) = tokio::time::timeout(WAIT, c.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                got.push(t.as_str().parse::<usize>().unwrap());
            }
        }
        got
    });
    for i in 0..n {
        post(&api, &id, i.to_string()).await.expect("post");
    }
    let got = reader.await.unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn malformed_ids_are_bad_requests() {
    let srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    // The SDK percent-encodes the space; decoded once, it is not base64.
    let err = post(&api, "not valid", "x").await.unwrap_err();
    let e = err;
    assert_eq!(e.code(), Some("BadRequestException"));
    assert_eq!(e.message(), Some("Invalid connectionId"));
    for path in [
        format!("/dev/@connections/{}", "A".repeat(129)),
        "/dev/@connections/abc%253D".to_string(),
        "/dev/@connections/a-b".to_string(),
        "/dev/@connections/".to_string(),
        "/@connections/".to_string(),
    ] {
        let res = srv
            .http
            .post(srv.url(&path))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path}");
        assert_eq!(res.headers()["x-amzn-errortype"], "BadRequestException");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["message"], "Invalid connectionId");
    }
}

#[tokio::test]
async fn wrong_method_and_wrong_stage() {
    let srv = start().await;
    let res = srv
        .http
        .put(srv.url("/dev/@connections/L0SM9cOFvHcCIhw%3D"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.headers()["allow"].to_str().unwrap().contains("POST"));
    let res = srv
        .http
        .post(srv.url("/prod/@connections/L0SM9cOFvHcCIhw%3D"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-amzn-errortype"], "ForbiddenException");
}

/// A connection closed by the server (here DELETE) whose client does not
/// read: once the close grace is over the server stops writing and lets
/// the socket go. Only what the kernel already holds still arrives, not the
/// rest of the queue.
#[tokio::test]
async fn a_close_the_client_does_not_drain_stops_the_writer() {
    let mut srv = start().await;
    let api = sdk(srv.url("/dev")).await;
    let (mut idle, id) = srv.connected().await;
    // 40 MB: more than the socket buffers on both sides can hold, less than
    // the queue's 1,024 messages.
    const POSTS: usize = 400;
    let big = "q".repeat(100_000);
    for _ in 0..POSTS {
        post(&api, &id, big.clone()).await.expect("queued");
    }
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete accepted");
    srv.expect_disconnect(&id, 1000, "management API").await;
    let mut received = 0;
    loop {
        match tokio::time::timeout(WAIT, idle.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => received += 1,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the connection stayed open after {received} messages"),
        }
    }
    assert!(
        received < POSTS,
        "the writer went on after the close: all {received} messages arrived"
    );
}

#[tokio::test]
async fn slow_consumer_is_closed_and_others_keep_receiving() {
    let srv = start_with(|c| c.gateway.outbound_queue = 8).await;
    let api = sdk(srv.url("/dev")).await;
    let (_slow, slow_id) = srv.connected().await;
    let (mut ok, ok_id) = srv.connected().await;
    // Never read from `slow`; big posts fill its socket buffers and then its queue.
    let big = "s".repeat(120_000);
    let mut gone = false;
    for _ in 0..2000 {
        match post(&api, &slow_id, big.clone()).await {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(e, PostToConnectionError::GoneException(_)));
                gone = true;
                break;
            }
        }
    }
    assert!(gone, "a client that never reads must be cut off");
    post(&api, &ok_id, "still here")
        .await
        .expect("healthy client unaffected");
    match tokio::time::timeout(WAIT, ok.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Message::Text(t) => assert_eq!(t.as_str(), "still here"),
        other => panic!("{other:?}"),
    }
    assert!(srv.metric("jobcast_slow_consumer_closes_total").await >= 1.0);
}

#[tokio::test]
async fn rate_limit_answers_typed_limit_exceeded() {
    let srv = start_with(|c| c.gateway.limit_posts_per_second = Some(5)).await;
    let api = sdk_with(
        srv.url("/dev"),
        aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled(),
    )
    .await;
    let (_c, id) = srv.connected().await;
    let mut limited = 0;
    for _ in 0..20 {
        match post(&api, &id, "x").await {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(
                    e,
                    PostToConnectionError::LimitExceededException(_)
                ));
                limited += 1;
            }
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 20 rapid posts were limited"
    );
}
