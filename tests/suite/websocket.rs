//! The WebSocket API (CONTRACT section 3) through real tokio-tungstenite clients.

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;

async fn handshake_status(url: &str) -> u16 {
    match connect_async(url).await {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    }
}

#[tokio::test]
async fn ping_answers_with_the_connection_id() {
    let srv = start().await;
    let (_c, id) = srv.connected().await;
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
}

#[tokio::test]
async fn handshake_refusals_are_http_statuses() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
    let id = job["jobId"].as_str().unwrap();
    // Missing token: 401.
    assert_eq!(
        handshake_status(&srv.ws_url(&format!("?jobId={id}"))).await,
        401
    );
    // Garbage token: 403.
    assert_eq!(
        handshake_status(&srv.ws_url(&format!("?jobId={id}&token=1.abc"))).await,
        403
    );
    // A token for another job: 403.
    let other = srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
    let t = other["token"].as_str().unwrap();
    assert_eq!(
        handshake_status(&srv.ws_url(&format!("?jobId={id}&token={t}"))).await,
        403
    );
    // An expired token, signed with the right key: 403.
    let expired = token_key().issue(id, chrono::Utc::now().timestamp() - 7200);
    assert_eq!(
        handshake_status(&srv.ws_url(&format!("?jobId={id}&token={expired}"))).await,
        403
    );
    // Unknown stage: 404.
    assert_eq!(
        handshake_status(&format!("ws://{}/prod", srv.addr)).await,
        404
    );
    // The right token: accepted.
    let t = job["token"].as_str().unwrap();
    assert_eq!(
        handshake_status(&srv.ws_url(&format!("?jobId={id}&token={t}"))).await,
        101
    );
    assert_eq!(srv.metric("jobcast_connects_refused_total").await, 4.0);
}

#[tokio::test]
async fn plain_get_on_the_stage_is_not_an_upgrade() {
    let srv = start().await;
    let res = srv.http.get(srv.url("/dev")).send().await.unwrap();
    assert_eq!(res.status(), 426);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let res = srv.http.get(srv.url("/nope/deeper")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_stays_open() {
    let srv = start().await;
    let mut c = srv.connect().await;
    for body in [
        "not json",
        "[1,2]",
        "{}",
        r#"{"action":5}"#,
        r#"{"action":"subscribe"}"#,
    ] {
        c.send(Message::Text(body.into())).await.unwrap();
        let reply = next_json(&mut c).await;
        assert_eq!(reply["type"], "error", "{body}");
        assert_eq!(reply["code"], "bad_request", "{body}");
        assert!(reply["message"].as_str().unwrap().len() > 5);
    }
    send_json(&mut c, json!({"action": "dance"})).await;
    let reply = next_json(&mut c).await;
    assert_eq!(reply["code"], "unknown_action");
    // Still open and answering.
    srv.connection_id(&mut c).await;
}

#[tokio::test]
async fn subscribe_replies_with_snapshot_and_receives_updates() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 3, "stepMs": 300})).await;
    let mut c = srv.connect().await;
    send_json(
        &mut c,
        json!({"action": "subscribe", "jobId": job["jobId"], "token": job["token"]}),
    )
    .await;
    let mut seen = Vec::new();
    loop {
        let m = next_json(&mut c).await;
        assert_eq!(m["type"], "progress");
        assert_eq!(m["jobId"], job["jobId"]);
        let done = m["status"] == "succeeded";
        seen.push(m);
        if done {
            break;
        }
    }
    let applied = applied(&seen);
    for w in applied.windows(2) {
        assert_eq!(
            w[1]["seq"].as_u64().unwrap(),
            w[0]["seq"].as_u64().unwrap() + 1
        );
    }
    let last = applied.last().unwrap();
    assert_eq!(last["result"], json!({"steps": 3}));
    assert_eq!(last["seq"], 5);
}

