//! The audit log's events, one variant per thing that happened, each with the
//! fields it records. The names and details written to the store are what
//! operators and tests read (`login`, `login_failed`, `{"reason": "disabled"}`…):
//! they are spelled here, once. The admin's own events are written by
//! [`crate::admin`].

use crate::state::AppState;
use idbridge_core::ConnectorError;
use serde_json::json;
use std::net::IpAddr;

/// How a sign-in reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVia {
    /// The browser flow: `/authorize`, the connector, `/callback`.
    Browser,
    /// RFC 8693 token exchange at the token endpoint (a native app's SDK token).
    TokenExchange,
}

impl LoginVia {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginVia::Browser => "browser",
            LoginVia::TokenExchange => "token_exchange",
        }
    }
}

/// How a successful sign-in found the person.
#[derive(Debug, Clone, Copy)]
pub enum SignedInBy<'a> {
    /// A browser sign-in upstream.
    Upstream,
    /// A browser sign-in upstream that proved an existing account, to which the
    /// waiting identity at connector `linked` was linked (`login_linked`).
    ProofForLinking { linked: &'a str },
    /// The SSO session, without going upstream.
    Sso,
    /// A token exchange.
    TokenExchange,
}

/// Why a sign-in was refused although the upstream knew the person.
#[derive(Debug, Clone, Copy)]
pub enum Denied {
    /// No broker account, and the connector's `first_login` does not create one.
    NoAccount,
    /// The broker account is disabled.
    Disabled,
}

/// Why a new identity whose email is an account's link target was linked to
/// it, or not (docs/accounts.md, "Linking by email").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailReason {
    /// `trusted_verified_email`: the connector has `trust_email` and the upstream
    /// verified the address.
    TrustedVerified,
    /// `untrusted_connector`: the upstream verified it, but the connector has no
    /// `trust_email`.
    UntrustedConnector,
    /// `email_unverified`: the upstream did not say `email_verified = true`.
    Unverified,
}

impl EmailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailReason::TrustedVerified => "trusted_verified_email",
            EmailReason::UntrustedConnector => "untrusted_connector",
            EmailReason::Unverified => "email_unverified",
        }
    }
}

/// What became of a sign-in whose email matched an account it was not linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailOutcome {
    /// `bind_offered`: asked to prove the account first.
    BindOffered,
    /// `separate_account`: the person chose an account of their own.
    SeparateAccount,
    /// `refused`: no account (a token exchange, or `first_login = "deny"`).
    Refused,
    /// `first_login_policy`: treated as anyone new; the person is told nothing.
    FirstLoginPolicy,
}

impl EmailOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailOutcome::BindOffered => "bind_offered",
            EmailOutcome::SeparateAccount => "separate_account",
            EmailOutcome::Refused => "refused",
            EmailOutcome::FirstLoginPolicy => "first_login_policy",
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `login` (or `login_linked`): the person signed in to `client_id`.
    SignedIn {
        /// `None` while the store resolves the account in the same transaction.
        user_id: Option<&'a str>,
        client_id: &'a str,
        connector_id: &'a str,
        by: SignedInBy<'a>,
    },
    /// `login_failed`: a connector step failed.
    LoginFailed {
        client_id: &'a str,
        connector_id: &'a str,
        error: &'a ConnectorError,
        via: LoginVia,
    },
    /// `login_denied`.
    LoginDenied {
        user_id: Option<&'a str>,
        client_id: &'a str,
        connector_id: &'a str,
        reason: Denied,
        via: LoginVia,
    },
    /// `bind_required`: a new identity waits for its owner to prove an account.
    BindRequired {
        client_id: &'a str,
        connector_id: &'a str,
    },
    /// `identity_linked`: on the account page.
    IdentityLinked {
        user_id: &'a str,
        connector_id: &'a str,
    },
    /// `identity_linked` with `"by": "email"`: a new identity was linked to the
    /// account holding its trusted, verified address.
    LinkedByEmail {
        /// `None` while the store resolves the account in the same transaction.
        user_id: Option<&'a str>,
        client_id: &'a str,
        connector_id: &'a str,
        email: &'a str,
        via: LoginVia,
    },
    /// `email_not_linked`: a new identity's address is account `owner`'s link
    /// target, and it was not linked to it.
    EmailNotLinked {
        owner: &'a str,
        client_id: &'a str,
        connector_id: &'a str,
        email: &'a str,
        reason: EmailReason,
        outcome: EmailOutcome,
        via: LoginVia,
    },
    /// `identity_unlinked`: on the account page.
    IdentityUnlinked {
        user_id: &'a str,
        connector_id: &'a str,
        link_key_removed: bool,
    },
    /// `step_up`: the signed-in person confirmed it is them with a one-time code
    /// that went through `channel` (as the code's row says).
    SteppedUp { user_id: &'a str, channel: &'a str },
    /// `verification_code_sent`.
    CodeSent {
        user_id: Option<&'a str>,
        /// The connector that carried it, when one did.
        connector_id: Option<&'a str>,
        purpose: &'static str,
        via: &'static str,
    },
    /// `phone_verified`.
    PhoneVerified {
        user_id: &'a str,
        client_id: &'a str,
    },
    /// `token_revoked`: the client revoked a grant (RFC 7009).
    TokenRevoked {
        user_id: &'a str,
        client_id: &'a str,
        family: &'a str,
    },
    /// `code_replayed`: a used authorization code came back; its grant is revoked.
    CodeReplayed {
        user_id: &'a str,
        client_id: &'a str,
        family: &'a str,
    },
    /// `refresh_token_replayed`: a rotated refresh token came back; its family is revoked.
    RefreshTokenReplayed {
        user_id: &'a str,
        client_id: &'a str,
        family: &'a str,
    },
    /// `upstream_recheck_failed`: a refresh re-checked upstream
    /// (`recheck_on_refresh`) found the person no longer accepted; the grant is
    /// revoked.
    UpstreamRecheckFailed {
        user_id: &'a str,
        client_id: &'a str,
        connector_id: &'a str,
        family: &'a str,
        error: &'a ConnectorError,
    },
    /// `consent_granted`: the person allowed the app `scope` on the consent page.
    ConsentGranted {
        user_id: &'a str,
        client_id: &'a str,
        scope: &'a str,
    },
    /// `consent_revoked`: the person took back what the app was allowed (the
    /// account page); `grants_revoked` of its grants ended with it.
    ConsentRevoked {
        user_id: &'a str,
        client_id: &'a str,
        grants_revoked: u64,
    },
    /// `logout`.
    LoggedOut {
        user_id: &'a str,
        client_id: Option<&'a str>,
    },
}

