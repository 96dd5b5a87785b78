//! Hostile clients: slowloris handshakes, sockets that never finish the
//! upgrade, floods, random bytes and broken frames. Each is cut off with a
//! clear outcome while a bystander on the same server keeps working.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Reads until the server closes the socket; what it sent before, if anything.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    r.ok().map(|_| got)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn slowloris_handshakes_are_cut_by_the_handshake_timeout() {
    let srv = start_with(|c| c.gateway.handshake_timeout = Duration::from_millis(500)).await;
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    // Headers started, never finished; a byte now and then keeps the socket busy.
    slow.write_all(b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let dribble = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
        }
    };
    let started = std::time::Instant::now();
    dribble.await;
    // The server gave up on it (408 or a plain close) instead of waiting
    // forever for headers that keep coming a byte at a time.
    let answered = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("a dribbled handshake must be closed by the server");
    if !answered.is_empty() {
        let head = String::from_utf8_lossy(&answered);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut bystander = srv.connect().await;
    srv.connection_id(&mut bystander).await;
}

#[tokio::test]
async fn thousands_of_unfinished_upgrades_do_not_exhaust_memory() {
    let srv = start_with(|c| c.gateway.handshake_timeout = Duration::from_secs(2)).await;
    let before = rss_kib();
    let mut held = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /dev HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_kib().saturating_sub(before);
    // The bound is generous (a few KiB each would be 10 MiB); what matters is
    // that it is bounded and that nothing waits on these sockets.
    assert!(
        grown < 64 * 1024,
        "2,000 half-open handshakes grew the process by {grown} KiB"
    );
    let mut bystander = srv.connect().await;
    srv.connection_id(&mut bystander).await;
    // Every one of them is cut once the handshake timeout passes.
    for s in held.iter_mut() {
        assert!(
            read_until_closed(s, Duration::from_secs(20))
                .await
                .is_some(),
            "an unfinished upgrade was never closed"
        );
    }
    assert_eq!(srv.metric("jobcast_connections_open").await, 1.0);
}

