//! Answers to a WebSocket client, posted to its connection through the
//! `Pusher` (the management API), as every route handler sends them.

use super::Deps;
use crate::protocol::{ErrorCode, ServerMessage};
use crate::push::Payload;

/// Logs a store failure and tells the client, without closing its connection.
pub(super) async fn reply_unavailable(
    deps: &Deps,
    conn: &str,
    job_id: Option<&str>,
    error: &crate::store::StoreError,
) {
    tracing::error!(connection_id = conn, job_id, %error, "store failed");
    reply_error(deps, conn, ErrorCode::Internal, job_id, "store unavailable").await;
}

pub(super) async fn reply(deps: &Deps, conn: &str, msg: ServerMessage<'_>) {
    post(deps, conn, Payload::text(msg.to_json())).await;
}

pub(super) async fn reply_error(
    deps: &Deps,
    conn: &str,
    code: ErrorCode,
    job_id: Option<&str>,
    message: &str,
) {
    reply(
        deps,
        conn,
        ServerMessage::Error {
            code,
            job_id,
            message,
        },
    )
    .await;
}

pub(super) async fn post(deps: &Deps, conn: &str, payload: Payload) {
    if let Err(e) = deps.publisher.pusher().post(conn, payload).await {
        // The client may have gone between its message and our answer.
        tracing::debug!(connection_id = conn, error = %e, "reply not delivered");
    }
}
