//! What `jobcast bench run` reports, and the latency histograms behind it.

use super::*;

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
pub(super) struct Latencies {
    pub(super) shards: Vec<Mutex<Histogram<u64>>>,
}

pub(super) const SHARDS: usize = 16;

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Latencies {
    pub(super) fn new() -> Latencies {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    pub(super) fn record(&self, shard: usize, micros: u64) {
        if let Ok(mut h) = self.shards[shard % SHARDS].lock() {
            h.saturating_record(micros.max(1));
        }
    }

    pub(super) fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            if let Ok(h) = s.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// The one-screen summary `jobcast bench run` prints.
impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.connect;
        writeln!(
            f,
            "{}: {}/{} clients in {:.2} s ({:.0}/s, handshake p50 {:.2} ms p99 {:.2} ms)",
            self.label,
            c.identified,
            c.requested,
            c.seconds,
            c.per_second,
            c.handshake.p50_ms,
            c.handshake.p99_ms
        )?;
        for p in std::iter::once(&self.posts).chain(self.paced.as_ref()) {
            writeln!(
                f,
                "{}: posts {:.0}/s accepted, {:.0}/s delivered at {} in flight{} (end-to-end p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms; lost {}; statuses {:?}; server CPU {:.1} µs/message)",
                self.label,
                p.per_second,
                p.delivered_per_second,
                p.in_flight,
                if p.rate > 0 {
                    format!(", paced at {}/s", p.rate)
                } else {
                    String::new()
                },
                p.end_to_end.p50_ms,
                p.end_to_end.p99_ms,
                p.end_to_end.p999_ms,
                p.lost,
                p.statuses,
                p.server_cpu_us_per_message.unwrap_or(f64::NAN)
            )?;
        }
        if let Some(fo) = &self.fanout {
            writeln!(
                f,
                "{}: fan-out to {} via @connections p50 {:.1} ms ({:.0} msg/s), lost {}",
                self.label, fo.subscribers, fo.ms_p50, fo.messages_per_second, fo.lost
            )?;
        }
        if let Some(ip) = &self.in_process_fanout {
            writeln!(
                f,
                "{}: in-process fan-out of {} updates to {} clients: {}/{} delivered in {:.2} s ({:.0} msg/s), lost {}",
                self.label,
                ip.updates,
                ip.subscribers,
                ip.delivered,
                ip.expected,
                ip.seconds,
                ip.delivered_per_second,
                ip.lost
            )?;
        }
        if let Some(m) = &self.memory {
            writeln!(
                f,
                "{}: server RSS idle {} KiB, connected {} KiB ({:.1} KiB/connection), under load {} KiB, after close {} KiB",
                self.label,
                m.idle_kib,
                m.connected_kib,
                m.per_connection_kib,
                m.under_load_kib,
                m.after_close_kib
            )?;
        }
        writeln!(
            f,
            "{}: closed {} (dropped early {}), $disconnect observed {:?}",
            self.label,
            self.close.closed,
            self.close.dropped_early,
            self.close.disconnects_observed
        )?;
        Ok(())
    }
}
