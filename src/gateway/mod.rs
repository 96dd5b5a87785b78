//! `jobcast serve`: a local API Gateway. One port carries the WebSocket API
//! (`/{stage}`), the management API (`@connections`), the jobs HTTP API, the
//! web demo, `/healthz` and `/metrics`. Every WebSocket event goes through
//! the same handlers that run in Lambda.

pub mod app;
pub mod cors;
pub mod events;
mod files;
pub mod header_case;
mod http_io;
mod inbound;
pub mod management;
mod outbox;
mod ratelimit;
pub mod registry;
mod routing;
mod server;
pub mod sigv4;
mod socket;
mod static_files;
pub mod workers;

use crate::handlers::{Deps, Links};
use crate::metrics::Metrics;
use crate::publish::PublishOptions;
use crate::store::Store;
use crate::token::TokenKey;
use crate::webhook::{Delivery, WebhookOptions};
use crate::wiring::DepsBuilder;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use http_body_util::Full;
use registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// A response body: whole (most answers) or streamed (a file download).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub(crate) type HttpResponse = http::Response<Body>;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Client messages per second allowed by default: far above what a
/// browser tab following jobs sends, far below what a runaway loop does.
pub const DEFAULT_CLIENT_MESSAGES_PER_SECOND: u32 = 100;

/// `heartbeatTimeoutSeconds` by default: five minutes of silence.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of the local gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub stage: String,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    /// Most concurrent WebSocket connections; `None`: as many as the
    /// open-file limit allows, up to `DEFAULT_MAX_CONNECTIONS`.
    pub max_connections: Option<usize>,
    /// Messages buffered per connection before it counts as a slow consumer.
    pub outbound_queue: usize,
    /// Demo jobs running at once.
    pub workers: usize,
    /// Time a client has to send complete request headers.
    pub handshake_timeout: Duration,
    /// Time given to open sockets and in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    pub public_url: Option<String>,
    pub websocket_url: Option<String>,
    /// Base URL put in job messages' `updateUrl` (default: the jobs API's).
    pub update_url: Option<String>,
    /// Secret that signs webhooks; a `callbackUrl` is refused without it.
    pub webhook_secret: Option<String>,
    /// How webhooks are attempted, and which addresses they may reach.
    pub webhook: WebhookOptions,
    /// `@connections` requests per second before 429 LimitExceededException (unlimited when unset).
    pub limit_posts_per_second: Option<u32>,
    /// Browser origins allowed to call the jobs API (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// When set, every `@connections` call must be SigV4-signed with this key
    /// pair (403 `ForbiddenException` otherwise), as in AWS.
    pub require_sigv4: Option<sigv4::Verifier>,
    /// Messages a client may send per second (bursts up to the same number);
    /// beyond, its connection closes with 1008. Unlimited when unset.
    pub client_messages_per_second: Option<u32>,
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
    /// Added to every `@connections` answer, over HTTP and in process, as
    /// AWS's round trip would be (zero: answer at once).
    pub management_latency: Duration,
    /// Where job files are kept (CONTRACT section 11).
    pub files: FilesConfig,
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

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stage: "dev".into(),
            idle_timeout: crate::protocol::IDLE_TIMEOUT,
            max_lifetime: crate::protocol::MAX_LIFETIME,
            max_connections: None,
            outbound_queue: 1024,
            workers: 64,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            public_url: None,
            websocket_url: None,
            update_url: None,
            webhook_secret: None,
            webhook: WebhookOptions::default(),
            limit_posts_per_second: None,
            client_messages_per_second: Some(DEFAULT_CLIENT_MESSAGES_PER_SECOND),
            require_sigv4: None,
            cors_origins: Vec::new(),
            kinds: crate::dispatch::Kinds::default(),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            start_timeout: crate::dispatch::DEFAULT_START_TIMEOUT,
            resume: true,
            publish: PublishOptions::default(),
            identity: None,
            owner_limit: None,
            management_latency: Duration::ZERO,
            files: FilesConfig::default(),
        }
    }
}

/// State shared by every connection and request.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub deps: Deps,
    /// What answers the WebSocket API's events.
    pub app: Arc<dyn app::WebSocketApp>,
    pub registry: Arc<Registry>,
    pub lifecycle: broadcast::Sender<ApiGatewayWebsocketProxyRequest>,
    pub post_limit: Option<ratelimit::TokenBucket>,
    pub cors: cors::Cors,
    /// The directory of job files this process serves (none with a bucket).
    pub local_files: Option<Arc<crate::files::LocalFiles>>,
}

/// A bound, not yet running, local gateway.
pub struct Gateway {
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: workers::WorkerPool,
}

/// File descriptors kept free for the listener, HTTP callers, the store
/// and `/metrics` when the WebSocket connections take all the others.
const FD_RESERVE: u64 = 256;

