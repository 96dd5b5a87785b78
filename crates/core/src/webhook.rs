//! Signed webhooks: when a job with a `callbackUrl` ends, its terminal
//! snapshot is POSTed there, signed with `JOBCAST_WEBHOOK_SECRET`:
//!
//! `Jobcast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!
//! Delivery retries with exponential backoff and full jitter, runs apart from
//! progress delivery (a receiver that never answers blocks nothing), and
//! records every attempt on the job. Callback addresses are checked when the
//! job is accepted and again at each connection (so DNS cannot be turned
//! against the checks): link-local and cloud metadata addresses are always
//! refused, loopback is allowed, other private ranges only when configured.

use crate::metrics::Metrics;
use crate::protocol::hex;
use crate::retry::backoff;
use crate::store::{JobRecord, Store, WebhookState, WebhookStatus};
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Jobcast-Signature";

/// Which destination addresses a webhook may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow RFC 1918, CGNAT and unique-local IPv6 ranges (off by default).
    pub allow_private: bool,
}

/// Why an address is refused, or `None` when it is allowed.
pub fn refusal(ip: IpAddr, policy: AddressPolicy) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                return None;
            }
            if v4.is_link_local() {
                return Some("link-local and cloud metadata addresses are never allowed");
            }
            if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                return Some("not a unicast address");
            }
            // Alibaba Cloud's metadata service lives outside link-local.
            if v4 == Ipv4Addr::new(100, 100, 100, 200) {
                return Some("cloud metadata addresses are never allowed");
            }
            let cgnat = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
            if (v4.is_private() || cgnat) && !policy.allow_private {
                return Some("private addresses need --allow-private-callbacks");
            }
            None
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return None;
            }
            // fd00:ec2::254 is AWS's IPv6 metadata endpoint.
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                return Some("cloud metadata addresses are never allowed");
            }
            if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                return Some("link-local and cloud metadata addresses are never allowed");
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return Some("not a unicast address");
            }
            if (v6.segments()[0] & 0xfe00) == 0xfc00 && !policy.allow_private {
                return Some("private addresses need --allow-private-callbacks");
            }
            None
        }
    }
}

/// Why a `callbackUrl` was refused (a 400 `bad_callback_url`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("callbackUrl is not a valid URL ({0})")]
    Invalid(String),
    #[error("callbackUrl must be an http or https URL")]
    Scheme,
    #[error("callbackUrl must not carry credentials")]
    Credentials,
    #[error("callbackUrl has no host")]
    NoHost,
    #[error("callbackUrl host '{host}' does not resolve ({reason})")]
    Unresolved { host: String, reason: String },
    #[error("callbackUrl host '{0}' has no address")]
    NoAddress(String),
    #[error("callbackUrl resolves to {ip}: {why}")]
    Refused { ip: IpAddr, why: &'static str },
}

/// The webhook HTTP client could not be built (a TLS set-up problem).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(String);

/// Checks a callback URL's shape and every address its host resolves to.
pub async fn check_callback_url(url: &str, policy: AddressPolicy) -> Result<Url, CallbackUrlError> {
    let parsed = Url::parse(url).map_err(|e| CallbackUrlError::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CallbackUrlError::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CallbackUrlError::Credentials);
    }
    let host = parsed
        .host_str()
        .ok_or(CallbackUrlError::NoHost)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| CallbackUrlError::Unresolved {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(CallbackUrlError::NoAddress(host));
    }
    for ip in addrs {
        if let Some(why) = refusal(ip, policy) {
            return Err(CallbackUrlError::Refused { ip, why });
        }
    }
    Ok(parsed)
}

/// A resolver that drops refused addresses, so the connection made is the one checked.
struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| refusal(a.ip(), policy).is_none())
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no allowed address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Computes the signature header value for `body` at time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// Checks a signature header the way a receiver should: recompute, compare
/// in constant time, refuse timestamps older than `tolerance`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let expected = sign(secret, t, body);
    let expected = expected.rsplit("v1=").next().unwrap_or("");
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), v1.as_bytes()).into()
}

