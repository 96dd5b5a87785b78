//! `POST /jobs` bodies, through the very parser the jobs API runs: any bytes
//! become a `JobRequest` or a problem with a 4xx status, never a panic.
#![no_main]
use http::{HeaderMap, HeaderValue, header};
use jobcast::handlers::jobs_api::JobRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Err(p) = JobRequest::parse(&headers, data, &["demo".into(), "export".into()]) {
        assert!((400..500).contains(&p.status), "{}", p.status);
    }
});
