//! Posting to a connection wherever it is held. Several `serve` processes
//! may share one DynamoDB table, each holding its own sockets; API Gateway
//! routes a post to whichever node holds the socket, and so does this: a
//! connection this process does not hold is looked up in the store (where
//! its `$connect` recorded the `@connections` base of the process holding
//! it) and posted to there, through the Management API as any client
//! would. Only a connection that is really gone answers Gone, so only
//! that one loses its subscriptions.

use super::registry::Registry;
use crate::push::{ConnectionInfo, ManagementApiPusher, Payload, PushError, Pusher};
use crate::store::Store;
use async_trait::async_trait;
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Most remembered places of other processes' connections; past it the
/// memory starts over (each is looked up again once).
const MAX_PLACES: usize = 100_000;

/// A pusher for the connections of every process over one store.
pub struct Routed {
    /// This process's own connections (the registry, or a delayed one).
    local: Arc<dyn Pusher>,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    /// This process's `@connections` base, as its connections record it.
    me: String,
    /// Where other processes' connections are, as looked up.
    places: DashMap<String, String>,
    /// One Management API client per other process.
    peers: DashMap<String, Arc<ManagementApiPusher>>,
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl Routed {
    pub fn new(
        local: Arc<dyn Pusher>,
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        me: String,
    ) -> Routed {
        Routed {
            local,
            registry,
            store,
            me,
            places: DashMap::new(),
            peers: DashMap::new(),
            sdk: OnceCell::new(),
        }
    }

    /// The `@connections` base of the process holding `connection_id`,
    /// when that is another process.
    async fn elsewhere(&self, connection_id: &str) -> Result<Option<String>, PushError> {
        if self.registry.handle(connection_id).is_some() {
            return Ok(None);
        }
        if let Some(p) = self.places.get(connection_id) {
            return Ok(Some(p.clone()));
        }
        let place = self
            .store
            .connection_place(connection_id)
            .await
            .map_err(|e| PushError::Unavailable(format!("cannot look the connection up: {e}")))?;
        match place {
            Some(p) if p != self.me => {
                if self.places.len() >= MAX_PLACES {
                    self.places.clear();
                }
                self.places.insert(connection_id.to_string(), p.clone());
                Ok(Some(p))
            }
            _ => Ok(None),
        }
    }

    async fn peer(&self, base: &str) -> Arc<ManagementApiPusher> {
        if let Some(p) = self.peers.get(base) {
            return Arc::clone(&p);
        }
        let sdk = self.sdk.get_or_init(crate::aws::sdk_config).await;
        let p = Arc::new(ManagementApiPusher::new(sdk, base));
        self.peers.insert(base.to_string(), Arc::clone(&p));
        p
    }

    /// What a peer's answer means here: a peer that refuses connections
    /// has stopped, and the sockets it held are closed.
    fn settle<T>(&self, connection_id: &str, r: Result<T, PushError>) -> Result<T, PushError> {
        match r {
            Err(PushError::Gone | PushError::Refused(_)) => {
                self.places.remove(connection_id);
                Err(PushError::Gone)
            }
            other => other,
        }
    }
}

#[async_trait]
impl Pusher for Routed {
    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        match self.elsewhere(connection_id).await? {
            None => self.local.post(connection_id, payload).await,
            Some(base) => {
                let r = self.peer(&base).await.post(connection_id, payload).await;
                self.settle(connection_id, r)
            }
        }
    }

    /// Only this process's own connections go at once; any other takes
    /// the asynchronous path, which looks it up.
    fn post_now(&self, connection_id: &str, payload: &Payload) -> Option<Result<(), PushError>> {
        match self.local.post_now(connection_id, payload)? {
            Err(PushError::Gone) => None,
            done => Some(done),
        }
    }

    async fn get(&self, connection_id: &str) -> Result<ConnectionInfo, PushError> {
        match self.elsewhere(connection_id).await? {
            None => self.local.get(connection_id).await,
            Some(base) => {
                let r = self.peer(&base).await.get(connection_id).await;
                self.settle(connection_id, r)
            }
        }
    }

    async fn delete(&self, connection_id: &str) -> Result<(), PushError> {
        match self.elsewhere(connection_id).await? {
            None => self.local.delete(connection_id).await,
            Some(base) => {
                let r = self.peer(&base).await.delete(connection_id).await;
                self.settle(connection_id, r)
            }
        }
    }
}
