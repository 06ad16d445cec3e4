//! The authorization endpoint and the login flow behind it: validate the app's
//! request, reuse an SSO session when allowed, otherwise pick a connector, send the
//! person upstream, take the callback, resolve the broker account, and return a
//! code to the app (with `iss`, RFC 9207).

use crate::clients::Client;
use crate::i18n::Tr;
use crate::issue::{self, Grant};
use crate::pages::{error_page, escape, text, Link, Page};
use crate::params::{append_query, parse, Rejected};
use crate::state::{AppState, ConnectorEntry, FirstLoginPolicy};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use idbridge_core::{
    Availability, Begin, BeginRequest, CallbackRequest, ConnectorError, ErrorKind,
    ExternalIdentity, Locale, Prompt, RequestContext,
};
use idbridge_store::{
    AuditEvent, AuthRequestRow, CompleteLogin, FirstLogin, FlowRow, LoginCompletion,
    LoginResolution, NewLogin, SessionRow,
};
use idbridge_tokens::{hash_token, random_alnum, random_token};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SESSION_COOKIE: &str = "idb_session";
pub const BROWSER_COOKIE: &str = "idb_browser";
const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "phone", "offline_access"];

/// The scope granted for a space-separated request: `openid` is required (else
/// `None`); `profile` and `offline_access` are kept, anything else is dropped.
pub fn granted_scope(asked: &str) -> Option<String> {
    let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
    if !asked.contains(&"openid") {
        return None;
    }
    let scopes: Vec<&str> = SUPPORTED_SCOPES
        .iter()
        .copied()
        .filter(|s| asked.contains(s))
        .collect();
    Some(scopes.join(" "))
}

/// What the app asked for, kept while the person signs in upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// A new upstream identity waiting for its owner to prove an existing account
    /// (its connector's `first_login = "bind"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingLink>,
    /// Set when this request links another sign-in method to this signed-in
    /// account (the account page), instead of signing in to an app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_to: Option<String>,
    /// `response_mode=form_post`: the response goes to the app as an
    /// auto-submitted POST form instead of a redirect with a query.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub form_post: bool,
}

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
pub(crate) fn web_origin(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// An identity that will be linked to whichever existing account the person proves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLink {
    pub login: NewLogin,
    /// The upstream flow it came from (its outcome follows the sign-in).
    pub flow_state: String,
    /// Only the browser that signed in upstream may finish it.
    pub browser_hash: String,
}

impl AuthRequest {
    pub fn locale(&self, req: &HttpRequest) -> Locale {
        Locale::negotiate(self.ui_locales.as_deref(), accept_language(req))
    }

    /// The app's `ui_locales`, without a request at hand.
    pub fn locale_or_default(&self) -> Locale {
        Locale::negotiate(self.ui_locales.as_deref(), None)
    }
}

/// The locale for a page before the request is known: the browser's.
pub fn fallback_locale(req: &HttpRequest) -> Locale {
    Locale::negotiate(None, accept_language(req))
}

fn accept_language(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

pub fn request_context(state: &AppState, req: &HttpRequest, locale: Locale) -> RequestContext {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    RequestContext::new(ua, locale, state.now())
}

/// Send the app an OAuth error (and `iss`, and the app's state), in its response mode.
pub(crate) fn error_redirect(
    state: &AppState,
    ar: &AuthRequest,
    error: &str,
    description: &str,
) -> HttpResponse {
    AppResponse::error(state, ar, error, description).respond()
}

pub fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

pub fn cookie<'a>(state: &AppState, name: &'a str, value: String) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .finish()
}

