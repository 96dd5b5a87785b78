//! `jobcast emulate`: the gateway of `serve` in front of the user's own
//! WebSocket API, read from their SAM or CloudFormation template (or given
//! as `--route KEY=FUNCTION`). Each event goes to the route's integration as
//! API Gateway would send it; what API Gateway answers on its own (no
//! route, an integration error or timeout, an authorizer's refusal) is
//! answered the same way here.

mod conditions;
mod intrinsics;
pub mod invoke;
pub mod metrics;
pub mod runner;
pub mod template;
mod unmodelled;

use crate::gateway::app::{Connected, WebSocketApp};
use crate::gateway::events::websocket_event_json;
use crate::gateway::header_case::HeaderCase;
use crate::gateway::{Gateway, GatewayConfig};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use http::{HeaderName, HeaderValue};
use invoke::{InvokeError, Invoker};
use metrics::{InvocationMetrics, Outcome};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use template::{Authorizer, IdentitySource, Route, WebSocketApi};

/// Why `emulate` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "set AWS_ENDPOINT_URL_LAMBDA to your local Lambda runner's Invoke API (cargo lambda watch: http://127.0.0.1:9000, sam local start-lambda: http://127.0.0.1:3001)"
    )]
    NoLambdaEndpoint,
    /// A function `emulate` would run itself cannot be started.
    #[error("{function}: {problem}")]
    Function { function: String, problem: String },
    #[error("cannot start: {0}")]
    Bind(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Where the API came from, to read it again when the file changes.
pub struct Reload {
    pub path: std::path::PathBuf,
    pub read: Box<dyn Fn() -> Result<WebSocketApi, template::TemplateError> + Send + Sync>,
}

/// Serves `api` with the gateway `config` describes (an empty stage: the
/// template's, else `dev`) until `shutdown`; logs what it serves and what
/// the template has that it does not model. With `reload`, a change of
/// the file replaces the routes without dropping live connections.
pub async fn serve(
    api: WebSocketApi,
    reload: Option<Reload>,
    mut config: GatewayConfig,
    sdk: &aws_config::SdkConfig,
    options: runner::RunnerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    for warning in &api.warnings {
        tracing::warn!("{warning}");
    }
    let uses_lambda = api.authorizer.is_some()
        || api.routes.values().any(|r| {
            matches!(
                r.integration.as_ref().map(|i| &i.target),
                Some(template::Target::Lambda(_))
            )
        });
    // Without an Invoke API to call, the template's functions run here.
    let run_locally = uses_lambda && std::env::var_os("AWS_ENDPOINT_URL_LAMBDA").is_none();
    let template_dir = reload
        .as_ref()
        .and_then(|r| r.path.parent().map(std::path::Path::to_path_buf));
    if run_locally && (api.functions.is_empty() || template_dir.is_none()) {
        return Err(StartError::NoLambdaEndpoint);
    }
    if config.stage.is_empty() {
        config.stage = api.stage.clone().unwrap_or_else(|| "dev".to_string());
    }
    // API Gateway limits messages per account, not per connection.
    config.client_messages_per_second = None;
    let stage = config.stage.clone();
    let gateway = Gateway::bind(config).await.map_err(StartError::Bind)?;
    log_routes(&api);
    let addr = gateway.local_addr().map_err(StartError::Bind)?;
    tracing::info!("WebSocket API:  ws://{addr}/{stage}");
    tracing::info!("@connections:   http://{addr}/{stage}/@connections/{{connectionId}}");
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| crate::aws::FALLBACK_REGION.to_string());
    let mut invoker = Invoker::new(sdk);
    if run_locally && let Some(dir) = &template_dir {
        let manage = format!("{}/{stage}", crate::gateway::public_base(None, addr));
        let functions = local_functions(&api, dir, &region, &manage, &options)?;
        for f in functions.values() {
            tokio::spawn(runner::watch::reload_on_change(Arc::clone(f)));
        }
        invoker = invoker.with_local(functions);
    }
    let app = Arc::new(Emulator::new(api, invoker, region));
    if let Some(reload) = reload {
        tokio::spawn(watch(reload, Arc::clone(&app), stage.clone()));
    }
    gateway.run(app, shutdown).await.map_err(StartError::Serve)
}

