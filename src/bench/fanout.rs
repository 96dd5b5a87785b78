//! `jobcast bench fanout`: starts a gateway in this process, connects N real WebSocket
//! clients subscribed to one job, publishes R updates and measures, for
//! each, the time from the publish call until the last client has the
//! snapshot. The publisher either pushes in-process (the registry) or over
//! HTTP through `@connections` with the AWS SDK; the store is the memory
//! one or DynamoDB (Local), whose requests are counted.

use super::args::FanoutArgs;
use super::{
    RequestCounter, create_bench_job, local_sdk_config, percentile, require_loopback, timed_round,
};
use crate::gateway::GatewayConfig;
use crate::publish::Publisher;
use crate::serve::{Serve, ServeConfig};
use crate::store::{DynamoStore, MemoryStore, Store};
use crate::token::TokenKey;
use crate::wiring::DepsBuilder;
use chrono::Utc;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Which store the fan-out reads subscribers from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchStore {
    Memory,
    Dynamodb,
}

/// How the publisher reaches the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchPush {
    /// Straight into the gateway's registry (the demo worker's path).
    InProcess,
    /// Through `@connections` over HTTP with the AWS SDK (a Lambda worker's path).
    Http,
}

/// What a fan-out run measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutReport {
    pub subscribers: usize,
    pub rounds: usize,
    pub store: BenchStore,
    pub push: BenchPush,
    pub connect_seconds: f64,
    /// Time until the last subscriber had the snapshot, per round, in ms.
    pub fanout_ms_p50: f64,
    pub fanout_ms_max: f64,
    pub fanout_ms_min: f64,
    /// Subscribers reached per second at the median round.
    pub messages_per_second_p50: f64,
    /// DynamoDB requests per publish (memory store: 0).
    pub dynamodb_requests_per_publish: f64,
    /// The delay added to every `@connections` answer.
    pub management_latency_ms: f64,
    /// Posts in flight the last round started with.
    pub in_flight: usize,
    /// Whether that number was fixed (`--publish-concurrency`) or planned.
    pub fixed_in_flight: bool,
    /// Until the publish call returned, median: the billed duration of a
    /// Lambda making this publish.
    pub publish_ms_p50: f64,
    pub lost: u64,
}

/// Runs the fan-out benchmark.
pub async fn fanout(args: &FanoutArgs) -> Result<FanoutReport, String> {
    let (subscribers, rounds) = (args.subscribers, args.rounds);
    let counter = RequestCounter::default();
    // Every target is on this machine: any credentials will do.
    let sdk = local_sdk_config().await;
    let store = bench_store(args.store, &sdk, &counter).await?;
    let tokens = TokenKey::random(Duration::from_secs(3600));
    let mut config = ServeConfig {
        gateway: GatewayConfig {
            listen: "127.0.0.1:0"
                .parse()
                .map_err(|_| "bad address".to_string())?,
            max_connections: Some(subscribers + 100),
            outbound_queue: rounds.max(16) * 2,
            management_latency: args.management_latency,
            ..GatewayConfig::default()
        },
        ..ServeConfig::default()
    };
    if let Some(n) = args.publish_concurrency {
        (
            config.publish.fan_out.concurrency,
            config.publish.fan_out.max_concurrency,
        ) = (n, n);
    }
    let gateway = Serve::bind(config.clone(), Arc::clone(&store), tokens.clone())
        .await
        .map_err(|e| e.to_string())?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    let in_process = gateway.deps().publisher.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run(async {
        let _ = stop_rx.await;
    }));

    let job_id = format!("job_bench{:08x}", rand::random::<u32>());
    let now = Utc::now();
    create_bench_job(store.as_ref(), &job_id, now).await?;
    let token = tokens.issue(&job_id, now.timestamp());
    let url = format!("ws://{addr}/dev?jobId={job_id}&token={token}");
    let connect_started = Instant::now();
    let audience = Audience::connect(&url, subscribers, None).await?;
    let connect_seconds = connect_started.elapsed().as_secs_f64();

    let publisher = match args.push {
        BenchPush::InProcess => in_process,
        BenchPush::Http => {
            let mut parts = DepsBuilder::new(Arc::clone(&store), Default::default());
            parts.publish = config.publish.clone();
            parts.publisher(parts.management_pusher(&sdk, &format!("http://{addr}/dev")))
        }
    };

    let requests_before = counter.get();
    let measured = audience.rounds(&publisher, &job_id, rounds).await?;
    let requests = counter.get() - requests_before;

    let _ = stop_tx.send(());
    let _ = server.await;
    drop(audience);
    let in_flight = publisher
        .metrics()
        .publish_concurrency
        .load(Ordering::Relaxed)
        .max(0) as usize;
    Ok(measured.report(args, connect_seconds, requests, in_flight))
}

/// The rounds of one run: times until every subscriber had it and until
/// the publish call returned, in ms, and the deliveries lost.
struct Measured {
    arrived: Vec<f64>,
    published: Vec<f64>,
    lost: u64,
}

