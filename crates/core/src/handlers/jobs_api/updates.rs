//! `POST /jobs/{jobId}/updates`: what a worker reports, checked and handed
//! to the one publisher.

use super::problem::{Problem, json_object, json_response, store_problem};
use super::{Deps, body_bytes, presented_token, token_problem, unauthorized};
use crate::protocol::{JobError, MAX_MESSAGE_BYTES, Status};
use crate::store::streams::{self, MAX_APPEND_BYTES, StreamAppend};
use crate::store::{JobRecord, JobUpdate, Liveness, StoreError};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Fields a worker update may carry.
const UPDATE_FIELDS: [&str; 7] = [
    "status", "percent", "message", "result", "error", "append", "files",
];

/// What one request to the update endpoint asks for: a snapshot update
/// (none for a heartbeat, or an append alone) and chunks for the job's
/// streams.
struct Parsed {
    update: Option<JobUpdate>,
    append: Vec<StreamAppend>,
    /// Names of uploaded files the update attaches.
    files: Vec<String>,
}

/// `files`: an array of distinct uploaded file names.
fn parse_files(v: Value) -> Result<Vec<String>, Problem> {
    let Value::Array(items) = v else {
        return Err(invalid(
            "files must be an array of uploaded file names".into(),
        ));
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(n) if crate::files::valid_name(&n) => {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            other => {
                return Err(invalid(format!(
                    "files holds file names ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}}), got {other}"
                )));
            }
        }
    }
    if names.len() > crate::files::MAX_FILES {
        return Err(invalid(format!(
            "an update attaches at most {} files",
            crate::files::MAX_FILES
        )));
    }
    Ok(names)
}

fn bad_stream(m: String) -> Problem {
    Problem::new(422, "bad_stream", m)
}

/// `append`: a non-empty object of stream name → non-empty array of
/// chunks, at most [`MAX_APPEND_BYTES`] of chunks in all (413 above).
fn parse_append(v: Value) -> Result<Vec<StreamAppend>, Problem> {
    let Value::Object(map) = v else {
        return Err(bad_stream(
            "append must be an object: stream name → array of chunks".into(),
        ));
    };
    if map.is_empty() {
        return Err(bad_stream("append must name at least one stream".into()));
    }
    let mut appends = Vec::with_capacity(map.len());
    for (name, chunks) in map {
        if !streams::valid_name(&name) {
            return Err(bad_stream(format!(
                "'{name}' is not a stream name: [a-z][a-z0-9_-]{{0,31}}"
            )));
        }
        match chunks {
            Value::Array(c) if !c.is_empty() => appends.push(StreamAppend::new(name, c)),
            _ => {
                return Err(bad_stream(format!(
                    "append.{name} must be a non-empty array of chunks"
                )));
            }
        }
    }
    let bytes: u64 = appends.iter().map(|a| a.bytes).sum();
    if bytes > MAX_APPEND_BYTES as u64 {
        return Err(Problem::new(
            413,
            "payload_too_large",
            format!(
                "one update appends at most {MAX_APPEND_BYTES} bytes of chunks; this one has {bytes}"
            ),
        ));
    }
    Ok(appends)
}

/// Reads a worker's update body into a `JobUpdate`; `None` is a heartbeat.
fn invalid(m: String) -> Problem {
    Problem::new(422, "invalid_update", m)
}

fn parse_update(body: &[u8]) -> Result<Parsed, Problem> {
    let mut obj = json_object(body, &UPDATE_FIELDS, "an update", invalid)?;
    let append = match obj.remove("append") {
        None => Vec::new(),
        Some(v) => parse_append(v)?,
    };
    // Attaching files is an update (seq + 1), even alone.
    let files = match obj.get("files") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_files(v.clone())?,
    };
    if obj.is_empty() {
        return Ok(Parsed {
            update: None,
            append,
            files,
        });
    }
    let status = update_status(obj.get("status"))?;
    let percent = match obj.get("percent") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(p),
            _ => {
                return Err(invalid(format!(
                    "percent must be a number from 0 to 100, got {v}"
                )));
            }
        },
    };
    let message = match obj.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(other) => return Err(invalid(format!("message must be a string, got {other}"))),
    };
    let result = obj.get("result").filter(|v| !v.is_null()).cloned();
    if result.is_some() && status != Status::Succeeded {
        return Err(invalid("result is set only with status succeeded".into()));
    }
    let error = update_error(obj.get("error"), status, message.as_deref())?;
    Ok(Parsed {
        update: Some(JobUpdate {
            status,
            percent,
            message,
            result,
            error,
            liveness: Liveness::Keep,
            track_recent: false,
            files: Vec::new(),
        }),
        append,
        files,
    })
}