/// GET and POST /authorize.
pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Bytes>,
) -> HttpResponse {
    let raw = if req.method() == actix_web::http::Method::POST {
        String::from_utf8_lossy(body.as_deref().unwrap_or_default()).into_owned()
    } else {
        req.query_string().to_owned()
    };
    let locale_hint = |p: &BTreeMap<String, String>| {
        Locale::negotiate(
            p.get("ui_locales").map(String::as_str),
            accept_language(&req),
        )
    };
    // A control character anywhere is refused outright (the query was screened
    // already, crate::screen; this catches a POSTed form).
    let parsed = match parse(&raw) {
        Ok(p) => Ok((p, None)),
        // Still find the client and redirect URI, to report the error properly.
        Err(Rejected::Repeated(name)) => {
            crate::params::parse_first(raw.as_bytes()).map(|lenient| (lenient, Some(name)))
        }
        Err(control) => Err(control),
    };
    let (params, duplicate) = match parsed {
        Ok(p) => p,
        Err(r) => return crate::screen::page_refusal(&req, &r, fallback_locale(&req)),
    };
    let locale = locale_hint(&params);
    if matches!(
        duplicate.as_deref(),
        Some("client_id") | Some("redirect_uri")
    ) {
        return error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "bad_redirect"),
            text(locale, "bad_redirect_todo"),
        );
    }
    let client = match params.get("client_id") {
        None => None,
        Some(id) => match state.clients.get(id).await {
            Ok(c) => c,
            Err(e) => {
                return error_page(
                    locale,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &e.description,
                    text(locale, "expired_todo"),
                )
            }
        },
    };
    let Some(client) = client else {
        tracing::warn!(stage = "authorize", client_id = ?params.get("client_id"), "unknown client_id");
        return error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "unknown_client"),
            text(locale, "unknown_client_todo"),
        );
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uri_allowed(uri) => uri.clone(),
        other => {
            tracing::warn!(stage = "authorize", client_id = %client.id, redirect_uri = ?other, "redirect_uri is not registered for this client; not redirecting");
            return error_page(
                locale,
                StatusCode::BAD_REQUEST,
                text(locale, "bad_redirect"),
                text(locale, "bad_redirect_todo"),
            );
        }
    };
    let form_post = params.get("response_mode").map(String::as_str) == Some("form_post")
        && web_origin(&redirect_uri).is_some();
    let mut ar = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri,
        scope: String::new(),
        state: params.get("state").cloned(),
        nonce: params.get("nonce").cloned(),
        code_challenge: None,
        prompt: Vec::new(),
        max_age: None,
        login_hint: params.get("login_hint").cloned(),
        ui_locales: params.get("ui_locales").cloned(),
        pending: None,
        link_to: None,
        // Errors from here on already follow the asked-for mode; a form_post
        // the redirect URI cannot take is refused below, in query mode.
        form_post,
    };
    if let Some(name) = duplicate {
        return error_redirect(
            &state,
            &ar,
            "invalid_request",
            &format!("parameter {name} was given more than once"),
        );
    }
    // This app's turn at local work (crate::fair); held until the response is built.
    let Ok(_turn) = state.fair.enter(&client.id).await else {
        return error_redirect(
            &state,
            &ar,
            "temporarily_unavailable",
            "the broker is busy with this application's sign-ins; retry shortly",
        );
    };
    match params.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return error_redirect(&state, &ar, "invalid_request", "response_type is required"),
        Some(_) => {
            return error_redirect(
                &state,
                &ar,
                "unsupported_response_type",
                "only response_type=code is supported",
            )
        }
    }
    match params.get("response_mode").map(String::as_str) {
        None | Some("query") => {}
        Some("form_post") if ar.form_post => {}
        Some("form_post") => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "response_mode=form_post needs an http or https redirect_uri",
            )
        }
        Some(_) => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "response_mode must be query or form_post",
            )
        }
    }
    if params.contains_key("request") {
        return error_redirect(
            &state,
            &ar,
            "request_not_supported",
            "request objects are not supported",
        );
    }
    if params.contains_key("request_uri") {
        return error_redirect(
            &state,
            &ar,
            "request_uri_not_supported",
            "request_uri is not supported",
        );
    }
    match granted_scope(params.get("scope").map(String::as_str).unwrap_or("")) {
        Some(scope) => ar.scope = scope,
        None => {
            return error_redirect(&state, &ar, "invalid_scope", "the openid scope is required")
        }
    }
    if let Some(prompt) = params.get("prompt") {
        let values: Vec<String> = prompt
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if values
            .iter()
            .any(|v| !["none", "login", "consent", "select_account"].contains(&v.as_str()))
        {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "prompt must be none, login, consent or select_account",
            );
        }
        if values.iter().any(|v| v == "none") && values.len() > 1 {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "prompt=none cannot be combined with other values",
            );
        }
        ar.prompt = values;
    }
    if let Some(max_age) = params.get("max_age") {
        match max_age.parse::<i64>() {
            Ok(v) if v >= 0 => ar.max_age = Some(v),
            _ => {
                return error_redirect(
                    &state,
                    &ar,
                    "invalid_request",
                    "max_age must be a non-negative integer",
                )
            }
        }
    }
    match (
        params.get("code_challenge"),
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(_), Some(m)) if m != "S256" => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "code_challenge_method must be S256 (plain is not allowed)",
            )
        }
        (Some(_), None) => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "code_challenge_method=S256 is required with code_challenge (plain is not allowed)",
            )
        }
        (Some(c), Some(_)) => {
            let ok = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return error_redirect(
                    &state,
                    &ar,
                    "invalid_request",
                    "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
                );
            }
            ar.code_challenge = Some(c.clone());
        }
        (None, Some(_)) => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "code_challenge_method without code_challenge",
            )
        }
        (None, None) if client.require_pkce => {
            return error_redirect(
                &state,
                &ar,
                "invalid_request",
                "PKCE is required: send code_challenge and code_challenge_method=S256",
            )
        }
        (None, None) => {}
    }
    let wanted_connector = params.get("connector").cloned();
    if let Some(c) = &wanted_connector {
        match state.connector(c) {
            Some(entry) if client.may_use_connector(c) => {
                if !entry.connector.has_browser_flow() {
                    return error_redirect(&state, &ar, "invalid_request", &no_browser_flow(c));
                }
            }
            _ => {
                return error_redirect(
                    &state,
                    &ar,
                    "invalid_request",
                    &format!("connector {c:?} is not available to this application"),
                )
            }
        }
    }
    // id_token_hint (OpenID Connect Core §3.1.2.1): an ID token this broker issued
    // to this app, expired or not, naming the person the app expects.
    let hinted_sub = match params.get("id_token_hint") {
        None => None,
        Some(t) => match issue::verify_id_token_hint(&state, t, Some(&client.id)) {
            Some(h) => Some(h.sub),
            None => {
                tracing::warn!(stage = "authorize", client_id = %client.id, "id_token_hint is not a valid ID token from this broker for this client");
                return error_redirect(
                    &state,
                    &ar,
                    "invalid_request",
                    "id_token_hint is not a valid ID token issued by this broker to this application",
                );
            }
        },
    };
    let locale = ar.locale(&req);

    // An SSO session satisfies the request unless the app asks for a fresh login,
    // or names (id_token_hint) someone other than the person signed in.
    let now = state.now();
    let session = match current_session(&state, &req, now).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let force_login = ar.prompt.iter().any(|p| p == "login");
    let someone_else = session.as_ref().is_some_and(|(_, user)| {
        hinted_sub
            .as_deref()
            .is_some_and(|sub| sub != user.id.as_str())
    });
    let mut phone_step = false;
    if let Some((session, user)) = session.filter(|_| !force_login && !someone_else) {
        let fresh_enough = ar.max_age.is_none_or(|m| now - session.auth_time <= m);
        if fresh_enough && client.may_use_connector(&session.connector_id) {
            if !(client.require_phone && user.phone_verified_at.is_none()) {
                // Audited like any sign-in, marked as one through the SSO session.
                let audit = AuditEvent {
                    at: now,
                    event: "login".into(),
                    user_id: Some(user.id.clone()),
                    client_id: Some(ar.client_id.clone()),
                    connector_id: Some(session.connector_id.clone()),
                    ip: state.proxies.of(&req).map(|i| i.to_string()),
                    detail: serde_json::json!({ "sso": true }),
                };
                return issue_code(&state, &ar, &user.id, &session, Some(audit)).await;
            }
            // Signed in, but this app needs a verified phone number first.
            phone_step = true;
        }
    }
    if ar.prompt.iter().any(|p| p == "none") {
        return if phone_step {
            error_redirect(
                &state,
                &ar,
                "interaction_required",
                "the person must verify a phone number for this application first",
            )
        } else if someone_else {
            error_redirect(
                &state,
                &ar,
                "login_required",
                "the person named by id_token_hint is not the one signed in at the broker",
            )
        } else {
            error_redirect(
                &state,
                &ar,
                "login_required",
                "the person is not signed in at the broker",
            )
        };
    }

    let request_id = match random_token(24) {
        Ok(id) => id,
        Err(_) => {
            return error_page(
                locale,
                StatusCode::INTERNAL_SERVER_ERROR,
                "random generator failure",
                "",
            )
        }
    };
    let payload = match serde_json::to_value(&ar) {
        Ok(v) => v,
        Err(_) => {
            return error_page(
                locale,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                "",
            )
        }
    };
    let row = AuthRequestRow {
        id: request_id.clone(),
        client_id: client.id.clone(),
        payload,
        created_at: now,
        expires_at: now + state.settings.tokens.auth_request_ttl_secs,
    };
    let ctx = request_context(&state, &req, locale);
    let chosen = wanted_connector
        .filter(|_| !phone_step)
        .or_else(|| single_choice(&state, &client, &ctx).filter(|_| !phone_step));
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
        return error_redirect(
            &state,
            &ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        );
    }
    if phone_step {
        return found(&state.endpoint(&format!("/login/{request_id}/phone")));
    }
    found(&state.endpoint(&format!("/login/{request_id}")))
}

