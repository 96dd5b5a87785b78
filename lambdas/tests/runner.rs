//! `jobcast emulate`'s own Lambda Runtime API, driven by a real
//! `lambda_runtime` function (lambdas/src/bin/emulate_edges.rs) that runs
//! against it unchanged: answers, thrown errors, warm reuse, a timeout that
//! replaces the process, and a process that dies before it can take work.

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
