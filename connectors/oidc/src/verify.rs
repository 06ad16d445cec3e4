//! The provider's signing keys (JWKS) and strict ID token verification (OpenID
//! Connect Core 3.1.3.7, RFC 8725): the algorithm pinned to what the provider
//! advertises and we allow, the key found by `kid` (never taken from the
//! token: `jku`, `x5u`, `jwk`, `x5c` are ignored), the key type matching the
//! algorithm, the signature (by `jsonwebtoken`), then every claim checked here
//! against the time passed in, each failure saying precisely which.

use crate::discovery::alg_name;
use crate::issuer::IssuerRule;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
    Other,
}

fn family_of(alg: Algorithm) -> Family {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
        Algorithm::ES256 => Family::P256,
        Algorithm::ES384 => Family::P384,
        Algorithm::EdDSA => Family::Ed25519,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Other,
    }
}

/// One usable public key of the provider.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: Option<String>,
    /// The key's own `alg`, when the JWKS says it.
    alg: Option<String>,
    family: Family,
    decoding: DecodingKey,
}

/// The provider's keys, as fetched.
#[derive(Clone, Default)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
    /// Keys in the document this connector cannot use (symmetric, unknown
    /// curve, encryption keys), for messages.
    pub skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        f.debug_struct("KeySet")
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// The signing keys of a JWKS document; `Err` when it is no JWKS.
    pub fn parse(doc: &Map<String, Value>) -> Result<KeySet, String> {
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("it has no \"keys\" array".into());
        };
        let mut out = KeySet::default();
        for raw in keys {
            match public_key(raw) {
                Some(k) => out.keys.push(k),
                None => out.skipped += 1,
            }
        }
        Ok(out)
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn public_key(raw: &Value) -> Option<PublicKey> {
    // Only the public members are read; a private `d` (a provider's mistake) is ignored.
    let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Family::P256,
            EllipticCurve::P384 => Family::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => Family::Ed25519,
            _ => return None,
        },
        // A symmetric key is never a provider's signing key for us.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    let alg = raw.get("alg").and_then(Value::as_str).map(str::to_owned);
    Some(PublicKey {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        decoding,
    })
}

/// What the ID token must satisfy.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// What `iss` must be (exact, or a template the token's own claim fills).
    pub issuer: &'a IssuerRule,
    pub client_id: &'a str,
    /// The algorithms pinned from discovery (∩ allowed).
    pub algorithms: &'a [Algorithm],
    pub now: i64,
    pub leeway: i64,
    /// The nonce sent in the authorization request (`None` on refresh).
    pub nonce: Option<&'a str>,
    /// The access token issued with the ID token (for `at_hash`).
    pub access_token: Option<&'a str>,
    /// The app's `max_age`, passed upstream: `auth_time` must then be recent.
    pub max_age: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token names a `kid` we do not have: refetch the keys, then try again.
    UnknownKid(String),
    /// Anything else: the operator-facing reason.
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

/// The header fields that matter.
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Parse the protected header and check the algorithm is pinned.
pub fn header(token: &str, algorithms: &[Algorithm]) -> Result<Header, Refusal> {
    let mut segments = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(invalid(
            "the ID token is not a compact JWS (three dot-separated parts); an encrypted ID token (JWE) is not supported",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| invalid("the ID token's header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the ID token's header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(invalid(
            "the ID token's header has crit (extensions this connector does not understand)",
        ));
    }
    let name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let pinned: Vec<&str> = algorithms.iter().map(|a| alg_name(*a)).collect();
    let alg = algorithms
        .iter()
        .copied()
        .find(|a| alg_name(*a) == name)
        .ok_or_else(|| {
            invalid(format!(
                "the ID token is signed with alg {name:?}, but only {pinned:?} are accepted (what the provider's discovery advertises, narrowed by allowed_algorithms); none and HS* are never accepted"
            ))
        })?;
    if let Some(typ) = header.get("typ") {
        let typ = typ.as_str().unwrap_or("");
        let bare = typ
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .and_then(|_| typ.get(12..))
            .unwrap_or(typ);
        if !bare.eq_ignore_ascii_case("jwt") {
            return Err(invalid(format!(
                "the ID token's header says typ {typ:?}: that is another kind of token, not an ID token"
            )));
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("the ID token's kid is not a string")),
    };
    Ok(Header { alg, kid })
}

