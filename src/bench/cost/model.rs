//! The arithmetic: a step's invocations, time and DynamoDB units, and the
//! dollars they come to at a price table.

use super::meter::Usage;
use super::prices::{Prices, billed_gb_seconds};
use super::{CostOptions, UpdatesVia};
use serde::Serialize;

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
    /// Sweeper invocations the step caused (coalescing windows it pushed),
    /// and their billed time, waiting for the window's end included.
    pub flush_invocations: f64,
    pub flush_gb_seconds: f64,
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
            flush_invocations: 0.0,
            flush_gb_seconds: 0.0,
        }
    }

    /// The same step, with the sweeper invocations it caused (each took
    /// `millis`).
    pub(super) fn with_flushes(mut self, millis: &[f64]) -> Step {
        self.flush_invocations = millis.len() as f64;
        self.flush_gb_seconds = millis.iter().map(|m| billed_gb_seconds(*m)).sum();
        self
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
            flush_invocations: self.flush_invocations / n,
            flush_gb_seconds: self.flush_gb_seconds / n,
            ..self.clone()
        }
    }

    fn lambda_dollars(&self, p: &Prices) -> f64 {
        (self.invocations as f64 + self.flush_invocations) * p.lambda_request
            + (self.billed_gb_seconds + self.flush_gb_seconds) * p.lambda_gb_second
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

/// One update: its invocation, its request (if API Gateway carries it), its
/// `messages` (one per subscriber, fewer when coalesced), its DynamoDB units.
pub(super) fn dollars_per_update(
    update: &Step,
    messages: f64,
    via: UpdatesVia,
    p: &Prices,
) -> Dollars {
    Dollars {
        lambda: update.lambda_dollars(p),
        http_api: via.request_dollars(p),
        websocket_messages: messages * p.websocket_message,
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
    /// Progress messages the job's updates sent, every subscriber counted.
    pub(super) messages: f64,
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
            websocket_messages: self.messages * p.websocket_message,
            connection_minutes: s * opts.connection_minutes * p.websocket_connection_minute,
            dynamodb: self.create.dynamodb_dollars(p)
                + self.update.dynamodb_dollars(p)
                + s * per_connection_db,
            sqs: self.sqs as f64 * p.sqs_request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cost::prices::US_EAST_1;

    fn step(invocations: u64, write_units: f64) -> Step {
        Step {
            invocations,
            billed_gb_seconds: invocations as f64 * 0.01,
            write_units,
            ..Step::default()
        }
    }

    #[test]
    fn the_function_url_drops_the_api_request_of_each_update_and_nothing_else() {
        let p = US_EAST_1;
        let one = step(1, 1.0);
        let url = dollars_per_update(&one, 10.0, UpdatesVia::FunctionUrl, &p);
        let api = dollars_per_update(&one, 10.0, UpdatesVia::HttpApi, &p);
        assert_eq!(url.http_api, 0.0);
        assert_eq!(api.http_api, p.http_api_request);
        assert!((api.total() - url.total() - p.http_api_request).abs() < 1e-15);
        assert_eq!(url.websocket_messages, 10.0 * p.websocket_message);
        assert_eq!(url.lambda, api.lambda);

        // A whole job still pays for its `POST /jobs` through the HTTP API.
        let opts = |via| CostOptions {
            subscribers: vec![10],
            updates: 4,
            update_interval: std::time::Duration::ZERO,
            updates_via: via,
            management_latency: std::time::Duration::ZERO,
            coalesce: std::time::Duration::ZERO,
            connection_minutes: 1.0,
            samples: 1,
            chunks_per_update: 0,
            json_out: None,
        };
        let (create, updates, connect) = (step(1, 1.0), step(4, 4.0), step(1, 3.0));
        let job = JobSteps {
            create: &create,
            update: &updates,
            connect: &connect,
            disconnect: &connect,
            sqs: 1,
            messages: 40.0,
        };
        let url = job.dollars(10, &opts(UpdatesVia::FunctionUrl), &p);
        let api = job.dollars(10, &opts(UpdatesVia::HttpApi), &p);
        assert_eq!(url.http_api, p.http_api_request);
        assert!((api.http_api - 5.0 * p.http_api_request).abs() < 1e-15);
        assert_eq!(url.websocket_messages, 40.0 * p.websocket_message);
    }

    #[test]
    fn coalescing_counts_the_messages_sent_and_the_sweepers_invocations() {
        let p = US_EAST_1;
        let plain = step(1, 1.0);
        let flushed = step(1, 1.0).with_flushes(&[400.0]);
        let every = dollars_per_update(&plain, 10.0, UpdatesVia::FunctionUrl, &p);
        // Four updates of a window sent 2 messages to each of 10: 5 an update.
        let coalesced =
            dollars_per_update(&flushed.per_invocation(), 5.0, UpdatesVia::FunctionUrl, &p);
        assert_eq!(coalesced.websocket_messages, 5.0 * p.websocket_message);
        let sweeper = p.lambda_request + billed_gb_seconds(400.0) * p.lambda_gb_second;
        assert!((coalesced.lambda - every.lambda - sweeper).abs() < 1e-15);
    }
}
