//! `jobcast bench files`: one file uploaded through a running serve's
//! signed URL (streamed from disk by the Rust worker library, as a worker
//! would) and downloaded back by plain HTTP: MiB/s each way, the server's
//! resident memory before and at its highest during each transfer, and
//! whether the bytes that came back are the ones sent (sha256).
//!
//! The serve under test must hand the kind to this bench's receiver:
//! `JOBCAST_WEBHOOK_SECRET=… jobcast serve --kind bench=http://127.0.0.1:8099/`.

use super::load::{rss_kib, rss_sampler};
use super::updates::{Fleet, start_fleet};
use crate::values::parse_positive;
use crate::worker_client::Job;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// What `jobcast bench files` is asked to do.
#[derive(Clone, Debug, clap::Args)]
pub struct FilesOptions {
    /// jobs API base of the serve under test (loopback). Start it with
    /// JOBCAST_WEBHOOK_SECRET set and `--kind bench=http://RECEIVER/`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// The kind the serve hands to this bench.
    #[arg(long, default_value = "bench")]
    pub kind: String,
    /// Where this bench takes the job message.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub receiver: SocketAddr,
    /// Size of the file, in MiB.
    #[arg(long, default_value = "50", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub mib: u64,
    /// The server's pid, to report its resident memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesReport {
    pub mib: u64,
    pub upload_mib_per_second: f64,
    pub download_mib_per_second: f64,
    /// The server's RSS before the upload, and at its highest during each
    /// transfer (KiB; absent without --server-pid).
    pub rss_before_kib: Option<u64>,
    pub rss_peak_upload_kib: Option<u64>,
    pub rss_peak_download_kib: Option<u64>,
    /// The highest RSS during either transfer above the one before (KiB).
    pub rss_growth_kib: Option<u64>,
    pub sha256: String,
    pub same_bytes: bool,
}

impl std::fmt::Display for FilesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} MiB through serve: upload {:.0} MiB/s, download {:.0} MiB/s; ",
            self.mib, self.upload_mib_per_second, self.download_mib_per_second
        )?;
        match (self.rss_before_kib, self.rss_growth_kib) {
            (Some(b), Some(g)) => write!(
                f,
                "server RSS {:.1} MiB before, +{:.1} MiB at most; ",
                b as f64 / 1024.0,
                g as f64 / 1024.0
            )?,
            _ => write!(f, "server RSS not read (no --server-pid); ")?,
        }
        write!(
            f,
            "{}",
            if self.same_bytes {
                "the same bytes back (sha256)"
            } else {
                "DIFFERENT bytes back"
            }
        )
    }
}

/// Writes `mib` MiB of varied bytes to `path`; their sha256.
async fn make_file(path: &std::path::Path, mib: u64) -> Result<String, String> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut hash = Sha256::new();
    let mut block = vec![0u8; 1024 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..mib {
        for b in block.iter_mut() {
            // xorshift: bytes no storage could compress away.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        hash.update(&block);
        file.write_all(&block)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(crate::protocol::hex(&hash.finalize()))
}

pub async fn run(o: FilesOptions) -> Result<FilesReport, String> {
    if let Some(pid) = o.server_pid
        && rss_kib(pid).is_none()
    {
        return Err(format!(
            "no process {pid} to read memory from (--server-pid)"
        ));
    }
    let Fleet {
        http,
        mut messages,
        receiver,
        ..
    } = start_fleet(&o.jobs_url, &o.kind, o.receiver, 1).await?;
    receiver.abort();
    let message = messages
        .drain()
        .map(|(_, m)| m)
        .next()
        .ok_or("no job message came")?;
    let job = Job::from_value(message).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("jobcast-bench-files-{}", std::process::id()));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let source = dir.join("bench.bin");
    let sha256 = make_file(&source, o.mib).await?;
    let bytes = (o.mib * 1024 * 1024) as f64;
    let rss_before_kib = o.server_pid.and_then(rss_kib);

    let (stop, peak) = rss_sampler(o.server_pid);
    let began = Instant::now();
    job.upload(
        "bench.bin",
        source.as_path(),
        Some("application/octet-stream"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let upload_seconds = began.elapsed().as_secs_f64();
    stop.cancel();
    let rss_peak_upload_kib = peak.await.ok().filter(|_| o.server_pid.is_some());

    job.succeed_with_files(None, None, &["bench.bin"])
        .await
        .map_err(|e| e.to_string())?;
    let view: serde_json::Value = http
        .get(format!("{}/jobs/{}", o.jobs_url, job.id))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let url = view["files"][0]["url"]
        .as_str()
        .ok_or_else(|| format!("the job shows no file: {view}"))?
        .to_string();

    let (stop, peak) = rss_sampler(o.server_pid);
    let began = Instant::now();
    let res = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("download answered {}", res.status()));
    }
    let mut hash = Sha256::new();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        hash.update(chunk.map_err(|e| e.to_string())?);
    }
    let download_seconds = began.elapsed().as_secs_f64();
    stop.cancel();
    let rss_peak_download_kib = peak.await.ok().filter(|_| o.server_pid.is_some());
    let back = crate::protocol::hex(&hash.finalize());
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let mib = 1024.0 * 1024.0;
    Ok(FilesReport {
        mib: o.mib,
        upload_mib_per_second: bytes / mib / upload_seconds,
        download_mib_per_second: bytes / mib / download_seconds,
        rss_growth_kib: rss_before_kib.map(|b| {
            rss_peak_upload_kib
                .max(rss_peak_download_kib)
                .unwrap_or(b)
                .saturating_sub(b)
        }),
        rss_before_kib,
        rss_peak_upload_kib,
        rss_peak_download_kib,
        same_bytes: back == sha256,
        sha256,
    })
}
