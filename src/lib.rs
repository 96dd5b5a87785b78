//! jobcast: a progress-push gateway for long-running jobs behind AWS API
//! Gateway. `POST /jobs` answers `202 Accepted` at once; workers publish
//! progress snapshots; browsers receive them live over a WebSocket.
//!
//! The same handler code runs in AWS Lambda and inside `jobcast serve`, a
//! local API Gateway faithful enough that AWS SDK code works against it
//! unchanged. The work is split along its floors:
//!
//! | crate | what |
//! |---|---|
//! | `jobcast-protocol` | the wire contract: messages, limits, names, problems |
//! | `jobcast-worker` | the Rust worker library (no AWS SDK) |
//! | `jobcast-core` | handlers and seams: store, push, publish, dispatch, files, auth |
//! | `jobcast-gateway` | the local API Gateway transport |
//! | `jobcast` (this one) | the command line: `serve`, `emulate`, `bench`, … |
//!
//! This crate re-exports the others under their module names, so
//! `jobcast::store` is `jobcast_core::store`.

pub use jobcast_core::{
    auth, aws, clock, dispatch, files, handlers, metrics, publish, push, store, telemetry, token,
    webhook, wiring,
};
pub use jobcast_gateway as gateway;
pub use jobcast_protocol as protocol;
pub use jobcast_protocol::retry;
pub use jobcast_worker as worker_client;

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "cli")]
pub mod emulate;
pub mod serve;
#[cfg(feature = "cli")]
pub mod values;
