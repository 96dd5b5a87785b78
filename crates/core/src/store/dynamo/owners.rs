//! What the table keeps per owner besides their jobs: the connections that
//! follow them, and the count of their unfinished jobs a limit is kept on.
//!
//! The count is one item (`OWNER#<sub>` / `ACTIVE`). A job created under a
//! limit goes in by one transaction with the count's conditional increment,
//! so two creations never both take the last place; the update that ends
//! the job counts it down. Should a process die between those two writes,
//! the count is left one too high: when it says "full" and has not changed
//! for [`RECOUNT_AFTER_SECS`], the owner's unfinished counted jobs are
//! counted again from GSI3 and the count corrected.

use super::*;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, Select, TransactWriteItem, Update};

/// A count that says "full" is checked against GSI3 only once it has been
/// still this long, so a job GSI3 does not show yet is never missed.
const RECOUNT_AFTER_SECS: i64 = 10;

fn follow_sort_key(connection_id: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("FOLLOW#{connection_id}#TAG#{t}"),
        None => format!("FOLLOW#{connection_id}#ALL"),
    }
}

fn follow_key(
    owner: &str,
    connection_id: &str,
    tag: Option<&str>,
) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(owner_partition(owner))),
        ("SK".into(), s(follow_sort_key(connection_id, tag))),
    ]
}

fn active_key(owner: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".into(), s(owner_partition(owner))),
        ("SK".into(), s("ACTIVE")),
    ])
}

/// How a counted creation went.
enum Counted {
    Created,
    Exists,
    /// The count was at the limit; what it held, when readable.
    Full {
        seen: Option<(u32, i64)>,
    },
}

impl DynamoStore {
    pub(super) async fn put_follow(
        &self,
        owner: &str,
        tag: Option<&str>,
        connection_id: &str,
        connected_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from(follow_key(owner, connection_id, tag));
        item.insert("connectionId".into(), s(connection_id));
        if let Some(t) = tag {
            item.insert("followTag".into(), s(t));
        }
        let index_key = format!("OWNER#{owner}#{}", follow_sort_key("", tag));
        self.put_connection_item(item, connection_id, index_key, connected_at)
            .await
    }

    pub(super) async fn query_followers(&self, owner: &str) -> Result<Vec<Follower>, StoreError> {
        let items = self
            .query_all(
                None,
                "PK = :pk AND begins_with(SK, :follow)",
                vec![
                    (":pk", s(owner_partition(owner))),
                    (":follow", s("FOLLOW#")),
                ],
                "connectionId, followTag, #ttl",
            )
            .await?;
        let mut all: Vec<Follower> = items
            .iter()
            .filter_map(|i| {
                Some(Follower {
                    connection_id: get_s(i, "connectionId")?.to_string(),
                    tag: get_s(i, "followTag").map(str::to_owned),
                })
            })
            .collect();
        all.sort();
        Ok(all)
    }

    pub(super) async fn delete_follow(
        &self,
        owner: &str,
        follower: &Follower,
    ) -> Result<bool, StoreError> {
        let key = follow_key(owner, &follower.connection_id, follower.tag.as_deref());
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from(key)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    /// Stores a job item and counts it against `owner`'s `limit` in one
    /// transaction.
    pub(super) async fn create_counted(
        &self,
        job_id: &str,
        item: Item,
        owner: &str,
        limit: u32,
    ) -> Result<(), StoreError> {
        for first in [true, false] {
            match self.transact_create(item.clone(), owner, limit).await? {
                Counted::Created => return Ok(()),
                Counted::Exists => return Err(StoreError::AlreadyExists(job_id.to_string())),
                Counted::Full { seen } => {
                    if !(first && self.recount(owner, limit, seen).await?) {
                        break;
                    }
                }
            }
        }
        Err(StoreError::OwnerLimit {
            owner: owner.to_string(),
            limit,
        })
    }

    async fn transact_create(
        &self,
        item: Item,
        owner: &str,
        limit: u32,
    ) -> Result<Counted, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(request_error)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(active_key(owner)))
            .update_expression("ADD active :one SET changedAt = :now")
            .condition_expression("attribute_not_exists(active) OR active < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(self.now_secs()))
            .expression_attribute_values(":limit", n(limit))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(request_error)?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        let cancelled = match res {
            Ok(_) => return Ok(Counted::Created),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                match se.into_err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c,
                    other => return Err(StoreError::Unavailable(other.to_string())),
                }
            }
            Err(e) => return Err(unavailable(e)),
        };
        let reasons = cancelled.cancellation_reasons();
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
        };
        if failed(0) {
            return Ok(Counted::Exists);
        }
        if failed(1) {
            let seen = reasons[1].item().and_then(|i| {
                let i: Item = i.clone();
                Some((get_n(&i, "active")?, get_n(&i, "changedAt")?))
            });
            return Ok(Counted::Full { seen });
        }
        // Another transaction on the same items at the same moment.
        Err(StoreError::Unavailable(format!(
            "creating the job conflicted with another write: {}",
            cancelled.message().unwrap_or("transaction cancelled")
        )))
    }

    /// Corrects a count that says "full" when GSI3 shows fewer counted
    /// unfinished jobs; true when a new attempt may succeed.
    async fn recount(
        &self,
        owner: &str,
        limit: u32,
        seen: Option<(u32, i64)>,
    ) -> Result<bool, StoreError> {
        let Some((active, changed_at)) = seen else {
            return Ok(false);
        };
        if self.now_secs() - changed_at < RECOUNT_AFTER_SECS {
            return Ok(false);
        }
        let actual = self.count_unfinished(owner).await?;
        if actual >= limit {
            return Ok(false);
        }
        tracing::warn!(
            owner,
            counted = active,
            actual,
            "correcting an owner's count of unfinished jobs"
        );
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(active_key(owner)))
            .update_expression("SET active = :actual, changedAt = :now")
            .condition_expression("active = :seen")
            .expression_attribute_values(":actual", n(actual))
            .expression_attribute_values(":now", n(self.now_secs()))
            .expression_attribute_values(":seen", n(active))
            .send()
            .await;
        match res {
            // Either way the count just changed; one more attempt judges it.
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(true),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The owner's unfinished jobs that were created under a limit.
    async fn count_unfinished(&self, owner: &str) -> Result<u32, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI3)
            .key_condition_expression("GSI3PK = :owner")
            .filter_expression("#status IN (:queued, :running) AND attribute_exists(ownerLimit)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner_partition(owner)))
            .expression_attribute_values(":queued", s(Status::Queued.as_str()))
            .expression_attribute_values(":running", s(Status::Running.as_str()))
            .select(Select::Count)
            .into_paginator()
            .send();
        let mut total = 0u32;
        while let Some(page) = pages.next().await {
            total += page.map_err(unavailable)?.count().max(0) as u32;
        }
        Ok(total)
    }

    /// Counts down an owner's unfinished jobs (a counted job just ended).
    /// A failure leaves the count high until a recount corrects it.
    pub(super) async fn release_owner_slot(&self, owner: &str) {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(active_key(owner)))
            .update_expression("ADD active :minus SET changedAt = :now")
            .condition_expression("active > :zero")
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(self.now_secs()))
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
            Err(e) => {
                tracing::warn!(owner, error = %unavailable(e), "could not count down an owner's unfinished jobs")
            }
        }
    }
}