/// How deliveries are attempted.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    pub policy: AddressPolicy,
}

impl Default for WebhookOptions {
    fn default() -> WebhookOptions {
        WebhookOptions {
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            policy: AddressPolicy::default(),
        }
    }
}

/// When a delivery runs: fixed when the [`Webhooks`] is built, so every
/// caller of one instance delivers the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In a task of its own; progress delivery never waits for it (`serve`).
    Background,
    /// Before the caller goes on: for hosts where nothing may outlive a
    /// request (Lambda, the CLI).
    Inline,
}

/// Delivers terminal snapshots to callback URLs: the one owner of webhook
/// delivery, whoever ends the job (a publish, a recovered job, a queued
/// job whose earlier delivery was cut short).
pub struct Webhooks {
    client: reqwest::Client,
    secret: Vec<u8>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: WebhookOptions,
    delivery: Delivery,
    /// Where job files are: a terminal snapshot's files go out with
    /// download URLs presigned when it is sent.
    files: std::sync::OnceLock<crate::files::FileLinks>,
    /// Where "now" comes from: signatures and delivery records (the wall
    /// clock until a host says otherwise).
    clock: std::sync::OnceLock<crate::clock::SharedClock>,
}

impl Webhooks {
    /// Shows attached files with download URLs from `files` (the first
    /// call decides; later ones change nothing).
    pub fn show_files(&self, files: &crate::files::FileLinks) {
        let _ = self.files.set(files.clone());
    }

    /// Reads the time from `clock` (the first call decides).
    pub fn use_clock(&self, clock: &crate::clock::SharedClock) {
        let _ = self.clock.set(Arc::clone(clock));
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.get().map_or_else(Utc::now, |c| c.now())
    }

