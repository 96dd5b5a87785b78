//! Files in a directory that `serve` stores and serves itself, through URLs
//! it signs: `{base}/files/{jobId}/{name}?op=get|put&expires=…&sig=…`. The
//! signature (HMAC-SHA256 under a key derived from the token secret) binds
//! the operation, the job, the name, the expiry and, for an upload, its
//! content type, so a URL works for exactly one thing until it expires.
//!
//! Layout: `{dir}/{jobId}/{name}` holds a file's bytes and
//! `{dir}/{jobId}/.{name}.type` its content type. An upload streams into
//! `{dir}/{jobId}/.upload-{random}` and is renamed into place only once
//! every byte arrived, so a partial upload never shows as a file. Names
//! never start with a dot (see [`super::valid_name`]), so these can't meet.

use super::{Files, FilesError, Stored, UPLOAD_URL_TTL, UploadUrl};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of an upload gathered before they are written.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Why a signed URL was refused: one answer for every reason, so a caller
/// learns nothing of whether the file exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this URL is expired, altered, or not for this file and method")]
pub struct UrlRefused;

/// What a valid URL allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// For an upload: the content type it must carry (and is stored with).
    pub content_type: Option<String>,
}

/// A directory of job files with URLs signed by this process.
pub struct LocalFiles {
    dir: PathBuf,
    base: String,
    key: Vec<u8>,
}

/// True for a job id that is safe as one path segment.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Decodes a percent-encoded query value; `None` when it is not UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

