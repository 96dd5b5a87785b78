//! The core of jobcast: the handlers and the seams they stand on, the same
//! code in AWS Lambda and inside `jobcast serve`.
//!
//! - [`handlers`]: `$connect`, `$disconnect`, the WebSocket routes, the jobs
//!   API, worker updates and the sweeps, over the real Lambda event types.
//! - The seams, each with an AWS and a local implementation: [`store`]
//!   (DynamoDB, memory), [`push`] (the Management API, any in-process
//!   registry), [`files`] (S3, a directory), [`dispatch`] (where a kind's
//!   jobs go).
//! - [`publish`]: a worker's report becomes a stored snapshot, pushed to
//!   every subscriber with the stream chunks it carries.
//! - [`wiring`]: the one place a host assembles the handlers' dependencies.
//!
//! Nothing here listens on a socket: `jobcast-gateway` is the transport
//! and `lambda_runtime` the other host.

pub use jobcast_protocol as protocol;
pub use jobcast_protocol::retry;

pub mod auth;
pub mod aws;
pub mod clock;
pub mod dispatch;
pub mod files;
pub mod handlers;
pub mod metrics;
pub mod publish;
pub mod push;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod webhook;
pub mod wiring;
