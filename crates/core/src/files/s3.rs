//! Files in an S3 bucket (or any S3-compatible endpoint), under
//! `jobs/{jobId}/{name}`: presigned PUT and GET URLs (SigV4 query
//! signing, no request made) and `HeadObject` to see what an upload
//! stored.

use super::{Files, FilesError, Stored, UPLOAD_URL_TTL, UploadUrl};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The prefix every job file's key starts with (the template's
/// permissions name it).
pub const KEY_PREFIX: &str = "jobs/";

/// A bucket of job files.
#[derive(Clone)]
pub struct S3Files {
    client: Client,
    bucket: String,
}

fn key(job_id: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{job_id}/{name}")
}

fn failed<E, R>(e: SdkError<E, R>) -> FilesError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            match code.as_str() {
                "NoSuchBucket"
                | "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch" => FilesError::Refused(format!("{code}: {message}")),
                _ => FilesError::Unavailable(format!("{code}: {message}")),
            }
        }
        _ => FilesError::Unavailable(crate::aws::causes(&e)),
    }
}

fn presigning(now: DateTime<Utc>, ttl: Duration) -> Result<PresigningConfig, FilesError> {
    PresigningConfig::builder()
        .start_time(SystemTime::from(now))
        .expires_in(ttl)
        .build()
        .map_err(|e| FilesError::Refused(format!("cannot presign for {ttl:?}: {e}")))
}

impl S3Files {
    /// Files in `bucket`. With an endpoint override (in `config`, or
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`: an S3-compatible
    /// server), keys go in the path, as such servers expect.
    pub fn new(config: &aws_config::SdkConfig, bucket: &str) -> S3Files {
        let overridden = config.endpoint_url().is_some()
            || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(overridden)
            .build();
        S3Files {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl Files for S3Files {
    async fn upload_url(
        &self,
        job_id: &str,
        name: &str,
        content_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<UploadUrl, FilesError> {
        let signed = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key(job_id, name))
            .set_content_type(content_type.map(str::to_owned))
            .presigned(presigning(now, UPLOAD_URL_TTL)?)
            .await
            .map_err(failed)?;
        // The headers the signature covers, but `host`, which any HTTP
        // client sends by itself.
        let headers: BTreeMap<String, String> = signed
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(UploadUrl {
            name: name.to_string(),
            upload_url: signed.uri().to_string(),
            method: "PUT",
            headers,
            expires_at: now + chrono::Duration::from_std(UPLOAD_URL_TTL).unwrap_or_default(),
        })
    }

    async fn stat(&self, job_id: &str, name: &str) -> Result<Option<Stored>, FilesError> {
        let answer = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key(job_id, name))
            .send()
            .await;
        match answer {
            Ok(out) => Ok(Some(Stored {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                content_type: out.content_type().map(str::to_owned),
            })),
            Err(SdkError::ServiceError(se)) if se.err().is_not_found() => Ok(None),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    async fn download_url(
        &self,
        job_id: &str,
        name: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, FilesError> {
        let signed = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key(job_id, name))
            .response_content_disposition(format!("attachment; filename=\"{name}\""))
            .presigned(presigning(now, ttl)?)
            .await
            .map_err(failed)?;
        Ok(signed.uri().to_string())
    }
}