/// Why `connector=<id>` cannot start a sign-in in a browser.
fn no_browser_flow(id: &str) -> String {
    format!(
        "connector {id:?} has no browser sign-in: it is for native apps, which exchange the upstream token (e.g. a WeChat SDK code) at the token endpoint with grant_type={}",
        crate::exchange::GRANT_TYPE
    )
}

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
pub(crate) fn usable<'a>(
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
fn single_choice(state: &AppState, client: &Client, ctx: &RequestContext) -> Option<String> {
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

/// The SSO session from the cookie, if it is live and its user may sign in.
pub(crate) async fn current_session(
    state: &AppState,
    req: &HttpRequest,
    now: i64,
) -> Result<Option<(SessionRow, idbridge_store::User)>, HttpResponse> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let id = hash_token(cookie.value());
    let unavailable = |e: idbridge_store::StoreError| {
        tracing::error!(stage = "session", error = %e, "cannot read the SSO session");
        error_page(
            Locale::En,
            StatusCode::SERVICE_UNAVAILABLE,
            "The broker's database is unavailable.",
            "Retry in a moment.",
        )
    };
    let Some(session) = state.store.get_session(&id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    if session.ended_at.is_some() || session.expires_at <= now {
        return Ok(None);
    }
    let Some(user) = state
        .store
        .get_user(&session.user_id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    if user.disabled_at.is_some() {
        return Ok(None);
    }
    Ok(Some((session, user)))
}

/// Issue a code for a signed-in person and send them back to the app; `audit`
/// is written with the code.
pub(crate) async fn issue_code(
    state: &AppState,
    ar: &AuthRequest,
    user_id: &str,
    session: &SessionRow,
    audit: Option<AuditEvent>,
) -> HttpResponse {
    match code_redirect(state, ar, user_id, session, audit).await {
        Ok(app) => app.respond(),
        Err(e) => error_redirect(state, ar, e.error, &e.description),
    }
}

pub(crate) async fn code_redirect(
    state: &AppState,
    ar: &AuthRequest,
    user_id: &str,
    session: &SessionRow,
    audit: Option<AuditEvent>,
) -> Result<AppResponse, crate::error::OAuthError> {
    let grant = Grant {
        redirect_uri: ar.redirect_uri.clone(),
        scope: ar.scope.clone(),
        nonce: ar.nonce.clone(),
        code_challenge: ar.code_challenge.clone(),
        auth_time: session.auth_time,
        sid: session.id.clone(),
        connector_id: session.connector_id.clone(),
    };
    let code = issue::new_code(state, &ar.client_id, user_id, &grant, audit).await?;
    Ok(AppResponse::success(state, ar, &code))
}

#[derive(Deserialize)]
pub struct LoginQuery {
    connector: Option<String>,
}

/// GET /login/{request}: the connector chooser, or `?connector=` to begin.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    let request_id = path.into_inner();
    let fallback = Locale::negotiate(None, accept_language(&req));
    let ar = match load_request(&state, &request_id).await {
        Ok(Some(ar)) => ar,
        Ok(None) => {
            return error_page(
                fallback,
                StatusCode::BAD_REQUEST,
                text(fallback, "expired"),
                text(fallback, "expired_todo"),
            )
        }
        Err(resp) => return resp,
    };
    let locale = ar.locale(&req);
    let client = match state.clients.get(&ar.client_id).await {
        Ok(Some(c)) => c,
        _ => {
            return error_page(
                locale,
                StatusCode::BAD_REQUEST,
                text(locale, "unknown_client"),
                text(locale, "unknown_client_todo"),
            )
        }
    };
    if let Some(connector_id) = &query.connector {
        let browser = state
            .connector(connector_id)
            .is_some_and(|c| c.connector.has_browser_flow());
        if !browser || !client.may_use_connector(connector_id) {
            return error_page(
                locale,
                StatusCode::BAD_REQUEST,
                &format!("{} {connector_id}", text(locale, "unknown_method")),
                text(locale, "expired_todo"),
            );
        }
        return begin(&state, &req, None, &request_id, &ar, connector_id, locale).await;
    }
    let ctx = request_context(&state, &req, locale);
    let Some(browser) = crate::csrf::Browser::of(&state, &req) else {
        return error_page(
            locale,
            StatusCode::INTERNAL_SERVER_ERROR,
            "random generator failure",
            "",
        );
    };
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
            return HttpResponse::InternalServerError().finish();
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
    resp
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
    inline: Vec<Inline>,
    choices: Vec<Link>,
    unavailable: Vec<Unavailable>,
    cancel: String,
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
fn open_text(state: &AppState, text: &str, aad: &[u8]) -> Option<Vec<u8>> {
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
            error_page(
                locale,
                StatusCode::BAD_REQUEST,
                text(locale, "expired"),
                text(locale, "expired_todo"),
            )
        }
    }
}

