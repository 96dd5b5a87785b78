//! `jobcast bench roundtrip`: a message's round trip through WebSocket
//! gateways whose route handler answers through `@connections`, measured
//! side by side: the client sends `{"action":"ping"}`, the handler posts a
//! `pong` back, the client waits for it before sending the next.
//!
//! `scripts/bench-emulate.sh` points it at `jobcast emulate` running
//! bench/peer's Node handler itself and at serverless-offline running the
//! same file, both up at once; the targets take turns, round by round, so
//! the machine's noise falls on both alike.

use crate::bench::percentile;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Options of `jobcast bench roundtrip`.
#[derive(Clone, Debug, Args)]
pub struct RoundtripOptions {
    /// A gateway to measure, as LABEL=ws://HOST:PORT/STAGE (repeatable).
    #[arg(long = "target", value_name = "LABEL=URL", required = true, value_parser = parse_target)]
    pub targets: Vec<(String, String)>,
    /// Clients per target, each waiting for its answer before sending again.
    #[arg(long, default_value = "1", value_parser = crate::values::parse_positive::<usize>)]
    pub clients: usize,
    /// Round trips per client per round.
    #[arg(long, default_value = "200", value_parser = crate::values::parse_positive::<usize>)]
    pub messages: usize,
    /// Rounds; the targets take turns each round.
    #[arg(long, default_value = "5", value_parser = crate::values::parse_positive::<usize>)]
    pub rounds: usize,
    /// Unmeasured round trips per client first (cold starts, JIT).
    #[arg(long, default_value = "20")]
    pub warmup: usize,
}

fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((label, url)) if !label.is_empty() && url.starts_with("ws") => {
            Ok((label.to_string(), url.to_string()))
        }
        _ => Err(format!("{s:?}: expected LABEL=ws://HOST:PORT/STAGE")),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One client's round trips; the milliseconds of each.
async fn ping(ws: &mut Socket, n: usize) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ws.send(Message::text(r#"{"action":"ping"}"#))
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .map_err(|_| "no answer within 30 s".to_string())?;
            match frame {
                Some(Ok(Message::Text(t))) if t.contains("pong") => break,
                Some(Ok(Message::Text(t))) => return Err(format!("unexpected answer: {t}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("the server closed the connection".into()),
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

/// Every client of one target through one round, concurrently; all their
/// round-trip times and the wall time of the round.
async fn round(clients: &mut [Socket], n: usize) -> Result<(Vec<f64>, Duration), String> {
    let t = Instant::now();
    let runs = futures_util::future::join_all(clients.iter_mut().map(|ws| ping(ws, n))).await;
    let elapsed = t.elapsed();
    let mut all = Vec::new();
    for r in runs {
        all.extend(r?);
    }
    Ok((all, elapsed))
}

pub async fn run(opts: RoundtripOptions) -> Result<(), String> {
    let mut sockets = Vec::new();
    for (label, url) in &opts.targets {
        crate::bench::require_loopback(url)?;
        let mut clients = Vec::new();
        for _ in 0..opts.clients {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(|e| format!("{label}: connect to {url}: {e}"))?;
            clients.push(ws);
        }
        if opts.warmup > 0 {
            round(&mut clients, opts.warmup)
                .await
                .map_err(|e| format!("{label}: {e}"))?;
        }
        sockets.push(clients);
    }
    let mut times = vec![Vec::new(); opts.targets.len()];
    let mut walls = vec![Duration::ZERO; opts.targets.len()];
    for _ in 0..opts.rounds {
        for (i, clients) in sockets.iter_mut().enumerate() {
            let (t, wall) = round(clients, opts.messages)
                .await
                .map_err(|e| format!("{}: {e}", opts.targets[i].0))?;
            times[i].extend(t);
            walls[i] += wall;
        }
    }
    println!("| target | clients | round trips | p50 | p90 | p99 | max | round trips/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, (label, _)) in opts.targets.iter().enumerate() {
        let t = &mut times[i];
        t.sort_by(f64::total_cmp);
        println!(
            "| {label} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.0} |",
            opts.clients,
            t.len(),
            percentile(t, 0.5),
            percentile(t, 0.9),
            percentile(t, 0.99),
            t.last().copied().unwrap_or(0.0),
            t.len() as f64 / walls[i].as_secs_f64().max(1e-9),
        );
    }
    Ok(())
}
