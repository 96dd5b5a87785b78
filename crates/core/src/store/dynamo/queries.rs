//! The requests the store is built from: reads, conditional updates that
//! explain a failed condition, paged queries and batched deletes.

use super::*;

impl DynamoStore {
    pub(super) async fn get_item(
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
        Ok(out.item.filter(|i| !expired(i, self.now_secs())))
    }

    /// Explains why a conditional write on a job failed, from the item as it was.
    pub(super) async fn classify_failure(
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
        let Some(item) = old.filter(|i| !expired(i, self.now_secs())) else {
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
    pub(super) async fn update_live(
        &self,
        job_id: &str,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<JobRecord, StoreError> {
        self.update_live_if(job_id, req, "", Asked::default()).await
    }

    /// As `update_live`, with `extra` appended to the condition; a failed
    /// condition is explained against what the update `asked`.
    pub(super) async fn update_live_if(
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

    /// Puts an item that lives as long as a connection: found again
    /// through GSI1 (`CONN#<id>` / `index_key`), expiring after the longest
    /// connection.
    pub(super) async fn put_connection_item(
        &self,
        mut item: Item,
        connection_id: &str,
        index_key: String,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        item.insert("GSI1PK".into(), s(format!("CONN#{connection_id}")));
        item.insert("GSI1SK".into(), s(index_key));
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

    /// Deletes everything of a connection's GSI1 partition by its table
    /// keys: job subscriptions and owner follows alike. How many there were.
    pub(super) async fn delete_connection_items(
        &self,
        connection_id: &str,
    ) -> Result<usize, StoreError> {
        let items = self
            .query_all(
                Some(GSI1),
                "GSI1PK = :c",
                vec![(":c", s(format!("CONN#{connection_id}")))],
                "PK, SK",
            )
            .await?;
        let keys: Vec<_> = items
            .iter()
            .filter_map(|i| {
                Some([
                    ("PK".to_string(), i.get("PK")?.clone()),
                    ("SK".to_string(), i.get("SK")?.clone()),
                ])
            })
            .collect();
        // Subscriptions and follows; the connection's place is not one.
        let n = items
            .iter()
            .filter(|i| get_s(i, "SK") != Some(PLACE_SK))
            .count();
        self.batch_delete(keys).await?;
        Ok(n)
    }

    pub(super) async fn query_all(
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
        let now = self.now_secs();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if !expired(&item, now) {
                out.push(item);
            }
        }
        Ok(out)
    }

    pub(super) async fn batch_delete(
        &self,
        keys: Vec<[(String, AttributeValue); 2]>,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(BATCH) {
            let mut requests = Vec::with_capacity(chunk.len());
            for key in chunk {
                let del = DeleteRequest::builder()
                    .set_key(Some(HashMap::from(key.clone())))
                    .build()
                    .map_err(request_error)?;
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

    /// Applies `expression` (with its one value) to a job's item, which
    /// must exist: `NotFound` otherwise.
    pub(super) async fn update_existing(
        &self,
        job_id: &str,
        expression: &str,
        (name, value): (&str, AttributeValue),
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(job_key(job_id))))
            .update_expression(expression)
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(name, value)
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

    /// A page of an owner's jobs from GSI3, newest first. Status and tag are
    /// filters, applied after DynamoDB's own page limit, so this reads on
    /// (at most 20 round trips) until the page is full or the owner's jobs
    /// run out; one job beyond the page says whether there is a next one.
    pub(super) async fn query_owner_jobs(
        &self,
        owner: &str,
        query: &JobQuery,
    ) -> Result<JobPage, StoreError> {
        let mut condition = "GSI3PK = :owner".to_string();
        let mut values = HashMap::from([(":owner".to_string(), s(owner_partition(owner)))]);
        if let Some(after) = &query.after {
            condition.push_str(" AND GSI3SK < :after");
            values.insert(":after".into(), s(after.clone()));
        }
        let mut filters = Vec::new();
        let mut names = HashMap::new();
        if let Some(status) = query.status {
            filters.push("#status = :status");
            names.insert("#status".to_string(), "status".to_string());
            values.insert(":status".into(), s(status.as_str()));
        }
        if let Some(tag) = &query.tag {
            filters.push("contains(tags, :tag)");
            values.insert(":tag".into(), s(tag.clone()));
        }
        let now = self.now_secs();
        let mut found: Vec<(String, JobRecord)> = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..20 {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI3)
                .key_condition_expression(&condition)
                .set_filter_expression((!filters.is_empty()).then(|| filters.join(" AND ")))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit((query.limit as i32 + 1).max(10))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items() {
                if expired(item, now) {
                    continue;
                }
                let key = get_s(item, "GSI3SK").unwrap_or_default().to_string();
                match job_from_item(item) {
                    Ok(job) => found.push((key, job)),
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable job item"),
                }
            }
            start = out.last_evaluated_key().cloned();
            if found.len() > query.limit || start.is_none() {
                break;
            }
        }
        let more = found.len() > query.limit || start.is_some();
        found.truncate(query.limit);
        Ok(JobPage {
            next: more.then(|| found.last().map(|(k, _)| k.clone())).flatten(),
            jobs: found.into_iter().map(|(_, j)| j).collect(),
        })
    }
}
