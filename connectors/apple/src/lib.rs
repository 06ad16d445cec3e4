//! `type = "apple"`: Sign in with Apple on the `oidc` connector. Setup,
//! every key and troubleshooting: `docs/connectors/apple.md`.
//!
//! - Always `response_mode=form_post` (Apple requires it when `name` or
//!   `email` is asked for): the callback is a cross-site POST, which the
//!   broker posts again from its own origin so the browser cookie comes along.
//! - The client secret is an ES256 JWT made from `team_id`, `key_id`, the
//!   `.p8` `private_key` and `client_id` (the Services ID): `iss` the team,
//!   `sub` the client, `aud` `https://appleid.apple.com`, `iat` now, `exp`
//!   `client_secret_lifetime_secs` later (at most six months). It is kept in
//!   memory and made again once half its lifetime has passed ([`secret`]).
//! - Apple sends the person's name only once, in the `user` form field of the
//!   first sign-in; it becomes the profile's name then. `email_verified` and
//!   `is_private_email` may be strings; private-relay addresses
//!   (`…@privaterelay.appleid.com`) are kept as they are.
//! - Apple's bare errors (`invalid_client`, `invalid_grant`,
//!   `user_cancelled_authorize`) get fixes that say what to check.

pub mod secret;

use idbridge_connector_kit::options::Secret;
use idbridge_connector_oidc::config::ClientAuth;
use idbridge_connector_oidc::preset::{
    oidc_settings, own_options, IssuerRule, Preset, PresetHooks,
};
use idbridge_connector_oidc::OidcConnector;
use idbridge_core::{
    BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError, ConnectorFactory,
    ConnectorSettings, ErrorKind, ExternalIdentity, Problem, Stage,
};
use secret::{ClientSecretMaker, MAX_LIFETIME};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const KIND: &str = "apple";
pub const ISSUER: &str = "https://appleid.apple.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// The Services ID (web) or the app's bundle id.
    client_id: String,
    team_id: String,
    key_id: String,
    /// The `.p8` PEM (or `private_key_file`).
    private_key: Secret,
    #[serde(default = "default_lifetime")]
    client_secret_lifetime_secs: i64,
    /// Apple's issuer; another value only for a test double.
    #[serde(default = "default_issuer")]
    issuer: String,
}

fn default_lifetime() -> i64 {
    86_400 * 30
}
fn default_issuer() -> String {
    ISSUER.into()
}

#[derive(Debug)]
struct Hooks {
    secret: ClientSecretMaker,
}

/// The `user` form field of a first sign-in: `{"name": {"firstName",
/// "lastName"}, "email"}`.
fn first_login_name(
    callback: Option<&CallbackRequest>,
) -> Option<(Option<String>, Option<String>)> {
    // Not signed by Apple (the browser posts it): only read as a name, and small.
    let raw = callback?.param("user").filter(|u| u.len() <= 4096)?;
    let user: Value = serde_json::from_str(raw).ok()?;
    let part = |k: &str| {
        user.get("name")
            .and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(100).collect::<String>())
    };
    Some((part("firstName"), part("lastName")))
}

impl PresetHooks for Hooks {
    fn client_secret(&self, stage: Stage, now: i64) -> Result<Secret, ConnectorError> {
        self.secret.get(now).map_err(|why| {
            ConnectorError::new(stage, ErrorKind::Misconfigured).fix(format!(
                "cannot sign the client secret JWT with private_key: {why}"
            ))
        })
    }

