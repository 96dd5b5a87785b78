//! The web demo, compiled into the binary so `jobcast serve` needs no files
//! on disk.

use crate::gateway::http_io::{HttpResponse, full};
use http::{HeaderValue, Response, StatusCode, header};

const FILES: [(&str, &str, &str); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web-demo/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-demo/app.js"),
    ),
    (
        "jobcast-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../../clients/browser/index.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web-demo/style.css"),
    ),
];

/// True when `name` is one of the demo's files.
pub fn exists(name: &str) -> bool {
    FILES.iter().any(|(n, _, _)| *n == name)
}

/// Serves one of the demo's files (404 otherwise).
pub fn serve(name: &str) -> HttpResponse {
    let Some((_, ct, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        let mut r = Response::new(full("not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let mut r = Response::new(full(*body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
