//! The seam between the gateway and what runs behind it:
//! jobcast's own handlers under `serve`, a user's routes under `emulate`.
//! Limits, close codes, `@connections`, the registry, metrics and shutdown
//! belong to the gateway and exist once; an app only answers events.

use super::header_case::HeaderCase;
use super::http_io::{HttpRequest, HttpResponse};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

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

    /// Any HTTP request that is not the gateway's own (the WebSocket
    /// API, `@connections`, `/healthz`, `/metrics`): the app's answer, or
    /// None for the gateway's 404.
    async fn http(&self, request: HttpRequest, peer: SocketAddr) -> Option<HttpResponse> {
        let _ = (request, peer);
        None
    }

    /// Called once the gateway has closed every socket at shutdown: the
    /// app's own work ends here.
    async fn shutdown(&self) {}

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
