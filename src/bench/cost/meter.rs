//! Counting what DynamoDB bills: every request of a client asks for its
//! `ConsumedCapacity`, and the units each answer reports are added up as
//! read or write request units by operation (DynamoDB Local reports them as
//! DynamoDB does, index writes and transactions included).

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Requests and request units by operation, since the meter was made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// Operation (`UpdateItem`, `Query`, …) → (requests, request units).
    pub operations: BTreeMap<String, (u64, f64)>,
}

impl Usage {
    pub fn requests(&self) -> u64 {
        self.operations.values().map(|(n, _)| n).sum()
    }

    /// Read request units (on demand: what a read of up to 4 KB costs).
    pub fn read_units(&self) -> f64 {
        self.sum(is_read)
    }

    /// Write request units (a write of up to 1 KB, index writes included).
    pub fn write_units(&self) -> f64 {
        self.sum(|op| !is_read(op))
    }

    fn sum(&self, which: impl Fn(&str) -> bool) -> f64 {
        self.operations
            .iter()
            .filter(|(op, _)| which(op))
            .map(|(_, (_, u))| u)
            .sum()
    }

    /// Both together.
    pub fn plus(&self, other: &Usage) -> Usage {
        let mut operations = self.operations.clone();
        for (op, (n, u)) in &other.operations {
            let e = operations.entry(op.clone()).or_default();
            e.0 += n;
            e.1 += u;
        }
        Usage { operations }
    }

    /// What happened after `before`.
    pub fn since(&self, before: &Usage) -> Usage {
        let mut operations = BTreeMap::new();
        for (op, (n, u)) in &self.operations {
            let (n0, u0) = before.operations.get(op).copied().unwrap_or_default();
            if *n > n0 {
                operations.insert(op.clone(), (n - n0, u - u0));
            }
        }
        Usage { operations }
    }
}

fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    )
}

/// The operation of the request under way, from its `X-Amz-Target`.
#[derive(Clone, Debug)]
struct Operation(String);

impl aws_smithy_types::config_bag::Storable for Operation {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// The interceptor; clones share their counts.
#[derive(Clone, Debug, Default)]
pub struct CapacityMeter(Arc<Mutex<Usage>>);

impl CapacityMeter {
    pub fn usage(&self) -> Usage {
        self.0.lock().map(|u| u.clone()).unwrap_or_default()
    }
}

fn operation(headers: &aws_smithy_runtime_api::http::Headers) -> String {
    headers
        .get("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string()
}

/// The units an answer reports: one object, or a list (transactions).
fn consumed(body: &[u8]) -> f64 {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0.0;
    };
    let units = |c: &Value| c["CapacityUnits"].as_f64().unwrap_or(0.0);
    match &v["ConsumedCapacity"] {
        Value::Array(list) => list.iter().map(units).sum(),
        c @ Value::Object(_) => units(c),
        _ => 0.0,
    }
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let op = operation(context.request().headers());
        cfg.interceptor_state().store_put(Operation(op));
        let request = context.request_mut();
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut v: Value = serde_json::from_slice(bytes)?;
        if let Value::Object(map) = &mut v {
            map.entry("ReturnConsumedCapacity")
                .or_insert_with(|| Value::String("TOTAL".into()));
        }
        let body = serde_json::to_vec(&v)?;
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = SdkBody::from(body);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let op = cfg
            .load::<Operation>()
            .map(|o| o.0.clone())
            .unwrap_or_else(|| "unknown".into());
        let units = context
            .response()
            .body()
            .bytes()
            .map(consumed)
            .unwrap_or(0.0);
        if let Ok(mut usage) = self.0.lock() {
            let e = usage.operations.entry(op).or_default();
            e.0 += 1;
            e.1 += units;
        }
        Ok(())
    }
}
