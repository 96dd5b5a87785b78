//! `@connections/{id}` path segments: decoded exactly once or refused.
#![no_main]
use jobcast::gateway::management::decode_connection_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data)
        && let Ok(id) = decode_connection_id(raw)
    {
        assert!(!id.is_empty() && id.len() <= 128);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        );
    }
});
