//! Finishing a sign-in: resolve the broker account of the upstream identity and,
//! in one transaction, open the SSO session, store the app's code, write the audit
//! event and use up the request; then answer the app, or go on to the next step
//! (verifying a phone number; proving an existing account for an identity that
//! must be bound first). Also the end of a "link another method" sign-in from the
//! account page.

use super::page_error::{PageError, PageResult};
use super::request::{AuthRequest, EmailMatch, PendingLink};
use super::response::{app_outcome, error_redirect, outcome_for, remember_outcome, AppResponse};
use crate::audit::{Denied, EmailOutcome, Event, LoginVia, SignedInBy};
use crate::email_link::{self, Origin};
use crate::http::{cookie, found, SESSION_COOKIE};
use crate::issue::{self, Grant};
use crate::pages::ErrorPage;
use crate::state::{AppState, FirstLoginPolicy};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use idbridge_core::Locale;
use idbridge_store::{
    AuditEvent, CompleteLogin, FirstLogin, LinkOutcome, LoginCompletion, LoginResolution, NewLogin,
    SessionRow,
};
use idbridge_tokens::{hash_token, random_token};

/// Issue a code for a signed-in person and send them back to the app; `audit`
/// is written with the code.
pub async fn issue_code(
    state: &AppState,
    ar: &AuthRequest,
    user_id: &str,
    session: &SessionRow,
    audit: Option<AuditEvent>,
) -> HttpResponse {
    match code_redirect(state, ar, user_id, session, audit).await {
        Ok(app) => app.respond(),
        Err(e) => error_redirect(state, ar, e.error, &e.description),
    }
}

pub async fn code_redirect(
    state: &AppState,
    ar: &AuthRequest,
    user_id: &str,
    session: &SessionRow,
    audit: Option<AuditEvent>,
) -> Result<AppResponse, crate::error::OAuthError> {
    let grant = Grant {
        redirect_uri: ar.redirect_uri.clone(),
        scope: ar.scope.clone(),
        nonce: ar.nonce.clone(),
        code_challenge: ar.code_challenge.clone(),
        auth_time: session.auth_time,
        sid: session.id.clone(),
        connector_id: session.connector_id.clone(),
    };
    let code = issue::new_code(state, &ar.client_id, user_id, &grant, audit).await?;
    Ok(AppResponse::success(state, ar, &code))
}

/// A sign-in about to be finished: whose identity, through which flow, and how the
/// account is found.
pub struct SignIn<'a> {
    pub request_id: &'a str,
    pub flow_state: &'a str,
    /// The connector the person used (the SSO session remembers it).
    pub connector_id: &'a str,
    pub login: NewLogin,
    pub policy: FirstLogin,
    /// An identity that waited for this proof of an existing account.
    pub also_link: Option<NewLogin>,
    /// The browser signing in (a waiting identity is bound to it).
    pub browser_hash: &'a str,
    /// Its address, for the audit log.
    pub ip: Option<std::net::IpAddr>,
}