#[tokio::test]
async fn a_flooding_client_is_closed_with_1008_and_others_are_unaffected() {
    let mut srv = start_with(|c| c.gateway.client_messages_per_second = Some(20)).await;
    let (mut bystander, _) = srv.connected().await;
    let (mut flood, flood_id) = srv.connected().await;
    let mut code = None;
    for _ in 0..500 {
        if flood
            .send(Message::text(r#"{"action":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), flood.next()).await {
        match m {
            Ok(Message::Close(Some(f))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1008));
    srv.expect_disconnect(&flood_id, 1008, "rate limit").await;
    assert_eq!(srv.metric("jobcast_rate_limit_closes_total").await, 1.0);
    // A client within the limit is never touched.
    for _ in 0..10 {
        send_json(&mut bystander, serde_json::json!({"action": "ping"})).await;
        assert_eq!(next_json(&mut bystander).await["type"], "pong");
    }
}

#[tokio::test]
async fn random_bytes_before_and_after_the_upgrade() {
    let srv = start().await;
    let mut bystander = srv.connect().await;
    // Noise instead of HTTP: a 400 and a close, not a crash.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&noise).await;
    let answered = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("noise must be answered and closed");
    if !answered.is_empty() {
        assert!(String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 400"));
    }
    // Noise after a good upgrade: the connection ends, nobody else notices.
    for seed in 1..=20u32 {
        let mut raw = RawWs::connect(srv.addr, "/dev").await;
        let junk: Vec<u8> = (0..(64 * seed))
            .map(|i| (i.wrapping_mul(seed.wrapping_mul(40_503)) >> 7) as u8)
            .collect();
        raw.write_raw(&junk).await;
        raw.expect_end().await;
    }
    // Invalid frames: reserved bits, a reserved opcode, no mask, a control
    // frame over 125 bytes. Each is a protocol error: 1002.
    let masked = |first: u8, payload: &[u8]| {
        let mut f = vec![first];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    };
    let cases: Vec<Vec<u8>> = vec![
        masked(0xF1, b"{}"),
        masked(0x83, b"{}"),
        vec![0x81, 0x02, b'h', b'i'],
        masked(0x89, &[7u8; 126]),
    ];
    for bytes in cases {
        let mut raw = RawWs::connect(srv.addr, "/dev").await;
        raw.write_raw(&bytes).await;
        let code = raw.close_code().await;
        assert_eq!(code, 1002, "frame {bytes:02x?} closed with {code}");
    }
    srv.connection_id(&mut bystander).await;
    assert_eq!(srv.metric("jobcast_connections_open").await, 1.0);
}

/// A client that sends one oversized frame and only then reads (as asyncio
/// streams and Windows stacks do, which drop received data on a reset)
/// must still get its close frame: the server lingers, reading and
/// discarding what the client sent, instead of closing on unread bytes.
#[tokio::test]
async fn an_oversized_frame_gets_its_close_frame_every_time_not_a_reset() {
    let srv = start().await;
    for size in [64 * 1024, 200 * 1024] {
        let mut got = Vec::new();
        for _ in 0..20 {
            let mut c = RawWs::connect(srv.addr, "/dev").await;
            c.frame(true, 1, &vec![b'a'; size]).await;
            // Read only once the server has long decided.
            tokio::time::sleep(Duration::from_millis(150)).await;
            match c.pending_error() {
                Some(kind) => got.push(Err(kind)),
                None => got.push(c.try_close_code().await.map_err(|e| e.kind())),
            }
        }
        let ok = got.iter().filter(|r| **r == Ok(1009)).count();
        assert_eq!(ok, 20, "{size} bytes: {got:?}");
    }
}

/// The same for every close the server starts on a client's mistake, with
/// more bytes behind the offending frame that the server never reads.
#[tokio::test]
async fn every_server_close_with_unread_bytes_behind_it_arrives_intact() {
    let srv = start().await;
    let junk = vec![b'j'; 100 * 1024];
    for (what, first, want) in [
        ("binary frame", (0x2u8, b"bin".to_vec()), 1003),
        ("invalid UTF-8", (0x1u8, vec![0xff, 0xfe, 0xfd]), 1007),
        ("reserved opcode", (0x3u8, b"x".to_vec()), 1002),
    ] {
        for _ in 0..5 {
            let mut c = RawWs::connect(srv.addr, "/dev").await;
            c.frame(true, first.0, &first.1).await;
            c.frame(true, 1, &junk).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(c.pending_error(), None, "{what}: reset");
            assert_eq!(c.try_close_code().await.ok(), Some(want), "{what}");
        }
    }
}

/// A client caught halfway through sending a frame when the server closes
/// of its own accord: the close frame must still arrive, not a reset.
async fn halfway(srv: &TestServer) -> (RawWs, String) {
    let mut c = RawWs::connect(srv.addr, "/dev").await;
    c.frame(true, 1, br#"{"action":"ping"}"#).await;
    let pong: serde_json::Value = serde_json::from_str(&c.next_text().await).expect("json");
    let id = pong["connectionId"].as_str().expect("id").to_string();
    // A frame announced as 30 KiB of which 20 KiB are sent: the server is
    // mid-read, with bytes in its receive buffer it has not taken.
    let frame = RawWs::encode(true, 1, &vec![b'a'; 30 * 1024]);
    c.write_raw(&frame[..20 * 1024]).await;
    (c, id)
}

async fn close_arrives_intact(c: &mut RawWs, want: u16, what: &str) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(c.pending_error(), None, "{what}: reset");
    assert_eq!(c.try_close_code().await.ok(), Some(want), "{what}");
}

#[tokio::test]
async fn closes_the_server_starts_itself_arrive_intact_mid_frame() {
    // DELETE @connections: 1000.
    let mut srv = start().await;
    // Through the AWS SDK, which percent-encodes the id's `/`, `+` and `=`.
    let api = sdk(srv.url("/dev")).await;
    for _ in 0..5 {
        let (mut c, id) = halfway(&srv).await;
        api.delete_connection()
            .connection_id(&id)
            .send()
            .await
            .expect("DELETE @connections");
        close_arrives_intact(&mut c, 1000, "DELETE @connections").await;
    }
    // Shutdown: 1001 (the server lingers on every socket, then ends).
    let (mut c, _) = halfway(&srv).await;
    srv.shutdown().await;
    close_arrives_intact(&mut c, 1001, "shutdown").await;
    // Idle timeout: 1001 (half a frame is not a message).
    let srv = start_with(|c| c.gateway.idle_timeout = Duration::from_millis(500)).await;
    let (mut c, _) = halfway(&srv).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    close_arrives_intact(&mut c, 1001, "idle timeout").await;
}
