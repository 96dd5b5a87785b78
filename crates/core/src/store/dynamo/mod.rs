//! The DynamoDB store: one table, items as in the contract.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | job state | `JOB#<jobId>` | `STATE` |
//! | subscription | `JOB#<jobId>` | `CONN#<connectionId>` (GSI1: `CONN#<connectionId>` / `JOB#<jobId>`) |
//! | idempotency key | `IDEM#<key>` | `IDEM` |
//! | owner follow | `OWNER#<sub>` | `FOLLOW#<connectionId>#<ALL or TAG#tag>` (GSI1: `CONN#<connectionId>` / `OWNER#<sub>#…`) |
//! | owner's unfinished-job count | `OWNER#<sub>` | `ACTIVE` |
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

mod item;
mod owners;
mod queries;
mod streams;
mod table;
mod update;

use item::*;
use update::UpdateExpression;

use super::{
    Follower, IdempotencyOutcome, IdempotencyRecord, JobPage, JobQuery, JobRecord, JobUpdate,
    Lease, Store, StoreError, WebhookState, validate_update,
};
use crate::clock::SharedClock;
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

pub(super) type Item = HashMap<String, AttributeValue>;

/// The `dynamodb` store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
    clock: SharedClock,
}

/// What `ensure_table` found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    AlreadyExisted,
}

