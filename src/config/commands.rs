//! Arguments of the smaller commands: `token`, `table`, `publish`, and
//! the log format every command shares.

use crate::values::*;
use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a development JWT for a user (signed with the local
    /// development key; for local development only, never for real users).
    Issue(TokenIssueArgs),
    /// Print the development key's public JWKS, for a verifier elsewhere
    /// (a local Lambda runner's JOBCAST_JWKS) to accept those tokens with
    /// issuer urn:jobcast:dev and audience jobcast-dev.
    Jwks,
}

/// Options of `jobcast token issue`.
#[derive(Clone, Debug, Args)]
pub struct TokenIssueArgs {
    /// The user (the token's `sub`, the owner of the jobs it creates).
    #[arg(long)]
    pub sub: String,
    /// How long the token is valid.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create the table with its GSI1 index and TTL on `ttl` (does nothing if it exists).
    Create(TableArgs),
}

/// Where the state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In this process; gone when it exits.
    Memory,
    /// A DynamoDB table (AWS or DynamoDB Local via AWS_ENDPOINT_URL_DYNAMODB).
    Dynamodb,
}

/// The DynamoDB table to use.
#[derive(Clone, Debug, Args)]
pub struct TableArgs {
    /// DynamoDB table name (endpoint and credentials come from the standard AWS
    /// settings: AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, AWS_PROFILE, ...).
    #[arg(long, env = "JOBCAST_TABLE", default_value = "jobcast", value_parser = parse_table)]
    pub table: String,

    /// How long job state and idempotency keys are kept after their last update.
    #[arg(long, env = "JOBCAST_RETENTION", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Duration,
}

/// Options of `jobcast publish`.
#[derive(Clone, Debug, Args)]
pub struct PublishArgs {
    /// The job to update.
    #[arg(long = "job", value_name = "JOB_ID")]
    pub job_id: String,

    /// New status: running, succeeded, failed or cancelled.
    #[arg(long, value_parser = parse_update_status)]
    pub status: crate::protocol::Status,

    /// Percent done, 0 to 100; never lower than the job's current percent.
    #[arg(long)]
    pub percent: Option<f64>,

    /// A short human-readable progress message.
    #[arg(long)]
    pub message: Option<String>,

    /// The result, as JSON (with --status succeeded).
    #[arg(long, value_parser = parse_json, conflicts_with = "error")]
    pub result: Option<serde_json::Value>,

    /// The error, as JSON {"code": "...", "message": "..."} (with --status failed).
    #[arg(long, value_parser = parse_job_error)]
    pub error: Option<crate::protocol::JobError>,

    /// Management API endpoint, e.g. http://127.0.0.1:8080/dev or
    /// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
        value_name = "URL"
    )]
    pub endpoint: String,

    #[command(flatten)]
    pub table: TableArgs,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}
