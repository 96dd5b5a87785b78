//! The seam between the gateway and what runs behind its WebSocket API:
//! jobcast's own handlers under `serve`, a user's routes under `emulate`.
//! Limits, close codes, `@connections`, the registry, metrics and shutdown
//! belong to the gateway and exist once; an app only answers events.

use super::header_case::HeaderCase;
use crate::handlers::owners::{self, ConnectAuth};
use crate::handlers::{Deps, websocket};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;

/// An app's answer to `$connect`.
pub struct Connected {
    /// 2xx accepts; any other status refuses the handshake with it, and
    /// the body goes back as the refusal's body. A `Sec-WebSocket-Protocol`
    /// header selects the subprotocol.
    pub response: ApiGatewayProxyResponse,
    /// What a `$connect` authorizer returned (`principalId` and its context
    /// keys): every later event of the connection carries it in
    /// `requestContext.authorizer`.
    pub authorizer: HashMap<String, Value>,
}

/// What runs behind the gateway's WebSocket API.
#[async_trait]
pub trait WebSocketApp: Send + Sync + 'static {
    /// The route key one text message selects.
    fn route_key(&self, body: &str) -> String;

    /// `$connect`, before the upgrade (a refusal is a real HTTP status).
    /// `case` spells the handshake's header names as the client sent them
    /// (empty unless [`WebSocketApp::keeps_header_case`]).
    async fn connect(&self, event: ApiGatewayWebsocketProxyRequest, case: &HeaderCase)
    -> Connected;

    /// One message. Returns what goes back to the client on this
    /// connection: a two-way route's answer, or API Gateway's own error
    /// message; None sends nothing.
    async fn message(&self, event: ApiGatewayWebsocketProxyRequest) -> Option<String>;

    /// `$disconnect`, exactly once per connection.
    async fn disconnect(&self, event: ApiGatewayWebsocketProxyRequest);

    /// Whether `connect` needs the handshake's header names as sent: an
    /// app that hands the event to code of its own, which may read
    /// `headers.Authorization`. Reading them costs a copy of each
    /// connection's head.
    fn keeps_header_case(&self) -> bool {
        false
    }

    /// Whether the gateway also serves jobcast's jobs API and demo page.
    fn serves_jobs(&self) -> bool {
        false
    }

    /// Whether one connection's messages are answered one after another
    /// (jobcast's routes: a `subscribe` is done before the next message is
    /// read). When false each message is answered on its own task, as API
    /// Gateway invokes integrations concurrently.
    fn ordered(&self) -> bool {
        false
    }

    /// The app's own metrics, in Prometheus' text format, appended to the
    /// gateway's at `/metrics`.
    fn render_metrics(&self) -> String {
        String::new()
    }
}

/// jobcast's own handlers: replies go out through `@connections` (the
/// pusher), as they do in Lambda, so `message` returns nothing.
pub struct JobcastApp {
    pub deps: Deps,
    /// This process's `@connections` base, recorded for each connection
    /// before its `$connect` runs, so other processes over the same store
    /// post to it here.
    pub place: Option<String>,
}

#[async_trait]
impl WebSocketApp for JobcastApp {
    fn route_key(&self, body: &str) -> String {
        crate::protocol::select_route(body).to_string()
    }

    /// Runs the `$connect` authorizer first, as API Gateway runs the
    /// `REQUEST` authorizer in AWS (only when owners are on: the template
    /// has no authorizer without them).
    async fn connect(
        &self,
        mut event: ApiGatewayWebsocketProxyRequest,
        _case: &HeaderCase,
    ) -> Connected {
        let verifier = self.deps.identity.as_deref();
        let authorizer = match verifier
            .map(|v| owners::authorize(Some(v), &event.headers, &event.query_string_parameters))
        {
            None => HashMap::new(),
            Some(ConnectAuth::Anonymous) => owners::owner_context(None),
            Some(ConnectAuth::Owner(sub)) => owners::owner_context(Some(&sub)),
            Some(ConnectAuth::Refused(why)) => {
                tracing::info!(reason = %why, "refusing $connect: sign-in token refused");
                return Connected {
                    response: websocket::ws_response(403, &why),
                    authorizer: HashMap::new(),
                };
            }
        };
        event.request_context.authorizer.fields = authorizer.clone();
        if let (Some(place), Some(conn)) = (&self.place, &event.request_context.connection_id) {
            let at = Utc::now();
            if let Err(e) = self.deps.store().place_connection(conn, place, at).await {
                tracing::warn!(connection_id = %conn, error = %e, "could not record where the connection is held: other processes will not reach it");
            }
        }
        Connected {
            response: websocket::connect(&self.deps, event).await,
            authorizer,
        }
    }

    async fn message(&self, event: ApiGatewayWebsocketProxyRequest) -> Option<String> {
        websocket::message(&self.deps, event).await;
        None
    }

    async fn disconnect(&self, event: ApiGatewayWebsocketProxyRequest) {
        websocket::disconnect(&self.deps, event).await;
    }

    fn serves_jobs(&self) -> bool {
        true
    }

    fn ordered(&self) -> bool {
        true
    }
}
