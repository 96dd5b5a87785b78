//! Items as the table stores them: keys, attribute values, and the mapping
//! from an item back to a job.

use super::*;

/// Name of the index that maps a connection to its subscriptions.
pub const GSI1: &str = "GSI1";
/// Name of the sparse index of liveness deadlines.
pub const GSI2: &str = "GSI2";
/// Name of the sparse index of an owner's jobs, newest last in the sort.
pub const GSI3: &str = "GSI3";

/// The GSI3 partition of an owner's jobs.
pub(super) fn owner_partition(owner: &str) -> String {
    format!("OWNER#{owner}")
}

/// Partitions of GSI2, so deadline writes of many running jobs spread out.
pub const LIVE_SHARDS: u32 = 8;

/// The GSI2 partition of a job.
pub(super) fn live_shard(job_id: &str) -> String {
    let h = job_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    live_partition(h % LIVE_SHARDS)
}

/// The `GSI2PK` of shard `n`.
pub(super) fn live_partition(n: u32) -> String {
    format!("LIVE#{n}")
}

/// What an update asked for, to explain a failed condition.
#[derive(Default)]
pub(super) struct Asked {
    pub(super) percent: Option<f64>,
    pub(super) expired_by: Option<i64>,
}

/// A deadline as GSI2's sort key: fixed width, so strings sort as numbers.
pub(super) fn deadline_key(deadline: i64) -> String {
    format!("{:012}", deadline.max(0))
}
/// Items per `BatchWriteItem` call (DynamoDB's limit).
pub(super) const BATCH: usize = 25;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn job_key(job_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("JOB#{job_id}"))),
        ("SK".into(), s("STATE")),
    ]
}

/// Sort key of the item that says which gateway holds a connection.
pub(super) const PLACE_SK: &str = "GATEWAY";

/// Key of that item: in the connection's own partition.
pub(super) fn place_key(connection_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("CONN#{connection_id}"))),
        ("SK".into(), s(PLACE_SK)),
    ]
}

pub(super) fn sub_key(job_id: &str, connection_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("JOB#{job_id}"))),
        ("SK".into(), s(format!("CONN#{connection_id}"))),
    ]
}

pub(super) fn idem_key(key: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), s(format!("IDEM#{key}"))),
        ("SK".into(), s("IDEM")),
    ]
}

/// Where DynamoDB requests go, as the SDK's environment sets it.
fn dynamodb_endpoint() -> String {
    ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "AWS's regional endpoint (no AWS_ENDPOINT_URL_DYNAMODB set)".into())
}

pub(super) fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
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
        SdkError::DispatchFailure(_) => format!(
            "cannot reach DynamoDB at {}: {}; start it (DynamoDB Local: scripts/dynamodb-local.sh start) or point AWS_ENDPOINT_URL_DYNAMODB at it",
            dynamodb_endpoint(),
            crate::aws::causes(&e)
        ),
        SdkError::TimeoutError(_) => {
            format!("DynamoDB at {} did not answer in time", dynamodb_endpoint())
        }
        other => crate::aws::causes(other),
    };
    StoreError::Unavailable(detail)
}

pub(super) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

pub(super) fn get_time(item: &Item, k: &str) -> Option<DateTime<Utc>> {
    get_s(item, k)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A map attribute of numbers (`streams`, `streamBytes`), by name.
pub(super) fn number_map(item: &Item, k: &str) -> std::collections::BTreeMap<String, u64> {
    item.get(k)
        .and_then(|v| v.as_m().ok())
        .map(|m| {
            m.iter()
                .filter_map(|(name, v)| Some((name.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn get_json(item: &Item, k: &str) -> Option<Value> {
    get_s(item, k).and_then(|t| serde_json::from_str(t).ok())
}

pub(super) fn expired(item: &Item, now: i64) -> bool {
    get_n::<i64>(item, "ttl").is_some_and(|t| t <= now)
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored item is missing or has a bad '{what}'"))
}

pub(super) const TERMINAL_CONDITION: &str = "NOT (#status IN (:succeeded, :failed, :cancelled))";

/// The attribute values `TERMINAL_CONDITION` refers to.
pub(super) fn terminal_values() -> [(String, AttributeValue); 3] {
    [
        (":succeeded".to_string(), s("succeeded")),
        (":failed".to_string(), s("failed")),
        (":cancelled".to_string(), s("cancelled")),
    ]
}

pub(super) fn job_from_item(item: &Item) -> Result<JobRecord, StoreError> {
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
            streams: number_map(item, "streams"),
            files: Vec::new(),
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
        worker_seen: item
            .get("workerSeen")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        owner: get_s(item, "owner").map(str::to_owned),
        tags: item
            .get("tags")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|t| t.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        owner_limit: get_n(item, "ownerLimit"),
        // `prevAt2` holds a marker that is no time when there was none.
        recent: crate::store::Recent {
            latest: get_time(item, "lastAt"),
            previous: get_time(item, "prevAt"),
            before_previous: get_time(item, "prevAt2"),
        },
        held: number_map(item, "heldFrom"),
        files: attached_files(item),
        uploads: item
            .get("uploads")
            .and_then(|v| v.as_ss().ok())
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default(),
    })
}

/// The attribute an attached file is kept in: `file#<name>`, its JSON.
pub(super) const FILE_PREFIX: &str = "file#";

/// The files attached to a job: its `file#<name>` attributes, in name order.
fn attached_files(item: &Item) -> Vec<crate::protocol::JobFile> {
    let mut files: Vec<crate::protocol::JobFile> = item
        .iter()
        .filter(|(k, _)| k.starts_with(FILE_PREFIX))
        .filter_map(|(_, v)| serde_json::from_str(v.as_s().ok()?).ok())
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// A new job's state item, expiring at `ttl`.
pub(super) fn job_item(job: &JobRecord, ttl: AttributeValue) -> Item {
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
    if let Some(o) = &job.owner {
        item.insert("owner".into(), s(o.clone()));
        let tags = job.tags.iter().map(|t| s(t.clone())).collect();
        item.insert("tags".into(), AttributeValue::L(tags));
        item.insert("GSI3PK".into(), s(owner_partition(o)));
        item.insert("GSI3SK".into(), s(crate::store::owner_order_key(job)));
    }
    item.insert("createdAt".into(), s(rfc3339(job.created_at)));
    item.insert("updatedAt".into(), s(rfc3339(snap.updated_at)));
    item.insert("attempt".into(), n(job.attempt));
    if let Some(limit) = job.owner_limit {
        item.insert("ownerLimit".into(), n(limit));
    }
    if let Some(l) = &job.lease {
        item.insert("leaseOwner".into(), s(l.owner.clone()));
        item.insert("leaseUntil".into(), n(l.until));
    }
    item.insert("ttl".into(), ttl);
    item
}

pub(super) fn error_attr(e: &JobError) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("code".to_string(), s(e.code.clone())),
        ("message".to_string(), s(e.message.clone())),
    ]))
}

/// An SDK request that could not be built.
pub(super) fn request_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Request(e.to_string())
}
