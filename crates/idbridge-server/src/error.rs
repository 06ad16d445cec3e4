//! Errors the way OAuth clients expect them: `{"error": ..., "error_description": ...}`
//! with the right status, `Cache-Control: no-store`, and `WWW-Authenticate` where
//! RFC 6749 §5.2 / RFC 6750 §3 ask for it. Internal details go to the log, never
//! to the wire.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// RFC 6750 bearer error at userinfo.
    pub bearer: bool,
    /// The client authenticated with HTTP Basic: answer 401 with a challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            bearer: false,
            basic_challenge: false,
        }
    }

    /// Any other error code of a registry (e.g. an authorization request's, at /par).
    pub fn with_code(status: StatusCode, error: &'static str, d: impl Into<String>) -> Self {
        Self::new(status, error, d)
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    pub fn invalid_client(d: impl Into<String>, basic: bool) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d);
        e.basic_challenge = basic;
        e
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    /// RFC 8693: the requested `resource` or `audience` cannot be served.
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }

    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }

    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }

    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }

    pub fn unsupported_token_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_token_type", d)
    }

    pub fn invalid_token(d: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d);
        e.bearer = true;
        e
    }

    pub fn slow_down(d: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", d)
    }

    /// The token endpoint's answer for a connector's failure: the code from
    /// [`crate::upstream_errors::answer_for`]'s `token_error`, with its status.
    pub fn for_connector_failure(kind: idbridge_core::ErrorKind, d: impl Into<String>) -> Self {
        match crate::upstream_errors::answer_for(kind).token_error {
            "invalid_grant" => Self::invalid_grant(d),
            "temporarily_unavailable" => Self::temporarily_unavailable(d),
            _ => Self::server_error(d),
        }
    }

    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", d)
    }

    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            d,
        )
    }

    /// A store failure: the database is down or misbehaving. The detail is logged.
    pub fn store(e: idbridge_store::StoreError) -> Self {
        tracing::error!(stage = "store", error = %e, "storage error");
        match e {
            idbridge_store::StoreError::Unavailable(_) => {
                Self::temporarily_unavailable("the broker's database is unavailable; retry shortly")
            }
            _ => Self::server_error("internal storage error"),
        }
    }

    pub fn token(e: idbridge_tokens::TokenError) -> Self {
        tracing::error!(stage = "signing", error = %e, "token error");
        Self::server_error("could not sign the token")
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.insert_header((header::RETRY_AFTER, "60"));
        }
        if self.bearer {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer error=\"{}\", error_description=\"{}\"",
                    self.error,
                    self.description.replace('"', "'")
                ),
            ));
        } else if self.basic_challenge {
            resp.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"idbridge\""));
        }
        resp.json(serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        }))
    }
}
