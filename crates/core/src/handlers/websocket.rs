//! The WebSocket API routes: `$connect`, `$disconnect`, and the message
//! routes (`subscribe`, `unsubscribe`, `sync`, `ping`, `$default`).
//!
//! Replies to messages go out through the `Pusher` (the management API), so
//! the same code answers clients in Lambda and in `jobcast serve`.

use super::Deps;
use super::replies::{post, reply, reply_error, reply_unavailable};
use crate::protocol::{ActionError, ClientAction, ErrorCode, ServerMessage};
use crate::publish::{chunk_payloads, snapshot_payload};
use crate::token::TokenError;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;

/// A response with a status code and a short JSON body, as a route answers API Gateway.
pub fn ws_response(status: i64, message: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.body = Some(Body::Text(
        serde_json::json!({ "message": message }).to_string(),
    ));
    r
}

fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    event
        .request_context
        .connection_id
        .as_deref()
        .filter(|c| !c.is_empty())
}

fn connected_at(event: &ApiGatewayWebsocketProxyRequest) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(event.request_context.connected_at)
        .single()
        .unwrap_or_else(Utc::now)
}

/// `$connect`: checks the job token, if any, and records the subscription.
/// Answers 200 to accept, 401 when a `jobId` comes without `token`, 403 for
/// a bad, expired or foreign token, 404 for an unknown job.
pub async fn connect(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(conn) = connection_id(&event) else {
        return ws_response(400, "event has no connectionId");
    };
    let q = &event.query_string_parameters;
    let job_id = q.first("jobId").filter(|s| !s.is_empty());
    let token = q.first("token").filter(|s| !s.is_empty());
    let Some(job_id) = job_id else {
        if token.is_some() {
            tracing::info!(
                connection_id = conn,
                "refusing $connect: token given without jobId"
            );
            return ws_response(400, "token given without jobId");
        }
        tracing::debug!(connection_id = conn, "connected");
        return accepted(&event);
    };
    let Some(token) = token else {
        tracing::info!(connection_id = conn, job_id, "refusing $connect: no token");
        return ws_response(401, "a jobId needs the token issued by POST /jobs");
    };
    if let Err(e) = deps
        .tokens
        .verify(job_id, token, deps.clock.now().timestamp())
    {
        tracing::info!(connection_id = conn, job_id, reason = %e, "refusing $connect");
        return ws_response(403, &e.to_string());
    }
    match deps.store().get_job(job_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::info!(
                connection_id = conn,
                job_id,
                "refusing $connect: job not found"
            );
            return ws_response(404, "job not found");
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed during $connect");
            return ws_response(500, "store unavailable");
        }
    }
    if let Err(e) = deps
        .store()
        .subscribe(job_id, conn, connected_at(&event))
        .await
    {
        tracing::error!(error = %e, "store failed during $connect");
        return ws_response(500, "store unavailable");
    }
    tracing::debug!(connection_id = conn, job_id, "connected and subscribed");
    accepted(&event)
}

/// The 200 that accepts a `$connect`, selecting the `jobcast` subprotocol
/// when the client offered it (as it does to carry its JWT).
fn accepted(event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let mut r = ws_response(200, "connected");
    if super::owners::offers_subprotocol(&event.headers) {
        r.headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(super::owners::SUBPROTOCOL),
        );
    }
    r
}

/// `$disconnect`: removes every subscription of the connection.
pub async fn disconnect(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(conn) = connection_id(&event) else {
        return ws_response(400, "event has no connectionId");
    };
    match deps.store().remove_connection(conn).await {
        Ok(n) => {
            let c = &event.request_context;
            tracing::debug!(
                connection_id = conn,
                subscriptions = n,
                code = c.disconnect_status_code.unwrap_or(1005),
                reason = c.disconnect_reason.as_deref().unwrap_or(""),
                "disconnected"
            );
            ws_response(200, "disconnected")
        }
        Err(e) => {
            tracing::error!(connection_id = conn, error = %e, "could not remove subscriptions");
            ws_response(500, "store unavailable")
        }
    }
}

