//! Counters and gauges exposed at `/metrics` in the Prometheus text format.
//! Plain atomics: recording a value on the message path costs one relaxed add.

use crate::protocol::Status;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const MANAGEMENT_METHODS: [&str; 3] = ["POST", "GET", "DELETE"];
const MANAGEMENT_STATUSES: [u16; 8] = [200, 204, 400, 403, 410, 413, 429, 500];

/// Every figure the gateway reports.
#[derive(Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    /// Posts in flight the last fan-out started with.
    pub publish_concurrency: AtomicI64,
    /// The publisher's smoothed round trip of one post, in microseconds.
    pub publish_post_latency_us: AtomicI64,
    pub connects_total: AtomicU64,
    pub connects_refused_total: AtomicU64,
    pub disconnects_total: AtomicU64,
    pub messages_in_total: AtomicU64,
    pub messages_out_total: AtomicU64,
    pub slow_consumer_closes_total: AtomicU64,
    pub rate_limit_closes_total: AtomicU64,
    pub publish_delivered_total: AtomicU64,
    pub publish_gone_total: AtomicU64,
    pub publish_retries_total: AtomicU64,
    pub publish_failed_total: AtomicU64,
    pub publish_held_total: AtomicU64,
    pub publish_flushed_total: AtomicU64,
    pub webhook_attempts_total: AtomicU64,
    pub webhook_delivered_total: AtomicU64,
    pub webhook_failed_total: AtomicU64,
    pub workers_lost_total: AtomicU64,
    pub jobs_not_started_total: AtomicU64,
    pub worker_updates_total: AtomicU64,
    pub recovery_found_total: AtomicU64,
    pub recovered_total: AtomicU64,
    management: [[AtomicU64; MANAGEMENT_STATUSES.len() + 1]; MANAGEMENT_METHODS.len()],
    jobs: [AtomicU64; Status::ALL.len()],
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts one `@connections` call by method and answered status.
    pub fn management_call(&self, method: &str, status: u16) {
        let Some(m) = MANAGEMENT_METHODS.iter().position(|x| *x == method) else {
            return;
        };
        let s = MANAGEMENT_STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(MANAGEMENT_STATUSES.len());
        inc(&self.management[m][s]);
    }

    /// Counts a job entering `status`.
    pub fn job_entered(&self, status: Status) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == status) {
            inc(&self.jobs[i]);
        }
    }

    /// Counts one job ended `worker_lost` by the liveness sweep.
    pub fn worker_lost(&self) {
        inc(&self.workers_lost_total);
    }

    /// Counts one job ended `not_started` by the sweep.
    pub fn not_started(&self) {
        inc(&self.jobs_not_started_total);
    }

    /// Counts one update or heartbeat accepted from a worker.
    pub fn worker_update(&self) {
        inc(&self.worker_updates_total);
    }

    /// Counts one message in from a client.
    pub fn message_in(&self) {
        inc(&self.messages_in_total);
    }

    /// Counts one message written to a client.
    pub fn messages_out(&self, n: u64) {
        self.messages_out_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        #[rustfmt::skip]
        let counters: [(&str, &str, &AtomicU64); 21] = [
            ("jobcast_workers_lost_total", "Jobs ended failed worker_lost: no update or heartbeat within the heartbeat timeout.", &self.workers_lost_total),
            ("jobcast_jobs_not_started_total", "Jobs ended failed not_started: no worker reported within the start timeout of the hand-over.", &self.jobs_not_started_total),
            ("jobcast_recovery_found_total", "Jobs a previous run left unfinished, found by this process at start.", &self.recovery_found_total),
            ("jobcast_recovered_total", "Jobs a previous run left unfinished that this process has settled at start: resumed, handed over, webhook delivered, or left to the process running them.", &self.recovered_total),
            ("jobcast_worker_updates_total", "Updates and heartbeats accepted from workers on POST /jobs/{id}/updates.", &self.worker_updates_total),
            ("jobcast_connects_total", "WebSocket connections accepted by $connect.", &self.connects_total),
            ("jobcast_connects_refused_total", "WebSocket handshakes refused (auth, limits, bad requests).", &self.connects_refused_total),
            ("jobcast_disconnects_total", "$disconnect events run.", &self.disconnects_total),
            ("jobcast_messages_in_total", "Messages received from WebSocket clients.", &self.messages_in_total),
            ("jobcast_messages_out_total", "Messages written to WebSocket clients.", &self.messages_out_total),
            ("jobcast_slow_consumer_closes_total", "Connections closed because their outbound queue was full.", &self.slow_consumer_closes_total),
            ("jobcast_rate_limit_closes_total", "Connections closed for sending more messages per second than allowed.", &self.rate_limit_closes_total),
            ("jobcast_publish_delivered_total", "Progress messages delivered by the publisher.", &self.publish_delivered_total),
            ("jobcast_publish_gone_total", "Publisher posts answered 410 (subscription deleted).", &self.publish_gone_total),
            ("jobcast_publish_retries_total", "Publisher posts retried after 429 or 5xx.", &self.publish_retries_total),
            ("jobcast_publish_failed_total", "Publisher posts that failed for good.", &self.publish_failed_total),
            ("jobcast_publish_held_total", "Updates stored but not pushed at once: a newer one of the same coalescing window is pushed when it ends.", &self.publish_held_total),
            ("jobcast_publish_flushed_total", "Coalescing windows whose newest held update was pushed when they ended.", &self.publish_flushed_total),
            ("jobcast_webhook_attempts_total", "Webhook delivery attempts.", &self.webhook_attempts_total),
            ("jobcast_webhook_delivered_total", "Webhooks delivered (2xx).", &self.webhook_delivered_total),
            ("jobcast_webhook_failed_total", "Webhooks that failed after every retry.", &self.webhook_failed_total),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let gauges: [(&str, &str, f64); 3] = [
            (
                "jobcast_connections_open",
                "WebSocket connections open now.",
                self.connections_open.load(Ordering::Relaxed) as f64,
            ),
            (
                "jobcast_publish_concurrency",
                "Posts in flight the last fan-out started with (planned from the round trip and 429s).",
                self.publish_concurrency.load(Ordering::Relaxed) as f64,
            ),
            (
                "jobcast_publish_post_latency_seconds",
                "The publisher's smoothed round trip of one post.",
                self.publish_post_latency_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP jobcast_management_requests_total @connections calls by method and status.\n# TYPE jobcast_management_requests_total counter"
        );
        for (m, method) in MANAGEMENT_METHODS.iter().enumerate() {
            for (s, cell) in self.management[m].iter().enumerate() {
                let v = get(cell);
                if v == 0 {
                    continue;
                }
                let status = MANAGEMENT_STATUSES
                    .get(s)
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "other".into());
                let _ = writeln!(
                    out,
                    "jobcast_management_requests_total{{method=\"{method}\",status=\"{status}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jobcast_jobs_total Jobs that entered each status.\n# TYPE jobcast_jobs_total counter"
        );
        for (i, st) in Status::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "jobcast_jobs_total{{status=\"{}\"}} {}",
                st.as_str(),
                get(&self.jobs[i])
            );
        }
        out
    }
}
