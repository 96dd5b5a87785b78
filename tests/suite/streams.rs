//! Streams (CONTRACT section 10) through real clients: appends through the
//! update endpoint and every answer it gives, live chunks over WebSocket
//! to the subscribers that asked, catch-up from any index, replay of a
//! gap, the polling endpoint, and the demo kind's log.

use crate::common::*;
use jobcast::dispatch::Kinds;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

/// A server with a worker kind `export` whose hand-over does nothing: the
/// test reports for its workers.
async fn server() -> TestServer {
    start_with(|c| c.kinds = Kinds::parse_list("export=command:true").unwrap()).await
}

/// A job of kind `export` and the job message its worker would get.
async fn job_and_message(srv: &TestServer) -> (Value, Value) {
    let job = srv.create_export_job(json!({})).await;
    let id = job["jobId"].as_str().unwrap();
    let token = srv
        .deps
        .tokens
        .issue_worker(id, chrono::Utc::now().timestamp());
    let msg = json!({"updateUrl": srv.url(&format!("/jobs/{id}/updates")), "workerToken": token});
    (job, msg)
}

async fn problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "{code}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], code, "{p}");
    p
}

/// The next `chunks` message (skipping snapshots).
async fn next_chunks(c: &mut Client) -> Value {
    loop {
        let m = next_json(c).await;
        if m["type"] == "chunks" {
            return m;
        }
    }
}

