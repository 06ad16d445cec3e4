//! The SSO session a browser carries: its cookie ([`crate::http::SESSION_COOKIE`])
//! names a live session of an enabled account, or nothing.

use crate::http::SESSION_COOKIE;
use crate::pages::ErrorPage;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use idbridge_core::Locale;
use idbridge_store::{SessionRow, User};
use idbridge_tokens::hash_token;

/// The SSO session from the cookie, if it is live and its user may sign in; the
/// page for a store failure is in `locale`.
pub async fn current_session(
    state: &AppState,
    req: &HttpRequest,
    now: i64,
    locale: Locale,
) -> Result<Option<(SessionRow, User)>, ErrorPage> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let id = hash_token(cookie.value());
    let unavailable = |e: idbridge_store::StoreError| {
        tracing::error!(stage = "session", error = %e, "cannot read the SSO session");
        ErrorPage::new(
            locale,
            StatusCode::SERVICE_UNAVAILABLE,
            "db_down",
            "db_down_todo",
        )
    };
    let Some((session, user)) = state
        .store
        .get_session_and_user(&id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    if session.ended_at.is_some() || session.expires_at <= now {
        return Ok(None);
    }
    if user.disabled_at.is_some() {
        return Ok(None);
    }
    Ok(Some((session, user)))
}
