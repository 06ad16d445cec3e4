//! Linking by email, the broker's side (docs/accounts.md, "Linking by email"):
//! the store decides in the login transaction whether a new identity whose
//! address is an account's link target is linked to it
//! ([`idbridge_store::LoginResolution::LinkedByEmail`]), held for the person to
//! prove the account ([`idbridge_store::LoginCompletion::EmailHeld`]), or
//! treated as anyone new; this module writes what each decision tells the
//! operator: the audit rows and the log lines, the same for browser sign-ins
//! and token exchanges.

use crate::audit::{EmailOutcome, EmailReason, Event, LoginVia};
use crate::state::AppState;
use idbridge_store::{AuditEvent, EmailDecision, NewLogin};
use std::net::IpAddr;

/// Who signed in where, for the events below.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub client_id: &'a str,
    pub connector_id: &'a str,
    pub via: LoginVia,
}

/// The normalised address of a login, when it has one.
pub fn address(login: &NewLogin) -> Option<&str> {
    login.email.as_ref().map(|e| e.address.as_str())
}

/// The address as the upstream gave it (shown to the person themselves).
pub fn shown_address(login: &NewLogin) -> Option<String> {
    login
        .profile
        .get("email")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| address(login).map(str::to_owned))
}

/// The audit row the store writes in the transaction that links `login` by its
/// email, should it (only a trusted, verified address can).
pub fn link_audit_row(
    login: &NewLogin,
    origin: Origin<'_>,
    at: i64,
    ip: Option<IpAddr>,
) -> Option<AuditEvent> {
    let email = login.email.as_ref().filter(|e| e.links())?;
    Some(
        Event::LinkedByEmail {
            user_id: None,
            client_id: origin.client_id,
            connector_id: origin.connector_id,
            email: &email.address,
            via: origin.via,
        }
        .row(at, ip),
    )
}

/// After a sign-in went through: the log line of a link by email (its audit
/// row is already written), or the audit row of an unverified address that
/// matched an account and was ignored.
pub async fn signed_in(
    state: &AppState,
    decision: Option<&EmailDecision>,
    login: &NewLogin,
    user_id: &str,
    origin: Origin<'_>,
) {
    let email = address(login).unwrap_or("-");
    match decision {
        Some(EmailDecision::Linked { owner }) => {
            tracing::info!(event = "linked_by_email", connector = %origin.connector_id, client_id = %origin.client_id, user_id = %owner, via = origin.via.as_str(), reason = EmailReason::TrustedVerified.as_str(), "a new sign-in was linked to the account holding its verified email (the connector has trust_email)");
        }
        Some(EmailDecision::Unverified { owner }) => {
            tracing::info!(event = "email_not_linked", connector = %origin.connector_id, client_id = %origin.client_id, owner = %owner, user_id, via = origin.via.as_str(), reason = EmailReason::Unverified.as_str(), "a new sign-in's email is another account's, but the upstream did not verify it: not linked, treated as anyone new");
            not_linked(
                state,
                owner,
                email,
                origin,
                EmailReason::Unverified,
                EmailOutcome::FirstLoginPolicy,
            )
            .await;
        }
        None => {}
    }
}

/// A verified address of an untrusted connector matched account `owner`, and
/// this is what became of the sign-in.
pub async fn held(
    state: &AppState,
    login: &NewLogin,
    owner: &str,
    origin: Origin<'_>,
    outcome: EmailOutcome,
) {
    let fix = if origin.via == LoginVia::TokenExchange {
        "the person signs in once in a browser and proves the account; set trust_email = true on the connector only if its upstream verifies addresses"
    } else {
        "none needed: the person may prove the account; set trust_email = true on the connector only if its upstream verifies addresses"
    };
    tracing::info!(event = "email_not_linked", connector = %origin.connector_id, client_id = %origin.client_id, owner = %owner, via = origin.via.as_str(), reason = EmailReason::UntrustedConnector.as_str(), outcome = outcome.as_str(), fix, "a new sign-in's verified email is another account's, but the connector is not trusted to link by email: not linked");
    not_linked(
        state,
        owner,
        address(login).unwrap_or("-"),
        origin,
        EmailReason::UntrustedConnector,
        outcome,
    )
    .await;
}

async fn not_linked(
    state: &AppState,
    owner: &str,
    email: &str,
    origin: Origin<'_>,
    reason: EmailReason,
    outcome: EmailOutcome,
) {
    Event::EmailNotLinked {
        owner,
        client_id: origin.client_id,
        connector_id: origin.connector_id,
        email,
        reason,
        outcome,
        via: origin.via,
    }
    .record(state)
    .await;
}
