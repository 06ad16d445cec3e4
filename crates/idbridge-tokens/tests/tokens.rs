//! Scenarios for idbridge-tokens as the server and relying parties see it:
//! signing and verifying, attacks on verification, keys at rest, the rotation
//! schedule, and the small helpers.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use idbridge_tokens::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

const ISS: &str = "https://id.example.com";
const AUD: &str = "app-1";
const NOW: i64 = 1_750_000_000;
const TYP: &str = "at+jwt";

fn expect() -> Expect<'static> {
    Expect {
        typ: TYP,
        issuer: ISS,
        audience: Some(AUD),
        now: NOW,
        leeway: 30,
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "user-42",
        "iat": NOW,
        "exp": NOW + 300,
    })
}

/// One key per algorithm, generated once per test binary (RSA is slow).
fn materials() -> &'static [KeyMaterial; 3] {
    static KEYS: OnceLock<[KeyMaterial; 3]> = OnceLock::new();
    KEYS.get_or_init(|| Algorithm::ALL.map(|alg| generate_key(alg).unwrap()))
}

fn material(alg: Algorithm) -> &'static KeyMaterial {
    materials().iter().find(|m| m.alg == alg).unwrap()
}

/// A second, unrelated key per algorithm: the attacker's.
fn attacker(alg: Algorithm) -> &'static KeyMaterial {
    static KEYS: OnceLock<[KeyMaterial; 3]> = OnceLock::new();
    KEYS.get_or_init(|| Algorithm::ALL.map(|alg| generate_key(alg).unwrap()))
        .iter()
        .find(|m| m.alg == alg)
        .unwrap()
}

fn signing_key(m: &KeyMaterial) -> SigningKey {
    SigningKey::from_material(&m.kid, m.alg, &m.private_der, &m.public_jwk).unwrap()
}

/// Our key set: all three keys, all signing.
fn keyset() -> KeySet {
    KeySet::new(
        materials().iter().map(signing_key).collect(),
        materials().iter().map(|m| m.kid.clone()).collect(),
    )
    .unwrap()
}

fn encoding_key(m: &KeyMaterial) -> EncodingKey {
    match m.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_der(&m.private_der),
        Algorithm::ES256 => EncodingKey::from_ec_der(&m.private_der),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&m.private_der),
    }
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.as_str().parse().unwrap()
}

/// A token signed by `m` with a header we choose entirely.
fn forge(m: &KeyMaterial, header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &encoding_key(m)).unwrap()
}

fn header_for(m: &KeyMaterial) -> Header {
    let mut h = Header::new(jwt_alg(m.alg));
    h.typ = Some(TYP.into());
    h.kid = Some(m.kid.clone());
    h
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn verify(ks: &KeySet, token: &str) -> Result<Value, TokenError> {
    ks.verify::<Value>(token, &expect())
}

fn sign_with_claims(alg: Algorithm, claims: &Value) -> String {
    keyset().sign(alg, TYP, claims).unwrap()
}

// ---------------------------------------------------------------- signing

#[test]
fn tokens_signed_with_each_algorithm_verify_and_return_their_claims() {
    let ks = keyset();
    assert_eq!(ks.algorithms(), Algorithm::ALL.to_vec());
    for alg in Algorithm::ALL {
        assert!(ks.can_sign(alg));
        let token = ks.sign(alg, TYP, &claims()).unwrap();
        let got: Value = ks.verify(&token, &expect()).unwrap();
        assert_eq!(got, claims(), "{alg}");
    }
}

#[test]
fn verified_claims_deserialize_into_the_callers_type() {
    #[derive(serde::Deserialize)]
    struct AccessClaims {
        sub: String,
        exp: i64,
    }
    let ks = keyset();
    let token = ks.sign(Algorithm::ES256, TYP, &claims()).unwrap();
    let got: AccessClaims = ks.verify(&token, &expect()).unwrap();
    assert_eq!((got.sub.as_str(), got.exp), ("user-42", NOW + 300));

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct NeedsScope {
        scope: String,
    }
    let err = ks.verify::<NeedsScope>(&token, &expect()).unwrap_err();
    assert!(matches!(err, TokenError::ClaimsShape(_)), "{err:?}");
}

#[test]
fn signed_header_is_exactly_typ_alg_and_kid() {
    let ks = keyset();
    for m in materials() {
        let token = ks.sign(m.alg, "JWT", &claims()).unwrap();
        let header_b64 = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"typ": "JWT", "alg": m.alg.as_str(), "kid": m.kid})
        );
    }
}

#[test]
fn jwks_publishes_every_key_with_complete_public_fields_only() {
    let jwks = keyset().jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let b64len = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
    for m in materials() {
        let jwk = keys.iter().find(|k| k["kid"] == m.kid.as_str()).unwrap();
        assert_eq!(jwk, &m.public_jwk);
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], m.alg.as_str());
        let mut fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        match m.alg {
            Algorithm::RS256 => {
                assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);
                assert_eq!(jwk["kty"], "RSA");
                assert_eq!(jwk["e"], "AQAB", "e = 65537, minimal encoding");
                let n = b64len(&jwk["n"]);
                assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero");
                assert!(n[0] >= 0x80);
            }
            Algorithm::ES256 => {
                assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
                assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
                assert_eq!(b64len(&jwk["x"]).len(), 32);
                assert_eq!(b64len(&jwk["y"]).len(), 32);
            }
            Algorithm::EdDSA => {
                assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x"]);
                assert_eq!(
                    (&jwk["kty"], &jwk["crv"]),
                    (&json!("OKP"), &json!("Ed25519"))
                );
                assert_eq!(b64len(&jwk["x"]).len(), 32);
            }
        }
        // kid: 16 random bytes, base64url, not derived from the key.
        assert_eq!(URL_SAFE_NO_PAD.decode(&m.kid).unwrap().len(), 16);
    }
    let kids: std::collections::HashSet<_> = keys.iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids.len(), 3);
}

