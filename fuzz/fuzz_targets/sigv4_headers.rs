//! SigV4 verification of arbitrary Authorization / X-Amz-Date headers,
//! paths and bodies: never accepted without the key, never a panic.
#![no_main]
use jobcast::gateway::sigv4::Verifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (auth, date, path, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/"),
        parts.next().unwrap_or(""),
    );
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(date) {
        headers.insert("x-amz-date", v);
    }
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static("localhost"),
    );
    let Ok(uri) = path.parse::<http::Uri>() else {
        return;
    };
    let v = Verifier::new("AKIDFUZZ".into(), "fuzz-secret".into());
    let r = v.verify(
        &http::Method::POST,
        &uri,
        &headers,
        body.as_bytes(),
        std::time::SystemTime::now(),
    );
    assert!(r.is_err());
});
