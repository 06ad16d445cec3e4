//! `type = "microsoft"`: sign in with Microsoft Entra ID (work and school
//! accounts, and personal Microsoft accounts), on the `oidc` connector.
//! Setup, every key and troubleshooting: `docs/connectors/microsoft.md`.
//!
//! - `tenant` is a tenant id (one organisation), `organizations` (any work
//!   or school account), `common` (those and personal accounts) or
//!   `consumers` (personal accounts only). Discovery is
//!   `{authority_url}/{tenant}/v2.0/.well-known/openid-configuration`.
//! - A multi-tenant authority publishes the issuer template
//!   `{authority_url}/{tenantid}/v2.0`: each ID token's `iss` must be that
//!   template with the token's own `tid` (checked inside the `oidc`
//!   connector's verification, with every other check). A tenant id's
//!   tokens must also carry that `tid`; `allowed_tenants` narrows a
//!   multi-tenant authority to some tenants.
//! - The subject is `{tid}:{oid}`: `oid` names the person in their directory,
//!   the same for every application of that directory, while `sub` is
//!   pairwise (another value per application), so a second app
//!   registration would see other people.
//! - The `email` claim is never treated as verified: a tenant's admin can
//!   type any address into an account (the "nOAuth" account takeover), so the
//!   profile gets it with `email_verified = false` and the broker never links
//!   accounts by it.

use idbridge_connector_kit::options::Secret;
use idbridge_connector_oidc::preset::{
    oidc_settings, own_options, safe_segment, IssuerRule, Preset, PresetHooks,
};
use idbridge_connector_oidc::OidcConnector;
use idbridge_core::{
    BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError, ConnectorFactory,
    ConnectorSettings, ErrorKind, ExternalIdentity, Problem, Stage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const KIND: &str = "microsoft";
/// Microsoft's global cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The tenant of personal Microsoft accounts.
pub const CONSUMERS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const PLACEHOLDER: &str = "{tenantid}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    client_id: String,
    client_secret: Secret,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default)]
    allowed_tenants: Vec<String>,
    #[serde(default = "default_authority")]
    authority_url: String,
}

fn default_tenant() -> String {
    "organizations".into()
}
fn default_authority() -> String {
    DEFAULT_AUTHORITY.into()
}

/// The tenants a sign-in may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Audience {
    /// One tenant id.
    Single(String),
    Organizations,
    Common,
    Consumers,
}

#[derive(Debug)]
struct Hooks {
    audience: Audience,
    allowed: Vec<String>,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn refused(stage: Stage, fix: String) -> ConnectorError {
    ConnectorError::new(stage, ErrorKind::NotAllowed).fix(fix)
}

impl PresetHooks for Hooks {
    /// Entra ID's `email` is whatever a tenant admin (or, for some account
    /// kinds, the person) typed: never evidence of a mailbox (the "nOAuth"
    /// takeover). So `trust_email` cannot be set on this connector.
    fn vouches_for_email(&self) -> bool {
        false
    }

    fn check_claims(
        &self,
        stage: Stage,
        claims: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
        if !safe_segment(tid) {
            return Err(
                ConnectorError::new(stage, ErrorKind::TokenVerificationFailed)
                    .fix("the Entra ID token has no usable tid (tenant id) claim"),
            );
        }
        let oid = claims.get("oid").and_then(Value::as_str).unwrap_or("");
        if oid.is_empty() {
            return Err(ConnectorError::new(stage, ErrorKind::TokenVerificationFailed)
                .fix("the Entra ID token has no oid claim: the app registration must issue v2.0 tokens with the openid and profile scopes"));
        }
        match &self.audience {
            Audience::Single(t) if !tid.eq_ignore_ascii_case(t) => {
                return Err(refused(stage, format!("the person's account is of tenant {tid}, and this connector serves only tenant {t}: invite them into that tenant as a guest, or use tenant = \"organizations\" with allowed_tenants")));
            }
            Audience::Organizations if tid == CONSUMERS_TENANT => {
                return Err(refused(stage, "a personal Microsoft account signed in, and tenant = \"organizations\" serves work and school accounts only: use tenant = \"common\" to let personal accounts in".into()));
            }
            Audience::Consumers if tid != CONSUMERS_TENANT => {
                return Err(refused(stage, format!("a work or school account (tenant {tid}) signed in, and tenant = \"consumers\" serves personal Microsoft accounts only")));
            }
            _ => {}
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.eq_ignore_ascii_case(tid)) {
            return Err(refused(stage, format!("the person's tenant {tid} is not in allowed_tenants: add it there to let its people in")));
        }
        Ok(())
    }

