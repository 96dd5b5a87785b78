//! Owners over the WebSocket API: who a connection is, and following
//! everything an owner has.
//!
//! A connection carries its owner's JWT at `$connect`, in `?access_token=`
//! or as `Sec-WebSocket-Protocol: jobcast, <JWT>`. The `$connect`
//! authorizer (a `REQUEST` Lambda authorizer in AWS, the same function in
//! `serve`) verifies it and passes the owner on in its context, which API
//! Gateway hands to every later event of the connection as
//! `requestContext.authorizer`. No token is not a refusal: the connection
//! may still follow single jobs by their job tokens. An invalid one is.
//!
//! `{"action":"subscribe","owner":true}` records a follow item under the
//! owner, then subscribes the connection to each unfinished job of theirs
//! and sends its snapshot; `POST /jobs` looks up the owner's followers and
//! does the same for the new job. From there a job's progress reaches its
//! followers like any subscriber's.

use super::Deps;
use super::replies::{post, reply, reply_error, reply_unavailable};
use crate::auth::JwtVerifier;
use crate::protocol::{ErrorCode, ServerMessage, Status};
use crate::publish::snapshot_payload;
use crate::push::{Payload, PushError};
use crate::store::{Follower, JobQuery, JobRecord};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// The subprotocol a client names before its JWT, and the one answered.
pub const SUBPROTOCOL: &str = "jobcast";

/// The authorizer context key naming the connection's owner.
const OWNER_KEY: &str = "owner";

/// Unfinished jobs sent to a new follower, at most.
const FOLLOW_BACKLOG: usize = 500;

/// What the `$connect` authorizer decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectAuth {
    /// No token (or owners are off): a connection without an owner.
    Anonymous,
    /// A valid token: the connection's owner.
    Owner(String),
    /// A token that does not verify, with the reason.
    Refused(String),
}

/// The client offers [`SUBPROTOCOL`] among its subprotocols.
pub fn offers_subprotocol(headers: &http::HeaderMap) -> bool {
    subprotocols(headers).any(|p| p == SUBPROTOCOL)
}

fn subprotocols(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The JWT a `$connect` carries: `?access_token=`, or the subprotocol
/// after `jobcast`.
pub fn connect_token<'a>(
    headers: &'a http::HeaderMap,
    query: &'a aws_lambda_events::query_map::QueryMap,
) -> Option<&'a str> {
    if let Some(t) = query.first("access_token").filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let mut offered = subprotocols(headers);
    offered.find(|p| *p == SUBPROTOCOL)?;
    offered.next().filter(|t| !t.is_empty())
}

/// Decides a `$connect` from its headers and query.
pub fn authorize(
    verifier: Option<&JwtVerifier>,
    headers: &http::HeaderMap,
    query: &aws_lambda_events::query_map::QueryMap,
) -> ConnectAuth {
    let (Some(verifier), Some(token)) = (verifier, connect_token(headers, query)) else {
        return ConnectAuth::Anonymous;
    };
    match verifier.verify(token) {
        Ok(identity) => ConnectAuth::Owner(identity.sub),
        Err(why) => ConnectAuth::Refused(format!("token refused: {why}")),
    }
}

/// The authorizer context naming `owner` (principal and context key).
pub fn owner_context(owner: Option<&str>) -> HashMap<String, Value> {
    let mut c = HashMap::from([(
        "principalId".to_string(),
        Value::from(owner.unwrap_or("anonymous")),
    )]);
    if let Some(o) = owner {
        c.insert(OWNER_KEY.to_string(), Value::from(o));
    }
    c
}

/// What the `REQUEST` authorizer Lambda answers API Gateway for a
/// `$connect` to `method_arn`: Allow with the owner in its context (or
/// none), Deny (API Gateway's 403) for a refused token.
pub fn authorizer_response(decision: &ConnectAuth, method_arn: &str) -> Value {
    let (effect, context) = match decision {
        ConnectAuth::Anonymous => ("Allow", owner_context(None)),
        ConnectAuth::Owner(sub) => ("Allow", owner_context(Some(sub))),
        ConnectAuth::Refused(_) => ("Deny", owner_context(None)),
    };
    let principal = context.get("principalId").cloned().unwrap_or(Value::Null);
    let context: serde_json::Map<String, Value> = context
        .into_iter()
        .filter(|(k, _)| k != "principalId")
        .collect();
    serde_json::json!({
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect,
                "Resource": method_arn,
            }],
        },
        "context": context,
    })
}

/// Who a connection is, from the authorizer context of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// No authorizer ran: owners are off.
    NoOwners,
    /// Owners are on; the connection brought no token.
    Anonymous,
    Owner(&'a str),
}

/// The caller an event's authorizer context names.
pub fn event_caller(event: &ApiGatewayWebsocketProxyRequest) -> Caller<'_> {
    let fields = &event.request_context.authorizer.fields;
    match fields.get(OWNER_KEY).and_then(Value::as_str) {
        Some(o) if !o.is_empty() => Caller::Owner(o),
        _ if fields.is_empty() => Caller::NoOwners,
        _ => Caller::Anonymous,
    }
}

