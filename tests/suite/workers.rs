//! The user's own job kinds (CONTRACT section 8): hand-over to each target
//! type, the update endpoint and every answer it gives, cancel reaching the
//! worker, liveness, and leases between processes.

use crate::common::*;
use jobcast::dispatch::Kinds;
use jobcast::serve::ServeConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Settings whose kind `export` posts its job messages to `worker`.
fn http_kind(c: &mut ServeConfig, worker: &WebhookReceiver) {
    c.webhook_secret = Some(SECRET.into());
    c.webhook.base_backoff = MS(20);
    c.webhook.max_backoff = MS(100);
    c.webhook.timeout = MS(2000);
    c.kinds = Kinds::parse_list(&format!("export=http://{}/work", worker.addr)).unwrap();
}

/// A server whose kind `export` posts its job messages to `worker`.
async fn http_kind_server(
    worker: &WebhookReceiver,
    tweak: impl FnOnce(&mut ServeConfig),
) -> TestServer {
    start_with(|c| {
        http_kind(c, worker);
        tweak(c);
    })
    .await
}

/// Waits until `worker` has taken its `n`-th request (from 1); checks the
/// signature and returns the job message.
async fn job_message(worker: &WebhookReceiver, n: usize) -> Value {
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = worker.got.lock().unwrap().get(n - 1).cloned() {
                return r;
            }
            tokio::time::sleep(MS(10)).await;
        }
    })
    .await
    .expect("the job message in time");
    let now = chrono::Utc::now().timestamp();
    assert!(
        jobcast::webhook::verify(
            SECRET.as_bytes(),
            &got.signature,
            &got.body,
            now,
            Duration::from_secs(300)
        ),
        "a job message signed with the webhook secret"
    );
    serde_json::from_slice(&got.body).unwrap()
}

async fn problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], code, "{p}");
    p
}

