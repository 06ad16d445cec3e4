//! The account page (`/account`): a signed-in person sees their account and its
//! linked sign-in methods, links another one (a normal upstream sign-in whose
//! identity is attached to this account, never moved from another), and unlinks
//! one (never the last), and revokes what an app was allowed
//! ([`crate::consent::apps`]). Not signed in, it sends the person through the broker's
//! own sign-in, as the internal client [`ACCOUNT_CLIENT_ID`].

use crate::audit::Event;
use crate::consent::apps::{self as allowed_apps, AllowedApp};
use crate::csrf::{self, Browser};
use crate::http::{fallback_locale, found, request_context, see_other};
use crate::i18n::Tr;
use crate::login::begin::begin;
use crate::login::chooser::usable;
use crate::login::page_error::{PageError, PageResult};
use crate::login::request::{AuthRequest, Prompt};
use crate::one_time_codes::{self as codes, Purpose};
use crate::pages::{bad_form, render, text};
use crate::sessions::current_session;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::{AuthRequestRow, SessionRow, Unlink, User};
use std::collections::BTreeMap;

/// The broker's own client for the account page (its redirect URI is the broker).
pub const ACCOUNT_CLIENT_ID: &str = "idbridge-account";
const CSRF_PURPOSE: &str = "account";

/// Its registration: a secret nobody knows, so its codes can never be redeemed.
pub fn client_settings(issuer: &str) -> Option<crate::config::ClientSettings> {
    Some(crate::config::ClientSettings {
        id: ACCOUNT_CLIENT_ID.into(),
        name: Some("idbridge".into()),
        secret: Some(idbridge_tokens::random_token(32).ok()?),
        secret_file: None,
        public: false,
        redirect_uris: vec![format!("{issuer}/account/done")],
        post_logout_redirect_uris: vec![format!("{issuer}/account")],
        require_pkce: false,
        id_token_signed_response_alg: None,
        connectors: Vec::new(),
        require_phone: false,
        // The broker's own page: nothing to allow.
        skip_consent: true,
        refresh_without_offline_access: false,
        id_token_on_refresh: true,
        require_pushed_authorization_requests: false,
        allowed_origins: Vec::new(),
    })
}

pub struct IdentityView {
    pub connector_id: String,
    pub connector_name: String,
    pub subject: String,
    pub profile_name: Option<String>,
    pub linked: String,
    pub last_used: String,
}

pub struct LinkChoice {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: Tr,
    notice: Option<&'static str>,
    user_id: String,
    name: Option<String>,
    phone: Option<String>,
    /// The addresses that link new sign-ins from trusted connectors to this
    /// account (docs/accounts.md, "Linking by email").
    emails: Vec<String>,
    identities: Vec<IdentityView>,
    only_one: bool,
    csrf: String,
    linkable: Vec<LinkChoice>,
    /// "Apps you have allowed" ([`crate::consent::apps`]).
    apps: Vec<AllowedApp>,
    apps_csrf: String,
}

/// `2026-11-30` (UTC) from unix seconds.
pub fn date(unix: i64) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[derive(serde::Deserialize)]
pub struct AccountQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "confirmed" => "notice_confirmed",
        "linked" => "notice_linked",
        "already" => "notice_already",
        "other_account" => "notice_other_account",
        "unlinked" => "notice_unlinked",
        "last" => "notice_last",
        "not_found" => "notice_not_found",
        "revoked" => "notice_revoked",
        _ => return None,
    })
}

fn unavailable(locale: Locale) -> PageError {
    PageError::db_down(locale)
}

