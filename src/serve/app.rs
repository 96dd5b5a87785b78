//! jobcast's own application behind the gateway: the WebSocket routes and
//! the jobs API run the same handlers as in Lambda; `serve` adds the demo
//! page and, with the directory store, the file URLs it signs.

use super::cors::Cors;
use super::workers::WorkerPool;
use super::{files, static_files};
use crate::files::LocalFiles;
use crate::gateway::events::http_event;
use crate::gateway::header_case::HeaderCase;
use crate::gateway::http_io::{BodyError, HttpRequest, HttpResponse, full, problem, read_limited};
use crate::gateway::{Connected, WebSocketApp};
use crate::handlers::jobs_api::{self, Problem};
use crate::handlers::owners::{self, ConnectAuth};
use crate::handlers::{Deps, websocket};
use crate::protocol::MAX_JOB_BODY_BYTES;
use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::encodings::Body as LambdaBody;
use http::{HeaderValue, Method, Response, StatusCode, header};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// jobcast's own handlers: replies go out through `@connections` (the
/// pusher), as they do in Lambda, so `message` returns nothing.
pub struct JobcastApp {
    pub deps: Deps,
    /// This process's `@connections` base, recorded for each connection
    /// before its `$connect` runs, so other processes over the same store
    /// post to it here.
    pub place: Option<String>,
    /// Browser origins allowed to call the jobs API.
    pub cors: Cors,
    /// The directory of job files this process serves (none with a bucket).
    pub local_files: Option<Arc<LocalFiles>>,
    /// The demo jobs and command workers running here, stopped at shutdown.
    pub workers: Option<WorkerPool>,
}

impl JobcastApp {
    /// The jobs API: the request becomes the HTTP API event the jobs
    /// Lambda receives, and its answer the response.
    async fn jobs(&self, req: HttpRequest, peer: SocketAddr, job_id: Option<&str>) -> HttpResponse {
        let (parts, body) = req.into_parts();
        let bytes = match read_limited(&parts.headers, body, MAX_JOB_BODY_BYTES).await {
            Ok(b) => b,
            Err(e @ BodyError::TooLarge(_)) => {
                return problem(Problem::new(413, "payload_too_large", e.to_string()));
            }
            Err(e) => return problem(Problem::new(400, "bad_request", e.to_string())),
        };
        let event = http_event(&parts, &bytes, peer, job_id, self.deps.clock.now());
        let out = jobs_api::handle(&self.deps, event).await;
        let mut r = Response::new(full(match out.body {
            Some(LambdaBody::Text(t)) => bytes::Bytes::from(t),
            Some(LambdaBody::Binary(b)) => bytes::Bytes::from(b),
            _ => bytes::Bytes::new(),
        }));
        *r.status_mut() = StatusCode::from_u16(out.status_code as u16).unwrap_or(StatusCode::OK);
        *r.headers_mut() = out.headers;
        r
    }

    /// A CORS preflight of the jobs API.
    fn preflight(&self, req: &HttpRequest) -> HttpResponse {
        self.cors
            .preflight(req.headers().get(header::ORIGIN))
            .unwrap_or_else(|| {
                let mut r = problem(Problem::new(
                    403,
                    "forbidden",
                    "this origin may not call the jobs API; allow it with serve --cors-origin",
                ));
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Origin"));
                r
            })
    }
}

#[async_trait]
impl WebSocketApp for JobcastApp {
    fn route_key(&self, body: &str) -> String {
        crate::protocol::select_route(body).to_string()
    }

    /// Runs the `$connect` authorizer first, as API Gateway runs the
    /// `REQUEST` authorizer in AWS (only when owners are on: the template
    /// has no authorizer without them).
    async fn connect(
        &self,
        mut event: ApiGatewayWebsocketProxyRequest,
        _case: &HeaderCase,
    ) -> Connected {
        let verifier = self.deps.identity.as_deref();
        let authorizer = match verifier
            .map(|v| owners::authorize(Some(v), &event.headers, &event.query_string_parameters))
        {
            None => HashMap::new(),
            Some(ConnectAuth::Anonymous) => owners::owner_context(None),
            Some(ConnectAuth::Owner(sub)) => owners::owner_context(Some(&sub)),
            Some(ConnectAuth::Refused(why)) => {
                tracing::info!(reason = %why, "refusing $connect: sign-in token refused");
                return Connected {
                    response: websocket::ws_response(403, &why),
                    authorizer: HashMap::new(),
                };
            }
        };
        event.request_context.authorizer.fields = authorizer.clone();
        if let (Some(place), Some(conn)) = (&self.place, &event.request_context.connection_id) {
            let at = self.deps.clock.now();
            if let Err(e) = self.deps.store().place_connection(conn, place, at).await {
                tracing::warn!(connection_id = %conn, error = %e, "could not record where the connection is held: other processes will not reach it");
            }
        }
        Connected {
            response: websocket::connect(&self.deps, event).await,
            authorizer,
        }
    }

    async fn message(&self, event: ApiGatewayWebsocketProxyRequest) -> Option<String> {
        websocket::message(&self.deps, event).await;
        None
    }

    async fn disconnect(&self, event: ApiGatewayWebsocketProxyRequest) {
        websocket::disconnect(&self.deps, event).await;
    }

    /// The demo page, the jobs API (with CORS) and the file URLs.
    async fn http(&self, req: HttpRequest, peer: SocketAddr) -> Option<HttpResponse> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.method().clone();
        Some(match segments.as_slice() {
            [] if method == Method::GET || method == Method::HEAD => {
                static_files::serve("index.html")
            }
            [file] if static_files::exists(file) && method == Method::GET => {
                static_files::serve(file)
            }
            ["jobs"]
            | ["jobs", _]
            | ["jobs", _, "updates" | "files"]
            | ["jobs", _, "streams", _] => {
                if method == Method::OPTIONS {
                    return Some(self.preflight(&req));
                }
                let id = segments.get(1).map(|s| s.to_string());
                let origin = req.headers().get(header::ORIGIN).cloned();
                let mut r = self.jobs(req, peer, id.as_deref()).await;
                self.cors.decorate(origin.as_ref(), &mut r);
                r
            }
            ["files", job_id, name] => {
                let (job_id, name) = (job_id.to_string(), name.to_string());
                files::route(
                    self.local_files.as_deref(),
                    req,
                    &job_id,
                    &name,
                    self.deps.clock.now(),
                )
                .await
            }
            _ => return None,
        })
    }

    async fn shutdown(&self) {
        if let Some(workers) = &self.workers {
            workers.shutdown().await;
        }
    }

    fn ordered(&self) -> bool {
        true
    }
}
