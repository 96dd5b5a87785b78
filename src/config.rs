//! Command-line and environment configuration. Every flag can also be set by
//! a `JOBCAST_*` variable; a bad value is a one-line error naming the fix.

use crate::gateway::GatewayConfig;
use crate::publish::PublishOptions;
use crate::webhook::{AddressPolicy, WebhookOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// jobcast: live progress for long-running jobs behind AWS API Gateway.
///
/// With no command, runs `serve`: a local API Gateway (WebSocket API,
/// @connections management API, jobs API and web demo) on one port.
#[derive(Debug, Parser)]
#[command(name = "jobcast", version, propagate_version = true)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the local gateway (the default command).
    Serve(ServeArgs),
    /// Report a job's progress: store the snapshot and push it to every subscriber.
    Publish(PublishArgs),
    /// Manage the DynamoDB table.
    #[command(subcommand)]
    Table(TableCommand),
    /// Measure the gateway on this machine (loopback only).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fan one job's updates out to N subscribed WebSocket clients.
    Fanout(FanoutArgs),
    /// Load any gateway with API Gateway's `@connections`: connect rate,
    /// post throughput, end-to-end latency, fan-out and the server's memory.
    Run(Box<RunArgs>),
    /// Churn connections and jobs against a running serve; fail on a lost
    /// terminal snapshot, memory growth or leaked file descriptors.
    Soak(SoakArgs),
    /// Load the worker API of a running serve: updates/s through
    /// POST /jobs/{id}/updates and the time from an update to the browser.
    Updates(UpdatesArgs),
}

/// Options of `jobcast bench updates`.
#[derive(Clone, Debug, Args)]
pub struct UpdatesArgs {
    /// jobs API base of the serve under test (loopback). Start it with
    /// JOBCAST_WEBHOOK_SECRET set and `--kind bench=http://RECEIVER/`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// The kind the serve hands to this bench.
    #[arg(long, default_value = "bench")]
    pub kind: String,
    /// Where this bench takes the job messages.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub receiver: SocketAddr,
    /// Jobs at once, each with one worker and one WebSocket client.
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Updates per job (the last one ends it).
    #[arg(long, default_value = "500", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub updates: usize,
    /// The server's pid, to report its CPU time per update.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Options of `jobcast bench soak`.
#[derive(Clone, Debug, Args)]
pub struct SoakArgs {
    /// jobs API base of the serve under test (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// Its WebSocket API (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// How long to run (e.g. 10m, 60s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connections open at once, about.
    #[arg(long, default_value = "5000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub connections: usize,
    /// New connections per second.
    #[arg(long, default_value = "200", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub connects_per_second: u32,
    /// Jobs created per second.
    #[arg(long, default_value = "50", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub jobs_per_second: u32,
    /// The serve process, for its memory and open files.
    #[arg(long)]
    pub server_pid: u32,
    /// Write the JSON result here (else stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Options of `jobcast bench run`.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Name of the system under test, copied into the report.
    #[arg(long, default_value = "jobcast")]
    pub label: String,
    /// WebSocket URL the clients open (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// Management API base; `@connections/{id}` is appended (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080/dev")]
    pub management_url: String,
    /// WebSocket clients held open for the whole run.
    #[arg(long, default_value = "1000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub clients: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value = "128", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub handshake_concurrency: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N (more than ~28k clients need 2+).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// `@connections` posts in flight, each worker on its own keep-alive connection.
    #[arg(long, default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub in_flight: usize,
    /// Length of the throughput phase (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub post_duration: Duration,
    /// At most this many posts in the throughput phase.
    #[arg(long, default_value = "10000000", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub post_max: u64,
    /// Messages per second of the paced latency phase (0 skips it).
    #[arg(long, default_value = "10000")]
    pub rate: u64,
    /// Length of the paced phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rate_duration: Duration,
    /// Publishes of the fan-out phase, through jobcast's publisher and the target's `@connections` (0 skips it).
    #[arg(long, default_value = "5")]
    pub fanout_rounds: usize,
    /// Posts in flight during a fan-out.
    #[arg(long, default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub fanout_concurrency: usize,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus endpoint with `jobcast_disconnects_total`, to count `$disconnect` events.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// A file the server's `$disconnect` handler appends one line to per event.
    #[arg(long, conflicts_with = "metrics_url")]
    pub disconnect_log: Option<std::path::PathBuf>,
    /// How long to wait for accepted messages still in flight after each phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// jobcast's jobs API base: adds the in-process fan-out phase (a demo job
    /// published by `serve`'s own worker to --clients fresh clients; start
    /// `serve --workers 1 --outbound-queue 1024`).
    #[arg(long)]
    pub jobs_url: Option<String>,
    /// Steps of that demo job, published back to back (0 skips the phase).
    #[arg(long, default_value = "100", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub demo_steps: u32,
    /// Write the JSON result to this file (else to stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    pub fn load_options(&self) -> crate::bench::LoadOptions {
        crate::bench::LoadOptions {
            label: self.label.clone(),
            ws_url: self.ws_url.clone(),
            management_url: self.management_url.clone(),
            clients: self.clients,
            handshake_concurrency: self.handshake_concurrency,
            source_ips: self.source_ips,
            post_in_flight: self.in_flight,
            post_duration: self.post_duration,
            post_max: self.post_max,
            rate: self.rate,
            rate_duration: self.rate_duration,
            fanout_rounds: self.fanout_rounds,
            fanout_concurrency: self.fanout_concurrency,
            server_pid: self.server_pid,
            metrics_url: self.metrics_url.clone(),
            disconnect_log: self.disconnect_log.clone(),
            drain_timeout: self.drain_timeout,
            progress: !self.quiet,
            jobs_url: self.jobs_url.clone(),
            demo_steps: self.demo_steps,
        }
    }
}

