//! The arithmetic: a step's invocations, time and DynamoDB units, and the
//! dollars they come to at a price table.

use super::CostOptions;
use super::meter::Usage;
use super::prices::{Prices, billed_gb_seconds};
use serde::Serialize;

/// The door a worker's update comes through, which decides whether API
/// Gateway bills a request for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UpdatesVia {
    /// The updates function's own URL: Lambda alone bills it.
    FunctionUrl,
    /// `POST /jobs/{id}/updates` on the HTTP API: one more API request.
    HttpApi,
}

impl UpdatesVia {
    /// API Gateway's charge for one update through this door.
    pub fn request_dollars(self, p: &Prices) -> f64 {
        match self {
            UpdatesVia::FunctionUrl => 0.0,
            UpdatesVia::HttpApi => p.http_api_request,
        }
    }
}

/// One Lambda-backed step: invocations, time, DynamoDB use.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub invocations: u64,
    /// Wall time of each invocation, mean and median, in ms.
    pub mean_ms: f64,
    pub p50_ms: f64,
    /// Billed duration: each invocation rounded up to the millisecond.
    pub billed_gb_seconds: f64,
    pub dynamodb_requests: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// DynamoDB operations → (requests, units), for the arithmetic.
    pub operations: std::collections::BTreeMap<String, (f64, f64)>,
}

impl Step {
    pub(super) fn new(millis: &[f64], usage: &Usage) -> Step {
        let mut sorted = millis.to_vec();
        sorted.sort_by(f64::total_cmp);
        Step {
            invocations: millis.len() as u64,
            mean_ms: millis.iter().sum::<f64>() / millis.len().max(1) as f64,
            p50_ms: crate::bench::percentile(&sorted, 0.5),
            billed_gb_seconds: millis.iter().map(|m| billed_gb_seconds(*m)).sum(),
            dynamodb_requests: usage.requests() as f64,
            read_units: usage.read_units(),
            write_units: usage.write_units(),
            operations: usage
                .operations
                .iter()
                .map(|(op, (c, u))| (op.clone(), (*c as f64, *u)))
                .collect(),
        }
    }

    /// The same step per invocation.
    pub(super) fn per_invocation(&self) -> Step {
        let n = self.invocations.max(1) as f64;
        Step {
            invocations: 1,
            billed_gb_seconds: self.billed_gb_seconds / n,
            dynamodb_requests: self.dynamodb_requests / n,
            read_units: self.read_units / n,
            write_units: self.write_units / n,
            operations: self
                .operations
                .iter()
                .map(|(op, (c, u))| (op.clone(), (c / n, u / n)))
                .collect(),
            ..self.clone()
        }
    }

    fn lambda_dollars(&self, p: &Prices) -> f64 {
        self.invocations as f64 * p.lambda_request + self.billed_gb_seconds * p.lambda_gb_second
    }

    fn dynamodb_dollars(&self, p: &Prices) -> f64 {
        self.read_units * p.dynamodb_read_unit + self.write_units * p.dynamodb_write_unit
    }
}

/// Dollars by service.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dollars {
    pub lambda: f64,
    pub http_api: f64,
    pub websocket_messages: f64,
    pub connection_minutes: f64,
    pub dynamodb: f64,
    pub sqs: f64,
}

impl Dollars {
    pub fn total(&self) -> f64 {
        self.lambda
            + self.http_api
            + self.websocket_messages
            + self.connection_minutes
            + self.dynamodb
            + self.sqs
    }

    pub(super) fn scaled(&self, k: f64) -> Dollars {
        Dollars {
            lambda: self.lambda * k,
            http_api: self.http_api * k,
            websocket_messages: self.websocket_messages * k,
            connection_minutes: self.connection_minutes * k,
            dynamodb: self.dynamodb * k,
            sqs: self.sqs * k,
        }
    }
}

/// One update: its invocation, its request (if API Gateway carries it), one
/// message per subscriber, its DynamoDB units.
pub(super) fn dollars_per_update(update: &Step, s: usize, via: UpdatesVia, p: &Prices) -> Dollars {
    Dollars {
        lambda: update.lambda_dollars(p),
        http_api: via.request_dollars(p),
        websocket_messages: s as f64 * p.websocket_message,
        dynamodb: update.dynamodb_dollars(p),
        ..Dollars::default()
    }
}

/// Every step of one job, each per invocation but the updates (all N).
pub(super) struct JobSteps<'a> {
    pub(super) create: &'a Step,
    pub(super) update: &'a Step,
    pub(super) connect: &'a Step,
    pub(super) disconnect: &'a Step,
    pub(super) sqs: u64,
}

impl JobSteps<'_> {
    pub(super) fn dollars(&self, s: usize, opts: &CostOptions, p: &Prices) -> Dollars {
        let n = opts.updates as f64;
        let s = s as f64;
        let per_connection = self.connect.lambda_dollars(p) + self.disconnect.lambda_dollars(p);
        let per_connection_db =
            self.connect.dynamodb_dollars(p) + self.disconnect.dynamodb_dollars(p);
        Dollars {
            lambda: self.create.lambda_dollars(p)
                + self.update.lambda_dollars(p)
                + s * per_connection,
            http_api: p.http_api_request + n * opts.updates_via.request_dollars(p),
            websocket_messages: s * n * p.websocket_message,
            connection_minutes: s * opts.connection_minutes * p.websocket_connection_minute,
            dynamodb: self.create.dynamodb_dollars(p)
                + self.update.dynamodb_dollars(p)
                + s * per_connection_db,
            sqs: self.sqs as f64 * p.sqs_request,
        }
    }
}
