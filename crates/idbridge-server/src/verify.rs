//! One-time verification codes: six digits, sent to a phone number (through the
//! configured sender: a webhook to the operator's SMS gateway, or in development
//! the log and the dev outbox) or into the person's WeChat chat with an Official
//! Account (a connector that can send messages). Stored by hash, bound to the
//! browser that asked, single use, short-lived, with a cap on wrong attempts and on
//! how often one number is sent codes.

use crate::authorize::audit;
use crate::config::VerificationSettings;
use crate::i18n::{t, Tr};
use crate::pages::render_status;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::{Locale, RequestContext};
use idbridge_store::{CodeCheck, CodeInsert, SendLimits, StoreError, User, VerificationCode};
use idbridge_tokens::{constant_time_eq, hmac_sha256_hex, random_digits, random_token};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// What a code proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Ownership of an existing account (first_login = "bind").
    Bind,
    /// Ownership of a phone number (a client with `require_phone`).
    Phone,
    /// That the signed-in person is still the account's owner (before linking
    /// or unlinking sign-in methods on the account page).
    StepUp,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Bind => "bind",
            Purpose::Phone => "phone",
            Purpose::StepUp => "step_up",
        }
    }
}

/// Where a code went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Sms,
    WeChat,
    /// No account has this number: nothing was sent (the page looks the same).
    Nowhere,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Sms => "sms",
            Via::WeChat => "wechat",
            Via::Nowhere => "none",
        }
    }
}

/// A message the development sender "sent", kept for `/dev/outbox`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxEntry {
    pub at: i64,
    pub channel: &'static str,
    pub to: String,
    pub code: String,
    pub text: String,
}

/// The last messages of the development sender (dev mode only).
#[derive(Default)]
pub struct Outbox(Mutex<VecDeque<OutboxEntry>>);

impl Outbox {
    const KEEP: usize = 50;

    fn push(&self, entry: OutboxEntry) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == Self::KEEP {
            q.pop_front();
        }
        q.push_back(entry);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<OutboxEntry> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().rev().cloned().collect()
    }
}

/// The code machinery, built once from `[verification]`.
pub struct Verifier {
    pub settings: VerificationSettings,
    pub outbox: Outbox,
    http: reqwest::Client,
}

/// Why a code could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// This number was sent a code too recently: retry after so many seconds.
    Throttled(i64),
    /// The sender failed (logged with the stage and the fix).
    Failed,
    Store(StoreError),
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> Self {
        SendError::Store(e)
    }
}

/// A code that went out (or, for an unknown number, was pretended to).
#[derive(Debug, Clone)]
pub struct Sent {
    pub code_id: String,
    pub via: Via,
}

impl Verifier {
    pub fn new(settings: VerificationSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            settings,
            outbox: Outbox::default(),
            http,
        })
    }

    /// Whether codes can be sent to phone numbers at all.
    pub fn phone_codes(&self) -> bool {
        self.settings.sender != "none"
    }

    fn limits(&self) -> SendLimits {
        SendLimits {
            min_interval_secs: self.settings.resend_after_secs,
            per_hour: self.settings.per_hour,
        }
    }

    /// The text a person receives.
    fn message(&self, locale: Locale, code: &str) -> String {
        let site = &self.settings.site_name;
        let minutes = (self.settings.code_ttl_secs / 60).max(1);
        match locale {
            Locale::ZhCn => {
                format!("【{site}】验证码 {code}，{minutes} 分钟内有效。请勿告诉他人。")
            }
            Locale::En => format!(
                "{site}: your verification code is {code}. It expires in {minutes} minutes. Do not share it."
            ),
        }
    }

    /// POST the code to the operator's webhook (their SMS gateway), signed.
    async fn webhook(&self, body: &serde_json::Value, now: i64) -> Result<(), String> {
        let url = self.settings.webhook_url.as_deref().unwrap_or_default();
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let timestamp = now.to_string();
        let mut signed = timestamp.clone().into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(&payload);
        let secret = self.settings.webhook_secret.as_deref().unwrap_or_default();
        let signature = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &signed));
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-idbridge-timestamp", timestamp)
            .header("x-idbridge-signature", signature)
            .body(payload)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }
}

