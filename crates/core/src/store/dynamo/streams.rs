//! Streams in the job's partition. The job's `STATE` item holds each
//! stream's length (`streams`) and size (`streamBytes`), and a
//! `chunkVersion` that every append moves on; each append to a stream is
//! one item `CHUNK#<stream>#<from, 12 digits>` holding its chunks as JSON
//! text. An append reads the state, checks the limits, then writes the new
//! lengths and its chunk items in one transaction conditional on the
//! version it read: two appends never share an index, none leaves a gap,
//! and a refused or failed one writes nothing. Chunks coalescing holds are
//! marked in the same item (`heldFrom`: stream → first index not pushed),
//! written under the same version.

use super::update::NO_TIME;
use super::*;
use crate::store::streams::{
    self, AppendOptions, AppendOutcome, Appended, ChunkPage, StreamAppend,
};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use std::collections::BTreeMap;

/// Attempts of an append that loses its condition to a concurrent one.
const APPEND_ATTEMPTS: u32 = 40;

fn chunk_sk(stream: &str, from: u64) -> String {
    format!("CHUNK#{stream}#{from:012}")
}

fn number_attr_map(m: &BTreeMap<String, u64>) -> AttributeValue {
    AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), n(*v))).collect())
}

/// The condition that the state item's chunk version is still `version`.
fn version_condition(version: u64) -> &'static str {
    if version == 0 {
        "attribute_not_exists(chunkVersion)"
    } else {
        "chunkVersion = :version"
    }
}

/// Waits before another try of a write that lost its condition to a
/// concurrent one (none before the first).
async fn lost_race_pause(attempt: u32) {
    if attempt > 0 {
        let wait = crate::retry::backoff(
            attempt.min(6),
            Duration::from_millis(5),
            Duration::from_millis(200),
        );
        tokio::time::sleep(wait).await;
    }
}

impl DynamoStore {
    /// How long a chunk item is kept: twice the retention, so the chunks of
    /// a job that runs up to the retention itself are kept as long as the
    /// job (reads never return a chunk of an expired job).
    fn chunk_ttl(&self, now: DateTime<Utc>) -> AttributeValue {
        n(now.timestamp() + 2 * self.retention.as_secs() as i64)
    }

