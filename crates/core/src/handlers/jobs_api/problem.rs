//! Answers of the jobs API: RFC 9457 problem documents and JSON responses.

use crate::store::StoreError;
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use http::{HeaderValue, header};
use serde_json::Value;

pub use crate::protocol::problem::Problem;

/// A problem as the HTTP API event's response.
pub(super) fn problem_response(p: Problem) -> ApiGatewayV2httpResponse {
    let mut r = response(p.status, "application/problem+json", p.body());
    for (name, value) in p.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers.insert(name, v);
        }
    }
    r
}

/// The `Retry-After` of an `owner_limit` 429: a guess at how soon one of
/// the owner's jobs ends, short enough for a progress bar's patience.
pub const OWNER_LIMIT_RETRY_SECS: u64 = 5;

pub(super) fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::NotFound(id) => Problem::new(404, "not_found", format!("job {id} not found")),
        StoreError::Terminal { job_id, status } => Problem::new(
            409,
            "terminal",
            format!("job {job_id} already ended {}", status.as_str()),
        ),
        StoreError::PercentBackwards { .. } | StoreError::InvalidUpdate(_) => {
            Problem::new(422, "invalid_update", e.to_string())
        }
        StoreError::TooLarge { .. } => Problem::new(413, "payload_too_large", e.to_string()),
        StoreError::Conflict { .. } => Problem::new(409, "conflict", e.to_string()),
        StoreError::StreamFull { stream, limit, .. } => {
            let mut p = Problem::new(
                422,
                "stream_full",
                format!("stream '{stream}' would pass its limit of {limit}; nothing was appended"),
            );
            p.extra.push(("stream", Value::from(stream)));
            p.extra.push(("limit", Value::from(limit)));
            p
        }
        StoreError::TooManyStreams { limit, .. } => Problem::new(
            422,
            "bad_stream",
            format!("a job has at most {limit} streams; nothing was appended"),
        ),
        StoreError::TooManyFiles { limit, .. } => Problem::new(
            422,
            "too_many_files",
            format!("a job uploads at most {limit} distinct file names"),
        ),
        StoreError::FileMissing { name, why, .. } => {
            let mut p = Problem::new(
                422,
                "file_missing",
                format!(
                    "file '{name}' cannot be attached: {why}; upload it first (POST /jobs/{{id}}/files, then PUT its bytes); nothing of the update was applied"
                ),
            );
            p.extra.push(("file", Value::from(name)));
            p
        }
        StoreError::OwnerLimit { limit, .. } => {
            let mut p = Problem::new(
                429,
                "owner_limit",
                format!(
                    "you already have {limit} unfinished jobs, the most allowed; retry once one has ended"
                ),
            );
            p.headers
                .push((header::RETRY_AFTER, OWNER_LIMIT_RETRY_SECS.to_string()));
            p.extra.push(("limit", Value::from(limit)));
            p
        }
        StoreError::Throttled(_) => {
            tracing::warn!(error = %e, "store throttled in jobs API");
            let mut p = Problem::new(429, "throttled", "the job store is throttling; retry");
            p.headers.push((header::RETRY_AFTER, "1".into()));
            p
        }
        other => {
            tracing::error!(error = %other, "store failed in jobs API");
            let mut p = Problem::new(503, "unavailable", "the job store is unavailable; retry");
            p.headers.push((header::RETRY_AFTER, "1".into()));
            p
        }
    }
}

pub(super) fn response(
    status: u16,
    content_type: &'static str,
    body: String,
) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = status as i64;
    r.headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.body = Some(Body::Text(body));
    r
}

pub(super) fn json_response(status: u16, body: &Value) -> ApiGatewayV2httpResponse {
    response(status, "application/json", body.to_string())
}

/// A request body that must be a JSON object holding only `fields`: 400
/// when it is not JSON or not an object; a field not in `fields` is
/// answered with `unknown` of a text naming the ones `what` has.
pub(super) fn json_object(
    body: &[u8],
    fields: &[&str],
    what: &str,
    unknown: fn(String) -> Problem,
) -> Result<serde_json::Map<String, Value>, Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::new(400, "bad_request", format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Problem::new(
            400,
            "bad_request",
            "body must be a JSON object",
        ));
    };
    if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(unknown(format!(
            "unknown field '{k}'; {what} has {}",
            fields.join(", ")
        )));
    }
    Ok(obj)
}
