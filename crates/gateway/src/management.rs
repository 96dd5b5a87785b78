//! The API Gateway Management API (`@connections`) as the AWS SDKs expect
//! it: typed errors in `x-amzn-ErrorType` with a JSON `{"message"}` body,
//! connection ids percent-decoded exactly once.

use super::http_io::{BodyError, read_limited, response};
use super::{HttpResponse, Shared, full};
use crate::protocol::{MAX_CONNECTION_ID_LEN, MAX_POST_BYTES, rfc3339};
use crate::push::{Payload, PushError, Pusher};
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

/// An AWS-shaped error response.
pub(crate) fn aws_error(status: u16, error_type: &str, message: &str) -> HttpResponse {
    let mut r = response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/json",
        json!({ "message": message }).to_string(),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn push_error(e: &PushError) -> HttpResponse {
    match e {
        PushError::Gone => aws_error(410, "GoneException", "Gone"),
        PushError::PayloadTooLarge => aws_error(
            413,
            "PayloadTooLargeException",
            "Message is larger than the 128 KiB limit",
        ),
        PushError::LimitExceeded => aws_error(429, "LimitExceededException", "Too many requests"),
        PushError::Forbidden(m) => aws_error(403, "ForbiddenException", m),
        PushError::BadRequest(m) => aws_error(400, "BadRequestException", m),
        PushError::Unavailable(m) | PushError::Refused(m) => {
            aws_error(500, "InternalServerErrorException", m)
        }
    }
}

/// Decodes the raw path segment of a connection id and checks its shape.
pub fn decode_connection_id(raw: &str) -> Result<String, PushError> {
    let bad = || PushError::BadRequest("Invalid connectionId".into());
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad())?;
    if decoded.is_empty()
        || decoded.len() > MAX_CONNECTION_ID_LEN
        || !decoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(bad());
    }
    Ok(decoded.into_owned())
}

/// Reads a body of at most `MAX_POST_BYTES`.
async fn read_body(headers: &http::HeaderMap, body: Incoming) -> Result<bytes::Bytes, PushError> {
    read_limited(headers, body, MAX_POST_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => PushError::PayloadTooLarge,
            BodyError::Unreadable(_) => PushError::BadRequest(e.to_string()),
        })
}

/// Handles one `@connections/{id}` request.
pub(crate) async fn handle(
    shared: &Shared,
    parts: &http::request::Parts,
    raw_id: &str,
    body: Incoming,
) -> HttpResponse {
    let resp = match handle_inner(shared, parts, raw_id, body).await {
        Ok(r) => r,
        Err(e) => push_error(&e),
    };
    if !shared.config.management_latency.is_zero() {
        tokio::time::sleep(shared.config.management_latency).await;
    }
    shared
        .metrics
        .management_call(parts.method.as_str(), resp.status().as_u16());
    resp
}

async fn handle_inner(
    shared: &Shared,
    parts: &http::request::Parts,
    raw_id: &str,
    body: Incoming,
) -> Result<HttpResponse, PushError> {
    let registry = &shared.registry;
    let method = &parts.method;
    if !matches!(*method, Method::POST | Method::GET | Method::DELETE) {
        let mut r = aws_error(
            405,
            "MethodNotAllowedException",
            "@connections supports POST, GET and DELETE",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, GET, DELETE"));
        return Ok(r);
    }
    let bytes = read_body(&parts.headers, body).await?;
    // As in AWS: an unsigned or wrongly signed call learns nothing else.
    if let Some(verifier) = &shared.config.require_sigv4 {
        verifier.verify(
            method,
            &parts.uri,
            &parts.headers,
            &bytes,
            std::time::SystemTime::now(),
        )?;
    }
    let id = decode_connection_id(raw_id)?;
    match *method {
        Method::POST => {
            // Like an account-level throttle in API Gateway (`--limit-posts-per-second`).
            if let Some(limit) = &shared.post_limit
                && !limit.try_acquire()
            {
                return Err(PushError::LimitExceeded);
            }
            registry.post(&id, Payload::from_bytes(bytes)).await?;
            Ok(Response::new(full("")))
        }
        Method::GET => {
            let info = registry.get(&id).await?;
            let body = json!({
                "connectedAt": rfc3339(info.connected_at),
                "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
                "lastActiveAt": rfc3339(info.last_active_at),
            });
            let mut r = Response::new(full(body.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        _ => {
            registry.delete(&id).await?;
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_decode_exactly_once() {
        assert_eq!(
            decode_connection_id("L0SM9cOFvHcCIhw%3D").as_deref(),
            Ok("L0SM9cOFvHcCIhw=")
        );
        assert_eq!(decode_connection_id("a%2Bb%2Fc").as_deref(), Ok("a+b/c"));
        // %253D decodes once to "%3D", which is not base64.
        assert!(decode_connection_id("abc%253D").is_err());
        assert!(decode_connection_id("").is_err());
        assert!(decode_connection_id("has space").is_err());
        assert!(decode_connection_id("a-b").is_err());
        assert!(decode_connection_id(&"A".repeat(129)).is_err());
        assert!(decode_connection_id(&"A".repeat(128)).is_ok());
        assert!(decode_connection_id("%FF%FE").is_err());
    }
}
