//! The jobs HTTP API (`POST /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}`)
//! over API Gateway HTTP API events (payload format 2.0). Every error is an
//! RFC 9457 `application/problem+json` document, never a 500 for bad input.

use super::{Deps, worker};
use crate::protocol::{MAX_JOB_BODY_BYTES, ServerMessage, Status, rfc3339};
use crate::store::{IdempotencyOutcome, IdempotencyRecord, JobRecord, JobUpdate, StoreError};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method, header};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A problem document (RFC 9457) with the status it is answered with.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl Problem {
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let title = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        json!({
            "type": "about:blank",
            "title": title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        })
        .to_string()
    }

    fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut r = response(self.status, "application/problem+json", self.body());
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers.insert(name, v);
            }
        }
        r
    }
}

fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::NotFound(id) => Problem::new(404, "not_found", format!("job {id} not found")),
        StoreError::Terminal { job_id, status } => Problem::new(
            409,
            "terminal",
            format!("job {job_id} already ended {}", status.as_str()),
        ),
        other => {
            tracing::error!(error = %other, "store failed in jobs API");
            let mut p = Problem::new(503, "unavailable", "the job store is unavailable; retry");
            p.headers.push((header::RETRY_AFTER, "1".into()));
            p
        }
    }
}

fn response(status: u16, content_type: &'static str, body: String) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = status as i64;
    r.headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.body = Some(Body::Text(body));
    r
}

fn json_response(status: u16, body: &Value) -> ApiGatewayV2httpResponse {
    response(status, "application/json", body.to_string())
}

/// The route a request addresses.
enum Route<'a> {
    Collection,
    Item(&'a str),
}

fn route(req: &ApiGatewayV2httpRequest) -> Option<Route<'_>> {
    if let Some(id) = req.path_parameters.get("jobId") {
        return Some(Route::Item(id.as_str()));
    }
    let path = req
        .raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "jobs"] => Some(Route::Collection),
        [.., "jobs", id] => Some(Route::Item(id)),
        _ => None,
    }
}

/// Handles one jobs API request.
pub async fn handle(deps: &Deps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let method = req.request_context.http.method.clone();
    let result = match route(&req) {
        None => Err(Problem::new(404, "not_found", "no such resource")),
        Some(Route::Collection) if method == Method::POST => create(deps, &req).await,
        Some(Route::Item(id)) if method == Method::GET => get(deps, id).await,
        Some(Route::Item(id)) if method == Method::DELETE => cancel(deps, id).await,
        Some(r) => {
            let allow = match r {
                Route::Collection => "POST",
                Route::Item(_) => "GET, DELETE",
            };
            let mut p = Problem::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed here; allowed: {allow}"),
            );
            p.headers.push((header::ALLOW, allow.into()));
            Err(p)
        }
    };
    result.unwrap_or_else(Problem::into_response)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_bytes(req: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, Problem> {
    let raw = req.body.as_deref().unwrap_or("");
    if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| Problem::new(400, "bad_request", "body is not valid base64"))
    } else {
        Ok(raw.as_bytes().to_vec())
    }
}

fn new_job_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    format!("job_{}", hex(&b))
}

fn base_url(deps: &Deps, req: &ApiGatewayV2httpRequest) -> String {
    if let Some(u) = &deps.links.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = header_str(&req.headers, "host")
        .or(req.request_context.domain_name.as_deref())
        .unwrap_or("localhost");
    let proto = header_str(&req.headers, "x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}")
}

fn websocket_base(deps: &Deps, req: &ApiGatewayV2httpRequest) -> String {
    if let Some(u) = &deps.links.websocket_url {
        return u.trim_end_matches('/').to_string();
    }
    let base = base_url(deps, req);
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base
    };
    format!("{ws}/{}", deps.links.stage)
}

