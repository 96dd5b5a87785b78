//! The HTTP pieces every route shares, the gateway's and its app's:
//! reading a body under a limit, and building a response with a status,
//! type and body.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// A request as the gateway hands it to an app.
pub type HttpRequest = http::Request<Incoming>;

/// A response body: whole (most answers) or streamed (a file download).
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A response as the gateway and its app answer.
pub type HttpResponse = http::Response<Body>;

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit given (its value).
    #[error("request body is over {0} bytes")]
    TooLarge(usize),
    /// The connection failed while the body was read.
    #[error("could not read body: {0}")]
    Unreadable(String),
}

/// Reads a body of at most `limit` bytes; a `Content-Length` above the
/// limit is refused before anything is read.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(limit))
        }
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}

/// A response with `status`, a `Content-Type` and `body`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A problem document (RFC 9457) as an HTTP response, with its headers.
pub fn problem(p: crate::protocol::problem::Problem) -> HttpResponse {
    let mut r = response(
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
        "application/problem+json",
        p.body(),
    );
    for (name, value) in p.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}