#[tokio::test]
async fn appends_answer_lengths_take_no_seq_and_refuse_bad_input_whole() {
    let srv = server().await;
    let (job, msg) = job_and_message(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    // An append alone: no seq, the job stays queued.
    let a = accepted_update(
        &msg,
        json!({"append": {"log": ["a", "b"], "tokens": ["Hel", "lo"]}}),
    )
    .await;
    assert_eq!(a["seq"], 1);
    assert_eq!(a["status"], "queued");
    assert_eq!(a["streams"], json!({"log": 2, "tokens": 2}));
    // With an update: one seq, the lengths of this request's streams.
    let a = accepted_update(&msg, json!({"percent": 40, "append": {"log": ["c"]}})).await;
    assert_eq!(
        (a["seq"].as_u64(), a["status"].as_str()),
        (Some(2), Some("running"))
    );
    assert_eq!(a["streams"], json!({"log": 3}));
    let view = srv.job_view(id).await;
    assert_eq!(view["streams"], json!({"log": 3, "tokens": 2}));

    // Refused as a whole, nothing appended.
    for bad in [
        json!({"append": ["x"]}),
        json!({"append": {}}),
        json!({"append": {"Log": ["x"]}}),
        json!({"append": {"log": "x"}}),
        json!({"append": {"log": []}}),
        json!({"append": {"log": ["x"], "9": ["y"]}}),
    ] {
        problem(post_update(&msg, bad).await, 422, "bad_stream").await;
    }
    let big = "x".repeat(33 * 1024);
    problem(
        post_update(
            &msg,
            json!({"append": {"log": [big.clone()], "tokens": [big]}}),
        )
        .await,
        413,
        "payload_too_large",
    )
    .await;
    let many: serde_json::Map<String, Value> =
        (0..7).map(|i| (format!("s{i}"), json!([i]))).collect();
    problem(
        post_update(&msg, json!({"append": many})).await,
        422,
        "bad_stream",
    )
    .await;
    // An update that would be refused leaves its chunks out too.
    problem(
        post_update(&msg, json!({"percent": 10, "append": {"log": ["late"]}})).await,
        422,
        "invalid_update",
    )
    .await;
    assert_eq!(
        srv.job_view(id).await["streams"],
        json!({"log": 3, "tokens": 2})
    );

    // The update that ends the job may carry a last append; then 409.
    let a = accepted_update(
        &msg,
        json!({"status": "succeeded", "append": {"log": ["end"]}}),
    )
    .await;
    assert_eq!(a["streams"], json!({"log": 4}));
    problem(
        post_update(&msg, json!({"append": {"log": ["x"]}})).await,
        409,
        "terminal",
    )
    .await;
}

#[tokio::test]
async fn subscribers_get_the_streams_they_asked_for_from_any_index_and_replay_gaps() {
    let srv = server().await;
    let (job, msg) = job_and_message(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let token = job["token"].as_str().unwrap();
    let lines = |r: std::ops::Range<usize>| -> Vec<Value> {
        r.map(|i| json!(format!("line {i}"))).collect()
    };
    accepted_update(&msg, json!({"append": {"log": lines(0..5)}})).await;

    // Joining mid-stream from 2: the snapshot, then 2..5, then live.
    let mut reader = srv.connect().await;
    send_json(
        &mut reader,
        json!({"action": "subscribe", "jobId": id, "token": token, "streams": {"log": 2}}),
    )
    .await;
    let snap = next_json(&mut reader).await;
    assert_eq!(
        (snap["type"].as_str(), snap["streams"]["log"].as_u64()),
        (Some("progress"), Some(5))
    );
    let c = next_chunks(&mut reader).await;
    assert_eq!(
        (c["stream"].as_str(), c["from"].as_u64()),
        (Some("log"), Some(2))
    );
    assert_eq!(c["chunks"], json!(lines(2..5)));
    // A client that asked for no stream gets snapshots only.
    let mut plain = srv.connect().await;
    send_json(
        &mut plain,
        json!({"action": "subscribe", "jobId": id, "token": token}),
    )
    .await;
    assert_eq!(next_json(&mut plain).await["type"], "progress");

    accepted_update(
        &msg,
        json!({"percent": 50, "append": {"log": lines(5..7), "other": ["x"]}}),
    )
    .await;
    let c = next_chunks(&mut reader).await;
    assert_eq!(
        (c["from"].as_u64(), c["chunks"].clone()),
        (Some(5), json!(lines(5..7)))
    );
    let p = next_json(&mut reader).await;
    assert_eq!(
        (p["type"].as_str(), p["seq"].as_u64()),
        (Some("progress"), Some(2)),
        "chunks before their snapshot"
    );
    let p = next_json(&mut plain).await;
    assert_eq!(
        p["type"], "progress",
        "no chunks for a client that did not ask: {p}"
    );

    // A gap is replayed from any index; an index at the end answers empty.
    send_json(
        &mut reader,
        json!({"action": "replay", "jobId": id, "stream": "log", "from": 1}),
    )
    .await;
    let c = next_chunks(&mut reader).await;
    assert_eq!(
        (c["from"].as_u64(), c["chunks"].clone()),
        (Some(1), json!(lines(1..7)))
    );
    send_json(
        &mut reader,
        json!({"action": "replay", "jobId": id, "stream": "log", "from": 7}),
    )
    .await;
    let c = next_chunks(&mut reader).await;
    assert_eq!(
        (c["from"].as_u64(), c["chunks"].clone()),
        (Some(7), json!([]))
    );
    // Not following and no token: forbidden; with the token: answered.
    let mut stranger = srv.connect().await;
    send_json(
        &mut stranger,
        json!({"action": "replay", "jobId": id, "stream": "log", "from": 0}),
    )
    .await;
    let e = next_json(&mut stranger).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    send_json(
        &mut stranger,
        json!({"action": "replay", "jobId": id, "stream": "log", "from": 6, "token": token}),
    )
    .await;
    assert_eq!(
        next_chunks(&mut stranger).await["chunks"],
        json!(lines(6..7))
    );
    send_json(
        &mut stranger,
        json!({"action": "replay", "jobId": "job_none", "stream": "log", "from": 0}),
    )
    .await;
    assert_eq!(next_json(&mut stranger).await["code"], "not_found");

    // After the end, a reload catches up with everything exactly once.
    accepted_update(
        &msg,
        json!({"status": "succeeded", "append": {"log": ["done"]}}),
    )
    .await;
    let (mut reload, _) = connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    send_json(
        &mut reload,
        json!({"action": "subscribe", "jobId": id, "token": token, "streams": {"log": 0}}),
    )
    .await;
    let snap = next_json(&mut reload).await;
    assert_eq!(
        (snap["status"].as_str(), snap["streams"]["log"].as_u64()),
        (Some("succeeded"), Some(8))
    );
    let c = next_chunks(&mut reload).await;
    assert_eq!(
        c["chunks"],
        json!([lines(0..7), vec![json!("done")]].concat())
    );
}

#[tokio::test]
async fn the_polling_endpoint_pages_a_stream_until_complete() {
    let srv = server().await;
    let (job, msg) = job_and_message(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let url = |q: &str| srv.url(&format!("/jobs/{id}/streams/log{q}"));
    let chunks: Vec<Value> = (0..25).map(|i| json!(i)).collect();
    accepted_update(&msg, json!({"append": {"log": chunks}})).await;
    let http = srv.http.clone();
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap() }
    };
    let r = get(url("?from=3&limit=10")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("retry-after").is_some(), "not terminal yet");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["chunks"], json!((3..13).collect::<Vec<u64>>()));
    assert_eq!(
        (
            p["from"].as_u64(),
            p["next"].as_u64(),
            p["complete"].as_bool()
        ),
        (Some(3), Some(13), Some(false))
    );
    // A stream the job does not have: an empty page.
    let p: Value = get(srv.url(&format!("/jobs/{id}/streams/none")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (p["chunks"].clone(), p["next"].as_u64()),
        (json!([]), Some(0))
    );
    accepted_update(&msg, json!({"status": "succeeded"})).await;
    let r = get(url("?from=13")).await;
    assert!(r.headers().get("retry-after").is_none());
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["next"].as_u64(), p["complete"].as_bool()),
        (Some(25), Some(true))
    );
    let p: Value = get(url("?from=3&limit=5")).await.json().await.unwrap();
    assert_eq!(
        p["complete"], false,
        "a page short of the end is not complete"
    );
    for bad in ["?from=-1", "?from=x", "?limit=0", "?limit=1001"] {
        problem(get(url(bad)).await, 400, "bad_request").await;
    }
    problem(
        get(srv.url(&format!("/jobs/{id}/streams/Bad"))).await,
        400,
        "bad_request",
    )
    .await;
    problem(
        get(srv.url("/jobs/job_none/streams/log")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_demo_kind_logs_each_step() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 3, "stepMs": 0})).await;
    let seen = follow(&job).await;
    let last = seen.last().unwrap();
    assert_eq!(
        (last["status"].as_str(), last["seq"].as_u64()),
        (Some("succeeded"), Some(5))
    );
    assert_eq!(last["streams"], json!({"log": 4}));
    let id = job["jobId"].as_str().unwrap();
    let p = srv.stream_page(id, "log").await;
    assert_eq!(
        p["chunks"],
        json!(["step 1/3", "step 2/3", "step 3/3", "done"])
    );
    assert_eq!(p["complete"], true);
}

#[tokio::test]
async fn bad_stream_requests_are_answered_and_the_connection_stays() {
    let srv = server().await;
    let (job, _) = job_and_message(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let token = job["token"].as_str().unwrap();
    let mut c = srv.connect().await;
    for bad in [
        json!({"action": "subscribe", "jobId": id, "token": token, "streams": ["log"]}),
        json!({"action": "subscribe", "jobId": id, "token": token, "streams": {"Log": 0}}),
        json!({"action": "subscribe", "jobId": id, "token": token, "streams": {"log": -1}}),
        json!({"action": "replay", "jobId": id, "stream": "9x", "from": 0}),
        json!({"action": "replay", "jobId": id, "stream": "log"}),
        json!({"action": "replay", "jobId": id, "stream": "log", "from": "0"}),
    ] {
        send_json(&mut c, bad.clone()).await;
        let e = next_json(&mut c).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{bad}"
        );
    }
    let id_of = srv.connection_id(&mut c).await;
    assert!(!id_of.is_empty(), "still open");
}
