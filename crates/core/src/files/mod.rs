//! Files: results larger than a message (CONTRACT section 11). jobcast never
//! carries a file's bytes through a handler or a WebSocket: a worker
//! uploads straight to storage with a URL presigned here, and clients
//! download with a URL presigned when a snapshot is sent or read. The
//! seam has two implementations with the same rules, run through one test
//! suite: an S3 bucket ([`S3Files`]) and a directory that `serve` stores
//! and serves itself ([`LocalFiles`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

mod local;
mod s3;

pub use crate::protocol::{JobFile, ShownFile};
pub use local::{LocalFiles, ReceiveError, Signed, UrlRefused};
pub use s3::S3Files;

pub use crate::protocol::MAX_FILES;
/// Largest file one upload may announce: 5 GiB, S3's limit for one PUT.
pub const MAX_FILE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// How long an upload URL lives, whatever the download TTL.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(3600);
/// How long a download URL lives unless configured (`--file-url-ttl`).
pub const DEFAULT_DOWNLOAD_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest download TTL accepted: SigV4's limit for a presigned URL.
pub const MAX_DOWNLOAD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// True for a file name of the contract's form: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Where and how a worker sends a file's bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadUrl {
    pub name: String,
    pub upload_url: String,
    pub method: &'static str,
    /// Headers the upload must carry exactly (they are signed).
    pub headers: BTreeMap<String, String>,
    #[serde(serialize_with = "crate::protocol::ser_rfc3339")]
    pub expires_at: DateTime<Utc>,
}

/// What is stored under a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub content_type: Option<String>,
}

/// Why storage could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    /// Storage is unreachable or failed: worth retrying.
    #[error("file storage unavailable: {0}")]
    Unavailable(String),
    /// Storage refused for good (a missing bucket, no permission).
    #[error("file storage refused: {0}")]
    Refused(String),
}

/// Where a job's files live.
#[async_trait]
pub trait Files: Send + Sync + 'static {
    /// A URL the worker sends `name`'s bytes to, valid for
    /// [`UPLOAD_URL_TTL`]; with `content_type`, the upload must carry it.
    async fn upload_url(
        &self,
        job_id: &str,
        name: &str,
        content_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<UploadUrl, FilesError>;
    /// What is stored under `name` for the job; `None` when nothing is.
    async fn stat(&self, job_id: &str, name: &str) -> Result<Option<Stored>, FilesError>;
    /// A URL that downloads the job's `name`, valid for `ttl`.
    async fn download_url(
        &self,
        job_id: &str,
        name: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, FilesError>;
}

/// Where a host's files are and how long the download URLs it shows
/// live: what every place that shows a snapshot needs.
#[derive(Clone)]
pub struct FileLinks {
    pub files: std::sync::Arc<dyn Files>,
    /// Download URL lifetime (`--file-url-ttl`).
    pub ttl: Duration,
}

impl FileLinks {
    pub fn new(files: std::sync::Arc<dyn Files>, ttl: Duration) -> FileLinks {
        FileLinks { files, ttl }
    }

    /// Fills `job`'s snapshot with its attached files and download URLs
    /// presigned now.
    pub async fn show(&self, job: &mut crate::store::JobRecord, now: DateTime<Utc>) {
        if job.files.is_empty() {
            return;
        }
        let id = job.snapshot.job_id.clone();
        job.snapshot.files = show(self.files.as_ref(), &id, &job.files, self.ttl, now).await;
    }

    /// `job` as shown now: borrowed when it has no files to show.
    pub async fn shown<'a>(
        links: Option<&FileLinks>,
        job: &'a crate::store::JobRecord,
        now: DateTime<Utc>,
    ) -> std::borrow::Cow<'a, crate::store::JobRecord> {
        match links {
            Some(l) if !job.files.is_empty() => {
                let mut owned = job.clone();
                l.show(&mut owned, now).await;
                std::borrow::Cow::Owned(owned)
            }
            _ => std::borrow::Cow::Borrowed(job),
        }
    }
}

/// The files a snapshot shows, with download URLs presigned now for
/// `ttl`. A file whose URL cannot be made is left out (and logged): a
/// snapshot is never refused for it.
pub async fn show(
    files: &dyn Files,
    job_id: &str,
    attached: &[JobFile],
    ttl: Duration,
    now: DateTime<Utc>,
) -> Vec<ShownFile> {
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
    let mut shown = Vec::with_capacity(attached.len());
    for f in attached {
        match files.download_url(job_id, &f.name, ttl, now).await {
            Ok(url) => shown.push(ShownFile {
                name: f.name.clone(),
                size: f.size,
                content_type: f.content_type.clone(),
                url,
                expires_at,
            }),
            Err(e) => {
                tracing::warn!(job_id, file = %f.name, error = %e, "could not presign a download URL")
            }
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        for good in ["report.csv", "a", "A-1_b.tar.gz", &"x".repeat(128)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "é.csv",
            &"x".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
