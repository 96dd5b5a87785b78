//! `jobcast bench updates`: the worker API under load. Workers of a kind of
//! the user's own report through `POST /jobs/{id}/updates` as fast as the
//! server answers, while one WebSocket client per job follows it: updates
//! per second through the endpoint, the endpoint's latency, and the time
//! from an update's POST to the client receiving that snapshot.
//!
//! The serve under test must hand the kind to this bench's receiver:
//! `JOBCAST_WEBHOOK_SECRET=… jobcast serve --kind bench=http://127.0.0.1:8099/`.

use super::load::{Latency, cpu_micros_per, cpu_seconds};
use super::require_loopback;
use crate::values::parse_positive;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What `jobcast bench updates` is asked to do.
#[derive(Clone, Debug, clap::Args)]
pub struct UpdatesOptions {
    /// jobs API base of the serve under test (loopback). Start it with
    /// JOBCAST_WEBHOOK_SECRET set and `--kind bench=http://RECEIVER/`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// The kind the serve hands to this bench.
    #[arg(long, default_value = "bench")]
    pub kind: String,
    /// Where this bench takes the job messages.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub receiver: SocketAddr,
    /// Jobs at once, each with one worker and one WebSocket client.
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Updates per job (the last one ends it).
    #[arg(long, default_value = "500", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub updates: usize,
    /// The server's pid, to report its CPU time per update.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatesReport {
    pub jobs: usize,
    pub updates: u64,
    pub seconds: f64,
    pub updates_per_second: f64,
    /// `POST /jobs/{id}/updates`, request to answer.
    pub endpoint: Latency,
    /// From the start of an update's POST to its snapshot at the client.
    pub update_to_client: Latency,
    /// Accepted updates no client received.
    pub missing: u64,
    pub server_cpu_us_per_update: Option<f64>,
}

/// Takes the job messages the serve posts, answering 200.
async fn receive_messages(listener: tokio::net::TcpListener, tx: mpsc::UnboundedSender<Value>) {
    use http_body_util::BodyExt;
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        if let Ok(body) = req.into_body().collect().await
                            && let Ok(v) = serde_json::from_slice::<Value>(&body.to_bytes())
                        {
                            let _ = tx.send(v);
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub(super) struct Started {
    pub(super) job_id: String,
    pub(super) websocket_url: String,
    pub(super) token: String,
}

/// Starts one job of `kind` at `jobs_url`, whose serve hands it to `receiver`.
async fn start_kind_job(
    http: &reqwest::Client,
    jobs_url: &str,
    kind: &str,
    receiver: SocketAddr,
    n: usize,
) -> Result<Started, String> {
    let res = http
        .post(format!("{jobs_url}/jobs"))
        .json(&json!({"kind": kind, "input": {"n": n}}))
        .send()
        .await
        .map_err(|e| format!("POST /jobs: {e}"))?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.map_err(|e| format!("POST /jobs: {e}"))?;
    if status == 400
        && body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unknown job kind"))
    {
        return Err(format!(
            "the serve does not accept kind '{kind}': start it with JOBCAST_WEBHOOK_SECRET set and --kind {kind}=http://{receiver}/"
        ));
    }
    if status != 202 {
        return Err(format!("POST /jobs answered {status}: {body}"));
    }
    let field = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("POST /jobs answer lacks {k}"))
    };
    Ok(Started {
        job_id: field("jobId")?,
        websocket_url: field("websocketUrl")?,
        token: field("token")?,
    })
}

/// Follows one job until it ends: the arrival time of each seq.
async fn follow(url: String) -> Result<HashMap<u64, Instant>, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("WebSocket connect: {e}"))?;
    let mut seen = HashMap::new();
    while let Some(m) = ws.next().await {
        let Ok(Message::Text(t)) = m else { continue };
        let at = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        if v["type"] != "progress" {
            continue;
        }
        if let Some(seq) = v["seq"].as_u64() {
            seen.entry(seq).or_insert(at);
        }
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break;
        }
    }
    Ok(seen)
}

/// One worker: `updates` reports, the last one `succeeded`; the send time of each seq.
async fn work(
    http: reqwest::Client,
    message: Value,
    updates: usize,
    endpoint: Arc<Mutex<Histogram<u64>>>,
) -> Result<HashMap<u64, Instant>, String> {
    let url = message["updateUrl"]
        .as_str()
        .ok_or("job message lacks updateUrl")?;
    let token = message["workerToken"]
        .as_str()
        .ok_or("job message lacks workerToken")?;
    let mut sent = HashMap::new();
    for k in 1..=updates {
        let body = if k == updates {
            json!({"status": "succeeded", "result": {"updates": updates}})
        } else {
            json!({"percent": 100.0 * k as f64 / updates as f64, "message": format!("step {k}")})
        };
        let start = Instant::now();
        let res = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST updates: {e}"))?;
        let took = start.elapsed();
        if res.status() != 200 {
            return Err(format!("POST updates answered {}", res.status()));
        }
        let a: Value = res.json().await.map_err(|e| e.to_string())?;
        if let Ok(mut h) = endpoint.lock() {
            let _ = h.record(took.as_micros() as u64);
        }
        if let Some(seq) = a["seq"].as_u64() {
            sent.insert(seq, start);
        }
    }
    Ok(sent)
}

