//! Job tokens: proof that the holder may follow one job, until an expiry.
//!
//! A token is `<expiry unix seconds>.<base64url HMAC-SHA256(secret, "jobId.expiry")>`.
//! It is URL-safe (it travels in the WebSocket query string), bound to its
//! job id, and checked in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted from configuration.
pub const MIN_SECRET_BYTES: usize = 16;

/// The key that signs and checks job tokens.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
    ttl: Duration,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Who a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The client that created the job: follows and cancels it.
    Client,
    /// The worker the job was handed to: reports its progress.
    Worker,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid for this job")]
    Invalid,
}

/// Why a configured secret was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "JOBCAST_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes (got {0}); generate one with `openssl rand -hex 32`"
)]
pub struct WeakSecret(pub usize);

impl TokenKey {
    /// A key from a configured secret.
    pub fn new(secret: impl Into<Vec<u8>>, ttl: Duration) -> Result<TokenKey, WeakSecret> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        Ok(TokenKey { secret, ttl })
    }

    /// A key with a fresh random secret; tokens die with the process.
    pub fn random(ttl: Duration) -> TokenKey {
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        TokenKey { secret, ttl }
    }

    /// How long issued tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, role: Role, job_id: &str, expiry: i64) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        // Domain separation: a client token never verifies as a worker
        // token, nor the other way round. Client tokens keep the original
        // input, so tokens issued before worker tokens existed stay valid.
        if role == Role::Worker {
            mac.update(b"worker:");
        }
        mac.update(job_id.as_bytes());
        mac.update(b".");
        mac.update(expiry.to_string().as_bytes());
        mac
    }

    /// A key for another purpose, derived from this one (HMAC of `label`):
    /// signing with it never makes a valid token, and it stays the same
    /// across restarts when the secret does.
    pub fn derive(&self, label: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"derive:");
        mac.update(label);
        mac.finalize().into_bytes().to_vec()
    }

    /// Issues a client token for `job_id` (follow, cancel), valid until `now_unix + ttl`.
    pub fn issue(&self, job_id: &str, now_unix: i64) -> String {
        self.issue_as(Role::Client, job_id, now_unix)
    }

    /// Issues a worker token for `job_id` (report updates), valid until `now_unix + ttl`.
    pub fn issue_worker(&self, job_id: &str, now_unix: i64) -> String {
        self.issue_as(Role::Worker, job_id, now_unix)
    }

    /// Checks a client token for `job_id` at `now_unix`, in constant time.
    pub fn verify(&self, job_id: &str, token: &str, now_unix: i64) -> Result<(), TokenError> {
        self.verify_as(Role::Client, job_id, token, now_unix)
    }

    /// Checks a worker token for `job_id` at `now_unix`, in constant time.
    pub fn verify_worker(
        &self,
        job_id: &str,
        token: &str,
        now_unix: i64,
    ) -> Result<(), TokenError> {
        self.verify_as(Role::Worker, job_id, token, now_unix)
    }

    fn issue_as(&self, role: Role, job_id: &str, now_unix: i64) -> String {
        let expiry = now_unix.saturating_add(self.ttl.as_secs() as i64);
        let tag = self.mac(role, job_id, expiry).finalize().into_bytes();
        format!("{expiry}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    fn verify_as(
        &self,
        role: Role,
        job_id: &str,
        token: &str,
        now_unix: i64,
    ) -> Result<(), TokenError> {
        let (expiry, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if expiry.is_empty() || expiry.len() > 19 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        // verify_slice compares in constant time.
        self.mac(role, job_id, expiry)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        if expiry <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new("0123456789abcdef0123", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn issued_token_verifies_for_its_job_only() {
        let k = key();
        let t = k.issue("job-1", 1000);
        assert_eq!(k.verify("job-1", &t, 1000), Ok(()));
        assert_eq!(k.verify("job-2", &t, 1000), Err(TokenError::Invalid));
        let other = TokenKey::new("another-secret-of-length", Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify("job-1", &t, 1000), Err(TokenError::Invalid));
    }

    #[test]
    fn worker_and_client_tokens_do_not_stand_in_for_each_other() {
        let k = key();
        let client = k.issue("job-1", 1000);
        let worker = k.issue_worker("job-1", 1000);
        assert_ne!(client, worker);
        assert_eq!(k.verify_worker("job-1", &worker, 1000), Ok(()));
        assert_eq!(
            k.verify_worker("job-1", &client, 1000),
            Err(TokenError::Invalid)
        );
        assert_eq!(k.verify("job-1", &worker, 1000), Err(TokenError::Invalid));
        assert_eq!(
            k.verify_worker("job-2", &worker, 1000),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_expire() {
        let k = key();
        let t = k.issue("job-1", 1000);
        assert_eq!(k.verify("job-1", &t, 1059), Ok(()));
        assert_eq!(k.verify("job-1", &t, 1060), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_expiry_is_refused() {
        let k = key();
        let t = k.issue("job-1", 1000);
        let (_, tag) = t.split_once('.').unwrap();
        assert_eq!(
            k.verify("job-1", &format!("99999999.{tag}"), 1000),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn malformed_tokens() {
        let k = key();
        for t in [
            "",
            ".",
            "abc",
            "12.",
            "x.abc",
            "-5.abc",
            "1.!!!",
            "99999999999999999999.aa",
        ] {
            assert!(k.verify("job-1", t, 0).is_err(), "{t}");
        }
    }

    #[test]
    fn weak_secret_refused() {
        assert!(TokenKey::new("short", Duration::from_secs(1)).is_err());
    }
}
