//! The Lambda Runtime API (version 2018-06-01) as one sandbox serves it to
//! its one process: `GET /runtime/invocation/next` hands out the next event,
//! `POST /runtime/invocation/{id}/response` and `…/error` answer it, and
//! `POST /runtime/init/error` reports a handler that could not load. It is
//! the API `lambda_runtime`, `aws-lambda-ric` and `awslambdaric` speak, so
//! a function's own runtime client runs against it unchanged.
//!
//! Each sandbox has its own listener on loopback (`AWS_LAMBDA_RUNTIME_API`
//! is a bare `host:port`, with no room for a path), and at most one
//! invocation in flight, as a Lambda execution environment has.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

/// Largest response or error a function may send back (Lambda's 6 MB
/// synchronous payload limit).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Where the API lives under `AWS_LAMBDA_RUNTIME_API`.
const PREFIX: &str = "/2018-06-01/runtime";

/// One event for the process, and where its answer goes.
pub struct Invocation {
    pub request_id: String,
    /// The function's `Timeout`: its deadline is counted from when the
    /// process takes the event.
    pub timeout: std::time::Duration,
    pub function_arn: String,
    pub event: Bytes,
    pub reply: oneshot::Sender<Outcome>,
    /// Told when the process has taken the event.
    pub taken: oneshot::Sender<()>,
}

/// How the process answered an invocation.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `POST …/response`: the function's result.
    Response(Bytes),
    /// `POST …/error`: the function failed; the body is Lambda's error
    /// shape (`errorType`, `errorMessage`, `stackTrace`).
    Error(Bytes),
    /// `POST /runtime/init/error`: the handler could not load.
    InitError(Bytes),
}

#[derive(Default)]
struct Slots {
    /// Waiting for the process's next `GET /next`.
    pending: Option<Invocation>,
    /// Handed out, waiting for its answer.
    current: Option<(String, oneshot::Sender<Outcome>)>,
    /// An init error reported with no invocation to answer yet.
    init_error: Option<Bytes>,
}

struct State {
    slots: Mutex<Slots>,
    ready: Notify,
}

