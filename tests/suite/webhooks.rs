//! Webhooks against a real local HTTP receiver: signatures, retries,
//! recorded outcomes, refused addresses, and a receiver that never answers.

use crate::common::*;
use jobcast::webhook::verify;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "whsec-test-0123456789";

async fn webhook_server(max_attempts: u32) -> TestServer {
    start_with(|c| {
        c.webhook_secret = Some(SECRET.into());
        c.webhook.max_attempts = max_attempts;
        c.webhook.base_backoff = Duration::from_millis(20);
        c.webhook.max_backoff = Duration::from_millis(100);
        c.webhook.timeout = Duration::from_millis(500);
    })
    .await
}

async fn create_with_callback(srv: &TestServer, url: &str, input: Value) -> reqwest::Response {
    srv.http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "demo", "input": input, "callbackUrl": url}))
        .send()
        .await
        .unwrap()
}

/// Polls GET /jobs/{id} until its webhook state is final.
async fn final_webhook_state(srv: &TestServer, id: &str) -> Value {
    for _ in 0..200 {
        let v = srv.job_view(id).await;
        let st = &v["webhook"]["status"];
        if st == "delivered" || st == "failed" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("webhook never reached a final state");
}

#[tokio::test]
async fn signed_delivery_with_a_retry_after_500() {
    let WebhookReceiver { addr, got, .. } = webhook_receiver(vec![500, 200]).await;
    let srv = webhook_server(5).await;
    let res = create_with_callback(
        &srv,
        &format!("http://{addr}/hook"),
        json!({"steps": 2, "stepMs": 10}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let id = job["jobId"].as_str().unwrap();

    let view = final_webhook_state(&srv, id).await;
    assert_eq!(view["webhook"]["status"], "delivered");
    assert_eq!(view["webhook"]["attempts"], 2);
    assert_eq!(view["webhook"]["lastStatus"], 200);

    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let now = chrono::Utc::now().timestamp();
    for r in &received {
        assert!(verify(
            SECRET.as_bytes(),
            &r.signature,
            &r.body,
            now,
            Duration::from_secs(300)
        ));
        assert!(!verify(
            b"wrong-secret",
            &r.signature,
            &r.body,
            now,
            Duration::from_secs(300)
        ));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "progress");
        assert_eq!(body["jobId"], id);
        assert_eq!(body["status"], "succeeded");
        assert_eq!(body["seq"], 4);
        assert!(body["createdAt"].is_string());
        assert!(
            body.get("webhook").is_none(),
            "no bookkeeping in the payload"
        );
    }
    assert_eq!(srv.metric("jobcast_webhook_delivered_total").await, 1.0);
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_recorded_as_failed() {
    let WebhookReceiver { addr, got, .. } = webhook_receiver(vec![503]).await;
    let srv = webhook_server(3).await;
    let job: Value = create_with_callback(
        &srv,
        &format!("http://{addr}/hook"),
        json!({"steps": 1, "stepMs": 0, "failAt": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    let view = final_webhook_state(&srv, job["jobId"].as_str().unwrap()).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["webhook"]["status"], "failed");
    assert_eq!(view["webhook"]["attempts"], 3);
    assert_eq!(view["webhook"]["lastStatus"], 503);
    assert_eq!(got.lock().unwrap().len(), 3);
    assert_eq!(srv.metric("jobcast_webhook_failed_total").await, 1.0);
}

#[tokio::test]
async fn a_receiver_that_never_answers_blocks_no_progress() {
    // Accepts connections and never answers them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let srv = webhook_server(2).await;
    let job: Value = create_with_callback(
        &srv,
        &format!("http://{addr}/hook"),
        json!({"steps": 3, "stepMs": 50}),
    )
    .await
    .json()
    .await
    .unwrap();
    let (mut c, _) = tokio_tungstenite::connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    send_json(&mut c, json!({"action": "sync"})).await;
    let started = std::time::Instant::now();
    loop {
        if next_json(&mut c).await["status"] == "succeeded" {
            break;
        }
    }
    // Progress went out at its own pace, not the webhook's timeouts.
    assert!(started.elapsed() < Duration::from_secs(5));
    let view = final_webhook_state(&srv, job["jobId"].as_str().unwrap()).await;
    assert_eq!(view["webhook"]["status"], "failed");
    assert!(view["webhook"]["lastError"].as_str().unwrap().len() > 3);
}

#[tokio::test]
async fn callback_urls_are_checked() {
    let srv = webhook_server(1).await;
    for bad in [
        "ftp://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "not a url",
    ] {
        let res = create_with_callback(&srv, bad, json!({"steps": 1})).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let open = start_with(|c| {
        c.webhook_secret = Some(SECRET.into());
        c.webhook.policy.allow_private = true;
    })
    .await;
    let res = create_with_callback(
        &open,
        "http://10.1.2.3/hook",
        json!({"steps": 1, "stepMs": 60000}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let res = create_with_callback(&open, "http://169.254.169.254/", json!({"steps": 1})).await;
    assert_eq!(
        res.status(),
        400,
        "metadata stays refused even with private ranges allowed"
    );
}
