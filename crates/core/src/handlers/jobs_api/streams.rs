//! `GET /jobs/{jobId}/streams/{name}?from=N&limit=L`: a stream's chunks by
//! index, for clients that poll (CONTRACT section 10), under the same
//! credentials as `GET /jobs/{jobId}`.

use super::problem::{Problem, json_response, store_problem};
use super::{Deps, access};
use crate::store::streams::valid_name;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use http::{HeaderValue, header};
use serde_json::json;

/// Most chunks one page holds, and the default.
pub const MAX_PAGE_CHUNKS: u64 = 1000;
/// A page stops before this many bytes of chunks.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(400, "bad_request", detail)
}

/// A whole-number query parameter within `min..=max`, or `default`.
fn number(
    req: &ApiGatewayV2httpRequest,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, Problem> {
    match req.query_string_parameters.first(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "{name} must be a whole number from {min} to {max}, got '{v}'"
                ))
            }),
    }
}

pub(super) async fn page(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
    name: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    if !valid_name(name) {
        return Err(bad(format!(
            "'{name}' is not a stream name: [a-z][a-z0-9_-]{{0,31}}"
        )));
    }
    let from = number(req, "from", 0, 0, u64::MAX)?;
    let limit = number(req, "limit", MAX_PAGE_CHUNKS, 1, MAX_PAGE_CHUNKS)?;
    let job = access::load(deps, req, id, access::Need::Read).await?;
    let page = deps
        .store()
        .read_chunks(id, name, from, limit as usize, MAX_PAGE_BYTES)
        .await
        .map_err(store_problem)?;
    let terminal = job.snapshot.status.is_terminal();
    // The job was read before the chunks: a terminal job's lengths are final.
    let length = job.snapshot.streams.get(name).copied().unwrap_or(0);
    let complete = terminal && page.next >= length;
    let mut r = json_response(
        200,
        &json!({
            "jobId": id,
            "stream": name,
            "from": from,
            "chunks": page.chunks,
            "next": page.next,
            "complete": complete,
        }),
    );
    if !terminal {
        r.headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(r)
}
