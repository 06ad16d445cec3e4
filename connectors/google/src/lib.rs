//! `type = "google"`: sign in with Google on the `oidc` connector. Setup,
//! every key and troubleshooting: `docs/connectors/google.md`.
//!
//! - The issuer is `https://accounts.google.com` (ID tokens may also say the
//!   legacy `accounts.google.com`, which Google documents as valid).
//! - `hosted_domain` (a Google Workspace domain): sent as the `hd`
//!   authorization parameter, which only pre-selects accounts on Google's
//!   page, AND required in the ID token's `hd` claim, which Google signs; a
//!   person of another domain (or a consumer account, which has no `hd`) is
//!   refused with `not_allowed`.
//! - `email_verified` comes from Google's claim.
//! - `offline = true` sends `access_type=offline`, Google's way to issue a
//!   refresh token (it does not take the `offline_access` scope).

use idbridge_connector_kit::options::Secret;
use idbridge_connector_oidc::preset::{
    oidc_settings, own_options, IssuerRule, Preset, PresetHooks,
};
use idbridge_connector_oidc::OidcConnector;
use idbridge_core::{
    BuildContext, ConfigError, Connector, ConnectorError, ConnectorFactory, ConnectorSettings,
    ErrorKind, Problem, Stage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const KIND: &str = "google";
pub const ISSUER: &str = "https://accounts.google.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    client_id: String,
    client_secret: Secret,
    #[serde(default)]
    hosted_domain: Option<String>,
    /// Ask for a refresh token (`access_type=offline`: Google's way; it does
    /// not take the `offline_access` scope), for `recheck_on_refresh`.
    #[serde(default)]
    offline: bool,
    /// Google's issuer; another value only for a test double.
    #[serde(default = "default_issuer")]
    issuer: String,
}

fn default_issuer() -> String {
    ISSUER.into()
}

#[derive(Debug)]
struct Hooks {
    hosted_domain: Option<String>,
    offline: bool,
}

impl PresetHooks for Hooks {
    fn authorization_params(&self) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = self
            .hosted_domain
            .iter()
            .map(|d| ("hd".to_owned(), d.clone()))
            .collect();
        if self.offline {
            params.push(("access_type".into(), "offline".into()));
        }
        params
    }

    fn check_claims(
        &self,
        stage: Stage,
        claims: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let Some(domain) = &self.hosted_domain else {
            return Ok(());
        };
        match claims.get("hd").and_then(Value::as_str) {
            Some(hd) if hd.eq_ignore_ascii_case(domain) => Ok(()),
            got => Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                .upstream("hd", got.unwrap_or("none").chars().take(100).collect::<String>())
                .fix(format!(
                    "the person signed in with a Google account of {}, and hosted_domain is {domain:?}: they must use their {domain} account; to let other domains in, remove hosted_domain (or run another google connector for that domain)",
                    got.map(|d| format!("the domain {d:?}")).unwrap_or_else(|| "no Workspace domain (a consumer account)".into())
                ))),
        }
    }
}

fn connector(settings: &ConnectorSettings) -> Result<OidcConnector, Vec<ConfigError>> {
    let raw: Raw = own_options(settings)?;
    if let Some(d) = &raw.hosted_domain {
        let ok = !d.is_empty()
            && d.contains('.')
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(vec![ConfigError::new(
                format!("connectors[{}].hosted_domain", settings.id),
                "must be a domain name such as example.com (the Google Workspace primary domain)",
            )]);
        }
    }
    let also = if raw.issuer == ISSUER {
        vec!["accounts.google.com".to_owned()]
    } else {
        Vec::new()
    };
    let mut options = Map::new();
    options.insert("issuer".into(), json!(raw.issuer));
    options.insert("client_id".into(), json!(raw.client_id));
    options.insert("client_secret".into(), json!(raw.client_secret.expose()));
    let preset = Preset {
        kind: KIND,
        default_name: "Google",
        issuer: Some(IssuerRule::Exact {
            issuer: raw.issuer.clone(),
            also,
        }),
        secret_method: None,
        hooks: Arc::new(Hooks {
            hosted_domain: raw.hosted_domain.map(|d| d.to_ascii_lowercase()),
            offline: raw.offline,
        }),
    };
    OidcConnector::with_preset(&oidc_settings(settings, options), preset)
}

/// Builds `type = "google"` connectors.
pub struct GoogleFactory;

impl ConnectorFactory for GoogleFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(connector(settings)?))
    }

    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        match connector(settings) {
            Ok(c) => idbridge_connector_oidc::doctor(c, ctx),
            Err(_) => Vec::new(),
        }
    }
}

/// The settings as parsed (for tests: `Debug` hides the secret).
pub fn parsed_debug(settings: &ConnectorSettings) -> String {
    match connector(settings) {
        Ok(c) => format!("{:?}", c.settings()),
        Err(e) => format!("{e:?}"),
    }
}
