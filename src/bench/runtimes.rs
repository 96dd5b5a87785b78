//! `jobcast bench runtimes`: what `emulate`'s own runner adds to a
//! function. For each runtime, a hello-world handler (it returns at once,
//! so an invocation's time is the runner's): cold starts (a new process,
//! from spawn to answer) and warm invocations (the Runtime API round trip),
//! and a warm process's resident memory beside its bare interpreter's.

use crate::bench::load::proc::{anon_kib, rss_kib};
use crate::bench::percentile;
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

/// Resident memory (all, and its own) of a program left running half a
/// second: an idle interpreter, or one that called the handler itself.
async fn memory_of(program: &str, args: &[&str]) -> Option<Memory> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory = Memory::of(child.id()?);
    let _ = child.kill().await;
    memory
}

/// A process's resident memory in KiB: all of it, and the anonymous part
/// (what each more process costs; file pages are shared).
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
}

impl Memory {
    fn of(pid: u32) -> Option<Memory> {
        Some(Memory {
            rss: rss_kib(pid)?,
            anon: anon_kib(pid)?,
        })
    }

    fn show(m: Option<Memory>) -> String {
        let mib = |k: u64| k as f64 / 1024.0;
        m.map_or("?".to_string(), |m| {
            format!("{:.1} MiB ({:.1} MiB own)", mib(m.rss), mib(m.anon))
        })
    }
}

pub async fn run(opts: RuntimesOptions) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("jobcast-bench-runtimes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("index.mjs"), NODE_HELLO).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("app.py"), PYTHON_HELLO).map_err(|e| e.to_string())?;
    let bootstraps = Bootstraps::write().map_err(|e| e.to_string())?;
    println!(
        "| runtime | cold start p50 | cold p90 | warm invoke p50 | warm p99 | warm process RSS (own) | the handler alone, as often | bare interpreter |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // The same handler called as often by the interpreter alone, each call
    // parsing its event and serializing its answer as any runtime must:
    // what the interpreter itself needs for this function.
    let node_alone = format!(
        "const {{ handler }} = await import({:?}); for (let i = 0; i < {}; i++) JSON.stringify(await handler(JSON.parse('{{}}'), {{}})); setInterval(() => {{}}, 1000);",
        dir.join("index.mjs").display().to_string(),
        opts.warm + 1
    );
    let python_alone = format!(
        "import json, sys, time; sys.path.insert(0, {:?}); from app import handler\nfor _ in range({}): json.dumps(handler(json.loads('{{}}'), None))\ntime.sleep(60)",
        dir.display().to_string(),
        opts.warm + 1
    );
    for (runtime, handler, bare, alone) in [
        (
            "nodejs20.x",
            "index.handler",
            ("node", vec!["-e", "setInterval(() => {}, 1000)"]),
            (
                "node",
                vec!["--input-type=module", "-e", node_alone.as_str()],
            ),
        ),
        (
            "python3.12",
            "app.handler",
            ("python3", vec!["-c", "import time; time.sleep(60)"]),
            ("python3", vec!["-c", python_alone.as_str()]),
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
        let warm_memory = f.warm_pids().first().and_then(|p| Memory::of(*p));
        f.retire().await;
        let bare_memory = memory_of(bare.0, &bare.1).await;
        let alone_memory = memory_of(alone.0, &alone.1).await;
        cold.sort_by(f64::total_cmp);
        warm.sort_by(f64::total_cmp);
        println!(
            "| {runtime} | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {} | {} |",
            percentile(&cold, 0.5),
            percentile(&cold, 0.9),
            percentile(&warm, 0.5),
            percentile(&warm, 0.99),
            Memory::show(warm_memory),
            Memory::show(alone_memory),
            Memory::show(bare_memory),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
