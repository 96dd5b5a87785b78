//! CORS on the jobs API: strict by default, opened per origin by config.

use crate::common::*;
use serde_json::json;

async fn preflight(srv: &TestServer, origin: &str) -> reqwest::Response {
    srv.http
        .request(reqwest::Method::OPTIONS, srv.url("/jobs"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn strict_by_default() {
    let srv = start().await;
    let res = preflight(&srv, "https://evil.example").await;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = srv
        .http
        .post(srv.url("/jobs"))
        .header("origin", "https://evil.example")
        .json(&json!({"kind": "demo", "input": {"steps": 1, "stepMs": 0}}))
        .send()
        .await
        .unwrap();
    // Served (a browser would hide it), but never marked readable cross-origin.
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_may_call_and_read() {
    let srv = start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let res = preflight(&srv, "https://app.example").await;
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("idempotency-key")
    );
    assert_eq!(preflight(&srv, "https://other.example").await.status(), 403);

    let res = srv
        .http
        .post(srv.url("/jobs"))
        .header("origin", "https://app.example")
        .json(&json!({"kind": "demo", "input": {"steps": 1, "stepMs": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        res.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("location")
    );
    assert!(res.headers().get_all("vary").iter().any(|v| v == "Origin"));
    let res = srv
        .http
        .get(srv.url("/jobs/job_missing"))
        .header("origin", "https://other.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn any_origin_with_a_star() {
    let srv = start_with(|c| c.cors_origins = vec!["*".into()]).await;
    let res = preflight(&srv, "https://anyone.example").await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}
