//! The phases that post: to `@connections` as fast as answers come, at a
//! fixed pace, and a job's snapshot fanned out to every client through
//! `@connections`.

use super::*;

/// One keep-alive HTTP/1.1 connection to the management API.
pub(super) struct Poster {
    pub(super) sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Poster {
    pub(super) async fn open(target: &Target) -> Result<Poster, String> {
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
    pub(super) async fn post(
        &mut self,
        target: &Target,
        connection_id: &str,
        body: String,
    ) -> Option<u16> {
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
pub(super) struct WorkerTally {
    pub(super) sent: u64,
    pub(super) accepted: u64,
    pub(super) statuses: BTreeMap<String, u64>,
}

/// What the posting phases share: where they post, to whom, and the board
/// the clients record arrivals on.
pub(super) struct Rig {
    pub(super) target: Arc<Target>,
    pub(super) ids: Arc<Vec<String>>,
    pub(super) board: Arc<Board>,
}

/// One post phase: its index on the board, its pace (0: as fast as answers
/// come back), and its bounds in time and count.
pub(super) struct PostPhase {
    pub(super) phase: usize,
    pub(super) rate: u64,
    pub(super) duration: Duration,
    pub(super) max: u64,
}

/// What every worker of one post phase shares.
struct PhaseShared {
    target: Arc<Target>,
    ids: Arc<Vec<String>>,
    board: Arc<Board>,
    spec: PostPhase,
    workers: usize,
    /// Posts claimed so far (bounded by `spec.max`).
    claimed: AtomicU64,
    requests: Latencies,
    started: Instant,
    start_ns: u64,
}

impl PhaseShared {
    /// Waits for worker `w`'s `i`-th turn: at its slot of the open-loop
    /// schedule for paced runs, at once for closed loops — with the post's
    /// number in the phase, and for paced runs the board time its latency
    /// counts from. None once the phase is over.
    ///
    /// A post that is late because the worker was still waiting for its
    /// previous answer counts from its slot: the server's queueing shows.
    /// A post the worker had to wait for counts from when the timer woke
    /// it: tokio's timer fires up to a millisecond after the deadline, and
    /// that lateness is the load generator's, not the server's.
    async fn next_turn(&self, w: usize, i: u64) -> Option<(u64, Option<u64>)> {
        let slot = (i * self.workers as u64 + w as u64) * 1_000_000_000;
        let scheduled = match slot.checked_div(self.spec.rate) {
            Some(offset) => {
                let due = Duration::from_nanos(offset);
                if due >= self.spec.duration {
                    return None;
                }
                if self.started.elapsed() < due {
                    tokio::time::sleep_until((self.started + due).into()).await;
                    Some(self.board.now_ns().max(self.start_ns + offset))
                } else {
                    Some(self.start_ns + offset)
                }
            }
            None => None,
        };
        if self.started.elapsed() >= self.spec.duration {
            return None;
        }
        let n = self.claimed.fetch_add(1, Ordering::Relaxed);
        (n < self.spec.max).then_some((n, scheduled))
    }
}

impl WorkerTally {
    fn count(&mut self, key: String) {
        *self.statuses.entry(key).or_insert(0) += 1;
    }

    fn add(&mut self, other: WorkerTally) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_insert(0) += v;
        }
    }
}

/// One worker of a post phase: posts probes on its own keep-alive
/// connection, reopening it on failure, until the phase is over or three
/// attempts in a row fail.
async fn post_worker(shared: Arc<PhaseShared>, w: usize) -> WorkerTally {
    let mut tally = WorkerTally::default();
    let mut poster = None;
    let mut failures = 0u32;
    let mut i: u64 = 0;
    while failures < 3 {
        let Some((n, scheduled_ns)) = shared.next_turn(w, i).await else {
            break;
        };
        i += 1;
        let p = match poster.as_mut() {
            Some(p) => p,
            None => match Poster::open(&shared.target).await {
                Ok(p) => poster.insert(p),
                Err(e) => {
                    tally.count(error_key("connect", e));
                    failures += 1;
                    continue;
                }
            },
        };
        let id = &shared.ids[(n as usize) % shared.ids.len()];
        let t_ns = scheduled_ns.unwrap_or_else(|| shared.board.now_ns());
        let t0 = Instant::now();
        tally.sent += 1;
        match p
            .post(&shared.target, id, probe(shared.spec.phase, t_ns))
            .await
        {
            Some(status) => {
                failures = 0;
                shared.requests.record(w, t0.elapsed().as_micros() as u64);
                if (200..300).contains(&status) {
                    tally.accepted += 1;
                }
                tally.count(status.to_string());
            }
            None => {
                tally.count("transport".into());
                poster = None;
                failures += 1;
            }
        }
    }
    tally
}

/// Runs one post phase with `opts.post_in_flight` workers.
pub(super) async fn post_phase(rig: &Rig, spec: PostPhase, opts: &LoadOptions) -> PostReport {
    let what = if spec.rate == 0 { "posts" } else { "paced" };
    let pb = bar(!opts.quiet, spec.duration.as_millis() as u64, what);
    let cpu_before = opts.server_pid.and_then(cpu_seconds);
    let (phase, rate) = (spec.phase, spec.rate);
    let workers = opts.post_in_flight.max(1);
    let shared = Arc::new(PhaseShared {
        target: Arc::clone(&rig.target),
        ids: Arc::clone(&rig.ids),
        board: Arc::clone(&rig.board),
        spec,
        workers,
        claimed: AtomicU64::new(0),
        requests: Latencies::new(),
        started: Instant::now(),
        start_ns: rig.board.now_ns(),
    });
    let handles: Vec<JoinHandle<WorkerTally>> = (0..workers)
        .map(|w| tokio::spawn(post_worker(Arc::clone(&shared), w)))
        .collect();
    let ticker = {
        let (pb, shared) = (pb.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                pb.set_position(shared.started.elapsed().as_millis() as u64);
                pb.set_message(format!("{} sent", shared.claimed.load(Ordering::Relaxed)));
            }
        })
    };
    let mut total = WorkerTally::default();
    for h in handles {
        if let Ok(t) = h.await {
            total.add(t);
        }
    }
    let seconds = shared.started.elapsed().as_secs_f64();
    ticker.abort();
    pb.finish_and_clear();

