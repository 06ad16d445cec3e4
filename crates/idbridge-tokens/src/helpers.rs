//! Small primitives for the server: random tokens, token hashes for storage,
//! client-secret hashing, PKCE (RFC 7636) and the OIDC `at_hash`.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::{Algorithm, TokenError};

/// Fills `out` from the operating system's CSPRNG.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), TokenError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| TokenError::Random)
}

/// `bytes` random bytes, base64url without padding (32 bytes → 43 characters).
/// For authorization codes, refresh tokens, state values.
pub fn random_token(bytes: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A new client secret: 256 random bits, base64url without padding (43
/// characters), so only RFC 3986 unreserved characters (`A-Z a-z 0-9 - _`):
/// it needs no escaping in `Authorization: Basic`, so `curl -u` and libraries
/// that skip RFC 6749 §2.3.1's form-encoding send it correctly.
pub fn generate_client_secret() -> Result<String, TokenError> {
    random_token(32)
}

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random characters from `A-Za-z0-9`, uniformly distributed (bytes of
/// 248 and above are rejected so that `byte % 62` is unbiased). For values a
/// person may have to type or that must avoid punctuation.
pub fn random_alnum(len: usize) -> Result<String, TokenError> {
    let mut out = String::with_capacity(len);
    // 248/256 acceptance: drawing len + len/16 + 8 bytes per round almost
    // always finishes in one round.
    let mut buf = vec![0u8; len + len / 16 + 8];
    while out.len() < len {
        fill_random(&mut buf)?;
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            if let Some(&c) = ALNUM.get(usize::from(b % 62)) {
                out.push(char::from(c));
            }
        }
    }
    Ok(out)
}

/// `len` random decimal digits, uniformly distributed: a one-time code a person
/// types (bytes of 250 and above are rejected so that `byte % 10` is unbiased).
pub fn random_digits(len: usize) -> Result<String, TokenError> {
    let mut out = String::with_capacity(len);
    let mut buf = vec![0u8; len + 8];
    while out.len() < len {
        fill_random(&mut buf)?;
        for &b in buf.iter().filter(|&&b| b < 250) {
            if out.len() == len {
                break;
            }
            out.push(char::from(b'0' + b % 10));
        }
    }
    Ok(out)
}

/// HMAC-SHA256 of `message` under `key`, lower-case hex: how a receiver checks
/// that a webhook came from the broker.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        message,
    );
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a bearer value, base64url: what the store keeps instead of an
/// authorization code or refresh token, so a database leak yields nothing usable.
/// Unsalted on purpose: the server looks rows up by this value, and the inputs
/// are random tokens with ≥128 bits of entropy.
pub fn hash_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Compares two byte strings in time independent of their contents (the
/// lengths are not secret and a length mismatch returns early).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

const SECRET_SCHEME: &str = "sha256";
const SECRET_SALT_LEN: usize = 16;

fn salted_sha256(salt: &[u8], secret: &str) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(secret.as_bytes());
    ctx.finish()
}

/// Hashes a client secret for storage as `sha256$<salt b64url>$<hash b64url>`,
/// hash = SHA-256(salt ‖ secret) with a 16-byte random salt.
///
/// Why not a slow KDF (argon2, bcrypt): client secrets are machine-generated
/// random strings (≥ 256 bits from [`random_token`]), so guessing is infeasible
/// however fast the hash is, while a slow KDF would cost tens of milliseconds
/// of CPU on every token request and turn /token into a denial-of-service
/// lever. The salt keeps equal secrets from having equal hashes. This is only
/// sound for generated secrets: the server must not let operators set
/// short, human-chosen client secrets.
pub fn hash_client_secret(secret: &str) -> Result<String, TokenError> {
    let mut salt = [0u8; SECRET_SALT_LEN];
    fill_random(&mut salt)?;
    let hash = salted_sha256(&salt, secret);
    Ok(format!(
        "{SECRET_SCHEME}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(hash)
    ))
}

/// Checks a presented client secret against the output of
/// [`hash_client_secret`], comparing hashes in constant time. An unknown or
/// malformed stored format never matches.
pub fn verify_client_secret(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(scheme), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if scheme != SECRET_SCHEME {
        return false;
    }
    let (Ok(salt), Ok(hash)) = (URL_SAFE_NO_PAD.decode(salt), URL_SAFE_NO_PAD.decode(hash)) else {
        return false;
    };
    if salt.is_empty() {
        return false;
    }
    constant_time_eq(salted_sha256(&salt, secret).as_ref(), &hash)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn pkce_verifier_is_valid(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2 S256: base64url(SHA-256(ASCII(verifier))), no padding.
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Whether `verifier` is a well-formed verifier (RFC 7636 §4.1) whose S256
/// transform equals `challenge`, compared in constant time. A malformed
/// verifier never matches, so the caller need not check it separately.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    pkce_verifier_is_valid(verifier)
        && constant_time_eq(pkce_s256(verifier).as_bytes(), challenge.as_bytes())
}

/// OIDC Core §3.1.3.6 `at_hash` (and, given a code, `c_hash`): the left half of
/// the hash of the ASCII token, base64url. The hash is the one of the ID
/// token's `alg`: SHA-256 for RS256 and ES256, SHA-512 for EdDSA (Ed25519).
pub fn at_hash(access_token: &str, alg: Algorithm) -> String {
    let algorithm = match alg {
        Algorithm::RS256 | Algorithm::ES256 => &digest::SHA256,
        Algorithm::EdDSA => &digest::SHA512,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(bytes.get(..bytes.len() / 2).unwrap_or(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_alnum_has_the_length_and_alphabet_asked_for() {
        for len in [0, 1, 20, 300] {
            let s = random_alnum(len).unwrap();
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_ne!(random_alnum(32).unwrap(), random_alnum(32).unwrap());
    }

    #[test]
    fn random_alnum_uses_the_whole_alphabet_roughly_evenly() {
        let s = random_alnum(62 * 200).unwrap();
        let mut counts = [0usize; 128];
        for b in s.bytes() {
            counts[usize::from(b)] += 1;
        }
        for &c in ALNUM {
            let n = counts[usize::from(c)];
            // Expected 200 each; a 10-sigma band keeps this from ever flaking.
            assert!(
                (60..=340).contains(&n),
                "{} appeared {n} times",
                char::from(c)
            );
        }
    }

    #[test]
    fn generated_client_secrets_use_only_unreserved_characters() {
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        for _ in 0..200 {
            let s = generate_client_secret().unwrap();
            assert_eq!(s.len(), 43, "{s}");
            assert!(s.chars().all(unreserved), "{s}");
            // Form-encoding leaves it as it is: Basic needs no extra step.
            let encoded: String = url_form_encode(&s);
            assert_eq!(encoded, s);
        }
    }

    fn url_form_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn random_token_has_the_entropy_asked_for() {
        let t = random_token(32).unwrap();
        assert_eq!(t.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
        assert_ne!(t, random_token(32).unwrap());
    }

    #[test]
    fn verify_client_secret_rejects_malformed_stored_values() {
        let stored = hash_client_secret("s3cret").unwrap();
        assert!(verify_client_secret("s3cret", &stored));
        let hash = stored.rsplit('$').next().unwrap();
        for bad in [
            "",
            "s3cret",
            "sha256$$",
            &format!("sha256$${hash}"),
            &stored.replacen("sha256", "sha512", 1),
            &format!("{stored}$extra"),
            &stored.replace('$', ":"),
        ] {
            assert!(!verify_client_secret("s3cret", bad), "{bad}");
        }
    }

    #[test]
    fn pkce_verifier_syntax_follows_rfc7636() {
        assert!(pkce_verifier_is_valid(&"a".repeat(43)));
        assert!(pkce_verifier_is_valid(&"A-._~9".repeat(22)[..128]));
        assert!(!pkce_verifier_is_valid(&"a".repeat(42)));
        assert!(!pkce_verifier_is_valid(&"a".repeat(129)));
        assert!(!pkce_verifier_is_valid(&format!("{}+", "a".repeat(43))));
        assert!(!pkce_verifier_is_valid(&format!("{}=", "a".repeat(43))));
        assert!(!pkce_verifier_is_valid(&format!("{}é", "a".repeat(43))));
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn digits_are_digits_of_the_asked_length() {
        let code = random_digits(6).unwrap_or_default();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
