//! Beginning an upstream sign-in: the connector's `begin` (a redirect, or a page
//! such as an embedded QR code) and the flow remembered under a short random
//! state, bound to this browser. What a connector learns of the app's request is
//! built in one place, [`begin_request`].

use super::failure::connector_failure;
use super::page_error::{PageError, PageResult};
use super::request::AuthRequest;
use crate::csrf::Browser;
use crate::http::{found, request_context};
use crate::pages::Page;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use idbridge_core::{Begin, BeginRequest, Locale};
use idbridge_store::{AuthRequestRow, FlowRow};
use idbridge_tokens::random_alnum;

/// Send the person to the connector, remembering the flow under a short state.
pub async fn begin(
    state: &AppState,
    req: &HttpRequest,
    new_request: Option<AuthRequestRow>,
    request_id: &str,
    ar: &AuthRequest,
    connector_id: &str,
    locale: Locale,
) -> PageResult {
    let browser = Browser::of(state, req).ok_or_else(|| PageError::internal(locale))?;
    let begin = start_flow(
        state,
        req,
        &browser,
        new_request,
        request_id,
        ar,
        connector_id,
        locale,
    )
    .await?;
    let mut resp = match begin {
        Begin::Redirect(url) => found(&url),
        Begin::Page {
            title,
            body_html,
            script_sources,
            frame_sources,
        } => {
            // The page's form (the dev connector's) ends at the app, via the callback.
            let forms = crate::pages::form_actions_to(&ar.redirect_uri);
            let mut page = Page::new(locale, &title, &body_html);
            page.script_sources = &script_sources;
            page.frame_sources = &frame_sources;
            page.form_actions = &forms;
            page.render()
        }
    };
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    Ok(resp)
}

/// Begin an upstream sign-in with `connector_id` and remember the flow under a
/// short random state, bound to this browser (whose cookie the caller sets when
/// `browser.new_cookie` says so); `new_request`, when given, is the authorization
/// request itself, stored in the same transaction. Returns where to send the person.
#[allow(clippy::too_many_arguments)]
pub async fn start_flow(
    state: &AppState,
    req: &HttpRequest,
    browser: &Browser,
    new_request: Option<AuthRequestRow>,
    request_id: &str,
    ar: &AuthRequest,
    connector_id: &str,
    locale: Locale,
) -> Result<Begin, PageError> {
    let entry = state.connector(connector_id).ok_or_else(|| {
        PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "unknown_connector",
            "expired_todo",
        )
    })?;
    crate::telemetry::spans::connector(connector_id);
    crate::telemetry::spans::client_id(&ar.client_id);
    let ctx = request_context(state, req, locale);
    let upstream_state = random_alnum(32).map_err(|_| PageError::internal(locale))?;
    let callback_url = state.endpoint(&format!("/callback/{connector_id}"));
    crate::telemetry::sign_in_started(
        state.connector_label(connector_id),
        crate::audit::LoginVia::Browser.as_str(),
    );
    let begun = entry
        .connector
        .begin(
            &ctx,
            &begin_request(ar, upstream_state.clone(), callback_url),
        )
        .await;
    let started = match begun {
        Ok(s) => s,
        Err(e) => return Err(connector_failure(state, ar, connector_id, &e, locale).await),
    };
    let now = state.now();
    let flow = FlowRow {
        state: upstream_state,
        connector_id: connector_id.to_owned(),
        auth_request_id: request_id.to_owned(),
        browser_hash: browser.hash(),
        data: started.flow_data,
        created_at: now,
        expires_at: now + state.settings.tokens.auth_request_ttl_secs.min(900),
        used_at: None,
        outcome: None,
    };
    let stored = match new_request {
        Some(request) => {
            state
                .store
                .insert_auth_request_and_flow(request, flow)
                .await
        }
        None => state.store.insert_flow(flow).await,
    };
    if let Err(e) = stored {
        tracing::error!(stage = "begin", connector = %connector_id, error = %e, "cannot store the upstream flow");
        return Err(PageError::to_app(
            state,
            ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        ));
    }
    Ok(started.begin)
}

/// What a connector's `begin` learns of the app's request: the broker's state
/// and callback, and the app's scopes, prompt, max_age, ui_locales and login_hint.
fn begin_request(ar: &AuthRequest, upstream_state: String, callback_url: String) -> BeginRequest {
    BeginRequest::new(upstream_state, callback_url)
        .with_login_hint(ar.login_hint.clone())
        .with_scopes(ar.scope.split_ascii_whitespace())
        .with_prompt(ar.prompt.iter())
        .with_max_age(ar.max_age.and_then(|m| u64::try_from(m).ok()))
        .with_ui_locales(ar.ui_locales.clone())
}