/// Options of `jobcast bench fanout`.
#[derive(Clone, Debug, Args)]
pub struct FanoutArgs {
    /// WebSocket clients subscribed to the job.
    #[arg(long, default_value = "1000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub subscribers: usize,
    /// Updates published (each measured on its own).
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub rounds: usize,
    /// Store the publisher reads subscribers from (dynamodb: AWS_ENDPOINT_URL_DYNAMODB on loopback).
    #[arg(long, default_value = "memory", value_enum)]
    pub store: crate::bench::BenchStore,
    /// How updates reach the connections.
    #[arg(long, default_value = "in-process", value_enum)]
    pub push: crate::bench::BenchPush,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create the table with its GSI1 index and TTL on `ttl` (does nothing if it exists).
    Create(TableArgs),
}

/// Where the state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In this process; gone when it exits.
    Memory,
    /// A DynamoDB table (AWS or DynamoDB Local via AWS_ENDPOINT_URL_DYNAMODB).
    Dynamodb,
}

/// The DynamoDB table to use.
#[derive(Clone, Debug, Args)]
pub struct TableArgs {
    /// DynamoDB table name (endpoint and credentials come from the standard AWS
    /// settings: AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, AWS_PROFILE, ...).
    #[arg(long, env = "JOBCAST_TABLE", default_value = "jobcast", value_parser = parse_table)]
    pub table: String,

    /// How long job state and idempotency keys are kept after their last update.
    #[arg(long, env = "JOBCAST_RETENTION", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Duration,
}

/// Options of `jobcast publish`.
#[derive(Clone, Debug, Args)]
pub struct PublishArgs {
    /// The job to update.
    #[arg(long = "job", value_name = "JOB_ID")]
    pub job_id: String,

    /// New status: running, succeeded, failed or cancelled.
    #[arg(long, value_parser = parse_update_status)]
    pub status: crate::protocol::Status,

    /// Percent done, 0 to 100; never lower than the job's current percent.
    #[arg(long)]
    pub percent: Option<f64>,

    /// A short human-readable progress message.
    #[arg(long)]
    pub message: Option<String>,

    /// The result, as JSON (with --status succeeded).
    #[arg(long, value_parser = parse_json, conflicts_with = "error")]
    pub result: Option<serde_json::Value>,

