//! Command-line and environment configuration. Every flag can also be set by
//! a `JOBCAST_*` variable; a bad value is a one-line error naming the fix.

mod commands;
mod emulate;

pub use crate::bench::args::*;
use crate::values::*;
pub use crate::values::{parse_duration, parse_duration_or_zero, parse_listen, parse_positive};
pub use commands::*;
pub use emulate::EmulateArgs;

use crate::gateway::GatewayConfig;
pub use crate::protocol::parse_kind;
use crate::publish::PublishOptions;
use crate::push::PaceOptions;
use crate::serve::ServeConfig;
use crate::webhook::{AddressPolicy, WebhookOptions};
use clap::{Args, Parser, Subcommand};
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
    Serve(Box<ServeArgs>),
    /// Report a job's progress: store the snapshot and push it to every subscriber.
    Publish(PublishArgs),
    /// Manage the DynamoDB table.
    #[command(subcommand)]
    Table(TableCommand),
    /// Measure the gateway on this machine (loopback only).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve your own WebSocket API (from a SAM or CloudFormation template)
    /// with your Lambda functions behind it, run by a local runner.
    Emulate(EmulateArgs),
    /// Development sign-in tokens, verified by `serve --dev-tokens`.
    #[command(subcommand)]
    Token(TokenCommand),
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

    /// Base URL workers post their updates to, used in each job message's updateUrl
    /// (default: the jobs API's, as statusUrl).
    #[arg(long, env = "JOBCAST_UPDATE_URL", value_parser = parse_base_url, value_name = "URL")]
    pub update_url: Option<String>,

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
    #[arg(long = "cors-origin", env = "JOBCAST_CORS_ORIGINS", value_delimiter = ',', value_parser = crate::serve::cors::parse_origin, value_name = "ORIGIN")]
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
    /// KIND=sqs:<queue URL>, KIND=lambda:<function>, KIND=states:<state
    /// machine ARN>, KIND=events:<bus>, KIND=ecs:<cluster>/<task
    /// definition>[?subnets=…&launchType=FARGATE…], KIND=http(s)://<url>
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

    /// How long after its hand-over a job of your own kinds may wait for
    /// its worker's first update or heartbeat before it ends failed
    /// `not_started` (0: forever). Longer than your queue's longest backlog.
    #[arg(long, env = "JOBCAST_START_TIMEOUT", default_value = "1h", value_parser = parse_duration_or_zero, value_name = "DURATION")]
    pub start_timeout: Duration,

    /// Leave jobs a previous run left unfinished alone. By default `serve`
    /// resumes its demo jobs from their last step and delivers webhooks
    /// still owed (with --store dynamodb; the memory store starts empty).
    #[arg(long, env = "JOBCAST_NO_RESUME")]
    pub no_resume: bool,

    /// Answer every `@connections` call this much later, as AWS's round
    /// trip would (e.g. 30ms), so fan-out times look as they will deployed.
    /// Off (0) by default.
    #[arg(long, env = "JOBCAST_MANAGEMENT_LATENCY", default_value = "0", value_parser = parse_duration_or_zero, value_name = "DURATION")]
    pub management_latency: Duration,

    /// Coalesce each job's updates into windows this long (e.g. 500ms, at
    /// most 10s): while updates keep coming, only each window's newest is
    /// pushed, when it ends; one after a quiet window goes at once.
    /// Off (0) by default: every update is pushed.
    #[arg(long, env = "JOBCAST_COALESCE", default_value = "0", value_parser = parse_coalesce_window, value_name = "DURATION")]
    pub coalesce: Duration,

    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans go to /v1/traces). Off by default; the
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_SERVICE_NAME,
    /// OTEL_EXPORTER_OTLP_HEADERS, …) work too.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Keep job files (uploaded by workers, downloaded by browsers) in this
    /// directory, served by serve itself through URLs it signs. Default: a
    /// `jobcast-files` folder under the system temp directory.
    #[arg(
        long,
        env = "JOBCAST_FILES_DIR",
        value_name = "DIR",
        conflicts_with = "files_bucket"
    )]
    pub files_dir: Option<std::path::PathBuf>,

    /// Keep job files in this S3 bucket instead (AWS_ENDPOINT_URL_S3 for
    /// any S3-compatible endpoint); URLs are presigned for it.
    #[arg(long, env = "JOBCAST_FILES_BUCKET", value_name = "NAME")]
    pub files_bucket: Option<String>,

    /// How long a file's download URL in a snapshot stays valid (at most
    /// 7 days, SigV4's limit).
    #[arg(long, env = "JOBCAST_FILE_URL_TTL", default_value = "15m", value_parser = parse_file_url_ttl, value_name = "DURATION")]
    pub file_url_ttl: Duration,

    /// Posts in flight at least when fanning one update out to subscribers
    /// (fewer only after 429s).
    #[arg(long, env = "JOBCAST_PUBLISH_CONCURRENCY", default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub publish_concurrency: usize,

    /// Posts in flight at most: more than --publish-concurrency are used
    /// when the observed round trip needs them to finish a fan-out within
    /// --fan-out-target. Equal to --publish-concurrency: a fixed number.
    #[arg(long, env = "JOBCAST_PUBLISH_MAX_CONCURRENCY", default_value = "256", value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub publish_max_concurrency: usize,

    /// The time one fan-out aims to finish within.
    #[arg(long, env = "JOBCAST_FAN_OUT_TARGET", default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub fan_out_target: Duration,

    /// Owners with development tokens (`jobcast token issue --sub alice`),
    /// signed by the local development key: for local development only.
    #[arg(long, env = "JOBCAST_DEV_TOKENS", conflicts_with = "jwt_issuer")]
    pub dev_tokens: bool,

    /// Owners: the issuer (`iss`) of your users' JWTs, e.g. your Cognito user
    /// pool's URL. With it, creating jobs needs a token and each user sees
    /// only their own jobs; without it, jobs have no owner.
    #[arg(long, env = "JOBCAST_JWT_ISSUER", requires = "jwt_audience")]
    pub jwt_issuer: Option<String>,

    /// The audience (`aud`) your users' JWTs are for (the app client id).
    #[arg(long, env = "JOBCAST_JWT_AUDIENCE", requires = "jwt_issuer")]
    pub jwt_audience: Option<String>,

    /// The issuer's signing keys as a JWKS file (RS256, ES256).
    #[arg(
        long,
        env = "JOBCAST_JWKS",
        value_name = "FILE",
        conflicts_with = "jwks_url",
        requires = "jwt_issuer"
    )]
    pub jwks: Option<std::path::PathBuf>,

    /// The issuer's JWKS URL (default: ISSUER/.well-known/jwks.json), read at start.
    #[arg(
        long,
        env = "JOBCAST_JWKS_URL",
        value_name = "URL",
        requires = "jwt_issuer"
    )]
    pub jwks_url: Option<String>,

    /// Most unfinished (queued or running) jobs one owner may have; beyond
    /// it POST /jobs answers 429 owner_limit. Needs owners.
    #[arg(
        long,
        env = "JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_active_jobs_per_owner: Option<u32>,

    /// Let callbackUrl reach private addresses (10/8, 172.16/12, 192.168/16, fc00::/7).
    /// Link-local and cloud metadata addresses are refused regardless.
    #[arg(long, env = "JOBCAST_ALLOW_PRIVATE_CALLBACKS")]
    pub allow_private_callbacks: bool,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "JOBCAST_LOG_FORMAT", default_value = "pretty", value_enum)]
    pub log_format: LogFormat,
}

