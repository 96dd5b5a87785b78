//! The accept loop, the router, the WebSocket handshake and graceful shutdown.

use super::events::{ConnectionMeta, new_connection_id, parse_query};
use super::header_case::{HeadLog, HeadTap};
use super::http_io::{HttpResponse, full, problem, response};
use super::inbound::Watched;
use super::management::{self, aws_error};
use super::registry::ConnHandle;
use super::{Shared, socket};
use crate::protocol::problem::Problem;
use crate::protocol::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};
use aws_lambda_events::encodings::Body as LambdaBody;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(super) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let http_conns = TaskTracker::new();
    let sockets = TaskTracker::new();
    let stop_http = CancellationToken::new();
    tokio::pin!(shutdown);
    tracing::info!(
        addr = %listener.local_addr()?,
        stage = %shared.config.stage,
        "jobcast gateway listening"
    );
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        http_conns.spawn(serve_connection(
            stream,
            peer,
            Arc::clone(&shared),
            sockets.clone(),
            stop_http.clone(),
        ));
    }

    tracing::info!(
        connections = shared.registry.len(),
        "shutting down: closing every socket with 1001"
    );
    drop(listener);
    let grace = shared.config.shutdown_grace;
    shared.registry.close_all();
    stop_http.cancel();
    sockets.close();
    http_conns.close();
    if tokio::time::timeout(grace, async {
        sockets.wait().await;
        http_conns.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!("shutdown grace period over; dropping what is left");
    }
    shared.app.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// One HTTP/1.1 connection: requests routed until the peer goes, or a
/// graceful end once `stop` fires. WebSocket upgrades leave it for
/// `sockets`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    sockets: TaskTracker,
    stop: CancellationToken,
) {
    let svc_shared = Arc::clone(&shared);
    // Only an app that passes handshake headers on needs their spelling.
    let log = shared.app.keeps_header_case().then(HeadLog::new);
    let tap_log = log.clone();
    let service = service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        let sockets = sockets.clone();
        let log = log.clone();
        async move { Ok::<_, Infallible>(route(shared, req, peer, &sockets, log.as_deref()).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(HeadTap::new(stream, tap_log)), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    sockets: &TaskTracker,
    log: Option<&HeadLog>,
) -> HttpResponse {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let stage = shared.config.stage.as_str();
    match segments.as_slice() {
        ["healthz"] => response(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
        ["metrics"] => response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render() + &shared.app.render_metrics(),
        ),
        [s, "@connections", id] if *s == stage => connections(&shared, req, id).await,
        ["@connections", id] => connections(&shared, req, id).await,
        // An empty connection id: the management API's 400, not a 404.
        [s, "@connections"] if *s == stage => connections(&shared, req, "").await,
        ["@connections"] => connections(&shared, req, "").await,
        [s, "@connections", _] => {
            tracing::warn!(
                stage = s,
                configured = stage,
                "@connections call for an unknown stage"
            );
            aws_error(403, "ForbiddenException", "Forbidden")
        }
        [s] if *s == stage => upgrade(shared, req, peer, sockets, log).await,
        _ => match shared.app.http(req, peer).await {
            Some(answer) => answer,
            None => problem(Problem::new(
                404,
                "not_found",
                format!("no route for {method} {path}; the WebSocket API is at /{stage}"),
            )),
        },
    }
}

async fn connections(shared: &Shared, req: Request<Incoming>, raw_id: &str) -> HttpResponse {
    let raw_id = raw_id.to_string();
    let (parts, body) = req.into_parts();
    management::handle(shared, &parts, &raw_id, body).await
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Checks that a request is a WebSocket handshake jobcast can answer;
/// returns its `Sec-WebSocket-Key`, or the refusal to send.
fn check_handshake(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<HeaderValue, Box<HttpResponse>> {
    let headers = req.headers();
    let is_upgrade = req.method() == Method::GET
        && header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket");
    if !is_upgrade {
        let mut r = problem(Problem::new(
            426,
            "upgrade_required",
            format!(
                "/{} is the WebSocket API: connect with a WebSocket client (GET with Upgrade: websocket)",
                shared.config.stage
            ),
        ));
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Err(Box::new(r));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut r = problem(Problem::new(
            426,
            "upgrade_required",
            "Sec-WebSocket-Version must be 13",
        ));
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(r));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| {
            Box::new(problem(Problem::new(
                400,
                "bad_request",
                "missing Sec-WebSocket-Key",
            )))
        })
}

/// Who is connecting, as `$connect` and `@connections` GET report it.
fn connection_meta(shared: &Shared, headers: &HeaderMap, peer: SocketAddr) -> ConnectionMeta {
    ConnectionMeta {
        connection_id: new_connection_id(),
        connected_at: shared.config.clock.now(),
        clock: Arc::clone(&shared.config.clock),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        domain_name: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string(),
        stage: shared.config.stage.clone(),
        authorizer: Default::default(),
    }
}

/// The WebSocket handshake: `$connect` runs before the upgrade, so a refusal
/// is a real HTTP status and no socket is ever opened for it.
async fn upgrade(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    sockets: &TaskTracker,
    log: Option<&HeadLog>,
) -> HttpResponse {
    let metrics = &shared.metrics;
    let key = match check_handshake(&shared, &req) {
        Ok(key) => key,
        Err(refusal) => return *refusal,
    };
    let Some(slot) = shared.registry.try_reserve() else {
        metrics
            .connects_refused_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            max = shared.registry.max_connections(),
            "refusing connection: limit reached (429)"
        );
        return aws_error(429, "LimitExceededException", "Too many connections");
    };
    let mut meta = connection_meta(&shared, req.headers(), peer);
    let event = meta.connect_event(req.headers(), parse_query(req.uri().query()));
    let case = log
        .map(|l| {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            l.finish(req.method().as_str(), target)
        })
        .unwrap_or_default();
    let connected = shared.app.connect(event, &case).await;
    let answer = connected.response;
    meta.authorizer = connected.authorizer;
    if !(200..300).contains(&answer.status_code) {
        metrics
            .connects_refused_total
            .fetch_add(1, Ordering::Relaxed);
        let status =
            StatusCode::from_u16(answer.status_code as u16).unwrap_or(StatusCode::FORBIDDEN);
        let body = match answer.body {
            Some(LambdaBody::Text(t)) => t,
            _ => String::new(),
        };
        return response(status, "application/json", body);
    }

    let handle = Arc::new(ConnHandle::new(
        shared.config.outbound_queue,
        meta.connected_at,
        meta.source_ip.clone(),
        meta.user_agent.clone(),
    ));
    // Registered before the 101 goes out, so a POST made as soon as the
    // client sees the upgrade finds the connection.
    if !shared
        .registry
        .insert(&meta.connection_id, Arc::clone(&handle))
    {
        tracing::error!(connection_id = %meta.connection_id, "connection id of an unexpected shape");
        return aws_error(500, "InternalServerErrorException", "Internal server error");
    }
    metrics.connects_total.fetch_add(1, Ordering::Relaxed);

    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = Arc::clone(&shared);
    sockets.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (io, seen) = Watched::new(TokioIo::new(upgraded));
                let ws =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                socket::run(task_shared, ws, seen, meta, handle, slot).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                drop(slot);
                socket::finish(&task_shared, &meta, 1006, "upgrade failed").await;
            }
        }
    });
    let mut r = switching_protocols(&key);
    if let Some(p) = answer.headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        r.headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    r
}

/// Where a connection's read buffer starts: clients mostly send short
/// messages or nothing, and the buffer grows to fit a bigger frame when
/// one arrives.
const READ_BUFFER_BYTES: usize = 512;

/// API Gateway's limits, and small buffers: frames queue in memory until
/// the writer's flush (or 4 KiB), so a burst leaves in one write.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(4096)
}

fn switching_protocols(key: &HeaderValue) -> HttpResponse {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