    /// The error, as JSON {"code": "...", "message": "..."} (with --status failed).
    #[arg(long, value_parser = parse_job_error)]
    pub error: Option<crate::protocol::JobError>,

    /// Management API endpoint, e.g. http://127.0.0.1:8080/dev or
    /// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
        value_name = "URL"
    )]
    pub endpoint: String,

    #[command(flatten)]
    pub table: TableArgs,
}

fn parse_update_status(s: &str) -> Result<crate::protocol::Status, String> {
    match crate::protocol::Status::parse(s) {
        Some(crate::protocol::Status::Queued) | None => {
            Err("expected running, succeeded, failed or cancelled".into())
        }
        Some(st) => Ok(st),
    }
}

fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| {
        format!("not valid JSON ({e}); quote it for the shell, e.g. '{{\"rows\":42}}'")
    })
}

fn parse_job_error(s: &str) -> Result<crate::protocol::JobError, String> {
    serde_json::from_str(s).map_err(|_| {
        "expected JSON like '{\"code\":\"timeout\",\"message\":\"took too long\"}'".to_string()
    })
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Parses durations such as `90s`, `10m`, `2h` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration such as 90s, 10m or 2h, got '{s}'"))?;
    if d.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(d)
}

/// Like `parse_duration`, but `0` (turning the feature off) is allowed.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s).map_err(|e| format!("{e} (or 0 to turn it off)"))
}

fn parse_stage(s: &str) -> Result<String, String> {
    let reserved = ["jobs", "healthz", "metrics", "@connections"];
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(
            "a stage name uses only letters, digits, '-' and '_' (like dev or prod)".into(),
        );
    }
    if reserved.contains(&s) {
        return Err(format!(
            "'{s}' is a reserved path; pick another stage name such as dev"
        ));
    }
    Ok(s.to_string())
}

/// `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`, or a bare port (on 127.0.0.1).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let expected = || {
        format!(
            "expected HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080, localhost:8080) or a port (8080), got '{s}'"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = s.parse().map_err(|_| expected())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .collect();
    // Prefer IPv4, as browsers try 127.0.0.1 for localhost first.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("'{host}' resolves to no address"))
}

fn parse_positive<T: std::str::FromStr + PartialEq + Default>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        _ => Err(format!("expected a whole number above 0, got '{s}'")),
    }
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let ok = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|p| s.starts_with(p) && s.len() > p.len());
    if ok {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(format!(
            "expected an absolute URL such as https://api.example.com, got '{s}'"
        ))
    }
}

