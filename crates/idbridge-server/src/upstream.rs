//! What the broker makes of a connector's answer, in the browser flow
//! ([`crate::login`]) and in a token exchange ([`crate::exchange`]) alike: an
//! identity becomes what the store needs to resolve its account, and a failed
//! step becomes one log line for the operator, an audit event, and a mark on the
//! connector's upstream health.

use crate::audit::{Event, LoginVia};
use crate::state::AppState;
use idbridge_core::{ConnectorError, ExternalIdentity, UpstreamTokens};
use idbridge_store::{LoginEmail, NewLogin};

/// The associated data binding sealed upstream tokens to their identity.
fn tokens_aad(connector_id: &str, subject: &str) -> String {
    format!("upstream:{connector_id}:{subject}")
}

/// Upstream tokens sealed with the master key for storage, bound to
/// (connector, subject); `None` when there are none (or sealing failed).
pub fn seal_upstream_tokens(
    state: &AppState,
    connector_id: &str,
    subject: &str,
    tokens: Option<&UpstreamTokens>,
) -> Option<Vec<u8>> {
    let clear = serde_json::to_vec(tokens?).ok()?;
    state
        .master_key
        .seal(&clear, tokens_aad(connector_id, subject).as_bytes())
        .ok()
}

/// The stored upstream tokens of an identity, opened; empty tokens when none are
/// stored or they cannot be opened (the connector then says what it misses).
pub fn open_upstream_tokens(
    state: &AppState,
    connector_id: &str,
    subject: &str,
    sealed: Option<&[u8]>,
) -> UpstreamTokens {
    sealed
        .and_then(|s| {
            state
                .master_key
                .open(s, tokens_aad(connector_id, subject).as_bytes())
                .ok()
        })
        .and_then(|clear| serde_json::from_slice(&clear).ok())
        .unwrap_or_default()
}

/// What the store needs to resolve the account of an upstream identity; the
/// upstream tokens are sealed with the master key (bound to connector and subject).
pub fn new_login(state: &AppState, connector_id: &str, identity: &ExternalIdentity) -> NewLogin {
    let sealed_tokens = seal_upstream_tokens(
        state,
        identity.connector_id.as_str(),
        &identity.subject,
        identity.upstream_tokens.as_ref(),
    );
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
        email: login_email(state, connector_id, identity),
    }
}

/// The identity's address as the linking rule sees it (docs/accounts.md,
/// "Linking by email"): normalised, whether the upstream verified it, whether
/// this connector is trusted to link by it, and which connectors' addresses are
/// link targets now.
fn login_email(
    state: &AppState,
    connector_id: &str,
    identity: &ExternalIdentity,
) -> Option<LoginEmail> {
    let address = identity.profile.email.as_deref()?;
    Some(LoginEmail {
        address: idbridge_store::email_key(address),
        verified: identity.profile.email_verified == Some(true),
        trusted: state.connector(connector_id).is_some_and(|c| c.trust_email),
        trusted_sources: state
            .connectors
            .iter()
            .filter(|(_, c)| c.trust_email)
            .map(|(id, _)| id.clone())
            .collect(),
    })
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
    crate::telemetry::sign_in_failed(state.connector_label(connector_id), via.as_str(), e);
    Event::LoginFailed {
        client_id,
        connector_id,
        error: e,
        via,
    }
    .record(state)
    .await;
    if crate::upstream_errors::answer_for(e.kind).outage {
        state.upstream.failed(connector_id, state.now());
    }
}
