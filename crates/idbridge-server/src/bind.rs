//! Binding before sign-in (`first_login = "bind"`): a new upstream identity is
//! linked only after the person proves an existing account, by signing in with
//! another method already linked to it, or with a one-time code sent to the
//! account's verified phone number (or into its WeChat chat). The waiting identity
//! is kept in the authorization request, bound to the browser that brought it.

use crate::authorize::{
    self, error_url, finish_sign_in, found, load_request, outcome_for, request_context, usable,
    AuthRequest, PendingLink, SignIn,
};
use crate::csrf::{self, Browser};
use crate::i18n::Tr;
use crate::pages::{error_page, render_status, text, Link};
use crate::state::AppState;
use crate::verify::{self, Purpose, SendError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::{FirstLogin, NewLogin};

#[derive(Template)]
#[template(path = "bind.html")]
struct BindPage {
    t: Tr,
    connector_name: String,
    person: Option<String>,
    error: Option<String>,
    methods: Vec<Link>,
    codes: bool,
    send_action: String,
    csrf: String,
    cancel: String,
}

fn csrf_purpose(request_id: &str) -> String {
    format!("bind:{request_id}")
}

/// The callback found no account and the connector says "bind": keep the identity
/// with the request, and ask the person to prove their account.
pub async fn start(
    state: &AppState,
    ar: &AuthRequest,
    request_id: &str,
    flow_state: &str,
    login: NewLogin,
    browser_hash: &str,
) -> HttpResponse {
    let connector_id = login.connector_id.clone();
    let mut waiting = ar.clone();
    waiting.pending = Some(PendingLink {
        login,
        flow_state: flow_state.to_owned(),
        browser_hash: browser_hash.to_owned(),
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
        Ok(false) => {
            return error_page(
                ar.locale_or_default(),
                StatusCode::BAD_REQUEST,
                text(ar.locale_or_default(), "expired"),
                text(ar.locale_or_default(), "expired_todo"),
            )
        }
        Err(e) => {
            tracing::error!(stage = "bind", error = %e, "cannot keep the identity waiting for binding");
            return authorize::error_redirect(
                state,
                ar,
                "temporarily_unavailable",
                "the broker's database is unavailable; retry shortly",
            );
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
    authorize::audit(
        state,
        "bind_required",
        None,
        Some(&ar.client_id),
        Some(&connector_id),
        serde_json::json!({}),
    )
    .await;
    found(&bind_url)
}

/// The request, its waiting identity, and the locale — when this browser is the
/// one that brought the identity.
async fn waiting(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
) -> Result<(AuthRequest, PendingLink, Locale), HttpResponse> {
    let fallback = authorize::fallback_locale(req);
    let ar = match load_request(state, request_id).await? {
        Some(ar) => ar,
        None => {
            return Err(error_page(
                fallback,
                StatusCode::BAD_REQUEST,
                text(fallback, "expired"),
                text(fallback, "expired_todo"),
            ))
        }
    };
    let locale = ar.locale(req);
    let Some(pending) = ar.pending.clone() else {
        return Err(error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "expired"),
            text(locale, "expired_todo"),
        ));
    };
    if csrf::browser_hash(req).as_deref() != Some(pending.browser_hash.as_str()) {
        tracing::warn!(
            event = "bind_failed",
            reason = "browser_mismatch",
            "a binding step came from another browser than the sign-in; refused"
        );
        return Err(error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "wrong_browser"),
            text(locale, "expired_todo"),
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
) -> HttpResponse {
    let request_id = path.into_inner();
    match waiting(&state, &req, &request_id).await {
        Ok((ar, pending, locale)) => {
            bind_page(&state, &req, &request_id, &ar, &pending, locale, None).await
        }
        Err(resp) => resp,
    }
}

/// POST /login/{request}/bind/send: a code for the account with this number.
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let request_id = path.into_inner();
    let (ar, pending, locale) = match waiting(&state, &req, &request_id).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let f = match csrf::checked_form(&req, &body, &csrf_purpose(&request_id)) {
        Ok(f) => f,
        Err(e) => return e.page(&req, locale),
    };
    if !state.verifier.phone_codes() {
        let e = text(locale, "codes_unavailable").to_owned();
        return bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await;
    }
    let Some(phone) = f
        .get("phone")
        .and_then(|p| verify::normalize_phone(p, &state.verifier.settings.default_country_code))
    else {
        let e = text(locale, "phone_invalid").to_owned();
        return bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await;
    };
    let user = match state.store.find_user_by_phone(&phone).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(stage = "bind", error = %e, "cannot look up the phone number");
            return error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                text(locale, "db_down"),
                text(locale, "db_down_todo"),
            );
        }
    };
    let ctx = request_context(&state, &req, locale);
    match verify::send_code(
        &state,
        &ctx,
        Purpose::Bind,
        Some(&phone),
        user.as_ref(),
        &pending.browser_hash,
    )
    .await
    {
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
    }
}

/// What to tell the person when a code did not go out.
pub fn send_error_text(locale: Locale, e: &SendError) -> String {
    match e {
        SendError::Throttled(secs) => format!("{} {secs}", text(locale, "code_throttled")),
        SendError::Failed => format!(
            "{} {}",
            text(locale, "code_send_failed"),
            text(locale, "code_send_failed_todo")
        ),
        SendError::Store(err) => {
            tracing::error!(stage = "verification", error = %err, "cannot store the code");
            text(locale, "db_down").to_owned()
        }
    }
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish()
}

pub fn bad_form(locale: Locale) -> HttpResponse {
    error_page(
        locale,
        StatusCode::FORBIDDEN,
        text(locale, "bad_form"),
        text(locale, "bad_form_todo"),
    )
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
) -> HttpResponse {
    let request_id = path.into_inner();
    let locale = match waiting(&state, &req, &request_id).await {
        Ok((_, _, locale)) => locale,
        Err(resp) => return resp,
    };
    code_page(&state, &req, &request_id, &query.c, locale, None)
}

fn code_page(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    code_id: &str,
    locale: Locale,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return HttpResponse::InternalServerError().finish();
    };
    verify::code_page(
        locale,
        verify::CodePageText {
            // The same words whether or not the number is known.
            sent: text(locale, "code_sent_maybe"),
            destination: None,
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
) -> HttpResponse {
    let request_id = path.into_inner();
    let (ar, pending, locale) = match waiting(&state, &req, &request_id).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let f = match csrf::checked_form(&req, &body, &csrf_purpose(&request_id)) {
        Ok(f) => f,
        Err(e) => return e.page(&req, locale),
    };
    let row = match verify::attempt(
        &state,
        &req,
        &f,
        &pending.browser_hash,
        Purpose::Bind,
        locale,
        |code_id, e| {
            let page = code_page(&state, &req, &request_id, &code_id, locale, Some(e));
            async { page }
        },
    )
    .await
    {
        Ok(row) => row,
        Err(page) => return page,
    };
    let Some(user_id) = row.user_id else {
        // The code was right but no account has that number (none was sent; a
        // guessed code): nothing to link.
        state
            .failures
            .failed(state.proxies.of(&req), state.now_ms())
            .await;
        let e = text(locale, "bind_no_account").to_owned();
        return bind_page(&state, &req, &request_id, &ar, &pending, locale, Some(e)).await;
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
