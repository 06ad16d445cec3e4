//! What the broker makes of a connector's answer, in the browser flow
//! ([`crate::login`]) and in a token exchange ([`crate::exchange`]) alike: an
//! identity becomes what the store needs to resolve its account, and a failed
//! step becomes one log line for the operator, an audit event, and a mark on the
//! connector's upstream health.

use crate::audit::{Event, LoginVia};
use crate::state::AppState;
use idbridge_core::{ConnectorError, ErrorKind, ExternalIdentity};
use idbridge_store::NewLogin;

/// What the store needs to resolve the account of an upstream identity; the
/// upstream tokens are sealed with the master key (bound to connector and subject).
pub fn new_login(state: &AppState, connector_id: &str, identity: &ExternalIdentity) -> NewLogin {
    let sealed_tokens = match &identity.upstream_tokens {
        None => None,
        Some(t) => {
            let aad = format!("upstream:{}:{}", identity.connector_id, identity.subject);
            serde_json::to_vec(t)
                .ok()
                .and_then(|clear| state.master_key.seal(&clear, aad.as_bytes()).ok())
        }
    };
    NewLogin {
        connector_id: connector_id.to_owned(),
        subject: identity.subject.clone(),
        link: identity
            .link_key
            .as_ref()
            .map(|l| (l.scope.clone(), l.key.clone())),
        name: identity.profile.name.clone(),
        picture: identity.profile.picture.clone(),
        locale: identity.profile.locale.clone(),
        profile: serde_json::to_value(&identity.profile).unwrap_or_default(),
        upstream_tokens: sealed_tokens,
    }
}

/// Record a failed connector step, in the browser flow or a token exchange: one
/// precise log line for the operator, an audit event, and the connector's
/// upstream health.
pub async fn record_connector_failure(
    state: &AppState,
    client_id: &str,
    connector_id: &str,
    e: &ConnectorError,
    via: LoginVia,
) {
    tracing::warn!(
        event = "login_failed",
        connector = %connector_id,
        client_id = %client_id,
        via = via.as_str(),
        stage = e.stage.as_str(),
        kind = e.kind.as_str(),
        upstream_code = e.upstream_code.as_deref().unwrap_or("-"),
        upstream_message = e.upstream_message.as_deref().unwrap_or("-"),
        fix = e.fix.as_deref().unwrap_or("-"),
        "upstream sign-in failed"
    );
    Event::LoginFailed {
        client_id,
        connector_id,
        error: e,
        via,
    }
    .record(state)
    .await;
    if matches!(
        e.kind,
        ErrorKind::UpstreamUnavailable
            | ErrorKind::Timeout
            | ErrorKind::BadResponse
            | ErrorKind::RateLimited
    ) {
        state.upstream.failed(connector_id, state.now());
    }
}
