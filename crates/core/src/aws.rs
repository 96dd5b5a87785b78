//! Building AWS SDK clients the same way everywhere: the standard
//! configuration chain (environment, profiles, `AWS_ENDPOINT_URL_*`), rustls
//! with ring for HTTPS, and a default region so local endpoints work without
//! one.

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::{Builder, tls};

/// Region used when none is configured (only local endpoints work without one).
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration from the standard sources.
pub async fn sdk_config() -> SdkConfig {
    let http_client = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    // Environment, then profile, then the fallback: no instance-metadata
    // lookup, which only slows local runs down (Lambda and ECS set AWS_REGION).
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .or_else(Region::new(FALLBACK_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(region);
    if local_only_without_credentials() {
        // DynamoDB Local and `jobcast serve` accept any credentials; without
        // this, the default chain would end at instance metadata and fail.
        tracing::info!(
            "no AWS credentials configured and every endpoint is local: using dummy ones"
        );
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "local",
            "local",
            None,
            None,
            "jobcast-local",
        ));
    }
    loader.load().await
}

/// True when no credential source is configured and every endpoint override
/// in the environment points at this machine.
fn local_only_without_credentials() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let has_credentials = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| set(k))
        || std::env::var_os("HOME").is_some_and(|h| {
            let aws = std::path::Path::new(&h).join(".aws");
            aws.join("credentials").exists() || aws.join("config").exists()
        });
    let endpoints: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
        .map(|(_, v)| v)
        .collect();
    !has_credentials && !endpoints.is_empty() && endpoints.iter().all(|e| is_loopback_url(e))
}

/// A DynamoDB client from the shared configuration.
pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// True for URLs whose host is `localhost` or a loopback address.
pub fn is_loopback_url(url: &str) -> bool {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One line describing an SDK failure for logs and CLI messages: the
/// service's error code and message, or why the endpoint could not be
/// reached, with the chain of causes (never a debug dump).
pub fn error_line<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match err.code() {
                Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
                // An answer without an error code (a proxy, an emulator's
                // crash page): its status is what there is to say.
                None => format!(
                    "HTTP {} without an error code{}",
                    se.raw().status().as_u16(),
                    err.message().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            }
        }
        SdkError::DispatchFailure(_) => format!("cannot reach the endpoint: {}", causes(e)),
        SdkError::TimeoutError(_) => "the endpoint did not answer in time".into(),
        _ => causes(e),
    }
}

pub use crate::protocol::causes;
