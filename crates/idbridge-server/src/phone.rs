//! The phone step: an app registered with `require_phone = true` gets its code only
//! once the signed-in person has a verified phone number. The person is asked once
//! (after sign-in, or on an SSO visit), a code goes to the number through the
//! configured sender, and the number is kept on the account (unique among
//! accounts) and released to apps with the `phone` scope.

use crate::audit::Event;
use crate::csrf::{self, Browser};
use crate::http::{fallback_locale, request_context, see_other};
use crate::i18n::Tr;
use crate::login::finish::code_redirect;
use crate::login::page_error::{PageError, PageResult};
use crate::login::request::{load_request, AuthRequest};
use crate::login::response::error_url;
use crate::one_time_codes::{self as codes, send_error_text, Purpose};
use crate::pages::{bad_form, render_status, text};
use crate::sessions::current_session;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::{CodeCheck, PhoneOutcome, SessionRow, User};

#[derive(Template)]
#[template(path = "phone.html")]
struct PhonePage {
    t: Tr,
    client_name: String,
    error: Option<String>,
    action: String,
    csrf: String,
    phone: String,
    cancel: String,
}

fn csrf_purpose(request_id: &str) -> String {
    format!("phone:{request_id}")
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
    Ok((ar, session, user, locale))
}

/// Send the person on to the app: the code is issued now, the request used up.
async fn continue_to_app(
    state: &AppState,
    request_id: &str,
    ar: &AuthRequest,
    session: &SessionRow,
    user: &User,
    locale: Locale,
) -> PageResult {
    // The consent page comes after the phone step, when the app needs it.
    let client = state
        .clients
        .get(&ar.client_id)
        .await
        .map_err(|_| PageError::db_down(locale))?
        .ok_or_else(|| PageError::unknown_client(locale))?;
    match crate::login::consent_step::needed(state, &client, ar, &user.id).await {
        Ok(false) => {}
        Ok(true) => {
            return Ok(crate::http::found(&crate::login::consent_step::url(
                state, request_id,
            )))
        }
        Err(e) => {
            tracing::error!(stage = "consent", error = %e, "cannot read the person's consent");
            return Err(PageError::db_down(locale));
        }
    }
    let app = code_redirect(state, ar, &user.id, session, None)
        .await
        .map_err(|e| {
            tracing::error!(stage = "phone", error = %e.description, "cannot issue the code after the phone step");
            PageError::db_down(locale)
        })?;
    if let Err(e) = state.store.delete_auth_request(request_id).await {
        tracing::warn!(stage = "phone", error = %e, "cannot delete the used-up request; it expires by itself");
    }
    Ok(app.respond())
}

async fn phone_page(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    ar: &AuthRequest,
    locale: Locale,
    phone: &str,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return HttpResponse::InternalServerError().finish();
    };
    let client_name = match state.clients.get(&ar.client_id).await {
        Ok(Some(c)) => c.name.clone(),
        _ => ar.client_id.clone(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = PhonePage {
        t: Tr(locale),
        client_name,
        error,
        action: format!("/login/{request_id}/phone/send"),
        csrf: browser.csrf(&csrf_purpose(request_id)),
        phone: phone.to_owned(),
        cancel: error_url(
            state,
            ar,
            "access_denied",
            "the person did not verify a phone number",
        ),
    };
    let mut resp = render_status(locale, text(locale, "phone_title"), status, &page);
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    resp
}

/// GET /login/{request}/phone
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, session, user, locale) = context(&state, &req, &request_id).await?;
    if user.phone_verified_at.is_some() {
        return continue_to_app(&state, &request_id, &ar, &session, &user, locale).await;
    }
    Ok(phone_page(&state, &req, &request_id, &ar, locale, "", None).await)
}