/// Connections `serve` allows when not told otherwise, if the open-file
/// limit has room for them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Raises this process's open-file limit to its hard limit and returns how
/// many WebSocket connections fit under it: the number `asked` for (or the
/// default), capped by that limit. Beyond it, handshakes get a clean 429
/// instead of the listener failing to accept anyone at all (health checks
/// and `@connections` included). Only a number the user asked for is worth
/// a warning when it does not fit.
fn connection_budget(asked: Option<usize>) -> usize {
    let wanted = asked.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return wanted;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let fit = lim.rlim_cur.saturating_sub(FD_RESERVE) as usize;
    if wanted <= fit {
        return wanted;
    }
    if asked.is_some() {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = lim.rlim_cur,
            capped_at = fit,
            "--max-connections is above what the open-file limit allows; raise `ulimit -n` (hard limit) to allow more"
        );
    } else {
        tracing::debug!(
            open_file_limit = lim.rlim_cur,
            max_connections = fit,
            "connection limit derived from the open-file limit"
        );
    }
    fit.max(1)
}

/// A random id for this process in job leases.
fn lease_owner() -> String {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    format!("serve-{}", crate::protocol::hex(&b))
}

/// Where others reach this process: the public URL, else the listening
/// address (loopback for an unspecified one).
fn public_base(config: &GatewayConfig, addr: SocketAddr) -> String {
    match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let mut addr = addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    }
}

/// This process's `@connections` base as other processes reach it.
fn connections_base(config: &GatewayConfig, addr: SocketAddr) -> String {
    format!("{}/{}", public_base(config, addr), config.stage)
}

/// The host's file storage: the bucket when one is named, else the
/// directory, whose URLs this process signs and serves.
async fn file_storage(
    config: &GatewayConfig,
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
        &public_base(config, addr),
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

impl Gateway {
    /// Binds the listening socket and builds the handlers' dependencies.
    pub async fn bind(
        config: GatewayConfig,
        store: Arc<dyn Store>,
        tokens: TokenKey,
    ) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(config.listen).await?;
        let metrics = Arc::new(Metrics::new());
        let max_connections = connection_budget(config.max_connections);
        let registry = Arc::new(Registry::new(max_connections, Arc::clone(&metrics)));
        let mut parts = DepsBuilder::new(store, Arc::clone(&metrics))
            .webhooks(
                config.webhook_secret.as_deref(),
                config.webhook.clone(),
                Delivery::Background,
            )
            .map_err(std::io::Error::other)?;
        let (files, local_files) = file_storage(&config, listener.local_addr()?, &tokens).await?;
        parts.files = Some(files);
        parts.tokens = tokens;
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
            stage: config.stage.clone(),
        };
        let local: Arc<dyn crate::push::Pusher> = if config.management_latency.is_zero() {
            registry.clone()
        } else {
            Arc::new(crate::push::Delayed {
                inner: registry.clone(),
                delay: config.management_latency,
                paced: parts.paced(),
            })
        };
        // Connections of other processes over the same table are posted
        // to where they are held.
        let place = connections_base(&config, listener.local_addr()?);
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
            .unwrap_or_else(|| {
                let addr = listener.local_addr().unwrap_or(config.listen);
                format!("http://{addr}")
            });
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
        let (lifecycle, _) = broadcast::channel(4096);
        Ok(Gateway {
            listener,
            shared: Arc::new(Shared {
                cors: cors::Cors::new(&config.cors_origins),
                post_limit: config
                    .limit_posts_per_second
                    .map(ratelimit::TokenBucket::new),
                config,
                app: Arc::new(app::JobcastApp {
                    deps: deps.clone(),
                    place: Some(place),
                }),
                deps,
                registry,
                lifecycle,
                local_files,
            }),
            workers,
        })
    }

    /// Puts `app` behind the WebSocket API instead of jobcast's handlers;
    /// the jobs API and the demo page are then not served.
    pub fn with_app(mut self, app: Arc<dyn app::WebSocketApp>) -> Gateway {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.app = app,
            None => unreachable!("the gateway's state is shared only once it runs"),
        }
        self
    }

    /// The registry of live connections (the in-process `@connections`).
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.shared.registry)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The handlers' dependencies (store, publisher, metrics, tokens).
    pub fn deps(&self) -> &Deps {
        &self.shared.deps
    }

    /// Every `$disconnect` event the gateway runs, as its handler receives it.
    pub fn lifecycle(&self) -> broadcast::Receiver<ApiGatewayWebsocketProxyRequest> {
        self.shared.lifecycle.subscribe()
    }

    /// Serves until `shutdown` completes, then closes every socket with 1001,
    /// runs every `$disconnect` and lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        server::run(self.listener, self.shared, self.workers, shutdown).await
    }
}
