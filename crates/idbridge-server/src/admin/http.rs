//! The admin HTTP API under `/admin/v1`: JSON in and out, `Authorization:
//! Bearer <admin token>`, `Cache-Control: no-store`. Mounted only when admin
//! tokens are configured (otherwise every admin path is a plain 404). A missing
//! or wrong token is a 401 that counts against the per-IP failure limit.

use super::api::{authenticate, body, ok, ops, query, ApiError};
use super::AuditQuery;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub use super::api::PREFIX;

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
            .configure(super::clients_http::routes)
            .default_service(web::to(unknown)),
    );
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