#[test]
fn relying_party_verifies_tokens_with_nothing_but_the_jwks_json() {
    let ks = keyset();
    let published = serde_json::to_string(&ks.jwks()).unwrap();
    let set: JwkSet = serde_json::from_str(&published).unwrap();
    for alg in Algorithm::ALL {
        let token = ks.sign(alg, TYP, &claims()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(jwt_alg(alg));
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[ISS]);
        validation.validate_exp = false; // NOW is a fixed test time
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "user-42", "{alg}");
    }
}

#[test]
fn a_key_published_ahead_verifies_but_does_not_sign() {
    let rs = material(Algorithm::RS256);
    let es = material(Algorithm::ES256);
    let ks = KeySet::new(vec![signing_key(rs), signing_key(es)], vec![rs.kid.clone()]).unwrap();
    assert_eq!(ks.kids(), vec![rs.kid.as_str(), es.kid.as_str()]);
    assert_eq!(ks.algorithms(), vec![Algorithm::RS256]);
    assert_eq!(ks.signing_kid(Algorithm::RS256), Some(rs.kid.as_str()));
    assert!(!ks.can_sign(Algorithm::ES256));
    assert!(matches!(
        ks.sign(Algorithm::ES256, TYP, &claims()),
        Err(TokenError::NoSigningKey(Algorithm::ES256))
    ));
    assert_eq!(ks.jwks()["keys"].as_array().unwrap().len(), 2);
    // A token from the other instance that already switched still verifies.
    let token = sign_with_claims(Algorithm::ES256, &claims());
    assert!(verify(&ks, &token).is_ok());
}

#[test]
fn key_set_refuses_inconsistent_signing_kids() {
    let rs = material(Algorithm::RS256);
    let other_rs = attacker(Algorithm::RS256);
    let two_signers = KeySet::new(
        vec![signing_key(rs), signing_key(other_rs)],
        vec![rs.kid.clone(), other_rs.kid.clone()],
    );
    assert!(matches!(two_signers, Err(TokenError::InvalidKeySet(_))));
    let unknown = KeySet::new(vec![signing_key(rs)], vec!["nope".into()]);
    assert!(matches!(unknown, Err(TokenError::InvalidKeySet(_))));
    let duplicate = KeySet::new(vec![signing_key(rs), signing_key(rs)], vec![]);
    assert!(matches!(duplicate, Err(TokenError::InvalidKeySet(_))));
    let empty = KeySet::new(vec![], vec![]).unwrap();
    assert_eq!(empty.jwks(), json!({"keys": []}));
}

// ---------------------------------------------------------------- attacks

#[test]
fn alg_none_tokens_are_rejected() {
    let ks = keyset();
    let genuine = sign_with_claims(Algorithm::RS256, &claims());
    let genuine_sig = genuine.rsplit('.').next().unwrap();
    let kid = &material(Algorithm::RS256).kid;
    for alg in ["none", "None", "NONE"] {
        let header = b64json(&json!({"alg": alg, "typ": TYP, "kid": kid}));
        let payload = b64json(&claims());
        for sig in ["", genuine_sig] {
            let token = format!("{header}.{payload}.{sig}");
            let err = verify(&ks, &token).unwrap_err();
            assert!(
                matches!(err, TokenError::AlgorithmNotAllowed),
                "{alg}: {err:?}"
            );
        }
    }
    let no_alg = format!(
        "{}.{}.{genuine_sig}",
        b64json(&json!({"typ": TYP, "kid": kid})),
        b64json(&claims())
    );
    assert!(matches!(
        verify(&ks, &no_alg),
        Err(TokenError::AlgorithmNotAllowed)
    ));
}

#[test]
fn rs256_key_relabelled_hs256_with_the_public_key_as_hmac_secret_is_rejected() {
    let ks = keyset();
    let rs = material(Algorithm::RS256);
    // Every form of "the public key" an attacker might try as the HMAC secret.
    let jwk_text = serde_json::to_string(&rs.public_jwk).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(rs.public_jwk["n"].as_str().unwrap())
        .unwrap();
    for secret in [
        jwk_text.as_bytes(),
        &n[..],
        rs.public_jwk["n"].as_str().unwrap().as_bytes(),
    ] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some(TYP.into());
        header.kid = Some(rs.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert!(matches!(
            verify(&ks, &token),
            Err(TokenError::AlgorithmNotAllowed)
        ));
    }
}

#[test]
fn a_header_alg_other_than_the_keys_own_is_rejected_even_if_we_support_it() {
    let ks = keyset();
    // Signed by our EdDSA key, but claiming to be the RSA key's token.
    let ed = material(Algorithm::EdDSA);
    let rs = material(Algorithm::RS256);
    let mut header = header_for(ed);
    header.kid = Some(rs.kid.clone());
    let token = forge(ed, header, &claims());
    assert!(matches!(
        verify(&ks, &token),
        Err(TokenError::AlgorithmNotAllowed)
    ));
    // The RSA key's kid with alg ES256, signed by our ES256 key.
    let es = material(Algorithm::ES256);
    let mut header = header_for(es);
    header.kid = Some(rs.kid.clone());
    let token = forge(es, header, &claims());
    assert!(matches!(
        verify(&ks, &token),
        Err(TokenError::AlgorithmNotAllowed)
    ));
}

#[test]
fn unknown_or_missing_kid_is_rejected() {
    let ks = keyset();
    for alg in Algorithm::ALL {
        let evil = attacker(alg);
        let token = forge(evil, header_for(evil), &claims());
        assert!(
            matches!(verify(&ks, &token), Err(TokenError::UnknownKey)),
            "{alg}"
        );
        let mut header = header_for(material(alg));
        header.kid = None;
        let token = forge(material(alg), header, &claims());
        assert!(
            matches!(verify(&ks, &token), Err(TokenError::UnknownKey)),
            "{alg}"
        );
    }
}

