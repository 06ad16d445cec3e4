//! The set of keys the server publishes and signs with, and JWT signing and
//! verification against it (RFC 8725: explicit `typ`, algorithm pinned per
//! key, `kid` as an opaque lookup, no key material taken from the token).

use std::collections::HashSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{Algorithm, SigningKey, TokenError};

/// What a token must satisfy to be accepted by [`KeySet::verify`].
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Expected header `typ`, e.g. `"at+jwt"`; compared case-insensitively and
    /// with or without the `application/` prefix.
    pub typ: &'a str,
    /// Required `iss`, compared exactly.
    pub issuer: &'a str,
    /// When given, `aud` is required and must be this string or an array containing it.
    pub audience: Option<&'a str>,
    /// The current time, seconds since the epoch.
    pub now: i64,
    /// Allowed clock skew in seconds, applied to `exp`, `iat` and `nbf`.
    pub leeway: i64,
}

struct Inner {
    keys: Vec<SigningKey>,
    /// Index into `keys` of the key that signs for each algorithm.
    signing: Vec<(Algorithm, usize)>,
    jwks: Value,
}

/// The keys in use, cheap to clone (one `Arc`): the server builds a new one
/// when keys change and swaps it in atomically.
#[derive(Clone)]
pub struct KeySet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .field("algorithms", &self.algorithms())
            .finish()
    }
}

/// `typ` values compare case-insensitively, and `application/at+jwt` equals
/// `at+jwt` (RFC 7515 §4.1.9, RFC 8725 §3.11).
fn typ_matches(actual: &str, expected: &str) -> bool {
    fn strip(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => t.get(12..).unwrap_or(t),
            _ => t,
        }
    }
    strip(actual).eq_ignore_ascii_case(strip(expected))
}

/// A NumericDate claim as whole seconds; `Ok(None)` when absent.
fn numeric_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = match (value.as_i64(), value.as_u64(), value.as_f64()) {
        (Some(i), _, _) => i,
        (None, Some(_), _) => i64::MAX,
        // `as` saturates; fractional seconds are allowed by RFC 7519 §2.
        (None, None, Some(f)) if f.is_finite() => f.floor() as i64,
        _ => return Err(TokenError::ClaimsShape(format!("{name} is not a number"))),
    };
    Ok(Some(seconds))
}

impl KeySet {
    /// Builds a set from loaded keys and the kids that may sign now (at most
    /// one per algorithm; usually from [`crate::signing_kid`]). Keys not in
    /// `signing` are still published and still verify: keys about to sign, and
    /// retired keys whose tokens have not all expired.
    pub fn new(keys: Vec<SigningKey>, signing: Vec<String>) -> Result<KeySet, TokenError> {
        let mut seen = HashSet::new();
        for key in &keys {
            if !seen.insert(key.kid()) {
                return Err(TokenError::InvalidKeySet(format!(
                    "kid {} appears twice",
                    key.kid()
                )));
            }
        }
        let mut by_alg: Vec<(Algorithm, usize)> = Vec::new();
        for kid in &signing {
            let index = keys.iter().position(|k| k.kid() == kid).ok_or_else(|| {
                TokenError::InvalidKeySet(format!("signing kid {kid} is not among the keys"))
            })?;
            let alg = keys.get(index).map(SigningKey::alg).ok_or_else(|| {
                TokenError::InvalidKeySet(format!("signing kid {kid} is not among the keys"))
            })?;
            if by_alg.iter().any(|&(a, _)| a == alg) {
                return Err(TokenError::InvalidKeySet(format!(
                    "more than one signing key for {alg}"
                )));
            }
            by_alg.push((alg, index));
        }
        let jwks = json!({
            "keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>(),
        });
        Ok(KeySet {
            inner: Arc::new(Inner {
                keys,
                signing: by_alg,
                jwks,
            }),
        })
    }

    /// The JWKS document: `{"keys": [...]}` with every key in the set.
    pub fn jwks(&self) -> Value {
        self.inner.jwks.clone()
    }

    /// Every kid in the set, in the order given to `new`.
    pub fn kids(&self) -> Vec<&str> {
        self.inner.keys.iter().map(SigningKey::kid).collect()
    }

    fn signer(&self, alg: Algorithm) -> Option<&SigningKey> {
        self.inner
            .signing
            .iter()
            .find(|&&(a, _)| a == alg)
            .and_then(|&(_, index)| self.inner.keys.get(index))
    }

