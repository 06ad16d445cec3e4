//! The master key from config, and AES-256-GCM sealing of secrets at rest
//! (signing keys, with aad = kid; upstream tokens, with their own labels).

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::helpers::fill_random;
use crate::TokenError;

const KEY_LEN: usize = 32;
/// Format version of sealed values: `1 || nonce (12) || ciphertext || tag (16)`.
const SEALED_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// The 256-bit key that encrypts secrets at rest. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl MasterKey {
    /// Parses the configured key: 32 bytes as base64 (standard or url-safe
    /// alphabet, padded or not: 43 or 44 characters) or as 64 hex digits.
    /// Surrounding whitespace is ignored. The error says what is expected and
    /// never echoes the input.
    pub fn parse(s: &str) -> Result<MasterKey, TokenError> {
        let s = s.trim();
        let expected =
            "expected 32 random bytes as base64 (43 or 44 characters) or hex (64 characters)";
        if s.len() == 2 * KEY_LEN && is_hex(s) {
            let mut key = [0u8; KEY_LEN];
            for (out, pair) in key.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
                let (Some(hi), Some(lo)) = (
                    pair.first().copied().and_then(hex_value),
                    pair.get(1).copied().and_then(hex_value),
                ) else {
                    return Err(TokenError::InvalidMasterKey(expected.to_owned()));
                };
                *out = (hi << 4) | lo;
            }
            return Ok(MasterKey(key));
        }
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok());
        match decoded {
            Some(bytes) => match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
                Ok(key) => Ok(MasterKey(key)),
                Err(_) => Err(TokenError::InvalidMasterKey(format!(
                    "{expected}; this decodes as base64 to {} bytes",
                    bytes.len()
                ))),
            },
            None => Err(TokenError::InvalidMasterKey(format!(
                "{expected}; got {} characters that are neither",
                s.chars().count()
            ))),
        }
    }

    /// A new random master key.
    ///
    /// Returns a `Result` (the brief had a bare `MasterKey`) because the OS
    /// random generator can fail and this crate does not panic.
    pub fn generate() -> Result<MasterKey, TokenError> {
        let mut key = [0u8; KEY_LEN];
        fill_random(&mut key)?;
        Ok(MasterKey(key))
    }

    /// The key as base64url without padding (43 characters), which `parse` accepts.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    fn aead_key(&self) -> Result<LessSafeKey, ()> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| ())
    }

    /// A keyed hash (HMAC-SHA256) of `message` for `purpose`, lower-case hex:
    /// what the broker stores in place of a short secret such as a six-digit
    /// code, so that a copy of the database alone cannot test guesses against it.
    /// The key is derived from the master key and `purpose`
    /// (HMAC(master, "idbridge mac v1: " || purpose)); the master key itself
    /// keys nothing but encryption.
    pub fn mac_hex(&self, purpose: &str, message: &[u8]) -> String {
        self.mac(purpose, message)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The same keyed hash as [`MasterKey::mac_hex`], shaped like a token from
    /// [`crate::random_token`]`(32)`: base64url without padding, 43 characters.
    /// For a value the broker must be able to compute again from its input but
    /// nobody else can, such as the successor of a refresh token.
    pub fn mac_token(&self, purpose: &str, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, message))
    }

    fn mac(&self, purpose: &str, message: &[u8]) -> aws_lc_rs::hmac::Tag {
        use aws_lc_rs::hmac;
        let master = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let derived = hmac::sign(&master, format!("idbridge mac v1: {purpose}").as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        hmac::sign(&key, message)
    }

    /// Encrypts and authenticates `plaintext`, binding it to `aad` (which is
    /// authenticated, not stored: the same `aad` must be given to `open`).
    /// Output: `0x01 || 96-bit random nonce || ciphertext || 128-bit tag`.
    /// Random nonces are safe for well under 2^32 values per master key.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
        let key = self.aead_key().map_err(|_| TokenError::Encrypt)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| TokenError::Encrypt)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Decrypts a value from [`MasterKey::seal`]. Fails with
    /// [`TokenError::Decrypt`] on a wrong key, wrong `aad`, unknown version,
    /// truncation or any modification.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
        let (&version, rest) = sealed.split_first().ok_or(TokenError::Decrypt)?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(TokenError::Decrypt);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| TokenError::Decrypt)?;
        let key = self.aead_key().map_err(|_| TokenError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = key
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| TokenError::Decrypt)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn macs_depend_on_the_key_the_purpose_and_the_message() {
        let (a, b) = (MasterKey([7u8; KEY_LEN]), MasterKey([8u8; KEY_LEN]));
        let m = a.mac_hex("verification-code", b"id:123456");
        assert_eq!(m.len(), 64);
        assert_eq!(m, a.mac_hex("verification-code", b"id:123456"));
        assert_ne!(m, b.mac_hex("verification-code", b"id:123456"));
        assert_ne!(m, a.mac_hex("other", b"id:123456"));
        assert_ne!(m, a.mac_hex("verification-code", b"id:123457"));
        // Not the plain SHA-256 a database reader could compute.
        assert_ne!(m, crate::hash_token("id:123456"));
    }

    #[test]
    fn token_shaped_macs_are_the_same_mac_in_base64url() {
        let key = MasterKey([7u8; KEY_LEN]);
        let t = key.mac_token("refresh-successor", b"rt");
        assert_eq!(t.len(), crate::random_token(32).unwrap().len());
        assert_eq!(t, key.mac_token("refresh-successor", b"rt"));
        let hex: String = URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, key.mac_hex("refresh-successor", b"rt"));
        assert_ne!(t, key.mac_token("verification-code", b"rt"));
    }
    use super::*;

    #[test]
    fn debug_does_not_show_the_key() {
        let key = MasterKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn parse_errors_explain_the_expected_form_without_echoing_input() {
        let input = "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0";
        let msg = MasterKey::parse(input).unwrap_err().to_string();
        assert!(msg.contains("32 random bytes"), "{msg}");
        assert!(msg.contains("decodes as base64 to 24 bytes"), "{msg}");
        assert!(!msg.contains(input), "{msg}");
        let msg = MasterKey::parse("not a key!").unwrap_err().to_string();
        assert!(msg.contains("neither"), "{msg}");
    }

    #[test]
    fn sealed_values_are_randomized_and_versioned() {
        let key = MasterKey::generate().unwrap();
        let a = key.seal(b"same", b"kid").unwrap();
        let b = key.seal(b"same", b"kid").unwrap();
        assert_ne!(a, b, "fresh nonce per seal");
        assert_eq!(a[0], 1);
        assert_eq!(a.len(), 1 + 12 + 4 + 16);
        let mut v2 = a.clone();
        v2[0] = 2;
        assert!(matches!(key.open(&v2, b"kid"), Err(TokenError::Decrypt)));
        assert!(matches!(
            key.open(&a[..20], b"kid"),
            Err(TokenError::Decrypt)
        ));
        assert!(matches!(key.open(&[], b"kid"), Err(TokenError::Decrypt)));
    }
}
