//! The fake's signing keys: generated at start, published as a JWKS, rotated
//! on request (the new key signs; the old one stays published).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

/// The ID token algorithm of a fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    ES256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    encoding: EncodingKey,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random token of `bytes` random bytes, base64url.
pub fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    b64(&buf)
}

/// A P-256 key pair: the PKCS#8 PEM (as in Apple's `.p8` files) and the public
/// point's `x` and `y`, base64url.
pub fn p256_pem() -> Result<(String, String, String), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot generate a P-256 key")?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "cannot read the P-256 key")?;
    let point = pair.public_key().as_ref();
    let (x, y) = (
        point.get(1..33).unwrap_or(&[]),
        point.get(33..65).unwrap_or(&[]),
    );
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, b64(x), b64(y)))
}

impl SigningKey {
    pub fn generate(alg: Alg) -> Result<SigningKey, String> {
        let kid = format!("sim-{}", random(6));
        match alg {
            Alg::RS256 => {
                let mut seed = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut seed);
                let mut rng = StdRng::from_seed(seed);
                let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
                let der = key.to_pkcs1_der().map_err(|e| e.to_string())?;
                let jwk = json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
                });
                Ok(SigningKey {
                    kid,
                    alg,
                    encoding: EncodingKey::from_rsa_der(der.as_bytes()),
                    jwk,
                })
            }
            Alg::ES256 => {
                let (pem, x, y) = p256_pem()?;
                let encoding =
                    EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
                let jwk = json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256", "x": x, "y": y,
                });
                Ok(SigningKey {
                    kid,
                    alg,
                    encoding,
                    jwk,
                })
            }
        }
    }

    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let alg = match self.alg {
            Alg::RS256 => Algorithm::RS256,
            Alg::ES256 => Algorithm::ES256,
        };
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}

impl SigningKey {
    /// HS256 with the public key (its JWK's JSON) as the HMAC secret, under
    /// this key's `kid`: what an attacker holding only the JWKS can make.
    pub fn sign_hs256_with_public_key(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let secret = EncodingKey::from_secret(self.jwk.to_string().as_bytes());
        jsonwebtoken::encode(&header, claims, &secret).map_err(|e| e.to_string())
    }
}

/// An `alg: none` token under `key`'s `kid`, with no signature.
pub fn unsigned(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `at_hash` of an access token for RS256/ES256 (left half of SHA-256).
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    b64(digest.as_ref().get(..16).unwrap_or(&[]))
}

/// PKCE S256 of a verifier.
pub fn s256(verifier: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}
