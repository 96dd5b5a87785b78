//! The jobs HTTP API (`POST /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}`,
//! and the workers' `POST /jobs/{jobId}/updates`) over API Gateway HTTP API
//! events (payload format 2.0). Every error is an RFC 9457
//! `application/problem+json` document, never a 500 for bad input.

use super::{Deps, worker};
use crate::protocol::{DEMO_KIND, JobError, MAX_JOB_BODY_BYTES, MAX_MESSAGE_BYTES, Status, hex};
use crate::store::{
    HANDOVER_LEASE, IdempotencyOutcome, IdempotencyRecord, JobRecord, JobUpdate, Liveness,
    MAX_INPUT_BYTES, StoreError,
};
use crate::token::TokenError;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method, header};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A problem document (RFC 9457) with the status it is answered with.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    pub headers: Vec<(header::HeaderName, String)>,
    /// One more member of the document (the final `snapshot` of a 409).
    pub extra: Option<(&'static str, Value)>,
}

impl Problem {
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
            extra: None,
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
        if let (Some((name, value)), Value::Object(o)) = (&self.extra, &mut doc) {
            o.insert((*name).to_string(), value.clone());
        }
        doc.to_string()
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
        StoreError::PercentBackwards { .. } | StoreError::InvalidUpdate(_) => {
            Problem::new(422, "invalid_update", e.to_string())
        }
        StoreError::TooLarge { .. } => Problem::new(413, "payload_too_large", e.to_string()),
        StoreError::Conflict { .. } => Problem::new(409, "conflict", e.to_string()),
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
    Updates(&'a str),
}

fn route(req: &ApiGatewayV2httpRequest) -> Option<Route<'_>> {
    let path = req
        .raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/");
    let updates = path.trim_end_matches('/').ends_with("/updates");
    if let Some(id) = req.path_parameters.get("jobId") {
        return Some(if updates {
            Route::Updates(id.as_str())
        } else {
            Route::Item(id.as_str())
        });
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "jobs"] => Some(Route::Collection),
        [.., "jobs", id] => Some(Route::Item(id)),
        [.., "jobs", id, "updates"] => Some(Route::Updates(id)),
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
        Some(Route::Item(id)) if method == Method::DELETE => cancel(deps, &req, id).await,
        Some(Route::Updates(id)) if method == Method::POST => update(deps, &req, id).await,
        Some(r) => {
            let allow = match r {
                Route::Collection | Route::Updates(_) => "POST",
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
    worker::validate(&kind, &input, &deps.queue.kinds())
        .map_err(|m| Problem::new(400, "bad_input", m))?;
    let input_len = input.to_string().len();
    if input_len > MAX_INPUT_BYTES {
        return Err(store_problem(StoreError::TooLarge {
            what: "input",
            size: input_len,
            limit: MAX_INPUT_BYTES,
        }));
    }
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
        let record = IdempotencyRecord {
            request_hash: hex(&Sha256::digest(&body)),
            job_id: job_id.clone(),
            response: accepted.clone(),
        };
        if let Some(replay) = bind_idempotency_key(deps, key, record).await? {
            return Ok(replay);
        }
    }

    let mut record = JobRecord::queued(job_id.clone(), kind, input, callback_url, now);
    if record.kind != DEMO_KIND {
        // Held while the job is handed over, so no other process re-delivers it.
        record = record.leased_to(
            deps.lease_owner.as_ref(),
            now.timestamp() + HANDOVER_LEASE.as_secs() as i64,
        );
    }
    if let Err(e) = deps.store().create_job(record.clone()).await {
        release_idempotency_key(deps, idempotency_key.as_deref(), &job_id).await;
        return Err(store_problem(e));
    }
    deps.metrics.job_entered(Status::Queued);
    if let Err(e) = deps.queue.enqueue(&record, &base_url(deps, req)).await {
        tracing::warn!(job_id, error = %e, "could not enqueue job");
        // The key must not replay a 202 for a job that will never run.
        release_idempotency_key(deps, idempotency_key.as_deref(), &job_id).await;
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

/// Binds `key` to this request's job, or answers for it: `Some` replays
/// the first 202 (the same body), a 422 for another body, a 409 while the
/// first request is still storing its job. A key whose job was never stored
/// or never enqueued is taken over: the retry is a fresh attempt.
async fn bind_idempotency_key(
    deps: &Deps,
    key: &str,
    record: IdempotencyRecord,
) -> Result<Option<ApiGatewayV2httpResponse>, Problem> {
    for _ in 0..3 {
        let prev = match deps
            .store()
            .put_idempotency(key, record.clone())
            .await
            .map_err(store_problem)?
        {
            IdempotencyOutcome::Recorded => return Ok(None),
            IdempotencyOutcome::Existing(prev) if prev.request_hash == record.request_hash => prev,
            IdempotencyOutcome::Existing(_) => {
                return Err(Problem::new(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body",
                ));
            }
        };
        match deps
            .store()
            .get_job(&prev.job_id)
            .await
            .map_err(store_problem)?
        {
            Some(j) if !never_ran(&j) => {
                let mut r = accepted_response(&prev.job_id, &prev.response);
                r.headers
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(Some(r));
            }
            Some(_) => {
                tracing::info!(key, job_id = %prev.job_id, "a retry takes over an idempotency key whose job was never enqueued");
                deps.store()
                    .release_idempotency(key, &prev.job_id)
                    .await
                    .map_err(store_problem)?;
            }
            // The first request is still storing its job (or died doing so).
            None => break,
        }
    }
    let mut p = Problem::new(
        409,
        "idempotency_key_in_flight",
        "a request with this Idempotency-Key is still being processed; retry shortly",
    );
    p.headers.push((header::RETRY_AFTER, "1".into()));
    Err(p)
}

/// A job that failed before any worker saw it.
fn never_ran(job: &JobRecord) -> bool {
    job.snapshot.status == Status::Failed
        && job
            .snapshot
            .error
            .as_ref()
            .is_some_and(|e| e.code == "not_enqueued")
}

/// Best effort: a key left bound is still taken over by `bind_idempotency_key`.
async fn release_idempotency_key(deps: &Deps, key: Option<&str>, job_id: &str) {
    if let Some(key) = key
        && let Err(e) = deps.store().release_idempotency(key, job_id).await
    {
        tracing::warn!(key, job_id, error = %e, "could not release an idempotency key");
    }
}

fn accepted_response(job_id: &str, body: &Value) -> ApiGatewayV2httpResponse {
    let mut r = json_response(202, body);
    if let Ok(v) = HeaderValue::from_str(&format!("/jobs/{job_id}")) {
        r.headers.insert(header::LOCATION, v);
    }
    r
}

async fn get(deps: &Deps, id: &str) -> Result<ApiGatewayV2httpResponse, Problem> {
    let job = deps
        .store()
        .get_job(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(404, "not_found", format!("job {id} not found")))?;
    let mut view = job.public_view();
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

/// The bearer token of a request (`Authorization: Bearer …`), or `?token=`.
fn presented_token(req: &ApiGatewayV2httpRequest, allow_query: bool) -> Option<String> {
    let bearer = header_str(&req.headers, "authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    bearer
        .or_else(|| {
            allow_query
                .then(|| {
                    req.query_string_parameters
                        .first("token")
                        .map(str::to_owned)
                })
                .flatten()
        })
        .filter(|t| !t.is_empty())
}

fn token_problem(e: TokenError, who: &str) -> Problem {
    let detail = match e {
        TokenError::Expired => format!("the {who} token has expired"),
        _ => format!("the {who} token is not valid for this job"),
    };
    Problem::new(403, "forbidden", detail)
}

/// 401 for a request without the bearer token it needs.
fn unauthorized(detail: &str) -> Problem {
    let mut p = Problem::new(401, "unauthorized", detail);
    p.headers.push((header::WWW_AUTHENTICATE, "Bearer".into()));
    p
}

/// The job, unless it is unknown (`NotFound`) or has ended (`Terminal`).
async fn live_job(deps: &Deps, id: &str) -> Result<JobRecord, StoreError> {
    match deps.store().get_job(id).await? {
        None => Err(StoreError::NotFound(id.to_string())),
        Some(j) if j.snapshot.status.is_terminal() => Err(StoreError::Terminal {
            job_id: id.to_string(),
            status: j.snapshot.status,
        }),
        Some(j) => Ok(j),
    }
}

async fn cancel(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let Some(token) = presented_token(req, true) else {
        return Err(unauthorized(
            "cancelling needs the job's token (from POST /jobs): Authorization: Bearer <token> or ?token=",
        ));
    };
    deps.tokens
        .verify(id, &token, super::now_unix())
        .map_err(|e| token_problem(e, "job"))?;
    let job = live_job(deps, id).await.map_err(store_problem)?;
    let job = if job.kind == DEMO_KIND {
        // The demo worker ends it when it sees the request.
        let job = deps
            .store()
            .request_cancel(id)
            .await
            .map_err(store_problem)?;
        deps.queue.cancel_hint(id);
        job
    } else {
        // A worker of the user's own learns it from its next update (409).
        let mut u = JobUpdate::status(Status::Cancelled);
        u.message = Some("cancelled".into());
        deps.publisher
            .publish(id, u)
            .await
            .map_err(store_problem)?
            .0
    };
    tracing::info!(job_id = id, "cancellation requested");
    Ok(json_response(202, &job.public_view()))
}

/// Fields a worker update may carry.
const UPDATE_FIELDS: [&str; 5] = ["status", "percent", "message", "result", "error"];

/// Reads a worker's update body into a `JobUpdate`; `None` is a heartbeat.
fn parse_update(body: &[u8]) -> Result<Option<JobUpdate>, Problem> {
    let invalid = |m: String| Problem::new(422, "invalid_update", m);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::new(400, "bad_request", format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Problem::new(
            400,
            "bad_request",
            "body must be a JSON object",
        ));
    };
    if let Some(k) = obj.keys().find(|k| !UPDATE_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown field '{k}'; an update has {}",
            UPDATE_FIELDS.join(", ")
        )));
    }
    if obj.is_empty() {
        return Ok(None);
    }
    let status = match obj.get("status") {
        None | Some(Value::Null) => Status::Running,
        Some(Value::String(s)) => match Status::parse(s) {
            Some(st @ (Status::Running | Status::Succeeded | Status::Failed)) => st,
            _ => {
                return Err(invalid(format!(
                    "status must be running, succeeded or failed, got '{s}'"
                )));
            }
        },
        Some(other) => return Err(invalid(format!("status must be a string, got {other}"))),
    };
    let percent = match obj.get("percent") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(p),
            _ => {
                return Err(invalid(format!(
                    "percent must be a number from 0 to 100, got {v}"
                )));
            }
        },
    };
    let message = match obj.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(other) => return Err(invalid(format!("message must be a string, got {other}"))),
    };
    let result = obj.get("result").filter(|v| !v.is_null()).cloned();
    if result.is_some() && status != Status::Succeeded {
        return Err(invalid("result is set only with status succeeded".into()));
    }
    let error = match obj.get("error") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<JobError>(v.clone())
                .ok()
                .filter(|e| !e.code.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "error must be {{\"code\": \"…\", \"message\": \"…\"}}, got {v}"
                    ))
                })?,
        ),
    };
    if error.is_some() && status != Status::Failed {
        return Err(invalid("error is set only with status failed".into()));
    }
    let error = match (status, error) {
        (Status::Failed, None) => Some(JobError {
            code: "worker_failed".into(),
            message: message
                .clone()
                .unwrap_or_else(|| "the worker reported a failure".into()),
        }),
        (_, e) => e,
    };
    Ok(Some(JobUpdate {
        status,
        percent,
        message,
        result,
        error,
        liveness: Liveness::Keep,
    }))
}