#[tokio::test]
async fn subscribe_with_wrong_token_or_unknown_job_records_nothing() {
    let srv = start().await;
    let job = srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
    let (mut c, conn) = srv.connected().await;
    send_json(
        &mut c,
        json!({"action": "subscribe", "jobId": job["jobId"], "token": "1.AAAA"}),
    )
    .await;
    let reply = next_json(&mut c).await;
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(reply["jobId"], job["jobId"]);
    // A valid token for a job that does not exist.
    let ghost = token_key().issue("job_ghost", chrono::Utc::now().timestamp());
    send_json(
        &mut c,
        json!({"action": "subscribe", "jobId": "job_ghost", "token": ghost}),
    )
    .await;
    assert_eq!(next_json(&mut c).await["code"], "not_found");
    assert!(
        srv.deps
            .store()
            .connection_jobs(&conn)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unsubscribe_and_sync() {
    let srv = start().await;
    let a = srv.create_job(json!({"steps": 50, "stepMs": 1000})).await;
    let b = srv.create_job(json!({"steps": 50, "stepMs": 1000})).await;
    let mut c = srv.connect().await;
    for j in [&a, &b] {
        send_json(
            &mut c,
            json!({"action": "subscribe", "jobId": j["jobId"], "token": j["token"]}),
        )
        .await;
        assert_eq!(next_json(&mut c).await["jobId"], j["jobId"]);
    }
    send_json(&mut c, json!({"action": "sync"})).await;
    let mut seen = vec![
        next_json(&mut c).await["jobId"]
            .as_str()
            .unwrap()
            .to_string(),
        next_json(&mut c).await["jobId"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    seen.sort();
    let mut want = vec![
        a["jobId"].as_str().unwrap().to_string(),
        b["jobId"].as_str().unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(seen, want);

    send_json(
        &mut c,
        json!({"action": "unsubscribe", "jobId": a["jobId"]}),
    )
    .await;
    let reply = next_json(&mut c).await;
    assert_eq!(reply, json!({"type": "unsubscribed", "jobId": a["jobId"]}));
    send_json(&mut c, json!({"action": "sync"})).await;
    assert_eq!(next_json(&mut c).await["jobId"], b["jobId"]);
    // Only one snapshot follows a sync now: the next message is the pong.
    send_json(&mut c, json!({"action": "ping"})).await;
    assert_eq!(next_json(&mut c).await["type"], "pong");
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let mut srv = start().await;
    let (mut c, id) = srv.connected().await;
    c.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(close_code(&mut c).await, 1003);
    srv.expect_disconnect(&id, 1003, "binary").await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_others_keep_working() {
    let srv = start().await;
    let mut bystander = srv.connect().await;
    let mut raw = RawWs::connect(srv.addr, "/dev").await;
    raw.frame(true, 1, &[b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(raw.close_code().await, 1007);
    srv.connection_id(&mut bystander).await;
}

/// A raw client and its connection id, learned with a ping.
async fn raw_connected(srv: &TestServer) -> (RawWs, String) {
    let mut raw = RawWs::connect(srv.addr, "/dev").await;
    raw.frame(true, 1, br#"{"action":"ping"}"#).await;
    let pong: serde_json::Value = serde_json::from_str(&raw.next_text().await).unwrap();
    (raw, pong["connectionId"].as_str().unwrap().to_string())
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

#[tokio::test]
async fn every_close_code_a_client_may_send_is_accepted_1012_to_1014_included() {
    let mut srv = start().await;
    for code in [
        1000u16, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let (mut raw, id) = raw_connected(&srv).await;
        raw.frame(true, 8, &close_payload(code, b"done")).await;
        let (echo, _) = raw.close_frame().await;
        // A clean close: the code echoed, or 1000.
        assert!(echo == code || echo == 1000, "{code} answered with {echo}");
        // $disconnect reports the code the client sent.
        srv.expect_disconnect(&id, i64::from(code), "done").await;
    }
}

#[tokio::test]
async fn codes_no_client_may_send_are_a_protocol_error() {
    let srv = start().await;
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let (mut raw, _) = raw_connected(&srv).await;
        raw.frame(true, 8, &close_payload(code, b"")).await;
        assert_eq!(raw.close_code().await, 1002, "close code {code}");
    }
}

#[tokio::test]
async fn invalid_utf8_says_whether_it_was_the_close_reason_or_a_text_frame() {
    let mut srv = start().await;
    let (mut raw, id) = raw_connected(&srv).await;
    raw.frame(true, 8, &close_payload(1000, &[0xce, 0xba, 0xff]))
        .await;
    let (code, reason) = raw.close_frame().await;
    assert_eq!(code, 1007);
    assert_eq!(reason, "invalid UTF-8 in close reason");
    srv.expect_disconnect(&id, 1007, "close reason").await;

    let (mut raw, id) = raw_connected(&srv).await;
    raw.frame(true, 1, &[b'"', 0xff, b'"']).await;
    let (code, reason) = raw.close_frame().await;
    assert_eq!(code, 1007);
    assert_eq!(reason, "invalid UTF-8 in text frame");
    srv.expect_disconnect(&id, 1007, "text frame").await;
}

#[tokio::test]
async fn a_reply_already_due_goes_out_before_a_protocol_error_closes() {
    let srv = start().await;
    for _ in 0..20 {
        let mut raw = RawWs::connect(srv.addr, "/dev").await;
        // A ping, then at once a frame with reserved bits set: the pong is
        // owed before the connection fails.
        let ping = RawWs::encode(true, 1, br#"{"action":"ping"}"#);
        let bad = RawWs::encode(true, 0x40 | 1, b"rsv");
        raw.write_raw(&[ping, bad].concat()).await;
        let pong: serde_json::Value = serde_json::from_str(&raw.next_text().await).unwrap();
        assert_eq!(pong["type"], "pong");
        assert_eq!(raw.close_code().await, 1002);
    }
}

#[tokio::test]
async fn frame_and_message_size_limits() {
    let srv = start().await;
    // A 32768-byte frame is accepted (the reply proves the server read it).
    let mut raw = RawWs::connect(srv.addr, "/dev").await;
    raw.frame(true, 1, &vec![b'x'; 32768]).await;
    assert!(raw.next_text().await.contains("bad_request"));
    // 32769 bytes in one frame: 1009, saying it was the frame.
    raw.frame(true, 1, &vec![b'x'; 32769]).await;
    let (code, reason) = raw.close_frame().await;
    assert_eq!(code, 1009);
    assert!(reason.starts_with("frame too big"), "{reason}");

    // A 131072-byte message in 32 KiB frames is accepted.
    let mut raw = RawWs::connect(srv.addr, "/dev").await;
    raw.fragmented_text(&vec![b'y'; 131072], 32768).await;
    assert!(raw.next_text().await.contains("bad_request"));
    // 131073 bytes: 1009, saying it was the message.
    raw.fragmented_text(&vec![b'y'; 131073], 32768).await;
    let (code, reason) = raw.close_frame().await;
    assert_eq!(code, 1009);
    assert!(reason.starts_with("message too big"), "{reason}");

    // A well-behaved library sending one big frame also gets 1009.
    let mut c = srv.connect().await;
    c.send(Message::Text("z".repeat(131073).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut c).await, 1009);
}

#[tokio::test]
async fn max_connections_answers_429() {
    let srv = start_with(|c| c.gateway.max_connections = Some(2)).await;
    let _a = srv.connect().await;
    let _b = srv.connect().await;
    assert_eq!(handshake_status(&srv.ws_url("")).await, 429);
    drop(_a);
    // The slot frees once the first connection's $disconnect has run.
    let mut ok = false;
    for _ in 0..50 {
        if handshake_status(&srv.ws_url("")).await == 101 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a slot should free after a disconnect");
}

/// On paused time, with API Gateway's ten minutes.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_with_1001() {
    let mut srv = start_paused_with(|_| {}).await;
    let (mut c, id) = srv.connected().await;
    // Still open at 9 minutes 55 seconds ...
    let early = tokio::time::timeout(
        Duration::from_secs(595),
        futures_util::StreamExt::next(&mut c),
    )
    .await;
    assert!(early.is_err(), "closed early: {early:?}");
    // ... closed at 10 minutes.
    let started = tokio::time::Instant::now();
    assert_eq!(close_code(&mut c).await, 1001);
    assert!(started.elapsed() <= Duration::from_secs(5));
    srv.expect_disconnect(&id, 1001, "idle").await;
}

/// On paused time, with API Gateway's own limits: ten minutes idle, two
/// hours in all.
#[tokio::test(start_paused = true)]
async fn activity_defers_idle_but_lifetime_still_ends_the_connection() {
    let mut srv = start_paused_with(|_| {}).await;
    let (mut c, id) = srv.connected().await;
    let started = tokio::time::Instant::now();
    // Pinging every 5 minutes keeps the connection past its idle timeout.
    let code = loop {
        tokio::time::sleep(Duration::from_secs(300)).await;
        if c.send(Message::Text(r#"{"action":"ping"}"#.into()))
            .await
            .is_err()
        {
            break 0;
        }
        match tokio::time::timeout(
            Duration::from_millis(200),
            futures_util::StreamExt::next(&mut c),
        )
        .await
        {
            Ok(Some(Ok(Message::Close(Some(f))))) => break u16::from(f.code),
            _ => continue,
        }
    };
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_secs(7200) && lived <= Duration::from_secs(7200 + 300),
        "{lived:?}"
    );
    srv.expect_disconnect(&id, 1001, "lifetime").await;
    assert!(code == 1001 || code == 0);
}

#[tokio::test]
async fn client_close_runs_disconnect_once_with_its_code() {
    let mut srv = start().await;
    let job = srv.create_job(json!({"steps": 100, "stepMs": 1000})).await;
    let (mut c, _) = connect_async(srv.ws_url(&format!(
        "?jobId={}&token={}",
        job["jobId"].as_str().unwrap(),
        job["token"].as_str().unwrap()
    )))
    .await
    .unwrap();
    let id = srv.connection_id(&mut c).await;
    assert_eq!(
        srv.deps.store().connection_jobs(&id).await.unwrap(),
        vec![job["jobId"].as_str().unwrap().to_string()]
    );
    c.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4000.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let e = srv.disconnect_of(&id).await;
    assert_eq!(e.request_context.disconnect_status_code, Some(4000));
    assert_eq!(e.request_context.event_type.as_deref(), Some("DISCONNECT"));
    assert!(
        srv.deps
            .store()
            .connection_jobs(&id)
            .await
            .unwrap()
            .is_empty()
    );
    // Exactly once: no second event for this connection arrives.
    let again = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let e = srv.lifecycle.recv().await.unwrap();
            if e.request_context.connection_id.as_deref() == Some(id.as_str()) {
                return e;
            }
        }
    })
    .await;
    assert!(again.is_err());
    assert_eq!(srv.metric("jobcast_disconnects_total").await, 1.0);
}

#[tokio::test]
async fn abrupt_tcp_drop_runs_disconnect_with_1006() {
    let mut srv = start().await;
    let (c, id) = srv.connected().await;
    drop(c);
    srv.expect_disconnect(&id, 1006, "").await;
}
