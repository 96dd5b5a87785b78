//! `POST /jobs` bodies: any JSON is validated into a clear error or accepted.
#![no_main]
use jobcast::handlers::worker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("demo");
    let input = v.get("input").cloned().unwrap_or(serde_json::Value::Null);
    let _ = worker::validate(kind, &input, &["export".to_string()]);
    let _ = worker::DemoInput::parse(&input);
});