/// Why the settings given to `serve` cannot start it; each says the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--require-sigv4 needs a key pair: set JOBCAST_SIGV4_ACCESS_KEY_ID and JOBCAST_SIGV4_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to the keys your @connections callers sign with"
    )]
    NoSigv4Keys,
    #[error(
        "--external-kind (JOBCAST_EXTERNAL_KINDS) was replaced by --kind KIND=TARGET (JOBCAST_KINDS), which also says where the jobs go: e.g. --kind {0}=command:'python3 worker.py' (see \"Your own job kinds\" in the README)"
    )]
    ExternalKind(String),
    #[error("JOBCAST_KINDS: {0}")]
    KindsVar(crate::dispatch::KindError),
    #[error("--kind: {0}")]
    KindFlag(crate::dispatch::KindError),
}

/// The key pair `--require-sigv4` checks signatures against.
pub fn sigv4_verifier() -> Result<crate::gateway::sigv4::Verifier, ConfigError> {
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
        _ => Err(ConfigError::NoSigv4Keys),
    }
}

impl ServeArgs {
    /// The job kinds: `--kind` flags and `JOBCAST_KINDS`.
    pub fn kinds(&self) -> Result<crate::dispatch::Kinds, ConfigError> {
        if let Some(kind) = self.external_kinds.first() {
            return Err(ConfigError::ExternalKind(kind.clone()));
        }
        let mut kinds = match std::env::var("JOBCAST_KINDS") {
            Ok(list) if !list.trim().is_empty() => {
                crate::dispatch::Kinds::parse_list(&list).map_err(ConfigError::KindsVar)?
            }
            _ => crate::dispatch::Kinds::default(),
        };
        for spec in &self.kinds {
            kinds.add(spec.clone()).map_err(ConfigError::KindFlag)?;
        }
        Ok(kinds)
    }

    /// The settings of `serve` these options describe.
    pub fn serve_config(&self) -> Result<ServeConfig, ConfigError> {
        Ok(ServeConfig {
            gateway: GatewayConfig {
                listen: self.listen,
                stage: self.stage.clone(),
                idle_timeout: self.idle_timeout,
                max_lifetime: self.max_lifetime,
                max_connections: self.max_connections,
                outbound_queue: self.outbound_queue,
                handshake_timeout: self.handshake_timeout,
                shutdown_grace: Duration::from_secs(10),
                limit_posts_per_second: self.limit_posts_per_second,
                client_messages_per_second: (self.client_messages_per_second > 0)
                    .then_some(self.client_messages_per_second),
                require_sigv4: if self.require_sigv4 {
                    Some(sigv4_verifier()?)
                } else {
                    None
                },
                management_latency: self.management_latency,
                clock: crate::clock::system(),
            },
            workers: self.workers,
            public_url: self.public_url.clone(),
            websocket_url: self.websocket_url.clone(),
            update_url: self.update_url.clone(),
            webhook_secret: std::env::var("JOBCAST_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
            webhook: WebhookOptions {
                policy: AddressPolicy {
                    allow_private: self.allow_private_callbacks,
                },
                ..WebhookOptions::default()
            },
            cors_origins: self.cors_origins.clone(),
            kinds: self.kinds()?,
            heartbeat_timeout: self.heartbeat_timeout,
            start_timeout: self.start_timeout,
            resume: !self.no_resume,
            publish: PublishOptions {
                fan_out: PaceOptions {
                    concurrency: self.publish_concurrency,
                    max_concurrency: self.publish_max_concurrency.max(self.publish_concurrency),
                    fan_out_target: self.fan_out_target,
                    ..PaceOptions::default()
                },
                coalesce: self.coalesce,
            },
            // Read by `serve` (it may need the network for the JWKS).
            identity: None,
            owner_limit: self.max_active_jobs_per_owner,
            files: crate::serve::FilesConfig {
                dir: self.files_dir.clone(),
                bucket: self.files_bucket.clone(),
                url_ttl: self.file_url_ttl,
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