async fn create(srv: &TestServer, body: Value) -> Value {
    let r = srv
        .http
        .post(srv.url("/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_http_worker_runs_a_job_watched_by_a_browser_and_a_webhook() {
    let worker = webhook_receiver(vec![200]).await;
    let hook = webhook_receiver(vec![200]).await;
    let srv = start_paused_with(|c| http_kind(c, &worker)).await;
    let job = create(
        &srv,
        json!({"kind": "export", "input": {"file": "a.csv", "rows": 3},
               "callbackUrl": format!("http://{}/hook", hook.addr)}),
    )
    .await;
    let id = job["jobId"].as_str().unwrap();
    let watcher = tokio::spawn({
        let job = job.clone();
        async move { follow(&job).await }
    });
    let msg = job_message(&worker, 1).await;
    assert_eq!(msg["type"], "job");
    assert_eq!(msg["jobId"], id);
    assert_eq!(msg["kind"], "export");
    assert_eq!(msg["input"], json!({"file": "a.csv", "rows": 3}));
    assert_eq!(msg["attempt"], 1);
    assert_eq!(msg["heartbeatTimeoutSeconds"], 300);
    assert!(msg["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        msg["updateUrl"],
        srv.url(&format!("/jobs/{id}/updates")).as_str()
    );
    // `GET` shows the input too.
    assert_eq!(srv.job_view(id).await["status"], "queued");

    let a = accepted_update(&msg, json!({"percent": 10, "message": "reading"})).await;
    assert_eq!(a, json!({"jobId": id, "seq": 2, "status": "running"}));
    // A heartbeat: no new seq.
    let h = accepted_update(&msg, json!({})).await;
    assert_eq!(h["seq"], 2);
    accepted_update(&msg, json!({"status": "running", "percent": 60})).await;
    let done = accepted_update(
        &msg,
        json!({"status": "succeeded", "result": {"url": "s3://out/a.csv"}}),
    )
    .await;
    assert_eq!(done["seq"], 4);

    let seen = watcher.await.unwrap();
    assert_monotonic(&seen);
    let applied = applied(&seen);
    let seqs: Vec<u64> = applied.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(applied[1]["message"], "reading");
    // The update that omitted `message` cleared it; `percent` carried on.
    assert!(applied[2]["message"].is_null(), "{:?}", applied[2]);
    assert_eq!(applied[2]["percent"], 60.0);
    assert_eq!(applied[3]["status"], "succeeded");
    assert_eq!(applied[3]["percent"], 100.0);
    assert_eq!(applied[3]["result"], json!({"url": "s3://out/a.csv"}));

    // The webhook carries the terminal snapshot, once.
    tokio::time::timeout(WAIT, async {
        while hook.got.lock().unwrap().is_empty() {
            tokio::time::sleep(MS(10)).await;
        }
    })
    .await
    .unwrap();
    // Paused time: everything due in the next minute (a retry, a second
    // delivery) has run before the count is read.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let terminal: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(terminal["status"], "succeeded");
    assert_eq!(terminal["seq"], 4);

    // Once ended, every update is a 409 carrying the final snapshot.
    let p = problem(
        post_update(&msg, json!({"percent": 100})).await,
        409,
        "terminal",
    )
    .await;
    assert_eq!(p["snapshot"]["status"], "succeeded");
    assert_eq!(p["snapshot"]["seq"], 4);
    let p = problem(post_update(&msg, json!({})).await, 409, "terminal").await;
    assert_eq!(p["snapshot"]["seq"], 4);
    assert_eq!(
        srv.metric("jobcast_jobs_total{status=\"succeeded\"}").await,
        1.0
    );
    assert!(srv.metric("jobcast_worker_updates_total").await >= 4.0);
}

/// `--update-url` sends workers elsewhere (in AWS, the updates function's
/// URL) while browsers keep the jobs API's own links.
#[tokio::test]
async fn update_url_names_where_workers_report() {
    let worker = webhook_receiver(vec![200]).await;
    let srv = http_kind_server(&worker, |c| {
        c.update_url = Some("https://updates.example.net/".into());
    })
    .await;
    let job = create(&srv, json!({"kind": "export", "input": {}})).await;
    let id = job["jobId"].as_str().unwrap();
    let msg = job_message(&worker, 1).await;
    assert_eq!(
        msg["updateUrl"],
        format!("https://updates.example.net/jobs/{id}/updates")
    );
    assert_eq!(job["statusUrl"], srv.url(&format!("/jobs/{id}")).as_str());
}

#[tokio::test]
async fn the_update_endpoint_answers_every_case_with_its_status() {
    let worker = webhook_receiver(vec![200]).await;
    let srv = http_kind_server(&worker, |_| {}).await;
    let job = create(&srv, json!({"kind": "export", "input": {}})).await;
    let id = job["jobId"].as_str().unwrap();
    let msg = job_message(&worker, 1).await;
    let url = msg["updateUrl"].as_str().unwrap();
    let http = reqwest::Client::new();

    // 401 without a token; 403 with a client token or another job's.
    let r = http.post(url).json(&json!({})).send().await.unwrap();
    let r401 = problem(r, 401, "unauthorized").await;
    assert!(r401["detail"].as_str().unwrap().contains("workerToken"));
    let r = http
        .post(url)
        .bearer_auth(job["token"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let other = create(&srv, json!({"kind": "export", "input": {}})).await;
    let other_msg = job_message(&worker, 2).await;
    assert_eq!(other_msg["jobId"], other["jobId"]);
    let r = http
        .post(url)
        .bearer_auth(other_msg["workerToken"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // ... and a worker token is no client token.
    let r = http
        .delete(srv.url(&format!("/jobs/{id}")))
        .bearer_auth(msg["workerToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // 404 for a job the store does not know (a token for it, as a worker
    // of a job that has expired would hold).
    let ghost = "job_000000000000000000000000";
    let r = http
        .post(srv.url(&format!("/jobs/{ghost}/updates")))
        .bearer_auth(token_key().issue_worker(ghost, chrono::Utc::now().timestamp()))
        .json(&json!({"percent": 1}))
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;

    // 400: not a JSON object.
    let raw = |body: &'static str| {
        http.post(url)
            .bearer_auth(msg["workerToken"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["[1, 2]", "{\"percent\": ", "\"running\"", ""] {
        let r = raw(body).await.unwrap();
        assert_eq!(r.status(), 400, "{body:?}");
    }
    // 413 over 128 KiB.
    let big = json!({"message": "x".repeat(129 * 1024)});
    let r = post_update(&msg, big).await;
    let p = problem(r, 413, "payload_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("131072"));
    // 422: what the job cannot take.
    accepted_update(&msg, json!({"percent": 50})).await;
    for bad in [
        json!({"percent": 40}),
        json!({"percent": 101}),
        json!({"percent": -1}),
        json!({"percent": "half"}),
        json!({"status": "queued"}),
        json!({"status": "cancelled"}),
        json!({"status": "running", "result": {"a": 1}}),
        json!({"status": "succeeded", "error": {"code": "x", "message": "y"}}),
        json!({"status": "failed", "error": "boom"}),
        json!({"progress": 10}),
    ] {
        let r = post_update(&msg, bad.clone()).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    // Nothing refused moved the job.
    let view = srv.job_view(id).await;
    assert_eq!(view["seq"], 2);
    assert_eq!(view["percent"], 50.0);

    // `failed` without an error gets one.
    accepted_update(&msg, json!({"status": "failed", "message": "disk full"})).await;
    let view = srv.job_view(id).await;
    assert_eq!(view["error"]["code"], "worker_failed");
    assert_eq!(view["error"]["message"], "disk full");
}

/// A DynamoDB endpoint that answers every request with one fault.
async fn faulty_dynamodb(status: u16, body: &'static str) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut r = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(body.as_bytes()),
                        ));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert(
                            "content-type",
                            "application/x-amz-json-1.0".parse().unwrap(),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn updates_answer_429_and_503_with_retry_after_when_the_store_cannot_take_them() {
    let throttled = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
    for (status, body, want, code) in [
        (400, throttled, 429, "throttled"),
        (
            500,
            r#"{"__type":"InternalServerError","message":"down"}"#,
            503,
            "unavailable",
        ),
    ] {
        let addr = faulty_dynamodb(status, body).await;
        let store = jobcast::store::DynamoStore::new(
            dynamodb_client_at(&format!("http://{addr}")),
            "jobs".to_string(),
            Duration::from_secs(3600),
        );
        let srv = start_on(Arc::new(store), |c| {
            c.kinds = Kinds::parse_list("export=command:true").unwrap();
            c.resume = false;
        })
        .await;
        let id = "job_0123456789abcdef01234567";
        let token = token_key().issue_worker(id, chrono::Utc::now().timestamp());
        for body in [json!({"percent": 5}), json!({})] {
            let r = srv
                .http
                .post(srv.url(&format!("/jobs/{id}/updates")))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let retry_after = r.headers().get("retry-after").cloned();
            problem(r, want, code).await;
            assert!(retry_after.is_some());
        }
    }
}

#[tokio::test]
async fn cancel_ends_a_worker_job_at_once_and_the_worker_learns_it() {
    let worker = webhook_receiver(vec![200]).await;
    let srv = http_kind_server(&worker, |_| {}).await;
    let job = create(&srv, json!({"kind": "export", "input": {}})).await;
    let id = job["jobId"].as_str().unwrap();
    let msg = job_message(&worker, 1).await;
    let watcher = tokio::spawn({
        let job = job.clone();
        async move { follow(&job).await }
    });
    accepted_update(&msg, json!({"percent": 20, "message": "working"})).await;
    let r = srv
        .http
        .delete(srv.url(&format!("/jobs/{id}")))
        .bearer_auth(job["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let snap: Value = r.json().await.unwrap();
    assert_eq!(snap["status"], "cancelled");
    assert_eq!(snap["seq"], 3);
    let seen = watcher.await.unwrap();
    assert_eq!(seen.last().unwrap()["status"], "cancelled");
    // The worker's next report tells it to stop.
    let p = problem(
        post_update(&msg, json!({"percent": 30})).await,
        409,
        "terminal",
    )
    .await;
    assert_eq!(p["snapshot"]["status"], "cancelled");
    let p = problem(post_update(&msg, json!({})).await, 409, "terminal").await;
    assert_eq!(p["snapshot"]["status"], "cancelled");
}

/// On paused time: the sweep, the deadlines and the heartbeats all run on
/// the test's clock, so "well past the timeout" costs no real time.
#[tokio::test(start_paused = true)]
async fn a_silent_worker_ends_worker_lost_and_a_heartbeating_one_does_not() {
    let worker = webhook_receiver(vec![200]).await;
    let hook = webhook_receiver(vec![200]).await;
    let srv = start_paused_with(|c| {
        http_kind(c, &worker);
        c.heartbeat_timeout = Duration::from_secs(2);
    })
    .await;
    let silent = create(
        &srv,
        json!({"kind": "export", "input": {}, "callbackUrl": format!("http://{}/hook", hook.addr)}),
    )
    .await;
    let silent_msg = job_message(&worker, 1).await;
    assert_eq!(silent_msg["heartbeatTimeoutSeconds"], 2);
    let alive = create(&srv, json!({"kind": "export", "input": {}})).await;
    let alive_msg = job_message(&worker, 2).await;
    assert_eq!(alive_msg["jobId"], alive["jobId"]);
    let watcher = tokio::spawn({
        let job = silent.clone();
        async move { follow(&job).await }
    });
    accepted_update(&silent_msg, json!({"percent": 5})).await;
    accepted_update(&alive_msg, json!({"percent": 5})).await;
    // The live worker heartbeats for well past the timeout.
    for _ in 0..14 {
        tokio::time::sleep(MS(300)).await;
        accepted_update(&alive_msg, json!({})).await;
    }
    let seen = tokio::time::timeout(WAIT, watcher).await.unwrap().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["error"]["code"], "worker_lost");
    assert_eq!(
        srv.job_view(alive["jobId"].as_str().unwrap()).await["status"],
        "running"
    );
    accepted_update(&alive_msg, json!({"status": "succeeded"})).await;
    // The webhook fired with the final snapshot; the metric counted it once.
    tokio::time::timeout(WAIT, async {
        while hook.got.lock().unwrap().is_empty() {
            tokio::time::sleep(MS(10)).await;
        }
    })
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&hook.got.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["error"]["code"], "worker_lost");
    assert_eq!(srv.metric("jobcast_workers_lost_total").await, 1.0);
    // A worker that comes back late is told the job is over.
    problem(
        post_update(&silent_msg, json!({"percent": 50})).await,
        409,
        "terminal",
    )
    .await;
}

#[tokio::test]
async fn a_job_no_worker_reports_on_ends_not_started_and_one_whose_worker_reported_does_not() {
    let worker = webhook_receiver(vec![200]).await;
    let srv = http_kind_server(&worker, |c| {
        c.start_timeout = Duration::from_secs(1);
        // Liveness off: only the start deadline can end these jobs.
        c.heartbeat_timeout = Duration::ZERO;
    })
    .await;
    // The reporting job is handed over first, so its start deadline comes
    // no later than the silent one's: the sweep that ends the silent job
    // would have ended it too.
    let reported = create(&srv, json!({"kind": "export", "input": {}})).await;
    let reported_msg = job_message(&worker, 1).await;
    assert_eq!(reported_msg["jobId"], reported["jobId"]);
    // A heartbeat is a report: it leaves the job queued, and started.
    accepted_update(&reported_msg, json!({})).await;
    let silent = create(&srv, json!({"kind": "export", "input": {}})).await;
    job_message(&worker, 2).await;
    let seen = follow(&silent).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed", "{seen:?}");
    assert_eq!(last["error"]["code"], "not_started");
    assert_eq!(
        srv.job_view(reported["jobId"].as_str().unwrap()).await["status"],
        "queued"
    );
    assert_eq!(srv.metric("jobcast_jobs_not_started_total").await, 1.0);
    assert_eq!(srv.metric("jobcast_workers_lost_total").await, 0.0);
    accepted_update(&reported_msg, json!({"status": "succeeded"})).await;
}

#[tokio::test]
async fn an_http_target_is_retried_then_the_job_ends_dispatch_failed() {
    // A worker that fails once, then takes it: a new attempt each time.
    let flaky = webhook_receiver(vec![503, 200]).await;
    let srv = http_kind_server(&flaky, |c| c.webhook.max_attempts = 3).await;
    let job = create(&srv, json!({"kind": "export", "input": {}})).await;
    let first = job_message(&flaky, 1).await;
    let second = job_message(&flaky, 2).await;
    assert_eq!(
        (first["attempt"].as_u64(), second["attempt"].as_u64()),
        (Some(1), Some(2))
    );
    accepted_update(&second, json!({"status": "succeeded"})).await;
    assert_eq!(
        srv.job_view(job["jobId"].as_str().unwrap()).await["status"],
        "succeeded"
    );

    // A worker that never takes it.
    let down = webhook_receiver(vec![500]).await;
    let srv = http_kind_server(&down, |c| c.webhook.max_attempts = 3).await;
    let job = create(&srv, json!({"kind": "export", "input": {}})).await;
    let seen = follow(&job).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["error"]["code"], "dispatch_failed");
    assert!(
        last["error"]["message"].as_str().unwrap().contains("500"),
        "{last}"
    );
    assert_eq!(down.got.lock().unwrap().len(), 3);
}

/// A server with the kinds `specs` write (`KIND=TARGET` each).
async fn with_kinds(specs: &[String]) -> TestServer {
    start_with(|c| {
        for spec in specs {
            c.kinds
                .add(jobcast::dispatch::parse_kind_spec(spec).unwrap())
                .unwrap();
        }
    })
    .await
}

/// A worker command in Python, reporting with nothing but the standard library.
const PY_WORKER: &str = r#"python3 -c '
import json, sys, urllib.request
m = json.load(sys.stdin)
def post(body):
    req = urllib.request.Request(m["updateUrl"], json.dumps(body).encode(), {
        "Authorization": "Bearer " + m["workerToken"], "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
for p in (25, 50, 75):
    post({"percent": p, "message": "step %d" % p})
post({"status": "succeeded", "result": {"rows": m["input"]["rows"]}})
'"#;

#[tokio::test]
async fn a_command_worker_runs_to_success_and_a_failing_one_ends_worker_exited() {
    let kinds = [
        format!("export=command:{PY_WORKER}"),
        "crash=command:echo starting; echo out of memory >&2; exit 3".to_string(),
    ];
    let srv = with_kinds(&kinds).await;
    let job = create(&srv, json!({"kind": "export", "input": {"rows": 7}})).await;
    let seen = follow(&job).await;
    assert_monotonic(&seen);
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{seen:?}");
    assert_eq!(last["seq"], 5);
    assert_eq!(last["result"], json!({"rows": 7}));

    let job = create(&srv, json!({"kind": "crash", "input": {}})).await;
    let seen = follow(&job).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["error"]["code"], "worker_exited");
    let why = last["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("status 3") && why.contains("out of memory"),
        "{why}"
    );

    // An unknown kind lists the configured ones.
    let r = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "import", "input": {}}))
        .send()
        .await
        .unwrap();
    let p = problem(r, 400, "bad_input").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        ["crash", "demo", "export"]
            .iter()
            .all(|k| detail.contains(k)),
        "{detail}"
    );
}

/// A worker command that reports how large its input was and whether
/// the message was in its environment too.
const PY_SIZE_WORKER: &str = r#"python3 -c '
import json, os, sys, urllib.request
m = json.load(sys.stdin)
body = {"status": "succeeded", "result": {"chars": len(m["input"]["blob"]), "env": "JOBCAST_JOB" in os.environ}}
req = urllib.request.Request(m["updateUrl"], json.dumps(body).encode(), {
    "Authorization": "Bearer " + m["workerToken"], "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
'"#;

#[tokio::test]
async fn a_command_worker_gets_its_message_whatever_its_size() {
    let srv = with_kinds(&[format!("export=command:{PY_SIZE_WORKER}")]).await;
    // 131,000 characters: over what one environment variable may hold,
    // well under the input limit.
    for (chars, in_env) in [(1_000, true), (131_000, false), (250_000, false)] {
        let job = create(
            &srv,
            json!({"kind": "export", "input": {"blob": "x".repeat(chars)}}),
        )
        .await;
        let seen = follow(&job).await;
        let last = seen.last().unwrap();
        assert_eq!(last["status"], "succeeded", "{chars}: {last}");
        assert_eq!(last["result"], json!({"chars": chars, "env": in_env}));
    }
}

/// The state letter of a process in /proc ('Z' for a zombie), None once gone.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits for a worker to write its pid into `path`.
async fn pid_in(path: &std::path::Path) -> i32 {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(pid) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(MS(20)).await;
        }
    })
    .await
    .expect("the worker wrote its pid")
}

async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        if matches!(process_state(pid), None | Some('Z')) {
            return true;
        }
        tokio::time::sleep(MS(50)).await;
    }
    false
}

#[tokio::test]
async fn a_command_workers_pid_is_its_own_and_its_group_goes_with_its_wrapper() {
    let dir = std::env::temp_dir().join(format!("jobcast-pids-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let simple = dir.join("simple");
    let tree = dir.join("tree");
    let kinds = [
        // One simple command: the process serve starts is the worker.
        format!(
            "simple=command:python3 -c 'import os, time; open(\"{}\", \"w\").write(str(os.getpid())); time.sleep(60)'",
            simple.display()
        ),
        // A shell line: the worker runs under sh, in the job's process group.
        format!("tree=command:sleep 60 & echo $! > {}; wait", tree.display()),
    ];
    let srv = with_kinds(&kinds).await;

    let job = create(&srv, json!({"kind": "simple", "input": {}})).await;
    let worker = pid_in(&simple).await;
    assert_eq!(
        parent_of(worker),
        Some(std::process::id() as i32),
        "the worker is serve's own child, not a shell's"
    );
    // SAFETY: a signal to a process this test's server started.
    unsafe { libc::kill(worker, libc::SIGTERM) };
    let last = follow(&job).await.pop().unwrap();
    assert_eq!(last["error"]["code"], "worker_exited", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signal 15"),
        "{last}"
    );

    let job = create(&srv, json!({"kind": "tree", "input": {}})).await;
    let sleeper = pid_in(&tree).await;
    let shell = parent_of(sleeper).unwrap();
    assert_eq!(parent_of(shell), Some(std::process::id() as i32));
    // Killing the wrapper takes what it started with it.
    // SAFETY: as above.
    unsafe { libc::kill(shell, libc::SIGKILL) };
    assert!(gone(sleeper).await, "the worker outlived its wrapper");
    let last = follow(&job).await.pop().unwrap();
    assert_eq!(last["error"]["code"], "worker_exited", "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_input_over_256_kib_is_a_413_naming_the_limit() {
    let srv = start_with(|c| c.kinds = Kinds::parse_list("export=command:true").unwrap()).await;
    let r = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "export", "input": {"blob": "x".repeat(300 * 1024)}}))
        .send()
        .await
        .unwrap();
    let p = problem(r, 413, "payload_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("262144"), "{p}");
}

mod rust_client {
    use super::*;
    use jobcast_worker::{Job, ReportError, RetryOptions};

    fn quick(job: Job) -> Job {
        job.with_retry(RetryOptions {
            retries: 3,
            base_backoff: MS(10),
            max_backoff: MS(50),
            timeout: Duration::from_secs(5),
        })
    }

    /// On paused time: the library's gathering timer and the server share it.
    #[tokio::test(start_paused = true)]
    async fn a_rust_workers_chunks_are_gathered_and_sent_before_the_end() {
        let inbox = webhook_receiver(vec![200]).await;
        let srv = start_paused_with(|c| http_kind(c, &inbox)).await;
        let created = create(&srv, json!({"kind": "export", "input": {}})).await;
        job_message(&inbox, 1).await;
        let body = inbox.got.lock().unwrap()[0].body.clone();
        let job = quick(Job::from_message(&body).unwrap()).with_chunk_interval(MS(50));
        job.log("started").await.unwrap();
        let words: Vec<Value> = (0..40).map(|i| json!(format!("w{i} "))).collect();
        for w in &words {
            job.append("tokens", vec![w.clone()]).await.unwrap();
        }
        assert!(matches!(
            job.append("Bad", vec![json!(1)]).await,
            Err(ReportError::BadChunk(_))
        ));
        // Waits out the interval: the timer sends what was gathered.
        tokio::time::sleep(MS(60)).await;
        assert_eq!(
            srv.metric("jobcast_worker_updates_total").await,
            1.0,
            "the log line and the 40 words gathered into one request"
        );
        job.append("tokens", vec![json!("last")]).await.unwrap();
        job.succeed(None, None).await.unwrap();
        assert_eq!(job.streams()["tokens"], 41);
        let id = created["jobId"].as_str().unwrap();
        let page = srv.stream_page(id, "tokens").await;
        let mut want = words.clone();
        want.push(json!("last"));
        assert_eq!(page["chunks"], json!(want));
        assert_eq!(page["complete"], true);
        assert_eq!(
            srv.metric("jobcast_worker_updates_total").await,
            2.0,
            "the last word goes with the end"
        );
    }

    #[tokio::test]
    async fn a_rust_worker_runs_a_job_watched_by_a_browser_and_a_webhook() {
        let inbox = webhook_receiver(vec![200]).await;
        let hook = webhook_receiver(vec![200]).await;
        let srv = http_kind_server(&inbox, |_| {}).await;
        let created = create(
            &srv,
            json!({"kind": "export", "input": {"rows": 3},
                   "callbackUrl": format!("http://{}/hook", hook.addr)}),
        )
        .await;
        let watcher = tokio::spawn({
            let job = created.clone();
            async move { follow(&job).await }
        });
        job_message(&inbox, 1).await;
        let body = inbox.got.lock().unwrap()[0].body.clone();
        let job = Job::from_message(&body).unwrap();
        assert_eq!(job.id, created["jobId"].as_str().unwrap());
        let rows = job.input["rows"].as_u64().unwrap();
        for n in 1..=rows {
            let a = job
                .progress(
                    Some(100.0 * n as f64 / rows as f64),
                    Some(&format!("row {n}")),
                )
                .await
                .unwrap()
                .expect("sent at once: no minimum interval");
            assert_eq!(a.seq, n + 1);
        }
        assert_eq!(job.heartbeat().await.unwrap().seq, rows + 1);
        let done = job
            .succeed(Some(json!({"rows": rows})), None)
            .await
            .unwrap();
        assert_eq!(done.status, "succeeded");

        let seen = applied(&watcher.await.unwrap());
        let seqs: Vec<u64> = seen.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(seen[2]["message"], "row 2");
        assert_eq!(seen[4]["result"], json!({"rows": 3}));
        tokio::time::timeout(WAIT, async {
            while hook.got.lock().unwrap().is_empty() {
                tokio::time::sleep(MS(10)).await;
            }
        })
        .await
        .unwrap();
        let terminal: Value = serde_json::from_slice(&hook.got.lock().unwrap()[0].body).unwrap();
        assert_eq!(terminal["seq"], 5);
        // After the end, the worker is told so.
        let e = job.progress(Some(100.0), None).await.unwrap_err();
        assert!(matches!(e, ReportError::Ended { .. }), "{e}");
        assert!(job.ended() && !job.cancelled());
    }

    #[tokio::test]
    async fn cancel_reaches_a_rust_worker() {
        let inbox = webhook_receiver(vec![200]).await;
        let srv = http_kind_server(&inbox, |_| {}).await;
        let created = create(&srv, json!({"kind": "export", "input": {}})).await;
        job_message(&inbox, 1).await;
        let body = inbox.got.lock().unwrap()[0].body.clone();
        let job = Job::from_message(&body).unwrap();
        job.progress(Some(10.0), None).await.unwrap();
        let r = srv
            .http
            .delete(srv.url(&format!("/jobs/{}", job.id)))
            .bearer_auth(created["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let e = job.heartbeat().await.unwrap_err();
        assert!(e.cancelled(), "{e}");
        assert!(job.cancelled());
        assert_eq!(job.final_snapshot().unwrap()["status"], "cancelled");
    }

    /// A job of kind `export` on `srv`, as its worker receives it.
    async fn handed_over(srv: &TestServer, inbox: &WebhookReceiver) -> Job {
        create(srv, json!({"kind": "export", "input": {}})).await;
        job_message(inbox, 1).await;
        let body = inbox.got.lock().unwrap()[0].body.clone();
        Job::from_message(&body).unwrap()
    }

    /// On paused time: 100 calls 10 ms apart are exactly one second.
    #[tokio::test(start_paused = true)]
    async fn min_interval_turns_a_tight_loop_into_a_few_updates() {
        let inbox = webhook_receiver(vec![200]).await;
        let srv = start_paused_with(|c| http_kind(c, &inbox)).await;
        let job = handed_over(&srv, &inbox).await.with_min_interval(MS(250));
        let calls = 100;
        let mut sent_at_once = 0;
        for n in 1..=calls {
            let message = format!("row {n}");
            if job
                .progress(Some(n as f64), Some(&message))
                .await
                .unwrap()
                .is_some()
            {
                sent_at_once += 1;
            }
            tokio::time::sleep(MS(10)).await;
        }
        // The interval is up: the newest held progress is out.
        tokio::time::sleep(MS(250)).await;
        let view = srv.job_view(&job.id).await;
        assert_eq!(
            (&view["percent"], &view["message"]),
            (&json!(100.0), &json!("row 100"))
        );
        let updates = view["seq"].as_u64().unwrap() - 1;
        // Calls at 0, 10, … 990 ms: sent at once at 0, 250, 500 and 750 ms,
        // and the newest (row 100) from the timer at 1 s.
        assert_eq!(updates, 5, "{calls} calls became {updates} updates");
        assert_eq!(sent_at_once, 4, "the last went out from the timer");
        let done = job.succeed(None, None).await.unwrap();
        assert_eq!(done.seq, updates + 2);
    }

    #[tokio::test]
    async fn held_progress_goes_out_with_flush_heartbeat_and_fail() {
        let inbox = webhook_receiver(vec![200]).await;
        let srv = http_kind_server(&inbox, |_| {}).await;
        let job = handed_over(&srv, &inbox)
            .await
            .with_min_interval(Duration::from_secs(60));
        assert_eq!(
            job.progress(Some(10.0), None).await.unwrap().unwrap().seq,
            2
        );
        assert!(job.flush().await.unwrap().is_none(), "nothing held");
        assert!(job.progress(Some(20.0), Some("b")).await.unwrap().is_none());
        assert!(job.progress(None, Some("c")).await.unwrap().is_none());
        assert_eq!(srv.job_view(&job.id).await["seq"], 2, "held, not sent");
        let flushed = job.flush().await.unwrap().unwrap();
        assert_eq!(flushed.seq, 3);
        let view = srv.job_view(&job.id).await;
        assert_eq!(
            (&view["percent"], &view["message"]),
            (&json!(20.0), &json!("c"))
        );
        assert!(job.progress(Some(30.0), None).await.unwrap().is_none());
        assert_eq!(
            job.heartbeat().await.unwrap().seq,
            4,
            "the heartbeat carried it"
        );
        assert!(job.progress(Some(40.0), None).await.unwrap().is_none());
        let failed = job.fail("disk_full", "no space left").await.unwrap();
        assert_eq!(failed.seq, 5);
        let view = srv.job_view(&job.id).await;
        assert_eq!(
            (&view["status"], &view["percent"]),
            (&json!("failed"), &json!(40.0))
        );
        let e = job.progress(Some(50.0), None).await.unwrap_err();
        assert!(matches!(e, ReportError::Ended { .. }), "{e}");
    }

    fn message_for(addr: std::net::SocketAddr) -> Value {
        json!({"type": "job", "jobId": "job_1", "kind": "export", "input": {},
               "attempt": 1, "workerToken": "wt", "heartbeatTimeoutSeconds": 300,
               "updateUrl": format!("http://{addr}/jobs/job_1/updates")})
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_4xx_never() {
        // Only retryable answers: the first try, three retries, then the last status.
        let flaky = webhook_receiver(vec![503, 502, 429, 500]).await;
        let job = quick(Job::from_value(message_for(flaky.addr)).unwrap());
        let e = job.progress(Some(1.0), None).await.unwrap_err();
        assert!(matches!(e, ReportError::Refused { status: 500, .. }), "{e}");
        assert_eq!(
            flaky.got.lock().unwrap().len(),
            4,
            "first try and 3 retries"
        );

        let refused = webhook_receiver(vec![422]).await;
        let job = quick(Job::from_value(message_for(refused.addr)).unwrap());
        let e = job.progress(Some(1.0), None).await.unwrap_err();
        assert!(matches!(e, ReportError::Refused { status: 422, .. }), "{e}");
        // The call returns only once its retries are over: one request, no retry.
        assert_eq!(refused.got.lock().unwrap().len(), 1);

        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let job = quick(Job::from_value(message_for(dead)).unwrap());
        let e = job.heartbeat().await.unwrap_err();
        assert!(matches!(e, ReportError::Unreachable { .. }), "{e}");
    }
}

#[tokio::test]
async fn the_worker_api_bench_runs_every_update_to_its_client() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kinds = format!("bench=http://{receiver}/");
    let srv = start_with(|c| {
        c.webhook_secret = Some(SECRET.into());
        c.kinds = Kinds::parse_list(&kinds).unwrap();
    })
    .await;
    let r = jobcast::bench::updates::run(jobcast::bench::updates::UpdatesOptions {
        jobs_url: srv.url(""),
        kind: "bench".into(),
        receiver,
        jobs: 4,
        updates: 25,
        server_pid: None,
    })
    .await
    .unwrap();
    assert_eq!(r.updates, 100);
    assert_eq!(r.missing, 0);
    assert_eq!(r.endpoint.count, 100);
    assert_eq!(r.update_to_client.count, 100);
    assert_eq!(
        srv.metric("jobcast_jobs_total{status=\"succeeded\"}").await,
        4.0
    );
}
