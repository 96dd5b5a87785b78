//! The jobs HTTP API (CONTRACT section 5) and the demo worker, end to end.

use crate::common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn demo_job_runs_to_success_with_every_invariant() {
    let srv = start().await;
    let res = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "demo", "input": {"steps": 8, "stepMs": 150}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let job: Value = res.json().await.unwrap();
    let id = job["jobId"].as_str().unwrap();
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(job["status"], "queued");
    assert_eq!(job["statusUrl"], srv.url(&format!("/jobs/{id}")));
    assert!(
        job["websocketUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("ws://{}/dev?jobId={id}&token=", srv.addr))
    );

    let seen = follow(&job).await;
    assert_monotonic(&seen);
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["seq"], 10);
    assert_eq!(last["percent"], 100.0);
    assert_eq!(last["result"], json!({"steps": 8}));
    assert_eq!(last["error"], Value::Null);
    // Every running step carries percent = 100*k/steps at seq k+1.
    for s in seen.iter().filter(|s| s["status"] == "running") {
        let k = s["seq"].as_u64().unwrap() - 1;
        assert_eq!(s["percent"].as_f64().unwrap(), 100.0 * k as f64 / 8.0);
    }

    let res = srv
        .http
        .get(srv.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("retry-after").is_none(),
        "no Retry-After once terminal"
    );
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["type"], "progress");
    assert_eq!(got["seq"], 10);
    assert!(got["createdAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn fail_at_ends_failed_at_the_right_seq() {
    let srv = start().await;
    let job = srv
        .create_job(json!({"steps": 5, "stepMs": 50, "failAt": 3}))
        .await;
    let seen = follow(&job).await;
    assert_monotonic(&seen);
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["seq"], 4);
    assert_eq!(last["error"]["code"], "demo_failure");
    assert!(last["percent"].as_f64().unwrap() <= 40.0);
}

#[tokio::test]
async fn get_shows_retry_after_while_running() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 100, "stepMs": 1000})).await;
    let res = srv
        .http
        .get(job["statusUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn cancel_ends_the_job_cancelled_and_then_conflicts() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 100, "stepMs": 200})).await;
    let url = job["statusUrl"].as_str().unwrap().to_string();
    let watcher = tokio::spawn({
        let job = job.clone();
        async move { follow(&job).await }
    });
    // Cancelled while it runs.
    tokio::time::timeout(WAIT, async {
        while srv.job_view(job["jobId"].as_str().unwrap()).await["seq"].as_u64() < Some(3) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the job runs");
    let token = job["token"].as_str().unwrap();
    // The client token is needed: none is a 401, someone else's a 403.
    let res = srv.http.delete(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let other = srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
    let res = srv
        .http
        .delete(&url)
        .bearer_auth(other["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = srv
        .http
        .delete(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let snap: Value = res.json().await.unwrap();
    assert_eq!(snap["type"], "progress");
    let seen = watcher.await.unwrap();
    assert_monotonic(&seen);
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "cancelled");
    assert!(last["seq"].as_u64().unwrap() > snap["seq"].as_u64().unwrap());
    let res = srv
        .http
        .delete(format!("{url}?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn idempotency_key_replays_or_conflicts() {
    let srv = start().await;
    let post = |body: Value| {
        srv.http
            .post(srv.url("/jobs"))
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let body = json!({"kind": "demo", "input": {"steps": 2, "stepMs": 10}});
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post(body).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    let other = post(json!({"kind": "demo", "input": {"steps": 3}}))
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(other.headers()["content-type"], "application/problem+json");
}

async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], status);
    assert!(p["detail"].as_str().unwrap().len() > 5);
    p
}

#[tokio::test]
async fn bad_requests_are_problems_never_500s() {
    let srv = start().await;
    let url = srv.url("/jobs");
    let h = &srv.http;
    let raw = |content_type: Option<&'static str>, body: String| {
        let mut req = h.post(&url).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    // Wrong content type, no content type, bad JSON.
    let r = raw(Some("text/plain"), "{}".into()).await.unwrap();
    assert_problem(r, 415).await;
    let r = raw(None, r#"{"kind":"demo"}"#.into()).await.unwrap();
    assert_problem(r, 415).await;
    let r = raw(Some("application/json"), "{nope".into()).await.unwrap();
    assert_problem(r, 400).await;
    // Not an object, no kind, unknown kind.
    for body in [
        json!([1]),
        json!({"input": {}}),
        json!({"kind": "teleport"}),
    ] {
        let r = h.post(&url).json(&body).send().await.unwrap();
        assert_problem(r, 400).await;
    }
    // A misspelled field is refused, naming it and the known ones, rather
    // than running the job on its default input.
    let r = h
        .post(&url)
        .json(&json!({"kind": "demo", "inputs": {"steps": 3}}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("'inputs'") && detail.contains("input, callbackUrl"),
        "{detail}"
    );
    // Out-of-range demo input is refused, not clamped.
    for input in [
        json!({"steps": 0}),
        json!({"steps": 1001}),
        json!({"stepMs": 60001}),
        json!({"steps": 3, "failAt": 4}),
    ] {
        let r = h
            .post(&url)
            .json(&json!({"kind": "demo", "input": input}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400).await;
    }
    // Body over 1 MiB.
    let big = format!(
        r#"{{"kind":"demo","input":{{"pad":"{}"}}}}"#,
        "x".repeat(1024 * 1024)
    );
    let r = raw(Some("application/json"), big).await.unwrap();
    assert_problem(r, 413).await;
    // A callbackUrl with no webhook secret configured.
    let r = h
        .post(&url)
        .json(&json!({"kind": "demo", "callbackUrl": "http://127.0.0.1:9/hook"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    // Unknown job, wrong method.
    let r = h.get(srv.url("/jobs/job_nope")).send().await.unwrap();
    assert_problem(r, 404).await;
    let r = h.delete(srv.url("/jobs/job_nope")).send().await.unwrap();
    assert_problem(r, 401).await;
    let r = h.put(srv.url("/jobs")).send().await.unwrap();
    let p = assert_problem(r, 405).await;
    assert_eq!(p["code"], "method_not_allowed");
    // The server still works.
    srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
}

#[tokio::test]
async fn health_and_metrics() {
    let srv = start().await;
    let r = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let job = srv.create_job(json!({"steps": 2, "stepMs": 0})).await;
    follow(&job).await;
    assert_eq!(
        srv.metric("jobcast_jobs_total{status=\"queued\"}").await,
        1.0
    );
    // Two running updates, one job entering `running`.
    assert_eq!(
        srv.metric("jobcast_jobs_total{status=\"running\"}").await,
        1.0
    );
    assert_eq!(
        srv.metric("jobcast_jobs_total{status=\"succeeded\"}").await,
        1.0
    );
    assert!(srv.metric("jobcast_messages_in_total").await >= 1.0);
    let r = srv.http.get(srv.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("jobcast"));
}
