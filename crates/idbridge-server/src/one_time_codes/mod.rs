//! One-time verification codes: six digits, sent to a phone number (through the
//! configured sender: a webhook to the operator's SMS gateway, or in development
//! the log and the dev outbox) or into the person's WeChat chat with an Official
//! Account (a connector that can send messages). Stored by hash, bound to the
//! browser that asked, single use, short-lived, with a cap on wrong attempts and on
//! how often one number is sent codes.
//!
//! `sender` holds the SMS sender and the dev outbox (what [`AppState`] keeps),
//! `phone_number` the number formats, `page` the code form and its messages.

pub mod page;
pub mod phone_number;
pub mod sender;

pub use page::{check_error_text, code_page, send_error_text, CodePageText};
pub use phone_number::{mask_phone, normalize_phone};
pub use sender::{Outbox, OutboxEntry, Verifier};

use crate::audit::Event;
use crate::config::Sender;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use idbridge_core::Locale;
use idbridge_core::RequestContext;
use idbridge_store::{CodeCheck, CodeInsert, StoreError, User, VerificationCode};
use idbridge_tokens::{constant_time_eq, random_digits, random_token};
use std::collections::BTreeMap;

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
    /// Into the person's chat at a connector that can send messages (a WeChat
    /// Official Account with `messages = true`).
    Connector,
    /// No account has this number: nothing was sent (the page looks the same).
    Nowhere,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Sms => "sms",
            // The stored and logged word predates other messaging connectors.
            Via::Connector => "wechat",
            Via::Nowhere => "none",
        }
    }
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
        || (state.verifier.settings.connector_messages
            && messaging_identity(state, user).await.is_some())
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
    let messaging = match (purpose, user) {
        (Purpose::Bind | Purpose::StepUp, Some(u)) if v.settings.connector_messages => {
            messaging_identity(state, u).await
        }
        _ => None,
    };
    let planned = match (purpose, user, &messaging, phone) {
        (Purpose::Bind, None, _, _) => Via::Nowhere,
        (_, _, Some(_), _) => Via::Connector,
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
    if let Some((connector_id, subject)) = &messaging {
        if !send_by_connector(state, ctx, connector_id, subject, &text).await {
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
        (Via::Connector, _) => true,
        (Via::Sms, Some(phone)) => {
            let sent = send_sms(state, ctx, purpose, phone, &code, &text).await;
            crate::telemetry::one_time_code("sms", sent);
            sent
        }
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
    Event::CodeSent {
        user_id: user.map(|u| u.id.as_str()),
        connector_id: messaging
            .as_ref()
            .map(|(c, _)| c.as_str())
            .filter(|_| via == Via::Connector),
        purpose: purpose.as_str(),
        via: via.as_str(),
    }
    .record(state)
    .await;
    Ok(Sent { code_id: id, via })
}

/// Send `text` into the person's chat at `connector_id`; `false` when it did not go.
async fn send_by_connector(
    state: &AppState,
    ctx: &RequestContext,
    connector_id: &str,
    subject: &str,
    text: &str,
) -> bool {
    let Some(entry) = state.connector(connector_id) else {
        return false;
    };
    let sent = entry.connector.send_message(ctx, subject, text).await;
    crate::telemetry::one_time_code("connector", sent.is_ok());
    match sent {
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
    match v.sender {
        Sender::Log => {
            tracing::info!(
                stage = "verification",
                channel = "sms",
                to = phone,
                code,
                "development sender: the code is logged (and in /dev/outbox), not sent"
            );
            true
        }
        Sender::Webhook => {
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
        Sender::None => {
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
                "too_many_failures",
                "too_many_failures_todo",
            ))
        }
        Err(crate::limits::Refused::Store(e)) => {
            tracing::error!(stage = "rate_limit", error = %e, "cannot read the failure counter");
            return Err(crate::pages::error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                "db_down",
                "db_down_todo",
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
                "db_down",
                "db_down_todo",
            ))
        }
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
