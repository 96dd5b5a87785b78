//! The in-process fan-out: `serve`'s own demo worker publishing one job to
//! every client, with no `@connections` hop.

use super::*;

pub(super) async fn post_job(
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

pub(super) fn field<'a>(v: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    v[name]
        .as_str()
        .ok_or_else(|| format!("POST /jobs answered without {name}"))
}

/// Counts what the clients of the in-process fan-out receive.
pub(super) struct DemoTally {
    /// The clock `first_ns` and `last_ns` are read on.
    pub(super) base: Instant,
    pub(super) received: AtomicU64,
    pub(super) finished: AtomicUsize,
    pub(super) first_ns: AtomicU64,
    pub(super) last_ns: AtomicU64,
}

/// A demo job published by `serve`'s own worker to `opts.clients` fresh
/// clients. A blocker job holds the only worker while they connect, so
/// every update of the measured job reaches every one of them.
pub(super) async fn in_process_fanout_phase(
    target: &Target,
    jobs_url: &str,
    opts: &LoadOptions,
) -> Result<InProcessFanoutReport, String> {
    require_loopback(jobs_url)?;
    let http = reqwest::Client::new();
    let steps = opts.demo_steps.clamp(1, 1000);
    let held = HeldJob::start(&http, jobs_url, steps).await?;
    let (results, _, _) = open_all(target, field(&held.job, "websocketUrl")?, opts).await;
    let tally = Arc::new(DemoTally {
        base: Instant::now(),
        received: AtomicU64::new(0),
        finished: AtomicUsize::new(0),
        first_ns: AtomicU64::new(u64::MAX),
        last_ns: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();
    let readers: Vec<_> = results
        .into_iter()
        .flatten()
        .map(|ws| {
            tokio::spawn(demo_reader(
                ws,
                Arc::clone(&tally),
                stop.clone(),
                steps as u64 + 2,
            ))
        })
        .collect();
    let subscribers = readers.len();
    let cpu_before = opts.server_pid.and_then(cpu_seconds);
    held.release(&http, jobs_url).await?;
    let pb = bar(!opts.quiet, subscribers as u64, "in-process");
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

/// The measured demo job, queued behind a blocker job that holds `serve`'s
/// only worker until [`HeldJob::release`] cancels it.
struct HeldJob {
    blocker_id: String,
    blocker_token: String,
    job: serde_json::Value,
}

impl HeldJob {
    async fn start(http: &reqwest::Client, jobs_url: &str, steps: u32) -> Result<Self, String> {
        let blocker = post_job(
            http,
            jobs_url,
            serde_json::json!({"steps": 1, "stepMs": 60000}),
        )
        .await?;
        let job = post_job(
            http,
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
        Ok(Self {
            blocker_id: field(&blocker, "jobId")?.to_string(),
            blocker_token: field(&blocker, "token")?.to_string(),
            job,
        })
    }

    /// Cancels the blocker, so the worker takes the measured job.
    async fn release(&self, http: &reqwest::Client, jobs_url: &str) -> Result<(), String> {
        let resp = http
            .delete(format!(
                "{}/jobs/{}",
                jobs_url.trim_end_matches('/'),
                self.blocker_id
            ))
            .bearer_auth(&self.blocker_token)
            .send()
            .await
            .map_err(|e| format!("DELETE /jobs: {e}"))?;
        if resp.status().as_u16() != 202 {
            return Err(format!("DELETE /jobs answered {}", resp.status()));
        }
        Ok(())
    }
}

/// One client of the in-process fan-out: counts every text message until
/// `stop`, and the snapshot with `terminal_seq` as its last.
async fn demo_reader(
    mut ws: ClientWs,
    tally: Arc<DemoTally>,
    stop: CancellationToken,
    terminal_seq: u64,
) {
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.cancelled() => break,
        };
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => return,
        };
        let now = tally.base.elapsed().as_nanos() as u64;
        tally.received.fetch_add(1, Ordering::Relaxed);
        tally.first_ns.fetch_min(now, Ordering::Relaxed);
        if number_after(text.as_str(), r#""seq":"#) == Some(terminal_seq) {
            tally.last_ns.fetch_max(now, Ordering::Relaxed);
            tally.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), ws.close(None)).await;
}