#[test]
fn keys_offered_by_the_token_itself_are_ignored() {
    let ks = keyset();
    for alg in Algorithm::ALL {
        let evil = attacker(alg);
        let evil_jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(evil.public_jwk.clone()).unwrap();
        // The attacker's own kid, with its key embedded and linked.
        let mut header = header_for(evil);
        header.jwk = Some(evil_jwk.clone());
        header.jku = Some("https://attacker.example/jwks.json".into());
        header.x5u = Some("https://attacker.example/cert.pem".into());
        let token = forge(evil, header, &claims());
        assert!(
            matches!(verify(&ks, &token), Err(TokenError::UnknownKey)),
            "{alg}"
        );
        // Our kid, but signed by the attacker's embedded key.
        let mut header = header_for(evil);
        header.kid = Some(material(alg).kid.clone());
        header.jwk = Some(evil_jwk);
        header.jku = Some("https://attacker.example/jwks.json".into());
        let token = forge(evil, header, &claims());
        assert!(
            matches!(verify(&ks, &token), Err(TokenError::BadSignature)),
            "{alg}"
        );
    }
    // And the presence of such headers does not stop our own tokens verifying.
    let rs = material(Algorithm::RS256);
    let mut header = header_for(rs);
    header.jku = Some("https://attacker.example/jwks.json".into());
    header.x5c = Some(vec![STANDARD.encode(b"not a certificate")]);
    assert!(verify(&ks, &forge(rs, header, &claims())).is_ok());
}

/// A token over exactly these header bytes, validly signed by our EdDSA key.
fn signed_raw_header(header: &str) -> String {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    let ed = material(Algorithm::EdDSA);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ed.private_der).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(pair.public_key()),
        ed.public_jwk["x"].as_str().unwrap()
    );
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), b64json(&claims()));
    let signature = pair.sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[test]
fn duplicate_header_names_cannot_smuggle_another_alg() {
    let ks = keyset();
    let kid = &material(Algorithm::EdDSA).kid;
    let control = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#);
    assert!(verify(&ks, &signed_raw_header(&control)).is_ok());
    for header in [
        format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}","alg":"EdDSA"}}"#),
        format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","alg":"none"}}"#),
        format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","kid":"other"}}"#),
    ] {
        assert!(
            verify(&ks, &signed_raw_header(&header)).is_err(),
            "{header}"
        );
    }
}

#[test]
fn crit_headers_are_rejected() {
    let ks = keyset();
    let token = sign_with_claims(Algorithm::EdDSA, &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["crit"] = json!(["exp"]);
    parts[0] = b64json(&header);
    assert!(matches!(
        verify(&ks, &parts.join(".")),
        Err(TokenError::Malformed)
    ));
}

#[test]
fn tampered_tokens_are_rejected() {
    let ks = keyset();
    for alg in Algorithm::ALL {
        let token = sign_with_claims(alg, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut elevated = claims();
        elevated["sub"] = json!("admin");
        let swapped = format!("{}.{}.{}", parts[0], b64json(&elevated), parts[2]);
        assert!(
            matches!(verify(&ks, &swapped), Err(TokenError::BadSignature)),
            "{alg}"
        );

        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[5] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert!(
            matches!(verify(&ks, &flipped), Err(TokenError::BadSignature)),
            "{alg}"
        );

        let stripped = format!("{}.{}.", parts[0], parts[1]);
        assert!(verify(&ks, &stripped).is_err(), "{alg}");
        for broken in [
            parts[..2].join("."),
            format!("{token}.extra"),
            format!("{}.{}", "%%%", parts[1..].join(".")),
            String::new(),
        ] {
            assert!(
                matches!(verify(&ks, &broken), Err(TokenError::Malformed)),
                "{alg} {broken}"
            );
        }
    }
}

// ---------------------------------------------------------------- claims

#[test]
fn typ_must_be_the_expected_one() {
    let ks = keyset();
    let m = material(Algorithm::ES256);
    let mut header = header_for(m);
    header.typ = Some("JWT".into());
    assert!(matches!(
        verify(&ks, &forge(m, header, &claims())),
        Err(TokenError::WrongType)
    ));
    let mut header = header_for(m);
    header.typ = None;
    assert!(matches!(
        verify(&ks, &forge(m, header, &claims())),
        Err(TokenError::WrongType)
    ));
    // An ID token is not an access token, even when signed by the same key.
    let id_token = keyset().sign(Algorithm::ES256, "JWT", &claims()).unwrap();
    assert!(matches!(verify(&ks, &id_token), Err(TokenError::WrongType)));
    // RFC 8725 §3.11: the full media type and case differences are the same typ.
    for typ in ["application/at+jwt", "AT+JWT"] {
        let mut header = header_for(m);
        header.typ = Some(typ.into());
        assert!(verify(&ks, &forge(m, header, &claims())).is_ok(), "{typ}");
    }
}

#[test]
fn issuer_must_be_ours() {
    let ks = keyset();
    let mut c = claims();
    c["iss"] = json!("https://id.example.com.evil");
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)),
        Err(TokenError::WrongIssuer)
    ));
    c["iss"] = json!([ISS]);
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)),
        Err(TokenError::WrongIssuer)
    ));
    c.as_object_mut().unwrap().remove("iss");
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)),
        Err(TokenError::MissingClaim("iss"))
    ));
}

#[test]
fn audience_must_include_the_expected_one_when_asked() {
    let ks = keyset();
    let mut c = claims();
    c["aud"] = json!("app-2");
    let token = sign_with_claims(Algorithm::EdDSA, &c);
    assert!(matches!(
        verify(&ks, &token),
        Err(TokenError::WrongAudience)
    ));
    // Not asked: any audience is fine.
    let any_aud = Expect {
        audience: None,
        ..expect()
    };
    assert!(ks.verify::<Value>(&token, &any_aud).is_ok());

    c["aud"] = json!(["app-2", AUD]);
    assert!(verify(&ks, &sign_with_claims(Algorithm::EdDSA, &c)).is_ok());
    c["aud"] = json!(["app-2", "app-3"]);
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::EdDSA, &c)),
        Err(TokenError::WrongAudience)
    ));
    c["aud"] = json!(7);
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::EdDSA, &c)),
        Err(TokenError::WrongAudience)
    ));
    c.as_object_mut().unwrap().remove("aud");
    let token = sign_with_claims(Algorithm::EdDSA, &c);
    assert!(matches!(
        verify(&ks, &token),
        Err(TokenError::MissingClaim("aud"))
    ));
    assert!(ks.verify::<Value>(&token, &any_aud).is_ok());
}

