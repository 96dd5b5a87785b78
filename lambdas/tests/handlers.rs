//! The Lambda handlers fed AWS-shaped events from `tests/fixtures/`, wired
//! as in Lambda (DynamoDB store, SQS queue, Management API client), against
//! DynamoDB Local, an SQS emulator (moto) and `jobcast serve` standing in
//! for API Gateway's `@connections`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::SqsEvent;
use futures_util::{SinkExt, StreamExt};
use jobcast::handlers::{jobs_api, websocket};
use jobcast::serve::{Serve, ServeConfig};
use jobcast::store::{DynamoStore, MemoryStore, Store};
use jobcast::token::TokenKey;
use jobcast_lambdas::{SqsQueue, Wiring};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "fixture-secret-0123456789abcdef";
type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[path = "../../tests/suite/common/emulators.rs"]
mod emulators;

fn fixture(name: &str, vars: &[(&str, &str)]) -> String {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let now = chrono::Utc::now().timestamp_millis().to_string();
    text = text.replace("{{connectedAt}}", &now);
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    text
}

fn sdk_config() -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("local", "local", None, None, "test"),
            ),
        )
        .http_client(http)
        .build()
}

struct Rig {
    wiring: Wiring,
    store: DynamoStore,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    gateway_addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn rig() -> Rig {
    let sdk = sdk_config();
    let dynamo_conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(emulators::dynamodb())
        .build();
    let table = format!("jobcast-lambda-{:08x}", rand::random::<u32>());
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(dynamo_conf),
        table,
        Duration::from_secs(86_400),
    );
    store.ensure_table().await.unwrap();

    let sqs_conf = aws_sdk_sqs::config::Builder::from(&sdk)
        .endpoint_url(emulators::sqs())
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(sqs_conf);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("jobcast-jobs-{:08x}", rand::random::<u32>()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    // `jobcast serve` plays API Gateway: clients connect to it and the
    // functions post to its @connections over HTTP.
    let mut config = ServeConfig::default();
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    config.gateway.stage = "prod".into();
    let gateway = Serve::bind(
        config,
        Arc::new(MemoryStore::new()),
        TokenKey::random(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let gateway_addr = gateway.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.run(async {
        let _ = rx.await;
    }));

    let mut wiring = Wiring::new(
        sdk,
        Arc::new(store.clone()),
        TokenKey::new(SECRET, Duration::from_secs(3600)).unwrap(),
        Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())),
    );
    wiring.management_endpoint = Some(format!("http://{gateway_addr}/prod"));
    wiring.parts.links.websocket_url =
        Some("wss://abc123xyz0.execute-api.eu-west-1.amazonaws.com/prod".into());
    Rig {
        wiring,
        store,
        sqs,
        queue_url,
        gateway_addr,
        _stop: tx,
    }
}

