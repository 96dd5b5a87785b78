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
//! 3. **paced**: the same at a fixed rate (open loop: a post late because
//!    its worker still waited for the previous answer counts from its
//!    scheduled time, so a stalled server cannot hide its queueing; one the
//!    worker slept for counts from when the timer woke it, since tokio's
//!    timer fires up to a millisecond late).
//! 4. **fan-out**: jobcast's own publisher (memory store, AWS SDK client,
//!    SigV4) posts one job's snapshot to all N subscribers through the
//!    target's `@connections`; time until the last client has it.
//! 5. **close**: every client closes; the server's `$disconnect` count and
//!    its memory are read afterwards.
//!
//! The server's RSS comes from `/proc/<pid>/status` when its pid is given.

mod clients;
mod in_process;
mod phases;
pub(crate) mod proc;
mod report;

use clients::*;
use in_process::*;
use phases::*;
pub use proc::{cpu_micros_per, cpu_seconds, rss_kib};
pub use report::*;

use super::{create_bench_job, local_sdk_config, percentile, require_loopback, timed_round};
use crate::store::{MemoryStore, Store};
use crate::values::{parse_duration, parse_positive};
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

/// What to measure and how hard.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadOptions {
    /// Name of the system under test, copied into the report.
    #[arg(long, default_value = "jobcast")]
    pub label: String,
    /// WebSocket URL the clients open (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// Management API base; `@connections/{id}` is appended (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080/dev")]
    pub management_url: String,
    /// WebSocket clients held open for the whole run.
    #[arg(long, default_value = "1000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub clients: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value = "128", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub handshake_concurrency: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N (each source address
    /// has its own ~28k ephemeral ports: more than ~28k clients need 2+).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// `@connections` posts in flight, each worker on its own keep-alive connection.
    #[arg(long = "in-flight", value_name = "IN_FLIGHT", default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub post_in_flight: usize,
    /// Length of the throughput phase (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub post_duration: Duration,
    /// At most this many posts in the throughput phase.
    #[arg(long, default_value = "10000000", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub post_max: u64,
    /// Messages per second of the paced latency phase (0 skips it).
    #[arg(long, default_value = "10000")]
    pub rate: u64,
    /// Length of the paced phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rate_duration: Duration,
    /// Publishes of the fan-out phase, through jobcast's publisher and the target's `@connections` (0 skips it).
    #[arg(long, default_value = "5")]
    pub fanout_rounds: usize,
    /// Posts in flight during a fan-out.
    #[arg(long, default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub fanout_concurrency: usize,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus endpoint with `jobcast_disconnects_total`, to count `$disconnect` events.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// A file the server's `$disconnect` handler appends one line to per event.
    #[arg(long, conflicts_with = "metrics_url")]
    pub disconnect_log: Option<PathBuf>,
    /// How long to wait for accepted messages still in flight after each phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// jobcast's jobs API base: adds the in-process fan-out phase (a demo job
    /// published by `serve`'s own worker to --clients fresh clients; start
    /// `serve --workers 1 --outbound-queue 1024`).
    #[arg(long)]
    pub jobs_url: Option<String>,
    /// Steps of that demo job, published back to back (0 skips the phase).
    #[arg(long, default_value = "100", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub demo_steps: u32,
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
pub(crate) fn rss_sampler(pid: Option<u32>) -> (CancellationToken, JoinHandle<u64>) {
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

    let board = Arc::new(Board::new());
    let ids: Arc<Vec<String>> =
        Arc::new(connected.clients.iter().map(|(id, _)| id.clone()).collect());
    let readers: Vec<JoinHandle<bool>> = connected
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, (_, ws))| tokio::spawn(read_client(ws, i, Arc::clone(&board))))
        .collect();

    let (stop_sampler, sampler) = rss_sampler(opts.server_pid);
    let rig = Rig {
        target: Arc::clone(&target),
        ids: Arc::clone(&ids),
        board: Arc::clone(&board),
    };
    post_phases(&rig, &opts, &mut report).await;
    if opts.fanout_rounds > 0 {
        report.fanout = Some(fanout_phase(&ids, &board, &opts).await?);
    }
    stop_sampler.cancel();
    let under_load_kib = sampler.await.unwrap_or(0);

    report.close = close_phase(&board, readers, &opts, disconnects_before).await;
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

/// The post phases: as fast as answers come back, then (with `--rate`) at
/// a fixed pace.
async fn post_phases(rig: &Rig, opts: &LoadOptions, report: &mut LoadReport) {
    let as_fast_as_answered = PostPhase {
        phase: 0,
        rate: 0,
        duration: opts.post_duration,
        max: opts.post_max,
    };
    report.posts = post_phase(rig, as_fast_as_answered, opts).await;
    if opts.rate > 0 {
        let paced = PostPhase {
            phase: 1,
            rate: opts.rate,
            duration: opts.rate_duration,
            max: u64::MAX,
        };
        report.paced = Some(post_phase(rig, paced, opts).await);
    }
}

/// Closes every client and gives the server time to run each `$disconnect`
/// (counted from its metrics when they can be read).
async fn close_phase(
    board: &Board,
    readers: Vec<JoinHandle<bool>>,
    opts: &LoadOptions,
    disconnects_before: Option<u64>,
) -> CloseReport {
    let close_started = Instant::now();
    board.closing.cancel();
    let mut closed = 0;
    let mut dropped_early = 0;
    let pb = bar(!opts.quiet, readers.len() as u64, "close");
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
            let now = disconnects(opts).await.unwrap_or(before);
            observed = Some(now.saturating_sub(before));
            if now.saturating_sub(before) >= expected || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    CloseReport {
        closed,
        dropped_early,
        seconds: close_started.elapsed().as_secs_f64(),
        disconnects_observed: observed,
    }
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