/// `POST /jobs/{id}/updates`: a worker reports progress (or a heartbeat).
async fn update(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let Some(token) = presented_token(req, false) else {
        return Err(unauthorized(
            "updates need the job message's workerToken: Authorization: Bearer <workerToken>",
        ));
    };
    let now = Utc::now();
    deps.tokens
        .verify_worker(id, &token, now.timestamp())
        .map_err(|e| token_problem(e, "worker"))?;
    let body = body_bytes(req)?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Problem::new(
            413,
            "payload_too_large",
            format!(
                "an update is at most {MAX_MESSAGE_BYTES} bytes; this one is {}",
                body.len()
            ),
        ));
    }
    let parsed = parse_update(&body)?;
    let timeout = deps.heartbeat_timeout.as_secs() as i64;
    let deadline = (timeout > 0).then(|| now.timestamp() + timeout);
    let outcome = match parsed {
        None => match deadline {
            Some(d) => deps.store().heartbeat(id, d).await,
            None => live_job(deps, id).await,
        },
        Some(mut u) => {
            if let Some(d) = deadline {
                u.liveness = Liveness::Refresh(d);
            }
            deps.publisher.publish(id, u).await.map(|(j, _)| j)
        }
    };
    match outcome {
        Ok(job) => {
            deps.metrics.worker_update();
            Ok(json_response(
                200,
                &json!({
                    "jobId": id,
                    "seq": job.snapshot.seq,
                    "status": job.snapshot.status.as_str(),
                }),
            ))
        }
        Err(StoreError::Terminal { status, .. }) => {
            let mut p = Problem::new(
                409,
                "terminal",
                format!(
                    "job {id} already ended {}; stop working on it",
                    status.as_str()
                ),
            );
            p.extra = match deps.store().get_job(id).await {
                Ok(Some(j)) => Some(("snapshot", j.public_view())),
                _ => None,
            };
            Err(p)
        }
        Err(e) => Err(store_problem(e)),
    }
}
