//! Optional SigV4 verification of `@connections` calls (`serve
//! --require-sigv4`), so code that forgets to sign, or signs with the wrong
//! keys, fails locally with the `ForbiddenException` it would get from AWS.
//!
//! The check recomputes the signature with the aws-sigv4 crate (the signer
//! every Rust SDK uses) over exactly what arrived: method, raw path and
//! query, the headers named in `SignedHeaders`, the body, and the scope and
//! time the client chose. The two signatures are compared in constant time.

use crate::push::PushError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{NaiveDateTime, TimeZone, Utc};
use http::{HeaderMap, Method, Uri};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

/// How far a request's `X-Amz-Date` may be from now, as AWS allows.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const MISSING: &str = "Missing Authentication Token";
const UNKNOWN_KEY: &str = "The security token included in the request is invalid.";
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.";

/// The one key pair `@connections` callers must sign with.
#[derive(Clone)]
pub struct Verifier {
    access_key_id: String,
    /// The key pair as the signer takes it, built once.
    identity: Identity,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Verifier")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        access_key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(auth)
}

fn parse_amz_date(v: &str) -> Option<SystemTime> {
    let t = NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ").ok()?;
    Some(Utc.from_utc_datetime(&t).into())
}

impl Verifier {
    /// A verifier accepting requests signed with this key pair.
    pub fn new(access_key_id: String, secret_access_key: String) -> Verifier {
        let identity = Credentials::new(
            access_key_id.clone(),
            secret_access_key,
            None,
            None,
            "jobcast-sigv4",
        )
        .into();
        Verifier {
            access_key_id,
            identity,
        }
    }

    /// The key id callers must sign with (logged at start).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// Checks one request; `Forbidden` with AWS's own message when it fails.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), PushError> {
        let forbidden = |m: &str| PushError::Forbidden(m.to_string());
        let header = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| forbidden(MISSING))?
            .to_str()
            .map_err(|_| forbidden(MISSING))?;
        let auth = parse_authorization(header).ok_or_else(|| {
            forbidden("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256).")
        })?;
        if auth
            .access_key_id
            .as_bytes()
            .ct_eq(self.access_key_id.as_bytes())
            .unwrap_u8()
            != 1
        {
            return Err(forbidden(UNKNOWN_KEY));
        }
        if auth.service != "execute-api" {
            return Err(forbidden(MISMATCH));
        }
        let time = signing_time(headers, &auth, now)?;
        // Exactly the headers the client signed, as they arrived.
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            for v in headers.get_all(*name) {
                let v = v.to_str().map_err(|_| forbidden(MISMATCH))?;
                signed.push((*name, v));
            }
        }
        if !auth.signed_headers.contains(&"host") {
            return Err(forbidden(MISMATCH));
        }
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = SignableRequest::new(
            method.as_str(),
            path_and_query,
            signed.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|_| forbidden(MISMATCH))?;
        let expected = self
            .signature(request, &auth, time)
            .ok_or_else(|| forbidden(MISMATCH))?;
        if expected
            .as_bytes()
            .ct_eq(auth.signature.as_bytes())
            .unwrap_u8()
            == 1
        {
            Ok(())
        } else {
            Err(forbidden(MISMATCH))
        }
    }

    /// The signature this verifier's secret gives `request` for the scope
    /// the client claimed.
    fn signature(
        &self,
        request: SignableRequest<'_>,
        auth: &Authorization<'_>,
        time: SystemTime,
    ) -> Option<String> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(auth.region)
            .name(auth.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let signed = sign(request, &params).ok()?;
        Some(signed.signature().to_string())
    }
}

/// The request's `X-Amz-Date`: present, within five minutes of `now`, and
/// on the day of the credential scope.
fn signing_time(
    headers: &HeaderMap,
    auth: &Authorization<'_>,
    now: SystemTime,
) -> Result<SystemTime, PushError> {
    let forbidden = |m: &str| PushError::Forbidden(m.to_string());
    let time = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_amz_date)
        .ok_or_else(|| forbidden("Authorization requires a valid X-Amz-Date header."))?;
    let skew = now
        .duration_since(time)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(forbidden(
            "Signature expired: X-Amz-Date is more than 5 minutes from now.",
        ));
    }
    if auth.date
        != chrono::DateTime::<Utc>::from(time)
            .format("%Y%m%d")
            .to_string()
    {
        return Err(forbidden(MISMATCH));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse_or_are_refused() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_authorization("Basic dXNlcjpwYXNz").is_none());
        assert!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=AKID/2026, SignedHeaders=host, Signature=x"
            )
            .is_none()
        );
        assert!(parse_authorization("AWS4-HMAC-SHA256 garbage").is_none());
        assert!(parse_authorization("").is_none());
    }

    #[test]
    fn missing_and_foreign_keys_are_forbidden() {
        let v = Verifier::new("AKID".into(), "secret".into());
        let uri: Uri = "/dev/@connections/abc%3D".parse().unwrap();
        let none = v.verify(
            &Method::POST,
            &uri,
            &HeaderMap::new(),
            b"",
            SystemTime::now(),
        );
        assert_eq!(none, Err(PushError::Forbidden(MISSING.into())));
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=OTHER/20261124/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        let foreign = v.verify(&Method::POST, &uri, &h, b"", SystemTime::now());
        assert_eq!(foreign, Err(PushError::Forbidden(UNKNOWN_KEY.into())));
        assert!(!format!("{v:?}").contains("secret"));
    }
}
