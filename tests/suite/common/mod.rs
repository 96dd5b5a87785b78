//! Shared test harness: a real gateway on an ephemeral port, real clients.
#![allow(dead_code)]

pub mod emulators;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use futures_util::{SinkExt, StreamExt};
use jobcast::handlers::Deps;
use jobcast::serve::{Serve, ServeConfig};
use jobcast::store::{DynamoStore, MemoryStore, Store};
use jobcast::token::TokenKey;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub deps: Deps,
    pub lifecycle: broadcast::Receiver<ApiGatewayWebsocketProxyRequest>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn token_key() -> TokenKey {
    TokenKey::new(SECRET, Duration::from_secs(3600)).unwrap()
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
    start_on(Arc::new(MemoryStore::new()), tweak).await
}

/// A server whose time is tokio's, from a fixed instant: in a
/// `#[tokio::test(start_paused = true)]` test, its coalescing windows,
/// sweeps, deadlines and timestamps move only as tokio's paused time
/// does, so waiting a window or proving that nothing happens costs no
/// real time and no test lines up with the wall clock.
pub async fn start_paused_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let start = "2030-01-01T00:00:00Z".parse().unwrap();
    let clock: jobcast::clock::SharedClock = jobcast::clock::TokioClock::starting_at(start);
    let store = MemoryStore::new().with_clock(Arc::clone(&clock));
    start_on(Arc::new(store), |c| {
        c.gateway.clock = clock;
        tweak(c);
    })
    .await
}

