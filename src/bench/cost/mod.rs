//! `jobcast bench cost`: what a job costs in AWS, measured on the handlers
//! a deployment runs.
//!
//! For each audience size S it runs one job of N updates the way the AWS
//! path does: `POST /jobs` and every `POST /jobs/{id}/updates` through the
//! jobs API handler (the Lambda's code, in this process), S real WebSocket
//! clients on the gateway, every `@connections` post over HTTP with the AWS
//! SDK (answered `--management-latency` later, as AWS's would), and the store
//! on DynamoDB Local, where every request asks for its `ConsumedCapacity`.
//! `$connect` and `$disconnect` are timed by calling their handlers too.
//! What was counted is priced with [`prices::US_EAST_1`].

pub mod meter;
mod model;
pub mod prices;
mod report;

pub use model::{Dollars, Step};

pub use super::args::{CostOptions, UpdatesVia};
use super::fanout::{Audience, local_table};
use super::local_sdk_config;
use crate::gateway::GatewayConfig;
use crate::gateway::events::{ConnectionMeta, http_event, new_connection_id};
use crate::handlers::{Deps, JobQueue, QueueError, jobs_api, websocket};
use crate::publish::{Flusher, Held, Publisher};
use crate::serve::{Serve, ServeConfig};
use crate::store::{DynamoStore, JobRecord, Store};
use crate::token::TokenKey;
use crate::wiring::DepsBuilder;
use meter::{CapacityMeter, Usage};
use model::{JobSteps, dollars_per_update};
use prices::{Prices, US_EAST_1};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One audience size, measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostCase {
    pub subscribers: usize,
    pub updates: usize,
    pub create: Step,
    /// One update, on average: one jobs API invocation.
    pub update: Step,
    pub connect: Step,
    pub disconnect: Step,
    /// Progress messages the clients received, and expected (with
    /// coalescing, what the publishers posted).
    pub delivered: u64,
    pub expected: u64,
    /// Coalescing windows the sweeper pushed.
    pub flushes: u64,
    /// One update: `POST /jobs/{id}/updates` to the last post.
    pub per_update: Dollars,
    /// The whole job (create, S connects and disconnects, N updates,
    /// connection minutes) divided by its N updates.
    pub per_update_with_job: Dollars,
    /// Chunks each update appended (0: progress updates).
    pub chunks_per_update: usize,
    /// Streaming: dollars per million chunks appended, each delivered to
    /// every one of the S subscribers.
    pub per_million_chunks: Option<f64>,
    /// The whole job, in dollars.
    pub job_total: f64,
}

/// The run: every case, the latency and the prices used.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    pub management_latency_ms: f64,
    pub coalesce_ms: f64,
    pub updates_via: UpdatesVia,
    pub connection_minutes: f64,
    pub lambda_memory_mb: f64,
    pub prices_read_on: &'static str,
    pub prices: Prices,
    pub cases: Vec<CostCase>,
}

/// The sweeper's part in coalescing: each window it is asked to push runs
/// here as the sweeper's invocation would, timed from the invoke (its wait
/// for the window's end is billed too).
#[derive(Default)]
struct SweeperFlush {
    running: std::sync::Mutex<Vec<tokio::task::JoinHandle<f64>>>,
}

impl SweeperFlush {
    /// Waits for every flush asked so far; the time each took, in ms.
    async fn finished(&self) -> Vec<f64> {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        let mut millis = Vec::with_capacity(running.len());
        for task in running {
            millis.extend(task.await.ok());
        }
        millis
    }
}

#[async_trait::async_trait]
impl Flusher for SweeperFlush {
    async fn schedule(&self, publisher: &Publisher, held: Held) -> Result<(), String> {
        let publisher = publisher.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            if let Err(e) = publisher.flush_held(&held).await {
                tracing::warn!(error = %e, "flush failed");
            }
            started.elapsed().as_secs_f64() * 1000.0
        });
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        Ok(())
    }
}