pub(crate) async fn load_request(
    state: &AppState,
    id: &str,
) -> Result<Option<AuthRequest>, HttpResponse> {
    match state.store.get_auth_request(id, state.now()).await {
        Ok(Some(row)) => Ok(serde_json::from_value(row.payload).ok()),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(stage = "authorize", error = %e, "cannot load the authorization request");
            Err(error_page(
                Locale::En,
                StatusCode::SERVICE_UNAVAILABLE,
                "The broker's database is unavailable.",
                "Retry in a moment.",
            ))
        }
    }
}

/// Send the person to the connector, remembering the flow under a short state.
pub(crate) async fn begin(
    state: &AppState,
    req: &HttpRequest,
    new_request: Option<AuthRequestRow>,
    request_id: &str,
    ar: &AuthRequest,
    connector_id: &str,
    locale: Locale,
) -> HttpResponse {
    let Some(browser) = crate::csrf::Browser::of(state, req) else {
        return error_page(
            locale,
            StatusCode::INTERNAL_SERVER_ERROR,
            "random generator failure",
            "",
        );
    };
    let begin = match start_flow(
        state,
        req,
        &browser,
        new_request,
        request_id,
        ar,
        connector_id,
        locale,
    )
    .await
    {
        Ok(begin) => begin,
        Err(resp) => return resp,
    };
    let mut resp = match begin {
        Begin::Redirect(url) => found(&url),
        Begin::Page {
            title,
            body_html,
            script_sources,
            frame_sources,
        } => {
            let mut page = Page::new(locale, &title, &body_html);
            page.script_sources = &script_sources;
            page.frame_sources = &frame_sources;
            page.render()
        }
    };
    if let Some(c) = &browser.new_cookie {
        let _ = resp.add_cookie(c);
    }
    resp
}