async fn create(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let ct = header_str(&req.headers, "content-type").unwrap_or("");
    if !is_json_content_type(ct) {
        return Err(Problem::new(
            415,
            "unsupported_media_type",
            "send the job as JSON with Content-Type: application/json",
        ));
    }
    let body = body_bytes(req)?;
    if body.len() > MAX_JOB_BODY_BYTES {
        return Err(Problem::new(
            413,
            "payload_too_large",
            format!("request body is over {MAX_JOB_BODY_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(400, "bad_request", format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Problem::new(
            400,
            "bad_request",
            "body must be a JSON object",
        ));
    };
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(Problem::new(
                400,
                "bad_request",
                "\"kind\" must be a non-empty string",
            ));
        }
    };
    let input = obj
        .get("input")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    if !input.is_object() {
        return Err(Problem::new(
            400,
            "bad_request",
            "\"input\" must be a JSON object",
        ));
    }
    worker::validate(&kind, &input, &deps.external_kinds)
        .map_err(|m| Problem::new(400, "bad_input", m))?;
    let callback_url = match obj.get("callbackUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => {
            return Err(Problem::new(
                400,
                "bad_request",
                "\"callbackUrl\" must be a string",
            ));
        }
    };
    if let Some(url) = &callback_url {
        let Some(webhooks) = deps.publisher.webhooks() else {
            return Err(Problem::new(
                400,
                "webhooks_unavailable",
                "callbackUrl needs a signing secret: set JOBCAST_WEBHOOK_SECRET",
            ));
        };
        crate::webhook::check_callback_url(url, webhooks.policy())
            .await
            .map_err(|m| Problem::new(400, "bad_callback_url", m))?;
    }

    let idempotency_key = match header_str(&req.headers, "idempotency-key") {
        None => None,
        Some(k)
            if !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(k.to_string())
        }
        Some(_) => {
            return Err(Problem::new(
                400,
                "bad_request",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                ),
            ));
        }
    };

    let now = Utc::now();
    let job_id = new_job_id();
    let token = deps.tokens.issue(&job_id, now.timestamp());
    let status_url = format!("{}/jobs/{job_id}", base_url(deps, req));
    let websocket_url = format!("{}?jobId={job_id}&token={token}", websocket_base(deps, req));
    let accepted = json!({
        "jobId": job_id,
        "status": "queued",
        "statusUrl": status_url,
        "websocketUrl": websocket_url,
        "token": token,
    });

    if let Some(key) = &idempotency_key {
        let request_hash = hex(&Sha256::digest(&body));
        let record = IdempotencyRecord {
            request_hash: request_hash.clone(),
            job_id: job_id.clone(),
            response: accepted.clone(),
        };
        match deps
            .store()
            .put_idempotency(key, record)
            .await
            .map_err(store_problem)?
        {
            IdempotencyOutcome::Recorded => {}
            IdempotencyOutcome::Existing(prev) if prev.request_hash == request_hash => {
                let mut r = accepted_response(&prev.job_id, &prev.response);
                r.headers
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(r);
            }
            IdempotencyOutcome::Existing(_) => {
                return Err(Problem::new(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body",
                ));
            }
        }
    }

    let record = JobRecord::queued(job_id.clone(), kind, input, callback_url, now);
    deps.store()
        .create_job(record.clone())
        .await
        .map_err(store_problem)?;
    deps.metrics.job_entered(Status::Queued);
    if let Err(e) = deps.queue.enqueue(&record).await {
        tracing::warn!(job_id, error = %e, "could not enqueue job");
        let mut u = JobUpdate::status(Status::Failed);
        u.error = Some(crate::protocol::JobError {
            code: "not_enqueued".into(),
            message: e.to_string(),
        });
        let _ = deps.publisher.publish(&job_id, u).await;
        let mut p = Problem::new(503, "queue_full", format!("{e}; retry later"));
        p.headers.push((header::RETRY_AFTER, "1".into()));
        return Err(p);
    }
    tracing::info!(job_id, kind = %record.kind, "job accepted");
    Ok(accepted_response(&job_id, &accepted))
}

fn accepted_response(job_id: &str, body: &Value) -> ApiGatewayV2httpResponse {
    let mut r = json_response(202, body);
    if let Ok(v) = HeaderValue::from_str(&format!("/jobs/{job_id}")) {
        r.headers.insert(header::LOCATION, v);
    }
    r
}

/// The job as `GET /jobs/{id}` shows it (the progress message plus
/// `createdAt`), without delivery bookkeeping: also the webhook body.
pub fn job_view(job: &JobRecord) -> Value {
    let mut v: Value =
        serde_json::to_value(ServerMessage::Progress(&job.snapshot)).unwrap_or_else(|_| json!({}));
    if let Value::Object(o) = &mut v {
        o.insert("createdAt".into(), Value::String(rfc3339(job.created_at)));
    }
    v
}

async fn get(deps: &Deps, id: &str) -> Result<ApiGatewayV2httpResponse, Problem> {
    let job = deps
        .store()
        .get_job(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(404, "not_found", format!("job {id} not found")))?;
    let mut view = job_view(&job);
    if let Value::Object(o) = &mut view {
        match (&job.webhook, &job.callback_url) {
            (Some(w), _) => {
                o.insert(
                    "webhook".into(),
                    serde_json::to_value(w).unwrap_or(Value::Null),
                );
            }
            // Nothing attempted yet: the job has not ended.
            (None, Some(_)) => {
                o.insert(
                    "webhook".into(),
                    json!({"status": "waiting", "attempts": 0}),
                );
            }
            (None, None) => {}
        }
    }
    let mut r = json_response(200, &view);
    if !job.snapshot.status.is_terminal() {
        r.headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(r)
}

async fn cancel(deps: &Deps, id: &str) -> Result<ApiGatewayV2httpResponse, Problem> {
    let job = deps
        .store()
        .request_cancel(id)
        .await
        .map_err(store_problem)?;
    deps.queue.cancel_hint(id);
    tracing::info!(job_id = id, "cancellation requested");
    Ok(json_response(202, &job_view(&job)))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
