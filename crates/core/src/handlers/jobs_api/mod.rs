//! The jobs HTTP API (`POST /jobs`, `GET /jobs`, `GET /jobs/{jobId}`, `DELETE /jobs/{jobId}`,
//! and the workers' `POST /jobs/{jobId}/updates`) over API Gateway HTTP API
//! events (payload format 2.0). Every error is an RFC 9457
//! `application/problem+json` document, never a 500 for bad input.

use super::Deps;
use crate::protocol::{DEMO_KIND, Status};
use crate::store::{JobUpdate, StoreError};
use crate::token::TokenError;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Value, json};

mod access;
mod create;
mod files;
mod list;
mod problem;
mod streams;
mod updates;

pub use create::{JobRequest, MAX_IDEMPOTENCY_KEY_LEN};
pub use problem::Problem;
use problem::{json_response, store_problem};

/// The route a request addresses.
enum Route<'a> {
    Collection,
    Item(&'a str),
    Updates(&'a str),
    /// `/jobs/{jobId}/files`: a worker asks where to upload.
    Files(&'a str),
    /// `/jobs/{jobId}/streams/{name}`.
    Stream(&'a str, &'a str),
}

fn route(req: &ApiGatewayV2httpRequest) -> Option<Route<'_>> {
    let path = req
        .raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/");
    let trimmed = path.trim_end_matches('/');
    let updates = trimmed.ends_with("/updates");
    let files = trimmed.ends_with("/files");
    if let (Some(id), Some(name)) = (
        req.path_parameters.get("jobId"),
        req.path_parameters.get("name"),
    ) {
        return Some(Route::Stream(id.as_str(), name.as_str()));
    }
    if let Some(name) = stream_name(path) {
        let id = req.path_parameters.get("jobId").map(String::as_str);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let from_path = segments
            .len()
            .checked_sub(3)
            .and_then(|i| segments.get(i).copied());
        return id.or(from_path).map(|id| Route::Stream(id, name));
    }
    if let Some(id) = req.path_parameters.get("jobId") {
        return Some(if updates {
            Route::Updates(id.as_str())
        } else if files {
            Route::Files(id.as_str())
        } else {
            Route::Item(id.as_str())
        });
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "jobs"] => Some(Route::Collection),
        [.., "jobs", id] => Some(Route::Item(id)),
        [.., "jobs", id, "updates"] => Some(Route::Updates(id)),
        [.., "jobs", id, "files"] => Some(Route::Files(id)),
        [.., "jobs", id, "streams", name] => Some(Route::Stream(id, name)),
        _ => None,
    }
}

/// The `{name}` of a `…/jobs/{jobId}/streams/{name}` path.
fn stream_name(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "jobs", _, "streams", name] => Some(name),
        _ => None,
    }
}

/// Handles one jobs API request.
pub async fn handle(deps: &Deps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    traced(req, |req| handle_untraced(deps, req)).await
}

/// The route's name in a span: its template, not the path (ids are attributes).
fn route_name(route: Option<&Route>) -> &'static str {
    match route {
        None => "(unknown route)",
        Some(Route::Collection) => "/jobs",
        Some(Route::Item(_)) => "/jobs/{jobId}",
        Some(Route::Updates(_)) => "/jobs/{jobId}/updates",
        Some(Route::Files(_)) => "/jobs/{jobId}/files",
        Some(Route::Stream(..)) => "/jobs/{jobId}/streams/{name}",
    }
}

/// Runs a request's handling as a server span: a child of the caller's
/// `traceparent` when it sends one (a worker library sends the job's),
/// the current span of everything the handling does.
async fn traced<F, Fut>(req: ApiGatewayV2httpRequest, handle: F) -> ApiGatewayV2httpResponse
where
    F: FnOnce(ApiGatewayV2httpRequest) -> Fut,
    Fut: std::future::Future<Output = ApiGatewayV2httpResponse>,
{
    use crate::telemetry::{self, SpanContext, SpanKind};
    if !telemetry::enabled() {
        return handle(req).await;
    }
    let method = req.request_context.http.method.clone();
    let parent = header_str(&req.headers, "traceparent").and_then(SpanContext::from_traceparent);
    let route = route(&req);
    let mut span = telemetry::start(
        format!("{method} {}", route_name(route.as_ref())),
        SpanKind::Server,
        parent,
    );
    span.set("http.request.method", method.as_str().to_string());
    span.set("http.route", route_name(route.as_ref()));
    match route {
        Some(Route::Item(id) | Route::Updates(id) | Route::Files(id) | Route::Stream(id, _)) => {
            span.set("jobcast.job.id", id.to_string())
        }
        Some(Route::Collection) if method == Method::POST => {
            let kind = body_bytes(&req)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["kind"].as_str().map(str::to_string));
            if let Some(kind) = kind {
                span.set("jobcast.job.kind", kind);
            }
        }
        _ => {}
    }
    let res = telemetry::within(&span, handle(req)).await;
    span.set("http.response.status_code", res.status_code);
    if let Some(id) = res
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
    {
        span.set("jobcast.job.id", id.to_string());
    }
    if res.status_code >= 500 {
        span.fail(format!("answered {}", res.status_code));
    }
    span.end();
    res
}