/// The template's functions as local processes: each with Lambda's
/// environment, the template's variables, and `@connections` at `manage`.
fn local_functions(
    api: &WebSocketApi,
    template_dir: &std::path::Path,
    region: &str,
    manage: &str,
    options: &runner::RunnerOptions,
) -> Result<HashMap<String, Arc<runner::pool::Function>>, StartError> {
    let bootstraps = runner::Bootstraps::write().map_err(StartError::Bind)?;
    let mut out = HashMap::new();
    for (name, spec) in &api.functions {
        let fail = |problem: String| StartError::Function {
            function: spec.logical_id.clone(),
            problem,
        };
        let runtime = spec.runtime.clone().ok_or_else(|| {
            fail("no Runtime (set it on the function or in Globals.Function)".into())
        })?;
        let code_dir = template_dir.join(spec.code_uri.as_deref().unwrap_or("."));
        let code_dir = code_dir.canonicalize().map_err(|e| {
            fail(format!(
                "CodeUri {} cannot be read: {e}",
                code_dir.display()
            ))
        })?;
        let handler = spec.handler.clone().unwrap_or_default();
        let (program, args) = runner::command(
            &runtime,
            &code_dir,
            spec.cargo_lambda_binary.as_deref(),
            &bootstraps,
            &options.interpreters,
        )
        .map_err(fail)?;
        let mut env = runner::lambda_environment(name, spec.memory_mb, region, &code_dir, &handler);
        env.insert(
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI".into(),
            manage.to_string(),
        );
        env.extend(options.env_vars.apply(&spec.logical_id, &spec.environment));
        let launch = runner::sandbox::Launch {
            logical_id: spec.logical_id.clone(),
            program,
            args,
            dir: code_dir.clone(),
            env,
            function_arn: runner::function_arn(name, region),
            init_limit: runner::sandbox::INIT_LIMIT,
        };
        let concurrency = spec.reserved_concurrency.unwrap_or(
            options
                .max_concurrency
                .unwrap_or(runner::pool::DEFAULT_MAX_CONCURRENCY),
        );
        tracing::info!(
            "function {} ({runtime}, {handler}) runs here: {}",
            spec.logical_id,
            code_dir.display()
        );
        out.insert(
            name.clone(),
            Arc::new(runner::pool::Function::new(
                launch,
                spec.timeout,
                spec.memory_mb,
                concurrency,
            )),
        );
    }
    Ok(out)
}

fn describe(route: &Route) -> String {
    let target = match route.integration.as_ref().map(|i| &i.target) {
        Some(template::Target::Lambda(f)) => format!("Lambda {f}"),
        Some(template::Target::Http(u)) => format!("HTTP {u}"),
        None => "no integration".into(),
    };
    let way = if route.two_way { ", two-way" } else { "" };
    format!("{target}{way}")
}

fn log_routes(api: &WebSocketApi) {
    for route in api.routes.values() {
        tracing::info!("route {:<14} -> {}", route.key, describe(route));
    }
    if let Some(a) = &api.authorizer {
        tracing::info!(
            "$connect authorizer {} -> Lambda {}",
            a.logical_id,
            a.function
        );
    }
}

/// Re-reads the template whenever its modification time changes (checked
/// twice a second); a template that cannot be served leaves the routes in
/// use as they are.
async fn watch(reload: Reload, app: Arc<Emulator>, stage: String) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&reload.path);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = modified(&reload.path);
        if now == last {
            continue;
        }
        last = now;
        let api = match (reload.read)() {
            Ok(api) => api,
            Err(e) => {
                tracing::error!(
                    "the template changed but cannot be served: {e}; the routes in use stay"
                );
                continue;
            }
        };
        for warning in &api.warnings {
            tracing::warn!("{warning}");
        }
        let old = app.api();
        for (key, route) in &api.routes {
            match old.routes.get(key) {
                None => tracing::info!("route {key} added -> {}", describe(route)),
                Some(was) if was != route => {
                    tracing::info!("route {key} changed -> {}", describe(route))
                }
                Some(_) => {}
            }
        }
        for key in old.routes.keys().filter(|k| !api.routes.contains_key(*k)) {
            tracing::info!("route {key} removed");
        }
        if api.stage.as_deref().is_some_and(|s| s != stage) {
            tracing::warn!(
                "the template's stage changed; the URL stays /{stage} until emulate restarts"
            );
        }
        app.replace(api);
        tracing::info!("template reloaded; live connections kept");
    }
}