impl Rig {
    async fn client(&self) -> (Client, String) {
        let (mut c, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/prod", self.gateway_addr))
                .await
                .unwrap();
        c.send(Message::Text(r#"{"action":"ping"}"#.into()))
            .await
            .unwrap();
        let pong = next_json(&mut c).await;
        (c, pong["connectionId"].as_str().unwrap().to_string())
    }

    async fn post_job(&self, key: &str) -> (u16, Value, ApiGatewayV2httpRequest) {
        let event: ApiGatewayV2httpRequest =
            serde_json::from_str(&fixture("jobs-post.json", &[("idempotencyKey", key)])).unwrap();
        let deps = self.wiring.deps(&self.wiring.fixed_endpoint().unwrap());
        let res = jobs_api::handle(&deps, event.clone()).await;
        let body = match res.body {
            Some(Body::Text(t)) => serde_json::from_str(&t).unwrap(),
            _ => Value::Null,
        };
        (res.status_code as u16, body, event)
    }
}

/// A job created through the jobs function, a client subscribed to it,
/// and what its worker reports with.
struct WorkerJob {
    accepted: Value,
    job_id: String,
    client: Client,
    deps: jobcast::handlers::Deps,
    worker_token: String,
    /// `/jobs/{jobId}/updates`.
    updates: String,
}

impl Rig {
    async fn worker_job(&self, key: &str) -> WorkerJob {
        let (status, accepted, _) = self.post_job(key).await;
        assert_eq!(status, 202);
        let job_id = accepted["jobId"].as_str().unwrap().to_string();
        let (client, conn) = self.client().await;
        self.store
            .subscribe(&job_id, &conn, chrono::Utc::now())
            .await
            .unwrap();
        let keys = TokenKey::new(SECRET, Duration::from_secs(3600)).unwrap();
        WorkerJob {
            worker_token: keys.issue_worker(&job_id, chrono::Utc::now().timestamp()),
            updates: format!("/jobs/{job_id}/updates"),
            deps: self.wiring.deps(&self.wiring.fixed_endpoint().unwrap()),
            accepted,
            job_id,
            client,
        }
    }
}

async fn next_json(c: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

fn ws_event(name: &str, vars: &[(&str, &str)]) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&fixture(name, vars)).unwrap()
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn websocket_functions_with_fixtures() {
    let rig = rig().await;
    let (status, accepted, _) = rig.post_job("ws-fixture").await;
    assert_eq!(status, 202);
    let job_id = accepted["jobId"].as_str().unwrap();
    let token = accepted["token"].as_str().unwrap();
    let (mut client, conn) = rig.client().await;
    let vars = [
        ("jobId", job_id),
        ("token", token),
        ("connectionId", conn.as_str()),
    ];

    // $connect with the right token: 200 and a subscription item.
    let event = ws_event("connect.json", &vars);
    let deps = rig.wiring.deps(&rig.wiring.endpoint_for(&event));
    let endpoint_from_event = Wiring::new(
        sdk_config(),
        Arc::new(rig.store.clone()),
        TokenKey::random(Duration::from_secs(1)),
        Arc::new(SqsQueue::new(rig.sqs.clone(), "unused")),
    )
    .endpoint_for(&event);
    assert_eq!(
        endpoint_from_event,
        "https://abc123xyz0.execute-api.eu-west-1.amazonaws.com/prod"
    );
    let res = websocket::connect(&deps, event).await;
    assert_eq!(res.status_code, 200);
    assert_eq!(
        rig.store.subscribers(job_id).await.unwrap(),
        vec![conn.clone()]
    );

    // A bad token: 403; no token: 401; nothing recorded for the other connection.
    let bad = [
        ("jobId", job_id),
        ("token", "1.AAAA"),
        ("connectionId", "OtherConnId0AA="),
    ];
    assert_eq!(
        websocket::connect(&deps, ws_event("connect.json", &bad))
            .await
            .status_code,
        403
    );
    let mut missing = ws_event("connect.json", &bad);
    missing.query_string_parameters =
        std::collections::HashMap::from([("jobId".to_string(), job_id.to_string())]).into();
    assert_eq!(websocket::connect(&deps, missing).await.status_code, 401);
    assert_eq!(
        rig.store.connection_jobs("OtherConnId0AA=").await.unwrap(),
        Vec::<String>::new()
    );

    // Message routes answer through @connections.
    let res = websocket::message(&deps, ws_event("message-ping.json", &vars)).await;
    assert_eq!(res.status_code, 200);
    let pong = next_json(&mut client).await;
    assert_eq!(pong, json!({"type": "pong", "connectionId": conn}));
    websocket::message(&deps, ws_event("message-subscribe.json", &vars)).await;
    let snap = next_json(&mut client).await;
    assert_eq!(snap["type"], "progress");
    assert_eq!(snap["jobId"], job_id);
    websocket::message(&deps, ws_event("message-default.json", &vars)).await;
    assert_eq!(next_json(&mut client).await["code"], "bad_request");

    // $disconnect removes the subscription items.
    let res = websocket::disconnect(&deps, ws_event("disconnect.json", &vars)).await;
    assert_eq!(res.status_code, 200);
    assert!(rig.store.subscribers(job_id).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn jobs_api_queues_on_sqs_and_worker_runs_the_batch() {
    let rig = rig().await;
    let (status, accepted, event) = rig.post_job("order-1").await;
    assert_eq!(status, 202);
    let job_id = accepted["jobId"].as_str().unwrap().to_string();
    assert!(
        accepted["websocketUrl"]
            .as_str()
            .unwrap()
            .starts_with("wss://abc123xyz0.execute-api.eu-west-1.amazonaws.com/prod?jobId=")
    );
    assert_eq!(
        accepted["statusUrl"],
        format!("https://def456uvw1.execute-api.eu-west-1.amazonaws.com/jobs/{job_id}")
    );
    // Replaying the same request with the same key: same job.
    let deps = rig.wiring.deps(&rig.wiring.fixed_endpoint().unwrap());
    let replay = jobs_api::handle(&deps, event).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    // The job is on the queue, as the worker will receive it.
    let received = rig
        .sqs
        .receive_message()
        .queue_url(&rig.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(
        messages.len(),
        1,
        "one job queued, the replay queued nothing"
    );
    let body = messages[0].body.clone().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"jobId": job_id})
    );

    // A browser follows the job.
    let (mut client, conn) = rig.client().await;
    rig.store
        .subscribe(&job_id, &conn, chrono::Utc::now())
        .await
        .unwrap();

    // The worker gets a batch with that message and a malformed one.
    let mut batch: SqsEvent =
        serde_json::from_str(&fixture("sqs.json", &[("jobId", &job_id)])).unwrap();
    batch.records[0].body = Some(body);
    let response = rig.wiring.run_worker_batch(batch).await.unwrap();
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["2e1424d4-f796-459a-8184-9c92662be6da"]);

    // Every step reached the browser, ending succeeded at seq steps + 2.
    let mut last = Value::Null;
    for _ in 0..4 {
        last = next_json(&mut client).await;
    }
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["seq"], 5);

    // GET through the jobs function shows it.
    let get: ApiGatewayV2httpRequest =
        serde_json::from_str(&fixture("jobs-get.json", &[("jobId", &job_id)])).unwrap();
    let res = jobs_api::handle(&deps, get).await;
    assert_eq!(res.status_code, 200);
    assert!(res.headers.get("retry-after").is_none());

    // Redelivery of a finished job changes nothing.
    let mut again: SqsEvent =
        serde_json::from_str(&fixture("sqs.json", &[("jobId", &job_id)])).unwrap();
    again.records.truncate(1);
    assert!(
        rig.wiring
            .run_worker_batch(again)
            .await
            .unwrap()
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        rig.store
            .get_job(&job_id)
            .await
            .unwrap()
            .unwrap()
            .snapshot
            .seq,
        5
    );
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_retried_key_after_queue_full_is_a_fresh_attempt_never_a_replayed_202() {
    let mut rig = rig().await;
    let good_queue = rig.queue_url.clone();
    let post = |rig: &Rig| {
        let event: ApiGatewayV2httpRequest =
            serde_json::from_str(&fixture("jobs-post.json", &[("idempotencyKey", "order-7")]))
                .unwrap();
        let deps = rig.wiring.deps(&rig.wiring.fixed_endpoint().unwrap());
        async move {
            let res = jobs_api::handle(&deps, event).await;
            let body: Value = match res.body {
                Some(Body::Text(t)) => serde_json::from_str(&t).unwrap(),
                _ => Value::Null,
            };
            (res.status_code, res.headers, body)
        }
    };
    // The queue is gone: the job cannot be enqueued.
    rig.wiring.queue = Arc::new(SqsQueue::new(
        rig.sqs.clone(),
        format!("{good_queue}-deleted"),
    ));
    let (status, _, first) = post(&rig).await;
    assert_eq!(status, 503, "{first}");
    assert_eq!(first["code"], "queue_full");
    // A retry with the same key is a fresh attempt: still 503, not a 202
    // for the job that never ran.
    let (status, _, again) = post(&rig).await;
    assert_eq!(status, 503, "{again}");

    // The queue is back: the retry runs, and only now does the key replay.
    rig.wiring.queue = Arc::new(SqsQueue::new(rig.sqs.clone(), good_queue.clone()));
    let (status, headers, accepted) = post(&rig).await;
    assert_eq!(status, 202, "{accepted}");
    assert!(headers.get("idempotent-replayed").is_none());
    let job_id = accepted["jobId"].as_str().unwrap();
    let job = rig.store.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.snapshot.status, jobcast::protocol::Status::Queued);
    let (status, headers, replay) = post(&rig).await;
    assert_eq!(status, 202);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replay, accepted);
    let queued = rig
        .sqs
        .receive_message()
        .queue_url(&good_queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.messages().len(), 1, "enqueued once");
}

