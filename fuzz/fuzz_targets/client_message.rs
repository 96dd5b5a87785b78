//! Client -> server WebSocket text: routing and parsing take any bytes.
#![no_main]
use jobcast::protocol::{ClientAction, select_route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let route = select_route(text);
        assert!(["subscribe", "unsubscribe", "sync", "ping", "$default"].contains(&route));
        let _ = ClientAction::parse(text);
    }
});
