//! Assembling what the handlers need. `serve`, the Lambda functions, the
//! CLI and the bench all build their publisher and their [`Deps`] here, so
//! a new dependency is added once and every host gets it the same way.
//! What differs between hosts is data set on the builder: the pusher (the
//! registry in `serve`, the Management API elsewhere), how webhooks are
//! delivered, how hand-overs are retried, and where demo jobs go.

use crate::clock::SharedClock;
use crate::dispatch::{Deliver, DispatchSettings, Dispatcher, Kinds, RetryPolicy};
use crate::handlers::{Deps, JobQueue, Links};
use crate::metrics::Metrics;
use crate::publish::{Flusher, PublishOptions, Publisher};
use crate::push::{Paced, Pusher};
use crate::store::Store;
use crate::token::TokenKey;
use crate::webhook::{ClientError, Delivery, WebhookOptions, Webhooks};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The parts every host shares, and how it wants them put together.
pub struct DepsBuilder {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenKey,
    pub publish: PublishOptions,
    /// How this host's pushers pace their posts, and what they learned of
    /// round trips and 429s; made from `publish` when first asked for.
    paced: std::sync::OnceLock<Paced>,
    /// Set by [`DepsBuilder::webhooks`]; `None` refuses `callbackUrl`.
    pub webhooks: Option<Arc<Webhooks>>,
    pub links: Links,
    /// Worker liveness; zero turns it off.
    pub heartbeat_timeout: Duration,
    /// How long a handed-over job waits for its worker's first report
    /// before it ends `not_started`; zero turns it off.
    pub start_timeout: Duration,
    /// Identifies this process in job leases.
    pub lease_owner: String,
    /// The user's kinds and the deliverers of their targets.
    pub kinds: Kinds,
    pub targets: BTreeMap<String, Arc<dyn Deliver>>,
    /// How a failed hand-over is retried.
    pub dispatch_retry: RetryPolicy,
    /// Owners: the verifier of callers' JWTs (None: jobs have no owner).
    pub identity: Option<Arc<crate::auth::JwtVerifier>>,
    /// Most unfinished jobs per owner (None: no limit).
    pub owner_limit: Option<u32>,
    /// Pushes the newest held update when a coalescing window
    /// (`publish.coalesce`) ends; without one every update is pushed.
    pub flusher: Option<Arc<dyn Flusher>>,
    /// Where job files are (None: this host takes no files).
    pub files: Option<crate::files::FileLinks>,
    /// Where "now" comes from for every part built here.
    pub clock: SharedClock,
}

impl DepsBuilder {
    /// Defaults for everything but the store and the metrics (which the
    /// webhooks built next count into): a random token key, no webhooks, no
    /// kinds of the user's, a 5-minute heartbeat.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> DepsBuilder {
        DepsBuilder {
            store,
            metrics,
            tokens: TokenKey::random(Duration::from_secs(24 * 3600)),
            publish: PublishOptions::default(),
            paced: std::sync::OnceLock::new(),
            webhooks: None,
            links: Links::default(),
            heartbeat_timeout: Duration::from_secs(300),
            start_timeout: crate::dispatch::DEFAULT_START_TIMEOUT,
            lease_owner: "jobcast".into(),
            kinds: Kinds::default(),
            targets: BTreeMap::new(),
            dispatch_retry: RetryPolicy::like_webhooks(&WebhookOptions::default()),
            identity: None,
            owner_limit: None,
            flusher: None,
            files: None,
            clock: crate::clock::system(),
        }
    }

    /// Webhooks signed with `secret` (none without one), delivered as
    /// `delivery` says for every caller of this builder's publishers.
    pub fn webhooks(
        mut self,
        secret: Option<&str>,
        options: WebhookOptions,
        delivery: Delivery,
    ) -> Result<DepsBuilder, ClientError> {
        self.webhooks = match secret {
            None => None,
            Some(s) => {
                let w = Webhooks::new(
                    s.as_bytes(),
                    Arc::clone(&self.store),
                    Arc::clone(&self.metrics),
                    options,
                )?;
                Some(Arc::new(match delivery {
                    Delivery::Inline => w.inline(),
                    Delivery::Background => w,
                }))
            }
        };
        Ok(self)
    }

    /// The same builder, fanning out with exactly `n` posts in flight
    /// (fewer only after 429s), whatever the round trip.
    pub fn fan_out_concurrency(mut self, n: usize) -> DepsBuilder {
        self.publish.fan_out.concurrency = n.max(1);
        self.publish.fan_out.max_concurrency = n.max(1);
        self
    }

    /// The pacing every pusher of this host that posts by request shares
    /// (`ManagementApiPusher::paced`), so what one batch learned serves
    /// the next.
    pub fn paced(&self) -> Paced {
        self.paced
            .get_or_init(|| Paced::new(self.publish.fan_out.clone()))
            .clone()
    }

    /// A pusher through `@connections` at `endpoint`, paced with the
    /// host's other pushers.
    pub fn management_pusher(
        &self,
        sdk: &aws_config::SdkConfig,
        endpoint: &str,
    ) -> Arc<crate::push::ManagementApiPusher> {
        Arc::new(crate::push::ManagementApiPusher::new(sdk, endpoint).paced(self.paced()))
    }

    /// A publisher over the builder's store, delivering through `pusher`.
    pub fn publisher(&self, pusher: Arc<dyn Pusher>) -> Publisher {
        let p = Publisher::new(Arc::clone(&self.store), pusher, Arc::clone(&self.metrics))
            .with_clock(Arc::clone(&self.clock));
        let p = match &self.flusher {
            Some(f) => p.with_coalescing(self.publish.coalesce, Arc::clone(f)),
            None => p,
        };
        if let Some(w) = &self.webhooks {
            w.use_clock(&self.clock);
        }
        let p = match &self.files {
            Some(f) => {
                if let Some(w) = &self.webhooks {
                    w.show_files(f);
                }
                p.with_files(f.clone())
            }
            None => p,
        };
        match &self.webhooks {
            Some(w) => p.with_webhooks(Arc::clone(w)),
            None => p,
        }
    }

    /// Routes demo jobs to `demo` and the user's kinds to their targets.
    /// Background hand-overs run on `tasks` and stop with `stop`.
    pub fn dispatcher(
        &self,
        publisher: &Publisher,
        demo: Arc<dyn JobQueue>,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::new(
            demo,
            self.kinds.clone(),
            self.targets.clone(),
            DispatchSettings {
                tokens: self.tokens.clone(),
                heartbeat_timeout: self.heartbeat_timeout,
                start_timeout: self.start_timeout,
                owner: self.lease_owner.clone(),
                retry: self.dispatch_retry.clone(),
            },
            publisher.clone(),
            tasks,
            stop,
        ))
    }

    /// The handlers' dependencies: `publisher` (from [`Self::publisher`])
    /// and `queue` (usually from [`Self::dispatcher`]).
    pub fn deps(&self, publisher: Publisher, queue: Arc<dyn JobQueue>) -> Deps {
        Deps {
            publisher,
            tokens: self.tokens.clone(),
            queue,
            metrics: Arc::clone(&self.metrics),
            links: self.links.clone(),
            heartbeat_timeout: self.heartbeat_timeout,
            lease_owner: self.lease_owner.as_str().into(),
            identity: self.identity.clone(),
            owner_limit: self.owner_limit,
            clock: Arc::clone(&self.clock),
        }
    }
}
