//! `jobcast emulate`'s own Lambda Runtime API, driven by a real
//! `lambda_runtime` function (lambdas/src/bin/emulate_edges.rs) that runs
//! against it unchanged: answers, thrown errors, warm reuse, a timeout that
//! replaces the process, and a process that dies before it can take work;
//! and a jobcast function run that way exporting its spans before its
//! invocation ends.

use bytes::Bytes;
use jobcast::emulate::runner::api::Outcome;
use jobcast::emulate::runner::pool::Function;
use jobcast::emulate::runner::sandbox::{Failure, Launch};
use jobcast::emulate::runner::{function_arn, lambda_environment};
use serde_json::{Value, json};
use std::time::Duration;

fn launch(env_overrides: &[(&str, Option<&str>)]) -> Launch {
    let dir = std::env::temp_dir();
    let mut env = lambda_environment("EdgesFunction", 128, "us-east-1", &dir, "bootstrap");
    for (k, v) in env_overrides {
        match v {
            Some(v) => env.insert(k.to_string(), v.to_string()),
            None => env.remove(*k),
        };
    }
    Launch {
        logical_id: "EdgesFunction".into(),
        program: env!("CARGO_BIN_EXE_emulate_edges").into(),
        args: Vec::new(),
        dir,
        env,
        function_arn: function_arn("EdgesFunction", "us-east-1"),
        init_limit: jobcast::emulate::runner::sandbox::INIT_LIMIT,
    }
}

fn message(action: &str) -> Bytes {
    let event = json!({
        "requestContext": {"eventType": "MESSAGE", "routeKey": action, "connectionId": "c0", "stage": "dev"},
        "body": json!({"action": action}).to_string(),
        "isBase64Encoded": false,
    });
    Bytes::from(event.to_string())
}

fn response(answer: &Result<Outcome, Failure>) -> Value {
    match answer {
        Ok(Outcome::Response(b)) => serde_json::from_slice(b).expect("JSON response"),
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test]
async fn a_lambda_runtime_function_answers_fails_and_stays_warm() {
    let f = Function::new(launch(&[]), Duration::from_secs(2), 128, 2);
    let (id, answer) = f.invoke(message("echo")).await;
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = response(&answer);
    assert_eq!(r["statusCode"], 200);
    assert_eq!(r["body"], json!({"action": "echo"}).to_string());
    assert_eq!(f.warm(), 1, "the process stays for the next invocation");

    // A thrown error comes back in Lambda's error shape; the process stays.
    let (_, answer) = f.invoke(message("boom")).await;
    match answer {
        Ok(Outcome::Error(body)) => {
            let e: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(e["errorMessage"], "boom on purpose", "{e}");
            assert!(e["errorType"].is_string(), "{e}");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    assert_eq!(f.warm(), 1);

    // Two at once: a second process starts; both stay warm.
    let (a, b) = tokio::join!(f.invoke(message("echo")), f.invoke(message("echo")));
    assert_eq!(response(&a.1)["statusCode"], 200);
    assert_eq!(response(&b.1)["statusCode"], 200);
    assert_eq!(f.warm(), 2);
    f.retire().await;
    assert_eq!(f.warm(), 0);
}

#[tokio::test]
async fn past_its_timeout_the_process_is_replaced() {
    // `slow` sleeps 3 s; the function's Timeout is 1 s.
    let f = Function::new(launch(&[]), Duration::from_secs(1), 128, 1);
    let (_, answer) = f.invoke(message("slow")).await;
    assert_eq!(answer, Err(Failure::TimedOut(Duration::from_secs(1))));
    assert_eq!(f.warm(), 0, "a timed-out process is never reused");
    // The next invocation runs on a new process.
    let (_, answer) = f.invoke(message("echo")).await;
    assert_eq!(response(&answer)["statusCode"], 200);
}

#[tokio::test]
async fn a_process_that_never_asks_for_work_fails_at_its_init_limit() {
    let mut never = launch(&[]);
    never.program = "sleep".into();
    never.args = vec!["30".into()];
    never.init_limit = Duration::from_millis(300);
    let f = Function::new(never, Duration::from_secs(5), 128, 1);
    let (_, answer) = f.invoke(message("echo")).await;
    assert_eq!(
        answer,
        Err(Failure::InitTimedOut(Duration::from_millis(300)))
    );
    assert_eq!(f.warm(), 0);
}

#[tokio::test]
async fn a_function_that_exits_at_start_fails_the_invocation_and_is_not_kept() {
    // lambda_runtime refuses to start without the function's name.
    let f = Function::new(
        launch(&[("AWS_LAMBDA_FUNCTION_NAME", None)]),
        Duration::from_secs(5),
        128,
        1,
    );
    let (_, answer) = f.invoke(message("echo")).await;
    match answer {
        Err(Failure::Exited(why)) => assert!(why.contains("exit status"), "{why}"),
        other => panic!("expected the process to exit, got {other:?}"),
    }
    assert_eq!(f.warm(), 0);
}

/// A `provided.al2023` function of a template, built as `cargo lambda
/// build` lays it out (`target/lambda/NAME/bootstrap` above `CodeUri`),
/// served by `emulate` and reached by a WebSocket client.
#[tokio::test]
async fn emulate_finds_a_cargo_lambda_build_and_serves_it() {
    use futures_util::{SinkExt, StreamExt};
    use jobcast::emulate::template::{Names, parse_text, read_api};
    let root = std::env::temp_dir().join(format!("jobcast-provided-{}", std::process::id()));
    let built = root.join("target/lambda/edges");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::create_dir_all(root.join("crate")).unwrap();
    let _ = std::fs::remove_file(built.join("bootstrap"));
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_emulate_edges"), built.join("bootstrap"))
        .unwrap();
    let template = r#"
Resources:
  Edges:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: edges } }
    Properties: { CodeUri: crate, Handler: bootstrap, Runtime: provided.al2023 }
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action }
  Integ:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Edges.Arn }
  Echo:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: echo, Target: !Sub "integrations/${Integ}" }
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: { ApiId: !Ref Api, RouteId: !Ref Echo, RouteResponseKey: $default }
  Post:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: post, Target: !Sub "integrations/${Integ}" }
  PostResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: { ApiId: !Ref Api, RouteId: !Ref Post, RouteResponseKey: $default }
