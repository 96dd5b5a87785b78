//! Lambda events as the runtime would decode them (apigw WebSocket, apigw
//! v2 HTTP, SQS), and the routing that follows: no panic on any document.
#![no_main]
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::sqs::SqsEvent;
use jobcast::protocol::select_route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<ApiGatewayWebsocketProxyRequest>(data)
        && let Some(body) = e.body.as_deref()
    {
        let _ = select_route(body);
    }
    let _ = serde_json::from_slice::<ApiGatewayV2httpRequest>(data);
    if let Ok(e) = serde_json::from_slice::<SqsEvent>(data) {
        for r in e.records {
            if let Some(b) = r.body {
                let _ = serde_json::from_str::<serde_json::Value>(&b);
            }
        }
    }
});
