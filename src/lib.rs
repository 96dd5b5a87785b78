//! jobcast: a progress-push gateway for long-running jobs behind AWS API
//! Gateway. `POST /jobs` answers `202 Accepted` at once; workers publish
//! progress snapshots; browsers receive them live over a WebSocket.
//!
//! The same handler code runs in AWS Lambda and inside `jobcast serve`, a
//! local API Gateway faithful enough that AWS SDK code works against it
//! unchanged.

pub mod auth;
pub mod aws;
#[cfg(feature = "cli")]
pub mod bench;
pub mod clock;
#[cfg(feature = "cli")]
pub mod config;
pub mod dispatch;
#[cfg(feature = "cli")]
pub mod emulate;
pub mod files;
pub mod gateway;
pub mod handlers;
pub mod metrics;
pub mod protocol;
pub mod publish;
pub mod push;
pub mod retry;
pub mod store;
pub mod token;
#[cfg(feature = "cli")]
pub mod values;
pub mod webhook;
pub mod wiring;
pub mod worker_client;
