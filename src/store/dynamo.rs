//! The DynamoDB store: one table, items as in the contract.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | job state | `JOB#<jobId>` | `STATE` |
//! | subscription | `JOB#<jobId>` | `CONN#<connectionId>` (GSI1: `CONN#<connectionId>` / `JOB#<jobId>`) |
//! | idempotency key | `IDEM#<key>` | `IDEM` |
//!
//! A job whose worker reports through the update endpoint also carries its
//! liveness deadline in GSI2 (`GSI2PK` `LIVE#<shard>`, `GSI2SK` the deadline
//! as 12 zero-padded epoch digits), a sparse index the liveness sweep queries
//! by range; a terminal update removes both attributes, so finished jobs
//! leave the index.
//!
//! Every invariant is enforced by DynamoDB itself: seq increments and the
//! finality of terminal states by conditional `UpdateItem`, idempotency by a
//! conditional put. Fan-out reads a job's partition with `Query`, never `Scan`.
//! Items carry `ttl` (epoch seconds); reads ignore items whose ttl has passed
//! but that DynamoDB has not removed yet.

use super::{
    IdempotencyOutcome, IdempotencyRecord, JobRecord, JobUpdate, Lease, Liveness, Store,
    StoreError, WebhookState, effective_percent, validate_update,
};
use crate::protocol::{JobError, SUBSCRIPTION_TTL, Snapshot, Status, rfc3339};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus as SdkTableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, WriteRequest,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Name of the index that maps a connection to its subscriptions.
pub const GSI1: &str = "GSI1";
/// Name of the sparse index of liveness deadlines.
pub const GSI2: &str = "GSI2";
/// Partitions of GSI2, so deadline writes of many running jobs spread out.
pub const LIVE_SHARDS: u32 = 8;

/// The GSI2 partition of a job.
fn live_shard(job_id: &str) -> String {
    let h = job_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    live_partition(h % LIVE_SHARDS)
}

/// The `GSI2PK` of shard `n`.
fn live_partition(n: u32) -> String {
    format!("LIVE#{n}")
}

/// What an update asked for, to explain a failed condition.
#[derive(Default)]
struct Asked {
    percent: Option<f64>,
    expired_by: Option<i64>,
}

/// A deadline as GSI2's sort key: fixed width, so strings sort as numbers.
fn deadline_key(deadline: i64) -> String {
    format!("{:012}", deadline.max(0))
}
/// Items per `BatchWriteItem` call (DynamoDB's limit).
const BATCH: usize = 25;

/// The `dynamodb` store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
}

/// What `ensure_table` found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    AlreadyExisted,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn job_key(job_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("JOB#{job_id}"))),
        ("SK".into(), s("STATE")),
    ]
}

fn sub_key(job_id: &str, connection_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("JOB#{job_id}"))),
        ("SK".into(), s(format!("CONN#{connection_id}"))),
    ]
}

fn idem_key(key: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("IDEM#{key}"))),
        ("SK".into(), s("IDEM")),
    ]
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    let detail = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("ServiceError");
            let line = format!("{code}: {}", err.message().unwrap_or("no message"));
            if matches!(
                code,
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
            ) {
                return StoreError::Throttled(line);
            }
            line
        }
        SdkError::DispatchFailure(d) => {
            format!("cannot reach DynamoDB ({d:?}); check AWS_ENDPOINT_URL_DYNAMODB / network")
        }
        SdkError::TimeoutError(_) => "DynamoDB did not answer in time".into(),
        other => format!("{other:?}"),
    };
    StoreError::Unavailable(detail)
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

