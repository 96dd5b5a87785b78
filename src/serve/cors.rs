//! CORS for the jobs API. Strict by default: no origin but the page's own
//! may read responses. `serve --cors-origin https://app.example` (or `*`)
//! lets a front end on another origin call `POST /jobs` and poll
//! `GET /jobs/{id}`, with the headers it needs to see exposed.

use crate::gateway::http_io::{HttpResponse, full};
use http::{HeaderValue, Response, StatusCode, header};

const ALLOW_METHODS: &str = "GET, POST, DELETE";
const ALLOW_HEADERS: &str = "content-type, idempotency-key";
const EXPOSE_HEADERS: &str = "location, retry-after, idempotent-replayed";
const MAX_AGE: &str = "600";

/// The origins allowed to call the jobs API from a browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

/// Checks one `--cors-origin` value: `*` or `scheme://host[:port]`.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s == "*" {
        return Ok(s.to_string());
    }
    let ok = s.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
    });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "an origin is scheme://host[:port] with no path (like https://app.example.com), or *; got '{s}'"
        ))
    }
}

impl Cors {
    pub fn new(origins: &[String]) -> Cors {
        Cors {
            any: origins.iter().any(|o| o == "*"),
            origins: origins.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&o).then(|| origin.clone())
    }

    /// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`),
    /// or `None` when the origin may not call the jobs API.
    pub fn preflight(&self, origin: Option<&HeaderValue>) -> Option<HttpResponse> {
        let allow = self.allow(origin)?;
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        Some(r)
    }

    /// Adds the CORS headers an allowed origin needs to read `resp`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, resp: &mut HttpResponse) {
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(allow) = self.allow(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert_eq!(parse_origin("*").as_deref(), Ok("*"));
        assert_eq!(
            parse_origin("https://App.example:8443/").as_deref(),
            Ok("https://app.example:8443")
        );
        assert!(parse_origin("app.example").is_err());
        assert!(parse_origin("https://app.example/path").is_err());
        assert!(parse_origin("ftp://app.example").is_err());
        assert!(parse_origin("https://").is_err());
    }
}
