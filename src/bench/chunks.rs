//! `jobcast bench chunks`: streams under load. Each job's worker appends
//! chunks at a steady rate through the Rust worker library (its default
//! gathering: 100 ms) while one WebSocket client per job follows the
//! stream: chunks per second delivered, the time from a worker's `append`
//! call to the chunk at its client, chunks lost, and the server's CPU time
//! per delivered chunk.
//!
//! The serve under test must hand the kind to this bench's receiver:
//! `JOBCAST_WEBHOOK_SECRET=… jobcast serve --kind bench=http://127.0.0.1:8099/`.

use super::load::{Latency, cpu_micros_per, cpu_seconds};
use super::updates::{Fleet, start_fleet};
use crate::values::parse_positive;
use crate::worker_client::Job;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What `jobcast bench chunks` is asked to do.
#[derive(Clone, Debug, clap::Args)]
pub struct ChunksOptions {
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
    #[arg(long, default_value = "100", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Chunks each worker appends per second.
    #[arg(long, default_value = "50", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub rate: u64,
    /// How long each worker streams, in seconds.
    #[arg(long, default_value = "10", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub seconds: u64,
    /// The server's pid, to report its CPU time per delivered chunk.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunksReport {
    pub jobs: usize,
    pub rate_per_job: u64,
    pub chunks: u64,
    pub seconds: f64,
    pub chunks_per_second: f64,
    /// From a worker's `append` call to the chunk at its client.
    pub chunk_to_client: Latency,
    /// Chunks appended that no client received.
    pub missing: u64,
    /// Chunks received twice (allowed by the contract, counted to see them).
    pub duplicates: u64,
    pub server_cpu_us_per_chunk: Option<f64>,
}

/// Follows one job's `tokens` stream until the job ends and every chunk
/// below its final length is in: the arrival time of each index.
async fn follow(
    url: String,
    job_id: String,
    token: String,
) -> Result<(Vec<Option<Instant>>, u64), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("WebSocket connect: {e}"))?;
    let subscribe =
        json!({"action": "subscribe", "jobId": job_id, "token": token, "streams": {"tokens": 0}});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut seen: Vec<Option<Instant>> = Vec::new();
    let mut duplicates = 0;
    let mut final_length: Option<usize> = None;
    while let Some(m) = ws.next().await {
        let Ok(Message::Text(t)) = m else { continue };
        let at = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        match v["type"].as_str() {
            Some("chunks") => {
                let from = v["from"].as_u64().unwrap_or(0) as usize;
                let n = v["chunks"].as_array().map_or(0, Vec::len);
                if seen.len() < from + n {
                    seen.resize(from + n, None);
                }
                for slot in &mut seen[from..from + n] {
                    match slot {
                        Some(_) => duplicates += 1,
                        None => *slot = Some(at),
                    }
                }
            }
            Some("progress")
                if matches!(
                    v["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                ) =>
            {
                final_length = Some(v["streams"]["tokens"].as_u64().unwrap_or(0) as usize);
            }
            _ => {}
        }
        if let Some(len) = final_length
            && seen.len() >= len
            && seen.iter().take(len).all(Option::is_some)
        {
            break;
        }
    }
    Ok((seen, duplicates))
}

/// One worker: `rate` chunks a second for `seconds`, then the end; the
/// time of each `append` call, by index.
async fn work(message: Value, rate: u64, seconds: u64) -> Result<Vec<Instant>, String> {
    let job = Job::from_value(message).map_err(|e| e.to_string())?;
    let total = rate * seconds;
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(every);
    let mut sent = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        sent.push(Instant::now());
        job.append("tokens", vec![json!(format!("t{i} "))])
            .await
            .map_err(|e| e.to_string())?;
    }
    job.succeed(Some(json!({"chunks": total})), None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(sent)
}

pub async fn run(o: ChunksOptions) -> Result<ChunksReport, String> {
    let Fleet {
        started,
        mut messages,
        receiver,
        ..
    } = start_fleet(&o.jobs_url, &o.kind, o.receiver, o.jobs).await?;
    let followers: Vec<_> = started
        .iter()
        .map(|s| {
            tokio::spawn(follow(
                s.websocket_url.clone(),
                s.job_id.clone(),
                s.token.clone(),
            ))
        })
        .collect();
    // Let every client subscribe before the first chunk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = o.server_pid.and_then(cpu_seconds);
    let began = Instant::now();
    let workers: Vec<_> = started
        .iter()
        .map(|s| {
            let message = messages.remove(&s.job_id).unwrap_or_default();
            tokio::spawn(work(message, o.rate, o.seconds))
        })
        .collect();
    let mut sent = Vec::with_capacity(workers.len());
    for w in workers {
        sent.push(w.await.map_err(|e| e.to_string())??);
    }
    let mut to_client = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let (mut missing, mut duplicates, mut delivered) = (0u64, 0u64, 0u64);
    for (f, sent) in followers.into_iter().zip(sent) {
        let (seen, dups) = tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .map_err(|_| "a client did not get its whole stream in 30 s".to_string())?
            .map_err(|e| e.to_string())??;
        duplicates += dups;
        for (i, at) in sent.iter().enumerate() {
            match seen.get(i).copied().flatten() {
                Some(got) => {
                    delivered += 1;
                    let _ = to_client.record(got.saturating_duration_since(*at).as_micros() as u64);
                }
                None => missing += 1,
            }
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    let cpu = cpu_micros_per(o.server_pid, cpu_before, delivered);
    receiver.abort();
    Ok(ChunksReport {
        jobs: o.jobs,
        rate_per_job: o.rate,
        chunks: delivered + missing,
        seconds,
        chunks_per_second: delivered as f64 / seconds,
        chunk_to_client: Latency::of(&to_client),
        missing,
        duplicates,
        server_cpu_us_per_chunk: cpu,
    })
}

impl std::fmt::Display for ChunksReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} chunks from {} workers at {}/s each in {:.2} s: {:.0} chunks/s delivered; append to client p50 {:.2} ms p99 {:.2} ms; {} missing, {} twice; server CPU {}",
            self.chunks,
            self.jobs,
            self.rate_per_job,
            self.seconds,
            self.chunks_per_second,
            self.chunk_to_client.p50_ms,
            self.chunk_to_client.p99_ms,
            self.missing,
            self.duplicates,
            self.server_cpu_us_per_chunk
                .map(|c| format!("{c:.2} µs/chunk"))
                .unwrap_or_else(|| "not measured (--server-pid)".into())
        )
    }
}
