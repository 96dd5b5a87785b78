//! `jobcast serve`: jobcast's whole application on the local gateway.
//! The gateway (`jobcast-gateway`) is the transport; this module
//! assembles what runs behind it: the store, the publisher and its
//! pusher, dispatch to the user's workers, the demo worker pool, job
//! recovery after a restart, the liveness sweep and the file storage.

pub mod app;
pub mod cors;
mod files;
mod routing;
mod static_files;
pub mod workers;

use crate::gateway::registry::Registry;
use crate::gateway::{Gateway, GatewayConfig};
use crate::handlers::{Deps, Links};
use crate::publish::PublishOptions;
use crate::store::Store;
use crate::token::TokenKey;
use crate::webhook::{Delivery, WebhookOptions};
use crate::wiring::DepsBuilder;
use app::JobcastApp;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// `heartbeatTimeoutSeconds` by default: five minutes of silence.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of `jobcast serve`: the transport's, then the application's.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// What the gateway enforces: address, stage, limits, timeouts.
    pub gateway: GatewayConfig,
    /// Demo jobs running at once.
    pub workers: usize,
    pub public_url: Option<String>,
    pub websocket_url: Option<String>,
    /// Base URL put in job messages' `updateUrl` (default: the jobs API's).
    pub update_url: Option<String>,
    /// Secret that signs webhooks; a `callbackUrl` is refused without it.
    pub webhook_secret: Option<String>,
    /// How webhooks are attempted, and which addresses they may reach.
    pub webhook: WebhookOptions,
    /// Browser origins allowed to call the jobs API (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// The user's own job kinds and where their jobs go.
    pub kinds: crate::dispatch::Kinds,
    /// How long a worker may stay silent before its job ends `worker_lost` (zero: never).
    pub heartbeat_timeout: Duration,
    /// How long a handed-over job may wait for its worker's first report
    /// before it ends `not_started` (zero: forever).
    pub start_timeout: Duration,
    /// Take up demo jobs and webhooks a previous run left unfinished in the store.
    pub resume: bool,
    pub publish: PublishOptions,
    /// Owners: verifies callers' JWTs (None: jobs have no owner).
    pub identity: Option<Arc<crate::auth::JwtVerifier>>,
    /// Most unfinished jobs per owner (None: no limit).
    pub owner_limit: Option<u32>,
    /// Where job files are kept (CONTRACT section 11).
    pub files: FilesConfig,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            gateway: GatewayConfig::default(),
            workers: 64,
            public_url: None,
            websocket_url: None,
            update_url: None,
            webhook_secret: None,
            webhook: WebhookOptions::default(),
            cors_origins: Vec::new(),
            kinds: crate::dispatch::Kinds::default(),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            start_timeout: crate::dispatch::DEFAULT_START_TIMEOUT,
            resume: true,
            publish: PublishOptions::default(),
            identity: None,
            owner_limit: None,
            files: FilesConfig::default(),
        }
    }
}

/// Where `serve` keeps job files, and how long download URLs live.
#[derive(Clone, Debug, PartialEq)]
pub struct FilesConfig {
    /// A directory `serve` stores and serves itself (`None`: a
    /// `jobcast-files` folder under the system temp directory).
    pub dir: Option<std::path::PathBuf>,
    /// An S3 bucket instead of the directory.
    pub bucket: Option<String>,
    /// Download URL lifetime (`--file-url-ttl`).
    pub url_ttl: Duration,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            dir: None,
            bucket: None,
            url_ttl: crate::files::DEFAULT_DOWNLOAD_TTL,
        }
    }
}

impl FilesConfig {
    /// The directory used when no bucket is named.
    pub fn directory(&self) -> std::path::PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("jobcast-files"))
    }
}

/// A random id for this process in job leases.
fn lease_owner() -> String {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    format!("serve-{}", crate::protocol::hex(&b))
}

/// The host's file storage: the bucket when one is named, else the
/// directory, whose URLs this process signs and serves.
async fn file_storage(
    config: &ServeConfig,
    addr: SocketAddr,
    tokens: &TokenKey,
) -> std::io::Result<(
    crate::files::FileLinks,
    Option<Arc<crate::files::LocalFiles>>,
)> {
    let ttl = config.files.url_ttl;
    if let Some(bucket) = &config.files.bucket {
        let sdk = crate::aws::sdk_config().await;
        let s3 = Arc::new(crate::files::S3Files::new(&sdk, bucket));
        return Ok((crate::files::FileLinks::new(s3, ttl), None));
    }
    let local = Arc::new(crate::files::LocalFiles::new(
        config.files.directory(),
        &crate::gateway::public_base(config.public_url.as_deref(), addr),
        &tokens.derive(b"files"),
    )?);
    let links =
        crate::files::FileLinks::new(Arc::clone(&local) as Arc<dyn crate::files::Files>, ttl);
    Ok((links, Some(local)))
}

