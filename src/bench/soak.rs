//! `jobcast bench soak`: churn against a running `serve` for minutes and
//! check that nothing leaks and nothing is lost.
//!
//! Clients connect at a steady rate and live for a random while (so about
//! `connections` are open at once); jobs are created at a steady rate. Each
//! client subscribes to the newest job, waits for its terminal snapshot (live,
//! or in the subscribe reply when the job already ended), subscribes to the
//! next, and closes when its life is over. At the end:
//! - every subscription saw its job's terminal snapshot (`lost` = 0);
//! - the server's RSS grew less than 10% over the run after the warm-up
//!   (the last quarter's peak against the first quarter's);
//! - its open file descriptors are back to where they started.

use super::load::rss_kib;
use super::require_loopback;
use crate::values::{parse_duration, parse_positive};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What `jobcast bench soak` churns, and for how long.
#[derive(Clone, Debug, clap::Args)]
pub struct SoakOptions {
    /// jobs API base of the serve under test (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// Its WebSocket API (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// How long to run (e.g. 10m, 60s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connections open at once, about.
    #[arg(long, default_value = "5000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub connections: usize,
    /// New connections per second.
    #[arg(long, default_value = "200", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub connects_per_second: u32,
    /// Jobs created per second.
    #[arg(long, default_value = "50", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub jobs_per_second: u32,
    /// The serve process, for its memory and open files.
    #[arg(long)]
    pub server_pid: u32,
    /// Share of the run before memory is baselined (at least twice a
    /// client's mean life).
    #[arg(long, default_value = "0.2")]
    pub warmup: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    pub seconds: f64,
    pub connects: u64,
    pub connect_failures: u64,
    pub peak_open: usize,
    pub jobs_created: u64,
    pub job_create_failures: u64,
    pub subscriptions: u64,
    pub terminal_seen: u64,
    pub lost: u64,
    pub errors: BTreeMap<String, u64>,
    /// Highest RSS in the first quarter after the warm-up (the baseline).
    pub rss_kib_at_warmup: u64,
    pub rss_kib_max_after_warmup: u64,
    pub rss_kib_end: u64,
    pub rss_growth_percent: f64,
    pub fds_start: usize,
    pub fds_end: usize,
    pub passed: bool,
}

