use clap::Parser;
use jobcast::config::EmulateArgs;
use jobcast::config::{
    BenchCommand, Cli, Command, LogFormat, PublishArgs, ServeArgs, StoreKind, TableArgs,
    TableCommand, TokenCommand, TokenIssueArgs,
};
use jobcast::gateway::GatewayConfig;
use jobcast::protocol::ServerMessage;
use jobcast::publish::PublishReport;
use jobcast::serve::{Serve, ServeConfig};
use jobcast::store::{
    DynamoStore, JobRecord, JobUpdate, MemoryStore, Store, StoreError, TableStatus,
};
use jobcast::token::TokenKey;
use jobcast::webhook::{Delivery, WebhookOptions};
use jobcast::wiring::DepsBuilder;
use std::io::ErrorKind;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Logs of one-shot commands go to stderr, so stdout stays machine-readable.
fn init_cli_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(&std::io::stderr()))
        .init();
}

/// Colour only for a terminal, and never with NO_COLOR set.
fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives while the server starts is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => tracing::info!("SIGINT received"),
                _ = wait(term) => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    }
}

fn token_key(args: &ServeArgs) -> Result<TokenKey, String> {
    match std::env::var("JOBCAST_TOKEN_SECRET") {
        Ok(secret) if !secret.is_empty() => {
            TokenKey::new(secret.into_bytes(), args.token_ttl).map_err(|e| e.to_string())
        }
        // With the memory store the jobs end with the process anyway, so a
        // secret that does too is the right default, not a warning; a
        // persistent store outlives it, and its tokens would stop working.
        _ if args.store == StoreKind::Memory => {
            tracing::info!(
                "job tokens signed with a random secret (set JOBCAST_TOKEN_SECRET to keep one)"
            );
            Ok(TokenKey::random(args.token_ttl))
        }
        _ => {
            tracing::warn!(
                "JOBCAST_TOKEN_SECRET is not set: using a random secret, so tokens of jobs kept in the store stop working when this process exits"
            );
            Ok(TokenKey::random(args.token_ttl))
        }
    }
}

fn log_relaxations(config: &ServeConfig) {
    tracing::info!("job kind demo -> the built-in demo worker");
    for (kind, target) in &config.kinds.0 {
        tracing::info!("job kind {kind} -> {}", target.describe());
    }
    match &config.files.bucket {
        Some(bucket) => tracing::info!("job files in the S3 bucket {bucket}"),
        None => tracing::info!(
            "job files in {} (served at /files/; --files-dir to choose)",
            config.files.directory().display()
        ),
    }
    let defaults = GatewayConfig::default();
    let transport = &config.gateway;
    if transport.idle_timeout != defaults.idle_timeout {
        tracing::warn!(idle_timeout = ?transport.idle_timeout, "idle timeout differs from API Gateway's 10 minutes");
    }
    if transport.max_lifetime != defaults.max_lifetime {
        tracing::warn!(max_lifetime = ?transport.max_lifetime, "connection lifetime differs from API Gateway's 2 hours");
    }
    if !config.publish.coalesce.is_zero() {
        tracing::info!(coalesce = ?config.publish.coalesce, "updates are coalesced: while a job's updates keep coming, only each window's newest is pushed, when it ends");
    }
    if !transport.management_latency.is_zero() {
        tracing::info!(management_latency = ?transport.management_latency, "every @connections call answers this much later, as AWS's round trip would");
    }
}

/// The owners' JWT verifier (see [`jobcast::auth::OwnersSetup`]).
async fn identity(args: &ServeArgs) -> Result<Option<Arc<jobcast::auth::JwtVerifier>>, String> {
    let setup = jobcast::auth::OwnersSetup {
        dev_tokens: args.dev_tokens,
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        jwks_file: args.jwks.clone(),
        jwks_url: args.jwks_url.clone(),
    };
    Ok(setup.load().await.map_err(|e| e.to_string())?.map(Arc::new))
}

