//! Single sign-on: the browser's SSO session answers an authorization request
//! without going upstream, unless the app asks for a fresh sign-in
//! (`prompt=login`, a `max_age` the session is older than), asks the person to
//! pick an account (`prompt=select_account`: the chooser offers "continue as"
//! the session's person beside the sign-in methods), names someone else
//! (`id_token_hint`), or may not use the connector the session came from.

use super::finish::issue_code;
use super::request::{AuthRequest, PromptValue};
use crate::audit::{Event, SignedInBy};
use crate::clients::Client;
use crate::sessions::current_session;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse};

/// What the SSO session does for a request.
pub enum Sso {
    /// It answered: the app gets a code (or the error of issuing one).
    Answered(HttpResponse),
    /// The person is signed in, but this app needs a verified phone number first.
    PhoneFirst,
    /// The person is signed in, but must allow this app first (the consent page).
    ConsentFirst,
    /// The person must sign in; `someone_else` when a session exists for another
    /// person than the one `id_token_hint` names.
    SignIn { someone_else: bool },
}

/// Let the SSO session answer `ar` when it may; `hinted_sub` is the subject of a
/// verified `id_token_hint`.
pub async fn reuse(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    ar: &AuthRequest,
    hinted_sub: Option<&str>,
    now: i64,
) -> Sso {
    reuse_unless(state, req, client, ar, hinted_sub, now, true).await
}

/// The person chose "continue as" on the chooser of a `prompt=select_account`
/// request: the SSO session answers as it would have without that prompt.
pub async fn continue_as_signed_in(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    ar: &AuthRequest,
    now: i64,
) -> Sso {
    reuse_unless(state, req, client, ar, None, now, false).await
}

async fn reuse_unless(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    ar: &AuthRequest,
    hinted_sub: Option<&str>,
    now: i64,
    honour_select_account: bool,
) -> Sso {
    let force_login = ar.prompt.has(PromptValue::Login)
        || (honour_select_account && ar.prompt.has(PromptValue::SelectAccount));
    if force_login && hinted_sub.is_none() {
        // The session could neither answer nor name someone else: not read.
        return Sso::SignIn {
            someone_else: false,
        };
    }
    let session = match current_session(state, req, now, ar.locale(req)).await {
        Ok(s) => s,
        Err(page) => return Sso::Answered(page.render()),
    };
    let someone_else = session
        .as_ref()
        .is_some_and(|(_, user)| hinted_sub.is_some_and(|sub| sub != user.id.as_str()));
    if let Some((session, user)) = session.filter(|_| !force_login && !someone_else) {
        let fresh_enough = ar.max_age.is_none_or(|m| now - session.auth_time <= m);
        if fresh_enough && client.may_use_connector(&session.connector_id) {
            if !(client.require_phone && user.phone_verified_at.is_none()) {
                match crate::login::consent_step::needed(state, client, ar, &user.id).await {
                    Ok(false) => {}
                    Ok(true) => return Sso::ConsentFirst,
                    Err(e) => {
                        tracing::error!(stage = "consent", error = %e, "cannot read the person's consent");
                        return Sso::Answered(super::response::error_redirect(
                            state,
                            ar,
                            "temporarily_unavailable",
                            "the broker's database is unavailable; retry shortly",
                        ));
                    }
                }
                // Audited like any sign-in, marked as one through the SSO session.
                let audit = Event::SignedIn {
                    user_id: Some(&user.id),
                    client_id: &ar.client_id,
                    connector_id: &session.connector_id,
                    by: SignedInBy::Sso,
                }
                .row(now, state.proxies.of(req));
                return Sso::Answered(issue_code(state, ar, &user.id, &session, Some(audit)).await);
            }
            return Sso::PhoneFirst;
        }
    }
    Sso::SignIn { someone_else }
}
