//! The cost report as Markdown: the tables BENCHMARKS.md carries.

use super::{CostCase, CostReport, Dollars, Step, UpdatesVia};
use std::fmt::{self, Display, Formatter, Write};

fn million(d: f64) -> String {
    format!("${:.2}", d * 1e6)
}

fn ops(step: &Step) -> String {
    let mut out = String::new();
    let calls = step.invocations.max(1) as f64;
    for (op, (n, units)) in &step.operations {
        let (n_per, u_per) = (n / calls, units / calls);
        let _ = write!(
            out,
            "{}{op} ×{n_per:.1} ({u_per:.1} units)",
            if out.is_empty() { "" } else { ", " }
        );
    }
    if out.is_empty() { "none".into() } else { out }
}

fn dollar_row(label: &str, d: &Dollars) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} | {} | **{}** |",
        million(d.lambda),
        million(d.http_api),
        million(d.websocket_messages),
        million(d.connection_minutes),
        million(d.dynamodb),
        million(d.sqs),
        million(d.total())
    )
}

fn case_lines(out: &mut Formatter<'_>, c: &CostCase) -> fmt::Result {
    let u = &c.update;
    writeln!(
        out,
        "| {} | {:.1} ms ({:.1} ms p50) | {} | {:.2} / {:.2} | {}/{} |",
        c.subscribers,
        u.mean_ms,
        u.p50_ms,
        ops(u),
        u.read_units,
        u.write_units,
        c.delivered,
        c.expected
    )
}

/// What one update would cost through the other door: the same handler,
/// one API Gateway request more or less.
fn other_door(out: &mut Formatter<'_>, r: &CostReport) -> fmt::Result {
    let request = r.prices.http_api_request;
    let (label, delta) = match r.updates_via {
        UpdatesVia::FunctionUrl => ("through the HTTP API route instead", request),
        UpdatesVia::HttpApi => ("through the updates function's URL instead", -request),
    };
    let totals: Vec<String> = r
        .cases
        .iter()
        .map(|c| {
            format!(
                "S = {}: {}",
                c.subscribers,
                million(c.per_update.total() + delta)
            )
        })
        .collect();
    writeln!(
        out,
        "\nThe update alone {label}: {} per million.",
        totals.join(", ")
    )
}

/// With a coalescing window: how many messages the updates came to, and
/// how many windows the sweeper pushed.
fn coalescing(out: &mut Formatter<'_>, r: &CostReport) -> fmt::Result {
    if r.coalesce_ms == 0.0 {
        return Ok(());
    }
    let cases: Vec<String> = r
        .cases
        .iter()
        .map(|c| {
            let per_subscriber = c.expected as f64 / c.subscribers.max(1) as f64;
            format!(
                "S = {}: {} updates pushed {per_subscriber:.0} times to each subscriber ({} sweeper invocations)",
                c.subscribers, c.updates, c.flushes
            )
        })
        .collect();
    writeln!(
        out,
        "\nCoalescing window {:.0} ms: {}. The sweeper's invocations, their wait for the window's end included, are in the Lambda column.",
        r.coalesce_ms,
        cases.join("; ")
    )
}

/// With `--chunks-per-update`: what a million chunks and the whole job cost.
fn streaming(out: &mut Formatter<'_>, r: &CostReport) -> fmt::Result {
    let Some(first) = r.cases.first().filter(|c| c.chunks_per_update > 0) else {
        return Ok(());
    };
    writeln!(
        out,
        "\nStreaming: each update appended {} chunks to `tokens` ({} chunks in the job):\n",
        first.chunks_per_update,
        first.chunks_per_update * first.updates
    )?;
    writeln!(
        out,
        "| subscribers | $ per million chunks (each to every subscriber) | the whole job |"
    )?;
    writeln!(out, "|---|---|---|")?;
    for c in &r.cases {
        writeln!(
            out,
            "| {} | ${:.2} | ${:.6} |",
            c.subscribers,
            c.per_million_chunks.unwrap_or(0.0),
            c.job_total
        )?;
    }
    Ok(())
}

impl Display for CostReport {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.cases.first().map(|c| c.updates).unwrap_or(0);
        let door = match self.updates_via {
            UpdatesVia::FunctionUrl => "the updates function's URL",
            UpdatesVia::HttpApi => "the HTTP API and the jobs function",
        };
        writeln!(
            f,
            "One update (`POST /jobs/{{id}}/updates` through {door}, `@connections` answering {:.0} ms later):\n",
            self.management_latency_ms
        )?;
        writeln!(
            f,
            "| subscribers | Lambda time, mean | DynamoDB per update | read / write units | delivered |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        for c in &self.cases {
            case_lines(f, c)?;
        }
        coalescing(f, self)?;
        writeln!(
            f,
            "\nDollars per million updates, us-east-1 list prices read {} (Lambda arm64 at {:.0} MB):\n",
            self.prices_read_on, self.lambda_memory_mb
        )?;
        writeln!(
            f,
            "| case | Lambda | HTTP API | WebSocket messages | connection minutes | DynamoDB | SQS | total |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|")?;
        for c in &self.cases {
            writeln!(
                f,
                "{}",
                dollar_row(
                    &format!("S = {}, the update alone", c.subscribers),
                    &c.per_update
                )
            )?;
            writeln!(
                f,
                "{}",
                dollar_row(
                    &format!("S = {}, whole job / {n}", c.subscribers),
                    &c.per_update_with_job
                )
            )?;
        }
        other_door(f, self)?;
        streaming(f, self)?;
        if let Some(c) = self.cases.first() {
            writeln!(
                f,
                "\nPer job: `POST /jobs` {:.1} ms, DynamoDB {}; `$connect` {:.1} ms, {}; `$disconnect` {:.1} ms, {}; {:.0} connection minute(s) a subscriber.",
                c.create.mean_ms,
                ops(&c.create),
                c.connect.mean_ms,
                ops(&c.connect),
                c.disconnect.mean_ms,
                ops(&c.disconnect),
                self.connection_minutes
            )?;
        }
        Ok(())
    }
}
