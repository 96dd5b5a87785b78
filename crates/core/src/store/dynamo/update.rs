//! The `UpdateItem` expression for one progress update: what it sets and
//! removes, and the conditions it adds to the live-job check (`percent`
//! never goes back; a liveness expiry loses to a heartbeat that came first).

use super::Item;
use super::item::{Asked, FILE_PREFIX, deadline_key, error_attr, live_shard, n, s};
use crate::protocol::rfc3339;
use crate::store::{JobUpdate, Liveness, effective_percent};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// `#file{i} = :file{i}` for each file one update may attach.
static FILE_CLAUSES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..crate::protocol::MAX_FILES)
        .map(|i| format!("#file{i} = :file{i}"))
        .collect()
});

/// `prevAt2` of a job whose update before the latest came first.
pub(super) const NO_TIME: &str = "none";

pub(super) struct UpdateExpression {
    set: Vec<&'static str>,
    remove: Vec<&'static str>,
    pub(super) values: Item,
    pub(super) names: HashMap<String, String>,
    /// Extra ` AND …` clauses for the condition.
    pub(super) condition: String,
    /// What the update asked for, to explain a failed condition.
    pub(super) asked: Asked,
}

impl UpdateExpression {
    /// The expression for `update` of `job_id` at `now`, whose item lives
    /// until `ttl`.
    pub(super) fn new(
        job_id: &str,
        update: &JobUpdate,
        now: DateTime<Utc>,
        ttl: AttributeValue,
    ) -> Self {
        let mut e = UpdateExpression {
            set: vec![
                "#seq = #seq + :one",
                "#status = :status",
                "#updatedAt = :now",
                "#ttl = :ttl",
            ],
            remove: Vec::new(),
            values: HashMap::from([
                (":one".to_string(), n(1)),
                (":status".to_string(), s(update.status.as_str())),
                (":now".to_string(), s(rfc3339(now))),
                (":ttl".to_string(), ttl),
            ]),
            names: [
                ("#seq", "seq"),
                ("#status", "status"),
                ("#updatedAt", "updatedAt"),
                ("#ttl", "ttl"),
                ("#message", "message"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            condition: String::new(),
            asked: Asked {
                percent: effective_percent(update),
                expired_by: match update.liveness {
                    Liveness::ExpiredBy(by) => Some(by),
                    _ => None,
                },
            },
        };
        e.fields(update);
        e.liveness(job_id, update);
        if update.track_recent {
            // Right-hand sides read the item as it was before this update.
            e.set.push(
                "prevAt2 = if_not_exists(prevAt, :noTime), prevAt = if_not_exists(lastAt, #updatedAt), lastAt = :now",
            );
            e.values.insert(":noTime".into(), s(NO_TIME));
        }
        e
    }

    /// Percent, message, result and error.
    fn fields(&mut self, update: &JobUpdate) {
        if let Some(p) = self.asked.percent {
            self.set(
                "#percent = :percent",
                "#percent",
                "percent",
                ":percent",
                n(p),
            );
            self.condition
                .push_str(" AND (attribute_not_exists(#percent) OR #percent <= :percent)");
        }
        match &update.message {
            Some(m) => {
                self.set.push("#message = :message");
                self.values.insert(":message".into(), s(m.clone()));
            }
            None => self.remove.push("#message"),
        }
        if let Some(r) = &update.result {
            self.set(
                "#result = :result",
                "#result",
                "result",
                ":result",
                s(r.to_string()),
            );
        }
        if let Some(e) = &update.error {
            self.set(
                "#error = :error",
                "#error",
                "error",
                ":error",
                error_attr(e),
            );
        }
        // Each attached file is an attribute of its own, `file#<name>`, so
        // attaching one replaces that one and leaves the others.
        for (i, f) in update.files.iter().enumerate() {
            let (name, value) = (format!("#file{i}"), format!(":file{i}"));
            let Some(clause) = FILE_CLAUSES.get(i) else {
                break;
            };
            self.set.push(clause);
            self.names.insert(name, format!("{FILE_PREFIX}{}", f.name));
            self.values
                .insert(value, s(serde_json::to_string(f).unwrap_or_default()));
        }
    }

    /// The job's place in the liveness index: refreshed, or left on a
    /// terminal update (with the lease).
    fn liveness(&mut self, job_id: &str, update: &JobUpdate) {
        if let Some(by) = self.asked.expired_by {
            self.condition.push_str(" AND GSI2SK <= :by");
            self.values.insert(":by".into(), s(deadline_key(by)));
        }
        if update.status.is_terminal() {
            self.remove
                .extend(["GSI2PK", "GSI2SK", "leaseOwner", "leaseUntil"]);
        } else if let Liveness::Refresh(deadline) = update.liveness {
            self.set
                .push("GSI2PK = :live, GSI2SK = :deadline, workerSeen = :seen");
            self.values.insert(":live".into(), s(live_shard(job_id)));
            self.values
                .insert(":deadline".into(), s(deadline_key(deadline)));
            self.values
                .insert(":seen".into(), AttributeValue::Bool(true));
        } else if update.liveness == Liveness::Reported {
            self.set.push("workerSeen = :seen");
            self.values
                .insert(":seen".into(), AttributeValue::Bool(true));
            self.remove.extend(["GSI2PK", "GSI2SK"]);
        }
    }

    fn set(
        &mut self,
        clause: &'static str,
        name: &str,
        attribute: &str,
        placeholder: &str,
        value: AttributeValue,
    ) {
        self.set.push(clause);
        self.names.insert(name.into(), attribute.into());
        self.values.insert(placeholder.into(), value);
    }

    /// `SET …` and, when something goes, ` REMOVE …`.
    pub(super) fn expression(&self) -> String {
        let mut expression = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        expression
    }
}