impl LocalFiles {
    /// Files kept under `dir`, reached at `base` (serve's public URL),
    /// signed with `key`.
    pub fn new(dir: impl Into<PathBuf>, base: &str, key: &[u8]) -> std::io::Result<LocalFiles> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(LocalFiles {
            dir,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_vec(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The MAC of one URL: its operation, job, name, expiry and (uploads)
    /// content type.
    fn mac(&self, op: &str, job_id: &str, name: &str, expires: i64, ctype: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [op, job_id, name, &expires.to_string(), ctype] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    fn url(&self, op: &str, job_id: &str, name: &str, expires: i64, ctype: Option<&str>) -> String {
        let tag = self.mac(op, job_id, name, expires, ctype.unwrap_or(""));
        let sig = URL_SAFE_NO_PAD.encode(tag.finalize().into_bytes());
        let typed = ctype.map_or(String::new(), |t| format!("&type={}", encode(t)));
        format!(
            "{}/files/{job_id}/{name}?op={op}&expires={expires}{typed}&sig={sig}",
            self.base
        )
    }

    /// Checks a URL's query for `op` (`get` or `put`) on the job's `name`
    /// at `now`.
    pub fn check(
        &self,
        op: &str,
        job_id: &str,
        name: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<Signed, UrlRefused> {
        if !safe_segment(job_id) || !super::valid_name(name) {
            return Err(UrlRefused);
        }
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if fields.insert(k, decode(v).ok_or(UrlRefused)?).is_some() {
                return Err(UrlRefused);
            }
        }
        if fields.get("op").map(String::as_str) != Some(op) {
            return Err(UrlRefused);
        }
        let expires: i64 = fields
            .get("expires")
            .and_then(|e| e.parse().ok())
            .ok_or(UrlRefused)?;
        if now.timestamp() > expires {
            return Err(UrlRefused);
        }
        let ctype = fields.get("type").cloned();
        let sig = fields
            .get("sig")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or(UrlRefused)?;
        self.mac(op, job_id, name, expires, ctype.as_deref().unwrap_or(""))
            .verify_slice(&sig)
            .map_err(|_| UrlRefused)?;
        Ok(Signed {
            content_type: ctype,
        })
    }

    /// Where the job's `name` is kept (`None` for an id or name that could
    /// leave the directory).
    pub fn path(&self, job_id: &str, name: &str) -> Option<PathBuf> {
        (safe_segment(job_id) && super::valid_name(name)).then(|| self.dir.join(job_id).join(name))
    }

    fn type_path(&self, job_id: &str, name: &str) -> PathBuf {
        self.dir.join(job_id).join(format!(".{name}.type"))
    }

    /// The content type an upload stored with the file, if any.
    pub async fn content_type(&self, job_id: &str, name: &str) -> Option<String> {
        tokio::fs::read_to_string(self.type_path(job_id, name))
            .await
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// Stores an upload's bytes as they arrive (never the whole file in
    /// memory), at most `limit` of them; the file appears only once the
    /// body ended. Returns the size stored.
    pub async fn receive<S, E>(
        &self,
        job_id: &str,
        name: &str,
        content_type: Option<&str>,
        limit: u64,
        mut body: S,
    ) -> Result<u64, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let target = self.path(job_id, name).ok_or(ReceiveError::Refused)?;
        let folder = self.dir.join(job_id);
        tokio::fs::create_dir_all(&folder).await?;
        let temp = folder.join(format!(".upload-{:016x}", rand::random::<u64>()));
        // Writes gathered to a megabyte: one trip to the blocking pool per
        // megabyte, not per network read.
        let mut file = tokio::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            tokio::fs::File::create(&temp).await?,
        );
        let written = async {
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ReceiveError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(ReceiveError::TooLarge(limit));
                }
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.get_ref().sync_data().await?;
            Ok(size)
        }
        .await;
        drop(file);
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        let kept = async {
            tokio::fs::write(self.type_path(job_id, name), content_type.unwrap_or("")).await?;
            tokio::fs::rename(&temp, &target).await
        }
        .await;
        if let Err(e) = kept {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e.into());
        }
        Ok(size)
    }

    /// Removes every file of a job (its retention ended).
    pub async fn remove_job(&self, job_id: &str) -> std::io::Result<()> {
        if !safe_segment(job_id) {
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.dir.join(job_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload ended early: {0}")]
    Body(String),
    #[error("this job or name cannot be stored")]
    Refused,
    #[error("could not store the upload: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
impl Files for LocalFiles {
    async fn upload_url(
        &self,
        job_id: &str,
        name: &str,
        content_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<UploadUrl, FilesError> {
        if self.path(job_id, name).is_none() {
            return Err(FilesError::Refused(format!(
                "{job_id}/{name} is not a storable name"
            )));
        }
        let expires = now.timestamp() + UPLOAD_URL_TTL.as_secs() as i64;
        let mut headers = BTreeMap::new();
        if let Some(t) = content_type {
            headers.insert("Content-Type".to_string(), t.to_string());
        }
        Ok(UploadUrl {
            name: name.to_string(),
            upload_url: self.url("put", job_id, name, expires, content_type),
            method: "PUT",
            headers,
            expires_at: DateTime::from_timestamp(expires, 0).unwrap_or(now),
        })
    }

    async fn stat(&self, job_id: &str, name: &str) -> Result<Option<Stored>, FilesError> {
        let Some(path) = self.path(job_id, name) else {
            return Ok(None);
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(Stored {
                size: m.len(),
                content_type: self.content_type(job_id, name).await,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FilesError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    async fn download_url(
        &self,
        job_id: &str,
        name: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, FilesError> {
        let expires = now.timestamp() + ttl.as_secs() as i64;
        Ok(self.url("get", job_id, name, expires, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> LocalFiles {
        let dir =
            std::env::temp_dir().join(format!("jobcast-files-unit-{:x}", rand::random::<u64>()));
        LocalFiles::new(
            dir,
            "http://127.0.0.1:8080/",
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn query(url: &str) -> &str {
        url.split_once('?').map_or("", |(_, q)| q)
    }

    #[tokio::test]
    async fn a_url_works_for_one_operation_job_and_name_until_it_expires() {
        let f = files();
        let now = Utc::now();
        let get = f
            .download_url("job_1", "a.csv", Duration::from_secs(60), now)
            .await
            .unwrap_or_default();
        assert!(get.starts_with("http://127.0.0.1:8080/files/job_1/a.csv?op=get&"));
        assert!(f.check("get", "job_1", "a.csv", query(&get), now).is_ok());
        assert_eq!(
            f.check("put", "job_1", "a.csv", query(&get), now),
            Err(UrlRefused)
        );
        assert_eq!(
            f.check("get", "job_2", "a.csv", query(&get), now),
            Err(UrlRefused)
        );
        assert_eq!(
            f.check("get", "job_1", "b.csv", query(&get), now),
            Err(UrlRefused)
        );
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(
            f.check("get", "job_1", "a.csv", query(&get), later),
            Err(UrlRefused)
        );
        let tampered = query(&get).replace("expires=", "expires=9");
        assert_eq!(
            f.check("get", "job_1", "a.csv", &tampered, now),
            Err(UrlRefused)
        );

        let put = f
            .upload_url("job_1", "a.csv", Some("text/csv; charset=utf-8"), now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let signed = f.check("put", "job_1", "a.csv", query(&put.upload_url), now);
        assert_eq!(
            signed,
            Ok(Signed {
                content_type: Some("text/csv; charset=utf-8".into())
            })
        );
        assert_eq!(
            f.check("get", "job_1", "a.csv", query(&put.upload_url), now),
            Err(UrlRefused)
        );
        let retyped = query(&put.upload_url).replace("type=text", "type=image");
        assert_eq!(
            f.check("put", "job_1", "a.csv", &retyped, now),
            Err(UrlRefused)
        );
        let _ = std::fs::remove_dir_all(f.dir());
    }

    #[tokio::test]
    async fn an_upload_shows_only_once_complete() {
        let f = files();
        let ok: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"a,b\n")),
            Ok(Bytes::from_static(b"1,2\n")),
        ];
        let size = f
            .receive(
                "job_1",
                "a.csv",
                Some("text/csv"),
                100,
                futures_util::stream::iter(ok),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size, 8);
        let stored = f
            .stat("job_1", "a.csv")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            stored,
            Some(Stored {
                size: 8,
                content_type: Some("text/csv".into())
            })
        );
        let broken: Vec<Result<Bytes, String>> =
            vec![Ok(Bytes::from_static(b"part")), Err("reset".into())];
        assert!(
            f.receive(
                "job_1",
                "b.csv",
                None,
                100,
                futures_util::stream::iter(broken)
            )
            .await
            .is_err()
        );
        assert_eq!(f.stat("job_1", "b.csv").await, Ok(None));
        let big: Vec<Result<Bytes, String>> = vec![Ok(Bytes::from(vec![0u8; 101]))];
        assert!(matches!(
            f.receive("job_1", "c.bin", None, 100, futures_util::stream::iter(big))
                .await,
            Err(ReceiveError::TooLarge(100))
        ));
        assert_eq!(f.stat("job_1", "c.bin").await, Ok(None));
        // Nothing but the complete file is left in the job's folder.
        let mut left = Vec::new();
        let mut entries = tokio::fs::read_dir(f.dir().join("job_1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        while let Ok(Some(e)) = entries.next_entry().await {
            left.push(e.file_name().to_string_lossy().to_string());
        }
        left.sort();
        assert_eq!(left, [".a.csv.type", "a.csv"]);
        assert_eq!(f.path("..", "x"), None);
        let _ = std::fs::remove_dir_all(f.dir());
    }
}
