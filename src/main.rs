use clap::Parser;
use jobcast::config::{Cli, Command, LogFormat, ServeArgs};
use jobcast::gateway::{Gateway, GatewayConfig};
use jobcast::store::MemoryStore;
use jobcast::token::TokenKey;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
        _ => {
            tracing::warn!(
                "JOBCAST_TOKEN_SECRET is not set: using a random secret, so job tokens stop working when this process exits"
            );
            Ok(TokenKey::random(args.token_ttl))
        }
    }
}

fn log_relaxations(config: &GatewayConfig) {
    let defaults = GatewayConfig::default();
    if config.idle_timeout != defaults.idle_timeout {
        tracing::warn!(idle_timeout = ?config.idle_timeout, "idle timeout differs from API Gateway's 10 minutes");
    }
    if config.max_lifetime != defaults.max_lifetime {
        tracing::warn!(max_lifetime = ?config.max_lifetime, "connection lifetime differs from API Gateway's 2 hours");
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    init_tracing(args.log_format);
    let shutdown = shutdown_signal();
    let tokens = token_key(&args)?;
    let config = args.gateway_config();
    log_relaxations(&config);
    let listen = config.listen;
    let stage = config.stage.clone();
    let store = Arc::new(MemoryStore::new());
    store.spawn_sweeper(args.retention, std::time::Duration::from_secs(60));
    let gateway = Gateway::bind(config, store, tokens)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {listen}: {e}; stop the other process or pick another address with --listen (or JOBCAST_LISTEN)"
            )
        })?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("demo page:      http://{addr}/");
    tracing::info!("WebSocket API:  ws://{addr}/{stage}");
    tracing::info!("@connections:   http://{addr}/{stage}/@connections/{{connectionId}}");
    tracing::info!("jobs API:       http://{addr}/jobs");
    gateway
        .run(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcast: {e}");
            ExitCode::FAILURE
        }
    }
}