fn get_time(item: &Item, k: &str) -> Option<DateTime<Utc>> {
    get_s(item, k)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn get_json(item: &Item, k: &str) -> Option<Value> {
    get_s(item, k).and_then(|t| serde_json::from_str(t).ok())
}

fn expired(item: &Item, now: i64) -> bool {
    get_n::<i64>(item, "ttl").is_some_and(|t| t <= now)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored item is missing or has a bad '{what}'"))
}

const TERMINAL_CONDITION: &str = "NOT (#status IN (:succeeded, :failed, :cancelled))";

/// The attribute values `TERMINAL_CONDITION` refers to.
fn terminal_values() -> [(String, AttributeValue); 3] {
    [
        (":succeeded".to_string(), s("succeeded")),
        (":failed".to_string(), s("failed")),
        (":cancelled".to_string(), s("cancelled")),
    ]
}

fn job_from_item(item: &Item) -> Result<JobRecord, StoreError> {
    let job_id = get_s(item, "PK")
        .and_then(|pk| pk.strip_prefix("JOB#"))
        .ok_or_else(|| corrupt("PK"))?
        .to_string();
    let status = get_s(item, "status")
        .and_then(Status::parse)
        .ok_or_else(|| corrupt("status"))?;
    let error = item
        .get("error")
        .and_then(|v| v.as_m().ok())
        .map(|m| JobError {
            code: get_s(m, "code").unwrap_or_default().to_string(),
            message: get_s(m, "message").unwrap_or_default().to_string(),
        });
    let created_at = get_time(item, "createdAt").ok_or_else(|| corrupt("createdAt"))?;
    Ok(JobRecord {
        snapshot: Snapshot {
            job_id,
            seq: get_n(item, "seq").ok_or_else(|| corrupt("seq"))?,
            status,
            percent: get_n(item, "percent").unwrap_or(0.0),
            message: get_s(item, "message").map(str::to_owned),
            result: get_json(item, "result"),
            error,
            updated_at: get_time(item, "updatedAt").unwrap_or(created_at),
        },
        kind: get_s(item, "kind").unwrap_or_default().to_string(),
        input: get_json(item, "input").unwrap_or(Value::Null),
        callback_url: get_s(item, "callbackUrl").map(str::to_owned),
        created_at,
        cancel_requested: item
            .get("cancelRequested")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        webhook: get_json(item, "webhook").and_then(|v| serde_json::from_value(v).ok()),
        attempt: get_n(item, "attempt").unwrap_or(1),
        lease: match (get_s(item, "leaseOwner"), get_n(item, "leaseUntil")) {
            (Some(owner), Some(until)) => Some(Lease {
                owner: owner.to_string(),
                until,
            }),
            _ => None,
        },
        dispatched: item
            .get("dispatched")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        deadline: get_s(item, "GSI2SK").and_then(|d| d.parse().ok()),
    })
}

fn error_attr(e: &JobError) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("code".to_string(), s(e.code.clone())),
        ("message".to_string(), s(e.message.clone())),
    ]))
}

impl DynamoStore {
    /// A store over `table`; job state and idempotency keys expire `retention`
    /// after their last write.
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            retention,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn retention_ttl(&self, now: DateTime<Utc>) -> AttributeValue {
        n(now.timestamp() + self.retention.as_secs() as i64)
    }