/// Begin an upstream sign-in with `connector_id` and remember the flow under a
/// short random state, bound to this browser (whose cookie the caller sets when
/// `browser.new_cookie` says so); `new_request`, when given, is the authorization
/// request itself, stored in the same transaction. Returns where to send the person.
/// What a connector's `begin` learns of the app's request: the broker's state
/// and callback, and the app's scopes, prompt, max_age, ui_locales and login_hint.
fn begin_request(ar: &AuthRequest, upstream_state: String, callback_url: String) -> BeginRequest {
    BeginRequest::new(upstream_state, callback_url)
        .with_login_hint(ar.login_hint.clone())
        .with_scopes(ar.scope.split_ascii_whitespace())
        .with_prompt(ar.prompt.iter().filter_map(|p| Prompt::parse(p)))
        .with_max_age(ar.max_age.and_then(|m| u64::try_from(m).ok()))
        .with_ui_locales(ar.ui_locales.clone())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_flow(
    state: &AppState,
    req: &HttpRequest,
    browser: &crate::csrf::Browser,
    new_request: Option<AuthRequestRow>,
    request_id: &str,
    ar: &AuthRequest,
    connector_id: &str,
    locale: Locale,
) -> Result<Begin, HttpResponse> {
    let Some(entry) = state.connector(connector_id) else {
        return Err(error_page(
            locale,
            StatusCode::BAD_REQUEST,
            "Unknown sign-in method.",
            text(locale, "expired_todo"),
        ));
    };
    let ctx = request_context(state, req, locale);
    let Ok(upstream_state) = random_alnum(32) else {
        return Err(error_page(
            locale,
            StatusCode::INTERNAL_SERVER_ERROR,
            "random generator failure",
            "",
        ));
    };
    let callback_url = state.endpoint(&format!("/callback/{connector_id}"));
    let started = match entry
        .connector
        .begin(
            &ctx,
            &begin_request(ar, upstream_state.clone(), callback_url),
        )
        .await
    {
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
        return Err(error_redirect(
            state,
            ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        ));
    }
    Ok(started.begin)
}

/// Record a failed connector step, in the browser flow (`via = "browser"`) or a
/// token exchange (`via = "token_exchange"`): one precise log line for the
/// operator, an audit event, and the connector's upstream health.
pub async fn record_connector_failure(
    state: &AppState,
    client_id: &str,
    connector_id: &str,
    e: &ConnectorError,
    via: &str,
) {
    tracing::warn!(
        event = "login_failed",
        connector = %connector_id,
        client_id = %client_id,
        via,
        stage = e.stage.as_str(),
        kind = e.kind.as_str(),
        upstream_code = e.upstream_code.as_deref().unwrap_or("-"),
        upstream_message = e.upstream_message.as_deref().unwrap_or("-"),
        fix = e.fix.as_deref().unwrap_or("-"),
        "upstream sign-in failed"
    );
    audit(
        state,
        "login_failed",
        None,
        Some(client_id),
        Some(connector_id),
        serde_json::json!({ "error": e, "via": via }),
    )
    .await;
    if crate::upstream_errors::answer_for(e.kind).outage {
        state.upstream.failed(connector_id, state.now());
    }
}

/// Log a failed upstream step precisely, and tell the person and the app.
async fn connector_failure(
    state: &AppState,
    ar: &AuthRequest,
    connector_id: &str,
    e: &ConnectorError,
    locale: Locale,
) -> HttpResponse {
    record_connector_failure(state, &ar.client_id, connector_id, e, "browser").await;
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
    let back = error_url(
        state,
        ar,
        crate::upstream_errors::answer_for(e.kind).authorize_error,
        &description,
    );
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
        ErrorKind::TokenVerificationFailed => (
            if zh {
                "无法验证登录服务返回的身份信息。"
            } else {
                "The sign-in provider's answer could not be verified."
            },
            if zh {
                "请回到应用重新登录；如果再次出现，请联系网站管理员。"
            } else {
                "Go back to the application and sign in again; if it happens again, tell the site's operator."
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

pub async fn audit(
    state: &AppState,
    event: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
    connector_id: Option<&str>,
    detail: serde_json::Value,
) {
    let e = AuditEvent {
        at: state.now(),
        event: event.to_owned(),
        user_id: user_id.map(str::to_owned),
        client_id: client_id.map(str::to_owned),
        connector_id: connector_id.map(str::to_owned),
        ip: None,
        detail,
    };
    if let Err(err) = state.store.append_audit(e).await {
        tracing::error!(stage = "audit", error = %err, event, "cannot write the audit log");
    }
}

/// GET or POST /callback/{connector}: the upstream sends the person back here.
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Bytes>,
) -> HttpResponse {
    let connector_id = path.into_inner();
    let locale = Locale::negotiate(None, accept_language(&req));
    // The query first; a POSTed form (response_mode=form_post) adds what it lacks.
    let params = crate::params::parse_first(req.query_string().as_bytes()).and_then(|mut p| {
        if let (true, Some(b)) = (req.method() == actix_web::http::Method::POST, &body) {
            for (k, v) in crate::params::parse_first(b)? {
                p.entry(k).or_insert(v);
            }
        }
        Ok(p)
    });
    let params = match params {
        Ok(p) => p,
        Err(r) => return crate::screen::page_refusal(&req, &r, locale),
    };
    let ip = state.proxies.of(&req);
    let checked = state.failures.check(ip, state.now_ms()).await;
    if let Err(crate::limits::Refused::Store(e)) = &checked {
        tracing::error!(stage = "rate_limit", error = %e, "cannot read the failure counter");
        return error_page(
            locale,
            StatusCode::SERVICE_UNAVAILABLE,
            text(locale, "db_down"),
            text(locale, "db_down_todo"),
        );
    }
    if checked.is_err() {
        tracing::warn!(stage = "rate_limit", ip = ?ip, connector = %connector_id, "too many rejected callbacks from this address");
        return error_page(
            locale,
            StatusCode::TOO_MANY_REQUESTS,
            if locale == Locale::ZhCn {
                "失败次数过多。"
            } else {
                "Too many failed sign-in attempts from your network."
            },
            if locale == Locale::ZhCn {
                "请一分钟后再试。"
            } else {
                "Wait a minute, then start again from the application."
            },
        );
    }
    // Every rejection below counts against the address (state guessing).
    let expired = || async {
        state.failures.failed(ip, state.now_ms()).await;
        error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "expired"),
            text(locale, "expired_todo"),
        )
    };
    let Some(upstream_state) = params.get("state").filter(|s| !s.is_empty()).cloned() else {
        tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "missing_state", "callback without state; cannot tell which sign-in it belongs to");
        return expired().await;
    };
    let flow = match state.store.get_flow(&upstream_state).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "unknown_state", "callback state is unknown or was collected; the person must start again");
            return expired().await;
        }
        Err(e) => {
            tracing::error!(stage = "callback", error = %e, "cannot load the flow");
            return error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                "The broker's database is unavailable.",
                "Retry in a moment.",
            );
        }
    };
    if flow.connector_id != connector_id {
        tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, flow_connector = %flow.connector_id, reason = "connector_mismatch", "callback arrived at another connector's path (mix-up); rejected before any upstream call");
        return expired().await;
    }
    let browser_ok = req.cookie(BROWSER_COOKIE).is_some_and(|c| {
        idbridge_tokens::constant_time_eq(
            hash_token(c.value()).as_bytes(),
            flow.browser_hash.as_bytes(),
        )
    });
    if !browser_ok {
        tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "browser_mismatch", "callback came from a browser that did not start this sign-in; rejected");
        state.failures.failed(ip, state.now_ms()).await;
        return error_page(
            locale,
            StatusCode::BAD_REQUEST,
            if locale == Locale::ZhCn {
                "这个登录不是在此浏览器中发起的。"
            } else {
                "This sign-in was not started in this browser."
            },
            text(locale, "expired_todo"),
        );
    }
    let now = state.now();
    match state.store.claim_flow(&upstream_state, now).await {
        Ok(true) => {}
        Ok(false) => {
            return repeated_callback(&state, &upstream_state, &connector_id, locale).await
        }
        Err(e) => {
            tracing::error!(stage = "callback", error = %e, "cannot claim the flow");
            return error_page(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                "The broker's database is unavailable.",
                "Retry in a moment.",
            );
        }
    }
    let ar = match load_request(&state, &flow.auth_request_id).await {
        Ok(Some(ar)) => ar,
        Ok(None) => return expired().await,
        Err(resp) => return resp,
    };
    let locale = ar.locale(&req);
    let Some(entry) = state.connector(&connector_id) else {
        return expired().await;
    };
    let ctx = request_context(&state, &req, locale);
    let callback = CallbackRequest::new(
        params,
        state.endpoint(&format!("/callback/{connector_id}")),
        flow.data.clone(),
    );
    let completed = entry.connector.complete(&ctx, &callback).await;
    // Every connector's answer passes the same check (idbridge_core::ExternalIdentity::screened).
    let identity = match completed.and_then(|i| i.screened(idbridge_core::Stage::Callback)) {
        Ok(i) => i,
        Err(e) => {
            remember_outcome(&state, &upstream_state, None).await;
            return connector_failure(&state, &ar, &connector_id, &e, locale).await;
        }
    };
    state.upstream.succeeded(&connector_id);
    // The app's turn at local work, now that the upstream has answered (crate::fair).
    let Ok(_turn) = state.fair.enter(&ar.client_id).await else {
        remember_outcome(&state, &upstream_state, None).await;
        return error_page(
            locale,
            StatusCode::SERVICE_UNAVAILABLE,
            text(locale, "busy"),
            text(locale, "busy_todo"),
        );
    };
    let login = new_login(&state, &connector_id, &identity);
    if let Some(user_id) = ar.link_to.clone() {
        return crate::account::finish_link(
            &state,
            &flow.auth_request_id,
            &upstream_state,
            login,
            &user_id,
            locale,
        )
        .await;
    }
    if ar
        .pending
        .as_ref()
        .is_some_and(|p| p.browser_hash != flow.browser_hash)
    {
        // Someone else's waiting identity must never be linked to this account.
        tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "bind_wrong_browser", "a proof of account came from another browser than the sign-in that waits for it; rejected");
        remember_outcome(&state, &upstream_state, None).await;
        return error_page(
            locale,
            StatusCode::BAD_REQUEST,
            text(locale, "wrong_browser"),
            text(locale, "expired_todo"),
        );
    }
    let (policy, also_link) = match &ar.pending {
        // This sign-in proves an existing account for the identity that waits.
        Some(p) => (FirstLogin::Refuse, Some(p.login.clone())),
        None => (entry.first_login.store_policy(), None),
    };
    let signing_in = SignIn {
        request_id: &flow.auth_request_id,
        flow_state: &upstream_state,
        connector_id: &connector_id,
        login,
        policy,
        also_link,
        browser_hash: &flow.browser_hash,
        ip,
    };
    finish_sign_in(&state, &ar, signing_in, locale).await
}