/// POST /login/{request}/phone/send
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, _session, user, locale) = context(&state, &req, &request_id).await?;
    let f = csrf::checked_form(&req, &body, &csrf_purpose(&request_id))
        .map_err(|e| e.page(&req, locale))?;
    let typed = f.get("phone").cloned().unwrap_or_default();
    let Some(phone) = codes::normalize_phone(&typed, &state.verifier.settings.default_country_code)
    else {
        let e = text(locale, "phone_invalid").to_owned();
        return Ok(phone_page(&state, &req, &request_id, &ar, locale, &typed, Some(e)).await);
    };
    let browser_hash = csrf::browser_hash(&req).ok_or_else(|| bad_form(locale))?;
    let ctx = request_context(&state, &req, locale);
    let sent = codes::send_code(
        &state,
        &ctx,
        Purpose::Phone,
        Some(&phone),
        Some(&user),
        &browser_hash,
    )
    .await;
    Ok(match sent {
        Ok(sent) => see_other(&format!(
            "/login/{request_id}/phone/code?c={}",
            sent.code_id
        )),
        Err(e) => {
            let message = send_error_text(locale, &e);
            phone_page(
                &state,
                &req,
                &request_id,
                &ar,
                locale,
                &typed,
                Some(message),
            )
            .await
        }
    })
}

#[derive(serde::Deserialize)]
pub struct CodeQuery {
    c: String,
}

async fn code_page(
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
    // The person typed the number themselves: show it back (masked).
    let destination = match state.store.get_verification_code(code_id).await {
        Ok(Some(code)) if Some(&code.browser_hash) == csrf::browser_hash(req).as_ref() => {
            Some(codes::mask_phone(&code.destination))
        }
        _ => None,
    };
    codes::code_page(
        locale,
        codes::CodePageText {
            sent: text(locale, "code_sent_sms"),
            destination,
            app_redirect: Some(ar.redirect_uri.clone()),
        },
        &format!("/login/{request_id}/phone/code"),
        &browser.csrf(&csrf_purpose(request_id)),
        code_id,
        &format!("/login/{request_id}/phone"),
        error,
    )
}

/// GET /login/{request}/phone/code?c=…
pub async fn code_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<CodeQuery>,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, _, _, locale) = context(&state, &req, &request_id).await?;
    Ok(code_page(&state, &req, &request_id, &ar, &query.c, locale, None).await)
}

/// POST /login/{request}/phone/code: a right code verifies the number; the app
/// gets its code.
pub async fn check(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> PageResult {
    let request_id = path.into_inner();
    let (ar, session, user, locale) = context(&state, &req, &request_id).await?;
    let f = csrf::checked_form(&req, &body, &csrf_purpose(&request_id))
        .map_err(|e| e.page(&req, locale))?;
    let browser_hash = csrf::browser_hash(&req).ok_or_else(|| bad_form(locale))?;
    let (st, rq, rid, arq) = (&state, &req, &request_id, &ar);
    let retry = move |code_id: String, e: String| async move {
        code_page(st, rq, rid, arq, &code_id, locale, Some(e)).await
    };
    let row = match codes::attempt(
        &state,
        &req,
        &f,
        &browser_hash,
        Purpose::Phone,
        locale,
        retry,
    )
    .await
    {
        Ok(row) if row.user_id.as_deref() == Some(user.id.as_str()) => row,
        // A code of another session's person: as if unknown.
        Ok(row) => {
            let e = codes::check_error_text(locale, &CodeCheck::Unknown);
            return Ok(code_page(&state, &req, &request_id, &ar, &row.id, locale, Some(e)).await);
        }
        Err(page) => return Err(page.into()),
    };
    match state
        .store
        .set_user_phone(&user.id, &row.destination, state.now())
        .await
    {
        Ok(PhoneOutcome::Set(user)) => {
            tracing::info!(event = "phone_verified", user_id = %user.id, client_id = %ar.client_id, "phone number verified");
            Event::PhoneVerified {
                user_id: &user.id,
                client_id: &ar.client_id,
            }
            .record(&state)
            .await;
            continue_to_app(&state, &request_id, &ar, &session, &user, locale).await
        }
        Ok(PhoneOutcome::TakenBy(owner)) => {
            tracing::info!(event = "phone_failed", user_id = %user.id, owner = %owner, reason = "number_on_another_account", "the verified number already belongs to another account");
            Err(PageError::page(
                locale,
                StatusCode::CONFLICT,
                "phone_taken",
                "phone_taken_todo",
            ))
        }
        Ok(PhoneOutcome::NoSuchUser) | Err(_) => Err(PageError::db_down(locale)),
    }
}