/// A receiver counting the webhook deliveries it takes.
async fn counting_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Headers, then the declared body.
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn the_shipped_worker_wiring_delivers_each_webhook_once() {
    let rig = rig().await;
    let wiring = rig
        .wiring
        .with_webhook_secret(
            "webhook-secret-0123456789abcdef",
            jobcast::webhook::WebhookOptions::default(),
        )
        .unwrap();
    let (hook, delivered) = counting_receiver().await;
    let mut event: ApiGatewayV2httpRequest =
        serde_json::from_str(&fixture("jobs-post.json", &[("idempotencyKey", "hook-1")])).unwrap();
    event.body = Some(
        json!({"kind": "demo", "input": {"steps": 2, "stepMs": 0}, "callbackUrl": hook})
            .to_string(),
    );
    let deps = wiring.deps(&wiring.fixed_endpoint().unwrap());
    let res = jobs_api::handle(&deps, event).await;
    assert_eq!(res.status_code, 202, "{:?}", res.body);
    let received = rig
        .sqs
        .receive_message()
        .queue_url(&rig.queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = received.messages()[0].body().unwrap().to_string();
    let job_id = serde_json::from_str::<Value>(&message).unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut batch: SqsEvent =
        serde_json::from_str(&fixture("sqs.json", &[("jobId", &job_id)])).unwrap();
    batch.records.truncate(1);
    batch.records[0].body = Some(message);
    let response = wiring.run_worker_batch(batch.clone()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    // SQS may deliver the message again: still one webhook.
    wiring.run_worker_batch(batch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1);
    let job = rig.store.get_job(&job_id).await.unwrap().unwrap();
    assert_eq!(job.snapshot.status, jobcast::protocol::Status::Succeeded);
    assert_eq!(
        job.webhook.map(|w| w.status),
        Some(jobcast::store::WebhookStatus::Delivered)
    );
}

/// An event as a Lambda function URL delivers it to the updates function.
fn function_url_event(
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> ApiGatewayV2httpRequest {
    let text = fixture(
        "function-url-update.json",
        &[("method", method), ("path", path), ("workerToken", token)],
    );
    let mut event: ApiGatewayV2httpRequest = serde_json::from_str(&text).unwrap();
    event.body = Some(body.to_string());
    event
}

fn problem_code(res: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Value {
    match &res.body {
        Some(Body::Text(t)) => serde_json::from_str::<Value>(t).unwrap()["code"].clone(),
        _ => Value::Null,
    }
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_worker_reports_through_the_function_url_and_nothing_else_gets_in() {
    let rig = rig().await;
    let WorkerJob {
        accepted,
        job_id,
        mut client,
        deps,
        worker_token,
        updates,
    } = rig.worker_job("function-url-1").await;

    // The worker's update: stored, answered with its seq, pushed.
    let event = function_url_event(
        "POST",
        &updates,
        &worker_token,
        r#"{"percent":40,"message":"half"}"#,
    );
    let res = jobs_api::handle_updates(&deps, event).await;
    assert_eq!(res.status_code, 200);
    let Some(Body::Text(body)) = &res.body else {
        panic!("no body: {res:?}");
    };
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"jobId": job_id, "seq": 2, "status": "running"})
    );
    let pushed = next_json(&mut client).await;
    assert_eq!(
        (&pushed["seq"], &pushed["percent"], &pushed["message"]),
        (&json!(2), &json!(40.0), &json!("half"))
    );

    // The job's client token is not a worker's.
    let client_token = accepted["token"].as_str().unwrap();
    let event = function_url_event("POST", &updates, client_token, r#"{"percent":50}"#);
    assert_eq!(
        jobs_api::handle_updates(&deps, event).await.status_code,
        403
    );

    // Only the updates route is served: the rest of the jobs API (and its
    // authorizer) stays behind the HTTP API.
    let get = jobs_api::handle_updates(
        &deps,
        function_url_event("GET", &updates, &worker_token, ""),
    )
    .await;
    assert_eq!(get.status_code, 405);
    assert_eq!(get.headers["allow"], "POST");
    let post_jobs = r#"{"kind":"demo","input":{"steps":1,"stepMs":0}}"#;
    for (method, path, body) in [
        ("POST", "/jobs".to_string(), post_jobs),
        ("GET", format!("/jobs/{job_id}"), ""),
        ("DELETE", format!("/jobs/{job_id}"), ""),
        ("GET", "/jobs".to_string(), ""),
    ] {
        let res = jobs_api::handle_updates(
            &deps,
            function_url_event(method, &path, &worker_token, body),
        )
        .await;
        assert_eq!(res.status_code, 404, "{method} {path}");
        assert_eq!(problem_code(&res), "not_found");
    }
    let job = rig.store.get_job(&job_id).await.unwrap().unwrap();
    assert_eq!(
        job.snapshot.seq, 2,
        "nothing but the one update reached the job"
    );
}

/// A stand-in for Lambda's Invoke API: records each request's path and
/// body and answers as an asynchronous invoke does (202, empty body).
async fn invoke_receiver() -> (String, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        stream.read_line(&mut line).await.unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                    seen.lock()
                        .unwrap()
                        .push((path, serde_json::from_slice(&body).unwrap()));
                    stream
                        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (url, got)
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_held_update_is_pushed_by_the_sweeper_when_its_window_ends() {
    use jobcast::publish::InvokeFlush;
    let mut rig = rig().await;
    let (invoke_url, invoked) = invoke_receiver().await;
    // Long enough that three writes to DynamoDB Local fit in one, even on
    // a loaded machine.
    let window = Duration::from_secs(2);
    rig.wiring.parts.publish.coalesce = window;
    let lambda_sdk = sdk_config().to_builder().endpoint_url(invoke_url).build();
    rig.wiring.parts.flusher = Some(Arc::new(InvokeFlush::new(&lambda_sdk, "jobcast-sweeper")));
    let WorkerJob {
        job_id,
        mut client,
        deps,
        worker_token,
        updates,
        ..
    } = rig.worker_job("coalesce-1").await;

    // After a whole window without an update, just as the next begins:
    // three updates, the first pushed at once (news after a quiet window).
    let now = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(
        (4000 - now.rem_euclid(2000) + 50) as u64,
    ))
    .await;
    for percent in [10, 20, 30] {
        let body = format!(r#"{{"percent":{percent},"message":"at {percent}"}}"#);
        let event = function_url_event("POST", &updates, &worker_token, &body);
        assert_eq!(
            jobs_api::handle_updates(&deps, event).await.status_code,
            200
        );
    }
    assert_eq!(
        next_json(&mut client).await["seq"],
        2,
        "the window's first, at once"
    );
    // The second asked the sweeper, asynchronously, to push the window's
    // newest when it ends; the third asked nothing.
    let calls = invoked.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (path, event) = &calls[0];
    assert_eq!(path, "/2015-03-31/functions/jobcast-sweeper/invocations");
    assert_eq!(event["jobcastFlush"]["jobId"], job_id.as_str());
    assert_eq!(event["jobcastFlush"]["windowMs"], 2000);

    // What the sweeper does with that event: wait for the window's end, push.
    let sweeper = rig.wiring.deps(&rig.wiring.fixed_endpoint().unwrap());
    let answer = jobcast_lambdas::coalescing::flush(&sweeper.publisher, event)
        .await
        .expect("a flush event")
        .unwrap();
    assert_eq!(answer["pushed"], 1);
    let newest = next_json(&mut client).await;
    assert_eq!(
        (&newest["seq"], &newest["message"]),
        (&json!(4), &json!("at 30"))
    );
    // Any other event is the scheduled sweep's.
    let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event"});
    assert!(
        jobcast_lambdas::coalescing::flush(&sweeper.publisher, &scheduled)
            .await
            .is_none()
    );
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_workers_chunks_reach_the_stream_subscriber_and_the_polling_endpoint() {
    let rig = rig().await;
    let WorkerJob {
        job_id,
        mut client,
        deps,
        worker_token,
        updates,
        ..
    } = rig.worker_job("streams-1").await;
    // The client's subscription asks for the `tokens` stream.
    let conn = rig.store.subscribers(&job_id).await.unwrap().remove(0);
    rig.store
        .subscribe_streams(&job_id, &conn, chrono::Utc::now(), &["tokens".to_string()])
        .await
        .unwrap();
    let body = r#"{"append":{"tokens":["Hel","lo"],"log":["started"]}}"#;
    let res = jobs_api::handle_updates(
        &deps,
        function_url_event("POST", &updates, &worker_token, body),
    )
    .await;
    assert_eq!(res.status_code, 200);
    let Some(Body::Text(answer)) = &res.body else {
        panic!("no body: {res:?}");
    };
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(answer["seq"], 1, "an append alone takes no seq");
    assert_eq!(answer["streams"], json!({"log": 1, "tokens": 2}));
    let pushed = next_json(&mut client).await;
    assert_eq!(
        pushed,
        json!({"type": "chunks", "jobId": job_id, "stream": "tokens", "from": 0, "chunks": ["Hel", "lo"]})
    );
    // The same chunks, polled through the jobs function.
    let res = jobs_api::handle(
        &deps,
        function_url_event("GET", &format!("/jobs/{job_id}/streams/tokens"), "", ""),
    )
    .await;
    assert_eq!(res.status_code, 200);
    let Some(Body::Text(page)) = &res.body else {
        panic!("no body: {res:?}");
    };
    let page: Value = serde_json::from_str(page).unwrap();
    assert_eq!(page["chunks"], json!(["Hel", "lo"]));
    assert_eq!(
        (page["next"].as_u64(), page["complete"].as_bool()),
        (Some(2), Some(false))
    );
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_worker_uploads_to_the_bucket_and_the_snapshot_links_the_file() {
    let mut rig = rig().await;
    // The bucket, on moto: what the template's FilesBucket is in AWS.
    let s3_sdk = moto_sdk();
    let bucket = format!("jobcast-files-{:08x}", rand::random::<u32>());
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3_sdk)
            .force_path_style(true)
            .build(),
    )
    .create_bucket()
    .bucket(&bucket)
    .send()
    .await
    .unwrap();
    rig.wiring.parts.files = Some(jobcast::files::FileLinks::new(
        Arc::new(jobcast::files::S3Files::new(&s3_sdk, &bucket)),
        Duration::from_secs(900),
    ));
    let WorkerJob {
        job_id,
        mut client,
        deps,
        worker_token,
        ..
    } = rig.worker_job("files-1").await;
    let files = format!("/jobs/{job_id}/files");
    let ask = r#"{"name":"report.csv","contentType":"text/csv","size":12}"#;
    let res = jobs_api::handle_updates(
        &deps,
        function_url_event("POST", &files, &worker_token, ask),
    )
    .await;
    assert_eq!(res.status_code, 201, "{res:?}");
    let Some(Body::Text(answer)) = &res.body else {
        panic!("no body: {res:?}");
    };
    let upload: Value = serde_json::from_str(answer).unwrap();
    let http = reqwest::Client::new();
    let put = http
        .put(upload["uploadUrl"].as_str().unwrap())
        .header("Content-Type", "text/csv")
        .body("id,total\n1,3\n")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{put:?}");
    // Attaching through the function URL reads the object's size.
    let done = r#"{"status":"succeeded","files":["report.csv"]}"#;
    let updates = format!("/jobs/{job_id}/updates");
    let res = jobs_api::handle_updates(
        &deps,
        function_url_event("POST", &updates, &worker_token, done),
    )
    .await;
    assert_eq!(res.status_code, 200, "{res:?}");
    let pushed = next_json(&mut client).await;
    assert_eq!(pushed["status"], "succeeded");
    let file = &pushed["files"][0];
    assert_eq!(
        (file["name"].as_str(), file["size"].as_u64()),
        (Some("report.csv"), Some(13))
    );
    let url = file["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let body = http.get(url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "id,total\n1,3\n");
    // A file never uploaded is refused whole.
    let missing = r#"{"files":["nope.csv"]}"#;
    let res = jobs_api::handle_updates(
        &deps,
        function_url_event("POST", &updates, &worker_token, missing),
    )
    .await;
    assert_eq!(res.status_code, 409, "the job has ended: {res:?}");
}

/// A client of a service on moto.
fn moto_sdk() -> aws_config::SdkConfig {
    sdk_config()
        .into_builder()
        .endpoint_url(emulators::sqs())
        .build()
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn the_jobs_function_hands_kinds_to_step_functions_eventbridge_and_ecs() {
    use jobcast::dispatch::{Kinds, ecs, events, states};
    let mut rig = rig().await;
    let moto = moto_sdk();
    let n = rand::random::<u32>();
    // A state machine, a bus whose rule feeds a queue, a cluster and task.
    let sfn = aws_sdk_sfn::Client::new(&moto);
    let machine = sfn
        .create_state_machine()
        .name(format!("render-{n:08x}"))
        .definition(r#"{"StartAt":"W","States":{"W":{"Type":"Pass","End":true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/jobs")
        .send()
        .await
        .unwrap()
        .state_machine_arn
        .clone();
    let bus = format!("jobs-{n:08x}");
    let eb = aws_sdk_eventbridge::Client::new(&moto);
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let queue = rig
        .sqs
        .create_queue()
        .queue_name(format!("{bus}-events"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{bus}-events");
    eb.put_rule()
        .name("encode")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["jobcast"],"detail":{"kind":["encode"]}}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("encode")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ecs_client = aws_sdk_ecs::Client::new(&moto);
    let cluster = format!("jobs-{n:08x}");
    ecs_client
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    ecs_client
        .register_task_definition()
        .family("train")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("trainer")
                .image("example/trainer:1")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let spec = format!("ecs:{cluster}/train?container=trainer&launchType=FARGATE&subnets=subnet-1");
    let parts = &mut rig.wiring.parts;
    parts.kinds = Kinds::parse_list(&format!(
        "render=states:{machine},encode=events:{bus},train={spec}"
    ))
    .unwrap();
    parts.targets.insert(
        "render".into(),
        Arc::new(states::StatesTarget::new(sfn.clone(), machine.clone())),
    );
    parts.targets.insert(
        "encode".into(),
        Arc::new(events::EventsTarget::new(eb.clone(), bus.clone())),
    );
    parts.targets.insert(
        "train".into(),
        Arc::new(ecs::EcsTarget::new(
            ecs_client.clone(),
            ecs::EcsSpec::parse(spec.trim_start_matches("ecs:")).unwrap(),
        )),
    );
    let deps = rig.wiring.deps(&rig.wiring.fixed_endpoint().unwrap());
    let create = |kind: &str| {
        let mut event: ApiGatewayV2httpRequest =
            serde_json::from_str(&fixture("jobs-post.json", &[("idempotencyKey", kind)])).unwrap();
        event.headers.remove("content-length");
        event.body = Some(json!({"kind": kind, "input": {"n": 1}}).to_string());
        event
    };
    let mut ids = std::collections::BTreeMap::new();
    for kind in ["render", "encode", "train"] {
        let res = jobs_api::handle(&deps, create(kind)).await;
        assert_eq!(res.status_code, 202, "{kind}: {res:?}");
        let Some(Body::Text(t)) = &res.body else {
            panic!("no body")
        };
        let accepted: Value = serde_json::from_str(t).unwrap();
        ids.insert(kind, accepted["jobId"].as_str().unwrap().to_string());
    }
    // Step Functions: an execution named by the job id, the message as input.
    let execution = sfn
        .describe_execution()
        .execution_arn(format!(
            "{}:{}",
            machine.replace(":stateMachine:", ":execution:"),
            ids["render"]
        ))
        .send()
        .await
        .unwrap();
    let msg: Value = serde_json::from_str(execution.input().unwrap()).unwrap();
    assert_eq!(msg["jobId"], ids["render"].as_str());
    // EventBridge: the rule put the event on the queue.
    let got = rig
        .sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let event: Value = serde_json::from_str(got.messages()[0].body().unwrap()).unwrap();
    assert_eq!(event["detail"]["jobId"], ids["encode"].as_str());
    assert_eq!(event["detail-type"], "Job Submitted");
    // ECS: the task has the message in its container's environment.
    let tasks = ecs_client
        .list_tasks()
        .cluster(&cluster)
        .send()
        .await
        .unwrap();
    let described = ecs_client
        .describe_tasks()
        .cluster(&cluster)
        .set_tasks(Some(tasks.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    let env = &described.tasks()[0]
        .overrides()
        .unwrap()
        .container_overrides()[0];
    assert_eq!(env.name(), Some("trainer"));
    let msg: Value = serde_json::from_str(env.environment()[0].value().unwrap()).unwrap();
    assert_eq!(msg["jobId"], ids["train"].as_str());
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn an_unreachable_state_machine_is_retried_then_the_job_ends_dispatch_failed() {
    use jobcast::dispatch::{Kinds, RetryPolicy, states};
    let mut rig = rig().await;
    // Nothing listens there: every attempt fails before Step Functions.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = sdk_config()
        .into_builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .build();
    let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:render";
    let parts = &mut rig.wiring.parts;
    parts.kinds = Kinds::parse_list(&format!("render=states:{machine}")).unwrap();
    parts.targets.insert(
        "render".into(),
        Arc::new(states::StatesTarget::new(
            aws_sdk_sfn::Client::new(&nowhere),
            machine.into(),
        )),
    );
    parts.dispatch_retry = RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        background: false,
    };
    let deps = rig.wiring.deps(&rig.wiring.fixed_endpoint().unwrap());
    let mut event: ApiGatewayV2httpRequest =
        serde_json::from_str(&fixture("jobs-post.json", &[("idempotencyKey", "retried")])).unwrap();
    event.headers.remove("content-length");
    event.body = Some(json!({"kind": "render", "input": {}}).to_string());
    let res = jobs_api::handle(&deps, event).await;
    assert_eq!(res.status_code, 202, "{res:?}");
    let Some(Body::Text(t)) = &res.body else {
        panic!("no body")
    };
    let id = serde_json::from_str::<Value>(t).unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    // Inline in a function: every attempt ran before the answer.
    let job = rig.store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.snapshot.status.as_str(), "failed");
    assert_eq!(job.attempt, 3);
    let error = job.snapshot.error.unwrap();
    assert_eq!(error.code, "dispatch_failed");
    assert!(
        error.message.starts_with("the worker did not take the job"),
        "{}",
        error.message
    );
}
