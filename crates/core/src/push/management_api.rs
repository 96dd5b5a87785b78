//! The `Pusher` over the API Gateway Management API, through the AWS SDK.
//! Works against AWS and against `jobcast serve`'s own `@connections`.

use super::{ConnectionInfo, Delivered, Paced, Parcel, Payload, PushError, Pusher};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use chrono::{DateTime, TimeZone, Utc};

/// Posts through `@connections` at one endpoint
/// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` in AWS).
#[derive(Clone)]
pub struct ManagementApiPusher {
    client: Client,
    paced: Paced,
}

fn map_error<E, R>(e: SdkError<E, R>) -> PushError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            match code.as_str() {
                "GoneException" => PushError::Gone,
                "PayloadTooLargeException" => PushError::PayloadTooLarge,
                "LimitExceededException" => PushError::LimitExceeded,
                "ForbiddenException" => PushError::Forbidden(message),
                "BadRequestException" => PushError::BadRequest(message),
                _ => PushError::Unavailable(format!("{code}: {message}")),
            }
        }
        SdkError::DispatchFailure(_) if super::connection_refused(&e) => {
            PushError::Refused(format!(
                "could not reach the management endpoint: {}",
                crate::aws::causes(&e)
            ))
        }
        SdkError::DispatchFailure(_) => PushError::Unavailable(format!(
            "could not reach the management endpoint: {}",
            crate::aws::causes(&e)
        )),
        SdkError::TimeoutError(_) => {
            PushError::Unavailable("the management endpoint did not answer in time".into())
        }
        SdkError::ResponseError(_) => PushError::Unavailable(format!(
            "unreadable answer from the management endpoint: {}",
            crate::aws::causes(&e)
        )),
        other => PushError::Unavailable(crate::aws::causes(&other)),
    }
}

fn to_chrono(t: Option<&aws_sdk_apigatewaymanagement::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| Utc.timestamp_millis_opt(t.to_millis().ok()?).single())
        .unwrap_or_else(Utc::now)
}

impl ManagementApiPusher {
    /// A pusher for `endpoint`. The SDK's own retries are off: the publisher
    /// retries 429 and 5xx itself, with backoff, and counts them.
    pub fn new(config: &SdkConfig, endpoint: &str) -> ManagementApiPusher {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .build();
        ManagementApiPusher {
            client: Client::from_conf(conf),
            paced: Paced::default(),
        }
    }

    /// The same pusher, posting batches as `paced` plans (usually shared by
    /// every pusher of one host).
    pub fn paced(mut self, paced: Paced) -> ManagementApiPusher {
        self.paced = paced;
        self
    }
}

#[async_trait]
impl Pusher for ManagementApiPusher {
    async fn deliver(&self, parcels: &[Parcel]) -> Delivered {
        self.paced
            .deliver(parcels, |conn, payload| async move {
                self.post(&conn, payload).await
            })
            .await
    }

    async fn post(&self, connection_id: &str, payload: Payload) -> Result<(), PushError> {
        let data = match payload {
            Payload::Text(t) => Blob::new(t.as_bytes().to_vec()),
            Payload::Binary(b) => Blob::new(b.to_vec()),
        };
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(data)
            .send()
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    async fn get(&self, connection_id: &str) -> Result<ConnectionInfo, PushError> {
        let out = self
            .client
            .get_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map_err(map_error)?;
        Ok(ConnectionInfo {
            connected_at: to_chrono(out.connected_at()),
            last_active_at: to_chrono(out.last_active_at()),
            source_ip: out
                .identity()
                .and_then(|i| i.source_ip())
                .unwrap_or_default()
                .to_string(),
            user_agent: out
                .identity()
                .and_then(|i| i.user_agent())
                .map(str::to_owned),
        })
    }

    async fn delete(&self, connection_id: &str) -> Result<(), PushError> {
        self.client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map(|_| ())
            .map_err(map_error)
    }
}