/// A request for the internal client: sign in (`link_to` = None) or link a method.
async fn new_request(
    state: &AppState,
    locale: Locale,
    link_to: Option<String>,
    prompt: Prompt,
) -> Result<(String, AuthRequest), PageError> {
    let id = idbridge_tokens::random_token(24).map_err(|_| unavailable(locale))?;
    let ar = AuthRequest {
        client_id: ACCOUNT_CLIENT_ID.into(),
        redirect_uri: state.endpoint("/account/done"),
        scope: "openid".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt,
        max_age: None,
        login_hint: None,
        ui_locales: Some(locale.tag().into()),
        pending: None,
        link_to,
        form_post: false,
    };
    let now = state.now();
    let payload = serde_json::to_value(&ar).map_err(|_| unavailable(locale))?;
    state
        .store
        .insert_auth_request(AuthRequestRow {
            id: id.clone(),
            client_id: ACCOUNT_CLIENT_ID.into(),
            payload,
            created_at: now,
            expires_at: now + state.settings.tokens.auth_request_ttl_secs,
        })
        .await
        .map_err(|e| {
            tracing::error!(stage = "account", error = %e, "cannot store the request");
            unavailable(locale)
        })?;
    Ok((id, ar))
}

/// GET /account
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AccountQuery>,
) -> PageResult {
    let locale = fallback_locale(&req);
    let Some((_session, user)) = current_session(&state, &req, state.now(), locale).await? else {
        // Sign in first, through the broker's own chooser.
        let (id, _) = new_request(&state, locale, None, Prompt::default()).await?;
        return Ok(found(&state.endpoint(&format!("/login/{id}"))));
    };
    let browser = Browser::of(&state, &req).ok_or_else(|| unavailable(locale))?;
    let identities = state
        .store
        .list_identities(&user.id)
        .await
        .map_err(|_| unavailable(locale))?;
    let emails = state
        .store
        .list_account_emails(&user.id)
        .await
        .map_err(|_| unavailable(locale))?;
    let name_of = |id: &str| {
        state
            .connector(id)
            .map(|c| c.connector.display_name().to_owned())
            .unwrap_or_else(|| id.to_owned())
    };
    let views: Vec<IdentityView> = identities
        .iter()
        .map(|i| IdentityView {
            connector_id: i.connector_id.clone(),
            connector_name: name_of(&i.connector_id),
            subject: i.subject.clone(),
            profile_name: i
                .profile
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned),
            linked: date(i.created_at),
            last_used: date(i.last_login_at),
        })
        .collect();
    let apps = allowed_apps::allowed(&state, &user.id, date)
        .await
        .map_err(|_| unavailable(locale))?;
    let ctx = request_context(&state, &req, locale);
    let linkable = match state.clients.get(ACCOUNT_CLIENT_ID).await {
        Ok(Some(client)) => usable(&state, &client, &ctx)
            .into_iter()
            .map(|(id, _)| LinkChoice {
                id: id.to_owned(),
                name: name_of(id),
            })
            .collect(),
        _ => Vec::new(),
    };
    let page = AccountPage {
        t: Tr(locale),
        notice: notice(query.done.as_deref()).map(|k| text(locale, k)),
        user_id: user.id.clone(),
        name: user.name.clone(),
        phone: user.phone_number.as_deref().map(codes::mask_phone),
        emails,
        only_one: views.len() <= 1,
        identities: views,
        csrf: browser.csrf(CSRF_PURPOSE),
        linkable,
        apps,
        apps_csrf: browser.csrf(allowed_apps::CSRF_PURPOSE),
    };
    let mut resp = render(locale, text(locale, "account_title"), &page);
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    Ok(resp)
}

/// GET /account/done: where the account page's sign-in lands (the code is not
/// needed: the SSO session is what the account page uses).
pub async fn done(state: web::Data<AppState>) -> HttpResponse {
    found(&state.endpoint("/account"))
}

