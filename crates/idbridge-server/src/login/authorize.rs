//! GET and POST /authorize: read the app's request ([`super::parse`]), check what
//! needs the broker's state (the connector it picked, its `id_token_hint`), let
//! the SSO session answer when it may ([`super::sso`]), and otherwise store the
//! request and begin upstream (one sensible connector) or show the chooser.

use super::begin::begin;
use super::chooser::single_choice;
use super::page_error::{PageError, PageResult};
use super::parse::{self, Refusal};
use super::request::PromptValue;
use super::sso::{self, Sso};
use crate::http::{accept_language, found, query_or_form, request_context};
use crate::issue;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use idbridge_core::Locale;
use idbridge_store::AuthRequestRow;
use idbridge_tokens::random_token;

/// GET and POST /authorize.
pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Bytes>,
) -> PageResult {
    let raw = query_or_form(&req, body.as_deref());
    // A control character anywhere is refused outright (the query was screened
    // already, crate::screen; this catches a POSTed form). A repeated parameter
    // still leaves the client and redirect URI, to report the error properly.
    let (params, repeated) = parse::read(&raw)
        .map_err(|r| crate::screen::page_refusal(&req, &r, crate::http::fallback_locale(&req)))?;
    let locale = Locale::negotiate(
        params.get("ui_locales").map(String::as_str),
        accept_language(&req),
    );
    let bad_redirect = || {
        Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "bad_redirect",
            "bad_redirect_todo",
        ))
    };
    if parse::repeats_target(repeated.as_deref()) {
        return bad_redirect();
    }
    let client = match params.get("client_id") {
        None => None,
        Some(id) => state
            .clients
            .get(id)
            .await
            .map_err(|_| PageError::db_down(locale))?,
    };
    let Some(client) = client else {
        tracing::warn!(stage = "authorize", client_id = ?params.get("client_id"), "unknown client_id");
        return Err(PageError::unknown_client(locale));
    };
    crate::telemetry::spans::client_id(&client.id);
    // RFC 9126: a pushed request's parameters, instead of the browser's.
    let pushed = params.contains_key("request_uri");
    let (params, repeated) = match params.get("request_uri") {
        None => (params, repeated),
        Some(uri) => match crate::par::take(&state, uri, &client.id)
            .await
            .map_err(|_| PageError::db_down(locale))?
        {
            Ok(pushed) => (pushed, None),
            Err(why) => {
                tracing::warn!(stage = "authorize", client_id = %client.id, reason = ?why, fix = "send the browser to /authorize within the pushed request's expires_in, once, with the client_id that pushed it", "request_uri is unknown, used, expired or another client's");
                return Err(PageError::expired(locale));
            }
        },
    };
    let parsed = match parse::parse(&params, repeated.as_deref(), &client) {
        Err(Refusal::BadRedirect) => {
            tracing::warn!(stage = "authorize", client_id = %client.id, redirect_uri = ?params.get("redirect_uri"), "redirect_uri is not registered for this client; not redirecting");
            return bad_redirect();
        }
        Err(Refusal::ToApp(e)) if e.repeated => {
            return Err(PageError::to_app(&state, &e.reply, e.error, &e.description))
        }
        other => other,
    };
    let reply = match &parsed {
        Ok(authz) => authz.to_request(),
        Err(Refusal::ToApp(e)) => e.reply.clone(),
        Err(Refusal::BadRedirect) => return bad_redirect(),
    };
    // This app's turn at local work (crate::fair); held until the response is built.
    let Ok(_turn) = state.fair.enter(&client.id).await else {
        return Err(PageError::to_app(
            &state,
            &reply,
            "temporarily_unavailable",
            "the broker is busy with this application's sign-ins; retry shortly",
        ));
    };
    let authz = match parsed {
        Ok(_) if client.require_pushed_authorization_requests && !pushed => {
            tracing::warn!(stage = "authorize", client_id = %client.id, fix = "push the request to /par first and send the browser with its request_uri", "this client must use pushed authorization requests");
            return Err(PageError::to_app(
                &state,
                &reply,
                "invalid_request",
                "this client must use pushed authorization requests (RFC 9126): push the request to the pushed_authorization_request_endpoint",
            ));
        }
        Ok(authz) => authz,
        Err(Refusal::ToApp(e)) => {
            return Err(PageError::to_app(&state, &e.reply, e.error, &e.description))
        }
        Err(Refusal::BadRedirect) => return bad_redirect(),
    };
    let ar = reply;
    if let Some(c) = &authz.connector {
        match state.connector(c) {
            Some(entry) if client.may_use_connector(c) => {
                if !entry.connector.has_browser_flow() {
                    return Err(PageError::to_app(
                        &state,
                        &ar,
                        "invalid_request",
                        &no_browser_flow(c),
                    ));
                }
            }
            _ => {
                return Err(PageError::to_app(
                    &state,
                    &ar,
                    "invalid_request",
                    &format!("connector {c:?} is not available to this application"),
                ))
            }
        }
    }
    // id_token_hint (OpenID Connect Core §3.1.2.1): an ID token this broker issued
    // to this app, expired or not, naming the person the app expects.
    let hinted_sub = match &authz.id_token_hint {
        None => None,
        Some(t) => match issue::verify_id_token_hint(&state, t, Some(&client.id)) {
            Some(h) => Some(h.sub),
            None => {
                tracing::warn!(stage = "authorize", client_id = %client.id, "id_token_hint is not a valid ID token from this broker for this client");
                return Err(PageError::to_app(
                    &state,
                    &ar,
                    "invalid_request",
                    "id_token_hint is not a valid ID token issued by this broker to this application",
                ));
            }
        },
    };
    let locale = ar.locale(&req);

    let now = state.now();
    let (phone_step, consent_step, someone_else) =
        match sso::reuse(&state, &req, &client, &ar, hinted_sub.as_deref(), now).await {
            Sso::Answered(resp) => return Ok(resp),
            Sso::PhoneFirst => (true, false, false),
            Sso::ConsentFirst => (false, true, false),
            Sso::SignIn { someone_else } => (false, false, someone_else),
        };
    if ar.prompt.has(PromptValue::None) {
        let (error, description) = if consent_step {
            tracing::info!(event = "consent_required", client_id = %client.id, "prompt=none, but the person has not allowed this application what it asks for");
            (
                "consent_required",
                "the person has not allowed this application the requested scopes; send them without prompt=none",
            )
        } else if phone_step {
            (
                "interaction_required",
                "the person must verify a phone number for this application first",
            )
        } else if someone_else {
            (
                "login_required",
                "the person named by id_token_hint is not the one signed in at the broker",
            )
        } else {
            (
                "login_required",
                "the person is not signed in at the broker",
            )
        };
        return Err(PageError::to_app(&state, &ar, error, description));
    }

    let request_id = random_token(24).map_err(|_| PageError::internal(locale))?;
    let payload = serde_json::to_value(&ar).map_err(|_| PageError::internal(locale))?;
    let row = AuthRequestRow {
        id: request_id.clone(),
        client_id: client.id.clone(),
        payload,
        created_at: now,
        expires_at: now + state.settings.tokens.auth_request_ttl_secs,
    };
    let ctx = request_context(&state, &req, locale);
    let signed_in_step = phone_step || consent_step;
    let chosen = authz.connector.filter(|_| !signed_in_step).or_else(|| {
        // prompt=select_account: the person picks, even when one method would do.
        single_choice(&state, &client, &ctx)
            .filter(|_| !signed_in_step && !ar.prompt.has(PromptValue::SelectAccount))
    });
    if let Some(connector_id) = chosen {
        // The request and its upstream flow are stored together.
        return begin(
            &state,
            &req,
            Some(row),
            &request_id,
            &ar,
            &connector_id,
            locale,
        )
        .await;
    }
    if let Err(e) = state.store.insert_auth_request(row).await {
        tracing::error!(stage = "authorize", error = %e, "cannot store the authorization request");
        return Err(PageError::to_app(
            &state,
            &ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        ));
    }
    if phone_step {
        return Ok(found(
            &state.endpoint(&format!("/login/{request_id}/phone")),
        ));
    }
    if consent_step {
        return Ok(found(&crate::login::consent_step::url(&state, &request_id)));
    }
    Ok(found(&state.endpoint(&format!("/login/{request_id}"))))
}

/// Why `connector=<id>` cannot start a sign-in in a browser.
fn no_browser_flow(id: &str) -> String {
    format!(
        "connector {id:?} has no browser sign-in: it is for native apps, which exchange the upstream token (e.g. a WeChat SDK code) at the token endpoint with grant_type={}",
        crate::exchange::GRANT_TYPE
    )
}