    fn map_identity(
        &self,
        _stage: Stage,
        identity: &mut ExternalIdentity,
        _claims: &Map<String, Value>,
        callback: Option<&CallbackRequest>,
    ) -> Result<(), ConnectorError> {
        if let Some((given, family)) = first_login_name(callback) {
            let full: Vec<&str> = [given.as_deref(), family.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if !full.is_empty() {
                identity.profile.name = Some(full.join(" "));
            }
            identity.profile.given_name = given;
            identity.profile.family_name = family;
        }
        Ok(())
    }

    fn upstream_error(&self, error: ConnectorError) -> ConnectorError {
        let code = error.upstream_code.clone().unwrap_or_default();
        match code.as_str() {
            "invalid_client" => error.fix(format!(
                "Apple refused the client secret of client_id {:?}: check that client_id is the Services ID, team_id is the team that owns it, key_id is the id of the .p8 key in private_key, that key is enabled for Sign in with Apple with the Services ID's primary App ID, and the broker's clock is right (the secret's iat and exp come from it)",
                self.secret.client_id()
            )),
            "invalid_grant" if error.stage == Stage::Refresh => error,
            "invalid_grant" => error.fix(
                "Apple refused the code: it is valid for 5 minutes and once, for the client_id and redirect_uri it was issued to; start the sign-in again (and check the Services ID's Return URLs hold this connector's callback)",
            ),
            "user_cancelled_authorize" => {
                let mut e = ConnectorError::new(error.stage, ErrorKind::UserCancelled)
                    .fix("the person cancelled at Apple");
                e.upstream_code = error.upstream_code;
                e
            }
            _ => error,
        }
    }
}

fn connector(settings: &ConnectorSettings) -> Result<OidcConnector, Vec<ConfigError>> {
    let raw: Raw = own_options(settings)?;
    let key = |k: &str| format!("connectors[{}].{k}", settings.id);
    let mut errors = Vec::new();
    let ten = |s: &str| s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ten(&raw.team_id) {
        errors.push(ConfigError::new(
            key("team_id"),
            "must be the 10-character Team ID (top right of the Apple developer account)",
        ));
    }
    if !ten(&raw.key_id) {
        errors.push(ConfigError::new(key("key_id"), "must be the 10-character Key ID of the Sign in with Apple key (the AuthKey_KEYID.p8 file name)"));
    }
    if raw.client_id.trim().is_empty() {
        errors.push(ConfigError::new(
            key("client_id"),
            "must be the Services ID (e.g. com.example.web)",
        ));
    }
    if !(3600..=MAX_LIFETIME).contains(&raw.client_secret_lifetime_secs) {
        errors.push(ConfigError::new(
            key("client_secret_lifetime_secs"),
            format!("between 3600 and {MAX_LIFETIME} seconds (Apple accepts at most six months)"),
        ));
    }
    let maker = ClientSecretMaker::new(
        &raw.team_id,
        &raw.key_id,
        &raw.client_id,
        raw.private_key.expose(),
        raw.client_secret_lifetime_secs,
    );
    let maker = match maker {
        Ok(m) => Some(m),
        Err(why) => {
            errors.push(ConfigError::new(key("private_key"), why));
            None
        }
    };
    let (Some(maker), true) = (maker, errors.is_empty()) else {
        return Err(errors);
    };
    let mut options = Map::new();
    options.insert("issuer".into(), json!(raw.issuer));
    options.insert("client_id".into(), json!(raw.client_id));
    options.insert("response_mode".into(), json!("form_post"));
    if settings.options.get("scopes").is_none() {
        options.insert("scopes".into(), json!(["openid", "name", "email"]));
    }
    let preset = Preset {
        kind: KIND,
        default_name: "Apple",
        issuer: Some(IssuerRule::Exact {
            issuer: raw.issuer.clone(),
            also: Vec::new(),
        }),
        secret_method: Some(ClientAuth::SecretPost),
        hooks: Arc::new(Hooks { secret: maker }),
    };
    OidcConnector::with_preset(&oidc_settings(settings, options), preset)
}

/// Builds `type = "apple"` connectors.
pub struct AppleFactory;

impl ConnectorFactory for AppleFactory {
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

/// The settings as parsed (for tests: `Debug` hides the secrets).
pub fn parsed_debug(settings: &ConnectorSettings) -> String {
    match connector(settings) {
        Ok(c) => format!("{:?}", c.settings()),
        Err(e) => format!("{e:?}"),
    }
}