/// POST /account/link: sign in upstream with another method and link it here.
pub async fn link(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> PageResult {
    let locale = fallback_locale(&req);
    let f = csrf::checked_form(&req, &body, CSRF_PURPOSE).map_err(|e| e.page(&req, locale))?;
    let user = recent_owner(&state, &req, locale).await?;
    let connector_id = f.get("connector").cloned().unwrap_or_default();
    let ctx = request_context(&state, &req, locale);
    let allowed = match state.clients.get(ACCOUNT_CLIENT_ID).await {
        Ok(Some(client)) => usable(&state, &client, &ctx)
            .iter()
            .any(|(id, _)| *id == connector_id),
        _ => false,
    };
    if !allowed {
        return Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "no_connectors",
            "expired_todo",
        ));
    }
    let (id, ar) = new_request(&state, locale, Some(user.id.clone()), Prompt::default()).await?;
    begin(&state, &req, None, &id, &ar, &connector_id, locale).await
}

/// POST /account/unlink
pub async fn unlink(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> PageResult {
    let locale = fallback_locale(&req);
    let f = csrf::checked_form(&req, &body, CSRF_PURPOSE).map_err(|e| e.page(&req, locale))?;
    let user = recent_owner(&state, &req, locale).await?;
    let connector_id = f.get("connector").cloned().unwrap_or_default();
    let subject = f.get("subject").cloned().unwrap_or_default();
    let now = state.now();
    let done = match state
        .store
        .unlink_identity(&user.id, &connector_id, &subject, false, move |u| {
            Event::IdentityUnlinked {
                user_id: &u.identity.user_id,
                connector_id: &u.identity.connector_id,
                link_key_removed: u.link_key_removed,
            }
            .row(now, None)
        })
        .await
    {
        Ok(Unlink::Unlinked(_)) => {
            tracing::info!(event = "identity_unlinked", user_id = %user.id, connector = %connector_id, "a sign-in method was unlinked on the account page");
            "unlinked"
        }
        Ok(Unlink::LastIdentity) => "last",
        Ok(Unlink::NoIdentity | Unlink::NoUser) => "not_found",
        Err(_) => return Err(unavailable(locale)),
    };
    Ok(see_other(&format!("/account?done={done}")))
}

// ---- step-up: confirming it's still the owner before changing sign-in methods

/// Whether the session's sign-in (or last confirmation) is recent enough to
/// change sign-in methods.
fn recent(state: &AppState, session: &SessionRow) -> bool {
    state.now() - session.auth_time <= state.settings.account.reauth_after_secs
}

/// The signed-in person, when their sign-in is recent enough to change sign-in
/// methods; otherwise the page to show (sign in, or confirm it is them).
async fn recent_owner(
    state: &AppState,
    req: &HttpRequest,
    locale: Locale,
) -> Result<User, PageError> {
    match current_session(state, req, state.now(), locale).await? {
        Some((session, user)) if recent(state, &session) => Ok(user),
        Some((_, user)) => Err(confirm_page(state, req, &user, locale, None).await.into()),
        None => Err(found(&state.endpoint("/account")).into()),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    t: Tr,
    error: Option<String>,
    code: bool,
    csrf: String,
}

async fn confirm_page(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
    locale: Locale,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return unavailable(locale).into_response();
    };
    let code = codes::reachable(state, user).await;
    let page = ConfirmPage {
        t: Tr(locale),
        error,
        code,
        csrf: browser.csrf(CSRF_PURPOSE),
    };
    render(locale, text(locale, "confirm_title"), &page)
}

/// The signed-in person, after the CSRF check of a confirmation form.
async fn confirming(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    locale: Locale,
) -> Result<(SessionRow, User, BTreeMap<String, String>), PageError> {
    let f = csrf::checked_form(req, body, CSRF_PURPOSE).map_err(|e| e.page(req, locale))?;
    match current_session(state, req, state.now(), locale).await? {
        Some((session, user)) => Ok((session, user, f)),
        None => Err(found(&state.endpoint("/account")).into()),
    }
}

/// POST /account/confirm/send: a one-time code into the account's WeChat chat,
/// or to its verified phone.
pub async fn confirm_send(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> PageResult {
    let locale = fallback_locale(&req);
    let (_, user, _) = confirming(&state, &req, &body, locale).await?;
    let browser_hash = csrf::browser_hash(&req).ok_or_else(|| bad_form(locale))?;
    // send_code picks the WeChat chat itself; the number is the SMS fallback.
    let phone = codes::verified_phone(&state, &user);
    let ctx = request_context(&state, &req, locale);
    let sent = codes::send_code(
        &state,
        &ctx,
        Purpose::StepUp,
        phone.as_deref(),
        Some(&user),
        &browser_hash,
    )
    .await;
    Ok(match sent {
        Ok(sent) => see_other(&format!("/account/confirm/code?c={}", sent.code_id)),
        Err(e) => {
            let message = codes::send_error_text(locale, &e);
            confirm_page(&state, &req, &user, locale, Some(message)).await
        }
    })
}

#[derive(serde::Deserialize)]
pub struct CodeQuery {
    c: String,
}

fn confirm_code_page(
    state: &AppState,
    req: &HttpRequest,
    code_id: &str,
    locale: Locale,
    error: Option<String>,
) -> HttpResponse {
    let Some(browser) = Browser::of(state, req) else {
        return unavailable(locale).into_response();
    };
    codes::code_page(
        locale,
        codes::CodePageText {
            sent: text(locale, "code_sent_account"),
            destination: None,
            app_redirect: None,
        },
        "/account/confirm/code",
        &browser.csrf(CSRF_PURPOSE),
        code_id,
        "/account",
        error,
    )
}

/// GET /account/confirm/code?c=…
pub async fn confirm_code_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CodeQuery>,
) -> PageResult {
    let locale = fallback_locale(&req);
    Ok(
        match current_session(&state, &req, state.now(), locale).await? {
            Some(_) => confirm_code_page(&state, &req, &query.c, locale, None),
            None => found(&state.endpoint("/account")),
        },
    )
}

/// POST /account/confirm/code: a right code makes the session's sign-in recent.
pub async fn confirm_check(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> PageResult {
    let locale = fallback_locale(&req);
    let (session, user, f) = confirming(&state, &req, &body, locale).await?;
    let browser_hash = csrf::browser_hash(&req).ok_or_else(|| bad_form(locale))?;
    let (st, rq) = (&state, &req);
    let retry = move |code_id: String, e: String| async move {
        confirm_code_page(st, rq, &code_id, locale, Some(e))
    };
    let row = match codes::attempt(
        &state,
        &req,
        &f,
        &browser_hash,
        Purpose::StepUp,
        locale,
        retry,
    )
    .await
    {
        Ok(row) if row.user_id.as_deref() == Some(user.id.as_str()) => row,
        Ok(row) => {
            let e = codes::check_error_text(locale, &idbridge_store::CodeCheck::Unknown);
            return Ok(confirm_code_page(&state, &req, &row.id, locale, Some(e)));
        }
        Err(page) => return Err(page.into()),
    };
    if let Err(e) = state
        .store
        .reauthenticate_session(&session.id, state.now())
        .await
    {
        tracing::error!(stage = "account", error = %e, "cannot record the confirmation");
        return Err(unavailable(locale));
    }
    tracing::info!(event = "step_up", user_id = %user.id, "the person confirmed it is them with a one-time code");
    Event::SteppedUp {
        user_id: &user.id,
        channel: &row.channel,
    }
    .record(&state)
    .await;
    Ok(see_other("/account?done=confirmed"))
}

/// POST /account/confirm/signin: sign in again (`prompt=login`); the new session
/// is recent.
pub async fn confirm_sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> PageResult {
    let locale = fallback_locale(&req);
    confirming(&state, &req, &body, locale).await?;
    let (id, _) = new_request(&state, locale, None, Prompt::login()).await?;
    Ok(see_other(&state.endpoint(&format!("/login/{id}"))))
}

#[cfg(test)]
mod tests {
    use super::date;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_996_800), "2026-11-30");
        assert_eq!(date(1_795_996_800 + 86_399), "2026-11-30");
    }
}