/// The user's WebSocket API behind the gateway.
pub struct Emulator {
    /// Replaced whole when the template changes; each event reads the
    /// version current when it arrives.
    api: RwLock<Arc<WebSocketApi>>,
    invoker: Invoker,
    region: String,
    metrics: InvocationMetrics,
}

impl Emulator {
    pub fn new(api: WebSocketApi, invoker: Invoker, region: String) -> Emulator {
        Emulator {
            api: RwLock::new(Arc::new(api)),
            invoker,
            region,
            metrics: InvocationMetrics::default(),
        }
    }

    /// The API as it stands.
    pub fn api(&self) -> Arc<WebSocketApi> {
        match self.api.read() {
            Ok(a) => Arc::clone(&a),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Serves `api` from now on; live connections stay.
    pub fn replace(&self, api: WebSocketApi) {
        let api = Arc::new(api);
        match self.api.write() {
            Ok(mut a) => *a = api,
            Err(poisoned) => *poisoned.into_inner() = api,
        }
    }

    /// Calls `route`'s integration with `event`; logs the call.
    async fn call(
        &self,
        route: &Route,
        event: &ApiGatewayWebsocketProxyRequest,
        case: &HeaderCase,
    ) -> Option<Result<invoke::Answer, InvokeError>> {
        let integration = route.integration.as_ref()?;
        let mut body = websocket_event_json(event);
        case.restore(&mut body);
        let started = std::time::Instant::now();
        let result = self
            .invoker
            .call(&integration.target, &body, integration.timeout)
            .await;
        let target = match &integration.target {
            template::Target::Lambda(f) => f.as_str(),
            template::Target::Http(u) => u.as_str(),
        };
        let connection_id = event.request_context.connection_id.as_deref().unwrap_or("");
        let (outcome, latency) = match &result {
            Ok(a) => (Outcome::Ok, a.latency),
            Err(InvokeError::Timeout(t)) => (Outcome::TimedOut, *t),
            Err(_) => (Outcome::Failed, integration.timeout.min(started.elapsed())),
        };
        self.metrics.record(&route.key, target, outcome, latency);
        match &result {
            Ok(a) => tracing::info!(
                route = %route.key,
                target,
                connection_id,
                status = a.value["statusCode"].as_i64().unwrap_or(200),
                // To the microsecond: 1.736, not 1.7359490000000002.
                latency_ms = a.latency.as_micros() as f64 / 1000.0,
                "integration answered"
            ),
            Err(e) => tracing::warn!(
                route = %route.key,
                target,
                connection_id,
                error = %e,
                "integration failed"
            ),
        }
        Some(result)
    }

    /// Runs the `$connect` authorizer: None to go on (with what it returned
    /// for later events), or the refusal.
    async fn authorize(
        &self,
        auth: &Authorizer,
        event: &ApiGatewayWebsocketProxyRequest,
        case: &HeaderCase,
    ) -> Result<HashMap<String, Value>, ApiGatewayProxyResponse> {
        let present = |s: &IdentitySource| match s {
            IdentitySource::Header(h) => {
                event.headers.get(h.as_str()).is_some_and(|v| !v.is_empty())
            }
            IdentitySource::Query(q) => event
                .query_string_parameters
                .first(q)
                .is_some_and(|v| !v.is_empty()),
        };
        if !auth.identity_sources.iter().all(present) {
            tracing::info!(
                authorizer = %auth.logical_id,
                "refusing $connect: an identity source is missing (401, authorizer not invoked)"
            );
            return Err(status_response(401, "Unauthorized"));
        }
        let mut request = websocket_event_json(event);
        case.restore(&mut request);
        request["type"] = json!("REQUEST");
        request["methodArn"] = json!(format!(
            "arn:aws:execute-api:{}:000000000000:{}/{}/$connect",
            self.region,
            event.request_context.apiid.as_deref().unwrap_or_default(),
            event.request_context.stage.as_deref().unwrap_or_default(),
        ));
        let target = template::Target::Lambda(auth.function.clone());
        let started = std::time::Instant::now();
        let answer = self
            .invoker
            .call(&target, &request, template::DEFAULT_INTEGRATION_TIMEOUT)
            .await;
        let outcome = match &answer {
            Ok(_) => Outcome::Ok,
            Err(InvokeError::Timeout(_)) => Outcome::TimedOut,
            Err(_) => Outcome::Failed,
        };
        self.metrics.record(
            "$connect (authorizer)",
            &auth.function,
            outcome,
            started.elapsed(),
        );
        let policy = match answer {
            Ok(a) => a.value,
            Err(InvokeError::Function(e)) if e.contains("Unauthorized") => {
                return Err(status_response(401, "Unauthorized"));
            }
            Err(e) => {
                tracing::warn!(authorizer = %auth.logical_id, error = %e, "authorizer failed (500)");
                return Err(status_response(500, "Internal server error"));
            }
        };
        let statements = policy["policyDocument"]["Statement"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let allowed = statements.iter().any(|s| s["Effect"] == "Allow")
            && !statements.iter().any(|s| s["Effect"] == "Deny");
        if !allowed {
            tracing::info!(authorizer = %auth.logical_id, "refusing $connect: the authorizer's policy denies it (403)");
            return Err(status_response(403, "Forbidden"));
        }
        // As API Gateway passes it on: principalId beside the context's keys.
        let mut fields: HashMap<String, Value> = policy["context"]
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        if let Some(p) = policy.get("principalId") {
            fields.insert("principalId".into(), p.clone());
        }
        Ok(fields)
    }
}

fn status_response(status: i64, message: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = Some(Body::Text(json!({ "message": message }).to_string()));
    r
}

/// API Gateway's own message to a client whose message it could not pass
/// on: `Forbidden` (no route), `Internal server error`, `Endpoint request
/// timed out`.
fn gateway_message(message: &str, event: &ApiGatewayWebsocketProxyRequest) -> String {
    json!({
        "message": message,
        "connectionId": event.request_context.connection_id,
        "requestId": event.request_context.request_id,
    })
    .to_string()
}

/// A Lambda proxy answer as the response API Gateway acts on: a missing
/// `statusCode` counts as 200.
fn proxy_response(v: &Value) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = v["statusCode"].as_i64().unwrap_or(200);
    if let Some(headers) = v["headers"].as_object() {
        for (k, val) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(HeaderValue::from_str),
            ) {
                r.headers.insert(name, value);
            }
        }
    }
    r.body = match &v["body"] {
        Value::String(s) => Some(Body::Text(s.clone())),
        Value::Null => None,
        other => Some(Body::Text(other.to_string())),
    };
    r
}

