//! What every admin API endpoint shares: the admin-token check (with the
//! per-address failure limit), the JSON error shape, strict query strings and
//! JSON bodies, and `no-store` answers.

use super::{Actor, Admin, AdminError};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use std::collections::BTreeMap;

/// Where the admin API lives.
pub const PREFIX: &str = "/admin/v1";

const REALM: &str = "Bearer realm=\"idbridge-admin\"";

/// An admin API error: `{"error", "error_description"}`, `no-store`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The body field at fault, for a 400 about one field.
    field: Option<String>,
    challenge: Option<String>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            field: None,
            challenge: None,
        }
    }

    pub(super) fn invalid(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(c) = &self.challenge {
            resp.insert_header((header::WWW_AUTHENTICATE, c.clone()));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.insert_header((header::RETRY_AFTER, "60"));
        }
        let mut body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        if let (Some(f), Some(m)) = (&self.field, body.as_object_mut()) {
            m.insert("field".into(), f.clone().into());
        }
        resp.json(body)
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(d) => Self::invalid(d),
            AdminError::Field { field, message } => {
                let mut e = Self::invalid(format!("{field}: {message}"));
                e.field = Some(field);
                e
            }
            AdminError::Conflict(error, d) => Self::new(StatusCode::CONFLICT, error, d),
            AdminError::NotFound(d) => Self::new(StatusCode::NOT_FOUND, "not_found", d),
            AdminError::LastIdentity(d) => Self::new(StatusCode::CONFLICT, "last_identity", d),
            AdminError::Store(e) => {
                tracing::error!(stage = "admin", error = %e, "storage error");
                if e.is_unavailable() {
                    Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "the broker's database is unavailable; retry shortly",
                    )
                } else {
                    Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "internal storage error",
                    )
                }
            }
        }
    }
}

/// Check the admin token. Refused with 429 once this address has failed too
/// often; a missing or wrong token is a 401 and counts as a failure. The token
/// itself is never logged.
pub(super) async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Actor, ApiError> {
    let ip = state.proxies.of(req);
    match state.failures.check(ip, state.now_ms()).await {
        Ok(()) => {}
        Err(crate::limits::Refused::Limited) => {
            tracing::warn!(stage = "rate_limit", ip = ?ip, path = req.path(), "too many failed admin requests from this address");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed requests from this address; wait a minute",
            ));
        }
        Err(crate::limits::Refused::Store(e)) => return Err(AdminError::Store(e).into()),
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    let fail = |reason: &'static str, mut e: ApiError| async move {
        state.failures.failed(ip, state.now_ms()).await;
        tracing::warn!(event = "admin_auth_failed", reason, ip = ?ip, path = req.path(), "admin API request refused");
        e.challenge = Some(match e.error {
            "invalid_token" => format!("{REALM}, error=\"invalid_token\""),
            _ => REALM.to_owned(),
        });
        e
    };
    let Some(token) = presented else {
        return Err(fail(
            "missing_token",
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an admin token is required: Authorization: Bearer <token>",
            ),
        )
        .await);
    };
    match state.admin.verify(token) {
        Some(id) => Ok(Actor::Token {
            id: id.to_owned(),
            ip: ip.map(|i| i.to_string()),
        }),
        None => Err(fail(
            "wrong_token",
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the admin token is not valid",
            ),
        )
        .await),
    }
}

pub(super) fn ops<'a>(state: &'a AppState, actor: Actor) -> Admin<'a> {
    Admin::new(&state.store, actor, state.now())
}

pub(super) fn ok<T: serde::Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(value)
}

/// The query string, strictly: no repeated and no unknown parameters.
pub(super) fn query(
    req: &HttpRequest,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, ApiError> {
    let q =
        crate::params::parse(req.query_string()).map_err(|r| ApiError::invalid(r.to_string()))?;
    if let Some(unknown) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; this endpoint takes {}",
            allowed.join(", ")
        )));
    }
    Ok(q)
}

/// A JSON object body; an empty body is `{}`. No string in it (name or value)
/// may hold a control character.
pub(super) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))?;
    if let Some(field) = control_in_json(&value, "") {
        return Err(ApiError::invalid(format!(
            "field {field} of the JSON body contains a control character (such as NUL or a line break), which is never valid"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))
}

/// The first field (a dotted path) whose name or string value holds a control
/// character.
fn control_in_json(value: &serde_json::Value, at: &str) -> Option<String> {
    use crate::params::{control_free, printable};
    match value {
        serde_json::Value::String(s) if !control_free(s) => Some(at.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| control_in_json(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if at.is_empty() {
                printable(k)
            } else {
                format!("{at}.{}", printable(k))
            };
            if control_free(k) {
                control_in_json(v, &here)
            } else {
                Some(here)
            }
        }),
        _ => None,
    }
}
