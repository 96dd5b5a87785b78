//! The `jobcast bench` subcommands: run one measurement, print its report
//! (JSON on stdout or to `--json-out`, the summary on stderr) and fail when
//! it lost something.

use crate::bench::args::{FanoutArgs, RunArgs, SoakArgs};
use crate::bench::updates::UpdatesOptions;

pub async fn fanout(args: FanoutArgs) -> Result<(), String> {
    let r = crate::bench::fanout(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    } else {
        println!("{r}");
    }
    if r.lost > 0 {
        return Err(format!("{} messages were not delivered", r.lost));
    }
    Ok(())
}

pub async fn cost(opts: crate::bench::cost::CostOptions) -> Result<(), String> {
    let r = crate::bench::cost::run(opts.clone()).await?;
    if let Some(path) = opts.json_out.as_deref() {
        write_json(&r, Some(path))?;
    }
    println!("{r}");
    for c in &r.cases {
        if c.delivered != c.expected {
            return Err(format!(
                "{} of {} progress messages reached the {} subscribers",
                c.delivered, c.expected, c.subscribers
            ));
        }
    }
    Ok(())
}

pub async fn run(args: Box<RunArgs>) -> Result<(), String> {
    let r = crate::bench::run(args.load).await?;
    write_json(&r, args.json_out.as_deref())?;
    eprint!("{r}");
    Ok(())
}

pub async fn updates(mut opts: UpdatesOptions) -> Result<(), String> {
    opts.jobs_url = opts.jobs_url.trim_end_matches('/').to_string();
    let r = crate::bench::updates::run(opts).await?;
    write_json(&r, None)?;
    eprintln!("{r}");
    if r.missing > 0 {
        return Err(format!(
            "{} accepted updates never reached their client",
            r.missing
        ));
    }
    Ok(())
}

pub async fn chunks(mut opts: crate::bench::chunks::ChunksOptions) -> Result<(), String> {
    opts.jobs_url = opts.jobs_url.trim_end_matches('/').to_string();
    let r = crate::bench::chunks::run(opts).await?;
    write_json(&r, None)?;
    eprintln!("{r}");
    if r.missing > 0 {
        return Err(format!(
            "{} appended chunks never reached their client",
            r.missing
        ));
    }
    Ok(())
}

pub async fn files(mut opts: crate::bench::files::FilesOptions) -> Result<(), String> {
    opts.jobs_url = opts.jobs_url.trim_end_matches('/').to_string();
    let r = crate::bench::files::run(opts).await?;
    write_json(&r, None)?;
    eprintln!("{r}");
    if !r.same_bytes {
        return Err("the downloaded file differs from the uploaded one".into());
    }
    Ok(())
}

pub async fn soak(args: SoakArgs) -> Result<(), String> {
    let mut opts = args.soak;
    opts.jobs_url = opts.jobs_url.trim_end_matches('/').to_string();
    let r = crate::bench::soak::run(opts).await?;
    write_json(&r, args.json_out.as_deref())?;
    eprintln!("{r}");
    if r.passed {
        Ok(())
    } else {
        Err("soak failed: see the report above".into())
    }
}

/// A bench report as pretty JSON, to `path` or else to stdout.
fn write_json(
    report: &impl serde::Serialize,
    path: Option<&std::path::Path>,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    match path {
        Some(path) => std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}
