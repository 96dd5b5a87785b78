//! Building the events API Gateway sends to its integrations, from live
//! sockets and HTTP requests, so the handlers receive exactly what they
//! would receive in Lambda.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use base64::Engine;
use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};
use jobcast_core::clock::SharedClock;
use rand::RngCore;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The API id the local gateway reports in every event.
pub const LOCAL_API_ID: &str = "jobcastlocal";

/// A fresh connection id shaped like API Gateway's: the standard base64 of
/// 11 random bytes (15 characters and one `=`).
pub fn new_connection_id() -> String {
    let mut b = [0u8; 11];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A request id shaped like API Gateway's (base64 of 6 bytes, 8 characters).
fn new_request_id() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `requestTime` in API Gateway's format: `24/Nov/2026:17:00:00 +0000`.
fn request_time(t: DateTime<Utc>) -> String {
    t.format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

/// What stays the same for every event of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionMeta {
    /// `requestContext.connectionId`.
    pub connection_id: String,
    /// `requestContext.connectedAt`.
    pub connected_at: DateTime<Utc>,
    /// `requestContext.identity.sourceIp`.
    pub source_ip: String,
    /// `requestContext.identity.userAgent`.
    pub user_agent: Option<String>,
    /// `requestContext.domainName`: the handshake's `Host`.
    pub domain_name: String,
    /// `requestContext.stage`.
    pub stage: String,
    /// What the `$connect` authorizer returned, in every later event.
    pub authorizer: HashMap<String, serde_json::Value>,
    /// Where each event's time (`requestTimeEpoch`) comes from.
    pub clock: SharedClock,
}

impl ConnectionMeta {
    fn base(&self, event_type: &str, route_key: &str) -> ApiGatewayWebsocketProxyRequest {
        let now = self.clock.now();
        let mut e = ApiGatewayWebsocketProxyRequest::default();
        let c = &mut e.request_context;
        c.route_key = Some(route_key.to_string());
        c.event_type = Some(event_type.to_string());
        c.connection_id = Some(self.connection_id.clone());
        c.connected_at = self.connected_at.timestamp_millis();
        c.request_time_epoch = now.timestamp_millis();
        c.request_time = Some(request_time(now));
        c.domain_name = Some(self.domain_name.clone());
        c.stage = Some(self.stage.clone());
        c.apiid = Some(LOCAL_API_ID.to_string());
        c.request_id = Some(new_request_id());
        c.extended_request_id = c.request_id.clone();
        c.message_direction = Some("IN".to_string());
        c.identity.source_ip = Some(self.source_ip.clone());
        c.identity.user_agent = self.user_agent.clone();
        c.authorizer.fields = self.authorizer.clone();
        e
    }

    /// The `$connect` event: handshake headers and query string included.
    pub fn connect_event(
        &self,
        headers: &HeaderMap,
        query: HashMap<String, Vec<String>>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut e = self.base("CONNECT", "$connect");
        e.headers = headers.clone();
        e.multi_value_headers = headers.clone();
        e.query_string_parameters = query.clone().into();
        e.multi_value_query_string_parameters = query.into();
        e.http_method = Some(Method::GET);
        e.request_context.http_method = Some(Method::GET);
        e
    }

    /// A `MESSAGE` event for one text frame, on the route it selected.
    pub fn message_event(&self, route_key: &str, body: &str) -> ApiGatewayWebsocketProxyRequest {
        let mut e = self.base("MESSAGE", route_key);
        e.request_context.message_id = Some(new_request_id());
        e.body = Some(body.to_string());
        e.is_base64_encoded = false;
        e
    }

    /// The `$disconnect` event, with who closed and why.
    pub fn disconnect_event(&self, code: u16, reason: &str) -> ApiGatewayWebsocketProxyRequest {
        let mut e = self.base("DISCONNECT", "$disconnect");
        e.request_context.disconnect_status_code = Some(code as i64);
        e.request_context.disconnect_reason = Some(reason.to_string());
        e
    }
}

/// An event as API Gateway puts it on the wire to a Lambda function:
/// `queryStringParameters` single-valued (the last value of each name, the
/// lists are in `multiValueQueryStringParameters`), and no field that is
/// null or an empty map of headers, query, path or stage variables.
pub fn websocket_event_json(event: &ApiGatewayWebsocketProxyRequest) -> serde_json::Value {
    use serde_json::Value;
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(q) = v
        .get_mut("queryStringParameters")
        .and_then(Value::as_object_mut)
    {
        for value in q.values_mut() {
            if let Value::Array(items) = value {
                *value = items.pop().unwrap_or(Value::Null);
            }
        }
    }
    fn prune(v: &mut Value) {
        if let Value::Object(m) = v {
            m.retain(|_, x| !x.is_null());
            for key in [
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "stageVariables",
            ] {
                if m.get(key)
                    .and_then(Value::as_object)
                    .is_some_and(|o| o.is_empty())
                {
                    m.remove(key);
                }
            }
            m.values_mut().for_each(prune);
        }
    }
    prune(&mut v);
    v
}

/// Parses a query string into the multi-value map API Gateway provides.
pub fn parse_query(query: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        };
        map.entry(decode(k)).or_default().push(decode(v));
    }
    map
}