/// The keys that may have signed a token with `header`.
fn candidates<'k>(keys: &'k KeySet, header: &Header) -> Result<Vec<&'k PublicKey>, Refusal> {
    let family = family_of(header.alg);
    let name = alg_name(header.alg);
    let fits = |k: &&PublicKey| k.family == family && k.alg.as_deref().is_none_or(|a| a == name);
    match &header.kid {
        Some(kid) => {
            let found: Vec<&PublicKey> = keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if found.is_empty() {
                return Err(Refusal::UnknownKid(kid.clone()));
            }
            let fitting: Vec<&PublicKey> = found.into_iter().filter(fits).collect();
            if fitting.is_empty() {
                return Err(invalid(format!(
                    "the provider's key {kid:?} is not a key for {name} (its type or its own alg differs): a token claiming otherwise is forged or the provider's keys are wrong"
                )));
            }
            Ok(fitting)
        }
        None => {
            let fitting: Vec<&PublicKey> = keys.keys.iter().filter(fits).collect();
            if fitting.is_empty() {
                return Err(invalid(format!(
                    "the ID token has no kid and the provider's keys hold no key for {name}"
                )));
            }
            Ok(fitting)
        }
    }
}

/// `at_hash`/`c_hash` of `value` for `alg` (Core 3.1.3.6): the left half of
/// the hash of the ASCII value, base64url; SHA-512 for EdDSA (Ed25519).
pub fn half_hash(value: &str, alg: Algorithm) -> String {
    let digest = match alg {
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 | Algorithm::HS384 => {
            &ring::digest::SHA384
        }
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 | Algorithm::EdDSA => {
            &ring::digest::SHA512
        }
        _ => &ring::digest::SHA256,
    };
    let hash = ring::digest::digest(digest, value.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(bytes.get(..bytes.len() / 2).unwrap_or(bytes))
}

fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match (v.as_i64(), v.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() => Ok(Some(f.floor() as i64)),
            _ => Err(invalid(format!("the ID token's {name} is not a number"))),
        },
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Verify `token` against `keys` and `expect`; its claims when it passes.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, Refusal> {
    let header = header(token, expect.algorithms)?;
    let candidates = candidates(keys, &header)?;
    let mut validation = Validation::new(header.alg);
    // Time, issuer and audience are checked below against what was passed in.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut claims = None;
    for key in &candidates {
        match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as E;
                match e.kind() {
                    E::InvalidSignature
                    | E::InvalidEcdsaKey
                    | E::InvalidRsaKey(_)
                    | E::Crypto(_) => {}
                    _ => return Err(invalid(format!("the ID token cannot be read: {e}"))),
                }
            }
        }
    }
    let Some(Value::Object(claims)) = claims else {
        let which = header
            .kid
            .as_deref()
            .map(|k| format!("key {k:?}"))
            .unwrap_or_else(|| "any of its keys".into());
        return Err(invalid(format!(
            "the ID token's signature does not verify with the provider's {which} ({}): forged, altered, or signed by another provider",
            alg_name(header.alg)
        )));
    };
    check_claims(&claims, header.alg, expect)?;
    Ok(claims)
}