/// `raw` as E.164 (`+8613800138000`), or `None` when it is not a phone number.
/// Spaces, dashes, dots and parentheses are ignored; `00` means `+`; a number
/// without a country code gets `default_cc` (11-digit mainland mobiles for 86).
pub fn normalize_phone(raw: &str, default_cc: &str) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}'))
        .collect();
    let international = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"));
    let digits = match international {
        Some(rest) => rest.to_owned(),
        None => {
            if !compact.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if default_cc == "86" {
                // Mainland mobiles: 11 digits starting with 1.
                if compact.len() != 11 || !compact.starts_with('1') {
                    return None;
                }
                format!("86{compact}")
            } else {
                format!("{default_cc}{}", compact.trim_start_matches('0'))
            }
        }
    };
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && (!digits.starts_with("86") || (digits.len() == 13 && digits[2..].starts_with('1')));
    ok.then(|| format!("+{digits}"))
}

/// `+86 138****8000`: enough for the person to recognise their number.
pub fn mask_phone(e164: &str) -> String {
    let digits = e164.trim_start_matches('+');
    let n = digits.len();
    if n < 8 || !digits.is_ascii() {
        return e164.to_owned();
    }
    match digits.strip_prefix("86") {
        Some(rest) if rest.len() == 11 => format!("+86 {}****{}", &rest[..3], &rest[7..]),
        _ => format!("+{}****{}", &digits[..3], &digits[n - 4..]),
    }
}

/// What is stored for a code: keyed with the master key, so a copy of the
/// database alone cannot try the million six-digit codes against it.
fn code_hash(state: &AppState, id: &str, code: &str) -> String {
    state
        .master_key
        .mac_hex("verification-code", format!("{id}:{code}").as_bytes())
}

/// The account's identity at a connector that can message it (WeChat Official
/// Account with `messages = true`), if any.
async fn messaging_identity(state: &AppState, user: &User) -> Option<(String, String)> {
    let identities = state.store.list_identities(&user.id).await.ok()?;
    identities.into_iter().find_map(|i| {
        state
            .connector(&i.connector_id)
            .filter(|c| c.connector.can_send_messages())
            .map(|_| (i.connector_id, i.subject))
    })
}

/// Whether a code proving `user` can reach them at all: into WeChat (an identity
/// at a connector that can message it) or by SMS (a verified number).
pub async fn reachable(state: &AppState, user: &User) -> bool {
    verified_phone(state, user).is_some()
        || (state.verifier.settings.wechat && messaging_identity(state, user).await.is_some())
}

/// The account's verified number, when phone codes are on.
pub fn verified_phone(state: &AppState, user: &User) -> Option<String> {
    user.phone_number
        .clone()
        .filter(|_| user.phone_verified_at.is_some() && state.verifier.phone_codes())
}

/// Send a code for `purpose`. `phone` is the number typed or on file (also what
/// resends are counted by; without one, the account is). `user` is the account
/// the code proves: for binding, `None` means no account has this number, and a
/// code is stored but never sent, so the page cannot tell anyone whether the
/// number is known. Codes proving an account go into its WeChat chat first.
pub async fn send_code(
    state: &AppState,
    ctx: &RequestContext,
    purpose: Purpose,
    phone: Option<&str>,
    user: Option<&User>,
    browser_hash: &str,
) -> Result<Sent, SendError> {
    let v = &state.verifier;
    let now = ctx.now;
    let (code, id) = match (random_digits(6), random_token(16)) {
        (Ok(c), Ok(i)) => (c, i),
        _ => return Err(SendError::Failed),
    };
    let wechat = match (purpose, user) {
        (Purpose::Bind | Purpose::StepUp, Some(u)) if v.settings.wechat => {
            messaging_identity(state, u).await
        }
        _ => None,
    };
    let planned = match (purpose, user, &wechat, phone) {
        (Purpose::Bind, None, _, _) => Via::Nowhere,
        (_, _, Some(_), _) => Via::WeChat,
        (_, _, None, Some(_)) => Via::Sms,
        (_, _, None, None) => return Err(SendError::Failed),
    };
    let destination = match (phone, user) {
        (Some(p), _) => p.to_owned(),
        (None, Some(u)) => format!("account:{}", u.id),
        (None, None) => return Err(SendError::Failed),
    };
    let row = VerificationCode {
        id: id.clone(),
        purpose: purpose.as_str().into(),
        channel: planned.as_str().into(),
        destination: destination.clone(),
        user_id: user.map(|u| u.id.clone()),
        browser_hash: browser_hash.to_owned(),
        code_hash: code_hash(state, &id, &code),
        attempts: 0,
        created_at: now,
        expires_at: now + v.settings.code_ttl_secs,
        used_at: None,
    };
    match state
        .store
        .insert_verification_code(row, v.limits())
        .await?
    {
        CodeInsert::Stored => {}
        CodeInsert::Throttled { retry_after } => return Err(SendError::Throttled(retry_after)),
    }
    let text = v.message(ctx.locale, &code);
    let mut via = planned;
    if let Some((connector_id, subject)) = &wechat {
        if !send_wechat(state, ctx, connector_id, subject, &text).await {
            // Outside the 48 h window, quota, WeChat down: the phone still works.
            via = Via::Sms;
        }
    }
    let delivered = match (via, phone) {
        (Via::Nowhere, _) => {
            tracing::info!(
                stage = "verification",
                purpose = purpose.as_str(),
                "no account has this phone number; no code sent (the page does not say so)"
            );
            true
        }
        (Via::WeChat, _) => true,
        (Via::Sms, Some(phone)) => send_sms(state, ctx, purpose, phone, &code, &text).await,
        (Via::Sms, None) => false,
    };
    if !delivered {
        // Nothing half-written: the code that never went out does not count.
        if let Err(e) = state.store.delete_verification_code(&id).await {
            tracing::error!(stage = "verification", error = %e, "cannot delete an undelivered code");
        }
        return Err(SendError::Failed);
    }
    if via != planned {
        state
            .store
            .set_verification_code_channel(&id, via.as_str())
            .await?;
    }
    if state.dev_mode && via != Via::Nowhere {
        v.outbox.push(OutboxEntry {
            at: now,
            channel: via.as_str(),
            to: destination,
            code: code.clone(),
            text: text.clone(),
        });
    }
    audit(
        state,
        "verification_code_sent",
        user.map(|u| u.id.as_str()),
        None,
        wechat
            .as_ref()
            .map(|(c, _)| c.as_str())
            .filter(|_| via == Via::WeChat),
        serde_json::json!({"purpose": purpose.as_str(), "via": via.as_str()}),
    )
    .await;
    Ok(Sent { code_id: id, via })
}