/// An HTTP API (payload format 2.0) event for a jobs API request.
pub fn http_event(
    parts: &http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
    job_id: Option<&str>,
    now: DateTime<Utc>,
) -> ApiGatewayV2httpRequest {
    let path = parts.uri.path().to_string();
    let mut e = ApiGatewayV2httpRequest::default();
    e.version = Some("2.0".into());
    e.route_key = Some(match job_id {
        Some(_) if path.trim_end_matches('/').ends_with("/updates") => {
            format!("{} /jobs/{{jobId}}/updates", parts.method)
        }
        Some(_) => format!("{} /jobs/{{jobId}}", parts.method),
        None => format!("{} /jobs", parts.method),
    });
    e.raw_path = Some(path.clone());
    e.raw_query_string = Some(parts.uri.query().unwrap_or("").to_string());
    e.headers = parts.headers.clone();
    e.query_string_parameters = parse_query(parts.uri.query()).into();
    if let Some(id) = job_id {
        e.path_parameters.insert("jobId".into(), id.to_string());
    }
    match std::str::from_utf8(body) {
        Ok(s) => e.body = Some(s.to_string()),
        Err(_) => {
            e.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
            e.is_base64_encoded = true;
        }
    }
    let c = &mut e.request_context;
    c.route_key = e.route_key.clone();
    c.stage = Some("$default".into());
    c.apiid = Some(LOCAL_API_ID.into());
    c.request_id = Some(new_request_id());
    c.domain_name = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    c.time = Some(request_time(now));
    c.time_epoch = now.timestamp_millis();
    c.http.method = parts.method.clone();
    c.http.path = Some(path);
    c.http.protocol = Some(format!("{:?}", parts.version));
    c.http.source_ip = Some(peer.ip().to_string());
    c.http.user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_aws_shaped() {
        for _ in 0..100 {
            let id = new_connection_id();
            assert_eq!(id.len(), crate::protocol::CONNECTION_ID_LEN);
            assert!(id.ends_with('='));
            assert!(
                id[..15]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            );
        }
    }

    fn meta() -> ConnectionMeta {
        ConnectionMeta {
            connection_id: new_connection_id(),
            connected_at: Utc::now(),
            clock: jobcast_core::clock::system(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
            domain_name: "localhost:8080".into(),
            stage: "dev".into(),
            authorizer: HashMap::from([("principalId".to_string(), "alice".into())]),
        }
    }

    #[test]
    fn events_on_the_wire_are_shaped_as_aws_sends_them() {
        let mut headers = HeaderMap::new();
        headers.insert("auth", http::HeaderValue::from_static("x"));
        let connect = meta().connect_event(&headers, parse_query(Some("a=1&a=2&b=3")));
        let v = websocket_event_json(&connect);
        assert_eq!(
            v["queryStringParameters"],
            serde_json::json!({"a": "2", "b": "3"})
        );
        assert_eq!(
            v["multiValueQueryStringParameters"],
            serde_json::json!({"a": ["1", "2"], "b": ["3"]})
        );
        assert_eq!(v["headers"]["auth"], "x");
        let c = &v["requestContext"];
        assert_eq!(c["eventType"], "CONNECT");
        assert_eq!(c["routeKey"], "$connect");
        assert_eq!(c["authorizer"]["principalId"], "alice");
        assert_eq!(c["identity"]["sourceIp"], "127.0.0.1");
        for key in [
            "connectedAt",
            "requestTimeEpoch",
            "requestTime",
            "requestId",
            "extendedRequestId",
            "domainName",
            "stage",
            "apiId",
            "connectionId",
            "messageDirection",
        ] {
            assert!(!c[key].is_null(), "{key} missing");
        }
        assert!(c.get("error").is_none(), "null fields are left out");
        assert!(v.get("pathParameters").is_none());

        let m = websocket_event_json(&meta().message_event("sendmessage", "{}"));
        assert_eq!(m["body"], "{}");
        assert_eq!(m["isBase64Encoded"], false);
        assert_eq!(m["requestContext"]["routeKey"], "sendmessage");
        assert!(!m["requestContext"]["messageId"].is_null());
        assert!(m.get("headers").is_none() && m.get("queryStringParameters").is_none());

        let d = websocket_event_json(&meta().disconnect_event(1001, "Going away"));
        assert_eq!(d["requestContext"]["disconnectStatusCode"], 1001);
        assert_eq!(d["requestContext"]["disconnectReason"], "Going away");
    }

    #[test]
    fn query_parsing_decodes_once() {
        let q = parse_query(Some("jobId=a%2Bb&token=1.x%3D&empty&jobId=2"));
        assert_eq!(q["jobId"], vec!["a+b".to_string(), "2".to_string()]);
        assert_eq!(q["token"], vec!["1.x=".to_string()]);
        assert_eq!(q["empty"], vec![String::new()]);
    }
}