/// `{"action":"subscribe","owner":true}`.
pub(super) async fn follow(
    deps: &Deps,
    conn: &str,
    caller: Caller<'_>,
    tag: Option<&str>,
    at: DateTime<Utc>,
) {
    let owner = match caller {
        Caller::Owner(o) => Some(o),
        _ => None,
    };
    let Some(owner) = owner else {
        let message = if caller == Caller::Anonymous {
            "following your jobs needs your sign-in token at connect: ?access_token=<JWT> or Sec-WebSocket-Protocol: jobcast, <JWT>"
        } else {
            "following an owner's jobs needs owners, and this server has none (no JWT issuer configured)"
        };
        reply_error(deps, conn, ErrorCode::Unauthorized, None, message).await;
        return;
    };
    // Record first, list second: a job created in between is either in the
    // list or finds this follower when it is announced.
    if let Err(e) = deps.store().follow_owner(owner, tag, conn, at).await {
        reply_unavailable(deps, conn, None, &e).await;
        return;
    }
    reply(deps, conn, ServerMessage::Subscribed { owner: true, tag }).await;
    let jobs = match unfinished(deps, owner, tag).await {
        Ok(j) => j,
        Err(e) => {
            reply_unavailable(deps, conn, None, &e).await;
            return;
        }
    };
    for job in jobs.iter().rev() {
        if let Err(e) = deps.store().subscribe(&job.snapshot.job_id, conn, at).await {
            reply_unavailable(deps, conn, Some(&job.snapshot.job_id), &e).await;
            return;
        }
        // Read again after subscribing: an update in between is then
        // either in this snapshot or delivered to the subscription.
        if let Ok(Some(now)) = deps.store().get_job(&job.snapshot.job_id).await {
            let shown = deps.publisher.shown(&now).await;
            post(deps, conn, snapshot_payload(&shown.snapshot)).await;
        }
    }
}

/// The owner's queued and running jobs (with `tag`), newest first.
async fn unfinished(
    deps: &Deps,
    owner: &str,
    tag: Option<&str>,
) -> Result<Vec<JobRecord>, crate::store::StoreError> {
    let mut out = Vec::new();
    for status in [Status::Running, Status::Queued] {
        let mut query = JobQuery {
            status: Some(status),
            tag: tag.map(str::to_owned),
            limit: 100,
            after: None,
        };
        loop {
            let page = deps.store().owner_jobs(owner, &query).await?;
            out.extend(page.jobs);
            match page.next {
                Some(next) if out.len() < FOLLOW_BACKLOG => query.after = Some(next),
                _ => break,
            }
        }
    }
    out.sort_by_key(|j| std::cmp::Reverse(crate::store::owner_order_key(j)));
    out.truncate(FOLLOW_BACKLOG);
    Ok(out)
}

/// Tells the owner's followers of a job just created: each is subscribed
/// to it and sent its first snapshot. A follower whose connection is gone
/// loses its follow; a store failure is logged (the job exists either way,
/// and `sync` or a reload finds it).
pub async fn announce(deps: &Deps, job: &JobRecord) {
    let Some(owner) = job.owner.as_deref() else {
        return;
    };
    let followers = match deps.store().owner_followers(owner).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(owner, job_id = %job.snapshot.job_id, error = %e, "could not announce a new job to its owner's followers");
            return;
        }
    };
    let payload = snapshot_payload(&deps.publisher.shown(job).await.snapshot);
    for follower in followers.iter().filter(|f| f.wants(job)) {
        announce_to(deps, owner, follower, job, payload.clone()).await;
    }
}

async fn announce_to(
    deps: &Deps,
    owner: &str,
    follower: &Follower,
    job: &JobRecord,
    payload: Payload,
) {
    let conn = &follower.connection_id;
    let job_id = &job.snapshot.job_id;
    if let Err(e) = deps.store().subscribe(job_id, conn, deps.clock.now()).await {
        tracing::warn!(connection_id = %conn, job_id = %job_id, error = %e, "could not subscribe a follower");
        return;
    }
    match deps.publisher.pusher().post(conn, payload).await {
        Ok(()) => {}
        Err(PushError::Gone) => {
            let _ = deps.store().unsubscribe(job_id, conn).await;
            let _ = deps.store().unfollow_owner(owner, follower).await;
        }
        Err(e) => tracing::debug!(connection_id = %conn, error = %e, "announcement not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::query_map::QueryMap;

    fn headers(protocols: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_str(protocols).expect("header"),
        );
        h
    }

    #[test]
    fn the_token_comes_from_the_query_or_after_the_jobcast_subprotocol() {
        let none = QueryMap::default();
        let q: QueryMap = "access_token=abc".parse().expect("query");
        assert_eq!(connect_token(&http::HeaderMap::new(), &q), Some("abc"));
        assert_eq!(
            connect_token(&headers("jobcast, eyJ.x.y"), &none),
            Some("eyJ.x.y")
        );
        assert_eq!(connect_token(&headers("eyJ.x.y"), &none), None);
        assert_eq!(connect_token(&headers("jobcast"), &none), None);
        assert!(offers_subprotocol(&headers("chat, jobcast, t")));
        assert!(!offers_subprotocol(&headers("chat")));
    }

    #[test]
    fn the_authorizer_allows_with_the_owner_and_denies_a_refused_token() {
        let arn = "arn:aws:execute-api:eu-west-1:1:abc/dev/$connect";
        let allow = authorizer_response(&ConnectAuth::Owner("alice".into()), arn);
        assert_eq!(allow["principalId"], "alice");
        assert_eq!(allow["context"]["owner"], "alice");
        assert_eq!(allow["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(allow["policyDocument"]["Statement"][0]["Resource"], arn);
        let anonymous = authorizer_response(&ConnectAuth::Anonymous, arn);
        assert_eq!(anonymous["principalId"], "anonymous");
        assert!(anonymous["context"].get("owner").is_none());
        let deny = authorizer_response(&ConnectAuth::Refused("expired".into()), arn);
        assert_eq!(deny["policyDocument"]["Statement"][0]["Effect"], "Deny");
    }
}
