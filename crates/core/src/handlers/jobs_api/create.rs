//! `POST /jobs`: a request is parsed into a [`JobRequest`] (every bad input
//! a problem, nothing stored), then accepted: ids and token issued, the
//! Idempotency-Key bound, the job stored and handed to its worker.

use super::problem::{Problem, json_object, json_response, store_problem};
use super::{Deps, base_url, body_bytes, header_str, updates_base, websocket_base};
use crate::handlers::QueueError;
use crate::handlers::worker;
use crate::protocol::{DEMO_KIND, MAX_JOB_BODY_BYTES, Status, hex};
use crate::store::{
    HANDOVER_LEASE, IdempotencyOutcome, IdempotencyRecord, JobRecord, JobUpdate, MAX_INPUT_BYTES,
    MAX_TAG_CHARS, MAX_TAGS, StoreError,
};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use http::{HeaderMap, HeaderValue, header};
use rand::RngCore;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The fields a `POST /jobs` body may have; any other is a 400, so a
/// misspelled `inputs` never runs a job on its default input.
pub const JOB_FIELDS: [&str; 4] = ["kind", "input", "callbackUrl", "tags"];

/// A `POST /jobs` request that passed every check that needs no I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: String,
    pub input: Value,
    pub callback_url: Option<String>,
    pub idempotency_key: Option<String>,
    /// The owner's labels (at most 10 of at most 64 characters).
    pub tags: Vec<String>,
    /// SHA-256 of the body, hex: what an Idempotency-Key is bound to.
    pub body_hash: String,
}

fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(400, "bad_request", detail)
}

impl JobRequest {
    /// Checks a request's headers and body: content type (415), size (413),
    /// JSON object with `kind`, `input` and `callbackUrl` of the right types
    /// (400), the kind among `kinds` and its input valid (400 `bad_input`),
    /// the input's stored size (413) and the Idempotency-Key's form (400).
    pub fn parse(
        headers: &HeaderMap,
        body: &[u8],
        kinds: &[String],
    ) -> Result<JobRequest, Problem> {
        let ct = header_str(headers, "content-type").unwrap_or("");
        if !is_json_content_type(ct) {
            return Err(Problem::new(
                415,
                "unsupported_media_type",
                "send the job as JSON with Content-Type: application/json",
            ));
        }
        if body.len() > MAX_JOB_BODY_BYTES {
            return Err(Problem::new(
                413,
                "payload_too_large",
                format!("request body is over {MAX_JOB_BODY_BYTES} bytes"),
            ));
        }
        let obj = json_object(body, &JOB_FIELDS, "a job", bad_request)?;
        let kind = match obj.get("kind") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => return Err(bad_request("\"kind\" must be a non-empty string")),
        };
        let input = obj
            .get("input")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if !input.is_object() {
            return Err(bad_request("\"input\" must be a JSON object"));
        }
        worker::validate(&kind, &input, kinds)
            .map_err(|m| Problem::new(400, "bad_input", m.to_string()))?;
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
            Some(_) => return Err(bad_request("\"callbackUrl\" must be a string")),
        };
        Ok(JobRequest {
            kind,
            input,
            callback_url,
            tags: tags(obj.get("tags"))?,
            idempotency_key: idempotency_key(headers)?,
            body_hash: hex(&Sha256::digest(body)),
        })
    }
}