/// How often the liveness sweep runs: a tenth of the timeout, between 1 and
/// 30 seconds, so a lost job ends at most that long after its deadline.
fn sweep_interval(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// A bound, not yet running, `jobcast serve`.
pub struct Serve {
    gateway: Gateway,
    app: Arc<JobcastApp>,
}

impl Serve {
    /// Binds the gateway, then builds the application on it: the
    /// handlers' dependencies, the pusher that reaches this process's
    /// connections and those of other processes over the same store,
    /// dispatch, the worker pool, recovery and the liveness sweep.
    pub async fn bind(
        config: ServeConfig,
        store: Arc<dyn Store>,
        tokens: TokenKey,
    ) -> std::io::Result<Serve> {
        // One clock for the transport and the application: the gateway's.
        let gateway = Gateway::bind(config.gateway.clone()).await?;
        let addr = gateway.local_addr()?;
        let registry = gateway.registry();
        let mut parts = DepsBuilder::new(store, gateway.metrics())
            .webhooks(
                config.webhook_secret.as_deref(),
                config.webhook.clone(),
                Delivery::Background,
            )
            .map_err(std::io::Error::other)?;
        let (files, local_files) = file_storage(&config, addr, &tokens).await?;
        parts.files = Some(files);
        parts.tokens = tokens;
        parts.clock = Arc::clone(&config.gateway.clock);
        parts.publish = config.publish.clone();
        parts.flusher = Some(Arc::new(crate::publish::InProcess));
        parts.heartbeat_timeout = config.heartbeat_timeout;
        parts.start_timeout = config.start_timeout;
        parts.lease_owner = lease_owner();
        parts.identity = config.identity.clone();
        parts.owner_limit = config.owner_limit;
        parts.kinds = config.kinds.clone();
        parts.dispatch_retry = crate::dispatch::RetryPolicy::like_webhooks(&config.webhook);
        parts.links = Links {
            public_url: config.public_url.clone(),
            websocket_url: config.websocket_url.clone(),
            update_url: config.update_url.clone(),
            stage: config.gateway.stage.clone(),
        };
        let latency = config.gateway.management_latency;
        let local: Arc<dyn crate::push::Pusher> = if latency.is_zero() {
            registry.clone()
        } else {
            Arc::new(crate::push::Delayed {
                inner: registry.clone(),
                delay: latency,
                paced: parts.paced(),
            })
        };
        // Connections of other processes over the same table are posted
        // to where they are held.
        let place = gateway.connections_base(config.public_url.as_deref())?;
        let pusher: Arc<dyn crate::push::Pusher> = Arc::new(routing::Routed::new(
            local,
            Arc::clone(&registry),
            Arc::clone(&parts.store),
            place.clone(),
            parts.paced(),
        ));
        let publisher = parts.publisher(pusher);
        let workers = workers::WorkerPool::new(publisher.clone(), config.workers);
        parts.targets = crate::dispatch::deliverers(
            &config.kinds,
            config.webhook_secret.as_deref(),
            Some(crate::dispatch::CommandHost {
                publisher: &publisher,
                tasks: workers.tasks(),
                stop: workers.stop_token(),
            }),
        )
        .await
        .map_err(std::io::Error::other)?;
        let dispatcher = parts.dispatcher(
            &publisher,
            workers.queue(),
            workers.tasks().clone(),
            workers.stop_token().clone(),
        );
        // Where workers reach this process when no request says (resumed jobs).
        let local_base = (config.update_url.clone())
            .or_else(|| config.public_url.clone())
            .unwrap_or_else(|| format!("http://{addr}"));
        if config.resume {
            workers.recover(publisher.clone(), Arc::clone(&dispatcher), local_base);
        }
        let shortest_deadline = [config.heartbeat_timeout, config.start_timeout]
            .into_iter()
            .filter(|t| !t.is_zero())
            .min();
        if let Some(timeout) = shortest_deadline {
            workers.sweep_lost_every(publisher.clone(), sweep_interval(timeout));
        }
        let deps = parts.deps(publisher, dispatcher);
        let app = Arc::new(JobcastApp {
            deps,
            place: Some(place),
            cors: cors::Cors::new(&config.cors_origins),
            local_files,
            workers: Some(workers),
        });
        Ok(Serve { gateway, app })
    }

    /// The registry of live connections (the in-process `@connections`).
    pub fn registry(&self) -> Arc<Registry> {
        self.gateway.registry()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.gateway.local_addr()
    }

    /// The handlers' dependencies (store, publisher, metrics, tokens).
    pub fn deps(&self) -> &Deps {
        &self.app.deps
    }

    /// Every `$disconnect` event the gateway runs, as its handler receives it.
    pub fn lifecycle(&self) -> broadcast::Receiver<ApiGatewayWebsocketProxyRequest> {
        self.gateway.lifecycle()
    }

    /// Serves until `shutdown` completes, then closes every socket with 1001,
    /// runs every `$disconnect`, lets in-flight requests finish and stops
    /// the workers.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        self.gateway.run(self.app, shutdown).await
    }
}
