//! Turning owners on from configuration, the same in `serve` and in the
//! Lambda functions: development tokens, or an issuer with its JWKS from a
//! file or a URL (default `ISSUER/.well-known/jwks.json`, where Cognito and
//! most OIDC issuers publish it).

use super::{DEV_AUDIENCE, DEV_ISSUER, DevKey, DevKeyError, JwksError, JwtVerifier, dev_key_path};
use std::path::PathBuf;
use std::time::Duration;

/// Why owners cannot be turned on as configured; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    #[error(transparent)]
    DevKey(#[from] DevKeyError),
    #[error("cannot read the JWKS {from}: {reason}")]
    Read { from: String, reason: String },
    #[error("the JWKS {from}: {error}")]
    Jwks { from: String, error: JwksError },
    #[error("an issuer needs an audience (the app client id your users' tokens are for)")]
    NoAudience,
    #[error("a token cannot be signed: {0}")]
    Sign(String),
    #[error("--sub must name a user")]
    NoSubject,
}

/// How owners are configured.
#[derive(Clone, Debug, Default)]
pub struct OwnersSetup {
    pub dev_tokens: bool,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
}

impl OwnersSetup {
    /// The verifier, or None when owners are off (said at warn: anyone can
    /// then create jobs and read any job by id).
    pub async fn load(&self) -> Result<Option<JwtVerifier>, OwnersError> {
        if self.dev_tokens {
            let path = dev_key_path();
            let key = DevKey::load_or_create(&path)?;
            let jwks = key.jwks().map_err(|e| OwnersError::Sign(e.to_string()))?;
            let verifier =
                JwtVerifier::from_jwks(DEV_ISSUER, DEV_AUDIENCE, &jwks).map_err(|error| {
                    OwnersError::Jwks {
                        from: path.display().to_string(),
                        error,
                    }
                })?;
            tracing::warn!(
                key = %path.display(),
                "owners are on with DEVELOPMENT tokens (jobcast token issue --sub NAME): for local development only, never for real users"
            );
            return Ok(Some(verifier));
        }
        let Some(issuer) = &self.issuer else {
            tracing::warn!(
                "owners are off: anyone who reaches this server can create jobs and read any job by id; set the JWT issuer, audience and keys before serving real users"
            );
            return Ok(None);
        };
        let audience = self.audience.as_deref().ok_or(OwnersError::NoAudience)?;
        let (jwks, from) = self.jwks(issuer).await?;
        let verifier =
            JwtVerifier::from_jwks(issuer, audience, &jwks).map_err(|error| OwnersError::Jwks {
                from: from.clone(),
                error,
            })?;
        tracing::info!(%issuer, %audience, keys = %from, "owners are on: jobs need a JWT of this issuer and audience");
        Ok(Some(verifier))
    }

    async fn jwks(&self, issuer: &str) -> Result<(String, String), OwnersError> {
        if let Some(path) = &self.jwks_file {
            let from = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| OwnersError::Read {
                from: from.clone(),
                reason: e.to_string(),
            })?;
            return Ok((text, from));
        }
        let url = self
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        let read = |e: reqwest::Error| OwnersError::Read {
            from: url.clone(),
            reason: crate::aws::causes(&e),
        };
        let text = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(read)?
            .text()
            .await
            .map_err(read)?;
        Ok((text, url))
    }
}

/// The development key's public JWKS (the key is made if there is none).
pub fn dev_jwks() -> Result<String, OwnersError> {
    let key = DevKey::load_or_create(&dev_key_path())?;
    key.jwks().map_err(|e| OwnersError::Sign(e.to_string()))
}

/// A development token for `sub`, valid for `ttl`, and where its key is.
pub fn issue_dev_token(sub: &str, ttl: Duration) -> Result<(String, PathBuf), OwnersError> {
    if sub.trim().is_empty() {
        return Err(OwnersError::NoSubject);
    }
    let path = dev_key_path();
    let key = DevKey::load_or_create(&path)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let token = key
        .sign(DEV_ISSUER, DEV_AUDIENCE, sub, now, ttl)
        .map_err(|e| OwnersError::Sign(e.to_string()))?;
    Ok((token, path))
}
