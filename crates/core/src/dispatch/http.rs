//! `http(s)://…`: a `POST` of the job message, signed like webhooks
//! (`Jobcast-Signature`), so the worker can tell it came from jobcast.
//! The URL is the operator's own configuration, so unlike `callbackUrl`
//! it may point anywhere, private networks included.

use super::{Deliver, DispatchError, JobMessage};
use crate::webhook::{SIGNATURE_HEADER, sign};
use async_trait::async_trait;

pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl HttpTarget {
    pub fn new(url: String, secret: &[u8]) -> Result<HttpTarget, super::KindError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("jobcast-dispatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| super::KindError::HttpClient(e.to_string()))?;
        Ok(HttpTarget {
            client,
            url,
            secret: secret.to_vec(),
        })
    }
}

#[async_trait]
impl Deliver for HttpTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let t = chrono::Utc::now().timestamp();
        let res = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, t, body.as_bytes()))
            .header("Jobcast-Job-Id", &message.job_id)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| DispatchError::Retryable(crate::aws::causes(&e)))?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DispatchError::Retryable(format!(
                "{} answered {status}",
                self.url
            )))
        }
    }
}
