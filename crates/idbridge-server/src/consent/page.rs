//! The consent page, `/login/{request}/consent`: reached once the account is
//! resolved (after the bind and phone steps, or from the SSO session) when the
//! app needs the person's consent ([`super::needed`]). It names the app and what
//! it gets, one line per scope; Allow remembers the scopes and sends the app
//! its code, Deny sends the app `access_denied` (in its response mode, with
//! `iss` and its `state`) and remembers nothing.

use crate::audit::Event;
use crate::csrf::{self, Browser};
use crate::http::{fallback_locale, found};
use crate::i18n::Tr;
use crate::login::finish::code_redirect;
use crate::login::page_error::{PageError, PageResult};
use crate::login::request::{load_request, AuthRequest, PromptValue};
use crate::login::response::AppResponse;
use crate::pages::{render_status_to_app, text};
use crate::sessions::current_session;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::{SessionRow, User};

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    t: Tr,
    client_name: String,
    /// Text keys, one per scope the broker describes.
    lines: Vec<&'static str>,
    person: String,
    action: String,
    csrf: String,
}

fn csrf_purpose(request_id: &str) -> String {
    format!("consent:{request_id}")
}

/// The request, the signed-in person and the locale, or the page to show instead.
async fn context(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
) -> Result<(AuthRequest, SessionRow, User, Locale), PageError> {
    let fallback = fallback_locale(req);
    let ar = load_request(state, request_id, fallback)
        .await?
        .ok_or_else(|| PageError::expired(fallback))?;
    let locale = ar.locale(req);
    // Not signed in (any more): start over at the app.
    let (session, user) = current_session(state, req, state.now(), locale)
        .await?
        .ok_or_else(|| PageError::expired(locale))?;
    answerable(state, request_id, &ar, &session, &user, locale).await?;
    Ok((ar, session, user, locale))
}

/// This page answers only a request the session may answer: not one that
/// waits for binding or links a method, not one that asked for a fresh
/// sign-in (`prompt=login`, `max_age`) the session has not made since, and not
/// before the phone step of an app that needs it. (The sign-in sends a person
/// here only then; a hand-typed URL gets no further.)
async fn answerable(
    state: &AppState,
    request_id: &str,
    ar: &AuthRequest,
    session: &SessionRow,
    user: &User,
    locale: Locale,
) -> Result<(), PageError> {
    let now = state.now();
    let created_at = match state.store.get_auth_request(request_id, now).await {
        Ok(Some(row)) => row.created_at,
        Ok(None) => return Err(PageError::expired(locale)),
        Err(_) => return Err(PageError::db_down(locale)),
    };
    let fresh = !ar.prompt.has(PromptValue::Login) || session.auth_time >= created_at;
    let recent = ar.max_age.is_none_or(|m| now - session.auth_time <= m);
    if ar.pending.is_some() || ar.link_to.is_some() || !fresh || !recent {
        tracing::warn!(stage = "consent", client_id = %ar.client_id, reason = "not_answerable", fix = "follow the sign-in from the application; the consent page comes after it", "the consent page was opened for a request this session may not answer");
        return Err(PageError::expired(locale));
    }
    let client = state
        .clients
        .get(&ar.client_id)
        .await
        .map_err(|_| PageError::db_down(locale))?
        .ok_or_else(|| PageError::unknown_client(locale))?;
    if client.require_phone && user.phone_verified_at.is_none() {
        return Err(found(&state.endpoint(&format!("/login/{request_id}/phone"))).into());
    }
    Ok(())
}

/// GET /login/{request}/consent
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, _session, user, locale) = context(&state, &req, &request_id).await?;
    let client = state
        .clients
        .get(&ar.client_id)
        .await
        .map_err(|_| PageError::db_down(locale))?
        .ok_or_else(|| PageError::unknown_client(locale))?;
    let browser = Browser::of(&state, &req).ok_or_else(|| PageError::internal(locale))?;
    let page = ConsentPage {
        t: Tr(locale),
        client_name: client.name.clone(),
        lines: super::lines(&ar.scope),
        person: user.name.clone().unwrap_or_else(|| user.id.clone()),
        action: format!("/login/{request_id}/consent"),
        csrf: browser.csrf(&csrf_purpose(&request_id)),
    };
    // The form's answer is a redirect to the app: CSP form-action allows it.
    let mut resp = render_status_to_app(
        locale,
        text(locale, "consent_title"),
        StatusCode::OK,
        &page,
        &ar.redirect_uri,
    );
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    Ok(resp)
}

/// POST /login/{request}/consent: `decision=allow` or `decision=deny`.
pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, session, user, locale) = context(&state, &req, &request_id).await?;
    let f = csrf::checked_form(&req, &body, &csrf_purpose(&request_id)).map_err(|e| {
        tracing::warn!(event = "consent_refused", stage = "consent", client_id = %ar.client_id, user_id = %user.id, reason = "csrf", fix = "submit the consent form from the page the broker showed, in the same browser", "the consent form's CSRF token is missing or wrong; nothing granted");
        e.page(&req, locale)
    })?;
    let now = state.now();
    match f.get("decision").map(String::as_str) {
        Some("allow") => {}
        Some("deny") => {
            tracing::info!(event = "consent_denied", stage = "consent", client_id = %ar.client_id, user_id = %user.id, error = "access_denied", "the person did not allow the application; it gets access_denied");
            if let Err(e) = state.store.delete_auth_request(&request_id).await {
                tracing::warn!(stage = "consent", error = %e, "cannot delete the used-up request; it expires by itself");
            }
            return Ok(AppResponse::error(
                &state,
                &ar,
                "access_denied",
                "the person did not allow the application access",
            )
            .respond());
        }
        _ => return Err(crate::pages::bad_form(locale).into()),
    }
    let audit = Event::ConsentGranted {
        user_id: &user.id,
        client_id: &ar.client_id,
        scope: &ar.scope,
    }
    .row(now, state.proxies.of(&req));
    if let Err(e) = state
        .store
        .grant_consent(&user.id, &ar.client_id, &ar.scope, now, audit)
        .await
    {
        tracing::error!(stage = "consent", client_id = %ar.client_id, error = %e, "cannot store the consent; nothing granted");
        return Err(PageError::db_down(locale));
    }
    tracing::info!(event = "consent_granted", client_id = %ar.client_id, user_id = %user.id, scope = %ar.scope, "the person allowed the application");
    let app = code_redirect(&state, &ar, &user.id, &session, None)
        .await
        .map_err(|e| {
            tracing::error!(stage = "consent", error = %e.description, "cannot issue the code after consent");
            PageError::db_down(locale)
        })?;
    if let Err(e) = state.store.delete_auth_request(&request_id).await {
        tracing::warn!(stage = "consent", error = %e, "cannot delete the used-up request; it expires by itself");
    }
    Ok(app.respond())
}