struct Ctx {
    opts: SoakOptions,
    jobs: Mutex<VecDeque<(String, String)>>,
    http: reqwest::Client,
    jobs_created: AtomicU64,
    job_failures: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    subscriptions: AtomicU64,
    terminal_seen: AtomicU64,
    lost: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Ctx {
    fn error(&self, what: impl Into<String>) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(what.into()).or_insert(0) += 1;
        }
    }

    fn newest_job(&self) -> Option<(String, String)> {
        self.jobs.lock().ok()?.back().cloned()
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn is_terminal(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn create_job(ctx: &Ctx) -> Result<(String, String), String> {
    let res = ctx
        .http
        .post(format!("{}/jobs", ctx.opts.jobs_url))
        .json(&json!({"kind": "demo", "input": {"steps": 5, "stepMs": 200}}))
        .send()
        .await
        .map_err(|e| format!("POST /jobs: {e}"))?;
    if res.status().as_u16() != 202 {
        return Err(format!("POST /jobs: {}", res.status()));
    }
    let v: Value = res.json().await.map_err(|e| e.to_string())?;
    match (v["jobId"].as_str(), v["token"].as_str()) {
        (Some(j), Some(t)) => Ok((j.to_string(), t.to_string())),
        _ => Err("POST /jobs: no jobId or token".into()),
    }
}

/// One client's life: follow jobs one after another until `lifetime` is up.
async fn client(ctx: Arc<Ctx>, lifetime: Duration) {
    let ws = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(ctx.opts.ws_url.as_str()),
    )
    .await;
    let mut ws = match ws {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            ctx.connect_failures.fetch_add(1, Ordering::Relaxed);
            ctx.error(format!("connect: {e}"));
            return;
        }
        Err(_) => {
            ctx.connect_failures.fetch_add(1, Ordering::Relaxed);
            ctx.error("connect: timeout");
            return;
        }
    };
    ctx.connects.fetch_add(1, Ordering::Relaxed);
    let open = ctx.open.fetch_add(1, Ordering::Relaxed) + 1;
    ctx.peak_open.fetch_max(open, Ordering::Relaxed);
    let deadline = Instant::now() + lifetime;
    while Instant::now() < deadline {
        let Some((job, token)) = ctx.newest_job() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sub = json!({"action": "subscribe", "jobId": job, "token": token}).to_string();
        if ws.send(Message::text(sub)).await.is_err() {
            ctx.error("send failed");
            break;
        }
        ctx.subscriptions.fetch_add(1, Ordering::Relaxed);
        let wait = async {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if v["jobId"] != job.as_str() {
                    continue;
                }
                if v["type"] == "error" {
                    return Err(format!("subscribe: {}", v["code"]));
                }
                if v["type"] == "progress" && is_terminal(&v) {
                    return Ok(());
                }
            }
            Err("connection ended before the terminal snapshot".to_string())
        };
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(Ok(())) => {
                ctx.terminal_seen.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                ctx.lost.fetch_add(1, Ordering::Relaxed);
                ctx.error(e);
                break;
            }
            Err(_) => {
                ctx.lost.fetch_add(1, Ordering::Relaxed);
                ctx.error("no terminal snapshot within 30 s");
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    ctx.open.fetch_sub(1, Ordering::Relaxed);
}

pub async fn run(opts: SoakOptions) -> Result<SoakReport, String> {
    require_loopback(&opts.jobs_url)?;
    require_loopback(&opts.ws_url)?;
    let pid = opts.server_pid;
    rss_kib(pid).ok_or_else(|| format!("no process {pid} (--server-pid)"))?;
    let fds_start = open_fds(pid);
    let ctx = Arc::new(Ctx {
        opts: opts.clone(),
        jobs: Mutex::new(VecDeque::new()),
        http: reqwest::Client::new(),
        jobs_created: AtomicU64::new(0),
        job_failures: AtomicU64::new(0),
        connects: AtomicU64::new(0),
        connect_failures: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        peak_open: AtomicUsize::new(0),
        subscriptions: AtomicU64::new(0),
        terminal_seen: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });
    let started = Instant::now();
    let end = started + opts.duration;
    let maker = spawn_job_maker(Arc::clone(&ctx), end);
    let samples = run_clients(&ctx, started + warmup(&opts), end).await;
    let _ = maker.await;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let mut report = SoakReport {
        connects: load(&ctx.connects),
        connect_failures: load(&ctx.connect_failures),
        peak_open: ctx.peak_open.load(Ordering::Relaxed),
        jobs_created: load(&ctx.jobs_created),
        job_create_failures: load(&ctx.job_failures),
        subscriptions: load(&ctx.subscriptions),
        terminal_seen: load(&ctx.terminal_seen),
        lost: load(&ctx.lost),
        errors: ctx.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        fds_start,
        ..SoakReport::default()
    };
    // Our own keep-alive connections to the jobs API go with the context.
    drop(ctx);
    // Let the server finish every close and `$disconnect`.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let memory = RssGrowth::of(&samples);
    report.seconds = started.elapsed().as_secs_f64();
    report.rss_kib_at_warmup = memory.first;
    report.rss_kib_max_after_warmup = memory.max;
    report.rss_kib_end = rss_kib(pid).unwrap_or(0);
    report.rss_growth_percent = memory.percent;
    report.fds_end = open_fds(pid);
    report.passed = report.lost == 0
        && report.connect_failures == 0
        && report.job_create_failures == 0
        && report.rss_growth_percent < 10.0
        && report.fds_end <= report.fds_start;
    Ok(report)
}

/// How long before memory is baselined: once the connection pool and the
/// store's retention window have filled (the warm-up share, and at least
/// twice the mean client lifetime).
fn warmup(opts: &SoakOptions) -> Duration {
    let mean_life_s = opts.connections as f64 / f64::from(opts.connects_per_second.max(1));
    opts.duration
        .mul_f64(opts.warmup.clamp(0.0, 0.9))
        .max(Duration::from_secs_f64(2.0 * mean_life_s))
        .min(opts.duration.mul_f64(0.9))
}

/// Jobs at a steady rate until `end`; the newest 64 are kept for clients.
fn spawn_job_maker(ctx: Arc<Ctx>, end: Instant) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs_f64(1.0 / f64::from(ctx.opts.jobs_per_second.max(1)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        while Instant::now() < end {
            tick.tick().await;
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move {
                match create_job(&ctx).await {
                    Ok(j) => {
                        ctx.jobs_created.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut q) = ctx.jobs.lock() {
                            q.push_back(j);
                            while q.len() > 64 {
                                q.pop_front();
                            }
                        }
                    }
                    Err(e) => {
                        ctx.job_failures.fetch_add(1, Ordering::Relaxed);
                        ctx.error(e);
                    }
                }
            });
        }
    })
}