/// Every message route. Replies are posted to the sender's connection.
pub async fn message(
    deps: &Deps,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(conn) = connection_id(&event).map(str::to_owned) else {
        return ws_response(400, "event has no connectionId");
    };
    let body = event.body.as_deref().unwrap_or("");
    let action = match ClientAction::parse(body) {
        Ok(a) => a,
        Err(e) => {
            let code = match e {
                ActionError::BadRequest(_) => ErrorCode::BadRequest,
                ActionError::UnknownAction(_) => ErrorCode::UnknownAction,
            };
            reply_error(deps, &conn, code, None, &e.to_string()).await;
            return ws_response(200, "ok");
        }
    };
    match action {
        ClientAction::Ping => {
            reply(
                deps,
                &conn,
                ServerMessage::Pong {
                    connection_id: &conn,
                },
            )
            .await;
        }
        ClientAction::Subscribe {
            job_id,
            token,
            streams,
        } => {
            let at = connected_at(&event);
            subscribe(deps, &conn, &job_id, &token, at, &streams).await;
        }
        ClientAction::Replay {
            job_id,
            stream,
            from,
            token,
        } => replay(deps, &conn, &job_id, &stream, from, token.as_deref()).await,
        ClientAction::FollowOwner { tag } => {
            let caller = super::owners::event_caller(&event);
            super::owners::follow(deps, &conn, caller, tag.as_deref(), connected_at(&event)).await;
        }
        ClientAction::Unsubscribe { job_id } => {
            if let Err(e) = deps.store().unsubscribe(&job_id, &conn).await {
                reply_unavailable(deps, &conn, Some(&job_id), &e).await;
            } else {
                reply(deps, &conn, ServerMessage::Unsubscribed { job_id: &job_id }).await;
            }
        }
        ClientAction::Sync => sync(deps, &conn).await,
    }
    ws_response(200, "ok")
}

async fn subscribe(
    deps: &Deps,
    conn: &str,
    job_id: &str,
    token: &str,
    at: DateTime<Utc>,
    streams: &BTreeMap<String, u64>,
) {
    if let Err(e) = deps
        .tokens
        .verify(job_id, token, deps.clock.now().timestamp())
    {
        let msg = match e {
            TokenError::Expired => "token has expired; ask the jobs API for a new one",
            _ => "token is not valid for this job",
        };
        reply_error(deps, conn, ErrorCode::Forbidden, Some(job_id), msg).await;
        return;
    }
    // Record first, read second: an update (or a chunk) published in
    // between is either in what is read below or delivered to the new
    // subscription (a chunk may then come twice; clients drop the repeat).
    let names: Vec<String> = streams.keys().cloned().collect();
    if let Err(e) = deps
        .store()
        .subscribe_streams(job_id, conn, at, &names)
        .await
    {
        reply_unavailable(deps, conn, Some(job_id), &e).await;
        return;
    }
    match deps.store().get_job(job_id).await {
        Ok(Some(job)) => {
            let shown = deps.publisher.shown(&job).await;
            post(deps, conn, snapshot_payload(&shown.snapshot)).await;
            for (stream, from) in streams {
                let end = job.snapshot.streams.get(stream).copied().unwrap_or(0);
                send_chunks(deps, conn, job_id, stream, *from, end, false).await;
            }
        }
        Ok(None) => {
            let _ = deps.store().unsubscribe(job_id, conn).await;
            reply_error(
                deps,
                conn,
                ErrorCode::NotFound,
                Some(job_id),
                "job not found",
            )
            .await;
        }
        Err(e) => {
            reply_unavailable(deps, conn, Some(job_id), &e).await;
        }
    }
}