    pub fn new(
        secret: impl Into<Vec<u8>>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        options: WebhookOptions,
    ) -> Result<Webhooks, ClientError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: options.policy,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .user_agent(concat!("jobcast-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Webhooks {
            client,
            secret: secret.into(),
            store,
            metrics,
            options,
            delivery: Delivery::Background,
            files: std::sync::OnceLock::new(),
            clock: std::sync::OnceLock::new(),
        })
    }

    /// The same, delivering inline (see [`Delivery::Inline`]).
    pub fn inline(mut self) -> Webhooks {
        self.delivery = Delivery::Inline;
        self
    }

    pub fn policy(&self) -> AddressPolicy {
        self.options.policy
    }

    /// Delivers a job's webhook the way this instance was built to: in
    /// the background, or inline (returning once it is settled). Either way
    /// the outcome is recorded on the job.
    pub async fn settle(self: &Arc<Self>, job: &JobRecord) {
        match self.delivery {
            Delivery::Inline => {
                self.deliver(job).await;
            }
            Delivery::Background => {
                let this = Arc::clone(self);
                let job = job.clone();
                tokio::spawn(async move { this.deliver(&job).await });
            }
        }
    }

    async fn record(&self, job_id: &str, state: WebhookState) {
        if let Err(e) = self.store.set_webhook(job_id, state).await {
            tracing::warn!(job_id, error = %e, "could not record webhook delivery state");
        }
    }

    /// Delivers one job's terminal snapshot, retrying; returns the final state.
    async fn deliver(&self, job: &JobRecord) -> WebhookStatus {
        let job_id = job.snapshot.job_id.as_str();
        let Some(url) = job.callback_url.as_deref() else {
            return WebhookStatus::Delivered;
        };
        let body = crate::files::FileLinks::shown(self.files.get(), job, self.now())
            .await
            .public_view()
            .to_string();
        let mut state = WebhookState {
            status: WebhookStatus::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            updated_at: self.now(),
        };
        for attempt in 0..self.options.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(
                    attempt,
                    self.options.base_backoff,
                    self.options.max_backoff,
                ))
                .await;
            }
            state.attempts = attempt + 1;
            self.metrics
                .webhook_attempts_total
                .fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(url, job_id, &body).await;
            state.updated_at = self.now();
            match outcome {
                Ok(status) if (200..300).contains(&status) => {
                    state.status = WebhookStatus::Delivered;
                    state.last_status = Some(status);
                    state.last_error = None;
                    self.record(job_id, state).await;
                    self.metrics
                        .webhook_delivered_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job_id, attempts = attempt + 1, "webhook delivered");
                    return WebhookStatus::Delivered;
                }
                Ok(status) => {
                    state.last_status = Some(status);
                    state.last_error = Some(format!("receiver answered {status}"));
                }
                Err(e) => {
                    state.last_status = None;
                    state.last_error = Some(e);
                }
            }
            tracing::warn!(job_id, attempt = attempt + 1, error = ?state.last_error, "webhook attempt failed");
            self.record(job_id, state.clone()).await;
        }
        state.status = WebhookStatus::Failed;
        self.record(job_id, state.clone()).await;
        self.metrics
            .webhook_failed_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(job_id, attempts = state.attempts, error = ?state.last_error, "webhook delivery failed for good");
        WebhookStatus::Failed
    }

    async fn attempt(&self, url: &str, job_id: &str, body: &str) -> Result<u16, String> {
        // IP literals skip the resolver: check them here.
        let parsed = Url::parse(url).map_err(|e| e.to_string())?;
        if let Some(host) = parsed.host_str()
            && let Ok(ip) = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            && let Some(why) = refusal(ip, self.options.policy)
        {
            return Err(format!("{ip}: {why}"));
        }
        // The receiver checks this against its own wall clock.
        let t = Utc::now().timestamp();
        let res = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, t, body.as_bytes()))
            .header("Jobcast-Job-Id", job_id)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    let _ = write!(msg, ": {s}");
                    src = s.source();
                }
                msg
            })?;
        Ok(res.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let h = sign(b"s3cret", 1000, b"{}");
        assert!(h.starts_with("t=1000,v1="));
        assert!(verify(b"s3cret", &h, b"{}", 1010, Duration::from_secs(300)));
        assert!(!verify(b"other", &h, b"{}", 1010, Duration::from_secs(300)));
        assert!(!verify(
            b"s3cret",
            &h,
            b"{ }",
            1010,
            Duration::from_secs(300)
        ));
        assert!(!verify(
            b"s3cret",
            &h,
            b"{}",
            2000,
            Duration::from_secs(300)
        ));
        assert!(!verify(
            b"s3cret",
            "garbage",
            b"{}",
            1000,
            Duration::from_secs(300)
        ));
    }

    #[test]
    fn address_policy() {
        let strict = AddressPolicy::default();
        let open = AddressPolicy {
            allow_private: true,
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(refusal(ip("127.0.0.1"), strict), None);
        assert_eq!(refusal(ip("::1"), strict), None);
        assert_eq!(refusal(ip("93.184.216.34"), strict), None);
        for bad in [
            "169.254.169.254",
            "169.254.1.1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
        ] {
            assert!(refusal(ip(bad), open).is_some(), "{bad}");
        }
        for private in [
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "100.64.0.1",
            "fd12::1",
        ] {
            assert!(refusal(ip(private), strict).is_some(), "{private}");
            assert_eq!(refusal(ip(private), open), None, "{private}");
        }
    }

    #[tokio::test]
    async fn callback_urls() {
        let p = AddressPolicy::default();
        assert!(
            check_callback_url("http://127.0.0.1:9000/hook", p)
                .await
                .is_ok()
        );
        assert!(check_callback_url("ftp://127.0.0.1/x", p).await.is_err());
        assert!(
            check_callback_url("http://169.254.169.254/latest", p)
                .await
                .is_err()
        );
        assert!(
            check_callback_url("http://[fd00:ec2::254]/", p)
                .await
                .is_err()
        );
        assert!(
            check_callback_url("http://user:pw@127.0.0.1/", p)
                .await
                .is_err()
        );
        assert!(check_callback_url("not a url", p).await.is_err());
        assert!(check_callback_url("http://localhost:1/x", p).await.is_ok());
    }
}