impl State {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Runtime API of one sandbox.
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            slots: Mutex::new(Slots::default()),
            ready: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::clone(&state), stop.clone()));
        Ok(RuntimeApi { addr, state, stop })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the process: `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `invocation` for the process's next `GET /next`. An init
    /// error already reported answers it at once, as Lambda answers the
    /// invocation that found its function unable to start.
    pub fn invoke(&self, invocation: Invocation) {
        let mut slots = self.state.slots();
        if let Some(body) = slots.init_error.take() {
            let _ = invocation.reply.send(Outcome::InitError(body));
            return;
        }
        slots.pending = Some(invocation);
        drop(slots);
        self.state.ready.notify_one();
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn refusal(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message});
    reply(status, &body.to_string())
}

async fn serve(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn route(state: &State, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown path; the Runtime API is /2018-06-01/runtime/…",
        );
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(state).await,
        (Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let id = id.to_string();
            let error = *kind == "error";
            match body(req).await {
                Ok(b) => answer(
                    state,
                    &id,
                    if error {
                        Outcome::Error(b)
                    } else {
                        Outcome::Response(b)
                    },
                ),
                Err(r) => {
                    // Lambda fails the invocation and keeps the runtime.
                    let _ = answer(state, &id, Outcome::Error(Bytes::from_static(TOO_LARGE)));
                    r
                }
            }
        }
        (Method::POST, ["init", "error"]) => match body(req).await {
            Ok(b) => init_error(state, b),
            Err(r) => r,
        },
        _ => refusal(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API route",
        ),
    }
}

/// Lambda's error for an answer over its 6 MB limit.
const TOO_LARGE: &[u8] = br#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}"#;

async fn body(req: http::Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "the payload is larger than 6291456 bytes",
        )),
    }
}

/// Waits until an invocation is queued, then hands it out.
async fn next(state: &State) -> Response<Full<Bytes>> {
    let invocation = loop {
        let notified = state.ready.notified();
        if let Some(i) = state.slots().pending.take() {
            break i;
        }
        notified.await;
    };
    let deadline_ms = chrono::Utc::now().timestamp_millis()
        + i64::try_from(invocation.timeout.as_millis()).unwrap_or(i64::MAX / 2);
    let mut r = Response::new(Full::new(invocation.event.clone()));
    let h = r.headers_mut();
    let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    h.insert(
        "lambda-runtime-aws-request-id",
        header(&invocation.request_id),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        header(&invocation.function_arn),
    );
    let hex: String = invocation
        .request_id
        .chars()
        .filter(|c| *c != '-')
        .take(24)
        .collect();
    h.insert(
        "lambda-runtime-trace-id",
        header(&format!(
            "Root=1-{:08x}-{hex};Sampled=0",
            deadline_ms / 1000
        )),
    );
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    state.slots().current = Some((invocation.request_id, invocation.reply));
    let _ = invocation.taken.send(());
    r
}

fn answer(state: &State, id: &str, outcome: Outcome) -> Response<Full<Bytes>> {
    let mut slots = state.slots();
    match slots.current.take() {
        Some((current, tx)) if current == id => {
            let _ = tx.send(outcome);
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        other => {
            slots.current = other;
            refusal(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                &format!("no invocation {id} is waiting for an answer"),
            )
        }
    }
}

fn init_error(state: &State, body: Bytes) -> Response<Full<Bytes>> {
    let mut slots = state.slots();
    let waiting = slots
        .current
        .take()
        .map(|(_, tx)| tx)
        .or_else(|| slots.pending.take().map(|i| i.reply));
    match waiting {
        Some(tx) => {
            let _ = tx.send(Outcome::InitError(body));
        }
        None => slots.init_error = Some(body),
    }
    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(id: &str) -> (Invocation, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let (taken, _) = oneshot::channel();
        let i = Invocation {
            request_id: id.into(),
            timeout: std::time::Duration::from_secs(3),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            event: Bytes::from_static(br#"{"hello":"world"}"#),
            reply: tx,
            taken,
        };
        (i, rx)
    }

    #[tokio::test]
    async fn next_hands_out_the_event_and_only_its_own_id_may_answer() {
        let api = RuntimeApi::start().await.unwrap();
        let base = format!("http://{}/2018-06-01/runtime", api.address());
        let http = reqwest::Client::new();
        let (i, rx) = invocation("8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        api.invoke(i);
        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), 200);
        let h = next.headers();
        assert_eq!(
            h["lambda-runtime-aws-request-id"],
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
        );
        let deadline: i64 = h["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            deadline > now && deadline <= now + 3000,
            "{deadline} vs {now}"
        );
        assert_eq!(
            h["lambda-runtime-invoked-function-arn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
        assert!(
            h["lambda-runtime-trace-id"]
                .to_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        assert_eq!(next.text().await.unwrap(), r#"{"hello":"world"}"#);

        let wrong = http
            .post(format!("{base}/invocation/another-id/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 400);
        let e: serde_json::Value = wrong.json().await.unwrap();
        assert_eq!(e["errorType"], "InvalidRequestID");

        let right = http
            .post(format!(
                "{base}/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/response"
            ))
            .body(r#"{"statusCode":200}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 202);
        assert_eq!(
            rx.await.unwrap(),
            Outcome::Response(Bytes::from_static(br#"{"statusCode":200}"#))
        );
    }

    #[tokio::test]
    async fn an_init_error_answers_the_invocation_that_finds_it() {
        let api = RuntimeApi::start().await.unwrap();
        let base = format!("http://{}/2018-06-01/runtime", api.address());
        let body = r#"{"errorType":"Runtime.ImportModuleError","errorMessage":"no module"}"#;
        let r = reqwest::Client::new()
            .post(format!("{base}/init/error"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let (i, rx) = invocation("r1");
        api.invoke(i);
        assert_eq!(rx.await.unwrap(), Outcome::InitError(Bytes::from(body)));
    }

    #[tokio::test]
    async fn a_response_over_six_megabytes_is_refused_and_fails_the_invocation() {
        let api = RuntimeApi::start().await.unwrap();
        let base = format!("http://{}/2018-06-01/runtime", api.address());
        let http = reqwest::Client::new();
        let (i, rx) = invocation("big");
        api.invoke(i);
        http.get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        let r = http
            .post(format!("{base}/invocation/big/response"))
            .body(vec![b'x'; MAX_RESPONSE_BYTES + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let Outcome::Error(e) = rx.await.unwrap() else {
            panic!("the invocation did not fail")
        };
        let e: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(e["errorType"], "Function.ResponseSizeTooLarge");
    }
}
