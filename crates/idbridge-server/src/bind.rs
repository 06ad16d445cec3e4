//! Binding before sign-in (`first_login = "bind"`): a new upstream identity is
//! linked only after the person proves an existing account, by signing in with
//! another method already linked to it, or with a one-time code sent to the
//! account's verified phone number (or into its WeChat chat). The waiting identity
//! is kept in the authorization request, bound to the browser that brought it
//! ([`crate::login::finish::wait_for_binding`] puts it there). An identity whose
//! upstream-verified email is an existing account's, from a connector not
//! trusted to link by email, waits here too: the page names the person's own
//! address, and when the connector creates accounts, offers a separate one
//! instead ([`separate`]).

use crate::audit::{EmailOutcome, LoginVia};
use crate::csrf::{self, Browser};
use crate::email_link::{self, Origin};
use crate::http::{fallback_locale, request_context, see_other};
use crate::i18n::Tr;
use crate::login::chooser::usable;
use crate::login::finish::{finish_sign_in, SignIn};
use crate::login::page_error::{PageError, PageResult};
use crate::login::request::{load_request, AuthRequest, PendingLink};
use crate::login::response::error_url;
use crate::one_time_codes::{self as codes, send_error_text, Purpose};
use crate::pages::{render_status, text, Link};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::FirstLogin;

#[derive(Template)]
#[template(path = "bind.html")]
struct BindPage {
    t: Tr,
    connector_name: String,
    person: Option<String>,
    error: Option<String>,
    methods: Vec<Link>,
    codes: bool,
    /// The person's own address, when it is why they are here.
    email_match: Option<String>,
    /// Where "create a separate account" posts, when it is offered.
    separate_action: Option<String>,
    send_action: String,
    csrf: String,
    cancel: String,
}

fn csrf_purpose(request_id: &str) -> String {
    format!("bind:{request_id}")
}

/// The request, its waiting identity, and the locale — when this browser is the
/// one that brought the identity.
async fn waiting(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
) -> Result<(AuthRequest, PendingLink, Locale), PageError> {
    let fallback = fallback_locale(req);
    let ar = load_request(state, request_id, fallback)
        .await?
        .ok_or_else(|| PageError::expired(fallback))?;
    let locale = ar.locale(req);
    let pending = ar
        .pending
        .clone()
        .ok_or_else(|| PageError::expired(locale))?;
    if csrf::browser_hash(req).as_deref() != Some(pending.browser_hash.as_str()) {
        tracing::warn!(
            event = "bind_failed",
            reason = "browser_mismatch",
            "a binding step came from another browser than the sign-in; refused"
        );
        return Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "wrong_browser",
            "expired_todo",
        ));
    }
    Ok((ar, pending, locale))
}

async fn bind_page(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    ar: &AuthRequest,
    pending: &PendingLink,
    locale: Locale,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return HttpResponse::InternalServerError().finish();
    };
    let ctx = request_context(state, req, locale);
    let methods = match state.clients.get(&ar.client_id).await {
        Ok(Some(client)) => usable(state, &client, &ctx)
            .into_iter()
            .filter(|(id, _)| *id != pending.login.connector_id)
            .map(|(id, _)| Link {
                href: format!("/login/{request_id}?connector={id}"),
                name: state
                    .connector(id)
                    .map(|c| c.connector.display_name().to_owned())
                    .unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let page = BindPage {
        t: Tr(locale),
        connector_name: state
            .connector(&pending.login.connector_id)
            .map(|c| c.connector.display_name().to_owned())
            .unwrap_or_else(|| pending.login.connector_id.clone()),
        person: pending.login.name.clone(),
        error: error.clone(),
        methods,
        codes: state.verifier.phone_codes(),
        email_match: pending.email_match.as_ref().map(|m| m.email.clone()),
        separate_action: pending
            .email_match
            .as_ref()
            .filter(|m| m.may_create)
            .map(|_| format!("/login/{request_id}/bind/separate")),
        send_action: format!("/login/{request_id}/bind/send"),
        csrf: browser.csrf(&csrf_purpose(request_id)),
        cancel: error_url(
            state,
            ar,
            "access_denied",
            "the person did not link the sign-in to an account",
        ),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render_status(locale, text(locale, "bind_title"), status, &page)
}

/// GET /login/{request}/bind
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, pending, locale) = waiting(&state, &req, &request_id).await?;
    Ok(bind_page(&state, &req, &request_id, &ar, &pending, locale, None).await)
}

/// POST /login/{request}/bind/send: a code for the account with this number.
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, pending, locale) = waiting(&state, &req, &request_id).await?;
    let f = csrf::checked_form(&req, &body, &csrf_purpose(&request_id))
        .map_err(|e| e.page(&req, locale))?;
    if !state.verifier.phone_codes() {
        let e = text(locale, "codes_unavailable").to_owned();
        return Ok(bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await);
    }
    let Some(phone) = f
        .get("phone")
        .and_then(|p| codes::normalize_phone(p, &state.verifier.settings.default_country_code))
    else {
        let e = text(locale, "phone_invalid").to_owned();
        return Ok(bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await);
    };
    let user = state.store.find_user_by_phone(&phone).await.map_err(|e| {
        tracing::error!(stage = "bind", error = %e, "cannot look up the phone number");
        PageError::db_down(locale)
    })?;
    let ctx = request_context(&state, &req, locale);
    let sent = codes::send_code(
        &state,
        &ctx,
        Purpose::Bind,
        Some(&phone),
        user.as_ref(),
        &pending.browser_hash,
    )
    .await;
    Ok(match sent {
        Ok(sent) => see_other(&format!("/login/{request_id}/bind/code?c={}", sent.code_id)),
        Err(e) => {
            let message = send_error_text(locale, &e);
            bind_page(
                &state,
                &req,
                &request_id,
                &ar,
                &pending,
                locale,
                Some(message),
            )
            .await
        }
    })
}