#[test]
fn expiry_is_enforced_with_leeway() {
    let ks = keyset();
    let with_exp = |exp: i64| {
        let mut c = claims();
        c["iat"] = json!(NOW - 600);
        c["exp"] = json!(exp);
        verify(&ks, &sign_with_claims(Algorithm::ES256, &c))
    };
    assert!(with_exp(NOW + 1).is_ok());
    assert!(with_exp(NOW - 10).is_ok(), "expired 10 s ago, leeway 30 s");
    assert!(with_exp(NOW - 29).is_ok());
    assert!(matches!(with_exp(NOW - 30), Err(TokenError::Expired)));
    assert!(matches!(with_exp(NOW - 31), Err(TokenError::Expired)));
    assert!(matches!(with_exp(i64::MIN), Err(TokenError::Expired)));

    let strict = Expect {
        leeway: 0,
        ..expect()
    };
    let mut c = claims();
    c["exp"] = json!(NOW);
    let token = sign_with_claims(Algorithm::ES256, &c);
    assert!(matches!(
        ks.verify::<Value>(&token, &strict),
        Err(TokenError::Expired)
    ));
    // Fractional NumericDate (RFC 7519 §2) is accepted.
    c["exp"] = json!(NOW as f64 + 60.5);
    assert!(verify(&ks, &sign_with_claims(Algorithm::ES256, &c)).is_ok());
}

#[test]
fn tokens_from_the_future_are_rejected_beyond_leeway() {
    let ks = keyset();
    let mut c = claims();
    c["iat"] = json!(NOW + 20);
    assert!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)).is_ok(),
        "clock skew within leeway"
    );
    c["iat"] = json!(NOW + 31);
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)),
        Err(TokenError::NotYetValid)
    ));
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert!(matches!(
        verify(&ks, &sign_with_claims(Algorithm::RS256, &c)),
        Err(TokenError::NotYetValid)
    ));
    c["nbf"] = json!(NOW + 30);
    assert!(verify(&ks, &sign_with_claims(Algorithm::RS256, &c)).is_ok());
}

#[test]
fn exp_and_iat_are_required_and_numeric() {
    let ks = keyset();
    for (claim, name) in [("exp", "exp"), ("iat", "iat")] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert!(
            matches!(verify(&ks, &sign_with_claims(Algorithm::EdDSA, &c)), Err(TokenError::MissingClaim(n)) if n == name)
        );
        let mut c = claims();
        c[claim] = json!("tomorrow");
        assert!(matches!(
            verify(&ks, &sign_with_claims(Algorithm::EdDSA, &c)),
            Err(TokenError::ClaimsShape(_))
        ));
    }
    let not_an_object = keyset()
        .sign(Algorithm::EdDSA, TYP, &json!(["iss", ISS]))
        .unwrap();
    assert!(matches!(
        verify(&ks, &not_an_object),
        Err(TokenError::Malformed)
    ));
}

// ---------------------------------------------------------------- keys at rest

#[test]
fn a_generated_key_survives_sealing_storing_and_loading() {
    let master = MasterKey::generate().unwrap();
    for m in materials() {
        let sealed = master.seal(&m.private_der, m.kid.as_bytes()).unwrap();
        let stored_jwk = serde_json::to_string(&m.public_jwk).unwrap();
        // ... a restart later:
        let der = master.open(&sealed, m.kid.as_bytes()).unwrap();
        let jwk: Value = serde_json::from_str(&stored_jwk).unwrap();
        let key = SigningKey::from_material(&m.kid, m.alg, &der, &jwk).unwrap();
        assert_eq!(
            (key.kid(), key.alg(), key.public_jwk()),
            (m.kid.as_str(), m.alg, &m.public_jwk)
        );
        // A token signed before the restart verifies after it, and vice versa.
        let before = sign_with_claims(m.alg, &claims());
        let ks = KeySet::new(vec![key], vec![m.kid.clone()]).unwrap();
        assert!(verify(&ks, &before).is_ok());
        assert!(verify(&keyset(), &ks.sign(m.alg, TYP, &claims()).unwrap()).is_ok());
        // A sealed key cannot be loaded under another kid (aad binds it).
        assert!(matches!(
            master.open(&sealed, b"another-kid"),
            Err(TokenError::Decrypt)
        ));
    }
}

#[test]
fn rsa_private_keys_are_pkcs1_and_the_others_pkcs8() {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let rs = material(Algorithm::RS256);
    let key = rsa::RsaPrivateKey::from_pkcs1_der(&rs.private_der).unwrap();
    assert_eq!(
        rsa::traits::PublicKeyParts::e(&key),
        &rsa::BigUint::from(65537u32)
    );
    assert_eq!(rsa::traits::PublicKeyParts::size(&key), 256);
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        // PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER version (0 or 1), AlgorithmIdentifier, ... }
        let der = &material(alg).private_der;
        assert_eq!(der[0], 0x30);
        assert!(der
            .windows(3)
            .take(6)
            .any(|w| w == [0x02, 0x01, 0x00] || w == [0x02, 0x01, 0x01]));
    }
}

