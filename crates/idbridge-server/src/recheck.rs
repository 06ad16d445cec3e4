//! Re-checking a person upstream when an app refreshes (`recheck_on_refresh`):
//! before a refresh grant rotates, the broker asks the grant's connector, with
//! the upstream tokens stored at sign-in, whether the person is still valid
//! there ([`idbridge_core::Connector::refresh`]). A person the upstream no longer
//! accepts (tokens revoked or expired, person removed or disabled) loses the
//! grant; an upstream that is failing leaves the grant as it is and the app is
//! told to retry.

use crate::error::OAuthError;
use crate::state::AppState;
use crate::upstream::{open_upstream_tokens, seal_upstream_tokens};
use crate::upstream_errors::answer_for;
use idbridge_core::{ConnectorError, ExternalIdentity, RequestContext, Stage};
use idbridge_store::FamilyRow;

/// The connector a grant began with (recorded in its family at sign-in or
/// token exchange).
fn family_connector(family: &FamilyRow) -> Option<&str> {
    family.payload.get("connector_id").and_then(|v| v.as_str())
}

/// Before `family` is refreshed: when its connector has `recheck_on_refresh`,
/// re-check the person upstream. `Ok` lets the refresh go on (and stores the
/// renewed upstream tokens); an error is the app's answer, and a person the
/// upstream refused has lost the grant by then.
pub async fn before_refresh(
    state: &AppState,
    client_id: &str,
    family: &FamilyRow,
) -> Result<(), OAuthError> {
    let Some(connector_id) = family_connector(family) else {
        return Ok(());
    };
    let Some(entry) = state.connector(connector_id) else {
        return Ok(());
    };
    if !entry.recheck_on_refresh {
        return Ok(());
    }
    let identities = state
        .store
        .list_identities(&family.user_id)
        .await
        .map_err(OAuthError::store)?;
    // The most recently used identity of this connector (one per person in practice).
    let Some(identity) = identities
        .iter()
        .filter(|i| i.connector_id == connector_id)
        .max_by_key(|i| i.last_login_at)
    else {
        let e = ConnectorError::new(Stage::Refresh, idbridge_core::ErrorKind::NotAllowed)
            .upstream(
                "identity_unlinked",
                "the upstream identity of this grant is no longer linked to the account",
            )
            .fix(
                "the person unlinked this sign-in method (or an operator did); they sign in again",
            );
        return Err(refused(state, client_id, connector_id, family, &e).await);
    };
    let tokens = open_upstream_tokens(
        state,
        connector_id,
        &identity.subject,
        identity.upstream_tokens.as_deref(),
    );
    // The app's back end calls /token: no browser, no person's language.
    let ctx = RequestContext::new("", idbridge_core::Locale::En, state.now());
    let refreshed = entry
        .connector
        .refresh(&ctx, &identity.subject, &tokens)
        .await;
    let checked = refreshed
        .and_then(|i| i.screened(Stage::Refresh))
        .and_then(|i| same_subject(i, &identity.subject));
    match checked {
        Ok(fresh) => {
            state.upstream.succeeded(connector_id);
            let sealed = seal_upstream_tokens(
                state,
                connector_id,
                &identity.subject,
                fresh.upstream_tokens.as_ref(),
            );
            if let Some(sealed) = sealed {
                state
                    .store
                    .set_upstream_tokens(connector_id, &identity.subject, &family.user_id, sealed)
                    .await
                    .map_err(OAuthError::store)?;
            }
            crate::telemetry::refresh_recheck(state.connector_label(connector_id), "passed");
            tracing::debug!(stage = "refresh_recheck", connector = %connector_id, client_id, family = %family.id, "the person is still valid upstream");
            Ok(())
        }
        Err(e) if answer_for(e.kind).ends_grant => {
            Err(refused(state, client_id, connector_id, family, &e).await)
        }
        Err(e) => {
            crate::telemetry::refresh_recheck(state.connector_label(connector_id), "unavailable");
            if answer_for(e.kind).outage {
                state.upstream.failed(connector_id, state.now());
            }
            warn_line(
                "upstream_recheck_unavailable",
                connector_id,
                client_id,
                family,
                &e,
                "could not re-check the person upstream before a refresh; the grant is kept and nothing was issued, the app should retry",
            );
            Err(OAuthError::temporarily_unavailable(format!(
                "the broker re-checks this grant with {connector_id} before refreshing, and {connector_id} did not answer properly ({}: {}); the refresh token still works: retry shortly",
                e.stage.as_str(),
                e.kind.as_str()
            )))
        }
    }
}

fn same_subject(
    identity: ExternalIdentity,
    subject: &str,
) -> Result<ExternalIdentity, ConnectorError> {
    if identity.subject == subject {
        Ok(identity)
    } else {
        Err(
            ConnectorError::new(Stage::Refresh, idbridge_core::ErrorKind::BadResponse).upstream(
                "subject_mismatch",
                "the connector's re-check returned another person",
            ),
        )
    }
}

/// The upstream no longer accepts the person: end the grant, audit and log it,
/// and tell the app to sign the person in again.
async fn refused(
    state: &AppState,
    client_id: &str,
    connector_id: &str,
    family: &FamilyRow,
    e: &ConnectorError,
) -> OAuthError {
    crate::telemetry::refresh_recheck(state.connector_label(connector_id), "refused");
    let now = state.now();
    if let Err(err) = state
        .store
        .revoke_family(&family.id, "upstream_recheck_failed", now)
        .await
    {
        tracing::error!(stage = "refresh_recheck", error = %err, family = %family.id, "cannot revoke the grant the upstream refused");
        return OAuthError::store(err);
    }
    warn_line(
        "upstream_recheck_failed",
        connector_id,
        client_id,
        family,
        e,
        "the upstream no longer accepts this person; their grant is revoked and the app must sign them in again",
    );
    crate::audit::Event::UpstreamRecheckFailed {
        user_id: &family.user_id,
        client_id,
        connector_id,
        family: &family.id,
        error: e,
    }
    .record(state)
    .await;
    OAuthError::invalid_grant(format!(
        "{connector_id} no longer accepts this person ({}: {}{}); the grant is revoked: sign them in again",
        e.stage.as_str(),
        e.kind.as_str(),
        e.upstream_code
            .as_deref()
            .map(|c| format!(", upstream code {c}"))
            .unwrap_or_default()
    ))
}

/// One `WARN` line for a re-check that did not pass: the stage, the upstream's
/// code and message, and the fix, for the operator.
fn warn_line(
    event: &'static str,
    connector_id: &str,
    client_id: &str,
    family: &FamilyRow,
    e: &ConnectorError,
    what: &'static str,
) {
    tracing::warn!(
        event,
        stage = e.stage.as_str(),
        connector = %connector_id,
        client_id,
        user_id = %family.user_id,
        family = %family.id,
        kind = e.kind.as_str(),
        upstream_code = e.upstream_code.as_deref().unwrap_or("-"),
        upstream_message = e.upstream_message.as_deref().unwrap_or("-"),
        fix = e.fix.as_deref().unwrap_or("-"),
        "{what}"
    );
}
