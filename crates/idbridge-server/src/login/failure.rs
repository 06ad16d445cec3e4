//! A failed upstream step in the browser flow: recorded for the operator
//! ([`crate::upstream::record_connector_failure`]), then told to the person (what
//! happened, what to do, the stage and kind) with a way back to the app — or, when
//! the person cancelled upstream, told to the app at once.

use super::request::AuthRequest;
use super::response::{error_redirect, error_url};
use crate::audit::LoginVia;
use crate::pages::{escape, text, Page};
use crate::state::AppState;
use crate::upstream::record_connector_failure;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use idbridge_core::{ConnectorError, ErrorKind, Locale};

/// Log a failed upstream step precisely, and tell the person and the app.
pub async fn connector_failure(
    state: &AppState,
    ar: &AuthRequest,
    connector_id: &str,
    e: &ConnectorError,
    locale: Locale,
) -> HttpResponse {
    record_connector_failure(state, &ar.client_id, connector_id, e, LoginVia::Browser).await;
    let description = format!(
        "{} failed at {}: {}",
        connector_id,
        e.stage.as_str(),
        e.kind.as_str()
    );
    if e.kind == ErrorKind::UserCancelled {
        return error_redirect(state, ar, "access_denied", &description);
    }
    let (what, todo) = failure_text(e, locale);
    let back = error_url(state, ar, e.kind.oauth_error(), &description);
    let body = format!(
        "<p role=\"alert\">{}</p><p class=\"detail\">{}</p><p class=\"muted\">{}</p><p><a class=\"button primary\" href=\"{}\">{}</a></p>",
        escape(&what),
        escape(&todo),
        escape(&format!(
            "stage={} kind={}{}",
            e.stage.as_str(),
            e.kind.as_str(),
            e.upstream_code.as_ref().map(|c| format!(" code={c}")).unwrap_or_default()
        )),
        escape(&back),
        text(locale, "return_to_app"),
    );
    let title = if locale == Locale::ZhCn {
        "无法登录"
    } else {
        "Sign-in failed"
    };
    Page::new(locale, title, &body)
        .status(StatusCode::BAD_GATEWAY)
        .render()
}

fn failure_text(e: &ConnectorError, locale: Locale) -> (String, String) {
    let zh = locale == Locale::ZhCn;
    let (what, todo) = match e.kind {
        ErrorKind::InvalidCode | ErrorKind::CodeReused => (
            if zh {
                "登录凭证已失效或已被使用。"
            } else {
                "The sign-in code from the provider expired or was already used."
            },
            if zh {
                "请回到应用重新登录。"
            } else {
                "Go back to the application and sign in again."
            },
        ),
        ErrorKind::UpstreamUnavailable
        | ErrorKind::Timeout
        | ErrorKind::RateLimited
        | ErrorKind::BadResponse => (
            if zh {
                "登录服务暂时不可用。"
            } else {
                "The sign-in provider is not answering properly right now."
            },
            if zh {
                "请稍后重试。"
            } else {
                "Wait a moment and try again."
            },
        ),
        ErrorKind::NotAllowed => (
            if zh {
                "此账号不能用于登录。"
            } else {
                "This account cannot be used to sign in here."
            },
            if zh {
                "请按页面提示操作，或换一种方式登录。"
            } else {
                "Follow the provider's instructions, or choose another way to sign in."
            },
        ),
        _ => (
            if zh {
                "登录配置有误，登录无法完成。"
            } else {
                "The broker's sign-in configuration has a problem, so sign-in cannot finish."
            },
            if zh {
                "这不是你的问题。请联系网站管理员，他们可以在日志中看到原因。"
            } else {
                "This is not your fault. Tell the site's operator; the broker's log names the cause."
            },
        ),
    };
    (what.to_owned(), todo.to_owned())
}