/// Options of `jobcast serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (HTTP and WebSocket share it).
    /// A port alone means 127.0.0.1; host names are resolved (localhost:8080).
    #[arg(
        long,
        env = "JOBCAST_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub listen: SocketAddr,

    /// WebSocket API stage: clients connect to ws://HOST/{stage}.
    #[arg(long, env = "JOBCAST_STAGE", default_value = "dev", value_parser = parse_stage)]
    pub stage: String,

    /// Close connections idle this long with 1001 (API Gateway: 10m).
    #[arg(long, env = "JOBCAST_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Close every connection after this long with 1001 (API Gateway: 2h).
    #[arg(long, env = "JOBCAST_MAX_LIFETIME", default_value = "2h", value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,

    /// Most concurrent WebSocket connections; handshakes beyond get 429.
    /// [default: 100000, or what the open-file limit allows]
    #[arg(long, env = "JOBCAST_MAX_CONNECTIONS", value_parser = parse_positive::<usize>, value_name = "N", allow_negative_numbers = true)]
    pub max_connections: Option<usize>,

    /// Messages queued per connection before it is closed as a slow consumer (1008).
    #[arg(long, env = "JOBCAST_OUTBOUND_QUEUE", default_value = "1024", value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub outbound_queue: usize,

    /// Demo jobs run at once by the in-process worker pool.
    #[arg(long, env = "JOBCAST_WORKERS", default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub workers: usize,

    /// Time a client has to send its request headers (cuts slowloris handshakes).
    #[arg(long, env = "JOBCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// Lifetime of job tokens issued by POST /jobs.
    #[arg(long, env = "JOBCAST_TOKEN_TTL", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub token_ttl: Duration,

    /// How long a job and an idempotency key are kept after their last update.
    #[arg(long, env = "JOBCAST_RETENTION", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Duration,

    /// Public base URL of the jobs API used in statusUrl (default: from the Host header).
    #[arg(long, env = "JOBCAST_PUBLIC_URL", value_parser = parse_base_url, value_name = "URL")]
    pub public_url: Option<String>,

    /// Public WebSocket URL including the stage, used in websocketUrl (default: from the Host header).
    #[arg(long, env = "JOBCAST_WEBSOCKET_URL", value_parser = parse_base_url, value_name = "URL")]
    pub websocket_url: Option<String>,

    /// Answer @connections POSTs beyond this many per second with 429 LimitExceededException.
    #[arg(long, env = "JOBCAST_LIMIT_POSTS_PER_SECOND", value_parser = parse_positive::<u32>, allow_negative_numbers = true, value_name = "PER_SECOND")]
    pub limit_posts_per_second: Option<u32>,

    /// Messages one client may send per second (bursts up to the same number);
    /// a client beyond it is closed with 1008. 0: unlimited.
    #[arg(
        long,
        env = "JOBCAST_CLIENT_MESSAGES_PER_SECOND",
        default_value = "100",
        value_name = "PER_SECOND"
    )]
    pub client_messages_per_second: u32,

    /// A browser origin allowed to call the jobs API (repeat, or comma-separate;
    /// `*` for any). None by default: only the demo page's own origin.
    #[arg(long = "cors-origin", env = "JOBCAST_CORS_ORIGINS", value_delimiter = ',', value_parser = crate::gateway::cors::parse_origin, value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,

    /// Require SigV4-signed @connections calls (403 ForbiddenException
    /// otherwise), with the key pair in JOBCAST_SIGV4_ACCESS_KEY_ID and
    /// JOBCAST_SIGV4_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "JOBCAST_REQUIRE_SIGV4")]
    pub require_sigv4: bool,

    /// Where jobs and subscriptions live.
    #[arg(long, env = "JOBCAST_STORE", default_value = "memory", value_enum)]
    pub store: StoreKind,

    /// DynamoDB table for --store dynamodb.
    #[arg(long, env = "JOBCAST_TABLE", default_value = "jobcast", value_parser = parse_table)]
    pub table: String,

    /// One of your own job kinds and where its jobs go (repeatable):
    /// KIND=sqs:<queue URL>, KIND=lambda:<function>, KIND=http(s)://<url>
    /// (signed; needs JOBCAST_WEBHOOK_SECRET) or KIND=command:<shell command>.
    /// JOBCAST_KINDS takes a comma-separated list of the same.
    #[arg(long = "kind", value_parser = crate::dispatch::parse_kind_spec, value_name = "KIND=TARGET")]
    pub kinds: Vec<(String, crate::dispatch::Target)>,

    /// Replaced by --kind; kept only to say so.
    #[arg(long = "external-kind", env = "JOBCAST_EXTERNAL_KINDS", hide = true)]
    pub external_kinds: Vec<String>,

    /// How long a running job of your own kinds may go without an update or
    /// heartbeat from its worker before it ends failed `worker_lost` (0: never).
    #[arg(long, env = "JOBCAST_HEARTBEAT_TIMEOUT", default_value = "5m", value_parser = parse_duration_or_zero, value_name = "DURATION")]
    pub heartbeat_timeout: Duration,

    /// Leave jobs a previous run left unfinished alone. By default `serve`
    /// resumes its demo jobs from their last step and delivers webhooks
    /// still owed (with --store dynamodb; the memory store starts empty).
    #[arg(long, env = "JOBCAST_NO_RESUME")]
    pub no_resume: bool,

    /// Posts in flight at once when fanning one update out to subscribers.
    #[arg(long, env = "JOBCAST_PUBLISH_CONCURRENCY", default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub publish_concurrency: usize,

    /// Let callbackUrl reach private addresses (10/8, 172.16/12, 192.168/16, fc00::/7).
    /// Link-local and cloud metadata addresses are refused regardless.
    #[arg(long, env = "JOBCAST_ALLOW_PRIVATE_CALLBACKS")]
    pub allow_private_callbacks: bool,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "JOBCAST_LOG_FORMAT", default_value = "pretty", value_enum)]
    pub log_format: LogFormat,
}

