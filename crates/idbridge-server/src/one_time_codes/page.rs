//! The pages of a one-time code: the form that asks for it, and what the person
//! is told when a code did not go out or did not verify.

use super::SendError;
use crate::i18n::{t, Tr};
use crate::pages::{render_status, render_status_to_app};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;
use idbridge_core::Locale;
use idbridge_store::CodeCheck;

/// What the code page says about where the code went.
pub struct CodePageText {
    pub sent: &'static str,
    /// The (masked) number, when it may be shown.
    pub destination: Option<String>,
    /// The app's redirect URI when a right code ends there (a sign-in's phone
    /// or binding step): the page's CSP lets its form's redirect through.
    pub app_redirect: Option<String>,
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
    match text.app_redirect.as_deref() {
        Some(uri) => render_status_to_app(locale, t(locale, "code_title"), status, &page, uri),
        None => render_status(locale, t(locale, "code_title"), status, &page),
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

/// What to tell the person when a code did not go out.
pub fn send_error_text(locale: Locale, e: &SendError) -> String {
    match e {
        SendError::Throttled(secs) => format!("{} {secs}", t(locale, "code_throttled")),
        SendError::Failed => format!(
            "{} {}",
            t(locale, "code_send_failed"),
            t(locale, "code_send_failed_todo")
        ),
        SendError::Store(err) => {
            tracing::error!(stage = "verification", error = %err, "cannot store the code");
            t(locale, "db_down").to_owned()
        }
    }
}