async fn send_wechat(
    state: &AppState,
    ctx: &RequestContext,
    connector_id: &str,
    subject: &str,
    text: &str,
) -> bool {
    let Some(entry) = state.connector(connector_id) else {
        return false;
    };
    match entry.connector.send_message(ctx, subject, text).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                event = "verification_failed",
                stage = e.stage.as_str(),
                connector = connector_id,
                kind = e.kind.as_str(),
                upstream_code = e.upstream_code.as_deref().unwrap_or("-"),
                upstream_message = e.upstream_message.as_deref().unwrap_or("-"),
                fix = e.fix.as_deref().unwrap_or("-"),
                "could not send the code into WeChat; falling back to the phone"
            );
            false
        }
    }
}

async fn send_sms(
    state: &AppState,
    ctx: &RequestContext,
    purpose: Purpose,
    phone: &str,
    code: &str,
    text: &str,
) -> bool {
    let v = &state.verifier;
    match v.settings.sender.as_str() {
        "log" => {
            tracing::info!(
                stage = "verification",
                channel = "sms",
                to = phone,
                code,
                "development sender: the code is logged (and in /dev/outbox), not sent"
            );
            true
        }
        "webhook" => {
            let body = serde_json::json!({
                "type": "verification_code",
                "channel": "sms",
                "to": phone,
                "code": code,
                "text": text,
                "locale": ctx.locale.tag(),
                "purpose": purpose.as_str(),
                "expires_in": v.settings.code_ttl_secs,
            });
            match v.webhook(&body, ctx.now).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(event = "verification_failed", stage = "verification", channel = "sms", error = %e, fix = "verification.webhook_url must answer 2xx within 5 s: check the SMS gateway behind it", "could not send the code");
                    false
                }
            }
        }
        _ => {
            tracing::warn!(
                event = "verification_failed",
                stage = "verification",
                channel = "sms",
                fix = "set verification.sender to send codes to phones",
                "phone codes are off"
            );
            false
        }
    }
}

/// Check an attempt at code `id` from the browser that asked for it.
pub async fn check_code(
    state: &AppState,
    id: &str,
    attempt: &str,
    browser_hash: &str,
) -> Result<CodeCheck, StoreError> {
    let expected = code_hash(state, id, attempt.trim());
    state
        .store
        .check_verification_code(
            id,
            browser_hash,
            state.now(),
            state.verifier.settings.max_attempts,
            move |stored| constant_time_eq(stored.as_bytes(), expected.as_bytes()),
        )
        .await
}

/// What the code page says about where the code went.
pub struct CodePageText {
    pub sent: &'static str,
    /// The (masked) number, when it may be shown.
    pub destination: Option<String>,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    t: Tr,
    sent: &'a str,
    destination: Option<String>,
    error: Option<String>,
    action: &'a str,
    csrf: &'a str,
    code_id: &'a str,
    restart: &'a str,
}