async fn handle_untraced(deps: &Deps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let method = req.request_context.http.method.clone();
    let result = match route(&req) {
        None => Err(Problem::new(404, "not_found", "no such resource")),
        Some(Route::Collection) if method == Method::POST => create::create(deps, &req).await,
        Some(Route::Collection) if method == Method::GET => list::list(deps, &req).await,
        Some(Route::Item(id)) if method == Method::GET => get(deps, &req, id).await,
        Some(Route::Item(id)) if method == Method::DELETE => cancel(deps, &req, id).await,
        Some(Route::Updates(id)) if method == Method::POST => updates::update(deps, &req, id).await,
        Some(Route::Files(id)) if method == Method::POST => files::presign(deps, &req, id).await,
        Some(Route::Files(_)) => Err(not_allowed(&method, "POST")),
        Some(Route::Stream(id, name)) if method == Method::GET => {
            streams::page(deps, &req, id, name).await
        }
        Some(Route::Stream(..)) => Err(not_allowed(&method, "GET")),
        Some(Route::Collection) => Err(not_allowed(&method, "GET, POST")),
        Some(Route::Item(_)) => Err(not_allowed(&method, "GET, DELETE")),
        Some(Route::Updates(_)) => Err(not_allowed(&method, "POST")),
    };
    result.unwrap_or_else(problem::problem_response)
}

/// Handles a request to the workers' own door (a Lambda function URL in
/// AWS, which costs no API Gateway request): `POST /jobs/{jobId}/updates`
/// and `POST /jobs/{jobId}/files`, nothing else. The rest of the jobs API is refused here, so this door
/// never bypasses what the HTTP API checks first (its JWT authorizer).
pub async fn handle_updates(deps: &Deps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    traced(req, |req| handle_updates_untraced(deps, req)).await
}

async fn handle_updates_untraced(
    deps: &Deps,
    req: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let method = req.request_context.http.method.clone();
    let result = match route(&req) {
        Some(Route::Updates(id)) if method == Method::POST => updates::update(deps, &req, id).await,
        Some(Route::Updates(_)) => Err(not_allowed(&method, "POST")),
        Some(Route::Files(id)) if method == Method::POST => files::presign(deps, &req, id).await,
        Some(Route::Files(_)) => Err(not_allowed(&method, "POST")),
        _ => Err(Problem::new(
            404,
            "not_found",
            "only POST /jobs/{jobId}/updates and /jobs/{jobId}/files are served here; the rest of the jobs API is at its own URL",
        )),
    };
    result.unwrap_or_else(problem::problem_response)
}

/// 405 with the methods the resource has.
fn not_allowed(method: &Method, allow: &'static str) -> Problem {
    let mut p = Problem::new(
        405,
        "method_not_allowed",
        format!("{method} is not allowed here; allowed: {allow}"),
    );
    p.headers.push((header::ALLOW, allow.into()));
    p
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

/// Where workers post their updates: `{base}/jobs/{id}/updates`.
fn updates_base(deps: &Deps, req: &ApiGatewayV2httpRequest) -> String {
    match &deps.links.update_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => base_url(deps, req),
    }
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

async fn get(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let job = access::load(deps, req, id, access::Need::Read).await?;
    let mut view = deps.publisher.shown(&job).await.public_view();
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

async fn cancel(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let job = access::load(deps, req, id, access::Need::Cancel).await?;
    if job.snapshot.status.is_terminal() {
        return Err(store_problem(StoreError::Terminal {
            job_id: id.to_string(),
            status: job.snapshot.status,
        }));
    }
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
