//! `jobcast emulate` running a template's Node and Python functions itself
//! (CONTRACT section 12), with nothing but `node` and `python3`: real
//! WebSocket clients, the real executable, tests/emulate/local/template.yaml.

use crate::common::emulators::{free_port, wait_port};
use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// `emulate` over the test template, without an Invoke API to call, with
/// `--env-vars` overriding one declared variable for all and one for the
/// Python function (and naming one no function declares).
fn emulate() -> (Process, u16) {
    emulate_at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/emulate/local/template.yaml"
    ))
}

fn emulate_at(template: &str) -> (Process, u16) {
    let port = free_port();
    let env_vars = std::env::temp_dir().join(format!("jobcast-env-vars-{port}.json"));
    let overrides = json!({
        "Parameters": {"GREETING": "hello from --env-vars"},
        "PyFunction": {"GREETING": "hello to Python from --env-vars", "UNDECLARED": "not declared"},
    });
    std::fs::write(&env_vars, overrides.to_string()).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_jobcast"))
        .args(["emulate", "--template", template, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--env-vars")
        .arg(&env_vars)
        .env_remove("AWS_ENDPOINT_URL_LAMBDA")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("jobcast emulate");
    let process = Process::new(child);
    wait_port(port, "jobcast emulate");
    (process, port)
}

/// Sends `message` and reads the route's answer: the function's `body`.
async fn ask(c: &mut Client, message: Value) -> Value {
    c.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, c.next())
        .await
        .expect("an answer in time")
        .expect("open")
        .expect("a frame");
    serde_json::from_str(m.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn node_and_python_functions_run_here_warm_with_their_environment() {
    let (mut emulator, port) = emulate();
    let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/local"))
        .await
        .unwrap();

    // An ES module, twice: the second call finds the module's state.
    let first = ask(&mut c, json!({"action": "node"})).await;
    assert_eq!(first["lang"], "node");
    assert_eq!(first["calls"], 1);
    assert_eq!(first["greeting"], "hello from --env-vars");
    assert_eq!(first["manage"], format!("http://127.0.0.1:{port}/local"));
    assert!(first["remaining"].as_u64().unwrap() <= 5000, "{first}");
    let second = ask(&mut c, json!({"action": "node"})).await;
    assert_eq!(second["calls"], 2, "the same process, warm");
    assert_ne!(second["requestId"], first["requestId"]);

    // CommonJS with a callback.
    let cjs = ask(&mut c, json!({"action": "cjs"})).await;
    assert_eq!(cjs, json!({"lang": "cjs", "fn": "CjsFunction"}));

    // Python: its own --env-vars entry wins; an undeclared variable is not set.
    let py = ask(&mut c, json!({"action": "py"})).await;
    assert_eq!(py["lang"], "python");
    assert_eq!(py["greeting"], "hello to Python from --env-vars");
    assert_eq!(py["undeclared"], Value::Null);
    assert!(py["remaining"].as_u64().unwrap() <= 1000, "{py}");

    // A thrown error, a handler past its 1 s Timeout and a handler that
    // is not exported: API Gateway's own answer, the connection kept.
    for failing in [
        json!({"action": "node", "throw": true}),
        json!({"action": "py", "hang": true}),
        json!({"action": "broken"}),
    ] {
        let answer = ask(&mut c, failing).await;
        assert_eq!(answer["message"], "Internal server error", "{answer}");
    }
    // The timed-out process was replaced: the next call is a new one.
    let after = ask(&mut c, json!({"action": "py"})).await;
    assert_eq!(after["calls"], 1, "a new process after the timeout");

    // A handler that floods its output with binary garbage and a 4 MiB
    // line is answered as usual; one that exits mid-invocation fails it
    // as Lambda does, and the next call gets a new process.
    let flooded = ask(&mut c, json!({"action": "py", "flood": true})).await;
    assert_eq!(flooded["calls"], 2, "{flooded}");
    let exited = ask(&mut c, json!({"action": "py", "exit": true})).await;
    assert_eq!(exited["message"], "Internal server error", "{exited}");
    let again = ask(&mut c, json!({"action": "py"})).await;
    assert_eq!(again["calls"], 1, "a new process after the exit");

    // An answer over 6 MB fails the invocation as Lambda does; the
    // runtime goes on, warm, in both languages.
    for (action, calls) in [("node", 5), ("py", 3)] {
        let big = ask(&mut c, json!({"action": action, "big": true})).await;
        assert_eq!(big["message"], "Internal server error", "{big}");
        let next = ask(&mut c, json!({"action": action})).await;
        assert_eq!(
            next["calls"], calls,
            "{action}: the same process after a refused answer"
        );
    }
    drop(c);
    emulator.terminate();
}

#[tokio::test]
async fn a_code_change_applies_without_reconnecting() {
    // A copy of the functions, to edit.
    let dir = std::env::temp_dir().join(format!("jobcast-reload-{}", free_port()));
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/emulate/local"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let template = dir.join("template.yaml");
    let (mut emulator, port) = emulate_at(template.to_str().unwrap());
    let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/local"))
        .await
        .unwrap();
    assert_eq!(ask(&mut c, json!({"action": "node"})).await["lang"], "node");

    let code = dir.join("node/index.mjs");
    let text = std::fs::read_to_string(&code).unwrap();
    std::fs::write(
        &code,
        text.replace(r#"lang: "node""#, r#"lang: "node, edited""#),
    )
    .unwrap();
    // The same connection, until the new code answers.
    let edited = tokio::time::timeout(WAIT, async {
        loop {
            let answer = ask(&mut c, json!({"action": "node"})).await;
            if answer["lang"] == "node, edited" {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the edited handler answers");
    assert_eq!(edited["calls"], 1, "a new process runs the new code");
    drop(c);
    emulator.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The handshake's status, with `auth` as the `Auth` header if any.
async fn handshake(port: u16, auth: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/guarded")
        .into_client_request()
        .unwrap();
    if let Some(a) = auth {
        req.headers_mut().insert("Auth", a.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn a_python_authorizer_run_here_guards_connect() {
    let (mut emulator, port) = emulate_at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/emulate/local/guarded.yaml"
    ));
    assert_eq!(handshake(port, Some("allow")).await, 101);
    assert_eq!(handshake(port, Some("deny")).await, 403);
    assert_eq!(
        handshake(port, None).await,
        401,
        "no identity source: not even asked"
    );
    emulator.terminate();
}