fn parse_table(s: &str) -> Result<String, String> {
    let ok = (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("a DynamoDB table name has 3 to 255 letters, digits, '_', '-' or '.'".into())
    }
}

pub use crate::protocol::parse_kind;

/// The key pair `--require-sigv4` checks signatures against.
pub fn sigv4_verifier() -> Result<crate::gateway::sigv4::Verifier, String> {
    let var = |a: &str, b: &str| {
        std::env::var(a)
            .ok()
            .or_else(|| std::env::var(b).ok())
            .filter(|v| !v.is_empty())
    };
    match (
        var("JOBCAST_SIGV4_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        var("JOBCAST_SIGV4_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Ok(crate::gateway::sigv4::Verifier::new(id, secret)),
        _ => Err("--require-sigv4 needs a key pair: set JOBCAST_SIGV4_ACCESS_KEY_ID and JOBCAST_SIGV4_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to the keys your @connections callers sign with".into()),
    }
}

impl ServeArgs {
    /// The job kinds: `--kind` flags and `JOBCAST_KINDS`.
    pub fn kinds(&self) -> Result<crate::dispatch::Kinds, String> {
        if !self.external_kinds.is_empty() {
            return Err(format!(
                "--external-kind (JOBCAST_EXTERNAL_KINDS) was replaced by --kind KIND=TARGET (JOBCAST_KINDS), which also says where the jobs go: e.g. --kind {}=command:'python3 worker.py' (see \"Your own job kinds\" in the README)",
                self.external_kinds
                    .first()
                    .map(String::as_str)
                    .unwrap_or("export")
            ));
        }
        let mut kinds = match std::env::var("JOBCAST_KINDS") {
            Ok(list) if !list.trim().is_empty() => crate::dispatch::Kinds::parse_list(&list)
                .map_err(|e| format!("JOBCAST_KINDS: {e}"))?,
            _ => crate::dispatch::Kinds::default(),
        };
        for spec in &self.kinds {
            kinds.add(spec.clone()).map_err(|e| e.to_string())?;
        }
        Ok(kinds)
    }

    /// The gateway settings these options describe.
    pub fn gateway_config(&self) -> Result<GatewayConfig, String> {
        Ok(GatewayConfig {
            listen: self.listen,
            stage: self.stage.clone(),
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            max_connections: self.max_connections,
            outbound_queue: self.outbound_queue,
            workers: self.workers,
            handshake_timeout: self.handshake_timeout,
            shutdown_grace: Duration::from_secs(10),
            public_url: self.public_url.clone(),
            websocket_url: self.websocket_url.clone(),
            webhook_secret: std::env::var("JOBCAST_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
            webhook: WebhookOptions {
                policy: AddressPolicy {
                    allow_private: self.allow_private_callbacks,
                },
                ..WebhookOptions::default()
            },
            limit_posts_per_second: self.limit_posts_per_second,
            client_messages_per_second: (self.client_messages_per_second > 0)
                .then_some(self.client_messages_per_second),
            cors_origins: self.cors_origins.clone(),
            require_sigv4: if self.require_sigv4 {
                Some(sigv4_verifier()?)
            } else {
                None
            },
            kinds: self.kinds()?,
            heartbeat_timeout: self.heartbeat_timeout,
            resume: !self.no_resume,
            publish: PublishOptions {
                concurrency: self.publish_concurrency,
                ..PublishOptions::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").unwrap_err().contains("90s"));
    }

    #[test]
    fn stages() {
        assert!(parse_stage("dev").is_ok());
        assert!(parse_stage("jobs").is_err());
        assert!(parse_stage("a/b").is_err());
        assert!(parse_stage("").is_err());
    }

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["jobcast"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.stage, "dev");
        assert_eq!(cli.serve.idle_timeout, Duration::from_secs(600));
        let err = Cli::try_parse_from(["jobcast", "--idle-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("90s"));
    }
}
