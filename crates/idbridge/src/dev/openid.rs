//! The generic OpenID provider fake (provider-sim) and the `oidc` connector
//! "Dev OpenID provider" on it: a real OpenID Connect sign-in to click through
//! (the fake's page offers its test users and a Deny link).

use super::{Ports, Running};

/// The id of the sign-in through the fake.
pub const CONNECTOR_ID: &str = "dev-oidc";

/// The `type = "oidc"` connector on the fake whose issuer is `issuer`.
pub fn connector(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "id": CONNECTOR_ID,
        "type": "oidc",
        "name": "Dev OpenID provider (simulator)",
        "issuer": issuer,
        "client_id": provider_sim::oidc::DEV_CLIENT_ID,
        "client_secret": provider_sim::oidc::DEV_CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "offline_access"],
    })
}

pub async fn start(ports: &mut Ports) -> Result<Running, String> {
    let listener = ports
        .listen("dev OpenID provider")
        .map_err(|e| format!("cannot start the dev OpenID provider: {e}"))?;
    let op =
        provider_sim::oidc::Sim::start_on(provider_sim::oidc::SimConfig::dev_default(), listener)
            .await
            .map_err(|e| format!("cannot start the dev OpenID provider: {e}"))?;
    let issuer = op.issuer();
    let banner = vec![format!(
        "  Dev OpenID provider: {issuer}  (sign-in \"Dev OpenID provider\": users ada and lin)"
    )];
    Ok(Running::new(op, vec![connector(&issuer)], banner))
}