async fn open_store(args: &ServeArgs) -> Result<Arc<dyn Store>, String> {
    match args.store {
        StoreKind::Memory => {
            let store = Arc::new(MemoryStore::new());
            // Sweep often enough that nothing outlives its retention by more than a tenth.
            let every =
                (args.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
            store.spawn_sweeper(args.retention, every);
            Ok(store)
        }
        StoreKind::Dynamodb => {
            let config = jobcast::aws::sdk_config().await;
            let store =
                DynamoStore::new(jobcast::aws::dynamodb(&config), &args.table, args.retention);
            store.check().await.map_err(|e| e.to_string())?;
            tracing::info!(table = %args.table, "using the DynamoDB store");
            Ok(Arc::new(store))
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    init_tracing(args.log_format);
    let shutdown = shutdown_signal();
    jobcast::telemetry::install_from_env(args.otlp_endpoint.as_deref(), "jobcast")?;
    let tokens = token_key(&args)?;
    let mut config = args.serve_config().map_err(|e| e.to_string())?;
    config.identity = identity(&args).await?;
    if config.owner_limit.is_some() && config.identity.is_none() {
        return Err("--max-active-jobs-per-owner counts each owner's jobs, and owners are off: add --jwt-issuer and --jwt-audience (or --dev-tokens)".into());
    }
    if let Some(v) = &config.gateway.require_sigv4 {
        tracing::info!(
            access_key_id = v.access_key_id(),
            "@connections calls must be SigV4-signed with this key"
        );
    }
    log_relaxations(&config);
    let listen = config.gateway.listen;
    let stage = config.gateway.stage.clone();
    let store = open_store(&args).await?;
    let serve = Serve::bind(config, store, tokens)
        .await
        .map_err(|e| bind_error(e, listen))?;
    let addr = serve.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("demo page:      http://{addr}/");
    tracing::info!("WebSocket API:  ws://{addr}/{stage}");
    tracing::info!("@connections:   http://{addr}/{stage}/@connections/{{connectionId}}");
    tracing::info!("jobs API:       http://{addr}/jobs");
    let served = serve
        .run(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"));
    // The spans of the last requests.
    jobcast::telemetry::flush().await;
    served
}

/// Why the gateway could not start, with the fix when it is the address.
fn bind_error(e: std::io::Error, listen: std::net::SocketAddr) -> String {
    match e.kind() {
        ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied => {
            format!(
                "cannot listen on {listen}: {e}; stop the other process or pick another address with --listen"
            )
        }
        _ => format!("cannot start: {e}"),
    }
}

async fn emulate(args: EmulateArgs) -> Result<(), String> {
    init_tracing(args.log_format);
    let shutdown = shutdown_signal();
    let sdk = jobcast::aws::sdk_config().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| jobcast::aws::FALLBACK_REGION.to_string());
    let api = args.api(&region).map_err(|e| e.to_string())?;
    let config = GatewayConfig {
        listen: args.listen,
        stage: args.stage.clone().unwrap_or_default(),
        idle_timeout: args.idle_timeout,
        max_lifetime: args.max_lifetime,
        ..GatewayConfig::default()
    };
    let reload = args.template.clone().map(|path| {
        let (args, region) = (args.clone(), region.clone());
        jobcast::emulate::Reload {
            path,
            read: Box::new(move || args.api(&region)),
        }
    });
    let env_vars = match &args.env_vars {
        Some(path) => jobcast::emulate::runner::EnvVars::read(path).map_err(|e| e.to_string())?,
        None => Default::default(),
    };
    let runner = jobcast::emulate::runner::RunnerOptions {
        interpreters: args.runtimes.iter().cloned().collect(),
        max_concurrency: args.max_concurrency.map(usize::from),
        env_vars,
    };
    jobcast::emulate::serve(api, reload, config, &sdk, runner, shutdown)
        .await
        .map_err(|e| match e {
            jobcast::emulate::StartError::Bind(e) => bind_error(e, args.listen),
            other => other.to_string(),
        })
}

/// Prints a development token for `--sub` (made with the local key, which
/// `serve --dev-tokens` verifies with).
fn token_issue(args: &TokenIssueArgs) -> Result<(), String> {
    let (token, key) =
        jobcast::auth::issue_dev_token(&args.sub, args.ttl).map_err(|e| e.to_string())?;
    println!("{token}");
    eprintln!(
        "development token for '{}' (key {}): accepted only by serve --dev-tokens, for local development",
        args.sub,
        key.display()
    );
    Ok(())
}

async fn table_create(args: TableArgs) -> Result<(), String> {
    let config = jobcast::aws::sdk_config().await;
    let store = DynamoStore::new(jobcast::aws::dynamodb(&config), &args.table, args.retention);
    match store.ensure_table().await.map_err(|e| e.to_string())? {
        TableStatus::Created => println!(
            "created table {} (GSI1, GSI2, GSI3; TTL on ttl)",
            args.table
        ),
        TableStatus::AlreadyExisted => {
            println!("table {} already exists; TTL on ttl is enabled", args.table)
        }
    }
    Ok(())
}

async fn publish(args: PublishArgs) -> Result<(), String> {
    let config = jobcast::aws::sdk_config().await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(
        jobcast::aws::dynamodb(&config),
        &args.table.table,
        args.table.retention,
    ));
    let secret = std::env::var("JOBCAST_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    // A terminal update's webhook is delivered before this command exits.
    let parts = DepsBuilder::new(Arc::clone(&store), Default::default())
        .webhooks(
            secret.as_deref(),
            WebhookOptions::default(),
            Delivery::Inline,
        )
        .map_err(|e| e.to_string())?;
    let publisher = parts.publisher(parts.management_pusher(&config, &args.endpoint));
    let update = JobUpdate {
        status: args.status,
        percent: args.percent,
        message: args.message,
        result: args.result,
        error: args.error,
        liveness: Default::default(),
        track_recent: false,
        files: Vec::new(),
    };
    let job_id = args.job_id.as_str();
    let (job, report) = publisher
        .publish(job_id, update)
        .await
        .map_err(|e| publish_error(e, job_id, &args.table.table))?;
    print_published(&job, &report);
    if job.snapshot.status.is_terminal() && job.callback_url.is_some() {
        match secret {
            Some(_) => {
                let delivered = store.get_job(job_id).await.ok().flatten();
                if let Some(w) = delivered.and_then(|j| j.webhook) {
                    eprintln!("webhook: {:?} after {} attempts", w.status, w.attempts);
                }
            }
            None => eprintln!(
                "warning: job {job_id} has a callbackUrl but JOBCAST_WEBHOOK_SECRET is not set: no webhook sent"
            ),
        }
    }
    if let Some((conn, e)) = report.failed.first() {
        return Err(format!(
            "stored seq {} but {} of {} subscriber posts failed through {} (first: {conn}: {e})",
            job.snapshot.seq,
            report.failed.len(),
            report.failed.len() + report.delivered + report.gone,
            args.endpoint
        ));
    }
    Ok(())
}

/// What `publish` says when the store refuses the update.
/// Said with every failure that may come from publishing to the wrong
/// place: `publish` writes the table, which only a DynamoDB-store `serve`
/// reads.
const PUBLISH_NEEDS_DYNAMODB: &str = "jobcast publish writes to the DynamoDB table that `jobcast serve --store dynamodb` (or the Lambda functions) read; a serve with the default memory store takes a worker's updates at POST /jobs/{id}/updates (the job message's updateUrl) instead";

fn publish_error(e: StoreError, job_id: &str, table: &str) -> String {
    match e {
        StoreError::NotFound(_) => {
            format!(
                "job {job_id} not found in table {table}; check --job and --table ({PUBLISH_NEEDS_DYNAMODB})"
            )
        }
        StoreError::Unavailable(why) => format!("{why}\n{PUBLISH_NEEDS_DYNAMODB}"),
        StoreError::Terminal { status, .. } => format!(
            "job {job_id} already ended {}; a finished job accepts no further update",
            status.as_str()
        ),
        other => other.to_string(),
    }
}

/// The stored snapshot and what the fan-out did, as one JSON line.
fn print_published(job: &JobRecord, report: &PublishReport) {
    let failed: Vec<serde_json::Value> = report
        .failed
        .iter()
        .map(|(c, e)| serde_json::json!({ "connectionId": c, "error": e.to_string() }))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "snapshot": serde_json::to_value(ServerMessage::Progress(&job.snapshot)).unwrap_or_default(),
            "delivered": report.delivered,
            "gone": report.gone,
            "retried": report.retried,
            "failed": failed,
        })
    );
}