/// The page that asks for the code.
pub fn code_page(
    locale: Locale,
    text: CodePageText,
    action: &str,
    csrf: &str,
    code_id: &str,
    restart: &str,
    error: Option<String>,
) -> HttpResponse {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = CodePage {
        t: Tr(locale),
        sent: text.sent,
        destination: text.destination,
        error,
        action,
        csrf,
        code_id,
        restart,
    };
    render_status(locale, t(locale, "code_title"), status, &page)
}

/// The code typed into a posted form (fields `c` and `code`), checked for the
/// browser that asked for it. `Ok` with the code's row when it is right.
/// Otherwise the page to show: `retry(code id, what was wrong)` (the code page
/// again), HTTP 429 once the address has failed too often, or 503. Wrong, dead
/// or unknown codes count against the per-IP failure limit and are logged.
pub async fn attempt<R, Page>(
    state: &AppState,
    req: &HttpRequest,
    form: &BTreeMap<String, String>,
    browser_hash: &str,
    purpose: Purpose,
    locale: Locale,
    retry: R,
) -> Result<VerificationCode, HttpResponse>
where
    R: FnOnce(String, String) -> Page,
    Page: std::future::Future<Output = HttpResponse>,
{
    let ip = state.proxies.of(req);
    match state.failures.check(ip, state.now_ms()).await {
        Ok(()) => {}
        Err(crate::limits::Refused::Limited) => {
            return Err(crate::pages::error_page(
                locale,
                StatusCode::TOO_MANY_REQUESTS,
                t(locale, "too_many_failures"),
                t(locale, "too_many_failures_todo"),
            ))
        }
        Err(crate::limits::Refused::Store(e)) => {
            tracing::error!(stage = "rate_limit", error = %e, "cannot read the failure counter");
            return Err(crate::pages::error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                t(locale, "db_down"),
                t(locale, "db_down_todo"),
            ));
        }
    }
    let code_id = form.get("c").map(String::as_str).unwrap_or_default();
    let typed = form.get("code").map(String::as_str).unwrap_or_default();
    match check_code(state, code_id, typed, browser_hash).await {
        Ok(CodeCheck::Verified(row)) => Ok(row),
        Ok(other) => {
            state.failures.failed(ip, state.now_ms()).await;
            tracing::info!(
                event = "verification_failed",
                stage = "verification",
                purpose = purpose.as_str(),
                reason = check_reason(&other),
                "a wrong, dead or unknown one-time code was entered"
            );
            Err(retry(code_id.to_owned(), check_error_text(locale, &other)).await)
        }
        Err(e) => {
            tracing::error!(stage = "verification", error = %e, "cannot check the code");
            Err(crate::pages::error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                t(locale, "db_down"),
                t(locale, "db_down_todo"),
            ))
        }
    }
}

/// What the person is told about a code that did not verify.
pub fn check_error_text(locale: Locale, check: &CodeCheck) -> String {
    match check {
        CodeCheck::Wrong { attempts_left } => {
            format!("{} {attempts_left}", t(locale, "code_wrong"))
        }
        CodeCheck::TooManyAttempts => t(locale, "code_too_many").to_owned(),
        CodeCheck::Expired => t(locale, "code_expired").to_owned(),
        CodeCheck::Unknown | CodeCheck::Verified(_) => t(locale, "code_unknown").to_owned(),
    }
}

/// The log's word for it.
pub fn check_reason(check: &CodeCheck) -> &'static str {
    match check {
        CodeCheck::Wrong { .. } => "wrong_code",
        CodeCheck::TooManyAttempts => "too_many_attempts",
        CodeCheck::Expired => "expired_code",
        CodeCheck::Unknown => "unknown_code",
        CodeCheck::Verified(_) => "verified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_normalize_to_e164() {
        let n = |s| normalize_phone(s, "86");
        assert_eq!(n("13800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(n(" 138 0013-8000 ").as_deref(), Some("+8613800138000"));
        assert_eq!(n("+86 138 0013 8000").as_deref(), Some("+8613800138000"));
        assert_eq!(n("008613800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(n("+1 (415) 555-2671").as_deref(), Some("+14155552671"));
        assert_eq!(n("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        for bad in [
            "",
            "12345",
            "23800138000",
            "+86 12345",
            "+0123456789",
            "phone",
            "+86138001380001",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
        assert_eq!(
            normalize_phone("020 7946 0958", "44").as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn masked_numbers_keep_the_country_and_the_last_four_digits() {
        assert_eq!(mask_phone("+8613800138000"), "+86 138****8000");
        assert_eq!(mask_phone("+14155552671"), "+141****2671");
    }
}