#[test]
fn loading_a_key_with_a_jwk_that_does_not_belong_to_it_fails() {
    let rs = material(Algorithm::RS256);
    let es = material(Algorithm::ES256);
    let other_es = attacker(Algorithm::ES256);
    let load =
        |kid: &str, alg, der: &[u8], jwk: &Value| SigningKey::from_material(kid, alg, der, jwk);

    // Another key's public half.
    let mut jwk = other_es.public_jwk.clone();
    jwk["kid"] = json!(es.kid);
    assert!(matches!(
        load(&es.kid, es.alg, &es.private_der, &jwk),
        Err(TokenError::KeyMismatch("x"))
    ));
    // Stored under another kid.
    assert!(matches!(
        load("other-kid", es.alg, &es.private_der, &es.public_jwk),
        Err(TokenError::KeyMismatch("kid"))
    ));
    // Wrong alg label in the JWK.
    let mut jwk = rs.public_jwk.clone();
    jwk["alg"] = json!("PS256");
    assert!(matches!(
        load(&rs.kid, rs.alg, &rs.private_der, &jwk),
        Err(TokenError::KeyMismatch("alg"))
    ));
    let mut jwk = rs.public_jwk.clone();
    jwk["use"] = json!("enc");
    assert!(matches!(
        load(&rs.kid, rs.alg, &rs.private_der, &jwk),
        Err(TokenError::KeyMismatch("use"))
    ));
    // A private key of another type, or garbage.
    assert!(matches!(
        load(&es.kid, Algorithm::RS256, &es.private_der, &es.public_jwk),
        Err(TokenError::KeyDecode)
    ));
    assert!(matches!(
        load(&rs.kid, Algorithm::EdDSA, &rs.private_der, &rs.public_jwk),
        Err(TokenError::KeyDecode)
    ));
    assert!(matches!(
        load(&rs.kid, rs.alg, b"garbage", &rs.public_jwk),
        Err(TokenError::KeyDecode)
    ));
    // Extra fields in the stored JWK (even a private one) are never published.
    let mut jwk = es.public_jwk.clone();
    jwk["d"] = json!("c2VjcmV0");
    let key = load(&es.kid, es.alg, &es.private_der, &jwk).unwrap();
    assert_eq!(key.public_jwk(), &es.public_jwk);
}

#[test]
fn master_key_seal_and_open_detect_wrong_keys_labels_and_tampering() {
    let master = MasterKey::generate().unwrap();
    let sealed = master
        .seal(b"upstream refresh token", b"wechat:refresh")
        .unwrap();
    assert_eq!(
        master.open(&sealed, b"wechat:refresh").unwrap(),
        b"upstream refresh token"
    );

    let other = MasterKey::generate().unwrap();
    assert!(matches!(
        other.open(&sealed, b"wechat:refresh"),
        Err(TokenError::Decrypt)
    ));
    assert!(matches!(
        master.open(&sealed, b"wechat:access"),
        Err(TokenError::Decrypt)
    ));
    assert!(matches!(
        master.open(&sealed, b""),
        Err(TokenError::Decrypt)
    ));
    for i in 0..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[i] ^= 0x01;
        assert!(
            matches!(
                master.open(&flipped, b"wechat:refresh"),
                Err(TokenError::Decrypt)
            ),
            "byte {i}"
        );
    }
    // The same key, parsed back from its encoded form, opens it.
    let reparsed = MasterKey::parse(&master.encode()).unwrap();
    assert_eq!(
        reparsed.open(&sealed, b"wechat:refresh").unwrap(),
        b"upstream refresh token"
    );
    assert!(master
        .open(&master.seal(b"", b"x").unwrap(), b"x")
        .unwrap()
        .is_empty());
}

#[test]
fn master_key_parses_hex_and_every_base64_form_of_32_bytes_only() {
    let bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(200))
        .collect();
    let probe = MasterKey::parse(&URL_SAFE_NO_PAD.encode(&bytes)).unwrap();
    let sealed = probe.seal(b"probe", b"").unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let forms = [
        hex.clone(),
        hex.to_uppercase(),
        STANDARD.encode(&bytes),
        STANDARD.encode(&bytes).trim_end_matches('=').to_owned(),
        base64::engine::general_purpose::URL_SAFE.encode(&bytes),
        URL_SAFE_NO_PAD.encode(&bytes),
        format!("  {}\n", STANDARD.encode(&bytes)),
    ];
    for form in &forms {
        let key = MasterKey::parse(form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(
            key.open(&sealed, b"").unwrap(),
            b"probe",
            "{form:?} is the same key"
        );
    }
    assert_eq!(probe.encode(), URL_SAFE_NO_PAD.encode(&bytes));

    let short = &bytes[..31];
    let long: Vec<u8> = [&bytes[..], &[0]].concat();
    let hex31: String = short.iter().map(|b| format!("{b:02x}")).collect();
    for bad in [
        STANDARD.encode(short),
        URL_SAFE_NO_PAD.encode(short),
        hex31,
        STANDARD.encode(&long),
        format!("{}zz", &hex[..62]),
        String::new(),
    ] {
        let err = MasterKey::parse(&bad).unwrap_err();
        assert!(matches!(err, TokenError::InvalidMasterKey(_)), "{bad:?}");
        assert!(err.to_string().contains("32 random bytes"), "{err}");
    }
}

// ---------------------------------------------------------------- rotation

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
const POLICY: RotationPolicy = RotationPolicy {
    rotate_every: 30 * DAY,
    publish_ahead: DAY,
    max_token_lifetime: 2 * HOUR,
};

/// A store of key metadata that applies actions the way the server would.
#[derive(Default)]
struct Store {
    keys: Vec<KeyMeta>,
    next: u32,
}

impl Store {
    fn apply(&mut self, actions: &[KeyAction], now: i64) {
        for action in actions {
            match action.clone() {
                KeyAction::Create {
                    alg,
                    generation,
                    activates_at,
                } => {
                    self.next += 1;
                    self.keys.push(KeyMeta {
                        kid: format!("{alg}-{}", self.next),
                        alg,
                        generation,
                        created_at: now,
                        activates_at,
                        retires_at: None,
                        expires_at: None,
                    });
                }
                KeyAction::Schedule {
                    kid,
                    retires_at,
                    expires_at,
                } => {
                    let key = self.keys.iter_mut().find(|k| k.kid == kid).unwrap();
                    key.retires_at = Some(retires_at);
                    key.expires_at = Some(expires_at);
                }
                KeyAction::Delete { kid } => self.keys.retain(|k| k.kid != kid),
            }
        }
    }

    /// Plans and applies; returns what was planned.
    fn tick(&mut self, algs: &[Algorithm], now: i64) -> Vec<KeyAction> {
        let actions = plan_rotation(&self.keys, algs, &POLICY, now);
        self.apply(&actions, now);
        actions
    }
}

#[test]
fn first_start_creates_generation_one_of_each_algorithm_signing_at_once() {
    let actions = plan_rotation(&[], &Algorithm::ALL, &POLICY, NOW);
    let expected: Vec<KeyAction> = Algorithm::ALL
        .map(|alg| KeyAction::Create {
            alg,
            generation: 1,
            activates_at: NOW,
        })
        .to_vec();
    assert_eq!(actions, expected);
    let mut store = Store::default();
    store.apply(&actions, NOW);
    for alg in Algorithm::ALL {
        assert_eq!(
            signing_kid(&store.keys, alg, NOW),
            Some(format!("{alg}-{}", alg_index(alg) + 1))
        );
    }
}

