//! The AWS list prices the cost model uses: us-east-1, on-demand, the first
//! pricing tier, no free tier. Kept in this one table; re-read them from
//! the pricing pages (Lambda, API Gateway, DynamoDB, SQS) before budgeting.

/// When the figures below were read.
pub const READ_ON: &str = "2026-12-03";

/// Dollars per unit of each billed thing.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// Lambda: per invocation ($0.20 per million).
    pub lambda_request: f64,
    /// Lambda on arm64 (the template's architecture): per GB-second.
    pub lambda_gb_second: f64,
    /// HTTP API: per request ($1.00 per million, first 300 million).
    pub http_api_request: f64,
    /// WebSocket API: per message sent or received, metered in 32 KB
    /// increments ($1.00 per million, first billion).
    pub websocket_message: f64,
    /// WebSocket API: per connection minute ($0.25 per million).
    pub websocket_connection_minute: f64,
    /// DynamoDB on-demand, standard table class: per write request unit
    /// ($0.625 per million) and per read request unit ($0.125 per million).
    pub dynamodb_write_unit: f64,
    pub dynamodb_read_unit: f64,
    /// SQS standard: per request ($0.40 per million).
    pub sqs_request: f64,
}

pub const US_EAST_1: Prices = Prices {
    lambda_request: 0.20e-6,
    lambda_gb_second: 0.000_013_333_4,
    http_api_request: 1.00e-6,
    websocket_message: 1.00e-6,
    websocket_connection_minute: 0.25e-6,
    dynamodb_write_unit: 0.625e-6,
    dynamodb_read_unit: 0.125e-6,
    sqs_request: 0.40e-6,
};

/// The template's `MemorySize` for every function, in MB.
pub const LAMBDA_MEMORY_MB: f64 = 256.0;

/// Lambda bills duration rounded up to the millisecond.
pub fn billed_gb_seconds(millis: f64) -> f64 {
    millis.ceil() / 1000.0 * LAMBDA_MEMORY_MB / 1024.0
}
