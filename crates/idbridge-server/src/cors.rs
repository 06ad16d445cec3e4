//! CORS for browser apps (the OAuth 2.0 for Browser-Based Apps BCP, the Fetch
//! standard's CORS protocol), by endpoint:
//!
//! - discovery and JWKS are public documents: `Access-Control-Allow-Origin: *`
//!   on every answer, whoever asks;
//! - token, userinfo, revocation and introspection answer a page on a
//!   registered origin ([`crate::clients::Clients::cors_allows`]) with that
//!   exact origin and `Vary: Origin`, and its preflight (`OPTIONS`) with the
//!   methods and request headers they take; any other origin gets no CORS
//!   headers (the browser then keeps the answer from the page), while the
//!   request itself is served as it would be without an `Origin`;
//! - nothing else, in particular not the authorization endpoint or any hosted
//!   page: a browser navigates there, it never fetches them.
//!
//! `Access-Control-Allow-Credentials` is never sent: no endpoint here takes a
//! cookie, so a page's `credentials: "include"` fetch is refused by its browser.

use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

/// The request headers a page may send beyond the CORS-safelisted ones:
/// `Authorization` (a bearer token at userinfo, Basic client credentials) and
/// `Content-Type` (JSON is not safelisted).
const ALLOW_HEADERS: &str = "authorization, content-type";
/// Answer headers a page may read beyond the safelisted ones: the bearer-token
/// error at userinfo, and when to retry after 429 or 503.
const EXPOSE_HEADERS: &str = "www-authenticate, retry-after";
/// How long a browser may keep a preflight's answer (Chromium keeps at most two
/// hours); short, so a client removed from the config stops working soon.
const MAX_AGE_SECS: &str = "600";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Any origin (`*`).
    Public,
    /// The origins of the registered clients.
    Registered,
}

/// The CORS policy of `path` and the methods it takes; `None`: no CORS.
fn endpoint(path: &str) -> Option<(Policy, &'static str)> {
    match path {
        "/.well-known/openid-configuration" | "/jwks" => Some((Policy::Public, "GET")),
        "/userinfo" => Some((Policy::Registered, "GET, POST")),
        "/token" | "/revoke" | "/introspect" | "/par" => Some((Policy::Registered, "POST")),
        _ => None,
    }
}

/// The middleware (`App::wrap(from_fn(...))` with the state): outside the other
/// checks, so their refusals carry the CORS headers too and the page can read
/// why it was refused.
pub async fn layer(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some((policy, methods)) = endpoint(req.path()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allow_origin = match (policy, origin) {
        (Policy::Public, _) => Some(HeaderValue::from_static("*")),
        (Policy::Registered, None) => None,
        (Policy::Registered, Some(origin)) => {
            if state.clients.cors_allows(&origin).await {
                HeaderValue::from_str(&origin).ok()
            } else {
                None
            }
        }
    };
    if req.method() == Method::OPTIONS {
        let preflight = req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut resp = HttpResponse::NoContent().finish();
        let h = resp.headers_mut();
        h.insert(
            header::ALLOW,
            HeaderValue::from_str(&format!("{methods}, OPTIONS"))
                .unwrap_or(HeaderValue::from_static("OPTIONS")),
        );
        if let Some(allow) = allow_origin.filter(|_| preflight) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
        }
        vary(h, policy);
        return Ok(req.into_response(resp));
    }
    // Handlers' errors are answers by now (actix turns them into responses
    // inside the service), so they get the headers below like any other.
    let mut res = next.call(req).await?.map_into_boxed_body();
    let h = res.headers_mut();
    if let Some(allow) = allow_origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    vary(h, policy);
    Ok(res)
}

/// A registered-origin answer depends on the `Origin` header, so caches must
/// key on it (even when there was none: the next request may bring one).
fn vary(h: &mut HeaderMap, policy: Policy) {
    if policy == Policy::Registered {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documents_and_back_channel_endpoints_have_cors() {
        assert_eq!(endpoint("/jwks"), Some((Policy::Public, "GET")));
        assert_eq!(
            endpoint("/.well-known/openid-configuration"),
            Some((Policy::Public, "GET"))
        );
        for path in ["/token", "/revoke", "/introspect", "/par"] {
            assert_eq!(endpoint(path), Some((Policy::Registered, "POST")));
        }
        assert_eq!(
            endpoint("/userinfo"),
            Some((Policy::Registered, "GET, POST"))
        );
        for path in [
            "/authorize",
            "/login/x",
            "/logout",
            "/return",
            "/account",
            "/callback/dev",
            "/demo",
            "/token/",
            "/healthz",
            "/admin/v1/users",
        ] {
            assert_eq!(endpoint(path), None, "{path}");
        }
    }
}