/// A sign-in about to be finished: whose identity, through which flow, and how the
/// account is found.
pub struct SignIn<'a> {
    pub request_id: &'a str,
    pub flow_state: &'a str,
    /// The connector the person used (the SSO session remembers it).
    pub connector_id: &'a str,
    pub login: NewLogin,
    pub policy: FirstLogin,
    /// An identity that waited for this proof of an existing account.
    pub also_link: Option<NewLogin>,
    /// The browser signing in (a waiting identity is bound to it).
    pub browser_hash: &'a str,
    /// Its address, for the audit log.
    pub ip: Option<std::net::IpAddr>,
}

/// Finish a sign-in: resolve the account and, in one transaction, open the SSO
/// session, store the app's code, write the audit event and use up the request.
/// Then send the person to the app — or to the next step (binding an account,
/// verifying a phone number) when one is due.
pub async fn finish_sign_in(
    state: &AppState,
    ar: &AuthRequest,
    sign_in: SignIn<'_>,
    locale: Locale,
) -> HttpResponse {
    let SignIn {
        request_id,
        flow_state,
        connector_id,
        login,
        policy,
        also_link,
        browser_hash,
        ip,
    } = sign_in;
    let now = state.now();
    let unavailable = || {
        error_redirect(
            state,
            ar,
            "temporarily_unavailable",
            "the broker's database is unavailable; retry shortly",
        )
    };
    let client = match state.clients.get(&ar.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                locale,
                StatusCode::BAD_REQUEST,
                text(locale, "unknown_client"),
                text(locale, "unknown_client_todo"),
            )
        }
        Err(_) => return unavailable(),
    };
    let (Ok(new_user_id), Ok(session_secret)) = (random_token(16), random_token(32)) else {
        return error_page(
            locale,
            StatusCode::INTERNAL_SERVER_ERROR,
            "random generator failure",
            "",
        );
    };
    let session = SessionRow {
        id: hash_token(&session_secret),
        user_id: String::new(), // filled in by the store with the resolved account
        connector_id: connector_id.to_owned(),
        auth_time: now,
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.settings.tokens.session_ttl_secs,
        ended_at: None,
    };
    let grant = Grant {
        redirect_uri: ar.redirect_uri.clone(),
        scope: ar.scope.clone(),
        nonce: ar.nonce.clone(),
        code_challenge: ar.code_challenge.clone(),
        auth_time: now,
        sid: session.id.clone(),
        connector_id: connector_id.to_owned(),
    };
    let (code, code_row) = match issue::code_row(state, &ar.client_id, "", &grant) {
        Ok(c) => c,
        Err(e) => return error_redirect(state, ar, e.error, &e.description),
    };
    let app = AppResponse::success(state, ar, &code);
    let phone_url = state.endpoint(&format!("/login/{request_id}/phone"));
    let proving = also_link.is_some();
    let bind_policy = !proving
        && state
            .connector(connector_id)
            .is_some_and(|c| c.first_login == FirstLoginPolicy::Bind);
    let pending_login = login.clone();
    // Account, session, code, audit, the used-up request and the flow's outcome:
    // one transaction, so a failure leaves nothing half-written.
    let completion = state
        .store
        .complete_login(
            CompleteLogin {
                login,
                policy,
                new_user_id,
                session,
                code: code_row,
                audit: AuditEvent {
                    at: now,
                    event: if proving { "login_linked" } else { "login" }.into(),
                    user_id: None,
                    client_id: Some(ar.client_id.clone()),
                    connector_id: Some(connector_id.to_owned()),
                    ip: ip.map(|i| i.to_string()),
                    detail: match &also_link {
                        Some(l) => serde_json::json!({"linked": l.connector_id}),
                        None => serde_json::json!({}),
                    },
                },
                auth_request_id: request_id.to_owned(),
                flow_state: flow_state.to_owned(),
                flow_outcome: app_outcome(state, flow_state, &app),
                also_link,
                require_phone: client.require_phone,
                phone_outcome: outcome_for(state, flow_state, Some(&phone_url)),
            },
            now,
        )
        .await;
    let next = match completion {
        Ok(LoginCompletion::SignedIn {
            user,
            resolution,
            needs_phone,
        }) => {
            let how = match resolution {
                LoginResolution::Existing(_) => "existing",
                LoginResolution::Linked(_) => "linked",
                _ => "created",
            };
            tracing::info!(event = "login", connector = %connector_id, client_id = %ar.client_id, user_id = %user.id, account = how, proof_for_binding = proving, "signed in");
            if needs_phone {
                tracing::info!(event = "phone_required", client_id = %ar.client_id, user_id = %user.id, "the app needs a verified phone number; asking for one");
                found(&phone_url)
            } else {
                app.respond()
            }
        }
        Ok(LoginCompletion::NotLinked) if proving => {
            tracing::info!(event = "login_failed", stage = "account", connector = %connector_id, reason = "proof_not_linked", "the sign-in offered as proof of an account is not linked to one either");
            remember_outcome(state, flow_state, None).await;
            let back = format!("/login/{request_id}/bind");
            let body = format!(
                "<p role=\"alert\">{}</p><p class=\"detail\">{}</p><p><a class=\"button primary\" href=\"{}\">{}</a></p>",
                escape(text(locale, "bind_proof_unknown")),
                escape(text(locale, "bind_proof_unknown_todo")),
                escape(&back),
                escape(text(locale, "try_again")),
            );
            return Page::new(locale, text(locale, "bind_title"), &body)
                .status(StatusCode::BAD_REQUEST)
                .render();
        }
        Ok(LoginCompletion::NotLinked) if bind_policy => {
            return crate::bind::start(
                state,
                ar,
                request_id,
                flow_state,
                pending_login,
                browser_hash,
            )
            .await;
        }
        Ok(LoginCompletion::NotLinked) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "first_login_denied", fix = "this connector's first_login is \"deny\": link the identity to an account first", "no broker account for this identity");
            audit(
                state,
                "login_denied",
                None,
                Some(&ar.client_id),
                Some(connector_id),
                serde_json::json!({"reason": "no_account"}),
            )
            .await;
            remember_outcome(state, flow_state, None).await;
            return error_redirect(
                state,
                ar,
                "access_denied",
                "no broker account is linked to this identity",
            );
        }
        Ok(LoginCompletion::LinkConflict { owner }) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "bind_conflict", owner = %owner, "the identity waiting to be linked now belongs to another account; nothing linked");
            remember_outcome(state, flow_state, None).await;
            return error_page(
                locale,
                StatusCode::CONFLICT,
                text(locale, "bind_conflict"),
                text(locale, "bind_conflict_todo"),
            );
        }
        Ok(LoginCompletion::Disabled(user)) => {
            tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, user_id = %user.id, reason = "user_disabled", "the broker account is disabled");
            audit(
                state,
                "login_denied",
                Some(&user.id),
                Some(&ar.client_id),
                Some(connector_id),
                serde_json::json!({"reason": "disabled"}),
            )
            .await;
            remember_outcome(state, flow_state, None).await;
            if proving || ar.pending.is_some() {
                return error_page(
                    locale,
                    StatusCode::FORBIDDEN,
                    text(locale, "account_disabled"),
                    text(locale, "account_disabled_todo"),
                );
            }
            return error_redirect(state, ar, "access_denied", "this account is disabled");
        }
        Err(e) => {
            tracing::error!(event = "login_failed", stage = "account", connector = %connector_id, error = %e, "cannot complete the sign-in");
            return unavailable();
        }
    };
    let mut resp = next;
    let _ = resp.add_cookie(&cookie(state, SESSION_COOKIE, session_secret));
    resp
}