    fn map_identity(
        &self,
        _stage: Stage,
        identity: &mut ExternalIdentity,
        claims: &Map<String, Value>,
        _callback: Option<&CallbackRequest>,
    ) -> Result<(), ConnectorError> {
        let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
        let oid = claims.get("oid").and_then(Value::as_str).unwrap_or("");
        identity.subject = format!("{}:{}", tid.to_ascii_lowercase(), oid.to_ascii_lowercase());
        // Never verified: a tenant's admin sets it to anything ("nOAuth").
        if identity.profile.email.is_some() {
            identity.profile.email_verified = Some(false);
        }
        Ok(())
    }
}

/// Builds `type = "microsoft"` connectors.
pub struct MicrosoftFactory;

fn connector(settings: &ConnectorSettings) -> Result<OidcConnector, Vec<ConfigError>> {
    let raw: Raw = own_options(settings)?;
    let key = |k: &str| format!("connectors[{}].{k}", settings.id);
    let mut errors = Vec::new();
    let tenant = raw.tenant.trim().to_ascii_lowercase();
    let audience = match tenant.as_str() {
        "organizations" => Audience::Organizations,
        "common" => Audience::Common,
        "consumers" => Audience::Consumers,
        t if is_guid(t) => Audience::Single(t.to_owned()),
        _ => {
            errors.push(ConfigError::new(key("tenant"), format!("{:?} is not a tenant id (a GUID, as the app registration's \"Directory (tenant) ID\"), \"organizations\", \"common\" or \"consumers\"; use the tenant id rather than a domain name", raw.tenant)));
            Audience::Organizations
        }
    };
    for t in &raw.allowed_tenants {
        if !is_guid(t) {
            errors.push(ConfigError::new(
                key("allowed_tenants"),
                format!("{t:?} is not a tenant id (a GUID)"),
            ));
        }
    }
    if !raw.allowed_tenants.is_empty() && matches!(audience, Audience::Single(_)) {
        errors.push(ConfigError::new(key("allowed_tenants"), "only for a multi-tenant tenant (\"organizations\" or \"common\"); a tenant id already allows that tenant only"));
    }
    let authority_ok = idbridge_connector_kit::options::BaseUrl::new(raw.authority_url.clone())
        .check()
        .is_ok();
    if !authority_ok {
        errors.push(ConfigError::new(
            key("authority_url"),
            format!(
                "{:?} is not an http(s) base URL such as {DEFAULT_AUTHORITY}",
                raw.authority_url
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let authority = raw.authority_url.trim_end_matches('/').to_owned();
    let rule = match &audience {
        Audience::Single(t) => IssuerRule::Exact {
            issuer: format!("{authority}/{t}/v2.0"),
            also: Vec::new(),
        },
        Audience::Consumers => IssuerRule::Exact {
            issuer: format!("{authority}/{CONSUMERS_TENANT}/v2.0"),
            also: Vec::new(),
        },
        _ => IssuerRule::Template {
            template: format!("{authority}/{PLACEHOLDER}/v2.0"),
            placeholder: PLACEHOLDER.into(),
            claim: "tid".into(),
        },
    };
    let mut options = Map::new();
    options.insert("issuer".into(), json!(format!("{authority}/{tenant}/v2.0")));
    options.insert("client_id".into(), json!(raw.client_id));
    options.insert("client_secret".into(), json!(raw.client_secret.expose()));
    options.insert("token_endpoint_auth".into(), json!("client_secret_post"));
    let preset = Preset {
        kind: KIND,
        default_name: "Microsoft",
        issuer: Some(rule),
        secret_method: None,
        hooks: Arc::new(Hooks {
            audience,
            allowed: raw
                .allowed_tenants
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
        }),
    };
    OidcConnector::with_preset(&oidc_settings(settings, options), preset)
}

impl ConnectorFactory for MicrosoftFactory {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_guids() {
        assert!(is_guid("9188040d-6c67-4c5b-b112-36a304b66dad"));
        assert!(!is_guid("contoso.onmicrosoft.com"));
        assert!(!is_guid("9188040d-6c67-4c5b-b112"));
    }
}
