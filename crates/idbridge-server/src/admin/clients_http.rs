//! The admin API's client endpoints (see [`super::clients`]):
//!
//! - `GET  /admin/v1/clients`: every client, the config file's too
//! - `POST /admin/v1/clients`: create (answer 201, with the secret once)
//! - `GET  /admin/v1/clients/{id}`: one client (its secrets as expiry only)
//! - `POST /admin/v1/clients/{id}/update`: change the fields given
//! - `POST /admin/v1/clients/{id}/rotate-secret` `{"grace": "24h"}`
//! - `POST /admin/v1/clients/{id}/delete`

use super::api::{authenticate, body, ok, ops, query, ApiError};
use super::{Admin, ClientAdmin, ClientInput};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/clients", web::get().to(list))
        .route("/clients", web::post().to(create))
        .route("/clients/{id}", web::get().to(show))
        .route("/clients/{id}/update", web::post().to(update))
        .route("/clients/{id}/rotate-secret", web::post().to(rotate_secret))
        .route("/clients/{id}/delete", web::post().to(delete));
}

fn clients<'a>(state: &AppState, admin: &'a Admin<'a>) -> ClientAdmin<'a> {
    ClientAdmin::new(
        admin,
        state.client_rules(),
        state.settings.clients.clone(),
        state.clients.configured_ids(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// `24h`, `30m`, `0` or seconds; a number is seconds too.
    grace: Option<serde_json::Value>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

/// GET /admin/v1/clients
async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let admin = ops(&state, actor);
    Ok(ok(&clients(&state, &admin).list().await?))
}

/// POST /admin/v1/clients {"id"?, "redirect_uris", …}
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let input: ClientInput = body(&bytes)?;
    let admin = ops(&state, actor);
    let created = clients(&state, &admin).create(&input).await?;
    let location = format!("{}/clients/{}", super::api::PREFIX, created.client.id);
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::LOCATION, location))
        .json(&created))
}

/// GET /admin/v1/clients/{id}
async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let admin = ops(&state, actor);
    Ok(ok(&clients(&state, &admin).show(&path).await?))
}

/// POST /admin/v1/clients/{id}/update {the fields to change, "reason"?}
async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let input: ClientInput = body(&bytes)?;
    let admin = ops(&state, actor);
    Ok(ok(&clients(&state, &admin).update(&path, &input).await?))
}

/// POST /admin/v1/clients/{id}/rotate-secret {"grace"?, "reason"?}
async fn rotate_secret(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let b: RotateBody = body(&bytes)?;
    let grace = match &b.grace {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "grace: {other} is not a duration: use seconds or text such as \"30m\", \"24h\", \"7d\""
            )))
        }
    };
    let admin = ops(&state, actor);
    let out = clients(&state, &admin)
        .rotate_secret(&path, grace.as_deref(), b.reason.as_deref())
        .await?;
    Ok(ok(&out))
}

/// POST /admin/v1/clients/{id}/delete {"reason"?}
async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = authenticate(&state, &req).await?;
    query(&req, &[])?;
    let b: ReasonBody = body(&bytes)?;
    let admin = ops(&state, actor);
    Ok(ok(&clients(&state, &admin)
        .delete(&path, b.reason.as_deref())
        .await?))
}
