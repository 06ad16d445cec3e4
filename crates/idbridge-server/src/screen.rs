//! The entry check on every request, before any handler: the path (each segment,
//! percent-decoded), the query string and the broker's own cookies must be free
//! of control characters ([`crate::params::control_free`]). Such a request gets
//! a 400 right here, so no handler, store call or log line ever sees it: an
//! OAuth JSON error at the endpoints apps and operators call, an error page in
//! the person's language at the hosted pages. Bodies are checked where they are
//! parsed (`params::parse`, `csrf::checked_form`, the admin API).

use crate::error::OAuthError;
use crate::params::{control_free, printable, Rejected};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use idbridge_core::Locale;

/// Where a control character was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A path segment; the whole decoded path, for the log.
    Path(String),
    /// A query parameter (name or value).
    Query(Rejected),
    /// One of the broker's cookies, by name.
    Cookie(String),
}

impl Place {
    /// What the person or app is told: the parameter, "path", "cookie NAME".
    fn label(&self) -> String {
        match self {
            Place::Path(_) => "path".to_owned(),
            Place::Query(r) => r.name(),
            Place::Cookie(name) => format!("cookie {}", printable(name)),
        }
    }
}

/// The middleware (`App::wrap(from_fn(screen::guard))`).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(place) = first_control(req.request()) {
        let resp = refusal(req.request(), &place);
        return Ok(req.into_response(resp));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The first place in the request line or the broker's cookies that holds a
/// control character.
pub fn first_control(req: &HttpRequest) -> Option<Place> {
    let path = req.path();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    if !control_free(&decoded) {
        return Some(Place::Path(decoded.into_owned()));
    }
    if let Err(r) = crate::params::parse_first(req.query_string().as_bytes()) {
        return Some(Place::Query(r));
    }
    // Only the broker's own cookies: another app's cookie on the same domain is
    // none of its business.
    if let Ok(cookies) = req.cookies() {
        for c in cookies.iter().filter(|c| c.name().starts_with("idb_")) {
            if !control_free(c.name()) || !control_free(c.value()) {
                return Some(Place::Cookie(c.name().to_owned()));
            }
        }
    }
    None
}

/// Endpoints a person's browser shows: they answer with a page. Everything else
/// (the OAuth endpoints, discovery, health, the admin API) answers JSON.
fn is_page(path: &str) -> bool {
    const PAGES: [&str; 9] = [
        "/authorize",
        "/return",
        "/login/",
        "/account",
        "/callback/",
        "/logout",
        "/demo",
        "/dev/",
        "/assets/",
    ];
    PAGES.iter().any(|p| path.starts_with(p))
}

/// The 400 for input with a control character, logged once (a path is logged
/// decoded: the text log escapes it; a value is never logged, it may be a secret).
pub fn refusal(req: &HttpRequest, place: &Place) -> HttpResponse {
    let label = place.label();
    match place {
        Place::Path(decoded) => {
            let shown: String = decoded.chars().take(256).collect();
            tracing::warn!(stage = "input", place = "path", path = %shown, "refused a request whose path holds a control character");
        }
        _ => {
            tracing::warn!(stage = "input", place = %label, path = req.path(), "refused a request with a control character");
        }
    }
    if is_page(req.path()) {
        crate::pages::bad_input_page(locale(req), &label)
    } else {
        let what = match place {
            Place::Query(r) => r.to_string(),
            Place::Path(_) => {
                "the path contains a control character (such as NUL or a line break), which is never valid"
                    .to_owned()
            }
            Place::Cookie(_) => format!(
                "{label} contains a control character (such as NUL or a line break), which is never valid"
            ),
        };
        OAuthError::invalid_request(what).error_response()
    }
}

/// A hosted page's form (or its parameters) that holds a control character
/// (`r` is a [`Rejected::Control`]: a repeated parameter is each handler's to
/// report): logged (the name only), and the 400 page in `locale`.
pub fn page_refusal(req: &HttpRequest, r: &Rejected, locale: Locale) -> HttpResponse {
    tracing::warn!(stage = "input", place = %r.name(), path = req.path(), "refused a form: {r}");
    crate::pages::bad_input_page(locale, &r.name())
}

/// The page's language: the app's `ui_locales` when it is readable, else the
/// browser's.
fn locale(req: &HttpRequest) -> Locale {
    let ui_locales = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "ui_locales")
        .map(|(_, v)| v.into_owned())
        .filter(|v| control_free(v));
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Locale::negotiate(ui_locales.as_deref(), accept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn place(uri: &str, cookie: Option<&str>) -> Option<Place> {
        let mut r = TestRequest::get().uri(uri);
        if let Some(c) = cookie {
            r = r.insert_header((header::COOKIE, c));
        }
        first_control(&r.to_http_request())
    }

    #[test]
    fn each_part_of_the_request_is_checked() {
        assert_eq!(place("/authorize?client_id=app&state=s", None), None);
        assert_eq!(
            place("/authorize?client_id=x%00y", None),
            Some(Place::Query(Rejected::Control("client_id".into())))
        );
        assert_eq!(
            place("/callback/x%0A2026?state=s", None),
            Some(Place::Path("/callback/x\n2026".into()))
        );
        assert_eq!(
            place("/admin/v1/users/a%00b", None),
            Some(Place::Path("/admin/v1/users/a\0b".into()))
        );
        assert_eq!(
            place("/account", Some("idb_session=a%00b")),
            Some(Place::Cookie("idb_session".into()))
        );
        // Someone else's cookie on the same domain is left alone.
        assert_eq!(place("/account", Some("other=a%00b; idb_browser=ok")), None);
        // Percent-encoded UTF-8 is text, not a control character.
        assert_eq!(place("/login/%E7%8A%B6?x=%F0%9F%90%BC", None), None);
    }

    #[test]
    fn pages_for_people_json_for_apps() {
        for p in [
            "/authorize",
            "/login/abc",
            "/callback/wechat",
            "/account/unlink",
            "/logout",
            "/return",
        ] {
            assert!(is_page(p), "{p}");
        }
        for p in [
            "/token",
            "/revoke",
            "/introspect",
            "/userinfo",
            "/admin/v1/users/x",
            "/jwks",
            "/healthz",
            "/.well-known/openid-configuration",
        ] {
            assert!(!is_page(p), "{p}");
        }
    }
}
