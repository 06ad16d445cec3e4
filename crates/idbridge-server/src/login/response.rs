//! What the app gets back, and the flow outcomes that let a repeated callback
//! give the same answer: the authorization response (a 302 with a query, or the
//! form_post page), OAuth errors for the app, the sealed "Return to the
//! application" link (`/return`), and the sealing shared by both.

use super::request::AuthRequest;
use crate::http::{fallback_locale, found};
use crate::pages::error_page;
use crate::params::append_query;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_core::Locale;
use serde::{Deserialize, Serialize};

/// The authorization response to the app: its parameters, sent to its redirect
/// URI as a 302 with a query (`response_mode=query`) or as a page that POSTs
/// them (`response_mode=form_post`). Every result the app gets is built here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppResponse {
    pub redirect_uri: String,
    pub params: Vec<(String, String)>,
    #[serde(default)]
    pub form_post: bool,
    #[serde(default)]
    pub ui_locales: Option<String>,
}

impl AppResponse {
    fn new(state: &AppState, ar: &AuthRequest, mut params: Vec<(String, String)>) -> Self {
        params.push(("iss".into(), state.issuer.clone()));
        if let Some(s) = &ar.state {
            params.push(("state".into(), s.clone()));
        }
        Self {
            redirect_uri: ar.redirect_uri.clone(),
            params,
            form_post: ar.form_post,
            ui_locales: ar.ui_locales.clone(),
        }
    }

    /// The success response: `code`, `iss` and the app's `state`.
    pub fn success(state: &AppState, ar: &AuthRequest, code: &str) -> Self {
        Self::new(state, ar, vec![("code".into(), code.to_owned())])
    }

    /// An OAuth error response, with `iss` and the app's `state`.
    pub fn error(state: &AppState, ar: &AuthRequest, error: &str, description: &str) -> Self {
        Self::new(
            state,
            ar,
            vec![
                ("error".into(), error.to_owned()),
                ("error_description".into(), description.to_owned()),
            ],
        )
    }

    /// The redirect URI with the parameters in its query.
    pub fn url(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        append_query(&self.redirect_uri, &pairs)
    }

    /// The response to the browser: a 302, or the form_post page.
    pub fn respond(&self) -> HttpResponse {
        match (self.form_post, web_origin(&self.redirect_uri)) {
            (true, Some(origin)) => {
                let locale = Locale::negotiate(self.ui_locales.as_deref(), None);
                crate::pages::form_post(locale, &self.redirect_uri, &origin, &self.params)
            }
            _ => found(&self.url()),
        }
    }
}

/// The origin of an http(s) URL (`https://app.example:8443`), for a CSP
/// `form-action`; `None` for other schemes, which form_post cannot reach.
pub fn web_origin(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Send the app an OAuth error (and `iss`, and the app's state), in its response mode.
pub fn error_redirect(
    state: &AppState,
    ar: &AuthRequest,
    error: &str,
    description: &str,
) -> HttpResponse {
    AppResponse::error(state, ar, error, description).respond()
}

/// An error response as a link for a page ("Return to the application"): the
/// redirect URI with a query, or for form_post a broker link ([`return_to_app`])
/// carrying the sealed response, which answers with the form_post page.
pub fn error_url(state: &AppState, ar: &AuthRequest, error: &str, description: &str) -> String {
    let app = AppResponse::error(state, ar, error, description);
    if !app.form_post {
        return app.url();
    }
    let sealed = serde_json::to_vec(&app)
        .ok()
        .and_then(|clear| seal_text(state, &clear, RETURN_AAD));
    match sealed {
        Some(sealed) => append_query(&state.endpoint("/return"), &[("r", &sealed)]),
        None => app.url(),
    }
}

/// `clear` sealed with the master key under `aad`, as base64url text for a URL or
/// a JSON string; `None` if sealing failed.
fn seal_text(state: &AppState, clear: &[u8], aad: &[u8]) -> Option<String> {
    use base64::Engine;
    let sealed = state.master_key.seal(clear, aad).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

/// What [`seal_text`] sealed, if `text` is such a value under `aad`.
pub fn open_text(state: &AppState, text: &str, aad: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    state.master_key.open(&sealed, aad).ok()
}

/// What a sealed [`error_url`] response is bound to.
const RETURN_AAD: &[u8] = b"idbridge return to app";

#[derive(Deserialize)]
pub struct ReturnQuery {
    r: Option<String>,
}

/// GET /return?r=…: a "Return to the application" link of a form_post request;
/// answers the app with the error response sealed in it.
pub async fn return_to_app(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ReturnQuery>,
) -> HttpResponse {
    let app = query
        .r
        .as_deref()
        .and_then(|r| open_text(&state, r, RETURN_AAD))
        .and_then(|clear| serde_json::from_slice::<AppResponse>(&clear).ok());
    match app {
        Some(app) => app.respond(),
        None => {
            let locale = fallback_locale(&req);
            error_page(locale, StatusCode::BAD_REQUEST, "expired", "expired_todo")
        }
    }
}

/// [`outcome_for`] when the first callback answered the app: the sealed
/// response, so a repeated callback answers in the same response mode.
pub fn app_outcome(state: &AppState, upstream_state: &str, app: &AppResponse) -> serde_json::Value {
    let sealed = serde_json::to_vec(app)
        .ok()
        .and_then(|clear| seal_text(state, &clear, upstream_state.as_bytes()));
    match sealed {
        Some(sealed) => serde_json::json!({ "app": sealed }),
        None => serde_json::json!({ "failed": true }),
    }
}

/// What a repeated callback for this flow should do: follow the first one's
/// redirect (sealed, it carries the app's code), or fail.
pub fn outcome_for(
    state: &AppState,
    upstream_state: &str,
    redirect: Option<&str>,
) -> serde_json::Value {
    match redirect.and_then(|url| seal_text(state, url.as_bytes(), upstream_state.as_bytes())) {
        Some(sealed) => serde_json::json!({ "redirect": sealed }),
        None => serde_json::json!({ "failed": true }),
    }
}

/// Record that this flow failed, so a repeated callback does not wait for it.
pub async fn remember_outcome(state: &AppState, upstream_state: &str, redirect: Option<&str>) {
    let outcome = outcome_for(state, upstream_state, redirect);
    if let Err(e) = state.store.set_flow_outcome(upstream_state, outcome).await {
        tracing::error!(stage = "callback", error = %e, "cannot record the flow outcome");
    }
}
