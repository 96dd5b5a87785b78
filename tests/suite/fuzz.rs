//! Property-based fuzzing (proptest) of everything that parses outside
//! input: client messages, `@connections` paths and ids, SigV4 headers, the
//! jobs API's requests, and the Lambda events (apigw WebSocket, SQS).
//! Each property: no panic, and a clear answer (an error, never a 5xx).
//! `PROPTEST_CASES=N cargo test --test fuzz` runs longer (RELIABILITY.md).

use crate::common::*;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sqs::SqsEvent;
use base64::Engine;
use jobcast::gateway::management::decode_connection_id;
use jobcast::gateway::sigv4::Verifier;
use jobcast::handlers::{websocket, worker};
use jobcast::protocol::{ClientAction, select_route};
use proptest::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .replace("{{connectedAt}}", "1795514400000")
        .replace("{{connectionId}}", "L0SM9cOFvHcCIhw=")
        .replace("{{jobId}}", "job_fuzz")
        .replace("{{token}}", "t")
}

/// One runtime and one server for every case.
fn env() -> &'static (tokio::runtime::Runtime, TestServer) {
    static ENV: OnceLock<(tokio::runtime::Runtime, TestServer)> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let srv = rt.block_on(start());
        (rt, srv)
    })
}

/// Replaces one leaf of a JSON document, chosen by `pick`, with `with`.
fn mutate(v: &mut Value, pick: &mut usize, with: &Value) -> bool {
    match v {
        Value::Object(m) => {
            for (_, child) in m.iter_mut() {
                if mutate(child, pick, with) {
                    return true;
                }
            }
            false
        }
        Value::Array(a) => a.iter_mut().any(|c| mutate(c, pick, with)),
        leaf => {
            if *pick == 0 {
                *leaf = with.clone();
                return true;
            }
            *pick -= 1;
            false
        }
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        Just(serde_json::json!({"nested": [1, "x", null]})),
    ]
}