/// Finish a sign-in: resolve the account and, in one transaction, open the SSO
/// session, store the app's code, write the audit event and use up the request.
/// Then send the person to the app — or to the next step (binding an account,
/// verifying a phone number) when one is due.
pub async fn finish_sign_in(
    state: &AppState,
    ar: &AuthRequest,
    sign_in: SignIn<'_>,
    locale: Locale,
) -> PageResult {
    let SignIn {
        request_id,
        flow_state,
        connector_id,
        login,
        policy,
        also_link,
        browser_hash,
        ip,
    } = sign_in;
    let now = state.now();
    let unavailable = || {
        PageError::to_app(
            state,
            ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        )
    };
    let client = state
        .clients
        .get(&ar.client_id)
        .await
        .map_err(|_| unavailable())?
        .ok_or_else(|| PageError::unknown_client(locale))?;
    let (Ok(new_user_id), Ok(session_secret)) = (random_token(16), random_token(32)) else {
        return Err(PageError::internal(locale));
    };
    let session = SessionRow {
        id: hash_token(&session_secret),
        user_id: String::new(), // filled in by the store with the resolved account
        connector_id: connector_id.to_owned(),
        auth_time: now,
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.settings.tokens.session_ttl_secs,
        ended_at: None,
    };
    let grant = Grant {
        redirect_uri: ar.redirect_uri.clone(),
        scope: ar.scope.clone(),
        nonce: ar.nonce.clone(),
        code_challenge: ar.code_challenge.clone(),
        auth_time: now,
        sid: session.id.clone(),
        connector_id: connector_id.to_owned(),
    };
    let (code, code_row) = issue::code_row(state, &ar.client_id, "", &grant)
        .map_err(|e| PageError::to_app(state, ar, e.error, &e.description))?;
    let app = AppResponse::success(state, ar, &code);
    let phone_url = state.endpoint(&format!("/login/{request_id}/phone"));
    let consent_url = crate::login::consent_step::url(state, request_id);
    let proving = also_link.is_some();
    let bind_policy = !proving
        && state
            .connector(connector_id)
            .is_some_and(|c| c.first_login == FirstLoginPolicy::Bind);
    let pending_login = login.clone();
    let origin = Origin {
        client_id: &ar.client_id,
        connector_id,
        via: LoginVia::Browser,
    };
    let email_link_audit = email_link::link_audit_row(&login, origin, now, ip);
    let first_login = state.connector(connector_id).map(|c| c.first_login);
    // Account, session, code, audit, the used-up request and the flow's outcome:
    // one transaction, so a failure leaves nothing half-written.
    let completion = state
        .store
        .complete_login(
            CompleteLogin {
                login,
                policy,
                new_user_id,
                session,
                code: code_row,
                audit: Event::SignedIn {
                    user_id: None,
                    client_id: &ar.client_id,
                    connector_id,
                    by: match &also_link {
                        Some(l) => SignedInBy::ProofForLinking {
                            linked: &l.connector_id,
                        },
                        None => SignedInBy::Upstream,
                    },
                }
                .row(now, ip),
                auth_request_id: request_id.to_owned(),
                flow_state: flow_state.to_owned(),
                flow_outcome: app_outcome(state, flow_state, &app),
                also_link,
                require_phone: client.require_phone,
                phone_outcome: outcome_for(state, flow_state, Some(&phone_url)),
                email_link_audit,
                consent: crate::login::consent_step::check(&client, ar),
                consent_outcome: outcome_for(state, flow_state, Some(&consent_url)),
            },
            now,
        )
        .await;
    // An untrusted connector's verified address that is an account's: the
    // person proves that account (bind), unless the connector lets no one new
    // in — then refused like anyone unknown, telling nothing about the account.
    let completion = match completion {
        Ok(LoginCompletion::EmailHeld { owner }) if !proving => {
            let deny = first_login == Some(FirstLoginPolicy::Deny);
            let outcome = if deny {
                EmailOutcome::Refused
            } else {
                EmailOutcome::BindOffered
            };
            email_link::held(state, &pending_login, &owner, origin, outcome).await;
            if !deny {
                let email_match = EmailMatch {
                    email: email_link::shown_address(&pending_login).unwrap_or_default(),
                    owner,
                    may_create: first_login == Some(FirstLoginPolicy::Create),
                };
                return wait_for_binding(
                    state,
                    ar,
                    request_id,
                    flow_state,
                    pending_login,
                    browser_hash,
                    Some(email_match),
                )
                .await;
            }
            Ok(LoginCompletion::NotLinked)
        }
        other => other,
    };
    let next = match completion {
        Ok(LoginCompletion::SignedIn {
            user,
            resolution,
            needs_phone,
            needs_consent,
            email,
        }) => {
            email_link::signed_in(state, email.as_ref(), &pending_login, &user.id, origin).await;
            let how = match resolution {
                LoginResolution::Existing(_) => "existing",
                LoginResolution::Linked(_) => "linked",
                LoginResolution::LinkedByEmail(_) => "linked_by_email",
                _ => "created",
            };
            tracing::info!(event = "login", connector = %connector_id, client_id = %ar.client_id, user_id = %user.id, account = how, proof_for_binding = proving, "signed in");
            crate::telemetry::sign_in_completed(
                state.connector_label(connector_id),
                LoginVia::Browser.as_str(),
            );
            if needs_phone {
                tracing::info!(event = "phone_required", client_id = %ar.client_id, user_id = %user.id, "the app needs a verified phone number; asking for one");
                found(&phone_url)
            } else if needs_consent {
                tracing::info!(event = "consent_required", client_id = %ar.client_id, user_id = %user.id, "the app needs the person's consent; showing the consent page");
                found(&consent_url)
            } else {
                app.respond()
            }
        }
        Ok(LoginCompletion::NotLinked | LoginCompletion::EmailHeld { .. }) if proving => {
            tracing::info!(event = "login_failed", stage = "account", connector = %connector_id, reason = "proof_not_linked", "the sign-in offered as proof of an account is not linked to one either");
            remember_outcome(state, flow_state, None).await;
            return Err(ErrorPage::new(
                locale,
                StatusCode::BAD_REQUEST,
                "bind_proof_unknown",
                "bind_proof_unknown_todo",
            )
            .title("bind_title")
            .button(format!("/login/{request_id}/bind"), "try_again")
            .into());
        }
        Ok(LoginCompletion::NotLinked) if bind_policy => {
            return wait_for_binding(
                state,
                ar,
                request_id,
                flow_state,
                pending_login,
                browser_hash,
                None,
            )
            .await;
        }
        Ok(LoginCompletion::NotLinked | LoginCompletion::EmailHeld { .. }) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "first_login_denied", fix = "this connector's first_login is \"deny\": link the identity to an account first", "no broker account for this identity");
            Event::LoginDenied {
                user_id: None,
                client_id: &ar.client_id,
                connector_id,
                reason: Denied::NoAccount,
                via: LoginVia::Browser,
            }
            .record(state)
            .await;
            remember_outcome(state, flow_state, None).await;
            return Err(PageError::to_app(
                state,
                ar,
                "access_denied",
                "no broker account is linked to this identity",
            ));
        }
        Ok(LoginCompletion::LinkConflict { owner }) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "bind_conflict", owner = %owner, "the identity waiting to be linked now belongs to another account; nothing linked");
            remember_outcome(state, flow_state, None).await;
            return Err(PageError::page(
                locale,
                StatusCode::CONFLICT,
                "bind_conflict",
                "bind_conflict_todo",
            ));
        }
        Ok(LoginCompletion::Disabled(user)) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, user_id = %user.id, reason = "user_disabled", "the broker account is disabled");
            Event::LoginDenied {
                user_id: Some(&user.id),
                client_id: &ar.client_id,
                connector_id,
                reason: Denied::Disabled,
                via: LoginVia::Browser,
            }
            .record(state)
            .await;
            remember_outcome(state, flow_state, None).await;
            if proving || ar.pending.is_some() {
                return Err(PageError::page(
                    locale,
                    StatusCode::FORBIDDEN,
                    "account_disabled",
                    "account_disabled_todo",
                ));
            }
            return Err(PageError::to_app(
                state,
                ar,
                "access_denied",
                "this account is disabled",
            ));
        }
        Err(e) => {
            tracing::error!(event = "login_failed", stage = "account", connector = %connector_id, error = %e, "cannot complete the sign-in");
            return Err(unavailable());
        }
    };
    let mut resp = next;
    let _ = resp.add_cookie(&cookie(state, SESSION_COOKIE, session_secret));
    Ok(resp)
}

