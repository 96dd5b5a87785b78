//! Who is calling: a JWT from the user's own identity provider (Cognito,
//! Auth0, any OIDC issuer), verified against the issuer's JWKS. RS256 and
//! ES256 only; `iss`, `aud`, `exp` and `sub` required, `nbf` honoured, with
//! [`CLOCK_SKEW`] of leeway. jobcast issues no identity tokens for real
//! users: [`DevKey`] signs development tokens, and says so.

pub mod ring_crypto;
mod setup;

pub use setup::{OwnersError, OwnersSetup, dev_jwks, issue_dev_token};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How far clocks may disagree on `exp` and `nbf`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The caller a valid token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the job owner.
    pub sub: String,
}

/// Why a token is refused (the reason goes into the 403 problem).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not accepted; tokens are signed RS256 or ES256")]
    Algorithm(String),
    #[error("no key '{0}' in the issuer's JWKS")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
}

/// Why a JWKS cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS ({{\"keys\": [...]}}): {0}")]
    Parse(String),
    #[error("the JWKS has no RS256 or ES256 (P-256) signing key")]
    NoUsableKey,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens of one issuer for one audience.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: Vec<Key>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

impl JwtVerifier {
    /// From the issuer's JWKS document; keys of other types or uses are
    /// skipped.
    pub fn from_jwks(issuer: &str, audience: &str, jwks: &str) -> Result<Self, JwksError> {
        ring_crypto::install();
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| JwksError::Parse(e.to_string()))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    _ => return None,
                };
                let declared = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
                if declared.is_some_and(|d| d != format!("{alg:?}")) {
                    return None;
                }
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(JwtVerifier {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            keys,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The identity a token names, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match header_alg(token) {
            Some(alg) if alg != "RS256" && alg != "ES256" => TokenRefusal::Algorithm(alg),
            _ => TokenRefusal::Malformed(e.to_string()),
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenRefusal::Algorithm(format!("{:?}", header.alg)));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| TokenRefusal::UnknownKey(kid.clone()))?,
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == header.alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => k,
                    _ => return Err(TokenRefusal::UnknownKey("(no kid)".into())),
                }
            }
        };
        // A key is used only with its own algorithm (no RS/ES/HS confusion).
        if key.alg != header.alg {
            return Err(TokenRefusal::Algorithm(format!("{:?}", header.alg)));
        }
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = CLOCK_SKEW.as_secs();
        v.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRefusal::Expired,
                ErrorKind::ImmatureSignature => TokenRefusal::NotYetValid,
                ErrorKind::InvalidIssuer => TokenRefusal::WrongIssuer,
                ErrorKind::InvalidAudience => TokenRefusal::WrongAudience,
                ErrorKind::InvalidSignature => TokenRefusal::BadSignature,
                ErrorKind::MissingRequiredClaim(c) => TokenRefusal::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm => TokenRefusal::Algorithm(format!("{:?}", header.alg)),
                _ => TokenRefusal::Malformed(e.to_string()),
            })?;
        match data.claims.sub {
            Some(sub) if !sub.is_empty() => Ok(Identity { sub }),
            _ => Err(TokenRefusal::MissingClaim("sub".into())),
        }
    }
}

/// The `alg` of a token's header, read without trusting anything else.
fn header_alg(token: &str) -> Option<String> {
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["alg"].as_str().map(str::to_string)
}

/// The issuer of development tokens (`jobcast token issue`).
pub const DEV_ISSUER: &str = "urn:jobcast:dev";
/// Their audience.
pub const DEV_AUDIENCE: &str = "jobcast-dev";

/// Where the development key lives unless `JOBCAST_DEV_KEY` says:
/// `$XDG_CONFIG_HOME/jobcast/dev-key.json`, else `~/.config/jobcast/…`.
pub fn dev_key_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("JOBCAST_DEV_KEY") {
        return p.into();
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")))
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    config.join("jobcast").join("dev-key.json")
}

/// Why the development key cannot be read or made.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}: not a jobcast development key; delete it to make a new one")]
    Invalid(String),
    #[error("cannot make a key")]
    Generate,
}

/// A development signing key (ES256): tokens for local use only, verified
/// by `serve --dev-tokens` through the JWKS this key publishes.
pub struct DevKey {
    pkcs8: Vec<u8>,
    kid: String,
}

#[derive(Serialize)]
struct DevClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

impl DevKey {
    /// A fresh key.
    pub fn generate() -> Result<DevKey, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )?;
        let kid = crate::protocol::hex(
            &ring::digest::digest(&ring::digest::SHA256, pkcs8.as_ref()).as_ref()[..8],
        );
        Ok(DevKey {
            pkcs8: pkcs8.as_ref().to_vec(),
            kid: format!("dev-{kid}"),
        })
    }

    /// The key in `path`, made (readable by this user only) when absent.
    pub fn load_or_create(path: &std::path::Path) -> Result<DevKey, DevKeyError> {
        let io = |e: std::io::Error| DevKeyError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|_| DevKeyError::Invalid(path.display().to_string()))?;
                let pkcs8 = v["pkcs8"]
                    .as_str()
                    .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok());
                match (pkcs8, v["kid"].as_str()) {
                    (Some(pkcs8), Some(kid)) => Ok(DevKey::from_pkcs8(pkcs8, kid.to_string())),
                    _ => Err(DevKeyError::Invalid(path.display().to_string())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = DevKey::generate().map_err(|_| DevKeyError::Generate)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let text = serde_json::json!({
                    "note": "jobcast development signing key: for local development only",
                    "kid": key.kid,
                    "pkcs8": base64::engine::general_purpose::STANDARD.encode(&key.pkcs8),
                })
                .to_string();
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(text.as_bytes()).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// From the PKCS#8 DER of a key made by [`DevKey::generate`].
    pub fn from_pkcs8(pkcs8: Vec<u8>, kid: String) -> DevKey {
        DevKey { pkcs8, kid }
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS with this key's public half.
    pub fn jwks(&self) -> Result<String, jsonwebtoken::errors::Error> {
        ring_crypto::install();
        let (_, x, y) = ring_crypto::ec_public(&self.pkcs8)?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Ok(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": b64(&x), "y": b64(&y),
        }]})
        .to_string())
    }

    /// A token for `sub`, valid for `ttl` from `now` (epoch seconds).
    pub fn sign(
        &self,
        issuer: &str,
        audience: &str,
        sub: &str,
        now: u64,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        ring_crypto::install();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = DevClaims {
            iss: issuer,
            aud: audience,
            sub,
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&self.pkcs8))
    }
}