/// POST /login/{request}/bind/separate: the person whose verified email is an
/// existing account's chose an account of their own (offered only when the
/// connector creates accounts). The new account gets no link target from the
/// address: it stays the existing account's.
pub async fn separate(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, pending, locale) = waiting(&state, &req, &request_id).await?;
    csrf::checked_form(&req, &body, &csrf_purpose(&request_id))
        .map_err(|e| e.page(&req, locale))?;
    let Some(email_match) = pending.email_match.as_ref().filter(|m| m.may_create) else {
        tracing::warn!(event = "bind_failed", reason = "separate_not_offered", connector = %pending.login.connector_id, "a separate account was asked for where none is offered; refused");
        return Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "separate_not_offered",
            "expired_todo",
        ));
    };
    let origin = Origin {
        client_id: &ar.client_id,
        connector_id: &pending.login.connector_id,
        via: LoginVia::Browser,
    };
    email_link::held(
        &state,
        &pending.login,
        &email_match.owner,
        origin,
        EmailOutcome::SeparateAccount,
    )
    .await;
    let mut login = pending.login.clone();
    // Without its address the new identity matches no account, and records none.
    login.email = None;
    let sign_in = SignIn {
        request_id: &request_id,
        flow_state: &pending.flow_state,
        connector_id: &pending.login.connector_id,
        login,
        policy: FirstLogin::Create,
        also_link: None,
        browser_hash: &pending.browser_hash,
        ip: state.proxies.of(&req),
    };
    finish_sign_in(&state, &ar, sign_in, locale).await
}

#[derive(serde::Deserialize)]
pub struct CodeQuery {
    c: String,
}

/// GET /login/{request}/bind/code?c=…
pub async fn code_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<CodeQuery>,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, _, locale) = waiting(&state, &req, &request_id).await?;
    Ok(code_page(
        &state,
        &req,
        &request_id,
        &ar,
        &query.c,
        locale,
        None,
    ))
}

fn code_page(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    ar: &AuthRequest,
    code_id: &str,
    locale: Locale,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return HttpResponse::InternalServerError().finish();
    };
    codes::code_page(
        locale,
        codes::CodePageText {
            // The same words whether or not the number is known.
            sent: text(locale, "code_sent_maybe"),
            destination: None,
            app_redirect: Some(ar.redirect_uri.clone()),
        },
        &format!("/login/{request_id}/bind/code"),
        &browser.csrf(&csrf_purpose(request_id)),
        code_id,
        &format!("/login/{request_id}/bind"),
        error,
    )
}

/// POST /login/{request}/bind/code: a right code proves the account; the waiting
/// identity is linked to it and the person is signed in.
pub async fn check(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, pending, locale) = waiting(&state, &req, &request_id).await?;
    let f = csrf::checked_form(&req, &body, &csrf_purpose(&request_id))
        .map_err(|e| e.page(&req, locale))?;
    let row = codes::attempt(
        &state,
        &req,
        &f,
        &pending.browser_hash,
        Purpose::Bind,
        locale,
        |code_id, e| {
            let page = code_page(&state, &req, &request_id, &ar, &code_id, locale, Some(e));
            async { page }
        },
    )
    .await?;
    let Some(user_id) = row.user_id else {
        // The code was right but no account has that number (none was sent; a
        // guessed code): nothing to link.
        state
            .failures
            .failed(state.proxies.of(&req), state.now_ms())
            .await;
        let e = text(locale, "bind_no_account").to_owned();
        return Ok(bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await);
    };
    tracing::info!(event = "bind_proven", user_id = %user_id, connector = %pending.login.connector_id, "a one-time code proved the account; linking the waiting identity");
    let sign_in = SignIn {
        request_id: &request_id,
        flow_state: &pending.flow_state,
        connector_id: &pending.login.connector_id,
        login: pending.login.clone(),
        policy: FirstLogin::LinkTo(user_id),
        also_link: None,
        browser_hash: &pending.browser_hash,
        ip: state.proxies.of(&req),
    };
    finish_sign_in(&state, &ar, sign_in, locale).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn csrf_tokens_are_per_request() {
        assert_ne!(super::csrf_purpose("a"), super::csrf_purpose("b"));
    }
}
