//! The connector chooser (GET /login/{request}): the sign-in methods this app may
//! use in this browser, those that show themselves inline (an embedded QR code)
//! begun at once, the others as buttons, and why any method the app offers cannot
//! be used here. `?connector=` begins one.

use super::begin::{begin, start_flow};
use super::page_error::{PageError, PageResult};
use super::request::{load_request, PromptValue};
use super::response::error_url;
use super::sso::{continue_as_signed_in, Sso};
use crate::clients::Client;
use crate::http::{fallback_locale, found, request_context};
use crate::i18n::Tr;
use crate::pages::{text, ErrorPage, Link, Page};
use crate::sessions::current_session;
use crate::state::{AppState, ConnectorEntry};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::{Availability, Begin, RequestContext};
use serde::Deserialize;

/// The connectors with a browser flow this client may use, in config order.
fn offered<'a>(
    state: &'a AppState,
    client: &'a Client,
) -> impl Iterator<Item = &'a (String, ConnectorEntry)> + 'a {
    state
        .connectors
        .iter()
        .filter(|(id, c)| client.may_use_connector(id) && c.connector.has_browser_flow())
}

/// The connectors this client may use in this browser, with their availability.
/// Connectors without a browser flow (native-app token exchange) are never among them.
pub fn usable<'a>(
    state: &'a AppState,
    client: &'a Client,
    ctx: &RequestContext,
) -> Vec<(&'a str, Availability)> {
    offered(state, client)
        .map(|(id, c)| (id.as_str(), c.connector.availability(ctx)))
        .filter(|(_, a)| !matches!(a, Availability::Unavailable { .. }))
        .collect()
}

/// Pick a connector without asking when there is only one sensible choice.
pub fn single_choice(state: &AppState, client: &Client, ctx: &RequestContext) -> Option<String> {
    let list = usable(state, client, ctx);
    let preferred: Vec<_> = list
        .iter()
        .filter(|(_, a)| *a == Availability::Preferred)
        .collect();
    if preferred.len() == 1 {
        return preferred.first().map(|(id, _)| (*id).to_owned());
    }
    if list.len() == 1 {
        return list.first().map(|(id, _)| (*id).to_owned());
    }
    None
}

#[derive(Deserialize)]
pub struct LoginQuery {
    connector: Option<String>,
    /// `continue=session`: on the chooser of a `prompt=select_account` request,
    /// the person chose to continue as the one signed in.
    #[serde(rename = "continue")]
    continue_as: Option<String>,
}

/// "Continue as …" on the chooser of a `prompt=select_account` request.
pub struct SignedIn {
    pub name: String,
    pub href: String,
}

/// GET /login/{request}: the connector chooser, or `?connector=` to begin.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> PageResult {
    let request_id = path.into_inner();
    let fallback = fallback_locale(&req);
    let ar = load_request(&state, &request_id, fallback)
        .await?
        .ok_or_else(|| PageError::expired(fallback))?;
    let locale = ar.locale(&req);
    let Ok(Some(client)) = state.clients.get(&ar.client_id).await else {
        return Err(PageError::unknown_client(locale));
    };
    if let Some(connector_id) = &query.connector {
        let browser = state
            .connector(connector_id)
            .is_some_and(|c| c.connector.has_browser_flow());
        if !browser || !client.may_use_connector(connector_id) {
            return Err(ErrorPage::new(
                locale,
                StatusCode::BAD_REQUEST,
                "unknown_method",
                "expired_todo",
            )
            .detail(connector_id.as_str())
            .into());
        }
        return begin(&state, &req, None, &request_id, &ar, connector_id, locale).await;
    }
    let now = state.now();
    let select_account = ar.prompt.has(PromptValue::SelectAccount);
    if select_account && query.continue_as.as_deref() == Some("session") {
        match continue_as_signed_in(&state, &req, &client, &ar, now).await {
            Sso::Answered(resp) => return Ok(resp),
            Sso::PhoneFirst => {
                return Ok(found(
                    &state.endpoint(&format!("/login/{request_id}/phone")),
                ))
            }
            Sso::ConsentFirst => {
                return Ok(found(&crate::login::consent_step::url(&state, &request_id)))
            }
            // The session ended meanwhile (or may not serve this app): choose.
            Sso::SignIn { .. } => {}
        }
    }
    // Who is signed in, when the app asked the person to pick an account.
    let signed_in = if select_account {
        current_session(&state, &req, now, locale)
            .await?
            .filter(|(session, _)| client.may_use_connector(&session.connector_id))
            .map(|(_, user)| SignedIn {
                name: user.name.clone().unwrap_or_else(|| user.id.clone()),
                href: format!("/login/{request_id}?continue=session"),
            })
    } else {
        None
    };
    let ctx = request_context(&state, &req, locale);
    let browser =
        crate::csrf::Browser::of(&state, &req).ok_or_else(|| PageError::internal(locale))?;
    let mut choices = Vec::new();
    // Connectors that can show themselves on this page (an embedded QR code) are
    // begun now and shown inline; the others are buttons.
    let mut inline = Vec::new();
    let (mut script_sources, mut frame_sources) = (Vec::new(), Vec::new());
    for (id, _) in usable(&state, &client, &ctx) {
        let Some(entry) = state.connector(id) else {
            continue;
        };
        let name = entry.connector.display_name().to_owned();
        if entry.connector.shows_inline() {
            let started =
                start_flow(&state, &req, &browser, None, &request_id, &ar, id, locale).await;
            if let Ok(Begin::Page {
                body_html,
                script_sources: scripts,
                frame_sources: frames,
                ..
            }) = started
            {
                script_sources.extend(scripts);
                frame_sources.extend(frames);
                inline.push(Inline {
                    id: id.to_owned(),
                    name,
                    body_html,
                });
                continue;
            }
        }
        choices.push(Link {
            href: format!("/login/{request_id}?connector={id}"),
            name,
        });
    }
    // Say why a method the app offers cannot be used here (e.g. "open this link in
    // WeChat" for the in-WeChat login on a desktop browser).
    let unavailable = offered(&state, &client)
        .filter_map(|(id, c)| match c.connector.availability(&ctx) {
            Availability::Unavailable { reason } => Some(Unavailable {
                id: id.clone(),
                name: c.connector.display_name().to_owned(),
                reason,
            }),
            _ => None,
        })
        .collect();
    let chooser = Chooser {
        t: Tr(locale),
        client_name: client.name.clone(),
        signed_in,
        inline,
        choices,
        unavailable,
        cancel: error_url(
            &state,
            &ar,
            "access_denied",
            "the person cancelled at the broker",
        ),
    };
    let body = match chooser.render() {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(stage = "page", error = %e, "the chooser failed to render");
            return Ok(HttpResponse::InternalServerError().finish());
        }
    };
    script_sources.dedup();
    frame_sources.dedup();
    let mut page = Page::new(locale, text(locale, "choose_title"), &body);
    page.script_sources = &script_sources;
    page.frame_sources = &frame_sources;
    let mut resp = page.render();
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    Ok(resp)
}

/// A sign-in method shown on the chooser itself (e.g. an embedded QR code).
pub struct Inline {
    pub id: String,
    pub name: String,
    pub body_html: String,
}

/// A sign-in method that cannot work in this browser, and why.
pub struct Unavailable {
    pub id: String,
    pub name: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "chooser.html")]
struct Chooser {
    t: Tr,
    client_name: String,
    signed_in: Option<SignedIn>,
    inline: Vec<Inline>,
    choices: Vec<Link>,
    unavailable: Vec<Unavailable>,
    cancel: String,
}
