//! jobcast's integration tests, in one binary: real sockets, real AWS SDK
//! clients, the real `jobcast` executable.
//!
//! Two tiers:
//! - **In process** (every test not marked `ignore`): the memory store and
//!   what this machine has (python3 for command workers). Plain
//!   `cargo test` runs them and installs nothing.
//! - **Emulators** (marked `#[ignore = "emulators: ..."]`): DynamoDB Local
//!   and moto (SQS, S3, ECS, Step Functions, EventBridge). `./scripts/test.sh`
//!   starts both and runs them with `--include-ignored`; by hand:
//!   `eval "$(scripts/dynamodb-local.sh start)"`, start `moto_server`, set
//!   `JOBCAST_TEST_SQS`, then `cargo test -- --include-ignored`.

mod common;

mod auth;
mod cli;
mod coalesce;
mod cors;
mod dynamo;
mod emulate_local;
mod faults;
mod files;
mod fuzz;
mod hostile;
mod jobs_api;
mod management;
mod owners;
mod pace;
mod shutdown;
mod sigv4;
mod store;
mod streams;
mod targets;
mod webhooks;
mod websocket;
mod workers;
