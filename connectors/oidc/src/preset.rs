//! The extension API for presets (`google`, `microsoft`, `apple`): a preset
//! crate parses its own keys, translates them into this connector's options
//! and hands [`OidcConnector::with_preset`](crate::OidcConnector::with_preset)
//! a [`Preset`]. Every check of the `oidc` connector still runs (discovery,
//! the pinned algorithm, the signature, `aud`, `azp`, `exp`, `nonce`,
//! `at_hash`, PKCE, RFC 9207 `iss`); a preset can only add to them:
//!
//! - [`IssuerRule`]: an issuer that is not the discovery URL's base, or
//!   extra spellings of it (Google's `accounts.google.com`), or a template
//!   that each token fills with one of its own claims (Entra ID's
//!   `{tenantid}` with `tid`);
//! - [`PresetHooks::authorization_params`]: fixed extra authorization
//!   parameters (Google's `hd`);
//! - [`PresetHooks::check_claims`]: refusals after the ID token verified
//!   (Google's `hd` claim, Entra ID's tenants);
//! - [`PresetHooks::client_secret`]: a client secret made at request time
//!   (Apple's ES256 JWT), instead of a configured one;
//! - [`PresetHooks::map_identity`]: the identity after the claims were mapped,
//!   with the callback's form fields (Apple's `user`), on sign-in and refresh;
//! - [`PresetHooks::upstream_error`]: better fixes for the provider's own
//!   errors, of the authorization response and of the token endpoint
//!   (Apple's bare `invalid_client`, `user_cancelled_authorize`).
//!
//! Defaults for scopes and `response_mode` are simply the options the preset
//! passes.

use crate::config::ClientAuth;
use idbridge_connector_kit::options::Secret;
use idbridge_core::{CallbackRequest, ConnectorError, ExternalIdentity, Stage};
use serde_json::{Map, Value};
use std::sync::Arc;

pub use crate::issuer::{safe_segment, IssuerRule};

/// What a preset adds to the `oidc` connector's work. Every method has a
/// default that adds nothing.
pub trait PresetHooks: Send + Sync + std::fmt::Debug {
    /// Extra authorization request parameters (after the standard ones).
    fn authorization_params(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Checks on a verified ID token's claims (sign-in and refresh). The error
    /// should say what the operator or the person can do.
    fn check_claims(
        &self,
        _stage: Stage,
        _claims: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The client secret to send at `now`, when the preset makes it (used
    /// only when the preset says [`Preset::secret_method`]).
    fn client_secret(&self, stage: Stage, _now: i64) -> Result<Secret, ConnectorError> {
        Err(
            ConnectorError::new(stage, idbridge_core::ErrorKind::Misconfigured)
                .fix("this preset makes no client secret"),
        )
    }

    /// Adjust the identity mapped from `claims`; `callback` is the sign-in's
    /// callback (`None` on refresh).
    fn map_identity(
        &self,
        _stage: Stage,
        _identity: &mut ExternalIdentity,
        _claims: &Map<String, Value>,
        _callback: Option<&CallbackRequest>,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// An error the provider answered (in the authorization response, or from
    /// the token endpoint), re-worded for this provider.
    fn upstream_error(&self, error: ConnectorError) -> ConnectorError {
        error
    }

    /// [`idbridge_core::Connector::vouches_for_email`]: false for a provider
    /// whose `email` claim its users or their admins can set to anything
    /// (then `trust_email` is a configuration error).
    fn vouches_for_email(&self) -> bool {
        true
    }
}

/// No additions: plain `type = "oidc"`.
#[derive(Debug)]
pub struct NoHooks;

impl PresetHooks for NoHooks {}

/// A preset: its type, its defaults and its hooks.
#[derive(Debug, Clone)]
pub struct Preset {
    /// The connector type (`"google"`).
    pub kind: &'static str,
    /// The display name when the config has none.
    pub default_name: &'static str,
    /// `None`: the configured `issuer` exactly.
    pub issuer: Option<IssuerRule>,
    /// `Some(method)`: the client secret comes from
    /// [`PresetHooks::client_secret`] and is sent with `method`; the config
    /// then has no `client_secret`.
    pub secret_method: Option<ClientAuth>,
    pub hooks: Arc<dyn PresetHooks>,
}

impl Preset {
    /// The plain `oidc` connector.
    pub fn oidc() -> Self {
        Self {
            kind: crate::KIND,
            default_name: "OpenID Connect",
            issuer: None,
            secret_method: None,
            hooks: Arc::new(NoHooks),
        }
    }
}

/// The `oidc` keys every preset accepts and passes on unchanged.
pub const COMMON_KEYS: [&str; 7] = [
    "scopes",
    "link_scope",
    "clock_skew_secs",
    "jwks_refetch_min_secs",
    "discovery_ttl_secs",
    "connect_timeout_secs",
    "timeout_secs",
];

/// `settings` with `options` as the `oidc` connector's options, plus the
/// [`COMMON_KEYS`] the preset's config has (the `oidc` parser checks them and
/// names them in its errors).
pub fn oidc_settings(
    settings: &idbridge_core::ConnectorSettings,
    mut options: Map<String, Value>,
) -> idbridge_core::ConnectorSettings {
    for key in COMMON_KEYS {
        if let Some(v) = settings.options.get(key) {
            options.insert(key.to_owned(), v.clone());
        }
    }
    idbridge_core::ConnectorSettings {
        options: Value::Object(options),
        ..settings.clone()
    }
}

/// A preset's own keys parsed from `settings` (unknown keys refused, by
/// name), the [`COMMON_KEYS`] left for the `oidc` parser.
pub fn own_options<T: serde::de::DeserializeOwned>(
    settings: &idbridge_core::ConnectorSettings,
) -> Result<T, Vec<idbridge_core::ConfigError>> {
    let mut own = settings.clone();
    if let Value::Object(m) = &mut own.options {
        for key in COMMON_KEYS {
            m.remove(key);
        }
    }
    idbridge_connector_kit::options::parse_options(&own)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_exact_issuer_may_have_other_spellings() {
        let rule = IssuerRule::Exact {
            issuer: "https://accounts.google.com".into(),
            also: vec!["accounts.google.com".into()],
        };
        let none = Map::new();
        assert_eq!(rule.expected_for(&none).unwrap().len(), 2);
        assert!(rule.accepts_response_iss("accounts.google.com"));
        assert!(!rule.accepts_response_iss("https://accounts.google.com/"));
        assert_eq!(rule.discovery_issuer(), "https://accounts.google.com");
    }

    #[test]
    fn a_template_takes_the_tokens_own_claim() {
        let rule = IssuerRule::Template {
            template: "https://login.example/{tenantid}/v2.0".into(),
            placeholder: "{tenantid}".into(),
            claim: "tid".into(),
        };
        let claims = json!({"tid": "t-1"}).as_object().unwrap().clone();
        assert_eq!(
            rule.expected_for(&claims).unwrap(),
            vec!["https://login.example/t-1/v2.0".to_owned()]
        );
        for bad in [json!({}), json!({"tid": "a/b"}), json!({"tid": ""})] {
            assert!(rule.expected_for(bad.as_object().unwrap()).is_err());
        }
        assert!(rule.accepts_response_iss("https://login.example/t-2/v2.0"));
        assert!(!rule.accepts_response_iss("https://login.example/a/b/v2.0"));
        assert!(!rule.accepts_response_iss("https://evil.example/t-2/v2.0"));
    }
}
