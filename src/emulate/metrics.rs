//! Invocation counts and latency per route and function, in Prometheus'
//! text format beside the gateway's own metrics at `/metrics`.

use dashmap::DashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (API Gateway's
/// integration timeout is the last).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 29.0,
];

#[derive(Default)]
struct Series {
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    /// Cumulative counts per bucket, as Prometheus histograms are.
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// How one invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    TimedOut,
}

/// Per (route, function) series.
#[derive(Default)]
pub struct InvocationMetrics {
    series: DashMap<(String, String), Series>,
}

impl InvocationMetrics {
    pub fn record(&self, route: &str, function: &str, outcome: Outcome, latency: Duration) {
        let s = self
            .series
            .entry((route.to_string(), function.to_string()))
            .or_default();
        match outcome {
            Outcome::Ok => &s.ok,
            Outcome::Failed => &s.failed,
            Outcome::TimedOut => &s.timed_out,
        }
        .fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        for (b, bound) in s.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut rows: Vec<_> = self.series.iter().collect();
        rows.sort_by(|a, b| a.key().cmp(b.key()));
        let _ = writeln!(
            out,
            "# HELP jobcast_emulate_invocations_total Integration calls by route, function and outcome.\n# TYPE jobcast_emulate_invocations_total counter"
        );
        for r in &rows {
            let (route, function) = r.key();
            for (outcome, c) in [
                ("ok", &r.ok),
                ("failed", &r.failed),
                ("timeout", &r.timed_out),
            ] {
                let _ = writeln!(
                    out,
                    "jobcast_emulate_invocations_total{{route=\"{}\",function=\"{}\",outcome=\"{outcome}\"}} {}",
                    escape(route),
                    escape(function),
                    c.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jobcast_emulate_invocation_seconds Integration call latency by route and function.\n# TYPE jobcast_emulate_invocation_seconds histogram"
        );
        for r in &rows {
            let (route, function) = r.key();
            let labels = format!(
                "route=\"{}\",function=\"{}\"",
                escape(route),
                escape(function)
            );
            for (b, bound) in r.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "jobcast_emulate_invocation_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    b.load(Ordering::Relaxed)
                );
            }
            let count = r.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jobcast_emulate_invocation_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\njobcast_emulate_invocation_seconds_sum{{{labels}}} {}\njobcast_emulate_invocation_seconds_count{{{labels}}} {count}",
                r.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
        out
    }
}

/// A label value as Prometheus' text format needs it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        let m = InvocationMetrics::default();
        m.record(
            "$connect",
            "OnConnect",
            Outcome::Ok,
            Duration::from_millis(3),
        );
        m.record(
            "$connect",
            "OnConnect",
            Outcome::Ok,
            Duration::from_millis(40),
        );
        m.record(
            "send",
            "Send\"x",
            Outcome::TimedOut,
            Duration::from_secs(30),
        );
        let text = m.render();
        assert!(text.contains(r#"jobcast_emulate_invocations_total{route="$connect",function="OnConnect",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"jobcast_emulate_invocation_seconds_bucket{route="$connect",function="OnConnect",le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"jobcast_emulate_invocation_seconds_bucket{route="$connect",function="OnConnect",le="0.05"} 2"#), "{text}");
        assert!(text.contains(r#"jobcast_emulate_invocation_seconds_count{route="$connect",function="OnConnect"} 2"#), "{text}");
        assert!(
            text.contains(r#"function="Send\"x",outcome="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"route="send",function="Send\"x",le="29"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"route="send",function="Send\"x",le="+Inf"} 1"#),
            "{text}"
        );
    }
}
