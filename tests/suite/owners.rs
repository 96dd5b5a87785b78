//! Owners (CONTRACT section 9) through the jobs API of a live gateway:
//! with an issuer configured, nobody creates, reads or cancels a job
//! without the right credential, and two users never see each other's jobs.

use crate::common::*;
use jobcast::auth::{DevKey, JwtVerifier};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://issuer.test";
const AUD: &str = "jobcast-tests";

struct Owners {
    srv: TestServer,
    key: DevKey,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn owners() -> Owners {
    let key = DevKey::generate().expect("a key");
    let verifier = JwtVerifier::from_jwks(ISS, AUD, &key.jwks().expect("jwks")).expect("verifier");
    let srv = start_with(|c| c.identity = Some(Arc::new(verifier))).await;
    Owners { srv, key }
}

impl Owners {
    fn token(&self, sub: &str) -> String {
        self.key
            .sign(ISS, AUD, sub, now(), Duration::from_secs(600))
            .expect("signs")
    }

    async fn post(&self, bearer: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.srv.http.post(self.srv.url("/jobs")).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.expect("POST /jobs")
    }

    async fn get(&self, id: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut req = self.srv.http.get(self.srv.url(&format!("/jobs/{id}")));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.expect("GET /jobs/{id}")
    }

    async fn delete(&self, id: &str, bearer: &str) -> reqwest::Response {
        self.srv
            .http
            .delete(self.srv.url(&format!("/jobs/{id}")))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("DELETE /jobs/{id}")
    }
}

fn slow_job() -> Value {
    json!({"kind": "demo", "input": {"steps": 50, "stepMs": 200}, "tags": ["reports", "q3"]})
}

async fn problem(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn creating_needs_a_valid_token_and_records_the_owner() {
    let o = owners().await;
    let (status, p) = problem(o.post(None, slow_job()).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("unauthorized")),
        "{p}"
    );
    let expired = o
        .key
        .sign(ISS, AUD, "alice", now() - 3600, Duration::from_secs(60))
        .expect("signs");
    let (status, p) = problem(o.post(Some(&expired), slow_job()).await).await;
    assert_eq!(status, 403, "{p}");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("expired"),
        "{p}"
    );
    let other_aud = o
        .key
        .sign(ISS, "someone-else", "alice", now(), Duration::from_secs(60))
        .expect("signs");
    let (status, p) = problem(o.post(Some(&other_aud), slow_job()).await).await;
    assert_eq!(status, 403, "{p}");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("audience"),
        "{p}"
    );

    let alice = o.token("alice");
    let res = o.post(Some(&alice), slow_job()).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.expect("json");
    let view: Value = o
        .get(job["jobId"].as_str().expect("id"), Some(&alice))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(view["owner"], "alice");
    assert_eq!(view["tags"], json!(["reports", "q3"]));
}

