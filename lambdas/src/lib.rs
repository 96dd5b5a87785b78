//! AWS Lambda entry points for jobcast.
//!
//! Each function is a thin wrapper that builds its dependencies once and
//! hands every event to the library handler that `jobcast serve` also runs
//! (`jobcast::handlers`). This crate holds the shared wiring for them.

/// The handler modules each Lambda function wraps.
pub use jobcast::handlers;
