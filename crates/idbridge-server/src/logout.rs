//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): end the SSO
//! session, revoke the grants made under it, and return to a registered
//! post-logout URI. Without a valid `id_token_hint` the person confirms first.

use crate::audit::Event;
use crate::http::{found, SESSION_COOKIE};
use crate::login::page_error::{PageError, PageResult};
use crate::pages::{escape, text, Page};
use crate::params::append_query;
use crate::state::AppState;
use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use idbridge_core::Locale;
use idbridge_tokens::{constant_time_eq, hash_token};
use std::collections::BTreeMap;

/// The query and (for POST) the form; a form value overrides the query's.
fn params(
    req: &HttpRequest,
    body: Option<&web::Bytes>,
) -> Result<BTreeMap<String, String>, crate::params::Rejected> {
    let mut p = crate::params::parse_first(req.query_string().as_bytes())?;
    if let Some(b) = body {
        p.extend(crate::params::parse_first(b)?);
    }
    p.retain(|_, v| !v.is_empty());
    Ok(p)
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Bytes>,
) -> PageResult {
    let is_post = req.method() == actix_web::http::Method::POST;
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let p = params(&req, body.as_ref().filter(|_| is_post))
        .map_err(|r| crate::screen::page_refusal(&req, &r, Locale::negotiate(None, accept)))?;
    let locale = Locale::negotiate(p.get("ui_locales").map(String::as_str), accept);
    let now = state.now();

    // Who is asking: the id_token_hint's audience, or client_id.
    let hint = p
        .get("id_token_hint")
        .and_then(|t| crate::issue::verify_id_token_hint(&state, t, None));
    if p.contains_key("id_token_hint") && hint.is_none() {
        return Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "logout_bad_hint",
            "logout_bad_hint_todo",
        ));
    }
    let hint_client = hint.as_ref().and_then(|h| h.client_id()).map(str::to_owned);
    let client_id = match (hint_client, p.get("client_id")) {
        (Some(a), Some(b)) if &a != b => {
            return Err(PageError::page(
                locale,
                StatusCode::BAD_REQUEST,
                "logout_client_mismatch",
                "logout_client_mismatch_todo",
            ))
        }
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    };
    let client = match &client_id {
        Some(id) => state.clients.get(id).await.ok().flatten(),
        None => None,
    };
    let post_logout = match p.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.clone()),
            _ => {
                tracing::warn!(stage = "logout", client_id = ?client_id, uri = %uri, "post_logout_redirect_uri is not registered; not redirecting");
                return Err(PageError::page(
                    locale,
                    StatusCode::BAD_REQUEST,
                    "logout_bad_redirect",
                    "logout_bad_redirect_todo",
                ));
            }
        },
    };

    let session_secret = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    let session_id = session_secret.as_deref().map(hash_token);
    let csrf = session_secret
        .as_deref()
        .map(|s| hash_token(&format!("logout:{s}")));
    let hint_matches = hint
        .as_ref()
        .and_then(|h| h.sid.as_deref())
        .is_some_and(|sid| Some(sid) == session_id.as_deref());
    let confirmed = is_post
        && match (p.get("csrf"), &csrf) {
            (Some(given), Some(expected)) => {
                constant_time_eq(given.as_bytes(), expected.as_bytes())
            }
            _ => false,
        };
    if let (Some(sid), Some(expected)) = (&session_id, &csrf) {
        if !(hint_matches || confirmed) {
            // Ask first: a cross-site link must not sign people out.
            let mut hidden = format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                escape(expected)
            );
            for key in [
                "post_logout_redirect_uri",
                "state",
                "client_id",
                "ui_locales",
            ] {
                if let Some(v) = p.get(key) {
                    hidden.push_str(&format!(
                        "<input type=\"hidden\" name=\"{key}\" value=\"{}\">",
                        escape(v)
                    ));
                }
            }
            if let Some(id) = &client_id {
                if !p.contains_key("client_id") {
                    hidden.push_str(&format!(
                        "<input type=\"hidden\" name=\"client_id\" value=\"{}\">",
                        escape(id)
                    ));
                }
            }
            let body = format!(
                "<form method=\"post\" action=\"/logout\">{hidden}<button type=\"submit\" class=\"primary\">{}</button></form>",
                text(locale, "logout_confirm")
            );
            let _ = sid;
            // Confirming ends at the app's post_logout_redirect_uri (registered).
            let forms = post_logout
                .as_deref()
                .map(crate::pages::form_actions_to)
                .unwrap_or_default();
            let mut page = Page::new(locale, text(locale, "logout_title"), &body);
            page.form_actions = &forms;
            return Ok(page.render());
        }
        match state.store.get_session(sid).await {
            Ok(Some(session)) => {
                let _ = state.store.end_session(sid, now).await;
                match state
                    .store
                    .revoke_families_for_session(sid, "logout", now)
                    .await
                {
                    Ok(n) => {
                        tracing::info!(event = "logout", user_id = %session.user_id, grants_revoked = n, "signed out")
                    }
                    Err(e) => {
                        tracing::error!(stage = "logout", error = %e, "cannot revoke the session's grants")
                    }
                }
                Event::LoggedOut {
                    user_id: &session.user_id,
                    client_id: client_id.as_deref(),
                }
                .record(&state)
                .await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(stage = "logout", error = %e, "cannot end the session");
                return Err(PageError::page(
                    locale,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "logout_db_down",
                    "db_down_todo",
                ));
            }
        }
    }
    let mut resp = match post_logout {
        Some(uri) => {
            let url = match p.get("state") {
                Some(s) => append_query(&uri, &[("state", s.as_str())]),
                None => uri,
            };
            found(&url)
        }
        None => Page::new(
            locale,
            text(locale, "signed_out_title"),
            &format!("<p>{}</p>", text(locale, "signed_out")),
        )
        .render(),
    };
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .finish();
    gone.make_removal();
    let _ = resp.add_cookie(&gone);
    Ok(resp)
}