#[tokio::test]
async fn a_job_is_seen_by_its_token_or_its_owner_and_is_404_to_anyone_else() {
    let o = owners().await;
    let (alice, bob) = (o.token("alice"), o.token("bob"));
    let job: Value = o
        .post(Some(&alice), slow_job())
        .await
        .json()
        .await
        .expect("json");
    let id = job["jobId"].as_str().expect("id");
    let job_token = job["token"].as_str().expect("token");
    let other: Value = o
        .post(Some(&bob), slow_job())
        .await
        .json()
        .await
        .expect("json");
    let other_token = other["token"].as_str().expect("token");

    assert_eq!(o.get(id, Some(&alice)).await.status(), 200);
    assert_eq!(o.get(id, Some(job_token)).await.status(), 200);
    assert_eq!(o.get(id, None).await.status(), 401);
    // Another user, another job's token, a job that does not exist: all 404.
    assert_eq!(o.get(id, Some(&bob)).await.status(), 404);
    assert_eq!(o.get(id, Some(other_token)).await.status(), 404);
    assert_eq!(
        o.get("job_0000000000000000", Some(&alice)).await.status(),
        404
    );
    assert_eq!(o.get(id, Some("1.garbage")).await.status(), 404);
    // The job's streams take the same credentials.
    let stream = |bearer: Option<&str>| {
        let mut req = o
            .srv
            .http
            .get(o.srv.url(&format!("/jobs/{id}/streams/log")));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    assert_eq!(stream(Some(&alice)).await.unwrap().status(), 200);
    assert_eq!(stream(Some(job_token)).await.unwrap().status(), 200);
    assert_eq!(stream(None).await.unwrap().status(), 401);
    assert_eq!(stream(Some(&bob)).await.unwrap().status(), 404);
    assert_eq!(stream(Some(other_token)).await.unwrap().status(), 404);

    assert_eq!(o.delete(id, &bob).await.status(), 404);
    assert_eq!(o.delete(id, other_token).await.status(), 404);
    assert_eq!(o.delete(id, &alice).await.status(), 202);
    let other_id = other["jobId"].as_str().expect("id");
    assert_eq!(o.delete(other_id, other_token).await.status(), 202);
}

#[tokio::test]
async fn tags_are_checked_and_idempotency_keys_are_per_owner() {
    let o = owners().await;
    let alice = o.token("alice");
    let too_many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    for tags in [
        json!(too_many),
        json!(["x".repeat(65)]),
        json!([""]),
        json!("one"),
        json!([1]),
    ] {
        let body = json!({"kind": "demo", "input": {}, "tags": tags});
        assert_eq!(o.post(Some(&alice), body).await.status(), 400, "{tags}");
    }
    let keyed = |who: &str| {
        o.srv
            .http
            .post(o.srv.url("/jobs"))
            .bearer_auth(o.token(who))
            .header("Idempotency-Key", "same-key")
            .json(&json!({"kind": "demo", "input": {"steps": 1, "stepMs": 0}}))
            .send()
    };
    let a: Value = keyed("alice")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let a_again: Value = keyed("alice")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let b: Value = keyed("bob")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(a["jobId"], a_again["jobId"]);
    assert_ne!(a["jobId"], b["jobId"]);
}

#[tokio::test]
async fn the_list_is_the_callers_own_newest_first_in_pages() {
    let o = owners().await;
    let (alice, bob) = (o.token("alice"), o.token("bob"));
    let mut mine = Vec::new();
    for i in 0..5 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!([])
        };
        let body = json!({"kind": "demo", "input": {"steps": 50, "stepMs": 200}, "tags": tags});
        let job: Value = o.post(Some(&alice), body).await.json().await.expect("json");
        mine.push(job["jobId"].as_str().expect("id").to_string());
    }
    o.post(Some(&bob), slow_job()).await;
    let list = |who: String, query: String| {
        let http = o.srv.http.clone();
        let url = o.srv.url(&format!("/jobs{query}"));
        async move {
            let res = http
                .get(url)
                .bearer_auth(who)
                .send()
                .await
                .expect("GET /jobs");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|j| j["jobId"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let newest_first: Vec<String> = mine.iter().rev().cloned().collect();
    let (status, page1) = list(alice.clone(), "?limit=3".into()).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(ids(&page1), newest_first[..3]);
    assert!(page1["jobs"][0]["owner"] == "alice");
    let cursor = page1["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, page2) = list(alice.clone(), format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(ids(&page2), newest_first[3..]);
    assert_eq!(page2["nextCursor"], Value::Null);
    let (_, even) = list(alice.clone(), "?tag=even".into()).await;
    assert_eq!(ids(&even).len(), 3);
    let (_, queued) = list(alice.clone(), "?status=succeeded".into()).await;
    assert_eq!(ids(&queued).len(), 0);
    let (_, bobs) = list(bob.clone(), String::new()).await;
    assert_eq!(ids(&bobs).len(), 1);
    assert!(!mine.contains(&ids(&bobs)[0]));
    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?status=done",
        "?cursor=%%%",
        "?cursor=bm90LWEta2V5",
    ] {
        let (status, p) = list(alice.clone(), bad.into()).await;
        assert_eq!(status, 400, "{bad}: {p}");
    }
    let res = o
        .srv
        .http
        .get(o.srv.url("/jobs"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn without_owners_everything_is_as_before() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 50, "stepMs": 200})).await;
    let id = job["jobId"].as_str().expect("id");
    // Reading needs nothing; the view has no owner.
    let view = srv.job_view(id).await;
    assert!(view.get("owner").is_none(), "{view}");
    // Tags need owners.
    let res = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "demo", "tags": ["a"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    // No owners, nothing to list by.
    let res = srv.http.get(srv.url("/jobs")).send().await.expect("GET");
    assert_eq!(res.status(), 404);
}

impl Owners {
    /// A client connected with `token` in `?access_token=`.
    async fn ws_as(&self, token: &str) -> Client {
        let url = self.srv.ws_url(&format!("?access_token={token}"));
        tokio_tungstenite::connect_async(url)
            .await
            .expect("connect")
            .0
    }

    async fn create(&self, token: &str, body: Value) -> String {
        let res = self.post(Some(token), body).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.expect("json");
        job["jobId"].as_str().expect("jobId").to_string()
    }
}

/// The job ids of progress messages until `until` of them arrived (other
/// messages must not come in between).
async fn progress_ids(c: &mut Client, until: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < until {
        let m = next_json(c).await;
        assert_eq!(m["type"], "progress", "{m}");
        let id = m["jobId"].as_str().expect("jobId").to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn held_job(tags: &[&str]) -> Value {
    json!({"kind": "demo", "input": {"steps": 100, "stepMs": 500}, "tags": tags})
}

#[tokio::test]
async fn following_an_owner_shows_their_unfinished_jobs_and_each_new_one_live() {
    let o = owners().await;
    let (alice, bob) = (o.token("alice"), o.token("bob"));
    let before = o.create(&alice, held_job(&["reports"])).await;
    let bobs = o.create(&bob, held_job(&[])).await;

    let mut c = o.ws_as(&alice).await;
    send_json(&mut c, json!({"action": "subscribe", "owner": true})).await;
    let m = next_json(&mut c).await;
    assert_eq!(m, json!({"type": "subscribed", "owner": true, "tag": null}));
    assert_eq!(progress_ids(&mut c, 1).await, vec![before.clone()]);

    // A job bob starts never reaches alice; hers do, as soon as they exist.
    let _ = o.create(&bob, held_job(&[])).await;
    let started = o.create(&alice, held_job(&[])).await;
    let ids = progress_ids(&mut c, 2).await;
    assert!(ids.contains(&started), "{ids:?}");
    assert!(!ids.contains(&bobs), "{ids:?}");
    // Its progress follows (the demo job moves on within a second).
    let m = loop {
        let m = next_json(&mut c).await;
        if m["jobId"] == started.as_str() && m["status"] == "running" {
            break m;
        }
    };
    assert!(m["seq"].as_u64().unwrap_or(0) >= 2, "{m}");

    // A tag narrows it; a second follow on one connection is its own.
    let mut tagged = o.ws_as(&alice).await;
    send_json(
        &mut tagged,
        json!({"action": "subscribe", "owner": true, "tag": "reports"}),
    )
    .await;
    assert_eq!(next_json(&mut tagged).await["tag"], "reports");
    assert_eq!(progress_ids(&mut tagged, 1).await, vec![before]);
    let untagged = o.create(&alice, held_job(&[])).await;
    let report = o.create(&alice, held_job(&["reports"])).await;
    let m = loop {
        let m = next_json(&mut tagged).await;
        assert_ne!(m["jobId"], untagged.as_str(), "{m}");
        if m["jobId"] == report.as_str() {
            break m;
        }
    };
    assert_eq!(m["type"], "progress");
}

#[tokio::test]
async fn the_token_may_come_as_a_subprotocol_answered_jobcast() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let o = owners().await;
    let alice = o.token("alice");
    let job = o.create(&alice, held_job(&[])).await;
    let mut req = o.srv.ws_url("").into_client_request().expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("jobcast, {alice}").parse().expect("header"),
    );
    let (mut c, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("jobcast")
    );
    send_json(&mut c, json!({"action": "subscribe", "owner": true})).await;
    assert_eq!(next_json(&mut c).await["type"], "subscribed");
    assert_eq!(progress_ids(&mut c, 1).await, vec![job]);
}

#[tokio::test]
async fn without_a_token_following_is_unauthorized_and_the_connection_stays() {
    let o = owners().await;
    let _ = o.create(&o.token("alice"), held_job(&[])).await;
    let mut c = o.srv.connect().await;
    send_json(&mut c, json!({"action": "subscribe", "owner": true})).await;
    let m = next_json(&mut c).await;
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("unauthorized")),
        "{m}"
    );
    assert!(
        m["message"].as_str().unwrap_or("").contains("access_token"),
        "{m}"
    );
    // Still open, and job tokens still work on it.
    let _ = o.srv.connection_id(&mut c).await;

    // A bad token is refused at the handshake with the reason.
    for bad in [
        o.key
            .sign(ISS, AUD, "alice", now() - 3600, Duration::from_secs(60))
            .expect("signs"),
        DevKey::generate()
            .expect("key")
            .sign(ISS, AUD, "alice", now(), Duration::from_secs(60))
            .expect("signs"),
        "not-a-jwt".to_string(),
    ] {
        let err = tokio_tungstenite::connect_async(o.srv.ws_url(&format!("?access_token={bad}")))
            .await
            .expect_err("refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
    }

    // Without owners the action says so.
    let plain = start().await;
    let mut c = plain.connect().await;
    send_json(&mut c, json!({"action": "subscribe", "owner": true})).await;
    let m = next_json(&mut c).await;
    assert_eq!(m["code"], "unauthorized", "{m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap_or("")
            .contains("no JWT issuer"),
        "{m}"
    );
    // A bad owner or tag field is a bad request.
    send_json(&mut c, json!({"action": "subscribe", "owner": "yes"})).await;
    assert_eq!(next_json(&mut c).await["code"], "bad_request");
    send_json(
        &mut c,
        json!({"action": "subscribe", "owner": true, "tag": ""}),
    )
    .await;
    assert_eq!(next_json(&mut c).await["code"], "bad_request");
}

#[tokio::test]
async fn an_owner_over_the_limit_gets_429_until_a_job_ends() {
    let key = DevKey::generate().expect("a key");
    let verifier = JwtVerifier::from_jwks(ISS, AUD, &key.jwks().expect("jwks")).expect("verifier");
    let srv = start_with(|c| {
        c.identity = Some(Arc::new(verifier));
        c.owner_limit = Some(2);
    })
    .await;
    let o = Owners { srv, key };
    let (alice, bob) = (o.token("alice"), o.token("bob"));
    let first = o.create(&alice, held_job(&[])).await;
    let _second = o.create(&alice, held_job(&[])).await;
    let res = o.post(Some(&alice), held_job(&[])).await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let p: Value = res.json().await.expect("json");
    assert_eq!(
        (p["code"].as_str(), p["limit"].as_u64()),
        (Some("owner_limit"), Some(2)),
        "{p}"
    );
    // Others are not limited by alice's jobs.
    let _ = o.create(&bob, held_job(&[])).await;
    // Once one of hers ends, she may start another.
    assert_eq!(o.delete(&first, &alice).await.status(), 202);
    let mut tries = 0;
    loop {
        let res = o.post(Some(&alice), held_job(&[])).await;
        if res.status() == 202 {
            break;
        }
        assert_eq!(res.status(), 429);
        tries += 1;
        assert!(tries < 100, "the cancelled job never freed its place");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