/// The callback found no account and the connector says "bind" (or the identity's
/// verified email is an account's, `email_match`): keep the identity with the
/// request, and ask the person to prove their account.
pub async fn wait_for_binding(
    state: &AppState,
    ar: &AuthRequest,
    request_id: &str,
    flow_state: &str,
    login: NewLogin,
    browser_hash: &str,
    email_match: Option<EmailMatch>,
) -> PageResult {
    let connector_id = login.connector_id.clone();
    let mut waiting = ar.clone();
    waiting.pending = Some(PendingLink {
        login,
        flow_state: flow_state.to_owned(),
        browser_hash: browser_hash.to_owned(),
        email_match,
    });
    let bind_url = state.endpoint(&format!("/login/{request_id}/bind"));
    let saved = match serde_json::to_value(&waiting) {
        Ok(payload) => state
            .store
            .update_auth_request(request_id, payload, state.now())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match saved {
        Ok(true) => {}
        Ok(false) => return Err(PageError::expired(ar.locale_or_default())),
        Err(e) => {
            tracing::error!(stage = "bind", error = %e, "cannot keep the identity waiting for binding");
            return Err(PageError::to_app(
                state,
                ar,
                "temporarily_unavailable",
                "the broker's database is unavailable; retry shortly",
            ));
        }
    }
    // A repeated callback (WeChat calls back twice) lands on the same page.
    if let Err(e) = state
        .store
        .set_flow_outcome(flow_state, outcome_for(state, flow_state, Some(&bind_url)))
        .await
    {
        tracing::warn!(stage = "bind", error = %e, "cannot record the flow outcome");
    }
    tracing::info!(event = "bind_required", connector = %connector_id, client_id = %ar.client_id, "new identity with first_login = \"bind\": asking the person to prove an existing account");
    Event::BindRequired {
        client_id: &ar.client_id,
        connector_id: &connector_id,
    }
    .record(state)
    .await;
    Ok(found(&bind_url))
}

/// The callback of a "link another method" sign-in: attach the identity to the
/// account that asked (never move one from another account).
pub async fn finish_link(
    state: &AppState,
    request_id: &str,
    flow_state: &str,
    login: NewLogin,
    user_id: &str,
    locale: Locale,
) -> PageResult {
    let connector_id = login.connector_id.clone();
    let outcome = state.store.link_identity(login, user_id, state.now()).await;
    let done = match outcome {
        Ok(LinkOutcome::Linked) => {
            tracing::info!(event = "identity_linked", user_id, connector = %connector_id, "a sign-in method was linked on the account page");
            Event::IdentityLinked {
                user_id,
                connector_id: &connector_id,
            }
            .record(state)
            .await;
            "linked"
        }
        Ok(LinkOutcome::AlreadyLinked) => "already",
        Ok(LinkOutcome::OtherUser(owner)) => {
            tracing::info!(event = "link_refused", user_id, owner = %owner, connector = %connector_id, "the sign-in method belongs to another account; not linked");
            "other_account"
        }
        Err(e) => {
            tracing::error!(stage = "account", error = %e, "cannot link the identity");
            return Err(PageError::db_down(locale));
        }
    };
    let url = state.endpoint(&format!("/account?done={done}"));
    remember_outcome(state, flow_state, Some(&url)).await;
    if let Err(e) = state.store.delete_auth_request(request_id).await {
        tracing::warn!(stage = "account", error = %e, "cannot delete the used-up request; it expires by itself");
    }
    Ok(found(&url))
}
