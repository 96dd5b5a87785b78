//! Coalescing (`serve --coalesce`): a burst of updates reaches subscribers
//! as its first and its newest snapshot, every update still takes its seq,
//! and a terminal update is never held. Real WebSocket clients, the real
//! update endpoint and the built-in demo worker, on paused tokio time: the
//! windows are exact, and waiting for one costs nothing.

use crate::common::*;
use jobcast::dispatch::Kinds;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::connect_async;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A server coalescing into `window`, whose kind `export` posts its job
/// messages to `worker`.
async fn server(worker: &WebhookReceiver, window: Duration) -> TestServer {
    let kinds = format!("export=http://{}/work", worker.addr);
    start_paused_with(|c| {
        c.webhook_secret = Some(SECRET.into());
        c.kinds = Kinds::parse_list(&kinds).unwrap();
        c.publish.coalesce = window;
    })
    .await
}

/// A new `export` job, its job message, and a subscriber that has seen its
/// current snapshot.
async fn job_and_subscriber(srv: &TestServer, worker: &WebhookReceiver) -> (Value, Client) {
    let job = srv.create_export_job(json!({})).await;
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = worker.got.lock().unwrap().last().cloned() {
                return serde_json::from_slice::<Value>(&r.body).unwrap();
            }
            tokio::time::sleep(MS(5)).await;
        }
    })
    .await
    .expect("the job message in time");
    assert_eq!(msg["jobId"], job["jobId"]);
    let (mut c, _) = connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    send_json(&mut c, json!({"action": "sync"})).await;
    assert_eq!(next_json(&mut c).await["seq"], 1);
    (msg, c)
}

/// Progress messages until one with seq `last` (or a terminal one).
async fn until_seq(c: &mut Client, last: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = next_json(c).await;
        assert_eq!(m["type"], "progress", "{m}");
        let (seq, status) = (m["seq"].as_u64().unwrap(), m["status"].clone());
        seen.push(m);
        if seq >= last || ["succeeded", "failed", "cancelled"].contains(&status.as_str().unwrap()) {
            return seen;
        }
    }
}

fn seqs(seen: &[Value]) -> Vec<u64> {
    seen.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_burst_reaches_subscribers_as_its_first_and_newest_update() {
    let worker = webhook_receiver(vec![200]).await;
    let window = MS(400);
    let mut srv = server(&worker, window).await;
    let (msg, mut c) = job_and_subscriber(&srv, &worker).await;
    // Start the burst just after a window begins, so it fits in one.
    let now = srv.deps.clock.now().timestamp_millis();
    tokio::time::sleep(MS((400 - now.rem_euclid(400) + 20) as u64)).await;
    for k in 1..=10 {
        let a = accepted_update(
            &msg,
            json!({"percent": k * 10 - 5, "message": format!("part {k}")}),
        )
        .await;
        assert_eq!(a["seq"], k + 1, "every update still takes its seq");
    }
    // Then nothing more: the newest state must still arrive, at the window's end.
    let seen = until_seq(&mut c, 11).await;
    let got = seqs(&seen);
    assert_eq!(got.last(), Some(&11), "{seen:?}");
    assert_eq!(seen.last().unwrap()["message"], "part 10");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    // On paused time the burst fits one window exactly. It follows the
    // job's first snapshot in the window before, so it is no news: only
    // its newest goes out, at the window's end.
    assert_eq!(got, [11], "ten updates pushed as {got:?}");
    assert_eq!(
        srv.job_view(msg["jobId"].as_str().unwrap()).await["seq"],
        11
    );
    assert!(srv.metric("jobcast_publish_held_total").await >= 6.0);
    assert!(srv.metric("jobcast_publish_flushed_total").await >= 1.0);
    drop(c);
    srv.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_terminal_update_is_pushed_at_once_even_inside_a_window() {
    let worker = webhook_receiver(vec![200]).await;
    // A window as long as the client's patience: a held terminal update
    // would not arrive in time.
    let mut srv = server(&worker, Duration::from_secs(10)).await;
    let (msg, mut c) = job_and_subscriber(&srv, &worker).await;
    for k in 1..=5 {
        accepted_update(&msg, json!({"percent": k * 10})).await;
    }
    let done = accepted_update(&msg, json!({"status": "succeeded", "result": {"rows": 5}})).await;
    assert_eq!(done["seq"], 7);
    let seen = until_seq(&mut c, 7).await;
    let last = seen.last().unwrap();
    assert_eq!(
        (last["seq"].as_u64(), last["status"].as_str()),
        (Some(7), Some("succeeded"))
    );
    assert_eq!(last["result"], json!({"rows": 5}));
    // Five running updates right after the job's first snapshot are all
    // held; the terminal snapshot goes out at once, in place of them.
    assert_eq!(seqs(&seen), [7]);
    drop(c);
    srv.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_demo_worker_is_coalesced_too_and_ends_on_its_final_snapshot() {
    let srv = start_paused_with(|c| c.publish.coalesce = MS(150)).await;
    let job = srv.create_job(json!({"steps": 30, "stepMs": 20})).await;
    let seen = follow(&job).await;
    let got = seqs(&seen);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0]["percent"].as_f64() <= w[1]["percent"].as_f64())
    );
    let last = seen.last().unwrap();
    assert_eq!(
        (last["seq"].as_u64(), last["status"].as_str()),
        (Some(32), Some("succeeded"))
    );
    assert!(got.len() < 32, "every update was pushed: {got:?}");
}