    /// Whether a key may sign with `alg` now.
    pub fn can_sign(&self, alg: Algorithm) -> bool {
        self.signer(alg).is_some()
    }

    /// The kid that signs with `alg`, if any.
    pub fn signing_kid(&self, alg: Algorithm) -> Option<&str> {
        self.signer(alg).map(SigningKey::kid)
    }

    /// The algorithms that can sign now, in `Algorithm::ALL` order (for
    /// discovery's `id_token_signing_alg_values_supported`).
    pub fn algorithms(&self) -> Vec<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(|&alg| self.can_sign(alg))
            .collect()
    }

    /// Signs `claims` with the current key for `alg`. The header is exactly
    /// `{"typ", "alg", "kid"}`.
    pub fn sign<T: Serialize>(
        &self,
        alg: Algorithm,
        typ: &str,
        claims: &T,
    ) -> Result<String, TokenError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let key = self.signer(alg).ok_or(TokenError::NoSigningKey(alg))?;
        let header = serde_json::json!({ "typ": typ, "alg": alg.as_str(), "kid": key.kid() });
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = key.signer.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Verifies a compact JWS signed by one of our keys and returns its claims.
    ///
    /// Checks, in order: three segments; a JSON header whose `alg` is one of
    /// ours (never `none`) and that has no `crit`; `kid` names one of our keys
    /// (`jku`, `x5u`, `jwk`, `x5c` are ignored); `alg` is that key's own
    /// algorithm; `typ` as expected; the signature; then `iss`, `aud` (when
    /// expected), `exp` (required), `iat` (required) and `nbf` (if present)
    /// against `expect.now` with `expect.leeway`.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expect: &Expect<'_>,
    ) -> Result<T, TokenError> {
        let mut segments = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| TokenError::Malformed)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;

        let header_alg: Algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|name| name.parse().ok())
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        // We understand no JWS extensions, so RFC 7515 §4.1.11 says reject.
        if header.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(TokenError::UnknownKey)?;
        let key = self
            .inner
            .keys
            .iter()
            .find(|k| k.kid() == kid)
            .ok_or(TokenError::UnknownKey)?;
        if header_alg != key.alg() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        match header.get("typ").and_then(Value::as_str) {
            Some(typ) if typ_matches(typ, expect.typ) => {}
            _ => return Err(TokenError::WrongType),
        }

        // Signature only: time is ours to check (jsonwebtoken reads the clock),
        // and so are iss/aud (so the errors say precisely what failed).
        let mut validation = Validation::new(key.alg().jwt());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::Crypto(_) => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => TokenError::AlgorithmNotAllowed,
                _ => TokenError::Malformed,
            },
        )?;
        let Value::Object(claims) = data.claims else {
            return Err(TokenError::Malformed);
        };

        match claims.get("iss") {
            None => return Err(TokenError::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == expect.issuer => {}
            Some(_) => return Err(TokenError::WrongIssuer),
        }
        if let Some(audience) = expect.audience {
            let matches = match claims.get("aud") {
                None => return Err(TokenError::MissingClaim("aud")),
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a == audience),
                Some(_) => false,
            };
            if !matches {
                return Err(TokenError::WrongAudience);
            }
        }
        let exp = numeric_claim(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if exp.saturating_add(expect.leeway) <= expect.now {
            return Err(TokenError::Expired);
        }
        let iat = numeric_claim(&claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
        if iat.saturating_sub(expect.leeway) > expect.now {
            return Err(TokenError::NotYetValid);
        }
        if let Some(nbf) = numeric_claim(&claims, "nbf")? {
            if nbf.saturating_sub(expect.leeway) > expect.now {
                return Err(TokenError::NotYetValid);
            }
        }

        serde_json::from_value(Value::Object(claims))
            .map_err(|e| TokenError::ClaimsShape(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison_follows_rfc8725() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("AT+JWT", "at+jwt"));
        assert!(typ_matches("application/at+jwt", "at+jwt"));
        assert!(typ_matches("Application/AT+JWT", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("application/", "at+jwt"));
        assert!(!typ_matches("x-application/at+jwt", "at+jwt"));
        assert!(!typ_matches("at+jwt ", "at+jwt"));
    }
}
