//! The signatures of JWTs through ring, the library TLS already uses here:
//! RS256 and ES256 to verify, ES256 (and RS256, for tests) to sign. Only
//! these two algorithms exist for jobcast; anything else is refused before
//! a key is touched.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    self as sig, EcdsaKeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        ec_pub_components_from_private_key: ec_public_of_private,
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        compute_digest: digest,
    },
};

/// The P-256 public point (curve, x, y) of a PKCS#8 private key.
pub fn ec_public(der: &[u8]) -> jsonwebtoken::errors::Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    ec_public_of_private(der, Algorithm::ES256)
}

fn ec_public_of_private(
    der: &[u8],
    alg: Algorithm,
) -> jsonwebtoken::errors::Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if alg != Algorithm::ES256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let pair = EcdsaKeyPair::from_pkcs8(
        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        der,
        &SystemRandom::new(),
    )
    .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
    let point = sig::KeyPair::public_key(&pair).as_ref();
    // Uncompressed: 0x04, then x and y of 32 bytes each.
    match point {
        [4, rest @ ..] if rest.len() == 64 => Ok((
            EllipticCurve::P256,
            rest[..32].to_vec(),
            rest[32..].to_vec(),
        )),
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn digest(data: &[u8], hash: ThumbprintHash) -> jsonwebtoken::errors::Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

/// Makes ring the process's JWT crypto; harmless when already done.
pub fn install() {
    let _ = PROVIDER.install_default();
}

enum Public {
    Components { n: Vec<u8>, e: Vec<u8> },
    Rsa(Vec<u8>),
    Ec(Vec<u8>),
}

struct Verify {
    alg: Algorithm,
    key: Public,
}

impl signature::Verifier<Vec<u8>> for Verify {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match &self.key {
            Public::Components { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, msg, signature)
                .is_ok(),
            Public::Rsa(der) => UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, der)
                .verify(msg, signature)
                .is_ok(),
            Public::Ec(point) => UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for Verify {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let key = match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => Public::Components {
            n: n.clone(),
            e: e.clone(),
        },
        (Algorithm::RS256, DecodingKeyKind::SecretOrDer(der)) => Public::Rsa(der.clone()),
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => Public::Ec(point.clone()),
        _ => return Err(Error::from(ErrorKind::InvalidAlgorithm)),
    };
    Ok(Box::new(Verify { alg: *alg, key }))
}

enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct Sign {
    alg: Algorithm,
    key: Private,
}

impl signature::Signer<Vec<u8>> for Sign {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            Private::Ec(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            Private::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
        }
    }
}

impl JwtSigner for Sign {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Keys to sign with are PKCS#8 DER (`EncodingKey::from_ec_der` /
/// `from_rsa_der`).
fn signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let der = key.as_bytes();
    let key = match alg {
        Algorithm::ES256 => Private::Ec(
            EcdsaKeyPair::from_pkcs8(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?,
        ),
        Algorithm::RS256 => Private::Rsa(
            RsaKeyPair::from_pkcs8(der)
                .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?,
        ),
        _ => return Err(Error::from(ErrorKind::InvalidAlgorithm)),
    };
    Ok(Box::new(Sign { alg: *alg, key }))
}