/// `tags`: absent, or up to [`MAX_TAGS`] non-empty strings of at most
/// [`MAX_TAG_CHARS`] characters.
fn tags(v: Option<&Value>) -> Result<Vec<String>, Problem> {
    let bad = || {
        bad_request(format!(
            "\"tags\" must be an array of up to {MAX_TAGS} non-empty strings of at most {MAX_TAG_CHARS} characters"
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_TAGS => items
            .iter()
            .map(|t| match t {
                Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_TAG_CHARS => {
                    Ok(s.clone())
                }
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The `Idempotency-Key` header, if present and well formed.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match header_str(headers, "idempotency-key") {
        None => Ok(None),
        Some(k)
            if !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(k.to_string()))
        }
        Some(_) => Err(bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

/// `POST /jobs`: parse, check the callback URL, accept.
pub(super) async fn create(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let owner = super::access::creator(deps, req)?;
    let body = body_bytes(req)?;
    let job = JobRequest::parse(&req.headers, &body, &deps.queue.kinds())?;
    if owner.is_none() && !job.tags.is_empty() {
        return Err(bad_request(
            "\"tags\" label jobs of an owner: they need owners on (serve --jwt-issuer)",
        ));
    }
    if let Some(url) = &job.callback_url {
        let Some(webhooks) = deps.publisher.webhooks() else {
            return Err(Problem::new(
                400,
                "webhooks_unavailable",
                "callbackUrl needs a signing secret: set JOBCAST_WEBHOOK_SECRET",
            ));
        };
        crate::webhook::check_callback_url(url, webhooks.policy())
            .await
            .map_err(|e| Problem::new(400, "bad_callback_url", e.to_string()))?;
    }
    accept(deps, req, job, owner).await
}

/// Issues the job's id and token, binds the Idempotency-Key (or answers
/// for it), stores the job and hands it to its worker. A job that cannot be
/// handed over ends `failed` `not_enqueued` and its key is released.
async fn accept(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    job: JobRequest,
    owner: Option<String>,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let now = deps.clock.now();
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

    // Keys are per owner: two users never meet through theirs.
    let scoped = match (&owner, &job.idempotency_key) {
        (Some(o), Some(k)) => Some(format!("{}:{o}:{k}", o.len())),
        (None, k) => k.clone(),
        (Some(_), None) => None,
    };
    let key = scoped.as_deref();
    if let Some(key) = key {
        let record = IdempotencyRecord {
            request_hash: job.body_hash.clone(),
            job_id: job_id.clone(),
            response: accepted.clone(),
        };
        if let Some(replay) = bind_idempotency_key(deps, key, record).await? {
            return Ok(replay);
        }
    }

    let mut record = JobRecord::queued(job_id.clone(), job.kind, job.input, job.callback_url, now);
    if let Some(owner) = owner {
        record = record.owned_by(owner, job.tags);
        if let Some(limit) = deps.owner_limit {
            record = record.within_owner_limit(limit);
        }
    }
    if record.kind != DEMO_KIND {
        // Held while the job is handed over, so no other process re-delivers it.
        record = record.leased_to(
            deps.lease_owner.as_ref(),
            now.timestamp() + HANDOVER_LEASE.as_secs() as i64,
        );
    }
    if let Some(why) = deps.queue.too_large(&record, &updates_base(deps, req)) {
        release_idempotency_key(deps, key, &job_id).await;
        return Err(Problem::new(413, "payload_too_large", why));
    }
    if let Err(e) = deps.store().create_job(record.clone()).await {
        release_idempotency_key(deps, key, &job_id).await;
        return Err(store_problem(e));
    }
    deps.metrics.job_entered(Status::Queued);
    // Before the worker has it, so followers are subscribed before its
    // first update.
    crate::handlers::owners::announce(deps, &record).await;
    if let Err(e) = deps.queue.enqueue(&record, &updates_base(deps, req)).await {
        tracing::warn!(job_id, error = %e, "could not enqueue job");
        // The key must not replay a 202 for a job that will never run.
        release_idempotency_key(deps, key, &job_id).await;
        let mut u = JobUpdate::status(Status::Failed);
        u.error = Some(crate::protocol::JobError {
            code: "not_enqueued".into(),
            message: e.to_string(),
        });
        let _ = deps.publisher.publish(&job_id, u).await;
        return Err(match e {
            QueueError::Refused(_) => Problem::new(
                502,
                "worker_refused",
                format!(
                    "{e}; the same request will fail the same way until the kind's target is fixed"
                ),
            ),
            QueueError::Full | QueueError::Unavailable(_) => {
                let mut p = Problem::new(503, "queue_full", format!("{e}; retry later"));
                p.headers.push((header::RETRY_AFTER, "1".into()));
                p
            }
        });
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

fn new_job_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    format!("job_{}", hex(&b))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h
    }

    fn parse(headers: &HeaderMap, body: &str) -> Result<JobRequest, Problem> {
        JobRequest::parse(headers, body.as_bytes(), &["demo".into(), "export".into()])
    }

    fn status(r: Result<JobRequest, Problem>) -> u16 {
        r.err().map(|p| p.status).unwrap_or(202)
    }

    #[test]
    fn a_good_request_keeps_its_parts() {
        let mut h = json_headers();
        h.insert("idempotency-key", HeaderValue::from_static("order-42"));
        let body = r#"{"kind":"export","input":{"a":1},"callbackUrl":"http://127.0.0.1:9/x"}"#;
        let job = parse(&h, body).expect("accepted");
        assert_eq!(job.kind, "export");
        assert_eq!(job.input, json!({"a": 1}));
        assert_eq!(job.callback_url.as_deref(), Some("http://127.0.0.1:9/x"));
        assert_eq!(job.idempotency_key.as_deref(), Some("order-42"));
        assert_eq!(job.body_hash, hex(&Sha256::digest(body.as_bytes())));
        // `input` defaults to an empty object.
        assert_eq!(parse(&h, r#"{"kind":"demo"}"#).unwrap().input, json!({}));
    }

    #[test]
    fn each_bad_input_has_its_status() {
        let h = json_headers();
        assert_eq!(status(parse(&HeaderMap::new(), r#"{"kind":"demo"}"#)), 415);
        let big = format!(
            r#"{{"kind":"demo","input":{{"pad":"{}"}}}}"#,
            "x".repeat(MAX_JOB_BODY_BYTES)
        );
        assert_eq!(status(parse(&h, &big)), 413);
        for bad in [
            "not json",
            "[1]",
            r#"{"kind":""}"#,
            r#"{"kind":7}"#,
            r#"{"kind":"demo","input":[]}"#,
            r#"{"kind":"demo","callbackUrl":1}"#,
            r#"{"kind":"nope"}"#,
            r#"{"kind":"demo","input":{"steps":0}}"#,
            r#"{"kind":"demo","inputs":{"steps":3}}"#,
        ] {
            assert_eq!(status(parse(&h, bad)), 400, "{bad}");
        }
        let mut h = json_headers();
        h.insert("idempotency-key", HeaderValue::from_static("has space"));
        assert_eq!(status(parse(&h, r#"{"kind":"demo"}"#)), 400);
    }
}
