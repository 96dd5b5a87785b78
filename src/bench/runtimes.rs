//! `jobcast bench runtimes`: what `emulate`'s own runner adds to a
//! function. For each runtime, a hello-world handler (it returns at once,
//! so an invocation's time is the runner's): cold starts (a new process,
//! from spawn to answer) and warm invocations (the Runtime API round trip),
//! and a warm process's resident memory beside its bare interpreter's.

use crate::bench::load::proc::rss_kib;
use crate::emulate::runner::pool::Function;
use crate::emulate::runner::sandbox::{INIT_LIMIT, Launch};
use crate::emulate::runner::{Bootstraps, command, function_arn, lambda_environment};
use clap::Args;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Options of `jobcast bench runtimes`.
#[derive(Clone, Debug, Args)]
pub struct RuntimesOptions {
    /// Warm invocations per runtime.
    #[arg(long, default_value = "500")]
    pub warm: usize,
    /// Cold starts per runtime.
    #[arg(long, default_value = "10")]
    pub cold: usize,
}

const NODE_HELLO: &str =
    "export const handler = async () => ({ statusCode: 200, body: 'hello' });\n";
const PYTHON_HELLO: &str =
    "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hello'}\n";

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The bare interpreter's resident memory, idle.
async fn bare_rss(program: &str, args: &[&str]) -> Option<u64> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(child.id()?);
    let _ = child.kill().await;
    rss
}

pub async fn run(opts: RuntimesOptions) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("jobcast-bench-runtimes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("index.mjs"), NODE_HELLO).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("app.py"), PYTHON_HELLO).map_err(|e| e.to_string())?;
    let bootstraps = Bootstraps::write().map_err(|e| e.to_string())?;
    println!(
        "| runtime | cold start p50 | cold p90 | warm invoke p50 | warm p99 | warm process RSS | bare interpreter RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (runtime, handler, bare) in [
        (
            "nodejs20.x",
            "index.handler",
            ("node", vec!["-e", "setInterval(() => {}, 1000)"]),
        ),
        (
            "python3.12",
            "app.handler",
            ("python3", vec!["-c", "import time; time.sleep(60)"]),
        ),
    ] {
        let (program, args) = command(runtime, &dir, None, &bootstraps, &BTreeMap::new())?;
        let launch = Launch {
            logical_id: "Hello".into(),
            program,
            args,
            dir: dir.clone(),
            env: lambda_environment("Hello", 128, "us-east-1", &dir, handler),
            function_arn: function_arn("Hello", "us-east-1"),
            init_limit: INIT_LIMIT,
        };
        let event = bytes::Bytes::from_static(b"{}");
        let answered = |a: crate::emulate::runner::sandbox::Answered| {
            a.map(drop).map_err(|e| format!("{runtime}: {e:?}"))
        };
        let mut cold = Vec::new();
        for _ in 0..opts.cold {
            let f = Function::new(launch.clone(), Duration::from_secs(3), 128, 1);
            let t = Instant::now();
            answered(f.invoke(event.clone()).await.1)?;
            cold.push(t.elapsed().as_secs_f64() * 1000.0);
            f.retire().await;
        }
        let f = Function::new(launch, Duration::from_secs(3), 128, 1);
        answered(f.invoke(event.clone()).await.1)?;
        let mut warm = Vec::new();
        for _ in 0..opts.warm {
            let t = Instant::now();
            answered(f.invoke(event.clone()).await.1)?;
            warm.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let rss = f.warm_pids().first().and_then(|p| rss_kib(*p));
        f.retire().await;
        let bare_rss = bare_rss(bare.0, &bare.1).await;
        cold.sort_by(f64::total_cmp);
        warm.sort_by(f64::total_cmp);
        let kib =
            |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        println!(
            "| {runtime} | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {} |",
            quantile(&cold, 0.5),
            quantile(&cold, 0.9),
            quantile(&warm, 0.5),
            quantile(&warm, 0.99),
            kib(rss),
            kib(bare_rss),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
