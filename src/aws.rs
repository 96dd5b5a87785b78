//! Building AWS SDK clients the same way everywhere: the standard
//! configuration chain (environment, profiles, `AWS_ENDPOINT_URL_*`), rustls
//! with ring for HTTPS, and a default region so local endpoints work without
//! one.

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
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await;
    if config.region().is_some() {
        return config;
    }
    config
        .into_builder()
        .region(Region::new(FALLBACK_REGION))
        .build()
}

/// A DynamoDB client from the shared configuration.
pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}