impl Measured {
    fn report(
        mut self,
        args: &FanoutArgs,
        connect_seconds: f64,
        requests: u64,
        in_flight: usize,
    ) -> FanoutReport {
        self.arrived.sort_by(f64::total_cmp);
        self.published.sort_by(f64::total_cmp);
        let p50 = percentile(&self.arrived, 0.5);
        FanoutReport {
            subscribers: args.subscribers,
            rounds: args.rounds,
            store: args.store,
            push: args.push,
            connect_seconds,
            fanout_ms_p50: p50,
            fanout_ms_max: self.arrived.last().copied().unwrap_or(0.0),
            fanout_ms_min: self.arrived.first().copied().unwrap_or(0.0),
            messages_per_second_p50: if p50 > 0.0 {
                args.subscribers as f64 / (p50 / 1000.0)
            } else {
                0.0
            },
            dynamodb_requests_per_publish: requests as f64 / args.rounds.max(1) as f64,
            management_latency_ms: args.management_latency.as_secs_f64() * 1000.0,
            in_flight,
            fixed_in_flight: args.publish_concurrency.is_some(),
            publish_ms_p50: percentile(&self.published, 0.5),
            lost: self.lost,
        }
    }
}

/// The store under the bench: memory, or a fresh table in DynamoDB Local
/// whose requests `counter` counts.
async fn bench_store(
    kind: BenchStore,
    sdk: &aws_config::SdkConfig,
    counter: &RequestCounter,
) -> Result<Arc<dyn Store>, String> {
    match kind {
        BenchStore::Memory => Ok(Arc::new(MemoryStore::new())),
        BenchStore::Dynamodb => Ok(Arc::new(local_table(sdk, counter.clone()).await?)),
    }
}

/// A fresh table in DynamoDB Local (AWS_ENDPOINT_URL_DYNAMODB, on this
/// machine), every request seen by `interceptor`.
pub(crate) async fn local_table(
    sdk: &aws_config::SdkConfig,
    interceptor: impl aws_sdk_dynamodb::config::Intercept + 'static,
) -> Result<DynamoStore, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").map_err(|_| {
        "set AWS_ENDPOINT_URL_DYNAMODB to DynamoDB Local (scripts/dynamodb-local.sh start)"
            .to_string()
    })?;
    require_loopback(&endpoint)?;
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .interceptor(interceptor)
        .build();
    let table = format!("jobcast-bench-{:08x}", rand::random::<u32>());
    let s = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        table,
        Duration::from_secs(3600),
    );
    s.ensure_table().await.map_err(|e| e.to_string())?;
    Ok(s)
}

/// The subscribers of one job: a reader task per socket counting progress
/// messages, and a notification when every one has the current round.
pub(crate) struct Audience {
    size: usize,
    pub(crate) received: Arc<AtomicUsize>,
    all_in: Arc<Notify>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Audience {
    /// Connects `size` subscribers to `url`, 64 handshakes at a time; each
    /// sends `hello` first when given (a `subscribe` asking for streams).
    /// Progress and chunk messages are counted.
    pub(crate) async fn connect(
        url: &str,
        size: usize,
        hello: Option<&str>,
    ) -> Result<Self, String> {
        let sockets: Vec<_> = futures_util::stream::iter(0..size)
            .map(|_| async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                if let Some(text) = hello {
                    futures_util::SinkExt::send(&mut ws, Message::Text(text.to_string().into()))
                        .await?;
                }
                Ok::<_, tokio_tungstenite::tungstenite::Error>(ws)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let received = Arc::new(AtomicUsize::new(0));
        let all_in = Arc::new(Notify::new());
        let mut readers = Vec::with_capacity(size);
        for ws in sockets {
            let mut ws = ws.map_err(|e| format!("connect failed: {e}"))?;
            let received = Arc::clone(&received);
            let all_in = Arc::clone(&all_in);
            readers.push(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m
                        && (t.as_str().contains(r#""type":"progress""#)
                            || t.as_str().contains(r#""type":"chunks""#))
                        && received.fetch_add(1, Ordering::AcqRel) + 1 == size
                    {
                        all_in.notify_one();
                    }
                }
            }));
        }
        Ok(Self {
            size,
            received,
            all_in,
            readers,
        })
    }

    /// Waits until `expected` progress messages arrived in all, or `limit`
    /// passed; returns how many did.
    pub(crate) async fn wait_for(&self, expected: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received.load(Ordering::Acquire);
            if got >= expected || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Publishes `rounds` updates one after another, each timed until every
    /// subscriber has it (or 30 s). Returns the times in milliseconds and the
    /// deliveries lost.
    async fn rounds(
        &self,
        publisher: &Publisher,
        job_id: &str,
        rounds: usize,
    ) -> Result<Measured, String> {
        let mut m = Measured {
            arrived: Vec::with_capacity(rounds),
            published: Vec::with_capacity(rounds),
            lost: 0,
        };
        for round in 1..=rounds {
            self.received.store(0, Ordering::Release);
            let r = timed_round(
                publisher,
                job_id,
                (round, rounds),
                self.size,
                || self.received.load(Ordering::Acquire),
                &self.all_in,
            )
            .await?;
            m.arrived.push(r.millis);
            m.published.push(r.publish_millis);
            m.lost += (self.size - r.got) as u64 + r.report.failed.len() as u64;
        }
        Ok(m)
    }
}

impl Drop for Audience {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl std::fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fan-out to {} subscribers ({:?} store, {:?} push, {} rounds, {:.0} ms @connections latency, {} in flight): p50 {:.2} ms (publish call {:.2} ms), min {:.2} ms, max {:.2} ms, {:.0} msg/s at p50, {:.1} DynamoDB requests/publish, connect {:.2} s, lost {}",
            self.subscribers,
            self.store,
            self.push,
            self.rounds,
            self.management_latency_ms,
            self.in_flight,
            self.fanout_ms_p50,
            self.publish_ms_p50,
            self.fanout_ms_min,
            self.fanout_ms_max,
            self.messages_per_second_p50,
            self.dynamodb_requests_per_publish,
            self.connect_seconds,
            self.lost
        )
    }
}