/// A server over the given store.
pub async fn start_on(store: Arc<dyn Store>, tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let mut config = ServeConfig::default();
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    config.gateway.shutdown_grace = Duration::from_secs(5);
    tweak(&mut config);
    let gateway = Serve::bind(config, store, token_key()).await.expect("bind");
    let addr = gateway.local_addr().unwrap();
    let deps = gateway.deps().clone();
    let lifecycle = gateway.lifecycle();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(gateway.run(async {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        deps,
        lifecycle,
        http: reqwest::Client::new(),
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/dev{}", self.addr, query)
    }

    /// Stops the server and waits for its graceful shutdown to finish.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("shutdown in time")
                .expect("join")
                .expect("run ok");
        }
    }

    /// Starts a demo job; returns the 202 body.
    pub async fn create_job(&self, input: Value) -> Value {
        let res = self
            .http
            .post(self.url("/jobs"))
            .json(&serde_json::json!({ "kind": "demo", "input": input }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        res.json().await.unwrap()
    }

    /// Starts a job of the external kind `export` (the server must accept it).
    pub async fn create_export_job(&self, input: Value) -> Value {
        let res = self
            .http
            .post(self.url("/jobs"))
            .json(&serde_json::json!({ "kind": "export", "input": input }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        res.json().await.unwrap()
    }

    /// `GET /jobs/{id}`, parsed.
    pub async fn job_view(&self, id: &str) -> Value {
        self.http
            .get(self.url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /jobs/{id}/streams/{name}` from index 0, parsed.
    pub async fn stream_page(&self, id: &str, name: &str) -> Value {
        self.http
            .get(self.url(&format!("/jobs/{id}/streams/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Connects a client with no job.
    pub async fn connect(&self) -> Client {
        connect_async(self.ws_url("")).await.expect("connect").0
    }

    /// A client with no job, and its connection id.
    pub async fn connected(&self) -> (Client, String) {
        let mut c = self.connect().await;
        let id = self.connection_id(&mut c).await;
        (c, id)
    }

    /// Waits for a connection's `$disconnect` and checks its code and reason.
    pub async fn expect_disconnect(&mut self, connection_id: &str, code: i64, reason_has: &str) {
        let e = self.disconnect_of(connection_id).await;
        assert_eq!(e.request_context.disconnect_status_code, Some(code));
        let reason = e.request_context.disconnect_reason.unwrap_or_default();
        assert!(
            reason.contains(reason_has),
            "reason {reason:?} lacks {reason_has:?}"
        );
    }

    /// The connection id of a client, learned with a ping.
    pub async fn connection_id(&self, c: &mut Client) -> String {
        send_json(c, serde_json::json!({"action": "ping"})).await;
        let pong = next_json(c).await;
        assert_eq!(pong["type"], "pong");
        pong["connectionId"].as_str().unwrap().to_string()
    }

    /// Waits for the `$disconnect` event of one connection.
    pub async fn disconnect_of(&mut self, connection_id: &str) -> ApiGatewayWebsocketProxyRequest {
        tokio::time::timeout(WAIT, async {
            loop {
                let e = self.lifecycle.recv().await.expect("lifecycle");
                if e.request_context.connection_id.as_deref() == Some(connection_id) {
                    return e;
                }
            }
        })
        .await
        .expect("disconnect event in time")
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

pub async fn send_json(c: &mut Client, v: Value) {
    c.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next text message, parsed; panics on close or timeout.
pub async fn next_json(c: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, c.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Follows a job through its `websocketUrl` until it ends; returns every
/// progress message seen, the current snapshot first.
pub async fn follow(job: &Value) -> Vec<Value> {
    let (mut c, _) = connect_async(job["websocketUrl"].as_str().unwrap())
        .await
        .unwrap();
    send_json(&mut c, serde_json::json!({"action": "sync"})).await;
    let mut seen = Vec::new();
    loop {
        let m = next_json(&mut c).await;
        assert_eq!(m["type"], "progress");
        let status = m["status"].as_str().unwrap().to_string();
        seen.push(m);
        if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
            return seen;
        }
    }
}

/// Every invariant of a snapshot stream as a client applies it (dropping
/// any message whose seq is not newer): seq +1 each, percent never down.
pub fn assert_monotonic(seen: &[Value]) {
    let applied = applied(seen);
    for w in applied.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert_eq!(
            b["seq"].as_u64().unwrap(),
            a["seq"].as_u64().unwrap() + 1,
            "{seen:?}"
        );
        assert!(b["percent"].as_f64().unwrap() >= a["percent"].as_f64().unwrap());
    }
}

/// Reads until the server's close frame; returns its code.
pub async fn close_code(c: &mut Client) -> u16 {
    loop {
        let m = tokio::time::timeout(WAIT, c.next())
            .await
            .expect("close in time");
        match m {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close frame: {e}"),
            None => panic!("stream ended without close frame"),
        }
    }
}

/// A WebSocket client speaking raw frames, to send what well-behaved
/// libraries refuse to (invalid UTF-8, oversized frames, fragments).
pub struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { stream }
    }

    /// Sends one masked frame.
    pub async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        // The server may close before reading it all; that is the point of some tests.
        let _ = self
            .stream
            .write_all(&RawWs::encode(fin, opcode, payload))
            .await;
    }

    /// One masked frame as bytes, to send several in one write.
    pub fn encode(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Sends bytes as they are, frames or not.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Stops sending and waits for the server to end the connection (a close
    /// frame or the socket closing), whatever it made of what came before.
    pub async fn expect_end(&mut self) {
        let _ = self.stream.shutdown().await;
        tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server ends the connection");
    }

    /// Sends `payload` as one text message split into frames of `chunk` bytes.
    pub async fn fragmented_text(&mut self, payload: &[u8], chunk: usize) {
        let parts: Vec<&[u8]> = payload.chunks(chunk).collect();
        for (i, p) in parts.iter().enumerate() {
            let opcode = if i == 0 { 1 } else { 0 };
            self.frame(i + 1 == parts.len(), opcode, p).await;
        }
    }

    /// Reads frames until a close frame; returns its code.
    pub async fn close_code(&mut self) -> u16 {
        self.try_close_code().await.expect("a close frame")
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub async fn close_frame(&mut self) -> (u16, String) {
        self.try_close_frame().await.expect("a close frame")
    }

    /// As `close_code`, but a reset or an early end is an error, not a panic.
    pub async fn try_close_code(&mut self) -> std::io::Result<u16> {
        self.try_close_frame().await.map(|(code, _)| code)
    }

    /// The error the socket has recorded, if any (SO_ERROR): a reset from
    /// the server shows here before any read, as asyncio and Windows
    /// clients see it.
    pub fn pending_error(&self) -> Option<std::io::ErrorKind> {
        match self.stream.take_error() {
            Ok(Some(e)) => Some(e.kind()),
            Ok(None) => None,
            Err(e) => Some(e.kind()),
        }
    }

    async fn try_close_frame(&mut self) -> std::io::Result<(u16, String)> {
        tokio::time::timeout(WAIT, async {
            loop {
                let mut h = [0u8; 2];
                self.stream.read_exact(&mut h).await?;
                let mut len = (h[1] & 0x7f) as u64;
                if len == 126 {
                    let mut l = [0u8; 2];
                    self.stream.read_exact(&mut l).await?;
                    len = u16::from_be_bytes(l) as u64;
                } else if len == 127 {
                    let mut l = [0u8; 8];
                    self.stream.read_exact(&mut l).await?;
                    len = u64::from_be_bytes(l);
                }
                let mut payload = vec![0u8; len as usize];
                self.stream.read_exact(&mut payload).await?;
                if h[0] & 0x0f == 8 {
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    return Ok((u16::from_be_bytes([payload[0], payload[1]]), reason.into()));
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no close frame in time")))
    }

    /// Reads the next text frame's payload.
    pub async fn next_text(&mut self) -> String {
        tokio::time::timeout(WAIT, async {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).await.unwrap();
            assert_eq!(h[0] & 0x0f, 1, "expected a text frame");
            let mut len = (h[1] & 0x7f) as usize;
            if len == 126 {
                let mut l = [0u8; 2];
                self.stream.read_exact(&mut l).await.unwrap();
                len = u16::from_be_bytes(l) as usize;
            }
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.unwrap();
            String::from_utf8(payload).unwrap()
        })
        .await
        .expect("text frame in time")
    }
}

/// A management API client from the real AWS SDK, pointed at the server.
pub async fn sdk(endpoint: String) -> aws_sdk_apigatewaymanagement::Client {
    sdk_with(
        endpoint,
        aws_sdk_apigatewaymanagement::config::retry::RetryConfig::standard(),
    )
    .await
}

/// A management client with the given retry policy.
pub async fn sdk_with(
    endpoint: String,
    retry: aws_sdk_apigatewaymanagement::config::retry::RetryConfig,
) -> aws_sdk_apigatewaymanagement::Client {
    sdk_as(endpoint, retry, "AKIDEXAMPLE", "secret")
}

/// A management API client signing with the given key pair.
pub fn sdk_as(
    endpoint: String,
    retry: aws_sdk_apigatewaymanagement::config::retry::RetryConfig,
    access_key_id: &str,
    secret_access_key: &str,
) -> aws_sdk_apigatewaymanagement::Client {
    use aws_smithy_http_client::{Builder, tls};
    let http_client = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let creds = aws_credential_types::Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "test",
    );
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
        .region(aws_sdk_apigatewaymanagement::config::Region::new(
            "us-east-1",
        ))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .retry_config(retry)
        .http_client(http_client)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// AWS SDK settings for local endpoints: us-east-1, dummy credentials, the
/// rustls client, and `endpoint` for every service when given.
pub fn local_sdk(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("local", "local", None, None, "test"),
            ),
        )
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        );
    match endpoint {
        Some(e) => config.endpoint_url(e).build(),
        None => config.build(),
    }
}

/// A publisher that reaches the server only through `@connections` over HTTP.
pub async fn http_publisher(
    srv: &TestServer,
    store: Arc<dyn Store>,
    paced: jobcast::push::Paced,
) -> jobcast::publish::Publisher {
    let pusher =
        jobcast::push::ManagementApiPusher::new(&local_sdk(None), &srv.url("/dev")).paced(paced);
    jobcast::publish::Publisher::new(
        store,
        Arc::new(pusher),
        Arc::new(jobcast::metrics::Metrics::new()),
    )
}

/// The snapshots a client applies: those whose seq is above the last applied.
pub fn applied(seen: &[Value]) -> Vec<Value> {
    let mut last = 0;
    let mut out = Vec::new();
    for s in seen {
        let seq = s["seq"].as_u64().unwrap();
        if seq > last {
            last = seq;
            out.push(s.clone());
        }
    }
    out
}

/// DynamoDB Local's endpoint: the test command's, or one started for this
/// test process.
pub fn dynamodb_endpoint() -> String {
    emulators::dynamodb()
}

/// A DynamoDB client for DynamoDB Local with dummy credentials.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    dynamodb_client_at(&dynamodb_endpoint())
}

/// A DynamoDB client for the DynamoDB Local at `endpoint`.
pub fn dynamodb_client_at(endpoint: &str) -> aws_sdk_dynamodb::Client {
    use aws_smithy_http_client::{Builder, tls};
    let http_client = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let creds = aws_credential_types::Credentials::new("local", "local", None, None, "test");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .http_client(http_client)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A DynamoDB store over a fresh table of its own.
pub async fn dynamo_store() -> DynamoStore {
    dynamo_store_with_clock(jobcast::clock::system()).await
}

/// A store over a fresh table that reads "now" from `clock`.
pub async fn dynamo_store_with_clock(clock: jobcast::clock::SharedClock) -> DynamoStore {
    let table = format!("jobcast-test-{:016x}", rand::random::<u64>());
    let store = DynamoStore::new(dynamodb_client(), table, Duration::from_secs(24 * 3600))
        .with_clock(clock);
    store.ensure_table().await.expect("create test table");
    store
}

/// One request a `webhook_receiver` took.
#[derive(Clone, Debug)]
pub struct Received {
    pub signature: String,
    pub body: bytes::Bytes,
}

/// A local webhook receiver: what it took, and the statuses it answers.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub got: Arc<std::sync::Mutex<Vec<Received>>>,
    /// The n-th request is answered with the n-th status (the last one
    /// repeats); a test may rewrite it while the receiver runs.
    pub script: Arc<std::sync::Mutex<Vec<u16>>>,
}

/// Starts a receiver answering the scripted statuses in turn.
pub async fn webhook_receiver(statuses: Vec<u16>) -> WebhookReceiver {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<std::sync::Mutex<Vec<Received>>> = Arc::default();
    let script = Arc::new(std::sync::Mutex::new(statuses));
    let (seen, answers) = (Arc::clone(&got), Arc::clone(&script));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
                        async move {
                            let signature = req
                                .headers()
                                .get(jobcast::webhook::SIGNATURE_HEADER)
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = {
                                let mut g = seen.lock().unwrap();
                                g.push(Received { signature, body });
                                g.len()
                            };
                            let status = {
                                let s = answers.lock().unwrap();
                                s[(n - 1).min(s.len() - 1)]
                            };
                            let mut r = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            ));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    WebhookReceiver { addr, got, script }
}

/// A child process (a `jobcast serve`) killed when dropped, so a test that
/// fails half-way leaves nothing running behind it.
pub struct Process(Option<std::process::Child>);

impl Process {
    pub fn new(child: std::process::Child) -> Process {
        Process(Some(child))
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("process still owned")
    }

    /// Sends SIGTERM, as a service manager stopping it would.
    pub fn terminate(&mut self) {
        let pid = self.child().id() as libc::pid_t;
        // SAFETY: a signal to our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for it to exit (blocking).
    pub fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("process still owned");
        child.wait().expect("wait for the child")
    }

    /// Ends it at once, as a crash or `kill -9` would, and reaps it (blocking).
    pub fn crash(mut self) {
        let _ = self.child().kill();
        self.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A worker's `POST` of `body` to the `updateUrl` of its job message `msg`.
pub async fn post_update(msg: &Value, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(msg["updateUrl"].as_str().unwrap())
        .bearer_auth(msg["workerToken"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// [`post_update`], answered 200: the answer's body.
pub async fn accepted_update(msg: &Value, body: Value) -> Value {
    let r = post_update(msg, body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `POST /jobs` to a server at `addr` (host:port); asserts 202 and returns the body.
pub async fn post_job(addr: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}
