//! A job's files (CONTRACT section 11): ask jobcast where to upload, send
//! the bytes there (streamed from a path, never read whole), attach them
//! to an update by name.

use super::{Job, ReportError};
use serde_json::{Value, json};
use std::path::PathBuf;

/// What to upload: bytes in memory, or a file streamed from disk.
#[derive(Clone, Debug)]
pub enum Upload {
    /// These bytes.
    Bytes(bytes::Bytes),
    /// The file at this path, read a piece at a time.
    Path(PathBuf),
}

impl From<Vec<u8>> for Upload {
    fn from(b: Vec<u8>) -> Upload {
        Upload::Bytes(b.into())
    }
}

impl From<&'static [u8]> for Upload {
    fn from(b: &'static [u8]) -> Upload {
        Upload::Bytes(bytes::Bytes::from_static(b))
    }
}

impl From<PathBuf> for Upload {
    fn from(p: PathBuf) -> Upload {
        Upload::Path(p)
    }
}

impl From<&std::path::Path> for Upload {
    fn from(p: &std::path::Path) -> Upload {
        Upload::Path(p.to_path_buf())
    }
}

/// A file uploaded for the job, ready to attach by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The name to attach it by.
    pub name: String,
    /// The bytes sent.
    pub size: u64,
    /// The content type it was sent with.
    pub content_type: String,
}

impl Job {
    /// Where this job's uploads are asked for: beside its update URL.
    pub fn files_url(&self) -> String {
        let base = self.update_url.trim_end_matches('/');
        format!("{}/files", base.strip_suffix("/updates").unwrap_or(base))
    }

    /// Uploads one of the job's files: asks jobcast where, then sends the
    /// bytes there, both retried like an update. Attach it with
    /// [`Job::succeed_with_files`] (or any update's `files`).
    pub async fn upload(
        &self,
        name: &str,
        data: impl Into<Upload>,
        content_type: Option<&str>,
    ) -> Result<Uploaded, ReportError> {
        let data = data.into();
        let size = match &data {
            Upload::Bytes(b) => b.len() as u64,
            Upload::Path(p) => tokio::fs::metadata(p)
                .await
                .map_err(|e| ReportError::BadChunk(format!("cannot upload {}: {e}", p.display())))?
                .len(),
        };
        let content_type = content_type.unwrap_or("application/octet-stream");
        let core = &self.core;
        let ask = json!({"name": name, "contentType": content_type, "size": size}).to_string();
        let files_url = self.files_url();
        let answer = core
            .call(|| async {
                Ok(core
                    .traced(core.http.post(&files_url))
                    .bearer_auth(&core.token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(ask.clone()))
            })
            .await?;
        let url = answer["uploadUrl"].as_str().unwrap_or_default().to_string();
        let method =
            reqwest::Method::from_bytes(answer["method"].as_str().unwrap_or("PUT").as_bytes())
                .unwrap_or(reqwest::Method::PUT);
        let headers: Vec<(String, String)> = answer["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        core.call(|| async {
            let body = match &data {
                Upload::Bytes(b) => reqwest::Body::from(b.clone()),
                Upload::Path(p) => {
                    let file = tokio::fs::File::open(p).await.map_err(|e| {
                        ReportError::BadChunk(format!("cannot upload {}: {e}", p.display()))
                    })?;
                    // Large reads: each is a trip to the blocking pool.
                    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                        file,
                        256 * 1024,
                    ))
                }
            };
            let mut req = core
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::CONTENT_LENGTH, size);
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            Ok(req.body(body))
        })
        .await?;
        Ok(Uploaded {
            name: name.to_string(),
            size,
            content_type: content_type.to_string(),
        })
    }

    /// Ends the job `succeeded`, attaching uploaded files by name.
    pub async fn succeed_with_files(
        &self,
        result: Option<Value>,
        message: Option<&str>,
        files: &[&str],
    ) -> Result<super::Accepted, ReportError> {
        let mut body = serde_json::Map::new();
        body.insert("status".into(), json!("succeeded"));
        if let Some(r) = result {
            body.insert("result".into(), r);
        }
        if let Some(m) = message {
            body.insert("message".into(), json!(m));
        }
        if !files.is_empty() {
            body.insert("files".into(), json!(files));
        }
        self.core.held().take();
        self.core.send(Value::Object(body)).await
    }
}