/// Jobs started at a serve that hands their kind to this bench, with the
/// job message of each (keyed by job id) and the task receiving them.
pub(super) struct Fleet {
    pub(super) http: reqwest::Client,
    pub(super) started: Vec<Started>,
    pub(super) messages: HashMap<String, Value>,
    pub(super) receiver: tokio::task::JoinHandle<()>,
}

/// Starts `jobs` jobs of `kind` at `jobs_url` and takes their job messages
/// on `receiver`.
pub(super) async fn start_fleet(
    jobs_url: &str,
    kind: &str,
    receiver: SocketAddr,
    jobs: usize,
) -> Result<Fleet, String> {
    require_loopback(jobs_url)?;
    let listener = tokio::net::TcpListener::bind(receiver)
        .await
        .map_err(|e| format!("cannot listen on {receiver} for job messages: {e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(receive_messages(listener, tx));
    let http = reqwest::Client::new();
    let mut started = Vec::with_capacity(jobs);
    for n in 0..jobs {
        started.push(start_kind_job(&http, jobs_url, kind, receiver, n).await?);
    }
    let messages = collect_messages(&mut rx, jobs).await?;
    Ok(Fleet {
        http,
        started,
        messages,
        receiver: task,
    })
}

pub async fn run(o: UpdatesOptions) -> Result<UpdatesReport, String> {
    let Fleet {
        http,
        started,
        mut messages,
        receiver,
    } = start_fleet(&o.jobs_url, &o.kind, o.receiver, o.jobs).await?;
    let followers: Vec<_> = started
        .iter()
        .map(|s| tokio::spawn(follow(s.websocket_url.clone())))
        .collect();
    // Let every client subscribe before the first update.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let endpoint = Arc::new(Mutex::new(
        Histogram::<u64>::new(3).map_err(|e| e.to_string())?,
    ));
    let cpu_before = o.server_pid.and_then(cpu_seconds);
    let began = Instant::now();
    let workers: Vec<_> = started
        .iter()
        .map(|s| {
            let message = messages.remove(&s.job_id).unwrap_or_default();
            tokio::spawn(work(
                http.clone(),
                message,
                o.updates,
                Arc::clone(&endpoint),
            ))
        })
        .collect();
    let mut sent = Vec::with_capacity(workers.len());
    for w in workers {
        sent.push(w.await.map_err(|e| e.to_string())??);
    }
    let seconds = began.elapsed().as_secs_f64();
    let updates = (o.jobs * o.updates) as u64;
    let cpu = cpu_micros_per(o.server_pid, cpu_before, updates);
    let (to_client, missing) = arrivals(followers, sent).await?;
    receiver.abort();
    let endpoint = endpoint.lock().map_err(|e| e.to_string())?;
    Ok(UpdatesReport {
        jobs: o.jobs,
        updates,
        seconds,
        updates_per_second: updates as f64 / seconds,
        endpoint: Latency::of(&endpoint),
        update_to_client: Latency::of(&to_client),
        missing,
        server_cpu_us_per_update: cpu,
    })
}

impl std::fmt::Display for UpdatesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} updates from {} workers in {:.2} s: {:.0} updates/s; endpoint p50 {:.2} ms p99 {:.2} ms; update to client p50 {:.2} ms p99 {:.2} ms; {} missing; server CPU {}",
            self.updates,
            self.jobs,
            self.seconds,
            self.updates_per_second,
            self.endpoint.p50_ms,
            self.endpoint.p99_ms,
            self.update_to_client.p50_ms,
            self.update_to_client.p99_ms,
            self.missing,
            self.server_cpu_us_per_update
                .map(|c| format!("{c:.0} µs/update"))
                .unwrap_or_else(|| "not measured (--server-pid)".into())
        )
    }
}

/// Waits up to 30 s for the job message of each of `jobs` jobs; keyed by job id.
async fn collect_messages(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    jobs: usize,
) -> Result<HashMap<String, Value>, String> {
    let mut messages = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while messages.len() < jobs {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| format!("{} of {jobs} job messages arrived in 30 s", messages.len()))?
            .ok_or("the receiver stopped")?;
        if let Some(id) = m["jobId"].as_str() {
            messages.insert(id.to_string(), m);
        }
    }
    Ok(messages)
}

type Follower = tokio::task::JoinHandle<Result<HashMap<u64, Instant>, String>>;

/// Matches what each client saw against what its worker sent: the time from
/// each update to the browser, and how many updates never arrived.
async fn arrivals(
    followers: Vec<Follower>,
    sent: Vec<HashMap<u64, Instant>>,
) -> Result<(Histogram<u64>, u64), String> {
    let mut to_client = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut missing = 0;
    for (f, sent) in followers.into_iter().zip(sent) {
        let seen = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .map_err(|_| "a client did not see its job end in 10 s".to_string())?
            .map_err(|e| e.to_string())??;
        for (seq, at) in sent {
            match seen.get(&seq) {
                Some(got) => {
                    let _ = to_client.record(got.saturating_duration_since(at).as_micros() as u64);
                }
                None => missing += 1,
            }
        }
    }
    Ok((to_client, missing))
}