proptest! {
    #[test]
    fn client_messages_always_route(body in ".{0,300}") {
        let route = select_route(&body);
        prop_assert!(["subscribe", "unsubscribe", "sync", "ping", "$default"].contains(&route), "{route}");
        let _ = ClientAction::parse(&body);
    }

    #[test]
    fn json_shaped_client_messages_always_route(action in ".{0,20}", job in ".{0,40}", extra in json_leaf()) {
        let body = serde_json::json!({"action": action, "jobId": job, "token": extra}).to_string();
        let _ = select_route(&body);
        let _ = ClientAction::parse(&body);
    }

    #[test]
    fn connection_ids_decode_or_are_bad_requests(raw in "[%A-Za-z0-9+/=._~-]{0,200}") {
        if let Ok(id) = decode_connection_id(&raw) {
            prop_assert!(!id.is_empty() && id.len() <= 128);
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
        }
    }

    #[test]
    fn every_generated_id_survives_the_path(bytes in proptest::array::uniform11(any::<u8>())) {
        let id = base64::engine::general_purpose::STANDARD.encode(bytes);
        let path = id.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        prop_assert_eq!(decode_connection_id(&path), Ok(id));
    }

    #[test]
    fn authorization_headers_never_pass_or_panic(value in "(AWS4-HMAC-SHA256 )?[ -~]{0,200}", date in "[0-9TZ]{0,20}") {
        let v = Verifier::new("AKID".into(), "secret".into());
        let mut h = http::HeaderMap::new();
        if let Ok(val) = http::HeaderValue::from_str(&value) {
            h.insert(http::header::AUTHORIZATION, val);
        }
        if let Ok(val) = http::HeaderValue::from_str(&date) {
            h.insert("x-amz-date", val);
        }
        h.insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        let uri: http::Uri = "/dev/@connections/abc%3D".parse().unwrap();
        prop_assert!(v.verify(&http::Method::POST, &uri, &h, b"x", std::time::SystemTime::now()).is_err());
    }

    #[test]
    fn jobs_api_answers_every_body_without_a_5xx(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        content_type in prop_oneof![Just("application/json"), Just("text/plain"), Just("application/json; charset=utf-8"), Just("")],
        key in proptest::option::of("[ -~]{0,80}"),
    ) {
        let (rt, srv) = env();
        let status = rt.block_on(async {
            let mut req = srv.http.post(srv.url("/jobs")).body(body);
            if !content_type.is_empty() {
                req = req.header("content-type", content_type);
            }
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            req.send().await.map(|r| r.status().as_u16())
        });
        let status = status.expect("answered");
        prop_assert!(status < 500, "status {status}");
    }

    #[test]
    fn jobs_api_json_inputs_without_a_5xx(kind in prop_oneof![Just("demo".to_string()), ".{0,12}"], steps in json_leaf(), step_ms in json_leaf(), fail_at in json_leaf(), callback in json_leaf()) {
        let (rt, srv) = env();
        let body = serde_json::json!({"kind": kind, "input": {"steps": steps, "stepMs": step_ms, "failAt": fail_at}, "callbackUrl": callback});
        let status = rt.block_on(async {
            srv.http.post(srv.url("/jobs")).json(&body).send().await.map(|r| r.status().as_u16())
        }).expect("answered");
        prop_assert!(status == 202 || (400..500).contains(&status), "status {status} for {body}");
    }

    #[test]
    fn job_and_connection_paths_without_a_5xx(segment in "[ -~&&[^/?#]]{0,60}", method in prop_oneof![Just("GET"), Just("DELETE"), Just("POST"), Just("PUT")]) {
        let (rt, srv) = env();
        let encoded = segment.replace('%', "%25").replace(' ', "%20");
        for path in [format!("/jobs/{encoded}"), format!("/dev/@connections/{encoded}")] {
            let status = rt.block_on(async {
                let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                srv.http.request(m, srv.url(&path)).send().await.map(|r| r.status().as_u16())
            }).expect("answered");
            prop_assert!(status < 500, "{method} {path}: {status}");
        }
    }

    #[test]
    fn websocket_events_with_mutated_fields_never_panic(pick in 0usize..40, with in json_leaf(), body in ".{0,200}") {
        let (rt, srv) = env();
        for name in ["connect.json", "message-default.json", "message-subscribe.json", "disconnect.json"] {
            let mut doc: Value = serde_json::from_str(&fixture(name)).unwrap();
            let mut p = pick;
            mutate(&mut doc, &mut p, &with);
            doc["body"] = Value::String(body.clone());
            // Events that do not decode are the runtime's to refuse; those that
            // do must get an answer from the handler.
            if let Ok(event) = serde_json::from_value::<ApiGatewayWebsocketProxyRequest>(doc) {
                let answer = rt.block_on(async {
                    match name {
                        "connect.json" => websocket::connect(&srv.deps, event).await,
                        "disconnect.json" => websocket::disconnect(&srv.deps, event).await,
                        _ => websocket::message(&srv.deps, event).await,
                    }
                });
                prop_assert!(answer.status_code >= 200 && answer.status_code < 600);
            }
        }
    }

    #[test]
    fn sqs_batches_with_any_bodies_report_failures_not_panics(bodies in proptest::collection::vec(".{0,120}", 1..5)) {
        let (rt, srv) = env();
        let mut doc: Value = serde_json::from_str(&fixture("sqs.json")).unwrap();
        let template = doc["Records"][0].clone();
        let records: Vec<Value> = bodies.iter().enumerate().map(|(i, b)| {
            let mut r = template.clone();
            r["body"] = Value::String(b.clone());
            r["messageId"] = Value::String(format!("m{i}"));
            r
        }).collect();
        doc["Records"] = Value::Array(records);
        let event: SqsEvent = serde_json::from_value(doc).unwrap();
        let response = rt.block_on(worker::handle_sqs(&srv.deps.publisher, event));
        // Bodies that are not a job are reported per message; nothing is dropped silently.
        for (i, b) in bodies.iter().enumerate() {
            let is_job = serde_json::from_str::<Value>(b).ok().and_then(|v| v.get("jobId").cloned()).is_some();
            if !is_job {
                prop_assert!(response.batch_item_failures.iter().any(|f| f.item_identifier == format!("m{i}")), "{b:?} not reported");
            }
        }
    }
}