#[test]
fn an_instance_starting_beside_another_signs_with_the_first_key_it_created() {
    // Two instances start together on an empty store. The one that wins the
    // insert planned at NOW + 1; the other's clock still reads NOW.
    let mut store = Store::default();
    store.tick(&[Algorithm::RS256], NOW + 1);
    assert_eq!(signing_kid(&store.keys, Algorithm::RS256, NOW), None);
    assert_eq!(
        signing_kid_at_start(&store.keys, Algorithm::RS256, NOW),
        Some("RS256-1".to_string())
    );
    // Further ahead than START_SKEW_SECS is not a neighbour's first key.
    assert_eq!(
        signing_kid_at_start(&store.keys, Algorithm::RS256, NOW + 1 - START_SKEW_SECS - 1),
        None
    );
    // While a key signs, a successor published ahead never signs early.
    let t1 = NOW + 30 * DAY;
    store.tick(&[Algorithm::RS256], t1);
    assert_eq!(
        signing_kid_at_start(&store.keys, Algorithm::RS256, t1 + DAY - 1),
        Some("RS256-1".to_string())
    );
}

fn alg_index(alg: Algorithm) -> usize {
    Algorithm::ALL.iter().position(|&a| a == alg).unwrap()
}

#[test]
fn a_restart_with_fresh_keys_changes_nothing() {
    let mut store = Store::default();
    store.tick(&Algorithm::ALL, NOW);
    assert_eq!(store.tick(&Algorithm::ALL, NOW), vec![]);
    assert_eq!(store.tick(&Algorithm::ALL, NOW + 29 * DAY), vec![]);
}

#[test]
fn a_key_rotates_through_publish_sign_retire_and_delete() {
    let algs = [Algorithm::RS256];
    let mut store = Store::default();
    store.tick(&algs, NOW);
    let old = "RS256-1".to_string();

    // rotate_every later: a successor is published a day before it signs.
    let t1 = NOW + 30 * DAY;
    let actions = store.tick(&algs, t1);
    assert_eq!(
        actions,
        vec![KeyAction::Create {
            alg: Algorithm::RS256,
            generation: 2,
            activates_at: t1 + DAY
        }]
    );
    let new = "RS256-2".to_string();
    assert_eq!(
        signing_kid(&store.keys, Algorithm::RS256, t1),
        Some(old.clone())
    );
    assert_eq!(published(&store.keys, t1), vec![old.clone(), new.clone()]);
    // Planning again while the successor is pending creates nothing more.
    assert_eq!(store.tick(&algs, t1 + HOUR), vec![]);
    assert_eq!(
        signing_kid(&store.keys, Algorithm::RS256, t1 + DAY - 1),
        Some(old.clone())
    );

    // Once it activates, it signs, and the old key is scheduled to leave when
    // the last token it could have signed has expired.
    let t2 = t1 + DAY + 17; // the planner runs a little after activation
    assert_eq!(
        signing_kid(&store.keys, Algorithm::RS256, t1 + DAY),
        Some(new.clone())
    );
    let actions = store.tick(&algs, t2);
    assert_eq!(
        actions,
        vec![KeyAction::Schedule {
            kid: old.clone(),
            retires_at: t1 + DAY,
            expires_at: t1 + DAY + 2 * HOUR
        }]
    );
    assert_eq!(published(&store.keys, t2), vec![old.clone(), new.clone()]);
    assert_eq!(store.tick(&algs, t2 + 1), vec![]);

    // After that, it leaves the JWKS and is deleted.
    let t3 = t1 + DAY + 2 * HOUR;
    assert_eq!(published(&store.keys, t3), vec![new.clone()]);
    assert_eq!(store.tick(&algs, t3), vec![KeyAction::Delete { kid: old }]);
    assert_eq!(store.keys.len(), 1);
    assert_eq!(store.tick(&algs, t3 + 1), vec![]);
}

#[test]
fn a_year_of_hourly_planning_always_has_a_signing_key_and_publishes_it_ahead() {
    let mut store = Store::default();
    let mut announced: std::collections::HashMap<String, i64> = Default::default();
    let mut t = NOW;
    while t < NOW + 365 * DAY {
        store.tick(&Algorithm::ALL, t);
        for kid in published(&store.keys, t) {
            announced.entry(kid).or_insert(t);
        }
        for alg in Algorithm::ALL {
            let kid = signing_kid(&store.keys, alg, t).expect("always a signing key");
            // Published a full publish_ahead before signing (except generation 1).
            let key = store.keys.iter().find(|k| k.kid == kid).unwrap();
            if key.generation > 1 {
                assert!(
                    t - announced[&kid] >= POLICY.publish_ahead - HOUR,
                    "{kid} at {t}"
                );
            }
        }
        // Never more than current + pending + retired-but-published per alg.
        assert!(store.keys.len() <= 3 * 3);
        t += HOUR;
    }
    let generations = store.keys.iter().map(|k| k.generation).max().unwrap();
    assert!((12..=14).contains(&generations), "{generations}");
}

