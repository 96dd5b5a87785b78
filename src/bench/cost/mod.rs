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
pub mod prices;
mod report;

use super::fanout::{Audience, local_table};
use super::local_sdk_config;
use crate::gateway::events::{ConnectionMeta, http_event, new_connection_id};
use crate::gateway::{Gateway, GatewayConfig};
use crate::handlers::{Deps, JobQueue, QueueError, jobs_api, websocket};
use crate::push::ManagementApiPusher;
use crate::store::{DynamoStore, JobRecord, Store};
use crate::token::TokenKey;
use crate::wiring::DepsBuilder;
use meter::{CapacityMeter, Usage};
use prices::{Prices, US_EAST_1, billed_gb_seconds};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `jobcast bench cost` (DynamoDB Local at
/// AWS_ENDPOINT_URL_DYNAMODB, on this machine).
#[derive(Clone, Debug, clap::Args)]
pub struct CostOptions {
    /// Audience sizes, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,1000", value_parser = crate::values::parse_positive::<usize>)]
    pub subscribers: Vec<usize>,
    /// Updates in the job (the last one `succeeded`).
    #[arg(long, default_value = "100", value_parser = crate::values::parse_positive::<usize>)]
    pub updates: usize,
    /// Time between two updates, as a worker reporting every so often
    /// (the liveness deadline an update stores depends on it).
    #[arg(long, default_value = "0", value_parser = crate::values::parse_duration_or_zero, value_name = "DURATION")]
    pub update_interval: Duration,
    /// `@connections` round trip, as AWS's.
    #[arg(long, default_value = "30ms", value_parser = crate::values::parse_duration_or_zero, value_name = "DURATION")]
    pub management_latency: Duration,
    /// How long each subscriber stays connected (billed connection minutes).
    #[arg(long, default_value = "1")]
    pub connection_minutes: f64,
    /// `$connect`/`$disconnect` handler calls timed per case.
    #[arg(long, default_value = "20", value_parser = crate::values::parse_positive::<usize>)]
    pub samples: usize,
    /// Write the JSON result here.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// One Lambda-backed step: invocations, time, DynamoDB use.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub invocations: u64,
    /// Wall time of each invocation, mean and median, in ms.
    pub mean_ms: f64,
    pub p50_ms: f64,
    /// Billed duration: each invocation rounded up to the millisecond.
    pub billed_gb_seconds: f64,
    pub dynamodb_requests: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// DynamoDB operations → (requests, units), for the arithmetic.
    pub operations: std::collections::BTreeMap<String, (f64, f64)>,
}

impl Step {
    fn new(millis: &[f64], usage: &Usage) -> Step {
        let mut sorted = millis.to_vec();
        sorted.sort_by(f64::total_cmp);
        Step {
            invocations: millis.len() as u64,
            mean_ms: millis.iter().sum::<f64>() / millis.len().max(1) as f64,
            p50_ms: super::percentile(&sorted, 0.5),
            billed_gb_seconds: millis.iter().map(|m| billed_gb_seconds(*m)).sum(),
            dynamodb_requests: usage.requests() as f64,
            read_units: usage.read_units(),
            write_units: usage.write_units(),
            operations: usage
                .operations
                .iter()
                .map(|(op, (c, u))| (op.clone(), (*c as f64, *u)))
                .collect(),
        }
    }

    /// The same step per invocation.
    fn per_invocation(&self) -> Step {
        let n = self.invocations.max(1) as f64;
        Step {
            invocations: 1,
            billed_gb_seconds: self.billed_gb_seconds / n,
            dynamodb_requests: self.dynamodb_requests / n,
            read_units: self.read_units / n,
            write_units: self.write_units / n,
            operations: self
                .operations
                .iter()
                .map(|(op, (c, u))| (op.clone(), (c / n, u / n)))
                .collect(),
            ..self.clone()
        }
    }

    fn lambda_dollars(&self, p: &Prices) -> f64 {
        self.invocations as f64 * p.lambda_request + self.billed_gb_seconds * p.lambda_gb_second
    }

    fn dynamodb_dollars(&self, p: &Prices) -> f64 {
        self.read_units * p.dynamodb_read_unit + self.write_units * p.dynamodb_write_unit
    }
}

/// Dollars by service.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dollars {
    pub lambda: f64,
    pub http_api: f64,
    pub websocket_messages: f64,
    pub connection_minutes: f64,
    pub dynamodb: f64,
    pub sqs: f64,
}

impl Dollars {
    pub fn total(&self) -> f64 {
        self.lambda
            + self.http_api
            + self.websocket_messages
            + self.connection_minutes
            + self.dynamodb
            + self.sqs
    }

    fn scaled(&self, k: f64) -> Dollars {
        Dollars {
            lambda: self.lambda * k,
            http_api: self.http_api * k,
            websocket_messages: self.websocket_messages * k,
            connection_minutes: self.connection_minutes * k,
            dynamodb: self.dynamodb * k,
            sqs: self.sqs * k,
        }
    }
}

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
    /// Progress messages the clients received, and expected.
    pub delivered: u64,
    pub expected: u64,
    /// One update: `POST /jobs/{id}/updates` to the last post.
    pub per_update: Dollars,
    /// The whole job (create, S connects and disconnects, N updates,
    /// connection minutes) divided by its N updates.
    pub per_update_with_job: Dollars,
}

