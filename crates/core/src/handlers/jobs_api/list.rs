//! `GET /jobs`: the caller's own jobs, newest first, filtered by `status`
//! and `tag`, `limit` (1–100, default 20) at a time, the next page behind
//! an opaque `cursor`. Only with owners on: without them no job has an
//! owner to list by.

use super::problem::{Problem, json_response, store_problem};
use super::{Deps, access};
use crate::protocol::Status;
use crate::store::JobQuery;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use serde_json::{Value, json};

/// Default and largest page.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(400, "bad_request", detail)
}

fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(cursor: &str) -> Result<String, Problem> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad("cursor is not one this API gave out; start again without it"))?;
    let key = String::from_utf8(bytes).map_err(|_| bad("cursor is not one this API gave out"))?;
    // An order key: a timestamp, '#', a job id.
    match key.split_once('#') {
        Some((t, id)) if chrono::DateTime::parse_from_rfc3339(t).is_ok() && !id.is_empty() => {
            Ok(key)
        }
        _ => Err(bad(
            "cursor is not one this API gave out; start again without it",
        )),
    }
}

/// The query a request asks for, or the 400 that says what is wrong.
fn query(req: &ApiGatewayV2httpRequest) -> Result<JobQuery, Problem> {
    let q = &req.query_string_parameters;
    let status = match q.first("status") {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            bad(format!(
                "status must be queued, running, succeeded, failed or cancelled, got '{s}'"
            ))
        })?),
    };
    let limit = match q.first("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit must be 1 to {MAX_LIMIT}, got '{l}'"))),
        },
    };
    let tag = q.first("tag").map(str::to_string);
    let after = q.first("cursor").map(decode_cursor).transpose()?;
    Ok(JobQuery {
        status,
        tag,
        limit,
        after,
    })
}

pub(super) async fn list(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let Some(owner) = access::creator(deps, req)? else {
        return Err(Problem::new(
            404,
            "not_found",
            "listing jobs needs owners on (serve --jwt-issuer): without them no job has an owner",
        ));
    };
    let query = query(req)?;
    let page = deps
        .store()
        .owner_jobs(&owner, &query)
        .await
        .map_err(store_problem)?;
    let mut jobs: Vec<Value> = Vec::with_capacity(page.jobs.len());
    for j in &page.jobs {
        jobs.push(deps.publisher.shown(j).await.public_view());
    }
    let next = page.next.as_deref().map(encode_cursor);
    // Where to follow them live (subscribe with owner: true), for a page
    // that has not created a job yet.
    let websocket_url = super::websocket_base(deps, req);
    Ok(json_response(
        200,
        &json!({ "jobs": jobs, "nextCursor": next, "websocketUrl": websocket_url }),
    ))
}
