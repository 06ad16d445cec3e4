//! The HTTP vocabulary every handler shares: the broker's cookies, redirects
//! (`found`, `see_other`), the locale of a page before the app's request is known,
//! the request context a connector sees, and where a request's parameters come
//! from (the query, a POSTed form, or both).

use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, Method};
use actix_web::{HttpRequest, HttpResponse};
use idbridge_core::{Locale, RequestContext};
use std::collections::BTreeMap;

/// The SSO session (its secret; the store keeps the hash).
pub const SESSION_COOKIE: &str = "idb_session";
/// The browser's secret: binds flows, codes and forms to the browser (crate::csrf).
pub const BROWSER_COOKIE: &str = "idb_browser";

/// A broker cookie: whole site, HttpOnly, SameSite=Lax, Secure behind https.
pub fn cookie<'a>(state: &AppState, name: &'a str, value: String) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .finish()
}

/// 302 to `location`, never cached.
pub fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// 303 to `location` (after a POSTed form), never cached.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The browser's `Accept-Language`, if it sent a readable one.
pub fn accept_language(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// The locale for a page before the request is known: the browser's.
pub fn fallback_locale(req: &HttpRequest) -> Locale {
    Locale::negotiate(None, accept_language(req))
}

/// What a connector learns of the browser: its user agent, the locale, the time.
pub fn request_context(state: &AppState, req: &HttpRequest, locale: Locale) -> RequestContext {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    RequestContext::new(ua, locale, state.now())
}

/// The raw parameters of a GET (its query) or a POST (its form body).
pub fn query_or_form(req: &HttpRequest, body: Option<&[u8]>) -> String {
    if req.method() == Method::POST {
        String::from_utf8_lossy(body.unwrap_or_default()).into_owned()
    } else {
        req.query_string().to_owned()
    }
}

/// The query's parameters; for a POST, the form's fill in what the query lacks
/// (an upstream's `response_mode=form_post`). First values win
/// ([`crate::params::parse_first`]).
pub fn query_then_form(
    req: &HttpRequest,
    body: Option<&[u8]>,
) -> Result<BTreeMap<String, String>, crate::params::Rejected> {
    let mut p = crate::params::parse_first(req.query_string().as_bytes())?;
    if let (true, Some(b)) = (req.method() == Method::POST, body) {
        for (k, v) in crate::params::parse_first(b)? {
            p.entry(k).or_insert(v);
        }
    }
    Ok(p)
}