/// Clients at a steady rate until `end`, each living about
/// connections / rate seconds; waits for them all. Returns the server's RSS
/// sampled every second from `warmup_at` on.
async fn run_clients(ctx: &Arc<Ctx>, warmup_at: Instant, end: Instant) -> Vec<u64> {
    let rate = f64::from(ctx.opts.connects_per_second.max(1));
    let mean_life = ctx.opts.connections as f64 / rate;
    let mut clients = Vec::new();
    let mut samples: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut last_sample = Instant::now();
    while Instant::now() < end {
        tick.tick().await;
        let life = mean_life * (0.5 + rand::random::<f64>());
        // No client outlives the run by more than one job.
        let left = end.saturating_duration_since(Instant::now());
        let life = Duration::from_secs_f64(life).min(left);
        clients.push(tokio::spawn(client(Arc::clone(ctx), life)));
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            if Instant::now() >= warmup_at {
                samples.push(rss_kib(ctx.opts.server_pid).unwrap_or(0));
            }
            clients.retain(|c| !c.is_finished());
        }
    }
    for c in clients {
        match tokio::time::timeout(Duration::from_secs(60), c).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => ctx.error("a client task panicked"),
            Err(_) => ctx.error("a client did not finish within 60 s of the end"),
        }
    }
    samples
}

/// Growth: the highest RSS of the last quarter of the measured window against
/// the highest of its first quarter, so the allocator's first high-water mark
/// under this load is the baseline, not a leak.
struct RssGrowth {
    first: u64,
    max: u64,
    percent: f64,
}

impl RssGrowth {
    fn of(samples: &[u64]) -> Self {
        let quarter = (samples.len() / 4).max(1);
        let first = samples.iter().take(quarter).copied().max().unwrap_or(0);
        let last = samples
            .iter()
            .rev()
            .take(quarter)
            .copied()
            .max()
            .unwrap_or(0);
        let percent = if first > 0 {
            (last as f64 - first as f64) * 100.0 / first as f64
        } else {
            0.0
        };
        let max = samples.iter().copied().max().unwrap_or(0);
        Self {
            first,
            max,
            percent,
        }
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "soak {:.0} s: {} connects (peak {} open), {} jobs, {} subscriptions, {} terminal snapshots seen, {} lost; RSS {} -> max {} KiB ({:+.1}%), fds {} -> {}; errors {:?}",
            self.seconds,
            self.connects,
            self.peak_open,
            self.jobs_created,
            self.subscriptions,
            self.terminal_seen,
            self.lost,
            self.rss_kib_at_warmup,
            self.rss_kib_max_after_warmup,
            self.rss_growth_percent,
            self.fds_start,
            self.fds_end,
            self.errors
        )
    }
}