    let board = &rig.board;
    let delivered = board
        .wait_delivered(phase, total.accepted, opts.drain_timeout)
        .await;
    let server_cpu_us_per_message = cpu_micros_per(opts.server_pid, cpu_before, delivered);
    let last = board.last_delivery_ns[phase].load(Ordering::Relaxed);
    let delivery_seconds = (last.saturating_sub(shared.start_ns) as f64 / 1e9).max(1e-9);
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
        request: Latency::of(&shared.requests.merged()),
        lost: total.accepted.saturating_sub(delivered),
        server_cpu_us_per_message,
    }
}

/// Publishes `rounds` updates of one job followed by every client, through
/// jobcast's publisher and the target's `@connections`.
pub(super) async fn fanout_phase(
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
    let parts = DepsBuilder::new(Arc::clone(&store), Default::default())
        .fan_out_concurrency(opts.fanout_concurrency);
    let publisher = parts.publisher(parts.management_pusher(&sdk, &opts.management_url));
    let pb = bar(!opts.quiet, opts.fanout_rounds as u64, "fan-out");
    board.fanout_target.store(ids.len(), Ordering::Release);
    let mut times = Vec::with_capacity(opts.fanout_rounds);
    let mut lost = 0u64;
    for round in 1..=opts.fanout_rounds {
        board.fanout_got.store(0, Ordering::Release);
        // The job was created at seq 1; round r publishes seq r + 1.
        board.fanout_seq.store(round as u64 + 1, Ordering::Release);
        let r = timed_round(
            &publisher,
            job_id,
            (round, opts.fanout_rounds),
            ids.len(),
            || board.fanout_got.load(Ordering::Acquire),
            &board.fanout_done,
        )
        .await?;
        times.push(r.millis);
        lost += (ids.len() - r.got) as u64;
        let report = r.report;
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
