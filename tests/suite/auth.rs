//! JWT verification against tokens made by a real JWT library with
//! generated keys: every way a token can be wrong is refused, with a reason.

use base64::Engine;
use jobcast::auth::{DevKey, JwtVerifier, TokenRefusal};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://issuer.example";
const AUD: &str = "jobcast-app";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token with these claims, signed ES256 by `key` under its kid.
fn es256(key: &DevKey, claims: Value) -> String {
    jobcast::auth::ring_crypto::install();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid().to_string());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(key.pkcs8())).expect("signs")
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 600})
}

fn setup() -> (DevKey, JwtVerifier) {
    let key = DevKey::generate().expect("a key");
    let verifier =
        JwtVerifier::from_jwks(ISS, AUD, &key.jwks().expect("a jwks")).expect("verifier");
    (key, verifier)
}

#[test]
fn a_valid_es256_token_names_its_subject() {
    let (key, v) = setup();
    let token = key
        .sign(ISS, AUD, "alice", now(), Duration::from_secs(600))
        .expect("signs");
    assert_eq!(v.verify(&token).expect("valid").sub, "alice");
    // Within the clock skew, an expired or early token still passes.
    let mut c = claims("alice");
    c["exp"] = json!(now() - 30);
    c["nbf"] = json!(now() + 30);
    assert_eq!(v.verify(&es256(&key, c)).expect("within skew").sub, "alice");
}

#[test]
fn every_wrong_claim_is_refused_with_its_reason() {
    let (key, v) = setup();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        f(&mut c);
        v.verify(&es256(&key, c))
    };
    assert_eq!(
        with(&|c| c["exp"] = json!(now() - 120)),
        Err(TokenRefusal::Expired)
    );
    assert_eq!(
        with(&|c| c["nbf"] = json!(now() + 120)),
        Err(TokenRefusal::NotYetValid)
    );
    assert_eq!(
        with(&|c| c["iss"] = json!("https://elsewhere")),
        Err(TokenRefusal::WrongIssuer)
    );
    assert_eq!(
        with(&|c| c["aud"] = json!("another-app")),
        Err(TokenRefusal::WrongAudience)
    );
    assert!(matches!(
        with(&|c| {
            c.as_object_mut().map(|m| m.remove("sub"));
        }),
        Err(TokenRefusal::MissingClaim(_))
    ));
    assert!(matches!(
        with(&|c| {
            c.as_object_mut().map(|m| m.remove("exp"));
        }),
        Err(TokenRefusal::MissingClaim(_))
    ));
}

#[test]
fn another_key_or_an_unknown_kid_is_refused() {
    let (key, v) = setup();
    // Same kid, other key: the signature does not verify.
    let other = DevKey::from_pkcs8(
        DevKey::generate().expect("key").pkcs8().to_vec(),
        key.kid().into(),
    );
    assert_eq!(
        v.verify(&es256(&other, claims("alice"))),
        Err(TokenRefusal::BadSignature)
    );
    let stranger = DevKey::generate().expect("key");
    assert!(matches!(
        v.verify(&es256(&stranger, claims("alice"))),
        Err(TokenRefusal::UnknownKey(_))
    ));
    // A tampered payload.
    let token = es256(&key, claims("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("mallory").to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(v.verify(&forged), Err(TokenRefusal::BadSignature));
}

#[test]
fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let (key, v) = setup();
    let payload = b64(claims("mallory").to_string().as_bytes());
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(v.verify(&none), Err(TokenRefusal::Algorithm("none".into())));
    // The classic confusion: HMAC keyed with the published public key.
    let header = b64(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, key.kid()).as_bytes());
    let signing_input = format!("{header}.{payload}");
    let jwks = key.jwks().expect("jwks");
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, jwks.as_bytes()),
        signing_input.as_bytes(),
    );
    let hs = format!("{signing_input}.{}", b64(mac.as_ref()));
    assert_eq!(v.verify(&hs), Err(TokenRefusal::Algorithm("HS256".into())));
    assert!(matches!(
        v.verify("not.a.jwt"),
        Err(TokenRefusal::Malformed(_))
    ));
    assert!(matches!(v.verify(""), Err(TokenRefusal::Malformed(_))));
}

/// An RSA key made by openssl, as PKCS#8 DER.
fn rsa_key() -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null \
             | openssl pkcs8 -topk8 -nocrypt -outform DER",
        ])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn rs256_tokens_verify_against_an_rsa_jwk() {
    jobcast::auth::ring_crypto::install();
    let der = rsa_key();
    let pair = ring::rsa::KeyPair::from_pkcs8(&der).expect("rsa key");
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let ec = DevKey::generate().expect("key");
    let ec_jwks: Value = serde_json::from_str(&ec.jwks().expect("jwks")).expect("json");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64(&public.n), "e": b64(&public.e)},
        ec_jwks["keys"][0],
    ]});
    let v = JwtVerifier::from_jwks(ISS, AUD, &jwks.to_string()).expect("verifier");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &claims("bob"), &EncodingKey::from_rsa_der(&der))
        .expect("signs");
    assert_eq!(v.verify(&token).expect("valid").sub, "bob");
    // The RSA signature presented under the EC key's kid: refused.
    header.kid = Some(ec.kid().into());
    let crossed = jsonwebtoken::encode(&header, &claims("bob"), &EncodingKey::from_rsa_der(&der))
        .expect("signs");
    assert_eq!(
        v.verify(&crossed),
        Err(TokenRefusal::Algorithm("RS256".into()))
    );
}

#[test]
fn a_jwks_without_a_usable_key_is_an_error() {
    assert!(JwtVerifier::from_jwks(ISS, AUD, "{}").is_err());
    assert!(JwtVerifier::from_jwks(ISS, AUD, r#"{"keys": []}"#).is_err());
    let hmac_only = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}"#;
    assert!(JwtVerifier::from_jwks(ISS, AUD, hmac_only).is_err());
}