/// A server coalescing into `window` whose `export` jobs the test reports
/// for, a job, its job message, and a subscriber of its `tokens` stream
/// that has read the first snapshot.
async fn streaming(window: Duration) -> (TestServer, Value, Client) {
    let srv = start_paused_with(|c| {
        c.kinds = Kinds::parse_list("export=command:true").unwrap();
        c.publish.coalesce = window;
    })
    .await;
    let job = srv.create_export_job(json!({})).await;
    let id = job["jobId"].as_str().unwrap();
    let token = srv
        .deps
        .tokens
        .issue_worker(id, srv.deps.clock.now().timestamp());
    let msg = json!({"updateUrl": srv.url(&format!("/jobs/{id}/updates")), "workerToken": token});
    let mut c = srv.connect().await;
    send_json(
        &mut c,
        json!({"action": "subscribe", "jobId": id, "token": job["token"], "streams": {"tokens": 0}}),
    )
    .await;
    assert_eq!(next_json(&mut c).await["type"], "progress");
    (srv, msg, c)
}

/// What a client keeps of `chunks` messages, as the contract's clients
/// do: chunks below the next index are dropped; a gap fails the test.
#[derive(Default)]
struct Kept {
    tokens: Vec<Value>,
    messages: usize,
}

impl Kept {
    fn take(&mut self, m: &Value) {
        assert_eq!(m["stream"], "tokens", "{m}");
        let from = m["from"].as_u64().unwrap() as usize;
        assert!(from <= self.tokens.len(), "a gap: {m}");
        let chunks = m["chunks"].as_array().unwrap();
        self.tokens
            .extend(chunks.iter().skip(self.tokens.len() - from).cloned());
        self.messages += 1;
    }
}

fn tokens(r: std::ops::Range<usize>) -> Vec<Value> {
    r.map(|i| json!(format!("t{i}"))).collect()
}

#[tokio::test(start_paused = true)]
async fn chunks_are_held_for_the_window_and_none_is_dropped() {
    let (mut srv, msg, mut c) = streaming(MS(250)).await;
    for i in 0..24 {
        let a = accepted_update(&msg, json!({"append": {"tokens": [format!("t{i}")]}})).await;
        assert_eq!(a["streams"]["tokens"], i + 1);
        tokio::time::sleep(MS(10)).await;
    }
    let mut kept = Kept::default();
    while kept.tokens.len() < 24 {
        let m = next_json(&mut c).await;
        if m["type"] == "chunks" {
            kept.take(&m);
        }
    }
    assert_eq!(kept.tokens, tokens(0..24));
    // Two dozen appends 10 ms apart, all inside the 250 ms window the job
    // began in: held, and pushed together as one message at its end.
    assert_eq!(kept.messages, 1);
    assert!(srv.metric("jobcast_publish_flushed_total").await >= 1.0);
    drop(c);
    srv.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_terminal_update_pushes_the_held_chunks_at_once_before_its_snapshot() {
    // A window longer than the test waits: only the terminal update can
    // push what it holds.
    let (mut srv, msg, mut c) = streaming(Duration::from_secs(10)).await;
    for i in 0..5 {
        accepted_update(&msg, json!({"append": {"tokens": [format!("t{i}")]}})).await;
    }
    let done = accepted_update(
        &msg,
        json!({"status": "succeeded", "append": {"tokens": ["t5"]}}),
    )
    .await;
    assert_eq!(done["streams"]["tokens"], 6);
    let mut kept = Kept::default();
    let last = loop {
        let m = tokio::time::timeout(MS(3000), async { next_json(&mut c).await })
            .await
            .expect("pushed at once, not at the window's end");
        match m["type"].as_str() {
            Some("chunks") => kept.take(&m),
            _ if m["status"] == "succeeded" => break m,
            _ => {}
        }
    };
    assert_eq!(
        kept.tokens,
        tokens(0..6),
        "every chunk before the terminal snapshot"
    );
    assert_eq!(last["streams"]["tokens"], 6);
    // Every append was held; all six go together, in one message.
    assert_eq!(kept.messages, 1);
    drop(c);
    srv.shutdown().await;
}
