//! The options of `jobcast bench` and its subcommands.

use super::*;

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
    Updates(UpdatesArgs),
}

/// Options of `jobcast bench updates`.
#[derive(Clone, Debug, Args)]
pub struct UpdatesArgs {
    /// jobs API base of the serve under test (loopback). Start it with
    /// JOBCAST_WEBHOOK_SECRET set and `--kind bench=http://RECEIVER/`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// The kind the serve hands to this bench.
    #[arg(long, default_value = "bench")]
    pub kind: String,
    /// Where this bench takes the job messages.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub receiver: SocketAddr,
    /// Jobs at once, each with one worker and one WebSocket client.
    #[arg(long, default_value = "20", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Updates per job (the last one ends it).
    #[arg(long, default_value = "500", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub updates: usize,
    /// The server's pid, to report its CPU time per update.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Options of `jobcast bench soak`.
#[derive(Clone, Debug, Args)]
pub struct SoakArgs {
    /// jobs API base of the serve under test (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub jobs_url: String,
    /// Its WebSocket API (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// How long to run (e.g. 10m, 60s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connections open at once, about.
    #[arg(long, default_value = "5000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub connections: usize,
    /// New connections per second.
    #[arg(long, default_value = "200", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub connects_per_second: u32,
    /// Jobs created per second.
    #[arg(long, default_value = "50", value_parser = parse_positive::<u32>, allow_negative_numbers = true)]
    pub jobs_per_second: u32,
    /// The serve process, for its memory and open files.
    #[arg(long)]
    pub server_pid: u32,
    /// Write the JSON result here (else stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Options of `jobcast bench run`.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Name of the system under test, copied into the report.
    #[arg(long, default_value = "jobcast")]
    pub label: String,
    /// WebSocket URL the clients open (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/dev")]
    pub ws_url: String,
    /// Management API base; `@connections/{id}` is appended (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080/dev")]
    pub management_url: String,
    /// WebSocket clients held open for the whole run.
    #[arg(long, default_value = "1000", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub clients: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value = "128", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub handshake_concurrency: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N (more than ~28k clients need 2+).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// `@connections` posts in flight, each worker on its own keep-alive connection.
    #[arg(long, default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub in_flight: usize,
    /// Length of the throughput phase (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub post_duration: Duration,
    /// At most this many posts in the throughput phase.
    #[arg(long, default_value = "10000000", value_parser = parse_positive::<u64>, allow_negative_numbers = true)]
    pub post_max: u64,
    /// Messages per second of the paced latency phase (0 skips it).
    #[arg(long, default_value = "10000")]
    pub rate: u64,
    /// Length of the paced phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rate_duration: Duration,
    /// Publishes of the fan-out phase, through jobcast's publisher and the target's `@connections` (0 skips it).
    #[arg(long, default_value = "5")]
    pub fanout_rounds: usize,
    /// Posts in flight during a fan-out.
    #[arg(long, default_value = "64", value_parser = parse_positive::<usize>, allow_negative_numbers = true)]
    pub fanout_concurrency: usize,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus endpoint with `jobcast_disconnects_total`, to count `$disconnect` events.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// A file the server's `$disconnect` handler appends one line to per event.
    #[arg(long, conflicts_with = "metrics_url")]
    pub disconnect_log: Option<std::path::PathBuf>,
    /// How long to wait for accepted messages still in flight after each phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// jobcast's jobs API base: adds the in-process fan-out phase (a demo job
    /// published by `serve`'s own worker to --clients fresh clients; start
    /// `serve --workers 1 --outbound-queue 1024`).
    #[arg(long)]
    pub jobs_url: Option<String>,
    /// Steps of that demo job, published back to back (0 skips the phase).
    #[arg(long, default_value = "100", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub demo_steps: u32,
    /// Write the JSON result to this file (else to stdout).
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    pub fn load_options(&self) -> crate::bench::LoadOptions {
        crate::bench::LoadOptions {
            label: self.label.clone(),
            ws_url: self.ws_url.clone(),
            management_url: self.management_url.clone(),
            clients: self.clients,
            handshake_concurrency: self.handshake_concurrency,
            source_ips: self.source_ips,
            post_in_flight: self.in_flight,
            post_duration: self.post_duration,
            post_max: self.post_max,
            rate: self.rate,
            rate_duration: self.rate_duration,
            fanout_rounds: self.fanout_rounds,
            fanout_concurrency: self.fanout_concurrency,
            server_pid: self.server_pid,
            metrics_url: self.metrics_url.clone(),
            disconnect_log: self.disconnect_log.clone(),
            drain_timeout: self.drain_timeout,
            progress: !self.quiet,
            jobs_url: self.jobs_url.clone(),
            demo_steps: self.demo_steps,
        }
    }
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
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}