/// The demo queue of the jobs Lambda (SQS in AWS): counts hand-overs.
#[derive(Default)]
struct CountedQueue(AtomicU64);

#[async_trait::async_trait]
impl JobQueue for CountedQueue {
    async fn enqueue(&self, _job: &JobRecord, _base_url: &str) -> Result<(), QueueError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn cancel_hint(&self, _job_id: &str) {}
}

/// Runs every case.
pub async fn run(opts: CostOptions) -> Result<CostReport, String> {
    let mut cases = Vec::new();
    for &s in &opts.subscribers {
        cases.push(case(&opts, s).await?);
    }
    Ok(CostReport {
        management_latency_ms: opts.management_latency.as_secs_f64() * 1000.0,
        coalesce_ms: opts.coalesce.as_secs_f64() * 1000.0,
        updates_via: opts.updates_via,
        connection_minutes: opts.connection_minutes,
        lambda_memory_mb: prices::LAMBDA_MEMORY_MB,
        prices_read_on: prices::READ_ON,
        prices: US_EAST_1,
        cases,
    })
}

/// Times `f` and the DynamoDB use it caused.
async fn measured<T, F: Future<Output = T>>(meter: &CapacityMeter, f: F) -> (T, f64, Usage) {
    let before = meter.usage();
    let started = Instant::now();
    let out = f.await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    (out, ms, meter.usage().since(&before))
}

/// The jobs Lambda's dependencies: the store, and `@connections` over HTTP.
fn lambda_deps(
    sdk: &aws_config::SdkConfig,
    store: Arc<dyn Store>,
    tokens: &TokenKey,
    addr: SocketAddr,
    queue: Arc<CountedQueue>,
    coalesce: (Duration, &Arc<SweeperFlush>),
) -> Deps {
    let mut parts = DepsBuilder::new(store, Default::default());
    parts.tokens = tokens.clone();
    parts.lease_owner = "lambda".into();
    parts.publish.coalesce = coalesce.0;
    parts.flusher = Some(Arc::clone(coalesce.1) as Arc<dyn Flusher>);
    let publisher = parts.publisher(parts.management_pusher(sdk, &format!("http://{addr}/dev")));
    let queue = parts.dispatcher(
        &publisher,
        queue,
        tokio_util::task::TaskTracker::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    parts.deps(publisher, queue)
}

/// A jobs API event as the HTTP API sends it.
fn jobs_event(
    method: http::Method,
    path: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
    job_id: Option<&str>,
) -> Result<aws_lambda_events::apigw::ApiGatewayV2httpRequest, String> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api.example.com")
        .header("content-type", "application/json");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let (parts, ()) = req.body(()).map_err(|e| e.to_string())?.into_parts();
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    Ok(http_event(
        &parts,
        body.to_string().as_bytes(),
        peer,
        job_id,
        chrono::Utc::now(),
    ))
}

/// Runs a jobs handler; a non-2xx answer is an error of the bench.
async fn call_jobs(
    meter: &CapacityMeter,
    handled: impl Future<Output = aws_lambda_events::apigw::ApiGatewayV2httpResponse>,
) -> Result<(serde_json::Value, f64, Usage), String> {
    let (res, ms, usage) = measured(meter, handled).await;
    let body = match &res.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t.clone(),
        other => format!("{other:?}"),
    };
    if !(200..300).contains(&res.status_code) {
        return Err(format!("jobs API answered {}: {body}", res.status_code));
    }
    let v = serde_json::from_str(&body).map_err(|e| format!("jobs API body: {e}"))?;
    Ok((v, ms, usage))
}

/// The local gateway in front of the clients, on its own store client.
async fn gateway(
    opts: &CostOptions,
    s: usize,
    unmetered: DynamoStore,
    tokens: &TokenKey,
) -> Result<
    (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ),
    String,
