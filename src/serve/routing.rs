//! Posting to a connection wherever it is held. Several `serve` processes
//! may share one DynamoDB table, each holding its own sockets; API Gateway
//! routes a post to whichever node holds the socket, and so does this: a
//! connection this process does not hold is looked up in the store (where
//! its `$connect` recorded the `@connections` base of the process holding
//! it) and posted to there, through the Management API as any client
//! would. Only a connection that is really gone answers Gone, so only
//! that one loses its subscriptions.

use crate::gateway::registry::Registry;
use crate::push::{
    ConnectionInfo, Delivered, ManagementApiPusher, Paced, Parcel, Payload, PushError, Pusher,
};
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
    /// How posts to other processes are paced.
    paced: Paced,
}

impl Routed {
    pub fn new(
        local: Arc<dyn Pusher>,
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        me: String,
        paced: Paced,
    ) -> Routed {
        Routed {
            local,
            registry,
            store,
            me,
            places: DashMap::new(),
            peers: DashMap::new(),
            sdk: OnceCell::new(),
            paced,
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
    /// This process's own connections first, in one pass; the ones it does
    /// not hold are then looked up and posted to where they are, paced.
    async fn deliver(&self, parcels: &[Parcel]) -> Delivered {
        let mut done = self.local.deliver(parcels).await;
        if done.gone.is_empty() {
            return done;
        }
        let elsewhere: std::collections::HashSet<String> =
            std::mem::take(&mut done.gone).into_iter().collect();
        let there: Vec<Parcel> = parcels
            .iter()
            .map(|p| Parcel {
                connections: p
                    .connections
                    .iter()
                    .filter(|c| elsewhere.contains(*c))
                    .cloned()
                    .collect(),
                payloads: p.payloads.clone(),
            })
            .filter(|p| !p.connections.is_empty())
            .collect();
        let posted = self
            .paced
            .deliver(&there, |conn, payload| async move {
                self.post(&conn, payload).await
            })
            .await;
        done.merge(posted);
        done
    }

    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        match self.elsewhere(connection_id).await? {
            None => self.local.post(connection_id, payload).await,
            Some(base) => {
                let r = self.peer(&base).await.post(connection_id, payload).await;
                self.settle(connection_id, r)
            }
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