/// An update's `status`: `running` when absent; `queued` and `cancelled`
/// are not a worker's to report.
fn update_status(v: Option<&Value>) -> Result<Status, Problem> {
    match v {
        None | Some(Value::Null) => Ok(Status::Running),
        Some(Value::String(s)) => match Status::parse(s) {
            Some(st @ (Status::Running | Status::Succeeded | Status::Failed)) => Ok(st),
            _ => Err(invalid(format!(
                "status must be running, succeeded or failed, got '{s}'"
            ))),
        },
        Some(other) => Err(invalid(format!("status must be a string, got {other}"))),
    }
}

/// An update's `error`: only with `failed`, which gets `worker_failed`
/// (and the message) when it names none.
fn update_error(
    v: Option<&Value>,
    status: Status,
    message: Option<&str>,
) -> Result<Option<JobError>, Problem> {
    let error = match v {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<JobError>(v.clone())
                .ok()
                .filter(|e| !e.code.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "error must be {{\"code\": \"…\", \"message\": \"…\"}}, got {v}"
                    ))
                })?,
        ),
    };
    if error.is_some() && status != Status::Failed {
        return Err(invalid("error is set only with status failed".into()));
    }
    Ok(match (status, error) {
        (Status::Failed, None) => Some(JobError {
            code: "worker_failed".into(),
            message: message
                .map(str::to_string)
                .unwrap_or_else(|| "the worker reported a failure".into()),
        }),
        (_, e) => e,
    })
}

/// The liveness deadline an update sets: `timeout` after `now`, rounded up
/// to a quarter of the timeout. Updates within one quarter store the same
/// deadline, so the deadline index (DynamoDB GSI2, whose key it is) is
/// rewritten about four times per timeout instead of on every update: each
/// rewrite costs two index writes. A silent worker is found between
/// `timeout` and 1¼ × `timeout` after its last report.
pub fn liveness_deadline(now: i64, timeout: i64) -> i64 {
    let step = (timeout / 4).max(1);
    let at = now + timeout;
    at + (step - at.rem_euclid(step)) % step
}

/// Checks the job message's worker token the request presents.
pub(super) fn verify_worker(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), Problem> {
    let Some(token) = presented_token(req, false) else {
        return Err(unauthorized(
            "workers present the job message's workerToken: Authorization: Bearer <workerToken>",
        ));
    };
    deps.tokens
        .verify_worker(id, &token, now.timestamp())
        .map_err(|e| token_problem(e, "worker"))
}

/// `POST /jobs/{id}/updates`: a worker reports progress (or a heartbeat).
pub(super) async fn update(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let now = deps.clock.now();
    verify_worker(deps, req, id, now)?;
    let body = body_bytes(req)?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Problem::new(
            413,
            "payload_too_large",
            format!(
                "an update is at most {MAX_MESSAGE_BYTES} bytes; this one is {}",
                body.len()
            ),
        ));
    }
    let parsed = parse_update(&body)?;
    let timeout = deps.heartbeat_timeout.as_secs() as i64;
    let deadline = (timeout > 0).then(|| liveness_deadline(now.timestamp(), timeout));
    match report(deps, id, parsed, deadline).await {
        Ok((job, lengths)) => {
            deps.metrics.worker_update();
            let mut answer = json!({
                "jobId": id,
                "seq": job.snapshot.seq,
                "status": job.snapshot.status.as_str(),
            });
            if let Some(lengths) = lengths {
                answer["streams"] = json!(lengths);
            }
            Ok(json_response(200, &answer))
        }
        Err(StoreError::Terminal { status, .. }) => {
            let mut p = Problem::new(
                409,
                "terminal",
                format!(
                    "job {id} already ended {}; stop working on it",
                    status.as_str()
                ),
            );
            if let Ok(Some(j)) = deps.store().get_job(id).await {
                p.extra
                    .push(("snapshot", deps.publisher.shown(&j).await.public_view()));
            }
            Err(p)
        }
        Err(e) => Err(store_problem(e)),
    }
}