"#;
    let path = root.join("template.yaml");
    std::fs::write(&path, template).unwrap();
    let names = Names {
        functions: Default::default(),
        parameters: Default::default(),
        region: "us-east-1".into(),
    };
    let api = read_api(&parse_text(template).unwrap(), None, &names).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = jobcast::gateway::GatewayConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        ..Default::default()
    };
    let reload = jobcast::emulate::Reload {
        path: path.clone(),
        read: Box::new(move || read_api(&parse_text(template)?, None, &names)),
    };
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        jobcast::emulate::serve(api, Some(reload), config, &sdk, Default::default(), async {
            let _ = stopped.await;
        })
        .await
    });
    let url = format!("ws://127.0.0.1:{port}/dev");
    let mut client = None;
    for _ in 0..100 {
        if let Ok((c, _)) = tokio_tungstenite::connect_async(&url).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = client.expect("emulate listening");
    c.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"action":"echo","n":1}"#.into(),
    ))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert_eq!(answer.to_text().unwrap(), r#"{"action":"echo","n":1}"#);

    // The function posts to its own connection with the AWS SDK for Rust,
    // through emulate's @connections, then answers the route.
    c.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"action":"post"}"#.into(),
    ))
    .await
    .unwrap();
    let mut frames = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        frames.push(m.to_text().unwrap().to_string());
    }
    assert_eq!(frames, ["hello", "posted 200"]);
    drop(c);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

/// An OTLP/HTTP receiver for one test: answers 200 to every POST and keeps
/// each body.
async fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&bodies);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let kept = std::sync::Arc::clone(&kept);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    kept.lock()
                        .unwrap()
                        .push(buf[end + 4..end + 4 + length].to_vec());
                    buf.drain(..end + 4 + length);
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// A Lambda function of jobcast's exports its spans before its invocation
/// ends (a frozen sandbox sends nothing): the updates function, run by the
/// Runtime API as Lambda runs it, with OTEL_EXPORTER_OTLP_ENDPOINT set.
#[tokio::test]
async fn a_function_exports_its_spans_before_the_invocation_ends() {
    let (endpoint, bodies) = otlp_receiver().await;
    let dir = std::env::temp_dir();
    let mut env = lambda_environment("UpdatesFunction", 256, "us-east-1", &dir, "bootstrap");
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "updates-under-test"),
        // Long, so only the invocation's own flush can send them in time.
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ("JOBCAST_TABLE", "not-read"),
        (
            "JOBCAST_TOKEN_SECRET",
            "runner-test-secret-0123456789abcdef",
        ),
        ("JOBCAST_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/prod"),
    ] {
        env.insert(k.into(), v.into());
    }
    let f = Function::new(
        Launch {
            logical_id: "UpdatesFunction".into(),
            program: env!("CARGO_BIN_EXE_updates").into(),
            args: Vec::new(),
            dir,
            env,
            function_arn: function_arn("UpdatesFunction", "us-east-1"),
            init_limit: jobcast::emulate::runner::sandbox::INIT_LIMIT,
        },
        Duration::from_secs(10),
        256,
        1,
    );
    // An update without a worker token: answered 401, traced all the same,
    // under the caller's traceparent.
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/jobs/job_x/updates", "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "content-type": "application/json",
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        "requestContext": {"accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "http": {"method": "POST", "path": "/jobs/job_x/updates", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r1", "routeKey": "$default", "stage": "$default", "time": "07/Dec/2026:10:00:00 +0000", "timeEpoch": 0},
        "body": "{}", "isBase64Encoded": false
    });
    let (_, answer) = f.invoke(Bytes::from(event.to_string())).await;
    assert_eq!(response(&answer)["statusCode"], 401, "{answer:?}");
    // The answer came after the flush: the span is already at the receiver.
    let bodies = bodies.lock().unwrap().clone();
    let all: Vec<u8> = bodies.concat();
    let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"POST /jobs/{jobId}/updates"),
        "no span exported: {} bodies",
        bodies.len()
    );
    assert!(has(b"updates-under-test"), "service.name");
    let trace_id = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    assert!(has(&trace_id), "the caller's trace continues");
    assert!(has(b"job_x"), "jobcast.job.id");
    f.retire().await;
}