/// Most chunks read at once for a catch-up or a replay.
const CATCH_UP_PAGE: usize = 1000;
/// Most bytes of chunks read at once for a catch-up or a replay.
const CATCH_UP_BYTES: usize = 1 << 20;

/// Sends the chunks of `stream` from `from` up to `end` (its length when the
/// job was read; later ones are pushed live) as `chunks` messages. When
/// there are none, one empty message if `always` (a replay's answer),
/// nothing otherwise (a subscribe's catch-up).
async fn send_chunks(
    deps: &Deps,
    conn: &str,
    job_id: &str,
    stream: &str,
    from: u64,
    end: u64,
    always: bool,
) {
    let mut next = from;
    let mut sent = false;
    while next < end {
        let page = match deps
            .store()
            .read_chunks(job_id, stream, next, CATCH_UP_PAGE, CATCH_UP_BYTES)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                reply_unavailable(deps, conn, Some(job_id), &e).await;
                return;
            }
        };
        if page.chunks.is_empty() {
            break;
        }
        for payload in chunk_payloads(job_id, stream, page.from, &page.chunks) {
            post(deps, conn, payload).await;
        }
        sent = true;
        next = page.next;
    }
    if !sent && always {
        for payload in chunk_payloads(job_id, stream, from, &[]) {
            post(deps, conn, payload).await;
        }
    }
}

/// `replay`: every chunk of `stream` from `from` to its end, for a
/// connection that follows the job (by its handshake, `subscribe` or an
/// owner follow) or that carries the job's token.
async fn replay(
    deps: &Deps,
    conn: &str,
    job_id: &str,
    stream: &str,
    from: u64,
    token: Option<&str>,
) {
    let job = match deps.store().get_job(job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            reply_error(
                deps,
                conn,
                ErrorCode::NotFound,
                Some(job_id),
                "job not found",
            )
            .await;
            return;
        }
        Err(e) => {
            reply_unavailable(deps, conn, Some(job_id), &e).await;
            return;
        }
    };
    let by_token = token.is_some_and(|t| {
        deps.tokens
            .verify(job_id, t, deps.clock.now().timestamp())
            .is_ok()
    });
    let allowed = by_token || follows(deps, conn, &job).await;
    if !allowed {
        reply_error(
            deps,
            conn,
            ErrorCode::Forbidden,
            Some(job_id),
            "this connection does not follow the job: subscribe first, or send the job's token",
        )
        .await;
        return;
    }
    let end = job.snapshot.streams.get(stream).copied().unwrap_or(0);
    send_chunks(deps, conn, job_id, stream, from, end, true).await;
}

/// Whether `conn` follows `job`: subscribed to it, or following its owner.
async fn follows(deps: &Deps, conn: &str, job: &crate::store::JobRecord) -> bool {
    let job_id = job.snapshot.job_id.as_str();
    if deps
        .store()
        .connection_jobs(conn)
        .await
        .is_ok_and(|jobs| jobs.iter().any(|j| j == job_id))
    {
        return true;
    }
    match &job.owner {
        Some(owner) => deps
            .store()
            .owner_followers(owner)
            .await
            .is_ok_and(|fs| fs.iter().any(|f| f.connection_id == conn && f.wants(job))),
        None => false,
    }
}

async fn sync(deps: &Deps, conn: &str) {
    let jobs = match deps.store().connection_jobs(conn).await {
        Ok(j) => j,
        Err(e) => {
            reply_unavailable(deps, conn, None, &e).await;
            return;
        }
    };
    for job_id in jobs {
        match deps.store().get_job(&job_id).await {
            Ok(Some(job)) => {
                let shown = deps.publisher.shown(&job).await;
                post(deps, conn, snapshot_payload(&shown.snapshot)).await
            }
            Ok(None) => {
                let _ = deps.store().unsubscribe(&job_id, conn).await;
            }
            Err(e) => {
                reply_unavailable(deps, conn, Some(&job_id), &e).await;
            }
        }
    }
}
