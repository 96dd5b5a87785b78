//! `POST /jobs/{id}/files`: a worker asks where to upload one of the job's
//! files (CONTRACT section 11). The answer is a presigned URL; the bytes
//! never pass through here.

use super::problem::{Problem, json_object, json_response, store_problem};
use super::updates::verify_worker;
use super::{Deps, body_bytes};
use crate::files::{FilesError, MAX_FILE_BYTES, valid_name};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::Value;

/// Fields an upload request may carry.
const FIELDS: [&str; 3] = ["name", "contentType", "size"];

/// Longest content type accepted.
const MAX_CONTENT_TYPE: usize = 255;

fn invalid(m: String) -> Problem {
    Problem::new(422, "invalid_file", m)
}

/// An upload request: the name, its content type and announced size.
fn parse(body: &[u8]) -> Result<(String, Option<String>, u64), Problem> {
    let obj = json_object(body, &FIELDS, "an upload request", invalid)?;
    let name = match obj.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(invalid(format!(
                "name '{n}' must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}"
            )));
        }
        None | Some(Value::Null) => return Err(invalid("name is required".into())),
        Some(other) => return Err(invalid(format!("name must be a string, got {other}"))),
    };
    let content_type = match obj.get("contentType") {
        None | Some(Value::Null) => None,
        Some(Value::String(t))
            if !t.is_empty()
                && t.len() <= MAX_CONTENT_TYPE
                && t.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Some(t.clone())
        }
        Some(other) => {
            return Err(invalid(format!(
                "contentType must be a printable ASCII string of 1 to {MAX_CONTENT_TYPE} characters, got {other}"
            )));
        }
    };
    let size = match obj.get("size") {
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_FILE_BYTES => n,
            _ => {
                return Err(invalid(format!(
                    "size must be an integer from 0 to {MAX_FILE_BYTES} (5 GiB), got {v}"
                )));
            }
        },
        None => return Err(invalid("size is required (bytes, 0 to 5 GiB)".into())),
    };
    Ok((name, content_type, size))
}

/// Answers `201` with where and how to upload, after recording the name
/// against the job's limit of distinct files.
pub(super) async fn presign(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
) -> Result<ApiGatewayV2httpResponse, Problem> {
    let now = deps.clock.now();
    verify_worker(deps, req, id, now)?;
    let (name, content_type, _size) = parse(&body_bytes(req)?)?;
    let Some(links) = deps.publisher.files() else {
        return Err(Problem::new(
            501,
            "files_unavailable",
            "this deployment has no file storage (serve --files-dir or --files-bucket; the template's bucket in AWS)",
        ));
    };
    deps.store()
        .record_upload(id, &name)
        .await
        .map_err(store_problem)?;
    let upload = links
        .files
        .upload_url(id, &name, content_type.as_deref(), now)
        .await
        .map_err(|e| match e {
            FilesError::Unavailable(m) => {
                let mut p = Problem::new(503, "unavailable", m);
                p.headers.push((http::header::RETRY_AFTER, "1".into()));
                p
            }
            FilesError::Refused(m) => Problem::new(500, "files_refused", m),
        })?;
    Ok(json_response(
        201,
        &serde_json::to_value(&upload).unwrap_or_default(),
    ))
}
