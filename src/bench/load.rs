//! `jobcast bench run`: a load generator for any WebSocket gateway that
//! speaks API Gateway's `@connections` (jobcast, serverless-offline, ...).
//!
//! Phases, each bounded in count and time:
//! 1. **connect**: N clients open at a bounded handshake concurrency
//!    (connect rate, handshake latency), then each learns its connection id
//!    by sending `{"action":"ping"}` and reading the `pong`.
//! 2. **posts**: C workers, each on its own keep-alive HTTP/1.1 connection,
//!    post to `@connections/{id}` round-robin as fast as answers come back.
//!    Every body carries the time it was sent; clients compute end-to-end
//!    latency on arrival. Lost = accepted posts never delivered after a drain.
//! 3. **paced**: the same at a fixed rate (open loop: latency counts from the
//!    scheduled send time, so a stalled server cannot hide its queueing).
//! 4. **fan-out**: jobcast's own publisher (memory store, AWS SDK client,
//!    SigV4) posts one job's snapshot to all N subscribers through the
//!    target's `@connections`; time until the last client has it.
//! 5. **close**: every client closes; the server's `$disconnect` count and
//!    its memory are read afterwards.
//!
//! The server's RSS comes from `/proc/<pid>/status` when its pid is given.

use super::{create_bench_job, local_sdk_config, percentile, require_loopback};
use crate::protocol::Status;
use crate::push::ManagementApiPusher;
use crate::store::{JobUpdate, MemoryStore, Store};
use crate::wiring::DepsBuilder;
use bytes::Bytes;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What to measure and how hard.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Name of the system under test, copied into the report.
    pub label: String,
    /// WebSocket URL the clients open (`ws://127.0.0.1:8080/dev`).
    pub ws_url: String,
    /// Management API base; `@connections/{id}` is appended.
    pub management_url: String,
    pub clients: usize,
    pub handshake_concurrency: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N (each source address
    /// has its own ~28k ephemeral ports).
    pub source_ips: u8,
    pub post_in_flight: usize,
    pub post_duration: Duration,
    pub post_max: u64,
    /// Messages per second of the paced phase (0 skips it).
    pub rate: u64,
    pub rate_duration: Duration,
    /// Publishes of the fan-out phase (0 skips it).
    pub fanout_rounds: usize,
    pub fanout_concurrency: usize,
    /// The server process, for its RSS.
    pub server_pid: Option<u32>,
    /// A Prometheus endpoint exposing `jobcast_disconnects_total`.
    pub metrics_url: Option<String>,
    /// A file the server's `$disconnect` handler appends one line to per event.
    pub disconnect_log: Option<PathBuf>,
    /// How long to wait for accepted messages still in flight.
    pub drain_timeout: Duration,
    pub progress: bool,
    /// jobcast's jobs API base (`http://127.0.0.1:8080`): adds the in-process
    /// fan-out phase, a demo job of this many steps published by `serve`'s
    /// own worker to every client (needs `serve --workers 1`; 0 skips it).
    pub jobs_url: Option<String>,
    pub demo_steps: u32,
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From a histogram recorded in microseconds.
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectReport {
    pub requested: usize,
    pub connected: usize,
    /// Connected and answered the ping with their connection id.
    pub identified: usize,
    pub failed: usize,
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    pub per_second: f64,
    /// TCP connect + upgrade, per client.
    pub handshake: Latency,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostReport {
    pub in_flight: usize,
    /// Target rate of a paced run (0: as fast as answers come back).
    pub rate: u64,
    pub seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub per_second: f64,
    pub delivered: u64,
    pub delivered_per_second: f64,
    /// Answers by HTTP status, or `transport` when no answer came.
    pub statuses: BTreeMap<String, u64>,
    /// Post to arrival at the client.
    pub end_to_end: Latency,
    /// Request to response.
    pub request: Latency,
    /// Accepted (2xx) but never delivered within the drain timeout.
    pub lost: u64,
    /// The server's CPU time per delivered message (needs its pid), in µs:
    /// what a message costs, whatever else shares the machine.
    pub server_cpu_us_per_message: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutReport {
    pub subscribers: usize,
    pub rounds: usize,
    pub concurrency: usize,
    pub ms_p50: f64,
    pub ms_min: f64,
    pub ms_max: f64,
    /// Subscribers reached per second at the median round.
    pub messages_per_second: f64,
    pub lost: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    pub idle_kib: u64,
    pub connected_kib: u64,
    pub under_load_kib: u64,
    pub after_close_kib: u64,
    /// (connected - idle) / connected clients.
    pub per_connection_kib: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseReport {
    pub closed: usize,
    /// Connections the server ended before the close phase.
    pub dropped_early: usize,
    pub seconds: f64,
    /// `$disconnect` events the server reported for this run, when it can tell.
    pub disconnects_observed: Option<u64>,
}

/// A demo job run by `serve`'s in-process worker, every step fanned out to
/// every client straight through the registry.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InProcessFanoutReport {
    pub subscribers: usize,
    /// Updates published back to back (steps + the terminal one).
    pub updates: u64,
    pub expected: u64,
    pub delivered: u64,
    /// From the first update's arrival until the last client had the terminal one.
    pub seconds: f64,
    pub delivered_per_second: f64,
    pub lost: u64,
    pub server_cpu_us_per_message: Option<f64>,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub label: String,
    pub started_at: String,
    pub clients: usize,
    pub connect: ConnectReport,
    pub posts: PostReport,
    pub paced: Option<PostReport>,
    pub fanout: Option<FanoutReport>,
    pub memory: Option<MemoryReport>,
    pub close: CloseReport,
    pub in_process_fanout: Option<InProcessFanoutReport>,
}

impl LoadReport {
    /// Messages that were accepted and never arrived, over every phase.
    pub fn lost(&self) -> u64 {
        self.posts.lost
            + self.paced.as_ref().map_or(0, |p| p.lost)
            + self.fanout.as_ref().map_or(0, |f| f.lost)
            + self.in_process_fanout.as_ref().map_or(0, |f| f.lost)
    }
}

/// Latencies recorded from many tasks: a few mutex-guarded shards, so
/// clients rarely contend and no per-client histogram is kept.
struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

const SHARDS: usize = 16;

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    fn record(&self, shard: usize, micros: u64) {
        if let Ok(mut h) = self.shards[shard % SHARDS].lock() {
            h.saturating_record(micros.max(1));
        }
    }

    fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            if let Ok(h) = s.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// State the client tasks report into.
struct Board {
    base: Instant,
    /// Per post phase (0: throughput, 1: paced).
    delivered: [AtomicU64; 2],
    last_delivery_ns: [AtomicU64; 2],
    latencies: [Latencies; 2],
    fanout_seq: AtomicU64,
    fanout_got: AtomicUsize,
    fanout_target: AtomicUsize,
    fanout_done: Notify,
    closing: CancellationToken,
}

impl Board {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn on_text(&self, client: usize, text: &str) {
        if let Some((phase, sent_ns)) = parse_probe(text) {
            let now = self.now_ns();
            self.latencies[phase].record(client, now.saturating_sub(sent_ns) / 1000);
            self.delivered[phase].fetch_add(1, Ordering::Relaxed);
            self.last_delivery_ns[phase].fetch_max(now, Ordering::Relaxed);
        } else if text.contains(r#""type":"progress""#)
            && number_after(text, r#""seq":"#) == Some(self.fanout_seq.load(Ordering::Acquire))
        {
            let got = self.fanout_got.fetch_add(1, Ordering::AcqRel) + 1;
            if got == self.fanout_target.load(Ordering::Acquire) {
                self.fanout_done.notify_one();
            }
        }
    }
}

/// The body of a probe message: which phase sent it and when (ns since the run began).
fn probe(phase: usize, sent_ns: u64) -> String {
    format!(r#"{{"k":{phase},"t":{sent_ns}}}"#)
}

fn parse_probe(text: &str) -> Option<(usize, u64)> {
    let rest = text.strip_prefix(r#"{"k":"#)?;
    let (phase, rest) = rest.split_once(',')?;
    let phase: usize = phase.parse().ok().filter(|p| *p < 2)?;
    let t = rest.strip_prefix(r#""t":"#)?.strip_suffix('}')?;
    Some((phase, t.parse().ok()?))
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// The server's CPU time per message between two readings, in µs.
pub(crate) fn cpu_micros_per(pid: Option<u32>, before: Option<f64>, messages: u64) -> Option<f64> {
    let used = cpu_seconds(pid?)? - before?;
    (messages > 0).then(|| used * 1e6 / messages as f64)
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bar(enabled: bool, len: u64, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_string());
    b
}

/// Where the target listens, split for the raw clients.
struct Target {
    ws_url: String,
    ws_addr: SocketAddr,
    mgmt_addr: SocketAddr,
    mgmt_host: String,
    /// Path prefix before `/@connections/`, without a trailing slash.
    mgmt_prefix: String,
}

async fn resolve(authority: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect::<Vec<_>>();
    // Prefer IPv4: the source-address spread works on 127.0.0.0/8.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))
}

impl Target {
    async fn new(opts: &LoadOptions) -> Result<Target, String> {
        require_loopback(&opts.ws_url)?;
        require_loopback(&opts.management_url)?;
        let ws: Uri = opts
            .ws_url
            .parse()
            .map_err(|e| format!("bad --ws-url {}: {e}", opts.ws_url))?;
        let mgmt: Uri = opts
            .management_url
            .parse()
            .map_err(|e| format!("bad --management-url {}: {e}", opts.management_url))?;
        if ws.scheme_str() != Some("ws") {
            return Err("--ws-url must be ws:// (loopback, no TLS)".into());
        }
        if mgmt.scheme_str() != Some("http") {
            return Err("--management-url must be http:// (loopback, no TLS)".into());
        }
        let authority = |u: &Uri, default: u16| {
            u.authority().map(|a| match a.port_u16() {
                Some(_) => a.to_string(),
                None => format!("{}:{default}", a.host()),
            })
        };
        let ws_auth = authority(&ws, 80).ok_or("--ws-url has no host")?;
        let mgmt_auth = authority(&mgmt, 80).ok_or("--management-url has no host")?;
        Ok(Target {
            ws_url: opts.ws_url.clone(),
            ws_addr: resolve(&ws_auth).await?,
            mgmt_addr: resolve(&mgmt_auth).await?,
            mgmt_host: mgmt_auth,
            mgmt_prefix: mgmt.path().trim_end_matches('/').to_string(),
        })
    }

    fn post_path(&self, connection_id: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(
            connection_id,
            percent_encoding::NON_ALPHANUMERIC,
        );
        format!("{}/@connections/{id}", self.mgmt_prefix)
    }
}

fn client_config() -> WebSocketConfig {
    // Small buffers: thousands of clients share this process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

fn error_key(stage: &str, e: impl std::fmt::Display) -> String {
    let mut s = format!("{stage}: {e}");
    s.truncate(80);
    s
}

async fn open_client(
    target: &Target,
    url: &str,
    index: usize,
    source_ips: u8,
) -> Result<ClientWs, String> {
    let socket = match target.ws_addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| error_key("socket", e))?;
    if source_ips > 1 && target.ws_addr.ip().is_loopback() && target.ws_addr.is_ipv4() {
        let host = 1 + (index % source_ips as usize) as u8;
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
        socket.bind(src).map_err(|e| error_key("bind", e))?;
    }
    let stream = socket
        .connect(target.ws_addr)
        .await
        .map_err(|e| error_key("tcp", e))?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await
    .map_err(|e| error_key("upgrade", e))?;
    Ok(ws)
}

/// Sends `ping` and waits for the `pong` naming this connection.
async fn identify(ws: &mut ClientWs) -> Result<String, String> {
    ws.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .map_err(|e| error_key("ping", e))?;
    let wait = async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Text(t)) = m
                && let Some(id) = string_after(t.as_str(), r#""connectionId":""#)
            {
                return Ok(id.to_string());
            }
        }
        Err("ping: connection ended before the pong".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "ping: no pong within 10 s".to_string())?
}

/// Reads until the close phase, then closes cleanly. True when the
/// connection lasted until the close phase.
async fn read_client(mut ws: ClientWs, index: usize, board: Arc<Board>) -> bool {
    loop {
        tokio::select! {
            biased;
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => board.on_text(index, t.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            _ = board.closing.cancelled() => break,
        }
    }
    let closing = async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    true
}

struct Connected {
    clients: Vec<(String, ClientWs)>,
    report: ConnectReport,
}

/// Opens `opts.clients` clients to `url`, a bounded number at a time.
async fn open_all(
    target: &Target,
    url: &str,
    opts: &LoadOptions,
) -> (Vec<Result<ClientWs, String>>, f64, Histogram<u64>) {
    let pb = bar(opts.progress, opts.clients as u64, "connect");
    let started = Instant::now();
    let handshakes = Mutex::new(histogram());
    // Past this many failures the target is at a limit: stop trying, so a
    // run that finds the ceiling ends quickly and says where it was.
    let give_up = (opts.clients / 100).max(100);
    let failures = AtomicUsize::new(0);
    let results = futures_util::stream::iter(0..opts.clients)
        .map(|i| {
            let pb = &pb;
            let handshakes = &handshakes;
            let failures = &failures;
            async move {
                if failures.load(Ordering::Relaxed) >= give_up {
                    pb.inc(1);
                    return Err(format!("skipped: stopped after {give_up} failures"));
                }
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    open_client(target, url, i, opts.source_ips),
                )
                .await
                .unwrap_or_else(|_| Err("timeout: no handshake within 10 s".into()));
                if r.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if r.is_ok()
                    && let Ok(mut h) = handshakes.lock()
                {
                    h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                }
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(opts.handshake_concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let h = handshakes.into_inner().unwrap_or_else(|p| p.into_inner());
    (results, seconds, h)
}

async fn connect_phase(target: &Target, opts: &LoadOptions) -> Connected {
    let (results, seconds, handshakes) = open_all(target, &target.ws_url, opts).await;
    let mut errors = BTreeMap::new();
    let mut open = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => *errors.entry(e).or_insert(0) += 1,
        }
    }
    let connected = open.len();
    let pb = bar(opts.progress, connected as u64, "identify");
    let identified: Vec<Result<(String, ClientWs), String>> = futures_util::stream::iter(open)
        .map(|mut ws| {
            let pb = &pb;
            async move {
                let r = identify(&mut ws).await.map(|id| (id, ws));
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(opts.handshake_concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    let mut clients = Vec::with_capacity(identified.len());
    for r in identified {
        match r {
            Ok(c) => clients.push(c),
            Err(e) => *errors.entry(e).or_insert(0) += 1,
        }
    }
    let handshake = Latency::of(&handshakes);
    Connected {
        report: ConnectReport {
            requested: opts.clients,
            connected,
            identified: clients.len(),
            failed: opts.clients - clients.len(),
            errors,
            seconds,
            per_second: connected as f64 / seconds.max(1e-9),
            handshake,
        },
        clients,
    }
}

/// One keep-alive HTTP/1.1 connection to the management API.
struct Poster {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Poster {
    async fn open(target: &Target) -> Result<Poster, String> {
        let stream = TcpStream::connect(target.mgmt_addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Poster { sender })
    }

    /// Posts one body; the status, or None when the connection failed.
    async fn post(&mut self, target: &Target, connection_id: &str, body: String) -> Option<u16> {
        self.sender.ready().await.ok()?;
        let req = Request::post(target.post_path(connection_id))
            .header(header::HOST, &target.mgmt_host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        let resp = self.sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    }
}

#[derive(Default)]
struct WorkerTally {
    sent: u64,
    accepted: u64,
    statuses: BTreeMap<String, u64>,
}

/// Runs one post phase: `rate` 0 posts as fast as answers come back.
#[allow(clippy::too_many_arguments)]
async fn post_phase(
    target: &Arc<Target>,
    ids: &Arc<Vec<String>>,
    board: &Arc<Board>,
    phase: usize,
    in_flight: usize,
    rate: u64,
    duration: Duration,
    max: u64,
    opts: &LoadOptions,
) -> PostReport {
    let what = if rate == 0 { "posts" } else { "paced" };
    let pb = bar(opts.progress, duration.as_millis() as u64, what);
    let counter = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(Latencies::new());
    let cpu_before = opts.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let start_ns = board.now_ns();
    let workers = in_flight.max(1);
    let handles: Vec<JoinHandle<WorkerTally>> = (0..workers)
        .map(|w| {
            let target = Arc::clone(target);
            let ids = Arc::clone(ids);
            let board = Arc::clone(board);
            let counter = Arc::clone(&counter);
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                let mut tally = WorkerTally::default();
                let mut poster = None;
                let mut failures = 0u32;
                let mut i: u64 = 0;
                loop {
                    // Open-loop schedule for paced runs; closed loop otherwise.
                    let scheduled_ns =
                        match ((i * workers as u64 + w as u64) * 1_000_000_000).checked_div(rate) {
                            Some(offset) => {
                                let at = started + Duration::from_nanos(offset);
                                if at.duration_since(started) >= duration {
                                    break;
                                }
                                tokio::time::sleep_until(at.into()).await;
                                Some(start_ns + offset)
                            }
                            None => None,
                        };
                    if started.elapsed() >= duration {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= max {
                        break;
                    }
                    i += 1;
                    if poster.is_none() {
                        match Poster::open(&target).await {
                            Ok(p) => poster = Some(p),
                            Err(e) => {
                                *tally.statuses.entry(error_key("connect", e)).or_insert(0) += 1;
                                failures += 1;
                                if failures >= 3 {
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                    let Some(p) = poster.as_mut() else { break };
                    let id = &ids[(n as usize) % ids.len()];
                    let t_ns = scheduled_ns.unwrap_or_else(|| board.now_ns());
                    let t0 = Instant::now();
                    tally.sent += 1;
                    match p.post(&target, id, probe(phase, t_ns)).await {
                        Some(status) => {
                            failures = 0;
                            requests.record(w, t0.elapsed().as_micros() as u64);
                            if (200..300).contains(&status) {
                                tally.accepted += 1;
                            }
                            *tally.statuses.entry(status.to_string()).or_insert(0) += 1;
                        }
                        None => {
                            *tally.statuses.entry("transport".into()).or_insert(0) += 1;
                            poster = None;
                            failures += 1;
                            if failures >= 3 {
                                break;
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let ticker = {
        let pb = pb.clone();
        let counter = Arc::clone(&counter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                pb.set_position(started.elapsed().as_millis() as u64);
                pb.set_message(format!("{} sent", counter.load(Ordering::Relaxed)));
            }
        })
    };
    let mut total = WorkerTally::default();
    for h in handles {
        if let Ok(t) = h.await {
            total.sent += t.sent;
            total.accepted += t.accepted;
            for (k, v) in t.statuses {
                *total.statuses.entry(k).or_insert(0) += v;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    ticker.abort();
    pb.finish_and_clear();

    // Drain: wait for accepted messages still on their way.
    let drain_deadline = Instant::now() + opts.drain_timeout;
    while board.delivered[phase].load(Ordering::Relaxed) < total.accepted
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = board.delivered[phase].load(Ordering::Relaxed);
    let server_cpu_us_per_message = cpu_micros_per(opts.server_pid, cpu_before, delivered);
    let last = board.last_delivery_ns[phase].load(Ordering::Relaxed);
    let delivery_seconds = (last.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    PostReport {
        in_flight: workers,
        rate,
        seconds,
        sent: total.sent,
        accepted: total.accepted,
        per_second: total.accepted as f64 / seconds.max(1e-9),
        delivered,
        delivered_per_second: delivered as f64 / delivery_seconds,
        statuses: total.statuses,
        end_to_end: Latency::of(&board.latencies[phase].merged()),
        request: Latency::of(&requests.merged()),
        lost: total.accepted.saturating_sub(delivered),
        server_cpu_us_per_message,
    }
}

/// Publishes `rounds` updates of one job followed by every client, through
/// jobcast's publisher and the target's `@connections`.
async fn fanout_phase(
    ids: &[String],
    board: &Board,
    opts: &LoadOptions,
) -> Result<FanoutReport, String> {
    let sdk = local_sdk_config().await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let job_id = "job_benchfanout";
    let now = Utc::now();
    create_bench_job(store.as_ref(), job_id, now).await?;
    for id in ids {
        store
            .subscribe(job_id, id, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    let publisher = DepsBuilder::new(Arc::clone(&store), Default::default())
        .fan_out_concurrency(opts.fanout_concurrency)
        .publisher(Arc::new(ManagementApiPusher::new(
            &sdk,
            &opts.management_url,
        )));
    let pb = bar(opts.progress, opts.fanout_rounds as u64, "fan-out");
    board.fanout_target.store(ids.len(), Ordering::Release);
    let mut times = Vec::with_capacity(opts.fanout_rounds);
    let mut lost = 0u64;
    for round in 1..=opts.fanout_rounds {
        board.fanout_got.store(0, Ordering::Release);
        // The job was created at seq 1; round r publishes seq r + 1.
        board.fanout_seq.store(round as u64 + 1, Ordering::Release);
        let mut update = JobUpdate::status(Status::Running);
        update.percent = Some(round as f64 * 100.0 / (opts.fanout_rounds as f64 + 1.0));
        let started = Instant::now();
        let (_, report) = publisher
            .publish(job_id, update)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = started + Duration::from_secs(30);
        while board.fanout_got.load(Ordering::Acquire) < ids.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = tokio::time::timeout(left, board.fanout_done.notified()).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let got = board.fanout_got.load(Ordering::Acquire).min(ids.len());
        lost += (ids.len() - got) as u64;
        if !report.failed.is_empty() {
            tracing::warn!(
                failed = report.failed.len(),
                "fan-out could not reach some connections"
            );
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    times.sort_by(f64::total_cmp);
    let p50 = percentile(&times, 0.5);
    Ok(FanoutReport {
        subscribers: ids.len(),
        rounds: opts.fanout_rounds,
        concurrency: opts.fanout_concurrency,
        ms_p50: p50,
        ms_min: times.first().copied().unwrap_or(0.0),
        ms_max: times.last().copied().unwrap_or(0.0),
        messages_per_second: ids.len() as f64 / (p50 / 1000.0).max(1e-9),
        lost,
    })
}

async fn post_job(
    http: &reqwest::Client,
    jobs_url: &str,
    input: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let resp = http
        .post(format!("{}/jobs", jobs_url.trim_end_matches('/')))
        .json(&serde_json::json!({ "kind": "demo", "input": input }))
        .send()
        .await
        .map_err(|e| format!("POST /jobs: {e}"))?;
    if resp.status().as_u16() != 202 {
        return Err(format!("POST /jobs answered {}", resp.status()));
    }
    resp.json().await.map_err(|e| format!("POST /jobs: {e}"))
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    v[name]
        .as_str()
        .ok_or_else(|| format!("POST /jobs answered without {name}"))
}

/// Counts what the clients of the in-process fan-out receive.
#[derive(Default)]
struct DemoTally {
    received: AtomicU64,
    finished: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

/// A demo job published by `serve`'s own worker to `opts.clients` fresh
/// clients. A blocker job holds the only worker while they connect, so
/// every update of the measured job reaches every one of them.
async fn in_process_fanout_phase(
    target: &Target,
    jobs_url: &str,
    opts: &LoadOptions,
) -> Result<InProcessFanoutReport, String> {
    require_loopback(jobs_url)?;
    let http = reqwest::Client::new();
    let blocker = post_job(
        &http,
        jobs_url,
        serde_json::json!({"steps": 1, "stepMs": 60000}),
    )
    .await?;
    let blocker_id = field(&blocker, "jobId")?.to_string();
    let blocker_token = field(&blocker, "token")?.to_string();
    let steps = opts.demo_steps.clamp(1, 1000);
    let job = post_job(
        &http,
        jobs_url,
        serde_json::json!({"steps": steps, "stepMs": 0}),
    )
    .await?;
    let status_url = format!(
        "{}/jobs/{}",
        jobs_url.trim_end_matches('/'),
        field(&job, "jobId")?
    );
    let state: serde_json::Value = http
        .get(&status_url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if state["status"] != "queued" {
        return Err("the in-process fan-out needs `jobcast serve --workers 1` (the measured job started before its clients connected)".into());
    }
    let (results, _, _) = open_all(target, field(&job, "websocketUrl")?, opts).await;
    let base = Instant::now();
    let tally = Arc::new(DemoTally {
        first_ns: AtomicU64::new(u64::MAX),
        ..DemoTally::default()
    });
    let terminal_seq = steps as u64 + 2;
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for mut ws in results.into_iter().flatten() {
        let tally = Arc::clone(&tally);
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = ws.next() => m,
                    _ = stop.cancelled() => break,
                };
                let Some(Ok(Message::Text(t))) = m else {
                    if matches!(m, Some(Ok(_))) {
                        continue;
                    } else {
                        return;
                    };
                };
                let now = base.elapsed().as_nanos() as u64;
                tally.received.fetch_add(1, Ordering::Relaxed);
                tally.first_ns.fetch_min(now, Ordering::Relaxed);
                if number_after(t.as_str(), r#""seq":"#) == Some(terminal_seq) {
                    tally.last_ns.fetch_max(now, Ordering::Relaxed);
                    tally.finished.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), ws.close(None)).await;
        }));
    }
    let subscribers = readers.len();
    let cpu_before = opts.server_pid.and_then(cpu_seconds);
    let resp = http
        .delete(format!(
            "{}/jobs/{blocker_id}",
            jobs_url.trim_end_matches('/')
        ))
        .bearer_auth(&blocker_token)
        .send()
        .await
        .map_err(|e| format!("DELETE /jobs: {e}"))?;
    if resp.status().as_u16() != 202 {
        return Err(format!("DELETE /jobs answered {}", resp.status()));
    }
    let pb = bar(opts.progress, subscribers as u64, "in-process");
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.finished.load(Ordering::Relaxed) < subscribers && Instant::now() < deadline {
        pb.set_position(tally.finished.load(Ordering::Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pb.finish_and_clear();
    let received = tally.received.load(Ordering::Relaxed);
    let server_cpu_us_per_message = cpu_micros_per(opts.server_pid, cpu_before, received);
    let seconds = tally
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(tally.first_ns.load(Ordering::Relaxed)) as f64
        / 1e9;
    stop.cancel();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(15), r).await;
    }
    // seq 2 ..= steps + 2 reach every subscriber (seq 1 was stored before they came).
    let updates = steps as u64 + 1;
    let expected = updates * subscribers as u64;
    Ok(InProcessFanoutReport {
        subscribers,
        updates,
        expected,
        delivered: received,
        seconds,
        delivered_per_second: received as f64 / seconds.max(1e-9),
        lost: expected.saturating_sub(received),
        server_cpu_us_per_message,
    })
}

/// `$disconnect` events the server has reported so far, if it can tell.
async fn disconnects(opts: &LoadOptions) -> Option<u64> {
    if let Some(url) = &opts.metrics_url {
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("jobcast_disconnects_total "))?;
        return line
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|v| v as u64);
    }
    if let Some(path) = &opts.disconnect_log {
        return Some(match std::fs::read(path) {
            Ok(b) => b.iter().filter(|c| **c == b'\n').count() as u64,
            Err(_) => 0,
        });
    }
    None
}

/// Samples a process's RSS until stopped; returns the highest value seen.
fn rss_sampler(pid: Option<u32>) -> (CancellationToken, JoinHandle<u64>) {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut max = 0;
        let Some(pid) = pid else { return 0 };
        loop {
            max = max.max(rss_kib(pid).unwrap_or(0));
            tokio::select! {
                _ = s.cancelled() => return max.max(rss_kib(pid).unwrap_or(0)),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (stop, task)
}

/// Runs every phase against the target.
pub async fn run(opts: LoadOptions) -> Result<LoadReport, String> {
    let target = Arc::new(Target::new(&opts).await?);
    if let Some(pid) = opts.server_pid
        && rss_kib(pid).is_none()
    {
        return Err(format!(
            "no process {pid} to read memory from (--server-pid)"
        ));
    }
    let mut report = LoadReport {
        label: opts.label.clone(),
        started_at: crate::protocol::rfc3339(Utc::now()),
        clients: opts.clients,
        ..LoadReport::default()
    };
    let rss = |pid: Option<u32>| pid.and_then(rss_kib).unwrap_or(0);
    let idle_kib = rss(opts.server_pid);
    let disconnects_before = disconnects(&opts).await;

    let connected = connect_phase(&target, &opts).await;
    report.connect = connected.report;
    if connected.clients.is_empty() {
        return Err(format!(
            "no client could connect to {}: {:?}",
            opts.ws_url, report.connect.errors
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected_kib = rss(opts.server_pid);

    let board = Arc::new(Board {
        base: Instant::now(),
        delivered: Default::default(),
        last_delivery_ns: Default::default(),
        latencies: [Latencies::new(), Latencies::new()],
        fanout_seq: AtomicU64::new(0),
        fanout_got: AtomicUsize::new(0),
        fanout_target: AtomicUsize::new(0),
        fanout_done: Notify::new(),
        closing: CancellationToken::new(),
    });
    let ids: Arc<Vec<String>> =
        Arc::new(connected.clients.iter().map(|(id, _)| id.clone()).collect());
    let readers: Vec<JoinHandle<bool>> = connected
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, (_, ws))| tokio::spawn(read_client(ws, i, Arc::clone(&board))))
        .collect();

    let (stop_sampler, sampler) = rss_sampler(opts.server_pid);
    report.posts = post_phase(
        &target,
        &ids,
        &board,
        0,
        opts.post_in_flight,
        0,
        opts.post_duration,
        opts.post_max,
        &opts,
    )
    .await;
    if opts.rate > 0 {
        report.paced = Some(
            post_phase(
                &target,
                &ids,
                &board,
                1,
                opts.post_in_flight,
                opts.rate,
                opts.rate_duration,
                u64::MAX,
                &opts,
            )
            .await,
        );
    }
    if opts.fanout_rounds > 0 {
        report.fanout = Some(fanout_phase(&ids, &board, &opts).await?);
    }
    stop_sampler.cancel();
    let under_load_kib = sampler.await.unwrap_or(0);

    // Close every client and give the server time to run each `$disconnect`.
    let close_started = Instant::now();
    board.closing.cancel();
    let mut closed = 0;
    let mut dropped_early = 0;
    let pb = bar(opts.progress, readers.len() as u64, "close");
    for r in readers {
        match tokio::time::timeout(Duration::from_secs(30), r).await {
            Ok(Ok(true)) => closed += 1,
            _ => dropped_early += 1,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let expected = (closed + dropped_early) as u64;
    let mut observed = None;
    if let Some(before) = disconnects_before {
        let deadline = Instant::now() + opts.drain_timeout.max(Duration::from_secs(2));
        loop {
            let now = disconnects(&opts).await.unwrap_or(before);
            observed = Some(now.saturating_sub(before));
            if now.saturating_sub(before) >= expected || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    report.close = CloseReport {
        closed,
        dropped_early,
        seconds: close_started.elapsed().as_secs_f64(),
        disconnects_observed: observed,
    };
    if let Some(jobs_url) = &opts.jobs_url
        && opts.demo_steps > 0
    {
        report.in_process_fanout = Some(in_process_fanout_phase(&target, jobs_url, &opts).await?);
    }
    if opts.server_pid.is_some() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let identified = report.connect.identified.max(1) as f64;
        report.memory = Some(MemoryReport {
            idle_kib,
            connected_kib,
            under_load_kib,
            after_close_kib: rss(opts.server_pid),
            per_connection_kib: connected_kib.saturating_sub(idle_kib) as f64 / identified,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_round_trip() {
        assert_eq!(parse_probe(&probe(1, 123_456)), Some((1, 123_456)));
        assert_eq!(parse_probe(r#"{"k":2,"t":1}"#), None);
        assert_eq!(parse_probe(r#"{"type":"progress"}"#), None);
        assert_eq!(parse_probe(r#"{"k":0,"t":12x}"#), None);
    }

    #[test]
    fn fields_are_found_in_server_messages() {
        let pong = r#"{"type":"pong","connectionId":"L0SM9cOFvHcCIhw="}"#;
        assert_eq!(
            string_after(pong, r#""connectionId":""#),
            Some("L0SM9cOFvHcCIhw=")
        );
        let snap = r#"{"type":"progress","jobId":"j","seq":17,"status":"running"}"#;
        assert_eq!(number_after(snap, r#""seq":"#), Some(17));
        assert_eq!(number_after(snap, r#""nope":"#), None);
    }

    #[test]
    fn rss_and_cpu_of_this_process_are_read() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(cpu_seconds(std::process::id()).is_some_and(|s| s >= 0.0));
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