    pub(super) async fn append(
        &self,
        job_id: &str,
        appends: &[StreamAppend],
        now: DateTime<Utc>,
        options: AppendOptions,
    ) -> Result<AppendOutcome, StoreError> {
        let reported = options.reported;
        for attempt in 0..APPEND_ATTEMPTS {
            lost_race_pause(attempt).await;
            let Some(item) = self.get_item(job_key(job_id)).await? else {
                return Err(StoreError::NotFound(job_id.to_string()));
            };
            let mut job = job_from_item(&item)?;
            if job.snapshot.status.is_terminal() {
                return Err(StoreError::Terminal {
                    job_id: job_id.to_string(),
                    status: job.snapshot.status,
                });
            }
            let mut lengths = job.snapshot.streams.clone();
            let mut bytes = number_map(&item, "streamBytes");
            let version: u64 = get_n(&item, "chunkVersion").unwrap_or(0);
            let planned = streams::plan(job_id, &lengths, &bytes, appends)?;
            let mut appended = Vec::with_capacity(appends.len());
            let mut writes = Vec::with_capacity(appends.len() + 1);
            for (a, (from, size)) in appends.iter().zip(planned) {
                let total = from + a.chunks.len() as u64;
                lengths.insert(a.stream.clone(), total);
                bytes.insert(a.stream.clone(), size + a.bytes);
                if options.hold {
                    streams::hold(&mut job.held, &a.stream, from);
                }
                let text = Value::Array(a.chunks.clone()).to_string();
                let put = Put::builder()
                    .table_name(&self.table)
                    .item("PK", s(format!("JOB#{job_id}")))
                    .item("SK", s(chunk_sk(&a.stream, from)))
                    .item("chunks", s(text))
                    .item("n", n(a.chunks.len()))
                    .item("ttl", self.chunk_ttl(now))
                    .build()
                    .map_err(request_error)?;
                writes.push(TransactWriteItem::builder().put(put).build());
                appended.push(Appended {
                    stream: a.stream.clone(),
                    from,
                    chunks: a.chunks.clone(),
                });
            }
            // Held marks and times ride on the same write; the times are
            // shifted by the write itself, as an update shifts them.
            let held = if options.hold {
                ", heldFrom = :held"
            } else {
                ""
            };
            let recent = if options.track_recent {
                ", prevAt2 = if_not_exists(prevAt, :noTime), prevAt = if_not_exists(lastAt, updatedAt), lastAt = :now"
            } else {
                ""
            };
            // The worker's report rides on it too.
            let liveness = match reported {
                None => "",
                Some(Some(_)) => ", GSI2PK = :live, GSI2SK = :deadline, workerSeen = :seen",
                Some(None) => ", workerSeen = :seen REMOVE GSI2PK, GSI2SK",
            };
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(HashMap::from(job_key(job_id))))
                .update_expression(format!(
                    "SET #streams = :lengths, streamBytes = :bytes, chunkVersion = :next{held}{recent}{liveness}"
                ))
                .condition_expression(format!(
                    "attribute_exists(PK) AND {TERMINAL_CONDITION} AND {}",
                    version_condition(version)
                ))
                .expression_attribute_names("#streams", "streams")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":lengths", number_attr_map(&lengths))
                .expression_attribute_values(":bytes", number_attr_map(&bytes))
                .expression_attribute_values(":next", n(version + 1));
            if version > 0 {
                update = update.expression_attribute_values(":version", n(version));
            }
            if options.hold {
                update = update.expression_attribute_values(":held", number_attr_map(&job.held));
            }
            if options.track_recent {
                update = update
                    .expression_attribute_values(":noTime", s(NO_TIME))
                    .expression_attribute_values(":now", s(rfc3339(now)));
            }
            if let Some(deadline) = reported {
                update = update.expression_attribute_values(":seen", AttributeValue::Bool(true));
                if let Some(d) = deadline {
                    update = update
                        .expression_attribute_values(":live", s(live_shard(job_id)))
                        .expression_attribute_values(":deadline", s(deadline_key(d)));
                }
            }
            for (k, v) in terminal_values() {
                update = update.expression_attribute_values(k, v);
            }
            writes.push(
                TransactWriteItem::builder()
                    .update(update.build().map_err(request_error)?)
                    .build(),
            );
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
            {
                Ok(_) => {
                    job.snapshot.streams = lengths.clone();
                    if let Some(deadline) = reported {
                        job.deadline = deadline;
                        job.worker_seen = true;
                    }
                    if options.track_recent {
                        let updated_at = job.snapshot.updated_at;
                        job.recent.shift(updated_at, now);
                    }
                    return Ok(AppendOutcome {
                        appended,
                        lengths,
                        job,
                    });
                }
                // Another append (or the job's end) came first: read again.
                Err(e)
                    if matches!(
                        e.code(),
                        Some("TransactionCanceledException" | "TransactionConflictException")
                    ) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Throttled(format!(
            "job {job_id}: {APPEND_ATTEMPTS} appends in a row lost to concurrent ones"
        )))
    }

    /// Moves the held marks past what was pushed ([`streams::released`]),
    /// under the chunk version, so a concurrent append's mark is kept.
    pub(super) async fn release(
        &self,
        job_id: &str,
        pushed: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        for attempt in 0..APPEND_ATTEMPTS {
            lost_race_pause(attempt).await;
            let Some(item) = self.get_item(job_key(job_id)).await? else {
                return Ok(());
            };
            let held = number_map(&item, "heldFrom");
            let left = streams::released(&held, &number_map(&item, "streams"), pushed);
            if left == held {
                return Ok(());
            }
            let version: u64 = get_n(&item, "chunkVersion").unwrap_or(0);
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(HashMap::from(job_key(job_id))))
                .condition_expression(format!(
                    "attribute_exists(PK) AND {}",
                    version_condition(version)
                ))
                .expression_attribute_values(":next", n(version + 1));
            update = if left.is_empty() {
                update.update_expression("SET chunkVersion = :next REMOVE heldFrom")
            } else {
                update
                    .update_expression("SET chunkVersion = :next, heldFrom = :held")
                    .expression_attribute_values(":held", number_attr_map(&left))
            };
            if version > 0 {
                update = update.expression_attribute_values(":version", n(version));
            }
            match update.send().await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Throttled(format!(
            "job {job_id}: {APPEND_ATTEMPTS} releases of held chunks in a row lost to appends"
        )))
    }

    pub(super) async fn read_range(
        &self,
        job_id: &str,
        stream: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ChunkPage, StoreError> {
        let empty = ChunkPage {
            from,
            chunks: Vec::new(),
            next: from,
        };
        let Some(job) = self.get_job(job_id).await? else {
            return Err(StoreError::NotFound(job_id.to_string()));
        };
        let length = job.snapshot.streams.get(stream).copied().unwrap_or(0);
        if from >= length || limit == 0 {
            return Ok(empty);
        }
        let pk = s(format!("JOB#{job_id}"));
        // The item holding chunk `from`: the last one starting at or before it.
        let first = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :at")
            .expression_attribute_values(":pk", pk.clone())
            .expression_attribute_values(":lo", s(chunk_sk(stream, 0)))
            .expression_attribute_values(":at", s(chunk_sk(stream, from)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(start) = first.items().first().cloned() else {
            return Ok(empty);
        };
        let mut chunks: Vec<Value> = Vec::new();
        let wanted = |item: &Item, chunks: &mut Vec<Value>| -> Result<bool, StoreError> {
            let sk = get_s(item, "SK").unwrap_or_default();
            let item_from: u64 = sk
                .rsplit('#')
                .next()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("chunk item key {sk}")))?;
            let all = match get_json(item, "chunks") {
                Some(Value::Array(a)) => a,
                _ => return Err(StoreError::Corrupt(format!("chunk item {sk}"))),
            };
            let skip = from.saturating_sub(item_from) as usize;
            chunks.extend(all.into_iter().skip(skip));
            Ok(chunks.len() < limit && (from + chunks.len() as u64) < length)
        };
        let mut more = wanted(&start, &mut chunks)?;
        let mut after = get_s(&start, "SK").unwrap_or_default().to_string();
        while more {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :after AND :hi")
                .expression_attribute_values(":pk", pk.clone())
                .expression_attribute_values(":after", s(format!("{after}!")))
                .expression_attribute_values(":hi", s(format!("CHUNK#{stream}#~")))
                .consistent_read(true)
                .limit(32)
                .send()
                .await
                .map_err(unavailable)?;
            let items = page.items();
            if items.is_empty() {
                break;
            }
            for item in items {
                more = wanted(item, &mut chunks)?;
                after = get_s(item, "SK").unwrap_or_default().to_string();
                if !more {
                    break;
                }
            }
        }
        let chunks = streams::take_page(&chunks, limit, max_bytes);
        Ok(ChunkPage {
            from,
            next: from + chunks.len() as u64,
            chunks,
        })
    }
}