/// The claim checks after the signature.
pub fn check_claims(
    claims: &Map<String, Value>,
    alg: Algorithm,
    expect: &Expect<'_>,
) -> Result<(), Refusal> {
    let issuers = expect.issuer.expected_for(claims).map_err(invalid)?;
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if issuers.iter().any(|i| i == iss) => {}
        Some(iss) => {
            return Err(invalid(format!(
                "the ID token's iss is {iss:?}, not the issuer {:?}",
                issuers.first().map(String::as_str).unwrap_or("")
            )))
        }
        None => return Err(invalid("the ID token has no iss")),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(invalid("the ID token has no aud")),
    };
    if !audiences.contains(&expect.client_id) {
        return Err(invalid(format!(
            "the ID token's aud is {audiences:?}, without our client_id {:?}: it was issued to another client",
            expect.client_id
        )));
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if audiences.len() > 1 && azp.is_none() {
        return Err(invalid(format!(
            "the ID token has several audiences {audiences:?} and no azp: it cannot be told it was issued to us"
        )));
    }
    if let Some(azp) = azp {
        if azp != expect.client_id {
            return Err(invalid(format!(
                "the ID token's azp is {azp:?}, not our client_id {:?}: it was issued to another client",
                expect.client_id
            )));
        }
    }
    let exp = numeric(claims, "exp")?.ok_or_else(|| invalid("the ID token has no exp"))?;
    if exp.saturating_add(expect.leeway) <= expect.now {
        return Err(invalid(format!(
            "the ID token expired {} s ago (exp {exp}, now {}, clock_skew_secs {}): check the broker's and the provider's clocks",
            expect.now - exp,
            expect.now,
            expect.leeway
        )));
    }
    let iat = numeric(claims, "iat")?.ok_or_else(|| invalid("the ID token has no iat"))?;
    if iat.saturating_sub(expect.leeway) > expect.now {
        return Err(invalid(format!(
            "the ID token was issued {} s in the future (iat {iat}, now {}, clock_skew_secs {}): check the broker's and the provider's clocks",
            iat - expect.now,
            expect.now,
            expect.leeway
        )));
    }
    if let Some(nbf) = numeric(claims, "nbf")? {
        if nbf.saturating_sub(expect.leeway) > expect.now {
            return Err(invalid(format!(
                "the ID token is not valid before {nbf} (now {}): check the clocks",
                expect.now
            )));
        }
    }
    match (expect.nonce, claims.get("nonce").and_then(Value::as_str)) {
        (Some(sent), Some(got)) if constant_time_eq(sent, got) => {}
        (Some(_), Some(_)) => {
            return Err(invalid(
                "the ID token's nonce is not the one this sign-in sent: a replayed or injected ID token (or another sign-in's callback)",
            ))
        }
        (Some(_), None) => {
            return Err(invalid(
                "the ID token has no nonce, but this sign-in sent one: the provider must echo the nonce",
            ))
        }
        (None, _) => {}
    }
    if let (Some(at_hash), Some(access_token)) = (claims.get("at_hash"), expect.access_token) {
        let want = half_hash(access_token, alg);
        if at_hash.as_str() != Some(want.as_str()) {
            return Err(invalid(
                "the ID token's at_hash does not match the access token issued with it: the tokens were mixed up or substituted",
            ));
        }
    }
    if let Some(max_age) = expect.max_age {
        let Some(auth_time) = numeric(claims, "auth_time")? else {
            return Err(invalid(
                "the app asked for max_age, but the ID token has no auth_time",
            ));
        };
        let age = expect.now.saturating_sub(auth_time);
        if age
            > i64::try_from(max_age)
                .unwrap_or(i64::MAX)
                .saturating_add(expect.leeway)
        {
            return Err(invalid(format!(
                "the person signed in at the provider {age} s ago, longer than the app's max_age {max_age}: the provider did not re-authenticate"
            )));
        }
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(invalid("the ID token has no sub")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn rule() -> &'static IssuerRule {
        static RULE: std::sync::OnceLock<IssuerRule> = std::sync::OnceLock::new();
        RULE.get_or_init(|| IssuerRule::Exact {
            issuer: "https://op.example".into(),
            also: Vec::new(),
        })
    }

    fn expect<'a>(now: i64) -> Expect<'a> {
        Expect {
            issuer: rule(),
            client_id: "rp",
            algorithms: &[Algorithm::RS256],
            now,
            leeway: 30,
            nonce: Some("n-1"),
            access_token: Some("at-1"),
            max_age: None,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({"iss": "https://op.example", "aud": "rp", "sub": "s", "exp": 1100, "iat": 1000, "nonce": "n-1"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base.as_object().unwrap().clone()
    }

    fn refused(extra: Value, now: i64) -> String {
        match check_claims(&claims(extra), Algorithm::RS256, &expect(now)) {
            Err(Refusal::Invalid(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_claim_is_checked() {
        assert!(check_claims(&claims(json!({})), Algorithm::RS256, &expect(1000)).is_ok());
        assert!(refused(json!({"iss": "https://evil"}), 1000).contains("iss"));
        assert!(refused(json!({"aud": "other"}), 1000).contains("another client"));
        assert!(refused(json!({"aud": ["rp", "other"]}), 1000).contains("no azp"));
        assert!(check_claims(
            &claims(json!({"aud": ["rp", "other"], "azp": "rp"})),
            Algorithm::RS256,
            &expect(1000)
        )
        .is_ok());
        assert!(refused(json!({"azp": "other"}), 1000).contains("azp"));
        assert!(refused(json!({}), 1131).contains("expired"));
        assert!(check_claims(&claims(json!({})), Algorithm::RS256, &expect(1129)).is_ok());
        assert!(refused(json!({}), 969).contains("future"));
        assert!(refused(json!({"nonce": "n-2"}), 1000).contains("nonce"));
        assert!(refused(json!({"at_hash": "xyz"}), 1000).contains("at_hash"));
        let good = half_hash("at-1", Algorithm::RS256);
        assert!(check_claims(
            &claims(json!({"at_hash": good})),
            Algorithm::RS256,
            &expect(1000)
        )
        .is_ok());
        assert!(refused(json!({"sub": ""}), 1000).contains("sub"));
        let mut e = expect(1000);
        e.max_age = Some(60);
        let aged = claims(json!({"auth_time": 900}));
        assert!(
            matches!(check_claims(&aged, Algorithm::RS256, &e), Err(Refusal::Invalid(m)) if m.contains("max_age"))
        );
        let fresh = claims(json!({"auth_time": 990}));
        assert!(check_claims(&fresh, Algorithm::RS256, &e).is_ok());
    }

    #[test]
    fn at_hash_is_the_spec_example() {
        // OpenID Connect Core, Appendix A.3 (RS256).
        assert_eq!(
            half_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
                Algorithm::RS256
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    fn token(header: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        format!("{h}.e30.c2ln")
    }

    #[test]
    fn the_algorithm_is_pinned() {
        let algs = [Algorithm::RS256];
        for bad in ["none", "HS256", "ES256", ""] {
            let t = token(json!({"alg": bad, "kid": "k"}));
            assert!(
                matches!(header(&t, &algs), Err(Refusal::Invalid(m)) if m.contains("alg")),
                "{bad}"
            );
        }
        assert!(header(&token(json!({"alg": "RS256", "kid": "k"})), &algs).is_ok());
        assert!(header(&token(json!({"alg": "RS256", "typ": "at+jwt"})), &algs).is_err());
        assert!(header(&token(json!({"alg": "RS256", "crit": ["b64"]})), &algs).is_err());
        assert!(header("a.b", &algs).is_err());
    }

    #[test]
    fn an_unknown_kid_asks_for_the_keys_and_a_symmetric_key_is_never_used() {
        let keys = KeySet::parse(
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(keys.keys.len(), 0);
        assert_eq!(keys.skipped, 1);
        let t = token(json!({"alg": "RS256", "kid": "new"}));
        assert_eq!(
            verify(&t, &keys, &expect(1000)).unwrap_err(),
            Refusal::UnknownKid("new".into())
        );
    }
}
