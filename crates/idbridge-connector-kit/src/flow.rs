//! What a connector keeps between `begin` and the callback: an OpenID nonce and a
//! PKCE (RFC 7636, S256) verifier, made fresh for each sign-in. `begin` sends
//! the nonce and the challenge upstream and keeps both values in
//! [`idbridge_core::Started::flow_data`] (stored by the broker with its state,
//! never sent to the browser); `complete` reads them back from
//! [`idbridge_core::CallbackRequest::flow_data`] with [`FlowSecrets::from_callback`].
//!
//! The broker's own `state` needs nothing from here: it is already random and
//! alphanumeric (`BeginRequest::state`), and the connector sends it upstream as
//! it is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use idbridge_core::{CallbackRequest, ConnectorError, ErrorKind, Stage};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `bytes` random bytes, base64url without padding (32 bytes: 43 characters).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `len` random characters of a-zA-Z0-9 (what the broker's state looks like).
pub fn random_alphanumeric(len: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), len)
}

/// The PKCE S256 challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Constant-time equality of two strings (their lengths are not secret).
fn equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `challenge` is the S256 challenge of `verifier` (what an upstream
/// checks; a test upstream can use it).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    equal(&pkce_challenge(verifier), challenge)
}

/// The per-sign-in secrets of an OpenID Connect style connector.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowSecrets {
    /// Sent as `nonce`; the ID token must carry it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Kept here; its challenge is sent as `code_challenge`, the verifier itself
    /// as `code_verifier` with the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<String>,
}

impl fmt::Debug for FlowSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowSecrets")
            .field("nonce", &self.nonce)
            .field(
                "pkce_verifier",
                &self.pkce_verifier.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl FlowSecrets {
    /// A fresh nonce and a fresh PKCE verifier (32 random bytes each).
    pub fn generate() -> Self {
        Self {
            nonce: Some(random_token(32)),
            pkce_verifier: Some(random_token(32)),
        }
    }

    /// Only a PKCE verifier (a plain OAuth 2.0 upstream).
    pub fn pkce_only() -> Self {
        Self {
            nonce: None,
            pkce_verifier: Some(random_token(32)),
        }
    }

    /// `code_challenge` for the authorize URL (with `code_challenge_method=S256`).
    pub fn code_challenge(&self) -> Option<String> {
        self.pkce_verifier.as_deref().map(pkce_challenge)
    }

    /// What to put in `Started::flow_data`.
    pub fn to_flow_data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// What `begin` kept, from the callback. Missing or unreadable flow data is
    /// the broker's fault or a begun-elsewhere callback: `InvalidRequest` at
    /// `Stage::Callback`.
    pub fn from_callback(callback: &CallbackRequest) -> Result<Self, ConnectorError> {
        Self::from_flow_data(&callback.flow_data)
    }

    pub fn from_flow_data(flow_data: &serde_json::Value) -> Result<Self, ConnectorError> {
        serde_json::from_value::<FlowSecrets>(flow_data.clone())
            .ok()
            .filter(|s| s.nonce.is_some() || s.pkce_verifier.is_some())
            .ok_or_else(|| {
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest).fix(
                    "the callback carries no nonce or PKCE verifier from begin: the sign-in was not begun by this connector, or the broker lost its flow data; start the sign-in again",
                )
            })
    }

    /// The nonce, or the same `InvalidRequest` as a missing flow.
    pub fn require_nonce(&self) -> Result<&str, ConnectorError> {
        self.nonce.as_deref().ok_or_else(|| {
            ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                .fix("begin kept no nonce for this sign-in; start the sign-in again")
        })
    }

    /// The PKCE verifier, or the same `InvalidRequest` as a missing flow.
    pub fn require_pkce_verifier(&self) -> Result<&str, ConnectorError> {
        self.pkce_verifier.as_deref().ok_or_else(|| {
            ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                .fix("begin kept no PKCE verifier for this sign-in; start the sign-in again")
        })
    }

    /// Whether `nonce` (from the ID token) is the one sent; constant time.
    pub fn nonce_matches(&self, nonce: &str) -> bool {
        self.nonce.as_deref().is_some_and(|n| equal(n, nonce))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_rfc_7636_example_challenge() {
        // RFC 7636, Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "another",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn secrets_go_through_flow_data_and_come_back() {
        let s = FlowSecrets::generate();
        let verifier = s.pkce_verifier.clone().unwrap();
        assert_eq!(verifier.len(), 43);
        assert_ne!(s.nonce, FlowSecrets::generate().nonce);
        assert!(!format!("{s:?}").contains(&verifier));
        let callback =
            CallbackRequest::new(BTreeMap::new(), "https://b/callback/x", s.to_flow_data());
        let back = FlowSecrets::from_callback(&callback).unwrap();
        assert_eq!(back, s);
        assert!(back.nonce_matches(s.nonce.as_deref().unwrap()));
        assert!(!back.nonce_matches("other"));
        assert_eq!(back.require_pkce_verifier().unwrap(), verifier);
        assert!(pkce_matches(&verifier, &back.code_challenge().unwrap()));

        let lost = CallbackRequest::new(
            BTreeMap::new(),
            "https://b/callback/x",
            serde_json::Value::Null,
        );
        let e = FlowSecrets::from_callback(&lost).unwrap_err();
        assert_eq!(
            (e.stage, e.kind),
            (Stage::Callback, ErrorKind::InvalidRequest)
        );
        assert!(FlowSecrets::pkce_only().require_nonce().is_err());
        let state = random_alphanumeric(32);
        assert!(state.len() == 32 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