/// Exits with clap's message; when the bad value came from an environment
/// variable rather than the command line, says which one.
fn exit_naming_the_variable(e: clap::Error) -> ! {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.clone(),
        _ => e.exit(),
    };
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_string();
    let on_command_line = std::env::args().any(|a| {
        a.strip_prefix("--")
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    let cmd = Cli::command();
    let env = std::iter::once(&cmd)
        .chain(cmd.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned());
    match env {
        Some(var) if !on_command_line && std::env::var_os(&var).is_some() => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("jobcast: {var}: {first}");
            std::process::exit(2);
        }
        _ => e.exit(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_naming_the_variable(e),
    };
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(*args).await,
        None => serve(cli.serve).await,
        Some(Command::Publish(args)) => {
            init_cli_tracing();
            publish(args).await
        }
        Some(Command::Bench(BenchCommand::Fanout(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::fanout(args).await
        }
        Some(Command::Bench(BenchCommand::Soak(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::soak(args).await
        }
        Some(Command::Bench(BenchCommand::Updates(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::updates(args).await
        }
        Some(Command::Bench(BenchCommand::Chunks(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::chunks(args).await
        }
        Some(Command::Bench(BenchCommand::Runtimes(args))) => {
            init_cli_tracing();
            jobcast::bench::runtimes::run(args).await
        }
        Some(Command::Bench(BenchCommand::Roundtrip(args))) => {
            init_cli_tracing();
            jobcast::bench::roundtrip::run(args).await
        }
        Some(Command::Bench(BenchCommand::Files(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::files(args).await
        }
        Some(Command::Bench(BenchCommand::Cost(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::cost(args).await
        }
        Some(Command::Bench(BenchCommand::Tokens { iterations })) => {
            jobcast::bench::tokens::run(iterations).map(|r| println!("{r}"))
        }
        Some(Command::Bench(BenchCommand::Run(args))) => {
            init_cli_tracing();
            jobcast::bench::commands::run(args).await
        }
        Some(Command::Emulate(args)) => emulate(args).await,
        Some(Command::Token(TokenCommand::Issue(args))) => token_issue(&args),
        Some(Command::Token(TokenCommand::Jwks)) => jobcast::auth::dev_jwks()
            .map(|jwks| println!("{jwks}"))
            .map_err(|e| e.to_string()),
        Some(Command::Table(TableCommand::Create(args))) => {
            init_cli_tracing();
            table_create(args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcast: {e}");
            ExitCode::FAILURE
        }
    }
}