impl DynamoStore {
    /// A store over `table`; job state and idempotency keys expire `retention`
    /// after their last write.
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            retention,
            clock: crate::clock::system(),
        }
    }

    /// The same store reading "now" (expiry, recounts, idempotency) from
    /// `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: SharedClock) -> DynamoStore {
        self.clock = clock;
        self
    }

    /// Now, as this store's clock reads it, in epoch seconds.
    pub(super) fn now_secs(&self) -> i64 {
        self.clock.now().timestamp()
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn retention_ttl(&self, now: DateTime<Utc>) -> AttributeValue {
        n(now.timestamp() + self.retention.as_secs() as i64)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_job(&self, job: JobRecord) -> Result<(), StoreError> {
        let item = job_item(&job, self.retention_ttl(job.snapshot.updated_at));
        if let (Some(owner), Some(limit)) = (&job.owner, job.owner_limit) {
            return self
                .create_counted(&job.snapshot.job_id, item, owner, limit)
                .await;
        }
        let snap = &job.snapshot;
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
        let e = UpdateExpression::new(job_id, &update, now, self.retention_ttl(now));
        let req = self
            .client
            .update_item()
            .update_expression(e.expression())
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values));
        let job = self
            .update_live_if(job_id, req, &e.condition, e.asked)
            .await?;
        // Refused after a terminal status, so this is the update that ended it.
        if let Some(owner) = job
            .counted_owner()
            .filter(|_| job.snapshot.status.is_terminal())
        {
            self.release_owner_slot(owner).await;
        }
        Ok(job)
    }

    async fn request_cancel(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let res = self
            .client
            .update_item()
            .update_expression("SET cancelRequested = :t")
            .expression_attribute_values(":t", AttributeValue::Bool(true));
        self.update_live(job_id, res).await
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        deadline: Option<i64>,
    ) -> Result<JobRecord, StoreError> {
        let req = self
            .client
            .update_item()
            .expression_attribute_values(":seen", AttributeValue::Bool(true));
        let req = match deadline {
            Some(deadline) => req
                .update_expression("SET GSI2PK = :live, GSI2SK = :deadline, workerSeen = :seen")
                .expression_attribute_values(":live", s(live_shard(job_id)))
                .expression_attribute_values(":deadline", s(deadline_key(deadline))),
            None => req.update_expression("SET workerSeen = :seen REMOVE GSI2PK, GSI2SK"),
        };
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

    async fn mark_dispatched(&self, job_id: &str, start_by: Option<i64>) -> Result<(), StoreError> {
        if let Some(start_by) = start_by {
            // One write in the usual case; a worker that reported first (or
            // a job that already ended) fails the condition and keeps what
            // it has.
            let req = self
                .client
                .update_item()
                .update_expression(
                    "SET dispatched = :t, GSI2PK = :live, GSI2SK = :deadline \
                     REMOVE leaseOwner, leaseUntil",
                )
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":live", s(live_shard(job_id)))
                .expression_attribute_values(":deadline", s(deadline_key(start_by)));
            match self
                .update_live_if(
                    job_id,
                    req,
                    " AND attribute_not_exists(workerSeen)",
                    Default::default(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. } | StoreError::Terminal { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.update_existing(
            job_id,
            "SET dispatched = :t REMOVE leaseOwner, leaseUntil",
            (":t", AttributeValue::Bool(true)),
        )
        .await
    }

    async fn subscribe_streams(
        &self,
        job_id: &str,
        connection_id: &str,
        connected_at: DateTime<Utc>,
        streams: &[String],
    ) -> Result<(), StoreError> {
        // An update, not a put: a later subscribe keeps the streams an
        // earlier one asked for.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(sub_key(job_id, connection_id))))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":g1", s(format!("CONN#{connection_id}")))
            .expression_attribute_values(":g2", s(format!("JOB#{job_id}")))
            .expression_attribute_values(":at", s(rfc3339(connected_at)))
            .expression_attribute_values(
                ":ttl",
                n(connected_at.timestamp() + SUBSCRIPTION_TTL.as_secs() as i64),
            );
        let set = "SET GSI1PK = :g1, GSI1SK = :g2, connectedAt = :at, #ttl = :ttl";
        req = if streams.is_empty() {
            req.update_expression(set)
        } else {
            req.update_expression(format!("{set} ADD streams :streams"))
                .expression_attribute_values(":streams", AttributeValue::Ss(streams.to_vec()))
        };
        req.send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn stream_subscribers(
        &self,
        job_id: &str,
        stream: &str,
    ) -> Result<Vec<String>, StoreError> {
        // A filter expression would cost the same read units: DynamoDB
        // counts what it reads, not what it returns.
        let items = self
            .query_all(
                None,
                "PK = :pk AND begins_with(SK, :conn)",
                vec![(":pk", s(format!("JOB#{job_id}"))), (":conn", s("CONN#"))],
                "SK, streams, #ttl",
            )
            .await?;
        Ok(items
            .iter()
            .filter(|i| {
                i.get("streams")
                    .and_then(|v| v.as_ss().ok())
                    .is_some_and(|names| names.iter().any(|n| n == stream))
            })
            .filter_map(|i| get_s(i, "SK").and_then(|sk| sk.strip_prefix("CONN#")))
            .map(str::to_owned)
            .collect())
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
        self.delete_connection_items(connection_id).await
    }

    async fn place_connection(
        &self,
        connection_id: &str,
        gateway: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from(place_key(connection_id));
        item.insert("gateway".into(), s(gateway));
        self.put_connection_item(item, connection_id, PLACE_SK.to_string(), connected_at)
            .await
    }

    async fn append_chunks(
        &self,
        job_id: &str,
        appends: &[crate::store::streams::StreamAppend],
        now: DateTime<Utc>,
        options: crate::store::streams::AppendOptions,
    ) -> Result<crate::store::streams::AppendOutcome, StoreError> {
        self.append(job_id, appends, now, options).await
    }

    async fn record_upload(&self, job_id: &str, name: &str) -> Result<(), StoreError> {
        let max = crate::protocol::MAX_FILES;
        let req = self
            .client
            .update_item()
            .update_expression("ADD uploads :names")
            .expression_attribute_values(":names", AttributeValue::Ss(vec![name.to_string()]))
            .expression_attribute_values(":name", s(name))
            .expression_attribute_values(":max", n(max));
        let extra = " AND (attribute_not_exists(uploads) OR size(uploads) < :max OR contains(uploads, :name))";
        match self
            .update_live_if(job_id, req, extra, Asked::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(StoreError::TooManyFiles {
                job_id: job_id.to_string(),
                limit: max,
            }),
            Err(e) => Err(e),
        }
    }

    async fn release_held(
        &self,
        job_id: &str,
        pushed: &std::collections::BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        self.release(job_id, pushed).await
    }

    async fn read_chunks(
        &self,
        job_id: &str,
        stream: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<crate::store::streams::ChunkPage, StoreError> {
        self.read_range(job_id, stream, from, limit, max_bytes)
            .await
    }

    async fn connection_place(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_item(place_key(connection_id))
            .await?
            .and_then(|i| get_s(&i, "gateway").map(str::to_owned)))
    }

    async fn follow_owner(
        &self,
        owner: &str,
        tag: Option<&str>,
        connection_id: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.put_follow(owner, tag, connection_id, connected_at)
            .await
    }

    async fn owner_followers(&self, owner: &str) -> Result<Vec<Follower>, StoreError> {
        self.query_followers(owner).await
    }

    async fn unfollow_owner(&self, owner: &str, follower: &Follower) -> Result<bool, StoreError> {
        self.delete_follow(owner, follower).await
    }

    async fn owner_jobs(&self, owner: &str, query: &JobQuery) -> Result<JobPage, StoreError> {
        self.query_owner_jobs(owner, query).await
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
        let now = self.now_secs();
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
        self.update_existing(job_id, "SET webhook = :w", (":w", s(json)))
            .await
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: IdempotencyRecord,
    ) -> Result<IdempotencyOutcome, StoreError> {
        let now = self.clock.now();
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
