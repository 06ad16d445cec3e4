//! Request bodies, read in one place for every endpoint before its handler runs:
//! at most [`LIMIT`] bytes, arriving within `server.request_read_timeout_secs`.
//! A body that is too big, stalls or breaks off is refused in the shape its
//! endpoint speaks: an OAuth JSON error (`no-store`) at the back-channel and
//! admin endpoints, a page saying what went wrong everywhere else (posted
//! forms). Handlers then take the body, already in memory, as `web::Bytes`.

use crate::error::OAuthError;
use actix_web::body::{BodyStream, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use idbridge_core::Locale;
use std::time::Duration;

/// The largest request body accepted (forms and JSON are a few hundred bytes;
/// a WeChat message push a few KiB).
pub const LIMIT: usize = 64 * 1024;

/// How a refused body is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"error":"invalid_request", ...}` with `Cache-Control: no-store`.
    Json,
    /// A hosted page.
    Page,
}

/// Endpoints that apps call (RFC 6749/7009/7662/6750 errors) and the admin API
/// (same JSON shape); the rest are visited by browsers.
fn shape(path: &str) -> Shape {
    let json = matches!(
        path,
        "/token" | "/revoke" | "/introspect" | "/userinfo" | "/par" | "/register"
    ) || path == crate::admin::http::PREFIX
        || path.starts_with(&format!("{}/", crate::admin::http::PREFIX));
    if json {
        Shape::Json
    } else {
        Shape::Page
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooLarge,
    Stalled,
    Broken,
}

/// The middleware: buffer the body (bounded in size and time), or answer.
pub async fn read(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let refusal = if declared.is_some_and(|n| n > LIMIT as u64) {
        // Refused before a byte of it is read.
        Some(Refusal::TooLarge)
    } else {
        let payload = req.take_payload();
        let reading = actix_web::body::to_bytes_limited(BodyStream::new(payload), LIMIT);
        match tokio::time::timeout(timeout, reading).await {
            Ok(Ok(Ok(bytes))) => {
                req.set_payload(bytes.into());
                None
            }
            Ok(Ok(Err(_))) => Some(Refusal::Broken),
            Ok(Err(_)) => Some(Refusal::TooLarge),
            Err(_) => Some(Refusal::Stalled),
        }
    };
    let Some(refusal) = refusal else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    tracing::warn!(
        stage = "request_body",
        reason = match refusal {
            Refusal::TooLarge => "too_large",
            Refusal::Stalled => "stalled",
            Refusal::Broken => "broken",
        },
        path = req.path(),
        declared_length = declared.unwrap_or(0),
        limit = LIMIT,
        timeout_secs = timeout.as_secs(),
        "request body refused"
    );
    let mut resp = match shape(req.path()) {
        Shape::Json => json_refusal(refusal, timeout),
        Shape::Page => page_refusal(&req, refusal),
    };
    // The rest of the body is not read: the connection cannot carry another
    // request, so it is closed after this answer.
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(req.into_response(resp).map_into_right_body())
}

fn status(refusal: Refusal) -> StatusCode {
    match refusal {
        Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::Stalled => StatusCode::REQUEST_TIMEOUT,
        Refusal::Broken => StatusCode::BAD_REQUEST,
    }
}

fn json_refusal(refusal: Refusal, timeout: Duration) -> HttpResponse {
    let description = match refusal {
        Refusal::TooLarge => format!("the request body is larger than {} KiB", LIMIT / 1024),
        Refusal::Stalled => format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        ),
        Refusal::Broken => "the request body ended before its declared length".to_owned(),
    };
    let mut e = OAuthError::invalid_request(description);
    e.status = status(refusal);
    e.error_response()
}

fn page_refusal(req: &ServiceRequest, refusal: Refusal) -> HttpResponse {
    let locale = Locale::negotiate(
        None,
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let what = match refusal {
        Refusal::TooLarge => "body_too_large",
        Refusal::Stalled => "body_stalled",
        Refusal::Broken => "body_broken",
    };
    crate::pages::error_page(locale, status(refusal), what, "body_refused_todo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_endpoints_get_json_and_browser_endpoints_pages() {
        for p in [
            "/token",
            "/revoke",
            "/introspect",
            "/userinfo",
            "/par",
            "/admin/v1/users",
        ] {
            assert_eq!(shape(p), Shape::Json, "{p}");
        }
        for p in [
            "/authorize",
            "/login/x/bind/code",
            "/account/link",
            "/callback/wechat",
            "/admin/v10",
        ] {
            assert_eq!(shape(p), Shape::Page, "{p}");
        }
    }
}
