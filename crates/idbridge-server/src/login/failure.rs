//! A failed upstream step in the browser flow: recorded for the operator
//! ([`crate::upstream::record_connector_failure`]), then told to the person (what
//! happened, what to do, the stage and kind) with a way back to the app — or, when
//! the person cancelled upstream, told to the app at once.

use super::page_error::PageError;
use super::request::AuthRequest;
use super::response::error_url;
use crate::audit::LoginVia;
use crate::pages::ErrorPage;
use crate::state::AppState;
use crate::upstream::record_connector_failure;
use crate::upstream_errors::answer_for;
use idbridge_core::{ConnectorError, ErrorKind, Locale};

/// Log a failed upstream step precisely, and tell the person and the app: the
/// page's status, texts and the app's error code come from
/// [`crate::upstream_errors::answer_for`]; a connector's own advice for the
/// person (in their language) follows the general text. Returns the error the
/// handler answers with.
pub async fn connector_failure(
    state: &AppState,
    ar: &AuthRequest,
    connector_id: &str,
    e: &ConnectorError,
    locale: Locale,
) -> PageError {
    record_connector_failure(state, &ar.client_id, connector_id, e, LoginVia::Browser).await;
    let description = format!(
        "{} failed at {}: {}",
        connector_id,
        e.stage.as_str(),
        e.kind.as_str()
    );
    let answer = answer_for(e.kind);
    if e.kind == ErrorKind::UserCancelled {
        return PageError::to_app(state, ar, answer.authorize_error, &description);
    }
    let back = error_url(state, ar, answer.authorize_error, &description);
    let note = format!(
        "stage={} kind={}{}",
        e.stage.as_str(),
        e.kind.as_str(),
        e.upstream_code
            .as_ref()
            .map(|c| format!(" code={c}"))
            .unwrap_or_default()
    );
    ErrorPage::new(locale, answer.page_status, answer.what, answer.todo)
        .advice(e.advice.clone())
        .note(note)
        .button(back, "return_to_app")
        .into()
}
