//! `jobcast bench tokens`: what owners add to a request, measured in this
//! process: one JWT verification (ES256, and RS256 when `openssl` can make
//! an RSA key) against one job-token check (HMAC), side by side.

use crate::auth::{DevKey, JwtVerifier};
use crate::token::TokenKey;
use base64::Engine;
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensReport {
    pub iterations: usize,
    pub es256_micros: f64,
    /// None when `openssl` could not make an RSA key.
    pub rs256_micros: Option<f64>,
    pub job_token_micros: f64,
}

impl std::fmt::Display for TokensReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rs = self
            .rs256_micros
            .map_or("not measured (no openssl)".to_string(), |r| {
                format!("{r:.1} µs")
            });
        write!(
            f,
            "per verification over {} runs: ES256 JWT {:.1} µs, RS256 JWT {rs}, job token {:.2} µs (ES256 ×{:.0} a job token)",
            self.iterations,
            self.es256_micros,
            self.job_token_micros,
            self.es256_micros / self.job_token_micros.max(1e-9)
        )
    }
}

const ISS: &str = "urn:jobcast:bench";
const AUD: &str = "bench";

fn micros_per(iterations: usize, mut f: impl FnMut() -> bool) -> Result<f64, String> {
    let started = Instant::now();
    for _ in 0..iterations {
        if !f() {
            return Err("a token did not verify".into());
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / iterations as f64)
}

fn rs256(iterations: usize, now: u64) -> Result<Option<f64>, String> {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -outform DER",
        ])
        .output();
    let der = match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => o.stdout,
        _ => return Ok(None),
    };
    let pair = ring::rsa::KeyPair::from_pkcs8(&der).map_err(|e| e.to_string())?;
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": b64(&public.n), "e": b64(&public.e)}]});
    let verifier =
        JwtVerifier::from_jwks(ISS, AUD, &jwks.to_string()).map_err(|e| e.to_string())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa".into());
    let claims = serde_json::json!({"iss": ISS, "aud": AUD, "sub": "bench", "exp": now + 3600});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der),
    )
    .map_err(|e| e.to_string())?;
    micros_per(iterations, || verifier.verify(&token).is_ok()).map(Some)
}

pub fn run(iterations: usize) -> Result<TokensReport, String> {
    let iterations = iterations.max(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let key = DevKey::generate().map_err(|_| "cannot make a key".to_string())?;
    let jwks = key.jwks().map_err(|e| e.to_string())?;
    let verifier = JwtVerifier::from_jwks(ISS, AUD, &jwks).map_err(|e| e.to_string())?;
    let token = key
        .sign(ISS, AUD, "bench", now, Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    let es256 = micros_per(iterations, || verifier.verify(&token).is_ok())?;
    let tokens = TokenKey::random(Duration::from_secs(3600));
    let job_token = tokens.issue("job_bench", now as i64);
    let job = micros_per(iterations, || {
        tokens.verify("job_bench", &job_token, now as i64).is_ok()
    })?;
    Ok(TokensReport {
        iterations,
        es256_micros: es256,
        rs256_micros: rs256(iterations, now)?,
        job_token_micros: job,
    })
}