    /// Creates the table with GSI1 and TTL on `ttl` unless it exists; makes
    /// sure TTL is enabled either way. Waits until the table is active.
    pub async fn ensure_table(&self) -> Result<TableStatus, StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::InvalidUpdate(e.to_string());
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key("GSI1PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("GSI1SK", KeyType::Range).map_err(build)?)
            // `ttl` rides along so reads can skip expired subscriptions.
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("ttl")
                    .build(),
            )
            .build()
            .map_err(build)?;
        let gsi2 = GlobalSecondaryIndex::builder()
            .index_name(GSI2)
            .key_schema(key("GSI2PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("GSI2SK", KeyType::Range).map_err(build)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(build)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK").map_err(build)?)
            .attribute_definitions(attr("SK").map_err(build)?)
            .attribute_definitions(attr("GSI1PK").map_err(build)?)
            .attribute_definitions(attr("GSI1SK").map_err(build)?)
            .attribute_definitions(attr("GSI2PK").map_err(build)?)
            .attribute_definitions(attr("GSI2SK").map_err(build)?)
            .key_schema(key("PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("SK", KeyType::Range).map_err(build)?)
            .global_secondary_indexes(gsi)
            .global_secondary_indexes(gsi2.clone())
            .send()
            .await;
        let status = match created {
            Ok(_) => TableStatus::Created,
            Err(e) if e.code() == Some("ResourceInUseException") => TableStatus::AlreadyExisted,
            Err(e) => return Err(unavailable(e)),
        };
        self.wait_active().await?;
        if status == TableStatus::AlreadyExisted {
            self.add_index_if_missing(
                gsi2,
                vec![
                    attr("GSI2PK").map_err(build)?,
                    attr("GSI2SK").map_err(build)?,
                ],
            )
            .await?;
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        let enabled = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !enabled {
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name("ttl")
                        .build()
                        .map_err(build)?,
                )
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(status)
    }

    /// Adds `index` to a table made by an earlier version that lacks it.
    async fn add_index_if_missing(
        &self,
        index: GlobalSecondaryIndex,
        attributes: Vec<AttributeDefinition>,
    ) -> Result<(), StoreError> {
        let d = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        let present = d
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .any(|g| g.index_name() == Some(index.index_name()));
        if present {
            return Ok(());
        }
        tracing::info!(table = %self.table, index = index.index_name(), "adding a missing index");
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(index.index_name())
            .set_key_schema(Some(index.key_schema().to_vec()))
            .set_projection(index.projection().cloned())
            .build()
            .map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
        self.client
            .update_table()
            .table_name(&self.table)
            .set_attribute_definitions(Some(attributes))
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            )
            .send()
            .await
            .map_err(unavailable)?;
        self.wait_active().await
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            if d.table().and_then(|t| t.table_status()) == Some(&SdkTableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become active in time",
            self.table
        )))
    }

    /// Fails with a message naming the fix when the table is missing or unreachable.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(StoreError::Unavailable(format!(
                    "table '{}' does not exist; create it with `jobcast table create --table {}`",
                    self.table, self.table
                )))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_item(
        &self,
        key: [(String, AttributeValue); 2],
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item.filter(|i| !expired(i, Utc::now().timestamp())))
    }

    /// Explains why a conditional write on a job failed, from the item as it was.
    async fn classify_failure(
        &self,
        job_id: &str,
        old: Option<Item>,
        requested_percent: Option<f64>,
        expired_by: Option<i64>,
    ) -> StoreError {
        let old = match old {
            Some(i) => Some(i),
            None => match self.get_item(job_key(job_id)).await {
                Ok(i) => i,
                Err(e) => return e,
            },
        };
        let Some(item) = old.filter(|i| !expired(i, Utc::now().timestamp())) else {
            return StoreError::NotFound(job_id.to_string());
        };
        let status = get_s(&item, "status").and_then(Status::parse);
        if let Some(st) = status.filter(|s| s.is_terminal()) {
            return StoreError::Terminal {
                job_id: job_id.to_string(),
                status: st,
            };
        }
        if let Some(by) = expired_by {
            let deadline: Option<i64> = get_s(&item, "GSI2SK").and_then(|d| d.parse().ok());
            if deadline.is_none_or(|d| d > by) {
                return StoreError::Conflict {
                    job_id: job_id.to_string(),
                    reason: "its worker reported in time".into(),
                };
            }
        }
        let current: f64 = get_n(&item, "percent").unwrap_or(0.0);
        match requested_percent {
            Some(p) if p < current => StoreError::PercentBackwards {
                job_id: job_id.to_string(),
                current,
                requested: p,
            },
            _ => StoreError::Conflict {
                job_id: job_id.to_string(),
                reason: "another process holds its lease".into(),
            },
        }
    }

    /// Sends a prepared `UpdateItem` on a job that must exist and not be
    /// terminal; returns the job as it is after the write.
    async fn update_live(
        &self,
        job_id: &str,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<JobRecord, StoreError> {
        self.update_live_if(job_id, req, "", Asked::default()).await
    }

    /// As `update_live`, with `extra` appended to the condition; a failed
    /// condition is explained against what the update `asked`.
    async fn update_live_if(
        &self,
        job_id: &str,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        extra: &str,
        asked: Asked,
    ) -> Result<JobRecord, StoreError> {
        let mut req = req
            .table_name(&self.table)
            .set_key(Some(HashMap::from(job_key(job_id))))
            .condition_expression(format!(
                "attribute_exists(PK) AND {TERMINAL_CONDITION}{extra}"
            ))
            .expression_attribute_names("#status", "status")
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in terminal_values() {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(out) => job_from_item(&out.attributes.unwrap_or_default()),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                let old = match se.into_err() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                };
                Err(self
                    .classify_failure(job_id, old, asked.percent, asked.expired_by)
                    .await)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn query_all(
        &self,
        index: Option<&str>,
        key_condition: &str,
        values: Vec<(&str, AttributeValue)>,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(key_condition)
            .set_expression_attribute_values(Some(
                values
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ))
            .projection_expression(projection)
            .set_expression_attribute_names(
                projection
                    .contains("#ttl")
                    .then(|| HashMap::from([("#ttl".to_string(), "ttl".to_string())])),
            )
            .into_paginator()
            .items()
            .send();
        let now = Utc::now().timestamp();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if !expired(&item, now) {
                out.push(item);
            }
        }
        Ok(out)
    }

    async fn batch_delete(
        &self,
        keys: Vec<[(String, AttributeValue); 2]>,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(BATCH) {
            let mut requests = Vec::with_capacity(chunk.len());
            for key in chunk {
                let del = DeleteRequest::builder()
                    .set_key(Some(HashMap::from(key.clone())))
                    .build()
                    .map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
                requests.push(WriteRequest::builder().delete_request(del).build());
            }
            let mut pending = HashMap::from([(self.table.clone(), requests)]);
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(unavailable)?;
                match out.unprocessed_items {
                    Some(left) if left.values().any(|v| !v.is_empty()) => {
                        pending = left;
                        tokio::time::sleep(crate::retry::backoff(
                            attempt,
                            Duration::from_millis(50),
                            Duration::from_secs(2),
                        ))
                        .await;
                    }
                    _ => {
                        pending = HashMap::new();
                        break;
                    }
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable(
                    "DynamoDB kept throttling a batch delete".into(),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_job(&self, job: JobRecord) -> Result<(), StoreError> {
        let snap = &job.snapshot;
        let mut item: Item = HashMap::from(job_key(&snap.job_id));
        item.insert("status".into(), s(snap.status.as_str()));
        item.insert("seq".into(), n(snap.seq));
        item.insert("percent".into(), n(snap.percent));
        if let Some(m) = &snap.message {
            item.insert("message".into(), s(m.clone()));
        }
        item.insert("kind".into(), s(job.kind.clone()));
        item.insert("input".into(), s(job.input.to_string()));
        if let Some(u) = &job.callback_url {
            item.insert("callbackUrl".into(), s(u.clone()));
        }
        item.insert("createdAt".into(), s(rfc3339(job.created_at)));
        item.insert("updatedAt".into(), s(rfc3339(snap.updated_at)));
        item.insert("attempt".into(), n(job.attempt));
        if let Some(l) = &job.lease {
            item.insert("leaseOwner".into(), s(l.owner.clone()));
            item.insert("leaseUntil".into(), n(l.until));
        }
        item.insert("ttl".into(), self.retention_ttl(snap.updated_at));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::AlreadyExists(snap.job_id.clone()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        match self.get_item(job_key(job_id)).await? {
            Some(item) => job_from_item(&item).map(Some),
            None => Ok(None),
        }
    }

    async fn update_job(
        &self,
        job_id: &str,
        update: JobUpdate,
        now: DateTime<Utc>,
    ) -> Result<JobRecord, StoreError> {
        validate_update(&update)?;
        let percent = effective_percent(&update);
        let mut set = vec![
            "#seq = #seq + :one",
            "#status = :status",
            "#updatedAt = :now",
            "#ttl = :ttl",
        ];
        let mut remove: Vec<&str> = Vec::new();
        let mut values: Item = HashMap::from([
            (":one".to_string(), n(1)),
            (":status".to_string(), s(update.status.as_str())),
            (":now".to_string(), s(rfc3339(now))),
            (":ttl".to_string(), self.retention_ttl(now)),
        ]);
        let mut names = HashMap::from([
            ("#seq".to_string(), "seq".to_string()),
            ("#status".to_string(), "status".to_string()),
            ("#updatedAt".to_string(), "updatedAt".to_string()),
            ("#ttl".to_string(), "ttl".to_string()),
            ("#message".to_string(), "message".to_string()),
        ]);
        let mut condition = String::new();
        if let Some(p) = percent {
            set.push("#percent = :percent");
            values.insert(":percent".into(), n(p));
            names.insert("#percent".into(), "percent".into());
            condition.push_str(" AND (attribute_not_exists(#percent) OR #percent <= :percent)");
        }
        match &update.message {
            Some(m) => {
                set.push("#message = :message");
                values.insert(":message".into(), s(m.clone()));
            }
            None => remove.push("#message"),
        }
        if let Some(r) = &update.result {
            set.push("#result = :result");
            values.insert(":result".into(), s(r.to_string()));
            names.insert("#result".into(), "result".into());
        }
        if let Some(e) = &update.error {
            set.push("#error = :error");
            values.insert(":error".into(), error_attr(e));
            names.insert("#error".into(), "error".into());
        }
        let expired_by = match update.liveness {
            Liveness::ExpiredBy(by) => Some(by),
            _ => None,
        };
        if let Some(by) = expired_by {
            condition.push_str(" AND GSI2SK <= :by");
            values.insert(":by".into(), s(deadline_key(by)));
        }
        if update.status.is_terminal() {
            remove.extend(["GSI2PK", "GSI2SK", "leaseOwner", "leaseUntil"]);
        } else if let Liveness::Refresh(deadline) = update.liveness {
            set.push("GSI2PK = :live, GSI2SK = :deadline");
            values.insert(":live".into(), s(live_shard(job_id)));
            values.insert(":deadline".into(), s(deadline_key(deadline)));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let req = self
            .client
            .update_item()
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values));
        let asked = Asked {
            percent,
            expired_by,
        };
        self.update_live_if(job_id, req, &condition, asked).await
    }

    async fn request_cancel(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let res = self
            .client
            .update_item()
            .update_expression("SET cancelRequested = :t")
            .expression_attribute_values(":t", AttributeValue::Bool(true));
        self.update_live(job_id, res).await
    }

    async fn heartbeat(&self, job_id: &str, deadline: i64) -> Result<JobRecord, StoreError> {
        let req = self
            .client
            .update_item()
            .update_expression("SET GSI2PK = :live, GSI2SK = :deadline")
            .expression_attribute_values(":live", s(live_shard(job_id)))
            .expression_attribute_values(":deadline", s(deadline_key(deadline)));
        self.update_live(job_id, req).await
    }

    async fn lost_jobs(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..LIVE_SHARDS {
            if out.len() >= limit {
                break;
            }
            let items = self
                .query_all(
                    Some(GSI2),
                    "GSI2PK = :p AND GSI2SK <= :now",
                    vec![
                        (":p", s(live_partition(shard))),
                        (":now", s(deadline_key(now))),
                    ],
                    "PK",
                )
                .await?;
            out.extend(
                items
                    .iter()
                    .filter_map(|i| get_s(i, "PK").and_then(|pk| pk.strip_prefix("JOB#")))
                    .map(str::to_owned),
            );
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn hand_over(
        &self,
        job_id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<JobRecord, StoreError> {
        let req = self
            .client
            .update_item()
            .update_expression(
                "SET leaseOwner = :owner, leaseUntil = :until, attempt = if_not_exists(attempt, :zero) + :one",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        self.update_live_if(
            job_id,
            req,
            " AND (attribute_not_exists(leaseUntil) OR leaseUntil <= :now OR leaseOwner = :owner) \
             AND (attribute_not_exists(dispatched) OR dispatched = :false)",
            Asked::default(),
        )
        .await
    }

    async fn mark_dispatched(&self, job_id: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(job_key(job_id))))
            .update_expression("SET dispatched = :t REMOVE leaseOwner, leaseUntil")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound(job_id.to_string()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn subscribe(
        &self,
        job_id: &str,
        connection_id: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from(sub_key(job_id, connection_id));
        item.insert("GSI1PK".into(), s(format!("CONN#{connection_id}")));
        item.insert("GSI1SK".into(), s(format!("JOB#{job_id}")));
        item.insert("connectedAt".into(), s(rfc3339(connected_at)));
        item.insert(
            "ttl".into(),
            n(connected_at.timestamp() + SUBSCRIPTION_TTL.as_secs() as i64),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unsubscribe(&self, job_id: &str, connection_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(sub_key(job_id, connection_id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn subscribers(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        let items = self
            .query_all(
                None,
                "PK = :pk AND begins_with(SK, :conn)",
                vec![(":pk", s(format!("JOB#{job_id}"))), (":conn", s("CONN#"))],
                "SK, #ttl",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| get_s(i, "SK").and_then(|sk| sk.strip_prefix("CONN#")))
            .map(str::to_owned)
            .collect())
    }

    async fn connection_jobs(&self, connection_id: &str) -> Result<Vec<String>, StoreError> {
        let items = self
            .query_all(
                Some(GSI1),
                "GSI1PK = :c",
                vec![(":c", s(format!("CONN#{connection_id}")))],
                "GSI1SK, #ttl",
            )
            .await?;
        let mut jobs: Vec<String> = items
            .iter()
            .filter_map(|i| get_s(i, "GSI1SK").and_then(|sk| sk.strip_prefix("JOB#")))
            .map(str::to_owned)
            .collect();
        jobs.sort();
        Ok(jobs)
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<usize, StoreError> {
        let jobs = self.connection_jobs(connection_id).await?;
        let keys: Vec<_> = jobs.iter().map(|j| sub_key(j, connection_id)).collect();
        self.batch_delete(keys).await?;
        Ok(jobs.len())
    }

    async fn unfinished_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        // The one Scan: no key names unfinished jobs, and this runs once when
        // `serve` starts. The filter keeps the pages small; `unfinished`
        // decides on what comes back.
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "SK = :state AND (NOT (#status IN (:succeeded, :failed, :cancelled)) \
                 OR attribute_exists(callbackUrl))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":state", s("STATE"))
            .expression_attribute_values(":succeeded", s("succeeded"))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":cancelled", s("cancelled"))
            .into_paginator()
            .items()
            .send();
        let now = Utc::now().timestamp();
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(item) = pages.next().await
        {
            let item = item.map_err(unavailable)?;
            if expired(&item, now) {
                continue;
            }
            match job_from_item(&item) {
                Ok(job) if job.unfinished() => out.push(job),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable job item"),
            }
        }
        Ok(out)
    }

    async fn set_webhook(&self, job_id: &str, state: WebhookState) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(&state).map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(job_key(job_id))))
            .update_expression("SET webhook = :w")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":w", s(json))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound(job_id.to_string()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: IdempotencyRecord,
    ) -> Result<IdempotencyOutcome, StoreError> {
        let now = Utc::now();
        let mut item: Item = HashMap::from(idem_key(key));
        item.insert("requestHash".into(), s(record.request_hash.clone()));
        item.insert("jobId".into(), s(record.job_id.clone()));
        item.insert("response".into(), s(record.response.to_string()));
        item.insert("ttl".into(), self.retention_ttl(now));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired key that TTL has not removed yet counts as absent.
            .condition_expression("attribute_not_exists(PK) OR #ttl <= :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(IdempotencyOutcome::Recorded),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let item = self
                    .get_item(idem_key(key))
                    .await?
                    .ok_or_else(|| StoreError::Unavailable("idempotency key vanished".into()))?;
                Ok(IdempotencyOutcome::Existing(IdempotencyRecord {
                    request_hash: get_s(&item, "requestHash").unwrap_or_default().into(),
                    job_id: get_s(&item, "jobId").unwrap_or_default().into(),
                    response: get_json(&item, "response").unwrap_or(Value::Null),
                }))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release_idempotency(&self, key: &str, job_id: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(idem_key(key))))
            .condition_expression("jobId = :j")
            .expression_attribute_values(":j", s(job_id))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Bound to another job, or gone: nothing of ours to release.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