> {
    let config = ServeConfig {
        gateway: GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: Some(s + opts.samples + 100),
            outbound_queue: opts.updates.max(16) * 2,
            management_latency: opts.management_latency,
            ..GatewayConfig::default()
        },
        resume: false,
        ..ServeConfig::default()
    };
    let gateway = Serve::bind(config, Arc::new(unmetered), tokens.clone())
        .await
        .map_err(|e| e.to_string())?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run(async {
        let _ = stop_rx.await;
    }));
    Ok((addr, stop_tx, server))
}

/// `POST /jobs` through the jobs handler: its step and the job's id.
async fn create_job(deps: &Deps, meter: &CapacityMeter) -> Result<(Step, String), String> {
    let created = jobs_event(
        http::Method::POST,
        "/jobs",
        None,
        &serde_json::json!({"kind": "demo", "input": {}}),
        None,
    )?;
    let (body, ms, usage) = call_jobs(meter, jobs_api::handle(deps, created)).await?;
    let job_id = body["jobId"].as_str().ok_or("202 without jobId")?;
    Ok((Step::new(&[ms], &usage), job_id.to_string()))
}

/// One audience size: a job of `opts.updates` updates watched by `s`.
async fn case(opts: &CostOptions, s: usize) -> Result<CostCase, String> {
    let sdk = local_sdk_config().await;
    let meter = CapacityMeter::default();
    let metered = local_table(&sdk, meter.clone()).await?;
    // API Gateway itself reads no table: the local gateway's own requests
    // (its $connect/$disconnect, sweeps) go through a client not metered;
    // the handlers' are measured below, as the Lambda functions make them.
    let unmetered = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        metered.table(),
        Duration::from_secs(3600),
    );
    let store: Arc<dyn Store> = Arc::new(metered);
    let tokens = TokenKey::random(Duration::from_secs(3600));
    let (addr, stop_tx, server) = gateway(opts, s, unmetered, &tokens).await?;
    let queue = Arc::new(CountedQueue::default());
    let sweeper = Arc::new(SweeperFlush::default());
    let deps = lambda_deps(
        &sdk,
        Arc::clone(&store),
        &tokens,
        addr,
        Arc::clone(&queue),
        (opts.coalesce, &sweeper),
    );

    let (create, job_id) = create_job(&deps, &meter).await?;
    let token = tokens.issue(&job_id, chrono::Utc::now().timestamp());
    let streaming = opts.chunks_per_update > 0;
    let hello = streaming.then(|| {
        serde_json::json!({"action": "subscribe", "jobId": job_id, "token": token, "streams": {"tokens": 0}})
            .to_string()
    });
    let url = format!("ws://{addr}/dev?jobId={job_id}&token={token}");
    let audience = Audience::connect(&url, s, hello.as_deref()).await?;
    if streaming {
        // Each subscriber's `subscribe` is answered with the snapshot.
        audience.wait_for(s, Duration::from_secs(10)).await;
        audience.received.store(0, Ordering::Release);
    }

    let update = updates(opts, &deps, &meter, &tokens, &job_id, &sweeper).await?;
    let flushes = update.flush_invocations as u64;
    // Coalesced, the messages are what the publishers posted.
    let expected = match opts.coalesce.is_zero() && !streaming {
        true => (s * opts.updates) as u64,
        false => deps
            .publisher
            .metrics()
            .publish_delivered_total
            .load(Ordering::Relaxed),
    };
    let delivered = audience
        .wait_for(expected as usize, Duration::from_secs(30))
        .await as u64;
    drop(audience);
    let (connect, disconnect) = lifecycle(opts.samples, &deps, &meter, &job_id, &token).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let sqs = queue.0.load(Ordering::Relaxed);
    let per_message = expected as f64 / opts.updates as f64;
    let (one, via) = (update.per_invocation(), opts.updates_via);
    let per_update = dollars_per_update(&one, per_message, via, &US_EAST_1);
    let job = JobSteps {
        create: &create,
        update: &update,
        connect: &connect.per_invocation(),
        disconnect: &disconnect.per_invocation(),
        sqs,
        messages: expected as f64,
    };
    let per_update_with_job = job
        .dollars(s, opts, &US_EAST_1)
        .scaled(1.0 / opts.updates as f64);
    let chunks = opts.chunks_per_update;
    let per_million_chunks = (chunks > 0).then(|| per_update.total() / chunks as f64 * 1e6);
    let job_total = per_update_with_job.total() * opts.updates as f64;
    Ok(CostCase {
        subscribers: s,
        updates: opts.updates,
        chunks_per_update: chunks,
        per_million_chunks,
        job_total,
        create,
        update: one,
        connect,
        disconnect,
        delivered,
        expected,
        flushes,
        per_update,
        per_update_with_job,
    })
}