#[test]
fn tokens_signed_by_a_key_verify_until_they_expire_across_its_retirement() {
    // Simulate with real keys: each KeyMeta maps to a generated key.
    let algs = [Algorithm::EdDSA];
    let mut store = Store::default();
    let mut real: std::collections::HashMap<String, KeyMaterial> = Default::default();
    let keyset_at =
        |store: &Store, real: &mut std::collections::HashMap<String, KeyMaterial>, t| {
            let kids = published(&store.keys, t);
            let keys = kids
                .iter()
                .map(|kid| {
                    let m = real.entry(kid.clone()).or_insert_with(|| {
                        let mut m = generate_key(Algorithm::EdDSA).unwrap();
                        m.public_jwk["kid"] = json!(kid);
                        m.kid = kid.clone();
                        m
                    });
                    signing_key(m)
                })
                .collect();
            KeySet::new(
                keys,
                signing_kid(&store.keys, Algorithm::EdDSA, t)
                    .into_iter()
                    .collect(),
            )
            .unwrap()
        };
    store.tick(&algs, NOW);
    let last_old_token_at = NOW + 31 * DAY - 1;
    store.tick(&algs, NOW + 30 * DAY);
    let ks = keyset_at(&store, &mut real, last_old_token_at);
    let mut c = claims();
    c["iat"] = json!(last_old_token_at);
    c["exp"] = json!(last_old_token_at + POLICY.max_token_lifetime);
    let token = ks.sign(Algorithm::EdDSA, TYP, &c).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some("EdDSA-1")
    );

    // Successor active, old key retired: the old token still verifies until its exp.
    for t in [
        NOW + 31 * DAY,
        last_old_token_at + POLICY.max_token_lifetime - 1,
    ] {
        store.tick(&algs, t);
        let ks = keyset_at(&store, &mut real, t);
        assert_eq!(ks.signing_kid(Algorithm::EdDSA), Some("EdDSA-2"));
        let at_t = Expect {
            now: t,
            leeway: 0,
            ..expect()
        };
        assert!(ks.verify::<Value>(&token, &at_t).is_ok(), "at {t}");
    }
    let gone = last_old_token_at + POLICY.max_token_lifetime + 1;
    store.tick(&algs, gone);
    assert_eq!(published(&store.keys, gone), vec!["EdDSA-2".to_string()]);
}

#[test]
fn keys_of_an_algorithm_no_longer_configured_retire_now_and_expire_later() {
    let mut store = Store::default();
    store.tick(&Algorithm::ALL, NOW);
    let t = NOW + DAY;
    let actions = store.tick(&[Algorithm::RS256], t);
    assert_eq!(
        actions,
        vec![
            KeyAction::Schedule {
                kid: "ES256-2".into(),
                retires_at: t,
                expires_at: t + 2 * HOUR
            },
            KeyAction::Schedule {
                kid: "EdDSA-3".into(),
                retires_at: t,
                expires_at: t + 2 * HOUR
            },
        ]
    );
    assert_eq!(signing_kid(&store.keys, Algorithm::ES256, t), None);
    assert_eq!(published(&store.keys, t).len(), 3);
    assert_eq!(store.tick(&[Algorithm::RS256], t + 2 * HOUR).len(), 2);
    assert_eq!(
        published(&store.keys, t + 2 * HOUR),
        vec!["RS256-1".to_string()]
    );
}

#[test]
fn manual_rotation_publishes_ahead_and_the_schedule_takes_over() {
    let algs = [Algorithm::ES256];
    let mut store = Store::default();
    store.tick(&algs, NOW);
    let t = NOW + 3 * DAY;
    let action = manual_rotation(&store.keys, Algorithm::ES256, &POLICY, t);
    assert_eq!(
        action,
        KeyAction::Create {
            alg: Algorithm::ES256,
            generation: 2,
            activates_at: t + DAY
        }
    );
    store.apply(&[action], t);
    assert_eq!(store.tick(&algs, t + HOUR), vec![]);
    assert_eq!(
        signing_kid(&store.keys, Algorithm::ES256, t + DAY),
        Some("ES256-2".into())
    );
    assert_eq!(store.tick(&algs, t + DAY).len(), 1, "old key scheduled");
    assert_eq!(
        store.tick(&algs, t + DAY + 2 * HOUR).len(),
        1,
        "old key deleted"
    );
    // The next automatic rotation counts from the manual key's activation.
    assert_eq!(store.tick(&algs, t + DAY + 29 * DAY), vec![]);
    assert_eq!(store.tick(&algs, t + DAY + 30 * DAY).len(), 1);
    // With no key at all, a manual rotation signs at once.
    assert_eq!(
        manual_rotation(&[], Algorithm::RS256, &POLICY, t),
        KeyAction::Create {
            alg: Algorithm::RS256,
            generation: 1,
            activates_at: t
        }
    );
}

#[test]
fn an_algorithm_left_without_a_signing_key_gets_one_at_once() {
    let algs = [Algorithm::RS256];
    let mut store = Store::default();
    store.tick(&algs, NOW);
    let t = NOW + 30 * DAY;
    store.tick(&algs, t); // RS256-2 pending
    store.keys.retain(|k| k.kid != "RS256-1"); // removed by hand
    assert_eq!(signing_kid(&store.keys, Algorithm::RS256, t + 1), None);
    let actions = store.tick(&algs, t + 1);
    assert_eq!(
        actions,
        vec![KeyAction::Create {
            alg: Algorithm::RS256,
            generation: 3,
            activates_at: t + 1
        }]
    );
    assert_eq!(
        signing_kid(&store.keys, Algorithm::RS256, t + 1),
        Some("RS256-3".into())
    );
    // The abandoned pending key never signs and goes away in due course.
    let actions = store.tick(&algs, t + 2);
    assert_eq!(
        actions,
        vec![KeyAction::Schedule {
            kid: "RS256-2".into(),
            retires_at: t + 1,
            expires_at: t + 1 + 2 * HOUR
        }]
    );
    assert_eq!(
        signing_kid(&store.keys, Algorithm::RS256, t + 2 * DAY),
        Some("RS256-3".into())
    );
}

// ---------------------------------------------------------------- helpers

#[test]
fn pkce_s256_matches_the_rfc7636_appendix_b_example() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(pkce_verifier_is_valid(verifier));
    assert_eq!(pkce_s256(verifier), challenge);
    assert!(pkce_s256_matches(verifier, challenge));
    assert!(!pkce_s256_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
        challenge
    ));
    assert!(!pkce_s256_matches(verifier, &challenge[..42]));
    assert!(!pkce_s256_matches(verifier, verifier), "plain is not S256");
    // A challenge made from a too-short verifier never matches.
    assert!(!pkce_s256_matches("short", &pkce_s256("short")));
}

