//! The job-file URLs `serve` signs and serves itself (CONTRACT section 11,
//! the directory store): `PUT` streams an upload to disk, `GET`/`HEAD`
//! stream a download from it, neither ever holding the whole file. A URL
//! that is expired, altered, signed for another job or name, or for the
//! other method is refused with one 403, checked before the file is
//! looked at, so the answer says nothing of whether the file exists.

use crate::files::{LocalFiles, MAX_FILE_BYTES, ReceiveError};
use crate::gateway::http_io::{HttpResponse, full, problem};
use crate::handlers::jobs_api::Problem;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

/// Bytes read from disk per frame of a download.
const READ_CHUNK: usize = 256 * 1024;

/// A file as a stream of body frames.
struct ReaderFrames(tokio_util::io::ReaderStream<tokio::fs::File>);

impl futures_util::Stream for ReaderFrames {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use futures_util::StreamExt;
        self.0
            .poll_next_unpin(cx)
            .map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn refused() -> HttpResponse {
    problem(Problem::new(
        403,
        "forbidden",
        "this file URL is expired, altered, or not for this file and method; ask for the job again for a fresh one",
    ))
}

/// Lets pages on any origin fetch a file: the URL's signature is the
/// credential, not a cookie.
fn open_to_pages(r: &mut HttpResponse) {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// Serves `/files/{jobId}/{name}`.
pub(super) async fn route(
    local: Option<&LocalFiles>,
    req: Request<Incoming>,
    job_id: &str,
    name: &str,
    now: DateTime<Utc>,
) -> HttpResponse {
    let Some(local) = local else {
        return problem(Problem::new(
            404,
            "not_found",
            "job files are kept in an S3 bucket; their URLs are the bucket's",
        ));
    };
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut r = match method {
        Method::OPTIONS => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, PUT"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        Method::GET | Method::HEAD => match local.check("get", job_id, name, &query, now) {
            Ok(_) => download(local, job_id, name, method == Method::HEAD).await,
            Err(_) => refused(),
        },
        Method::PUT => match local.check("put", job_id, name, &query, now) {
            Ok(signed) => upload(local, req, job_id, name, signed.content_type).await,
            Err(_) => refused(),
        },
        _ => {
            let mut r = problem(Problem::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed on a file; allowed: GET, HEAD, PUT"),
            ));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
            r
        }
    };
    open_to_pages(&mut r);
    r
}

async fn download(local: &LocalFiles, job_id: &str, name: &str, head: bool) -> HttpResponse {
    let not_found = || {
        problem(Problem::new(
            404,
            "not_found",
            format!("job {job_id} has no file '{name}' (it may have expired)"),
        ))
    };
    let Some(path) = local.path(job_id, name) else {
        return not_found();
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(e) => {
            tracing::warn!(job_id, file = name, error = %e, "could not open a job file");
            return problem(Problem::new(500, "internal", "the file could not be read"));
        }
    };
    let size = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return not_found(),
    };
    let content_type = local
        .content_type(job_id, name)
        .await
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let body = if head {
        full(Bytes::new())
    } else {
        let frames = ReaderFrames(tokio_util::io::ReaderStream::with_capacity(
            file, READ_CHUNK,
        ));
        StreamBody::new(frames).boxed()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

async fn upload(
    local: &LocalFiles,
    req: Request<Incoming>,
    job_id: &str,
    name: &str,
    signed_type: Option<String>,
) -> HttpResponse {
    let sent_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A signed content type is part of the upload's signature, as in S3.
    if signed_type.is_some() && sent_type != signed_type {
        return refused();
    }
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > MAX_FILE_BYTES) {
        return problem(Problem::new(
            413,
            "payload_too_large",
            format!("a file is at most {MAX_FILE_BYTES} bytes (5 GiB)"),
        ));
    }
    let body = req.into_body().into_data_stream();
    let ctype = signed_type.or(sent_type);
    match local
        .receive(job_id, name, ctype.as_deref(), MAX_FILE_BYTES, body)
        .await
    {
        Ok(size) => {
            tracing::debug!(job_id, file = name, size, "file uploaded");
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(ReceiveError::TooLarge(limit)) => problem(Problem::new(
            413,
            "payload_too_large",
            format!("a file is at most {limit} bytes"),
        )),
        Err(ReceiveError::Body(e)) => problem(Problem::new(
            400,
            "bad_request",
            format!("the upload ended before its end: {e}; nothing was stored"),
        )),
        Err(ReceiveError::Refused) => refused(),
        Err(ReceiveError::Io(e)) => {
            tracing::warn!(job_id, file = name, error = %e, "could not store an upload");
            problem(Problem::new(
                507,
                "insufficient_storage",
                format!("the upload could not be stored: {e}"),
            ))
        }
    }
}
