//! Fan-out at AWS latency: `--management-latency` delays every
//! `@connections` answer, and the publisher plans how many posts it keeps in
//! flight from the round trips and 429s it sees.

use crate::common::*;
use jobcast::protocol::Status;
use jobcast::push::{PaceOptions, Paced};
use jobcast::store::{JobRecord, JobUpdate};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(20);

fn running(p: f64) -> JobUpdate {
    let mut u = JobUpdate::status(Status::Running);
    u.percent = Some(p);
    u
}

/// A queued job with `n` connected subscribers.
async fn audience(srv: &TestServer, job_id: &str, n: usize) -> Vec<Client> {
    let store = srv.deps.publisher.store();
    let now = chrono::Utc::now();
    store
        .create_job(JobRecord::queued(
            job_id.to_string(),
            "export",
            serde_json::Value::Null,
            None,
            now,
        ))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..n {
        let (c, id) = srv.connected().await;
        store.subscribe(job_id, &id, now).await.unwrap();
        clients.push(c);
    }
    clients
}

async fn expect_seqs(clients: &mut [Client], seqs: &[u64]) {
    for c in clients {
        for want in seqs {
            let got = next_json(c).await;
            assert_eq!(got["type"], "progress", "{got}");
            assert_eq!(got["seq"].as_u64(), Some(*want), "{got}");
        }
    }
}

#[tokio::test]
async fn management_latency_delays_every_answer() {
    let srv = start_with(|c| c.gateway.management_latency = LATENCY).await;
    let (mut client, id) = srv.connected().await;
    let api = sdk(srv.url("/dev")).await;
    for _ in 0..3 {
        let sent = Instant::now();
        api.post_to_connection()
            .connection_id(&id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new("hi"))
            .send()
            .await
            .unwrap();
        assert!(
            sent.elapsed() >= LATENCY,
            "answered after {:?}",
            sent.elapsed()
        );
        assert_eq!(
            client_text(&mut client).await,
            "hi",
            "the message itself is not held back"
        );
    }
    let sent = Instant::now();
    api.get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert!(sent.elapsed() >= LATENCY);
    // In process, too: the server's own publisher waits as a Lambda would.
    let _clients = audience(&srv, "job_latency", 2).await;
    let sent = Instant::now();
    let (_, report) = srv
        .deps
        .publisher
        .publish("job_latency", running(10.0))
        .await
        .unwrap();
    assert_eq!(report.delivered, 2);
    assert!(sent.elapsed() >= LATENCY);
}

async fn client_text(c: &mut Client) -> String {
    use futures_util::StreamExt;
    match tokio::time::timeout(WAIT, c.next()).await {
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn in_flight_grows_to_meet_the_target_at_aws_latency() {
    let srv = start_with(|c| {
        c.gateway.management_latency = LATENCY;
        c.publish.fan_out = PaceOptions {
            concurrency: 4,
            max_concurrency: 256,
            fan_out_target: Duration::from_millis(50),
            ..PaceOptions::default()
        };
    })
    .await;
    let mut clients = audience(&srv, "job_grow", 100).await;
    let publisher = &srv.deps.publisher;
    let (_, first) = publisher.publish("job_grow", running(10.0)).await.unwrap();
    assert_eq!(first.delivered, 100);
    // Nothing was known of the round trip: the floor.
    assert_eq!(srv.metric("jobcast_publish_concurrency").await, 4.0);
    assert!(srv.metric("jobcast_publish_post_latency_seconds").await >= 0.02);

    let (_, second) = publisher.publish("job_grow", running(20.0)).await.unwrap();
    assert_eq!(second.delivered, 100);
    // 100 posts × ≥ 20 ms within 50 ms: at least 40 in flight.
    let in_flight = srv.metric("jobcast_publish_concurrency").await;
    assert!((40.0..=100.0).contains(&in_flight), "{in_flight}");
    expect_seqs(&mut clients, &[2, 3]).await;
}

#[tokio::test]
async fn a_fixed_number_in_flight_stays_fixed() {
    let srv = start_with(|c| {
        c.gateway.management_latency = LATENCY;
        c.publish.fan_out = PaceOptions {
            concurrency: 8,
            max_concurrency: 8,
            fan_out_target: Duration::from_millis(50),
            ..PaceOptions::default()
        };
    })
    .await;
    let mut clients = audience(&srv, "job_fixed", 30).await;
    for step in 1..=2 {
        let (_, r) = srv
            .deps
            .publisher
            .publish("job_fixed", running(step as f64))
            .await
            .unwrap();
        assert_eq!(r.delivered, 30);
        assert_eq!(srv.metric("jobcast_publish_concurrency").await, 8.0);
    }
    expect_seqs(&mut clients, &[2, 3]).await;
}

#[tokio::test]
async fn a_429_halves_the_posts_in_flight_and_every_message_still_arrives_once() {
    let srv = start_with(|c| c.gateway.limit_posts_per_second = Some(40)).await;
    let mut clients = audience(&srv, "job_throttled", 80).await;
    let paced = Paced::new(PaceOptions {
        concurrency: 32,
        max_concurrency: 32,
        max_attempts: 30,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        ..PaceOptions::default()
    });
    let publisher =
        http_publisher(&srv, Arc::clone(srv.deps.publisher.store()), paced.clone()).await;
    let (_, report) = publisher
        .publish("job_throttled", running(50.0))
        .await
        .unwrap();
    assert_eq!(report.delivered, 80, "{report:?}");
    assert!(report.retried > 0, "80 posts at 40/s must meet the limit");
    let ceiling = paced.pace().ceiling();
    assert!(ceiling <= 16, "ceiling {ceiling} after 429s");
    expect_seqs(&mut clients, &[2]).await;
    // Exactly once: nothing more arrives.
    for c in &mut clients {
        use futures_util::StreamExt;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), c.next())
                .await
                .is_err()
        );
    }
}

/// Without added latency the local registry answers every post at once:
/// the publisher delivers to live subscribers, and a subscription whose
/// connection is gone (a wrong-shaped id among them) is counted and
/// deleted, as over `@connections`.
#[tokio::test]
async fn local_fan_out_answers_at_once_and_deletes_gone_subscriptions() {
    let srv = start().await;
    let mut clients = audience(&srv, "at-once", 3).await;
    let store = srv.deps.publisher.store();
    let now = chrono::Utc::now();
    for gone in ["L0SM9cOFvHcCIhw=", "not-an-id-of-this-gateway"] {
        store.subscribe("at-once", gone, now).await.unwrap();
    }
    let (_, report) = srv
        .deps
        .publisher
        .publish("at-once", running(25.0))
        .await
        .unwrap();
    assert_eq!(report.delivered, 3);
    assert_eq!(report.gone, 2);
    assert!(report.failed.is_empty());
    expect_seqs(&mut clients, &[2]).await;
    let mut left = store.subscribers("at-once").await.unwrap();
    left.sort();
    assert_eq!(left.len(), 3, "gone subscriptions deleted: {left:?}");
    assert!(!left.iter().any(|c| c == "L0SM9cOFvHcCIhw="));
}
