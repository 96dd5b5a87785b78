//! Calling an integration: a Lambda function through the Invoke API (any
//! local runner: `cargo lambda watch`, `sam local start-lambda`,
//! serverless-offline's Lambda port, LocalStack), or an HTTP endpoint.

use super::runner::api::Outcome;
use super::runner::pool::Function;
use super::runner::sandbox::Failure;
use super::template::Target;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Why an integration gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The function ran and failed (`X-Amz-Function-Error`), with its
    /// error payload.
    #[error("the function failed: {0}")]
    Function(String),
    /// The runner or endpoint could not be reached or refused the call.
    #[error("{0}")]
    Unreachable(String),
}

/// What an integration answered: a Lambda proxy response (`statusCode`,
/// `headers`, `body`), or for HTTP its status and body in the same shape.
#[derive(Debug)]
pub struct Answer {
    pub value: Value,
    pub latency: Duration,
}

/// One invocation of a function run here, answered as the Invoke API
/// would: its result, or a function error in Lambda's shape.
async fn run_here(f: &Function, event: &Value) -> Result<Value, InvokeError> {
    let (_, answered) = f.invoke(bytes::Bytes::from(event.to_string())).await;
    match answered {
        Ok(Outcome::Response(body)) if body.is_empty() => Ok(Value::Null),
        Ok(Outcome::Response(body)) => serde_json::from_slice(&body).map_err(|e| {
            InvokeError::Function(format!("{} answered no JSON ({e})", f.logical_id()))
        }),
        Ok(Outcome::Error(body) | Outcome::InitError(body)) => Err(InvokeError::Function(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        Err(Failure::InitTimedOut(t)) => Err(InvokeError::Function(
            serde_json::json!({
                "errorType": "Runtime.InitTimeout",
                "errorMessage": format!("INIT_REPORT Init Duration: {:.2} ms Phase: init Status: timeout", t.as_secs_f64() * 1000.0),
            })
            .to_string(),
        )),
        Err(Failure::TimedOut(t)) => Err(InvokeError::Function(
            serde_json::json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("Task timed out after {:.2} seconds", t.as_secs_f64()),
            })
            .to_string(),
        )),
        Err(Failure::Exited(why)) => Err(InvokeError::Function(
            serde_json::json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": format!("Runtime exited: {why}"),
            })
            .to_string(),
        )),
    }
}

/// The clients integrations are called with, built once.
#[derive(Clone)]
pub struct Invoker {
    lambda: aws_sdk_lambda::Client,
    http: reqwest::Client,
    /// Functions run here, by local name (none: every call goes to the
    /// Invoke API).
    local: std::sync::Arc<std::collections::HashMap<String, std::sync::Arc<Function>>>,
}

impl Invoker {
    pub fn new(sdk: &aws_config::SdkConfig) -> Invoker {
        Invoker {
            lambda: aws_sdk_lambda::Client::new(sdk),
            http: reqwest::Client::new(),
            local: Default::default(),
        }
    }

    /// The same, running these functions itself (CONTRACT section 12).
    pub fn with_local(
        mut self,
        functions: std::collections::HashMap<String, std::sync::Arc<Function>>,
    ) -> Invoker {
        self.local = std::sync::Arc::new(functions);
        self
    }

    /// Calls `target` with `event` (the Lambda event; an HTTP endpoint gets
    /// its `body`), giving up after `timeout`.
    pub async fn call(
        &self,
        target: &Target,
        event: &Value,
        timeout: Duration,
    ) -> Result<Answer, InvokeError> {
        let started = Instant::now();
        let call = async {
            match target {
                Target::Lambda(function) => match self.local.get(function) {
                    Some(f) => run_here(f, event).await,
                    None => self.lambda(function, event).await,
                },
                Target::Http(url) => self.http(url, event).await,
            }
        };
        let value = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| InvokeError::Timeout(timeout))??;
        Ok(Answer {
            value,
            latency: started.elapsed(),
        })
    }

    async fn lambda(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
        let out = self
            .lambda
            .invoke()
            .function_name(function)
            .payload(Blob::new(event.to_string().into_bytes()))
            .send()
            .await
            .map_err(|e| {
                // Some runners answer a function's own error with an error
                // status instead of 200 and X-Amz-Function-Error; the
                // error payload tells the two apart.
                let body = e
                    .raw_response()
                    .and_then(|r| r.body().bytes())
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                if body.contains("\"errorMessage\"") || body.contains("\"errorType\"") {
                    InvokeError::Function(body)
                } else {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    InvokeError::Unreachable(refusal(function, &e, status, &body))
                }
            })?;
        let payload = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if out.function_error().is_some() {
            return Err(InvokeError::Function(
                String::from_utf8_lossy(payload).into_owned(),
            ));
        }
        if payload.is_empty() {
            return Ok(Value::Null);
        }
        // A handler may return any JSON; one that is not JSON at all is
        // what API Gateway would fail on too.
        serde_json::from_slice(payload)
            .map_err(|e| InvokeError::Function(format!("{function} answered no JSON ({e})")))
    }

    async fn http(&self, url: &str, event: &Value) -> Result<Value, InvokeError> {
        let body = event["body"].as_str().unwrap_or_default().to_string();
        let res = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                InvokeError::Unreachable(format!("POST {url}: {}", crate::aws::causes(&e)))
            })?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| InvokeError::Unreachable(format!("POST {url}: {e}")))?;
        Ok(serde_json::json!({ "statusCode": status, "body": text }))
    }
}

/// Why the runner refused an invocation, in its own words when the SDK has
/// none (local runners answer plain text without AWS's error headers), and
/// the fix when it does not know the function.
fn refusal<E>(
    function: &str,
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    status: Option<u16>,
    body: &str,
) -> String
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let service = e.as_service_error();
    let code = service.and_then(|s| s.code());
    let said = service.and_then(|s| s.message());
    let mut line = match (status, said) {
        (Some(status), None) => {
            let text: String = body.trim().chars().take(300).collect();
            let text = if text.is_empty() {
                "(no body)".into()
            } else {
                text
            };
            format!("invoking {function}: the runner answered HTTP {status}: {text}")
        }
        _ => format!("invoking {function}: {}", crate::aws::error_line(e)),
    };
    if status == Some(404) || code == Some("ResourceNotFoundException") {
        line.push_str(&format!(
            "; the Lambda runner has no function named {function}: start it there, or map \
             the template's function to the name the runner knows: --function {function}=NAME"
        ));
    }
    line
}
