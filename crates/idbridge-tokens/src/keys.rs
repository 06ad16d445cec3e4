//! Signing keys: generating new ones, and turning a stored (decrypted) key
//! into something that can sign and verify. The public JWK is always derived
//! from the private key, so what we publish can never drift from what signs.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::helpers::{fill_random, random_token};
use crate::{Algorithm, TokenError};

const RSA_BITS: usize = 2048;

/// A freshly generated key, ready to be sealed and stored.
///
/// `private_der` is PKCS#1 `RSAPrivateKey` DER for RS256 and PKCS#8 DER for
/// ES256 and EdDSA (the forms jsonwebtoken and aws-lc-rs load). Its `Debug` never
/// shows `private_der`.
#[derive(Clone)]
pub struct KeyMaterial {
    pub kid: String,
    pub alg: Algorithm,
    pub private_der: Vec<u8>,
    pub public_jwk: Value,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_der", &"<redacted>")
            .field("public_jwk", &self.public_jwk)
            .finish()
    }
}

/// Generates a key: RSA 2048 with e = 65537, P-256, or Ed25519. The kid is 16
/// random bytes (base64url), opaque and unrelated to the key.
pub fn generate_key(alg: Algorithm) -> Result<KeyMaterial, TokenError> {
    let kid = random_token(16)?;
    let private_der = match alg {
        Algorithm::RS256 => generate_rsa_pkcs1()?,
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| TokenError::KeyGeneration)?
                .as_ref()
                .to_vec()
        }
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| TokenError::KeyGeneration)?
            .as_ref()
            .to_vec(),
    };
    let public_jwk = derive_public_jwk(&kid, alg, &private_der)?;
    Ok(KeyMaterial {
        kid,
        alg,
        private_der,
        public_jwk,
    })
}

/// The `rsa` crate generates RSA keys (as PKCS#1, the stored form), fed by a
/// ChaCha generator seeded from the OS (`OsRng` would panic if the OS RNG
/// failed; seeding through aws-lc-rs lets that surface as an error instead).
fn generate_rsa_pkcs1() -> Result<Vec<u8>, TokenError> {
    let mut seed = [0u8; 32];
    fill_random(&mut seed)?;
    let mut rng = StdRng::from_seed(seed);
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(|_| TokenError::KeyGeneration)?;
    let der = key.to_pkcs1_der().map_err(|_| TokenError::KeyGeneration)?;
    Ok(der.as_bytes().to_vec())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The complete public JWK for a private key, computed by parsing the key with
/// aws-lc-rs (which also validates it). RSA integers are minimal big-endian.
fn derive_public_jwk(kid: &str, alg: Algorithm, private_der: &[u8]) -> Result<Value, TokenError> {
    match alg {
        Algorithm::RS256 => {
            let pair = RsaKeyPair::from_der(private_der).map_err(|_| TokenError::KeyDecode)?;
            let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            Ok(json!({
                "kty": "RSA",
                "kid": kid,
                "use": "sig",
                "alg": alg.as_str(),
                "n": b64(&public.n),
                "e": b64(&public.e),
            }))
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, private_der)
                .map_err(|_| TokenError::KeyDecode)?;
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
            let point = pair.public_key().as_ref();
            let (Some(0x04), Some(x), Some(y), 65) = (
                point.first().copied(),
                point.get(1..33),
                point.get(33..65),
                point.len(),
            ) else {
                return Err(TokenError::KeyDecode);
            };
            Ok(json!({
                "kty": "EC",
                "kid": kid,
                "use": "sig",
                "alg": alg.as_str(),
                "crv": "P-256",
                "x": b64(x),
                "y": b64(y),
            }))
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(private_der)
                .map_err(|_| TokenError::KeyDecode)?;
            Ok(json!({
                "kty": "OKP",
                "kid": kid,
                "use": "sig",
                "alg": alg.as_str(),
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }))
        }
    }
}

/// A key loaded for use: signs with the private key, verifies with a key built
/// from the public JWK components (exactly what relying parties do).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    public_jwk: Value,
    pub(crate) signer: Arc<Signer>,
    pub(crate) decoding: DecodingKey,
}