#[async_trait]
impl WebSocketApp for Emulator {
    fn route_key(&self, body: &str) -> String {
        self.api()
            .select(body)
            .map(|r| r.key.clone())
            .unwrap_or_else(|| "$default".to_string())
    }

    async fn connect(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
        case: &HeaderCase,
    ) -> Connected {
        let api = self.api();
        let authorizer = match &api.authorizer {
            Some(auth) => match self.authorize(auth, &event, case).await {
                Ok(fields) => fields,
                Err(refusal) => {
                    return Connected {
                        response: refusal,
                        authorizer: HashMap::new(),
                    };
                }
            },
            None => HashMap::new(),
        };
        let mut event = event;
        event.request_context.authorizer.fields = authorizer.clone();
        let response = match api.routes.get("$connect") {
            None => status_response(200, "connected"),
            Some(route) => match self.call(route, &event, case).await {
                None => status_response(200, "connected"),
                Some(Ok(a)) => proxy_response(&a.value),
                Some(Err(_)) => status_response(500, "Internal server error"),
            },
        };
        Connected {
            response,
            authorizer,
        }
    }

    async fn message(&self, event: ApiGatewayWebsocketProxyRequest) -> Option<String> {
        let route_key = event.request_context.route_key.clone().unwrap_or_default();
        let api = self.api();
        let Some(route) = api.routes.get(&route_key) else {
            return Some(gateway_message("Forbidden", &event));
        };
        match self.call(route, &event, &HeaderCase::default()).await {
            None => Some(gateway_message("Internal server error", &event)),
            Some(Err(InvokeError::Timeout(_))) => {
                Some(gateway_message("Endpoint request timed out", &event))
            }
            Some(Err(_)) => Some(gateway_message("Internal server error", &event)),
            Some(Ok(a)) if route.two_way => match proxy_response(&a.value).body {
                Some(Body::Text(t)) => Some(t),
                Some(Body::Binary(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            },
            Some(Ok(_)) => None,
        }
    }

    fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    fn keeps_header_case(&self) -> bool {
        true
    }

    async fn disconnect(&self, event: ApiGatewayWebsocketProxyRequest) {
        if let Some(route) = self.api().routes.get("$disconnect") {
            let _ = self.call(route, &event, &HeaderCase::default()).await;
        }
    }
}
