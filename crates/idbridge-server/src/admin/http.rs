//! The admin HTTP API under `/admin/v1`: JSON in and out, `Authorization:
//! Bearer <admin token>`, `Cache-Control: no-store`. Mounted only when admin
//! tokens are configured (otherwise every admin path is a plain 404). A missing
//! or wrong token is a 401 that counts against the per-IP failure limit.

use super::{Actor, Admin, AdminError, AuditQuery};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const PREFIX: &str = "/admin/v1";
const REALM: &str = "Bearer realm=\"idbridge-admin\"";

/// Mount the admin API when it is `enabled`.
pub fn routes(cfg: &mut web::ServiceConfig, enabled: bool) {
    if !enabled {
        return;
    }
    cfg.service(
        web::scope(PREFIX)
            .route("/users", web::get().to(find_users))
            .route("/users/{id}", web::get().to(show_user))
            .route("/users/{id}/unlink", web::post().to(unlink))
            .route("/users/{id}/disable", web::post().to(disable))
            .route("/users/{id}/enable", web::post().to(enable))
            .route("/users/{id}/revoke", web::post().to(revoke))
            .route("/audit", web::get().to(audit))
            .default_service(web::to(unknown)),
    );
}

/// An admin API error: `{"error", "error_description"}`, `no-store`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
    challenge: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    fn invalid(description: impl Into<String>) -> Self {
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
        resp.json(serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        }))
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(d) => Self::invalid(d),
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
async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Actor, ApiError> {
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

fn ops<'a>(state: &'a AppState, actor: Actor) -> Admin<'a> {
    Admin::new(&state.store, actor, state.now())
}

fn ok<T: serde::Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(value)
}

/// The query string, strictly: no repeated and no unknown parameters.
fn query(req: &HttpRequest, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
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
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlinkBody {
    connector_id: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

/// GET /admin/v1/users?q=&limit=
async fn find_users(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    let q = query(&req, &["q", "limit"])?;
    let list = ops(&state, actor)
        .find_users(
            q.get("q").map(String::as_str),
            q.get("limit").map(String::as_str),
        )
        .await?;
    Ok(ok(&list))
}

/// GET /admin/v1/users/{id}
async fn show_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    Ok(ok(&ops(&state, actor).show_user(&path).await?))
}

/// POST /admin/v1/users/{id}/unlink {"connector_id", "subject", "force", "reason"}
async fn unlink(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let b: UnlinkBody = body(&bytes)?;
    let out = ops(&state, actor)
        .unlink(
            &path,
            b.connector_id.as_deref().unwrap_or(""),
            b.subject.as_deref().unwrap_or(""),
            b.force,
            b.reason.as_deref(),
        )
        .await?;
    Ok(ok(&out))
}

async fn access(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    action: &str,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let b: ReasonBody = body(&bytes)?;
    let admin = ops(&state, actor);
    let reason = b.reason.as_deref();
    let out = match action {
        "disable" => admin.disable(&path, reason).await?,
        "enable" => admin.enable(&path, reason).await?,
        _ => admin.revoke(&path, reason).await?,
    };
    Ok(ok(&out))
}

/// POST /admin/v1/users/{id}/disable {"reason"}
async fn disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    access(state, req, path, bytes, "disable").await
}

/// POST /admin/v1/users/{id}/enable {"reason"}
async fn enable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    access(state, req, path, bytes, "enable").await
}

/// POST /admin/v1/users/{id}/revoke {"reason"}
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    access(state, req, path, bytes, "revoke").await
}

/// GET /admin/v1/audit?user=&event=&since=&until=&before=&limit=
async fn audit(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    let mut q = query(
        &req,
        &["user", "event", "since", "until", "before", "limit"],
    )?;
    let page = ops(&state, actor)
        .audit(&AuditQuery {
            user: q.remove("user"),
            event: q.remove("event"),
            since: q.remove("since"),
            until: q.remove("until"),
            before: q.remove("before"),
            limit: q.remove("limit"),
        })
        .await?;
    Ok(ok(&page))
}

/// Anything else under the prefix (after the token check, so probing counts).
async fn unknown(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req).await?;
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no admin endpoint {} {}", req.method(), req.path()),
    ))
}
