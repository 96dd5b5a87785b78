//! A local API Gateway WebSocket API: the transport `jobcast serve` and
//! `jobcast emulate` stand on. One port carries the WebSocket API
//! (`/{stage}`), the Management API (`@connections`), `/healthz` and
//! `/metrics`; every other HTTP request goes to the app behind it.
//!
//! The gateway owns what API Gateway owns: sockets, limits and close codes,
//! connection ids, the registry of live connections, `@connections`,
//! SigV4 checks, metrics and graceful shutdown. What happens on `$connect`,
//! on a message and on `$disconnect` is the [`WebSocketApp`]'s: jobcast's
//! own handlers under `serve`, a user's template under `emulate`. Nothing
//! here knows of jobs, kinds or workers.
//!
//! ```no_run
//! # async fn run(app: std::sync::Arc<dyn jobcast_gateway::WebSocketApp>) -> std::io::Result<()> {
//! use jobcast_gateway::{Gateway, GatewayConfig};
//! let gateway = Gateway::bind(GatewayConfig::default()).await?;
//! gateway.run(app, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

#![warn(missing_docs)]

pub mod app;
pub mod events;
pub mod header_case;
pub mod http_io;
mod inbound;
pub mod management;
mod outbox;
mod ratelimit;
pub mod registry;
mod server;
pub mod sigv4;
mod socket;

pub(crate) use jobcast_core::{metrics, push};
pub(crate) use jobcast_protocol as protocol;

pub use app::{Connected, WebSocketApp};
pub use http_io::{Body, HttpResponse, full};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use jobcast_core::metrics::Metrics;
use registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Client messages per second allowed by default: far above what a
/// browser tab following jobs sends, far below what a runaway loop does.
pub const DEFAULT_CLIENT_MESSAGES_PER_SECOND: u32 = 100;

/// Settings of the transport: what API Gateway itself would enforce.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The stage in `/{stage}` and `/{stage}/@connections`.
    pub stage: String,
    /// Silence after which a connection closes with 1001 (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Age at which a connection closes with 1001 (API Gateway: 2 hours).
    pub max_lifetime: Duration,
    /// Most concurrent WebSocket connections; `None`: as many as the
    /// open-file limit allows, up to `DEFAULT_MAX_CONNECTIONS`.
    pub max_connections: Option<usize>,
    /// Messages buffered per connection before it counts as a slow consumer.
    pub outbound_queue: usize,
    /// Time a client has to send complete request headers.
    pub handshake_timeout: Duration,
    /// Time given to open sockets and in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// `@connections` requests per second before 429 LimitExceededException (unlimited when unset).
    pub limit_posts_per_second: Option<u32>,
    /// When set, every `@connections` call must be SigV4-signed with this key
    /// pair (403 `ForbiddenException` otherwise), as in AWS.
    pub require_sigv4: Option<sigv4::Verifier>,
    /// Messages a client may send per second (bursts up to the same number);
    /// beyond, its connection closes with 1008. Unlimited when unset.
    pub client_messages_per_second: Option<u32>,
    /// Added to every `@connections` answer over HTTP, as AWS's round trip
    /// would be (zero: answer at once). An app posting in process adds it
    /// itself.
    pub management_latency: Duration,
    /// Where connection and event times come from (`connectedAt`,
    /// `lastActiveAt`, `requestTimeEpoch`); the timers are tokio's.
    pub clock: jobcast_core::clock::SharedClock,
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
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            limit_posts_per_second: None,
            client_messages_per_second: Some(DEFAULT_CLIENT_MESSAGES_PER_SECOND),
            require_sigv4: None,
            management_latency: Duration::ZERO,
            clock: jobcast_core::clock::system(),
        }
    }
}

/// State shared by every connection and request.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub metrics: Arc<Metrics>,
    /// What answers the WebSocket API's events and the other HTTP routes.
    pub app: Arc<dyn WebSocketApp>,
    pub registry: Arc<Registry>,
    pub lifecycle: broadcast::Sender<ApiGatewayWebsocketProxyRequest>,
    pub post_limit: Option<ratelimit::TokenBucket>,
}

/// A bound, not yet running, gateway: its address and registry are known,
/// so the app behind it can be built with them.
pub struct Gateway {
    listener: TcpListener,
    config: GatewayConfig,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    lifecycle: broadcast::Sender<ApiGatewayWebsocketProxyRequest>,
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

impl Gateway {
    /// Binds the listening socket and sizes the registry to the open-file limit.
    pub async fn bind(config: GatewayConfig) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(config.listen).await?;
        let metrics = Arc::new(Metrics::new());
        let max_connections = connection_budget(config.max_connections);
        let registry = Arc::new(Registry::new(max_connections, Arc::clone(&metrics)));
        let (lifecycle, _) = broadcast::channel(4096);
        Ok(Gateway {
            listener,
            config,
            metrics,
            registry,
            lifecycle,
        })
    }

    /// The registry of live connections (the in-process `@connections`).
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The gateway's counters; an app may add its own to the same set.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The settings it was bound with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// This gateway's `@connections` base as others reach it: `public`
    /// (a URL it is reached at) or the listening address, loopback for an
    /// unspecified one, then the stage.
    pub fn connections_base(&self, public: Option<&str>) -> std::io::Result<String> {
        Ok(format!(
            "{}/{}",
            public_base(public, self.local_addr()?),
            self.config.stage
        ))
    }

    /// Every `$disconnect` event the gateway runs, as its handler receives it.
    pub fn lifecycle(&self) -> broadcast::Receiver<ApiGatewayWebsocketProxyRequest> {
        self.lifecycle.subscribe()
    }

    /// Serves `app` until `shutdown` completes, then closes every socket
    /// with 1001, runs every `$disconnect`, lets in-flight requests finish
    /// and shuts the app down.
    pub async fn run(
        self,
        app: Arc<dyn WebSocketApp>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = Arc::new(Shared {
            post_limit: self
                .config
                .limit_posts_per_second
                .map(ratelimit::TokenBucket::new),
            config: self.config,
            metrics: self.metrics,
            app,
            registry: self.registry,
            lifecycle: self.lifecycle,
        });
        server::run(self.listener, shared, shutdown).await
    }
}

/// Where others reach a process: `public`, else the listening address
/// (loopback for an unspecified one).
pub fn public_base(public: Option<&str>, addr: SocketAddr) -> String {
    match public {
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