/// Applies what a worker reported: its chunks (all or none) and its
/// update, pushed together, or a heartbeat when it sent neither. Every
/// report counts as the worker's: it meets a start deadline, and moves (or,
/// with liveness off, drops) the job's deadline. Returns the job, and the
/// lengths of the streams the request appended to.
async fn report(
    deps: &Deps,
    id: &str,
    parsed: Parsed,
    deadline: Option<i64>,
) -> Result<(JobRecord, Option<BTreeMap<String, u64>>), StoreError> {
    let asked = |lengths: BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        lengths
            .into_iter()
            .filter(|(name, _)| parsed.append.iter().any(|a| &a.stream == name))
            .collect()
    };
    match parsed.update {
        // Alone, the append is also the worker's report, in the same write.
        None if !parsed.append.is_empty() => {
            let out = deps
                .publisher
                .append(id, &parsed.append, Some(deadline))
                .await?;
            Ok((out.job, Some(asked(out.lengths))))
        }
        None => Ok((deps.store().heartbeat(id, deadline).await?, None)),
        Some(mut u) => {
            // An update that would be refused must not leave its chunks
            // behind, and one after the end is told so before its files
            // are looked up.
            if !parsed.append.is_empty() || !parsed.files.is_empty() {
                check_percent(deps, id, &u).await?;
            }
            u.files = resolve_files(deps, id, &parsed.files).await?;
            u.liveness = match deadline {
                Some(d) => Liveness::Refresh(d),
                None => Liveness::Reported,
            };
            let (job, _, appended) = deps
                .publisher
                .publish_appending(id, u, &parsed.append)
                .await?;
            Ok((job, appended.map(|out| asked(out.lengths))))
        }
    }
}

/// What storage holds under each name the update attaches; a name with
/// nothing uploaded refuses the whole update (`file_missing`).
async fn resolve_files(
    deps: &Deps,
    id: &str,
    names: &[String],
) -> Result<Vec<crate::files::JobFile>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let Some(links) = deps.publisher.files() else {
        return Err(StoreError::FileMissing {
            job_id: id.to_string(),
            name: names[0].clone(),
            why: "this deployment has no file storage".into(),
        });
    };
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let stored = links
            .files
            .stat(id, name)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let Some(stored) = stored else {
            return Err(StoreError::FileMissing {
                job_id: id.to_string(),
                name: name.clone(),
                why: "nothing was uploaded under this name".into(),
            });
        };
        files.push(crate::files::JobFile {
            name: name.clone(),
            size: stored.size,
            content_type: stored.content_type,
        });
    }
    Ok(files)
}

/// Refuses, before anything is written, an update whose percent would go
/// down (or that comes after the end).
async fn check_percent(deps: &Deps, id: &str, u: &JobUpdate) -> Result<(), StoreError> {
    let Some(job) = deps.store().get_job(id).await? else {
        return Err(StoreError::NotFound(id.to_string()));
    };
    if job.snapshot.status.is_terminal() {
        return Err(StoreError::Terminal {
            job_id: id.to_string(),
            status: job.snapshot.status,
        });
    }
    match crate::store::effective_percent(u) {
        Some(p) if p < job.snapshot.percent => Err(StoreError::PercentBackwards {
            job_id: id.to_string(),
            current: job.snapshot.percent,
            requested: p,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::liveness_deadline;

    #[test]
    fn liveness_deadlines_move_a_quarter_timeout_at_a_time() {
        // 300 s timeout: steps of 75 s.
        assert_eq!(liveness_deadline(1_000, 300), 1_350);
        assert_eq!(liveness_deadline(1_050, 300), 1_350);
        assert_eq!(liveness_deadline(1_051, 300), 1_425);
        for now in 0..1_000 {
            let d = liveness_deadline(now, 300);
            assert!(d >= now + 300 && d < now + 375, "{now} → {d}");
        }
        // Tiny timeouts still move every second.
        assert_eq!(liveness_deadline(10, 1), 11);
        assert_eq!(liveness_deadline(10, 3), 13);
    }
}
