//! RFC 9457 problem documents: how every HTTP error of jobcast reads,
//! whichever part answers it (the jobs API, the gateway, a file URL).

use http::header;
use serde_json::{Value, json};

/// A problem document (RFC 9457) with the status it is answered with.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status, also the document's `status`.
    pub status: u16,
    /// A stable, machine-readable reason (`not_found`, `terminal`, …).
    pub code: &'static str,
    /// What went wrong and what to do, for a person.
    pub detail: String,
    /// Headers answered with it (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(header::HeaderName, String)>,
    /// More members of the document (the final `snapshot` of a 409, the
    /// `stream` and `limit` of a full stream).
    pub extra: Vec<(&'static str, Value)>,
}

impl Problem {
    /// A problem with no extra headers or members.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let title = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let mut doc = json!({
            "type": "about:blank",
            "title": title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        });
        if let Value::Object(o) = &mut doc {
            for (name, value) in &self.extra {
                o.insert((*name).to_string(), value.clone());
            }
        }
        doc.to_string()
    }
}