impl Event<'_> {
    /// The event's name in the store and the log.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SignedIn {
                by: SignedInBy::ProofForLinking { .. },
                ..
            } => "login_linked",
            Event::SignedIn { .. } => "login",
            Event::LoginFailed { .. } => "login_failed",
            Event::LoginDenied { .. } => "login_denied",
            Event::BindRequired { .. } => "bind_required",
            Event::IdentityLinked { .. } | Event::LinkedByEmail { .. } => "identity_linked",
            Event::EmailNotLinked { .. } => "email_not_linked",
            Event::IdentityUnlinked { .. } => "identity_unlinked",
            Event::SteppedUp { .. } => "step_up",
            Event::CodeSent { .. } => "verification_code_sent",
            Event::PhoneVerified { .. } => "phone_verified",
            Event::TokenRevoked { .. } => "token_revoked",
            Event::CodeReplayed { .. } => "code_replayed",
            Event::RefreshTokenReplayed { .. } => "refresh_token_replayed",
            Event::UpstreamRecheckFailed { .. } => "upstream_recheck_failed",
            Event::ConsentGranted { .. } => "consent_granted",
            Event::ConsentRevoked { .. } => "consent_revoked",
            Event::LoggedOut { .. } => "logout",
        }
    }

    /// (user, client, connector)
    fn subjects(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match *self {
            Event::SignedIn {
                user_id,
                client_id,
                connector_id,
                ..
            }
            | Event::LoginDenied {
                user_id,
                client_id,
                connector_id,
                ..
            }
            | Event::LinkedByEmail {
                user_id,
                client_id,
                connector_id,
                ..
            } => (user_id, Some(client_id), Some(connector_id)),
            Event::EmailNotLinked {
                owner,
                client_id,
                connector_id,
                ..
            } => (Some(owner), Some(client_id), Some(connector_id)),
            Event::LoginFailed {
                client_id,
                connector_id,
                ..
            }
            | Event::BindRequired {
                client_id,
                connector_id,
            } => (None, Some(client_id), Some(connector_id)),
            Event::IdentityLinked {
                user_id,
                connector_id,
            }
            | Event::IdentityUnlinked {
                user_id,
                connector_id,
                ..
            } => (Some(user_id), None, Some(connector_id)),
            Event::SteppedUp { user_id, .. } => (Some(user_id), None, None),
            Event::CodeSent {
                user_id,
                connector_id,
                ..
            } => (user_id, None, connector_id),
            Event::PhoneVerified { user_id, client_id }
            | Event::ConsentGranted {
                user_id, client_id, ..
            }
            | Event::ConsentRevoked {
                user_id, client_id, ..
            }
            | Event::TokenRevoked {
                user_id, client_id, ..
            }
            | Event::CodeReplayed {
                user_id, client_id, ..
            }
            | Event::RefreshTokenReplayed {
                user_id, client_id, ..
            } => (Some(user_id), Some(client_id), None),
            Event::UpstreamRecheckFailed {
                user_id,
                client_id,
                connector_id,
                ..
            } => (Some(user_id), Some(client_id), Some(connector_id)),
            Event::LoggedOut { user_id, client_id } => (Some(user_id), client_id, None),
        }
    }

    /// The event's `detail` object.
    fn detail(&self) -> serde_json::Value {
        match *self {
            Event::SignedIn { by, .. } => match by {
                SignedInBy::Upstream => json!({}),
                SignedInBy::ProofForLinking { linked } => json!({ "linked": linked }),
                SignedInBy::Sso => json!({ "sso": true }),
                SignedInBy::TokenExchange => json!({ "grant": "token_exchange" }),
            },
            Event::LoginFailed { error, via, .. } => {
                json!({ "error": error, "via": via.as_str() })
            }
            Event::LoginDenied { reason, via, .. } => {
                let reason = match reason {
                    Denied::NoAccount => "no_account",
                    Denied::Disabled => "disabled",
                };
                match via {
                    // The browser flow's refusals never named their way.
                    LoginVia::Browser => json!({ "reason": reason }),
                    LoginVia::TokenExchange => json!({ "reason": reason, "via": via.as_str() }),
                }
            }
            Event::LinkedByEmail { email, via, .. } => json!({
                "by": "email",
                "reason": EmailReason::TrustedVerified.as_str(),
                "email": email,
                "via": via.as_str(),
            }),
            Event::EmailNotLinked {
                email,
                reason,
                outcome,
                via,
                ..
            } => json!({
                "email": email,
                "reason": reason.as_str(),
                "outcome": outcome.as_str(),
                "via": via.as_str(),
            }),
            Event::IdentityUnlinked {
                link_key_removed, ..
            } => json!({ "by": "account_page", "link_key_removed": link_key_removed }),
            Event::SteppedUp { channel, .. } => json!({ "via": channel }),
            Event::ConsentGranted { scope, .. } => json!({ "scope": scope }),
            Event::ConsentRevoked { grants_revoked, .. } => {
                json!({ "by": "account_page", "grants_revoked": grants_revoked })
            }
            Event::CodeSent { purpose, via, .. } => json!({ "purpose": purpose, "via": via }),
            Event::TokenRevoked { family, .. }
            | Event::CodeReplayed { family, .. }
            | Event::RefreshTokenReplayed { family, .. } => json!({ "family": family }),
            Event::UpstreamRecheckFailed { family, error, .. } => {
                json!({ "family": family, "error": error })
            }
            Event::BindRequired { .. }
            | Event::IdentityLinked { .. }
            | Event::PhoneVerified { .. }
            | Event::LoggedOut { .. } => json!({}),
        }
    }

    /// The row the store keeps, for writing in the same transaction as what it records.
    pub fn row(&self, at: i64, ip: Option<IpAddr>) -> idbridge_store::AuditEvent {
        let (user_id, client_id, connector_id) = self.subjects();
        idbridge_store::AuditEvent {
            at,
            event: self.name().to_owned(),
            user_id: user_id.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
            connector_id: connector_id.map(str::to_owned),
            ip: ip.map(|i| i.to_string()),
            detail: self.detail(),
        }
    }

    /// Write it now (without an address); a failure is logged, never returned.
    pub async fn record(self, state: &AppState) {
        let event = self.name();
        if let Err(err) = state.store.append_audit(self.row(state.now(), None)).await {
            tracing::error!(stage = "audit", error = %err, event, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_stored_names_and_details() {
        let row = Event::SignedIn {
            user_id: None,
            client_id: "app",
            connector_id: "wx",
            by: SignedInBy::ProofForLinking { linked: "gh" },
        }
        .row(7, None);
        assert_eq!(row.event, "login_linked");
        assert_eq!(row.detail, json!({"linked": "gh"}));
        assert_eq!(row.client_id.as_deref(), Some("app"));
        let denied = |via| Event::LoginDenied {
            user_id: Some("u"),
            client_id: "app",
            connector_id: "wx",
            reason: Denied::Disabled,
            via,
        };
        assert_eq!(
            denied(LoginVia::Browser).row(0, None).detail,
            json!({"reason": "disabled"})
        );
        assert_eq!(
            denied(LoginVia::TokenExchange).row(0, None).detail,
            json!({"reason": "disabled", "via": "token_exchange"})
        );
        let unlinked = Event::IdentityUnlinked {
            user_id: "u",
            connector_id: "wx",
            link_key_removed: true,
        }
        .row(0, None);
        assert_eq!(unlinked.event, "identity_unlinked");
        assert_eq!(
            unlinked.detail,
            json!({"by": "account_page", "link_key_removed": true})
        );
    }
}