/// The run: every case, the latency and the prices used.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    pub management_latency_ms: f64,
    pub connection_minutes: f64,
    pub lambda_memory_mb: f64,
    pub prices_read_on: &'static str,
    pub prices: Prices,
    pub cases: Vec<CostCase>,
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
) -> Deps {
    let mut parts = DepsBuilder::new(store, Default::default());
    parts.tokens = tokens.clone();
    parts.lease_owner = "lambda".into();
    let publisher = parts.publisher(Arc::new(ManagementApiPusher::new(
        sdk,
        &format!("http://{addr}/dev"),
    )));
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
    ))
}

/// Calls the jobs handler; a non-2xx answer is an error of the bench.
async fn call_jobs(
    deps: &Deps,
    meter: &CapacityMeter,
    event: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
) -> Result<(serde_json::Value, f64, Usage), String> {
    let (res, ms, usage) = measured(meter, jobs_api::handle(deps, event)).await;
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
    let config = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections: Some(s + opts.samples + 100),
        outbound_queue: opts.updates.max(16) * 2,
        management_latency: opts.management_latency,
        resume: false,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::bind(config, Arc::new(unmetered), tokens.clone())
        .await
        .map_err(|e| e.to_string())?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run(async {
        let _ = stop_rx.await;
    }));
    let queue = Arc::new(CountedQueue::default());
    let deps = lambda_deps(&sdk, Arc::clone(&store), &tokens, addr, Arc::clone(&queue));

    let created = jobs_event(
        http::Method::POST,
        "/jobs",
        None,
        &serde_json::json!({"kind": "demo", "input": {}}),
        None,
    )?;
    let (body, ms, usage) = call_jobs(&deps, &meter, created).await?;
    let create = Step::new(&[ms], &usage);
    let job_id = body["jobId"]
        .as_str()
        .ok_or("202 without jobId")?
        .to_string();
    let token = tokens.issue(&job_id, chrono::Utc::now().timestamp());
    let audience =
        Audience::connect(&format!("ws://{addr}/dev?jobId={job_id}&token={token}"), s).await?;

    let update = updates(opts, &deps, &meter, &tokens, &job_id).await?;
    let expected = (s * opts.updates) as u64;
    let delivered = audience
        .wait_for(expected as usize, Duration::from_secs(30))
        .await as u64;
    drop(audience);
    let (connect, disconnect) = lifecycle(opts.samples, &deps, &meter, &job_id, &token).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let sqs = queue.0.load(Ordering::Relaxed);
    let per_update = dollars_per_update(&update.per_invocation(), s, &US_EAST_1);
    let job = JobSteps {
        create: &create,
        update: &update,
        connect: &connect.per_invocation(),
        disconnect: &disconnect.per_invocation(),
        sqs,
    };
    let per_update_with_job = job
        .dollars(s, opts, &US_EAST_1)
        .scaled(1.0 / opts.updates as f64);
    Ok(CostCase {
        subscribers: s,
        updates: opts.updates,
        create,
        update: update.per_invocation(),
        connect,
        disconnect,
        delivered,
        expected,
        per_update,
        per_update_with_job,
    })
}

/// `n` worker updates through `POST /jobs/{id}/updates`, the last one
/// `succeeded`; all of them together.
async fn updates(
    opts: &CostOptions,
    deps: &Deps,
    meter: &CapacityMeter,
    tokens: &TokenKey,
    job_id: &str,
) -> Result<Step, String> {
    let n = opts.updates;
    let worker = tokens.issue_worker(job_id, chrono::Utc::now().timestamp());
    let path = format!("/jobs/{job_id}/updates");
    let mut millis = Vec::with_capacity(n);
    let mut total = Usage::default();
    for i in 1..=n {
        if i > 1 && !opts.update_interval.is_zero() {
            tokio::time::sleep(opts.update_interval).await;
        }
        let body = if i == n {
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
        let (_, ms, usage) = call_jobs(deps, meter, event).await?;
        millis.push(ms);
        total = total.plus(&usage);
    }
    Ok(Step::new(&millis, &total))
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

/// One update: its invocation, its request, one message per subscriber,
/// its DynamoDB units.
fn dollars_per_update(update: &Step, s: usize, p: &Prices) -> Dollars {
    Dollars {
        lambda: update.lambda_dollars(p),
        http_api: p.http_api_request,
        websocket_messages: s as f64 * p.websocket_message,
        dynamodb: update.dynamodb_dollars(p),
        ..Dollars::default()
    }
}

/// Every step of one job, each per invocation but the updates (all N).
struct JobSteps<'a> {
    create: &'a Step,
    update: &'a Step,
    connect: &'a Step,
    disconnect: &'a Step,
    sqs: u64,
}

impl JobSteps<'_> {
    fn dollars(&self, s: usize, opts: &CostOptions, p: &Prices) -> Dollars {
        let n = opts.updates as f64;
        let s = s as f64;
        let per_connection = self.connect.lambda_dollars(p) + self.disconnect.lambda_dollars(p);
        let per_connection_db =
            self.connect.dynamodb_dollars(p) + self.disconnect.dynamodb_dollars(p);
        Dollars {
            lambda: self.create.lambda_dollars(p)
                + self.update.lambda_dollars(p)
                + s * per_connection,
            http_api: (1.0 + n) * p.http_api_request,
            websocket_messages: s * n * p.websocket_message,
            connection_minutes: s * opts.connection_minutes * p.websocket_connection_minute,
            dynamodb: self.create.dynamodb_dollars(p)
                + self.update.dynamodb_dollars(p)
                + s * per_connection_db,
            sqs: self.sqs as f64 * p.sqs_request,
        }
    }
}
