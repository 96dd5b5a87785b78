//! The gateway over DynamoDB Local, and the publisher through the real
//! Management API client: items, TTLs, 410 cleanup, 429 retries, seq
//! ordering under concurrency, idempotency across processes, restarts.

use crate::common::*;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;
use jobcast::protocol::Status;
use jobcast::push::{PaceOptions, Paced};
use jobcast::store::{DynamoStore, JobUpdate, Store, StoreError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::connect_async;

async fn raw_item(
    store: &DynamoStore,
    pk: &str,
    sk: &str,
) -> Option<HashMap<String, AttributeValue>> {
    dynamodb_client()
        .get_item()
        .table_name(store.table())
        .key("PK", AttributeValue::S(pk.into()))
        .key("SK", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn running(p: f64) -> JobUpdate {
    let mut u = JobUpdate::status(Status::Running);
    u.percent = Some(p);
    u
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn connect_and_disconnect_write_and_remove_subscription_items() {
    let store = dynamo_store().await;
    let mut srv = start_on(Arc::new(store.clone()), |_| {}).await;
    let job = srv.create_job(json!({"steps": 100, "stepMs": 1000})).await;
    let job_id = job["jobId"].as_str().unwrap();
    let (mut c, _) = connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    let id = srv.connection_id(&mut c).await;

    let item = raw_item(&store, &format!("JOB#{job_id}"), &format!("CONN#{id}"))
        .await
        .expect("subscription item");
    assert_eq!(item["GSI1PK"], AttributeValue::S(format!("CONN#{id}")));
    assert_eq!(item["GSI1SK"], AttributeValue::S(format!("JOB#{job_id}")));
    let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    // 2 h lifetime plus a margin.
    assert!(
        ttl > now + 2 * 3600 && ttl < now + 3 * 3600,
        "ttl {ttl} now {now}"
    );
    let state = raw_item(&store, &format!("JOB#{job_id}"), "STATE")
        .await
        .unwrap();
    assert!(state["ttl"].as_n().unwrap().parse::<i64>().unwrap() > now + 23 * 3600);

    c.close(None).await.unwrap();
    srv.disconnect_of(&id).await;
    // `$disconnect` has run: the item is gone.
    assert!(
        raw_item(&store, &format!("JOB#{job_id}"), &format!("CONN#{id}"))
            .await
            .is_none()
    );
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn vanished_connection_is_deleted_on_410() {
    let store = dynamo_store().await;
    let srv = start_on(Arc::new(store.clone()), |c| {
        c.kinds = jobcast::dispatch::Kinds::parse_list("export=command:true").unwrap()
    })
    .await;
    let job = srv.create_export_job(json!({})).await;
    let job_id = job["jobId"].as_str().unwrap();
    // A connection that went away without its $disconnect running.
    store
        .subscribe(job_id, "L0SM9cOFvHcCIhw=", chrono::Utc::now())
        .await
        .unwrap();
    let (mut live, live_id) = srv.connected().await;
    store
        .subscribe(job_id, &live_id, chrono::Utc::now())
        .await
        .unwrap();

    let publisher = http_publisher(&srv, Arc::new(store.clone()), Paced::default()).await;
    let (_, report) = publisher.publish(job_id, running(10.0)).await.unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(report.gone, 1);
    assert!(report.failed.is_empty());
    assert_eq!(next_json(&mut live).await["percent"], 10.0);
    assert!(
        raw_item(&store, &format!("JOB#{job_id}"), "CONN#L0SM9cOFvHcCIhw=")
            .await
            .is_none()
    );
    assert_eq!(store.subscribers(job_id).await.unwrap(), vec![live_id]);
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn throttled_posts_are_retried_and_each_message_arrives_once() {
    let store = dynamo_store().await;
    let srv = start_on(Arc::new(store.clone()), |c| {
        c.kinds = jobcast::dispatch::Kinds::parse_list("export=command:true").unwrap();
        c.gateway.limit_posts_per_second = Some(20);
    })
    .await;
    let job = srv.create_export_job(json!({})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (c, id) = srv.connected().await;
        store
            .subscribe(&job_id, &id, chrono::Utc::now())
            .await
            .unwrap();
        clients.push(c);
    }
    let publisher = http_publisher(
        &srv,
        Arc::new(store.clone()),
        Paced::new(PaceOptions {
            concurrency: 16,
            max_attempts: 30,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
            ..PaceOptions::default()
        }),
    )
    .await;
    let mut retried = 0;
    for step in 1..=5 {
        let (_, report) = publisher
            .publish(&job_id, running(step as f64 * 10.0))
            .await
            .unwrap();
        assert_eq!(report.delivered, 10, "{report:?}");
        assert!(report.failed.is_empty());
        retried += report.retried;
    }
    assert!(retried > 0, "50 posts at 20/s must have met the limit");
    for c in &mut clients {
        let mut seqs = Vec::new();
        for _ in 0..5 {
            seqs.push(next_json(c).await["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
        // Nothing more: no duplicate delivery.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), c.next())
                .await
                .is_err()
        );
    }
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn concurrent_publishers_never_duplicate_or_skip_a_seq() {
    let store = dynamo_store().await;
    let srv = start_on(Arc::new(store.clone()), |c| {
        c.kinds = jobcast::dispatch::Kinds::parse_list("export=command:true").unwrap()
    })
    .await;
    let job = srv.create_export_job(json!({})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    let (mut c, id) = srv.connected().await;
    store
        .subscribe(&job_id, &id, chrono::Utc::now())
        .await
        .unwrap();
    let publisher = http_publisher(&srv, Arc::new(store.clone()), Paced::default()).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = publisher.clone();
        let j = job_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..10 {
                let mut u = JobUpdate::status(Status::Running);
                u.message = Some("working".into());
                seqs.push(p.publish(&j, u).await.unwrap().0.snapshot.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (2..=41).collect::<Vec<u64>>());
    // The client saw every seq exactly once (in whatever order concurrent posts landed).
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(next_json(&mut c).await["seq"].as_u64().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (2..=41).collect::<Vec<u64>>());
    // And a finished job refuses more.
    publisher
        .publish(&job_id, JobUpdate::status(Status::Succeeded))
        .await
        .unwrap();
    assert!(matches!(
        publisher.publish(&job_id, running(100.0)).await,
        Err(StoreError::Terminal {
            status: Status::Succeeded,
            ..
        })
    ));
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn idempotency_holds_across_two_servers_sharing_the_table() {
    let store = dynamo_store().await;
    let a = start_on(Arc::new(store.clone()), |_| {}).await;
    let b = start_on(Arc::new(store.clone()), |_| {}).await;
    let body = json!({"kind": "demo", "input": {"steps": 2, "stepMs": 10}});
    let post = |srv: &TestServer, body: &Value| {
        srv.http
            .post(srv.url("/jobs"))
            .header("Idempotency-Key", "checkout-7")
            .json(body)
            .send()
    };
    let first: Value = post(&a, &body).await.unwrap().json().await.unwrap();
    let again = post(&b, &body).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["jobId"], again["jobId"]);
    let other = post(&b, &json!({"kind": "demo"})).await.unwrap();
    assert_eq!(other.status(), 422);
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_job_survives_a_restart_of_serve() {
    let store = dynamo_store().await;
    let mut first = start_on(Arc::new(store.clone()), |_| {}).await;
    let job = first.create_job(json!({"steps": 2, "stepMs": 10})).await;
    let id = job["jobId"].as_str().unwrap().to_string();
    // Let it finish, then stop the server.
    for _ in 0..100 {
        let v = first.job_view(&id).await;
        if v["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.shutdown().await;

    let second = start_on(Arc::new(store.clone()), |_| {}).await;
    let res = second
        .http
        .get(second.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["seq"], 4);
    assert_eq!(v["result"], json!({"steps": 2}));
    // The token issued by the first server still opens a socket on the second.
    let url = job["websocketUrl"]
        .as_str()
        .unwrap()
        .replace(&first.addr.to_string(), &second.addr.to_string());
    let (mut c, _) = connect_async(url).await.unwrap();
    send_json(&mut c, json!({"action": "sync"})).await;
    assert_eq!(next_json(&mut c).await["status"], "succeeded");
}

fn jobcast_cli(store: &DynamoStore, srv: &TestServer) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jobcast"));
    c.env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("JOBCAST_TABLE", store.table())
        .env("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", srv.url("/dev"))
        .env_remove("JOBCAST_WEBHOOK_SECRET");
    c
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn jobcast_publish_end_to_end() {
    let store = dynamo_store().await;
    let srv = start_on(Arc::new(store.clone()), |c| {
        c.kinds = jobcast::dispatch::Kinds::parse_list("export=command:true").unwrap()
    })
    .await;
    let job = srv.create_export_job(json!({"table": "orders"})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    let (mut c, _) = connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    srv.connection_id(&mut c).await;

    let run = |args: Vec<String>| {
        let mut cmd = jobcast_cli(&store, &srv);
        cmd.arg("publish").args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--job".to_string(), job_id.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    let out = run(args(&[
        "--status",
        "running",
        "--percent",
        "40",
        "--message",
        "rows 400/1000",
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["delivered"], 1);
    assert_eq!(printed["snapshot"]["seq"], 2);
    let pushed = next_json(&mut c).await;
    assert_eq!(pushed["percent"], 40.0);
    assert_eq!(pushed["message"], "rows 400/1000");

    // Percent going down: refused, nothing stored.
    let out = run(args(&["--status", "running", "--percent", "30"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not go down"));

    let out = run(args(&[
        "--status",
        "succeeded",
        "--result",
        r#"{"rows":1000}"#,
    ]))
    .await
    .unwrap();
    assert!(out.status.success());
    let pushed = next_json(&mut c).await;
    assert_eq!(pushed["status"], "succeeded");
    assert_eq!(pushed["seq"], 3);
    assert_eq!(pushed["result"], json!({"rows": 1000}));

    // After terminal: a clear refusal.
    let out = run(args(&["--status", "running"])).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already ended succeeded"));

    // Unknown job.
    let out = run(vec![
        "--job".into(),
        "job_nope".into(),
        "--status".into(),
        "running".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // Bad JSON is a usage error naming the fix.
    let out = run(args(&["--status", "failed", "--error", "{oops"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn jobcast_publish_reports_an_unreachable_endpoint() {
    let store = dynamo_store().await;
    let srv = start_on(Arc::new(store.clone()), |c| {
        c.kinds = jobcast::dispatch::Kinds::parse_list("export=command:true").unwrap()
    })
    .await;
    let job = srv.create_export_job(json!({})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    store
        .subscribe(&job_id, "L0SM9cOFvHcCIhw=", chrono::Utc::now())
        .await
        .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cmd = jobcast_cli(&store, &srv);
    cmd.args([
        "publish",
        "--job",
        &job_id,
        "--status",
        "running",
        "--endpoint",
    ])
    .arg(format!("http://{dead}/dev"));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not reach the management endpoint"),
        "{err}"
    );
    assert!(!err.contains("DispatchFailure {"), "a debug dump: {err}");
    // The update itself is stored: pollers see it.
    assert_eq!(
        store.get_job(&job_id).await.unwrap().unwrap().snapshot.seq,
        2
    );
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn table_create_is_idempotent() {
    let table = format!("jobcast-cli-{:08x}", rand::random::<u32>());
    let run = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jobcast"));
        c.env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .args(["table", "create", "--table", &table]);
        c.output().unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already exists"));
    let d = dynamodb_client()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let t = d.table().unwrap();
    let mut indexes: Vec<_> = t
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["GSI1", "GSI2", "GSI3"]);
    let ttl = dynamodb_client()
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("ttl")
    );
}

/// Where a serve process logs: nowhere, unless JOBCAST_TEST_SERVE_LOG is set.
fn serve_log() -> std::process::Stdio {
    if std::env::var_os("JOBCAST_TEST_SERVE_LOG").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    }
}

/// `jobcast serve --store dynamodb` as its own process, on a free port.
fn serve_process(store: &DynamoStore) -> (Process, String) {
    serve_process_with(store, &[], &[])
}

/// The same, with extra arguments and environment.
/// Waits until the `serve` at `addr` has found at least `at_least` jobs
/// left unfinished and settled each of them.
async fn recovery_settled(addr: &str, at_least: u64) {
    let read = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    tokio::time::timeout(WAIT, async {
        loop {
            let text = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let found = read(&text, "jobcast_recovery_found_total ");
            if found >= at_least && read(&text, "jobcast_recovered_total ") == found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("recovery settled in time");
}

fn serve_process_with(
    store: &DynamoStore,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Process::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_jobcast"))
            .args(["serve", "--store", "dynamodb", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .env("JOBCAST_TABLE", store.table())
            .env_remove("JOBCAST_WEBHOOK_SECRET")
            // One secret for every run, so tokens outlive a restart.
            .env("JOBCAST_TOKEN_SECRET", SECRET)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(serve_log())
            .stderr(serve_log())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("127.0.0.1:{port}"))
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn sigterm_under_load_closes_everyone_and_loses_no_job_state() {
    let store = dynamo_store().await;
    let (mut child, addr) = serve_process(&store);
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(
            post_job(
                &addr,
                json!({"kind": "demo", "input": {"steps": 100, "stepMs": 50}}),
            )
            .await,
        );
    }
    // 100 clients, 20 per job, each reading until it is closed.
    let mut clients = Vec::new();
    for i in 0..100 {
        let job = &jobs[i % jobs.len()];
        let (mut c, _) = connect_async(job["websocketUrl"].as_str().unwrap())
            .await
            .unwrap();
        send_json(&mut c, json!({"action": "ping"})).await;
        let mut id = String::new();
        while id.is_empty() {
            let v = next_json(&mut c).await;
            if v["type"] == "pong" {
                id = v["connectionId"].as_str().unwrap().to_string();
            }
        }
        let job_id = job["jobId"].as_str().unwrap().to_string();
        clients.push(tokio::spawn(async move {
            let mut last_seq = 0u64;
            let mut code = None;
            while let Some(m) = c.next().await {
                match m {
                    Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        if v["type"] == "progress" && v["jobId"] == job_id.as_str() {
                            last_seq = last_seq.max(v["seq"].as_u64().unwrap());
                        }
                    }
                    Ok(tokio_tungstenite::tungstenite::Message::Close(f)) => {
                        code = f.map(|f| u16::from(f.code));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            (id, job_id, last_seq, code)
        }));
    }
    // Mid-run, with every job publishing.
    for job in &jobs {
        wait_for_job(&store, job["jobId"].as_str().unwrap(), 30, |j| {
            j.snapshot.seq >= 3
        })
        .await;
    }
    child.terminate();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut ids = Vec::new();
    for c in clients {
        let (id, job_id, last_seq, code) = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("every client is closed")
            .unwrap();
        assert_eq!(code, Some(1001), "client {id}");
        let e = seen.entry(job_id).or_default();
        *e = (*e).max(last_seq);
        ids.push(id);
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
    // Every $disconnect ran: no subscription is left behind.
    for id in &ids {
        assert!(
            store.connection_jobs(id).await.unwrap().is_empty(),
            "{id} left a subscription"
        );
    }
    // Nothing any client saw is missing from the store: the store is written first.
    for (job_id, client_seq) in &seen {
        let stored = store.get_job(job_id).await.unwrap().expect("job kept");
        assert!(
            stored.snapshot.seq >= *client_seq,
            "{job_id}: clients saw seq {client_seq}, the store has {}",
            stored.snapshot.seq
        );
        assert!(
            *client_seq >= 2,
            "{job_id} was running when the server stopped"
        );
    }
}

/// Ends a `serve` process at once, as a crash or `kill -9` would.
async fn crash(child: Process) {
    tokio::task::spawn_blocking(move || child.crash())
        .await
        .unwrap();
}

/// Polls the table until `done` holds for the job, or panics after `secs`.
async fn wait_for_job(
    store: &DynamoStore,
    id: &str,
    secs: u64,
    done: impl Fn(&jobcast::store::JobRecord) -> bool,
) -> jobcast::store::JobRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let job = store.get_job(id).await.unwrap().expect("job stored");
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} stuck at {:?}",
            job.snapshot
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_job_cut_off_by_a_crash_resumes_when_serve_starts_again() {
    let store = dynamo_store().await;
    let (first, addr) = serve_process(&store);
    let job = post_job(
        &addr,
        json!({"kind": "demo", "input": {"steps": 20, "stepMs": 100}}),
    )
    .await;
    let id = job["jobId"].as_str().unwrap().to_string();
    wait_for_job(&store, &id, 20, |j| j.snapshot.seq >= 5).await;
    crash(first).await;
    let cut = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(cut.snapshot.status, Status::Running);
    assert!(cut.snapshot.seq < 22, "{:?}", cut.snapshot);

    // (That --no-resume leaves it as it is: tests/suite/shutdown.rs, on paused time.)

    // The next run takes it up where it stopped; a client following it sees
    // every remaining step once, in order, up to the terminal snapshot.
    let (second, addr2) = serve_process(&store);
    let url = job["websocketUrl"].as_str().unwrap().replace(&addr, &addr2);
    let (mut c, _) = connect_async(url).await.unwrap();
    send_json(&mut c, json!({"action": "sync"})).await;
    let mut seen = Vec::new();
    loop {
        let v = tokio::time::timeout(Duration::from_secs(20), next_json(&mut c))
            .await
            .expect("the resumed job keeps publishing");
        if v["type"] == "progress" {
            let end = v["status"] == "succeeded" || v["status"] == "failed";
            seen.push(v);
            if end {
                break;
            }
        }
    }
    let steps = applied(&seen);
    let seqs: Vec<u64> = steps.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert!(seqs[0] <= cut.snapshot.seq + 1, "{seqs:?}");
    assert_eq!(
        seqs,
        (seqs[0]..=22).collect::<Vec<_>>(),
        "no step skipped or repeated"
    );
    let percents: Vec<f64> = steps
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    let last = steps.last().unwrap();
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["result"], json!({"steps": 20}));
    crash(second).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_webhook_owed_when_serve_crashed_is_delivered_by_the_next_run() {
    const HOOK_SECRET: &str = "whsec-restart-0123456789";
    let store = dynamo_store().await;
    let rx = webhook_receiver(vec![503]).await;
    let env = [("JOBCAST_WEBHOOK_SECRET", HOOK_SECRET)];
    let (first, addr) = serve_process_with(&store, &[], &env);
    let job = post_job(
        &addr,
        json!({"kind": "demo", "input": {"steps": 1, "stepMs": 0},
               "callbackUrl": format!("http://{}/hook", rx.addr)}),
    )
    .await;
    let id = job["jobId"].as_str().unwrap().to_string();
    // The receiver refuses the first attempt; the server dies before a retry lands.
    for _ in 0..200 {
        if !rx.got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    crash(first).await;
    let owed = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(owed.snapshot.status, Status::Succeeded);
    assert!(owed.webhook_owed(), "{:?}", owed.webhook);
    let attempts_before = rx.got.lock().unwrap().len();
    *rx.script.lock().unwrap() = vec![200];

    let (second, _) = serve_process_with(&store, &[], &env);
    let done = wait_for_job(&store, &id, 20, |j| !j.webhook_owed()).await;
    assert_eq!(
        done.webhook.as_ref().map(|w| w.status),
        Some(jobcast::store::WebhookStatus::Delivered)
    );
    let got = rx.got.lock().unwrap().clone();
    assert!(got.len() > attempts_before);
    let last = got.last().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(jobcast::webhook::verify(
        HOOK_SECRET.as_bytes(),
        &last.signature,
        &last.body,
        now,
        Duration::from_secs(300)
    ));
    let body: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["jobId"], id.as_str());
    assert_eq!(body["status"], "succeeded");
    crash(second).await;
}

fn sqs_client() -> aws_sdk_sqs::Client {
    let endpoint = emulators::sqs();
    let creds = aws_credential_types::Credentials::new("local", "local", None, None, "test");
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn an_sqs_kind_gets_the_job_message_and_its_worker_reports_through_serve() {
    let sqs = sqs_client();
    let queue = sqs
        .create_queue()
        .queue_name(format!("exports-{:08x}", rand::random::<u32>()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let store = dynamo_store().await;
    let kind = format!("export=sqs:{queue}");
    let endpoint = emulators::sqs();
    let (_serve, addr) = serve_process_with(
        &store,
        &["--kind", &kind],
        &[("AWS_ENDPOINT_URL_SQS", &endpoint)],
    );
    let job = post_job(
        &addr,
        json!({"kind": "export", "input": {"table": "orders"}}),
    )
    .await;
    let id = job["jobId"].as_str().unwrap().to_string();
    let watcher = tokio::spawn({
        let job = job.clone();
        async move { follow(&job).await }
    });
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&queue)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            if let Some(m) = got.messages().first() {
                return serde_json::from_str::<Value>(m.body().unwrap()).unwrap();
            }
        }
    })
    .await
    .expect("the job message on the queue");
    assert_eq!(msg["jobId"], id.as_str());
    assert_eq!(msg["input"], json!({"table": "orders"}));
    assert_eq!(msg["attempt"], 1);
    for body in [
        json!({"percent": 50, "message": "half"}),
        json!({"status": "succeeded", "result": {"rows": 12}}),
    ] {
        accepted_update(&msg, body).await;
    }
    let seen = watcher.await.unwrap();
    assert_monotonic(&seen);
    assert_eq!(seen.last().unwrap()["result"], json!({"rows": 12}));
    let stored = store.get_job(&id).await.unwrap().unwrap();
    assert!(stored.dispatched);
    assert_eq!(stored.snapshot.seq, 3);
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn two_serves_over_one_table_resume_hand_over_and_expire_each_job_once() {
    use jobcast::store::{JobRecord, Liveness};
    let store = dynamo_store().await;
    let now = chrono::Utc::now();
    // A demo job a crashed run left half done ...
    let demo = format!("job_{:024x}", rand::random::<u128>() >> 32);
    store
        .create_job(JobRecord::queued(
            &demo,
            "demo",
            json!({"steps": 10, "stepMs": 50}),
            None,
            now,
        ))
        .await
        .unwrap();
    let mut step1 = JobUpdate::status(Status::Running);
    step1.percent = Some(10.0);
    store.update_job(&demo, step1, now).await.unwrap();
    // ... a worker-kind job it never handed over ...
    let queued = format!("job_{:024x}", rand::random::<u128>() >> 32);
    store
        .create_job(JobRecord::queued(&queued, "export", json!({}), None, now))
        .await
        .unwrap();
    // ... and one whose worker went silent.
    let silent = format!("job_{:024x}", rand::random::<u128>() >> 32);
    store
        .create_job(JobRecord::queued(&silent, "export", json!({}), None, now))
        .await
        .unwrap();
    let mut u = JobUpdate::status(Status::Running);
    u.liveness = Liveness::Refresh(now.timestamp() - 1);
    store.update_job(&silent, u, now).await.unwrap();
    store.mark_dispatched(&silent, None).await.unwrap();

    let worker = webhook_receiver(vec![200]).await;
    let kind = format!("export=http://{}/work", worker.addr);
    let env = [("JOBCAST_WEBHOOK_SECRET", SECRET)];
    let args = ["--kind", kind.as_str(), "--heartbeat-timeout", "1s"];
    let (_a, addr_a) = serve_process_with(&store, &args, &env);
    let (_b, addr_b) = serve_process_with(&store, &args, &env);

    // The demo job runs to its end once: one run publishes steps 2..10 and
    // the end (seq 12); two interleaved would go on to about 21. (Each serve
    // pushes to its own clients only, so the store is what both share.)
    wait_for_job(&store, &demo, 20, |j| j.snapshot.status.is_terminal()).await;
    // Both processes have settled every job they found (at least the demo
    // job and the queued one), so no hand-over is still to come.
    for addr in [&addr_a, &addr_b] {
        recovery_settled(addr, 2).await;
    }
    let d = store.get_job(&demo).await.unwrap().unwrap();
    assert_eq!(d.snapshot.status, Status::Succeeded);
    assert_eq!(d.snapshot.seq, 12, "one run, not two interleaved");

    // The worker-kind job was handed over once, as attempt 2.
    let got = worker.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "handed over exactly once");
    let msg: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(msg["jobId"], queued.as_str());
    assert_eq!(msg["attempt"], 2);

    // The silent job ended worker_lost once.
    let s = store.get_job(&silent).await.unwrap().unwrap();
    assert_eq!(s.snapshot.status, Status::Failed);
    assert_eq!(s.snapshot.error.unwrap().code, "worker_lost");
    assert_eq!(s.snapshot.seq, 3);
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn two_serves_over_one_table_push_to_each_others_clients_and_keep_their_subscriptions() {
    let store = dynamo_store().await;
    let worker = webhook_receiver(vec![200]).await;
    let kind = format!("export=http://{}/work", worker.addr);
    let env = [("JOBCAST_WEBHOOK_SECRET", SECRET)];
    let args = ["--kind", kind.as_str()];
    let (_a, addr_a) = serve_process_with(&store, &args, &env);
    let (b, addr_b) = serve_process_with(&store, &args, &env);

    let job = post_job(&addr_a, json!({"kind": "export", "input": {}})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    let url_a = job["websocketUrl"].as_str().unwrap().to_string();
    let url_b = url_a.replace(&addr_a, &addr_b);
    let (mut on_a, _) = connect_async(&url_a).await.unwrap();
    let (mut on_b, _) = connect_async(&url_b).await.unwrap();
    let mut ids = Vec::new();
    for c in [&mut on_a, &mut on_b] {
        send_json(c, json!({"action": "ping"})).await;
        ids.push(
            next_json(c).await["connectionId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    // The worker reports to each process in turn.
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = worker.got.lock().unwrap().first().cloned() {
                return serde_json::from_slice::<Value>(&r.body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the job message");
    let mut to = msg.clone();
    for step in 1..=6u32 {
        let addr = if step % 2 == 0 { &addr_b } else { &addr_a };
        to["updateUrl"] = json!(format!("http://{addr}/jobs/{job_id}/updates"));
        let body = if step == 6 {
            json!({"status": "succeeded", "result": {"step": step}})
        } else {
            json!({"percent": step * 10})
        };
        accepted_update(&to, body).await;
    }
    // Each client has every update, wherever it was published.
    for c in [&mut on_a, &mut on_b] {
        let mut seqs = Vec::new();
        loop {
            let m = next_json(c).await;
            seqs.push(m["seq"].as_u64().unwrap());
            if m["status"] == "succeeded" {
                break;
            }
        }
        assert_eq!(seqs, (2..=7).collect::<Vec<u64>>());
    }
    // No subscription was taken for gone.
    let mut subscribers = store.subscribers(&job_id).await.unwrap();
    subscribers.sort();
    ids.sort();
    assert_eq!(subscribers, ids);

    // A process that stops takes its sockets with it: a publish from the
    // other finds that connection really gone, and only then drops it.
    let job = post_job(&addr_a, json!({"kind": "export", "input": {}})).await;
    let job_id = job["jobId"].as_str().unwrap().to_string();
    let url = job["websocketUrl"].as_str().unwrap().to_string();
    let (mut stays, _) = connect_async(&url).await.unwrap();
    let (gone, _) = connect_async(url.replace(&addr_a, &addr_b)).await.unwrap();
    assert_eq!(store.subscribers(&job_id).await.unwrap().len(), 2);
    crash(b).await;
    drop(gone);
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = worker.got.lock().unwrap().get(1).cloned() {
                return serde_json::from_slice::<Value>(&r.body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the second job message");
    accepted_update(&msg, json!({"percent": 50})).await;
    assert_eq!(next_json(&mut stays).await["percent"], 50.0);
    let left = store.subscribers(&job_id).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
}
