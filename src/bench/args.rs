//! The options of `jobcast bench` and its subcommands.

use crate::values::parse_positive;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fan one job's updates out to N subscribed WebSocket clients.
    Fanout(FanoutArgs),
    /// Load any gateway with API Gateway's `@connections`: connect rate,
    /// post throughput, end-to-end latency, fan-out and the server's memory.
    Run(Box<RunArgs>),
    /// Churn connections and jobs against a running serve; fail on a lost
    /// terminal snapshot, memory growth or leaked file descriptors.
    Soak(SoakArgs),
    /// Load the worker API of a running serve: updates/s through
    /// POST /jobs/{id}/updates and the time from an update to the browser.
    Updates(crate::bench::updates::UpdatesOptions),
    /// Load streams of a running serve: workers appending chunks through
    /// the Rust library, one client per job following the stream.
    Chunks(crate::bench::chunks::ChunksOptions),
    /// One file through a running serve: upload and download MiB/s, the
    /// server's memory during both, the same bytes back.
    Files(crate::bench::files::FilesOptions),
    /// What emulate adds to a function: cold start and warm invocation of
    /// a hello-world handler per runtime, and a warm process's memory
    /// against its interpreter's own.
    Runtimes(crate::bench::runtimes::RuntimesOptions),
    /// A message's round trip through gateways whose handler answers
    /// through `@connections` (emulate beside serverless-offline), side by side.
    Roundtrip(crate::bench::roundtrip::RoundtripOptions),
    /// What a job costs in AWS: DynamoDB units (DynamoDB Local), Lambda
    /// invocations and time, API Gateway requests and messages, priced.
    Cost(CostOptions),
    /// What owners add to a request: one JWT verification (ES256, RS256)
    /// against one job-token check, in this process.
    Tokens {
        /// Verifications of each kind.
        #[arg(long, default_value = "20000", value_parser = parse_positive::<usize>)]
        iterations: usize,
    },
}

/// Options of `jobcast bench soak`: what to churn, and where the result goes.
#[derive(Clone, Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub soak: crate::bench::soak::SoakOptions,
    /// Write the JSON result here (else stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Options of `jobcast bench run`: the load, and where the result goes.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: crate::bench::LoadOptions,
    /// Write the JSON result to this file (else to stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Options of `jobcast bench fanout`.
#[derive(Clone, Debug, Args)]
pub struct FanoutArgs {
    /// WebSocket clients subscribed to the job.
    #[arg(long, default_value = "1000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub subscribers: usize,
    /// Updates published (each measured on its own).
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub rounds: usize,
    /// Store the publisher reads subscribers from (dynamodb: AWS_ENDPOINT_URL_DYNAMODB on loopback).
    #[arg(long, default_value = "memory", value_enum)]
    pub store: crate::bench::BenchStore,
    /// How updates reach the connections.
    #[arg(long, default_value = "in-process", value_enum)]
    pub push: crate::bench::BenchPush,
    /// Every `@connections` answer this much later, as AWS's round trip
    /// (e.g. 30ms); the gateway runs as `serve --management-latency`.
    #[arg(long, default_value = "0", value_parser = crate::values::parse_duration_or_zero, value_name = "DURATION")]
    pub management_latency: std::time::Duration,
    /// Exactly this many posts in flight (default: planned from the round
    /// trip, as deployed).
    #[arg(long, value_parser = parse_positive::<usize>, allow_negative_numbers = true, value_name = "N")]
    pub publish_concurrency: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Options of `jobcast bench cost` (DynamoDB Local at
/// AWS_ENDPOINT_URL_DYNAMODB, on this machine).
#[derive(Clone, Debug, Args)]
pub struct CostOptions {
    /// Audience sizes, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,1000", value_parser = parse_positive::<usize>)]
    pub subscribers: Vec<usize>,
    /// Updates in the job (the last one `succeeded`).
    #[arg(long, default_value = "100", value_parser = parse_positive::<usize>)]
    pub updates: usize,
    /// Time between two updates, as a worker reporting every so often
    /// (the liveness deadline an update stores depends on it).
    #[arg(long, default_value = "0", value_parser = crate::values::parse_duration_or_zero, value_name = "DURATION")]
    pub update_interval: std::time::Duration,
    /// Where workers send their updates: the updates function's URL (the
    /// template's default, no API Gateway request) or the HTTP API route.
    #[arg(long, default_value = "function-url", value_enum)]
    pub updates_via: UpdatesVia,
    /// `@connections` round trip, as AWS's.
    #[arg(long, default_value = "30ms", value_parser = crate::values::parse_duration_or_zero, value_name = "DURATION")]
    pub management_latency: std::time::Duration,
    /// Coalescing window of the functions that publish (the template's
    /// CoalesceMs); the sweeper's flushes are counted and timed.
    #[arg(long, default_value = "0", value_parser = crate::values::parse_coalesce_window, value_name = "DURATION")]
    pub coalesce: std::time::Duration,
    /// How long each subscriber stays connected (billed connection minutes).
    #[arg(long, default_value = "1")]
    pub connection_minutes: f64,
    /// `$connect`/`$disconnect` handler calls timed per case.
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>)]
    pub samples: usize,
    /// Stream output instead of reporting progress: each update appends
    /// this many chunks to the job's `tokens` stream (and no seq; the last
    /// one ends the job), and the subscribers ask for that stream. 0: off.
    #[arg(long, default_value = "0")]
    pub chunks_per_update: usize,
    /// Write the JSON result here.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// The door a worker's update comes through, which decides whether API
/// Gateway bills a request for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UpdatesVia {
    /// The updates function's own URL: Lambda alone bills it.
    FunctionUrl,
    /// `POST /jobs/{id}/updates` on the HTTP API: one more API request.
    HttpApi,
}