/// `n` worker updates through `POST /jobs/{id}/updates`, the last one
/// `succeeded`; all of them together, with the sweeper's flushes they
/// caused (and their DynamoDB use).
async fn updates(
    opts: &CostOptions,
    deps: &Deps,
    meter: &CapacityMeter,
    tokens: &TokenKey,
    job_id: &str,
    sweeper: &SweeperFlush,
) -> Result<Step, String> {
    let before = meter.usage();
    let n = opts.updates;
    let worker = tokens.issue_worker(job_id, chrono::Utc::now().timestamp());
    let path = format!("/jobs/{job_id}/updates");
    let mut millis = Vec::with_capacity(n);
    for i in 1..=n {
        if i > 1 && !opts.update_interval.is_zero() {
            tokio::time::sleep(opts.update_interval).await;
        }
        let k = opts.chunks_per_update;
        let chunks: Vec<String> = (0..k).map(|c| format!(" tok{}", (i - 1) * k + c)).collect();
        let body = if k > 0 && i == n {
            serde_json::json!({"status": "succeeded", "append": {"tokens": chunks}})
        } else if k > 0 {
            serde_json::json!({"append": {"tokens": chunks}})
        } else if i == n {
            serde_json::json!({"status": "succeeded", "result": {"rows": n}})
        } else {
            serde_json::json!({"status": "running", "percent": i as f64 * 100.0 / n as f64,
                "message": format!("step {i} of {n}")})
        };
        let event = jobs_event(
            http::Method::POST,
            &path,
            Some(&worker),
            &body,
            Some(job_id),
        )?;
        let (_, ms, _) = match opts.updates_via {
            UpdatesVia::FunctionUrl => {
                call_jobs(meter, jobs_api::handle_updates(deps, event)).await?
            }
            UpdatesVia::HttpApi => call_jobs(meter, jobs_api::handle(deps, event)).await?,
        };
        millis.push(ms);
    }
    let flushes = sweeper.finished().await;
    Ok(Step::new(&millis, &meter.usage().since(&before)).with_flushes(&flushes))
}

/// `$connect` and `$disconnect` of `samples` more connections to the job,
/// through their handlers.
async fn lifecycle(
    samples: usize,
    deps: &Deps,
    meter: &CapacityMeter,
    job_id: &str,
    token: &str,
) -> (Step, Step) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let (mut on_use, mut off_use) = (Usage::default(), Usage::default());
    for _ in 0..samples {
        let meta = ConnectionMeta {
            connection_id: new_connection_id(),
            connected_at: chrono::Utc::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("jobcast-bench".into()),
            domain_name: "ws.example.com".into(),
            stage: "dev".into(),
            authorizer: Default::default(),
            clock: crate::clock::system(),
        };
        let query = [
            ("jobId".to_string(), vec![job_id.to_string()]),
            ("token".to_string(), vec![token.to_string()]),
        ]
        .into_iter()
        .collect();
        let event = meta.connect_event(&http::HeaderMap::new(), query);
        let (_, ms, usage) = measured(meter, websocket::connect(deps, event)).await;
        on.push(ms);
        on_use = on_use.plus(&usage);
        let event = meta.disconnect_event(1001, "Going away");
        let (_, ms, usage) = measured(meter, websocket::disconnect(deps, event)).await;
        off.push(ms);
        off_use = off_use.plus(&usage);
    }
    (Step::new(&on, &on_use), Step::new(&off, &off_use))
}