/// What the store needs to resolve the account of an upstream identity; the
/// upstream tokens are sealed with the master key (bound to connector and subject).
pub fn new_login(state: &AppState, connector_id: &str, identity: &ExternalIdentity) -> NewLogin {
    let sealed_tokens = match &identity.upstream_tokens {
        None => None,
        Some(t) => {
            let aad = format!("upstream:{}:{}", identity.connector_id, identity.subject);
            serde_json::to_vec(t)
                .ok()
                .and_then(|clear| state.master_key.seal(&clear, aad.as_bytes()).ok())
        }
    };
    NewLogin {
        connector_id: connector_id.to_owned(),
        subject: identity.subject.clone(),
        link: identity
            .link_key
            .as_ref()
            .map(|l| (l.scope.clone(), l.key.clone())),
        name: identity.profile.name.clone(),
        picture: identity.profile.picture.clone(),
        locale: identity.profile.locale.clone(),
        profile: serde_json::to_value(&identity.profile).unwrap_or_default(),
        upstream_tokens: sealed_tokens,
    }
}

/// [`outcome_for`] when the first callback answered the app: the sealed
/// response, so a repeated callback answers in the same response mode.
pub(crate) fn app_outcome(
    state: &AppState,
    upstream_state: &str,
    app: &AppResponse,
) -> serde_json::Value {
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
pub(crate) fn outcome_for(
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
pub(crate) async fn remember_outcome(
    state: &AppState,
    upstream_state: &str,
    redirect: Option<&str>,
) {
    let outcome = outcome_for(state, upstream_state, redirect);
    if let Err(e) = state.store.set_flow_outcome(upstream_state, outcome).await {
        tracing::error!(stage = "callback", error = %e, "cannot record the flow outcome");
    }
}

/// A second callback for a state already used: follow the first one's outcome.
async fn repeated_callback(
    state: &AppState,
    upstream_state: &str,
    connector_id: &str,
    locale: Locale,
) -> HttpResponse {
    // The first callback may still be talking to the upstream; wait for it briefly.
    for _ in 0..50 {
        if let Ok(Some(flow)) = state.store.get_flow(upstream_state).await {
            if let Some(outcome) = flow.outcome {
                let opened = |key: &str| {
                    outcome
                        .get(key)
                        .and_then(|v| v.as_str())
                        .and_then(|s| open_text(state, s, upstream_state.as_bytes()))
                };
                if let Some(app) = opened("app")
                    .and_then(|clear| serde_json::from_slice::<AppResponse>(&clear).ok())
                {
                    tracing::info!(event = "repeated_callback", connector = connector_id, "repeated callback for a completed sign-in; answering the app as the first one did");
                    return app.respond();
                }
                if let Some(url) =
                    opened("redirect").and_then(|clear| String::from_utf8(clear).ok())
                {
                    tracing::info!(event = "repeated_callback", connector = connector_id, "repeated callback for a completed sign-in; sending the browser where the first one went");
                    return found(&url);
                }
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tracing::warn!(
        event = "login_failed",
        stage = "callback",
        connector = connector_id,
        reason = "state_reused",
        "callback state was already used"
    );
    error_page(
        locale,
        StatusCode::BAD_REQUEST,
        text(locale, "expired"),
        text(locale, "expired_todo"),
    )
}