#[test]
fn at_hash_matches_the_openid_connect_core_example() {
    // OpenID Connect Core 1.0, Appendix A.3 (RS256).
    let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
    assert_eq!(at_hash(token, Algorithm::RS256), "77QmUPtjPfzWtF2AnpK9RQ");
    assert_eq!(at_hash(token, Algorithm::ES256), "77QmUPtjPfzWtF2AnpK9RQ");
    // Ed25519 signs with SHA-512: left 32 bytes of SHA-512.
    assert_eq!(
        at_hash(token, Algorithm::EdDSA),
        "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
    );
}

#[test]
fn client_secrets_are_stored_salted_and_verified() {
    let secret = random_token(32).unwrap();
    let stored = hash_client_secret(&secret).unwrap();
    assert!(stored.starts_with("sha256$"));
    assert!(!stored.contains(&secret));
    assert!(verify_client_secret(&secret, &stored));
    assert!(!verify_client_secret(&format!("{secret}x"), &stored));
    assert!(!verify_client_secret("", &stored));
    let again = hash_client_secret(&secret).unwrap();
    assert_ne!(stored, again, "fresh salt each time");
    assert!(verify_client_secret(&secret, &again));
    // The salt is part of the hash: another row's salt with this hash fails.
    let salt_of = |s: &str| s.split('$').nth(1).unwrap().to_owned();
    let mixed = stored.replacen(&salt_of(&stored), &salt_of(&again), 1);
    assert!(!verify_client_secret(&secret, &mixed));
}

#[test]
fn stored_token_hashes_are_sha256_base64url() {
    assert_eq!(
        hash_token("abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
    assert_ne!(hash_token("abc"), hash_token("abd"));
    assert!(constant_time_eq(b"same", b"same"));
    assert!(!constant_time_eq(b"same", b"sane"));
    assert!(!constant_time_eq(b"same", b"same!"));
    assert!(constant_time_eq(b"", b""));
}

// ---------------------------------------------------------------- properties

mod properties {
    //! Verification over generated input: whatever the bytes, `verify` answers
    //! (never panics), and it accepts only what our own keys signed unchanged.

    use super::*;
    use proptest::prelude::*;

    fn alg_strategy() -> impl Strategy<Value = Algorithm> {
        prop::sample::select(Algorithm::ALL.to_vec())
    }

    /// Claims that pass every check, with generated extra members.
    fn valid_claims() -> impl Strategy<Value = Value> {
        (
            prop::collection::btree_map("[a-z_]{1,12}", any::<i64>(), 0..6),
            "\\PC{0,40}",
        )
            .prop_map(|(extra, sub)| {
                let mut c = claims();
                let obj = c.as_object_mut().unwrap();
                for (k, v) in extra {
                    obj.entry(k).or_insert(json!(v));
                }
                obj.insert("sub".into(), json!(sub));
                c
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_is_refused_without_panicking(token in "\\PC{0,300}") {
            prop_assert!(verify(&keyset(), &token).is_err());
        }

        #[test]
        fn three_arbitrary_segments_are_refused(
            a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,120}",
        ) {
            let token = format!("{a}.{b}.{c}");
            prop_assert!(verify(&keyset(), &token).is_err());
        }

        #[test]
        fn a_signed_token_round_trips_its_claims(alg in alg_strategy(), c in valid_claims()) {
            let token = sign_with_claims(alg, &c);
            prop_assert_eq!(verify(&keyset(), &token).unwrap(), c);
        }

        /// Changing any one character of a valid token makes it fail, except a
        /// change to the unused low bits of the last base64url character of a
        /// segment, which decodes to the same bytes (RFC 4648 §3.5); the test
        /// then checks that what verified is exactly what was signed.
        #[test]
        fn any_changed_character_is_refused(
            alg in alg_strategy(),
            c in valid_claims(),
            pos in any::<prop::sample::Index>(),
            replacement in prop::sample::select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".chars().collect::<Vec<_>>()
            ),
        ) {
            let token = sign_with_claims(alg, &c);
            let mut chars: Vec<char> = token.chars().collect();
            let i = pos.index(chars.len());
            prop_assume!(chars[i] != replacement);
            chars[i] = replacement;
            let changed: String = chars.into_iter().collect();
            match verify(&keyset(), &changed) {
                Err(_) => {}
                Ok(got) => {
                    let same_bytes = token.split('.').zip(changed.split('.')).all(|(x, y)| {
                        URL_SAFE_NO_PAD.decode(x).ok().is_some()
                            && URL_SAFE_NO_PAD.decode(x).ok() == URL_SAFE_NO_PAD.decode(y).ok()
                    });
                    prop_assert!(same_bytes, "a changed token verified: {changed}");
                    prop_assert_eq!(got, c);
                }
            }
        }

        #[test]
        fn unsigned_and_foreign_tokens_are_refused(alg in alg_strategy(), c in valid_claims()) {
            let ks = keyset();
            // alg=none with our kid and an empty or copied signature.
            let signed = sign_with_claims(alg, &c);
            let sig = signed.rsplit('.').next().unwrap_or_default().to_owned();
            let kid = material(alg).kid.clone();
            for s in ["", sig.as_str()] {
                let none = format!(
                    "{}.{}.{s}",
                    b64json(&json!({"alg": "none", "typ": TYP, "kid": kid})),
                    b64json(&c)
                );
                prop_assert!(verify(&ks, &none).is_err());
            }
            // The attacker's key under our kid.
            let mut h = header_for(attacker(alg));
            h.kid = Some(kid);
            prop_assert!(verify(&ks, &forge(attacker(alg), h, &c)).is_err());
        }

        #[test]
        fn expired_or_future_tokens_are_refused(
            alg in alg_strategy(),
            late in 31i64..1_000_000,
        ) {
            let mut expired = claims();
            expired["exp"] = json!(NOW - late);
            prop_assert!(verify(&keyset(), &sign_with_claims(alg, &expired)).is_err());
            let mut future = claims();
            future["iat"] = json!(NOW + late);
            prop_assert!(verify(&keyset(), &sign_with_claims(alg, &future)).is_err());
            let mut not_yet = claims();
            not_yet["nbf"] = json!(NOW + late);
            prop_assert!(verify(&keyset(), &sign_with_claims(alg, &not_yet)).is_err());
        }
    }
}