/// The parsed private key, kept for the key's lifetime: parsing a key is as costly
/// as a signature (an ECDSA key recomputes its public point), so it is done once,
/// not per token.
pub(crate) enum Signer {
    Rsa(aws_lc_rs::signature::RsaKeyPair),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Ed(aws_lc_rs::signature::Ed25519KeyPair),
}

impl Signer {
    fn parse(alg: Algorithm, private_der: &[u8]) -> Result<Signer, TokenError> {
        Ok(match alg {
            Algorithm::RS256 => Signer::Rsa(
                aws_lc_rs::signature::RsaKeyPair::from_der(private_der)
                    .map_err(|_| TokenError::KeyDecode)?,
            ),
            Algorithm::ES256 => Signer::Ecdsa(
                aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    private_der,
                )
                .map_err(|_| TokenError::KeyDecode)?,
            ),
            Algorithm::EdDSA => Signer::Ed(
                aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(private_der)
                    .map_err(|_| TokenError::KeyDecode)?,
            ),
        })
    }

    /// The JWS signature over `message` (RS256: PKCS#1 v1.5 SHA-256; ES256: the
    /// fixed-length r||s form JWS requires; EdDSA: Ed25519).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(key) => {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut sig,
                )
                .map_err(|_| TokenError::Sign)?;
                Ok(sig)
            }
            Signer::Ecdsa(key) => Ok(key
                .sign(&rng, message)
                .map_err(|_| TokenError::Sign)?
                .as_ref()
                .to_vec()),
            Signer::Ed(key) => Ok(key.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn jwk_str<'a>(jwk: &'a Value, field: &'static str) -> Result<&'a str, TokenError> {
    jwk.get(field)
        .and_then(Value::as_str)
        .ok_or(TokenError::KeyMismatch(field))
}

impl SigningKey {
    /// Builds a key from its stored parts (after `MasterKey::open`).
    ///
    /// The private key must parse for `alg`, and the stored `public_jwk` must
    /// name the same kid and alg and hold the same public key as the private
    /// key (a row mix-up would otherwise publish a key that verifies nothing).
    /// The JWK that gets published is the one derived from the private key, so
    /// stray fields in the stored JWK (say, a private `d`) are never published.
    pub fn from_material(
        kid: &str,
        alg: Algorithm,
        private_der: &[u8],
        public_jwk: &Value,
    ) -> Result<SigningKey, TokenError> {
        let derived = derive_public_jwk(kid, alg, private_der)?;
        let fields: &[&'static str] = match alg {
            Algorithm::RS256 => &["kty", "kid", "alg", "n", "e"],
            Algorithm::ES256 => &["kty", "kid", "alg", "crv", "x", "y"],
            Algorithm::EdDSA => &["kty", "kid", "alg", "crv", "x"],
        };
        for &field in fields {
            if jwk_str(public_jwk, field)? != jwk_str(&derived, field)? {
                return Err(TokenError::KeyMismatch(field));
            }
        }
        if public_jwk.get("use").is_some_and(|u| u != "sig") {
            return Err(TokenError::KeyMismatch("use"));
        }

        let component = |field| jwk_str(&derived, field);
        let decoding = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_components(component("n")?, component("e")?),
            Algorithm::ES256 => DecodingKey::from_ec_components(component("x")?, component("y")?),
            Algorithm::EdDSA => DecodingKey::from_ed_components(component("x")?),
        }
        .map_err(|_| TokenError::KeyDecode)?;
        let signer = Arc::new(Signer::parse(alg, private_der)?);
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            public_jwk: derived,
            signer,
            decoding,
        })
    }

    /// Convenience for a just-generated key.
    pub fn from_key_material(material: &KeyMaterial) -> Result<SigningKey, TokenError> {
        SigningKey::from_material(
            &material.kid,
            material.alg,
            &material.private_der,
            &material.public_jwk,
        )
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK as published in the JWKS.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_private_keys() {
        let material = generate_key(Algorithm::EdDSA).unwrap();
        let shown = format!("{material:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(&format!("{:?}", material.private_der)));
        let key = SigningKey::from_key_material(&material).unwrap();
        assert!(format!("{key:?}").contains(&material.kid));
    }
}
