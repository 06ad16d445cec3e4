//! Dynamic client registration (RFC 7591), off unless the operator configures
//! initial access tokens (`admin.registration_tokens`): `POST /register` with
//! `Authorization: Bearer <initial access token>` and the client's metadata
//! registers a client exactly as the admin API's create does (the same rules,
//! the same audit event, `via = "registration"`). The client is then managed
//! like any other through the admin API; RFC 7592's client configuration
//! endpoint is not offered.

use crate::admin::{Actor, Admin, AdminError, ClientAdmin, ClientInput};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

pub const PATH: &str = "/register";

/// Mount the endpoint when registration is `enabled` (otherwise a plain 404).
pub fn routes(cfg: &mut web::ServiceConfig, enabled: bool) {
    if enabled {
        cfg.route(PATH, web::post().to(register));
    }
}

/// An RFC 7591 §3.2.2 error (or RFC 6750 for the token), `no-store`.
fn error(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    resp.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        resp.insert_header((
            header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"idbridge-registration\", error=\"{code}\""),
        ));
    }
    resp.json(json!({ "error": code, "error_description": description }))
}

async fn register(state: web::Data<AppState>, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let ip = state.proxies.of(&req);
    match state.failures.check(ip, state.now_ms()).await {
        Ok(()) => {}
        Err(crate::limits::Refused::Limited) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed requests from this address; wait a minute",
            )
        }
        Err(crate::limits::Refused::Store(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the broker's database is unavailable; retry shortly",
            )
        }
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(id) = presented.and_then(|t| state.registration.verify(t)) else {
        state.failures.failed(ip, state.now_ms()).await;
        tracing::warn!(stage = "registration", ip = ?ip, reason = if presented.is_some() { "wrong_token" } else { "missing_token" }, "client registration refused: an initial access token is required");
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "an initial access token is required: Authorization: Bearer <token>",
        );
    };
    let metadata: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => m,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata (RFC 7591 §2)",
            )
        }
    };
    let input = match input_of(&metadata) {
        Ok(input) => input,
        Err((code, d)) => return error(StatusCode::BAD_REQUEST, code, &d),
    };
    let actor = Actor::Registration {
        id: id.to_owned(),
        ip: ip.map(|i| i.to_string()),
    };
    let admin = Admin::new(&state.store, actor, state.now());
    let clients = ClientAdmin::new(
        &admin,
        state.client_rules(),
        state.settings.clients.clone(),
        state.clients.configured_ids(),
    );
    match clients.create(&input).await {
        Ok(w) => {
            let c = &w.client;
            let mut out = json!({
                "client_id": c.id,
                "client_id_issued_at": c.created_at,
                "client_name": c.name,
                "redirect_uris": c.redirect_uris,
                "post_logout_redirect_uris": c.post_logout_redirect_uris,
                "token_endpoint_auth_method": c.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic"),
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            });
            if let Some(m) = out.as_object_mut() {
                if let Some(secret) = &w.client_secret {
                    m.insert("client_secret".into(), secret.clone().into());
                    // Never expires (until rotated through the admin API).
                    m.insert("client_secret_expires_at".into(), 0.into());
                }
                if let Some(alg) = &c.id_token_signed_response_alg {
                    m.insert("id_token_signed_response_alg".into(), alg.clone().into());
                }
            }
            HttpResponse::Created()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(out)
        }
        Err(AdminError::Field { field, message }) => {
            let code = if field.ends_with("redirect_uris") {
                "invalid_redirect_uri"
            } else {
                "invalid_client_metadata"
            };
            error(
                StatusCode::BAD_REQUEST,
                code,
                &format!("{field}: {message}"),
            )
        }
        Err(AdminError::Invalid(d)) => {
            error(StatusCode::BAD_REQUEST, "invalid_client_metadata", &d)
        }
        Err(e) => {
            tracing::error!(stage = "registration", error = %e, "client registration failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the client could not be registered; retry shortly",
            )
        }
    }
}

/// RFC 7591 metadata as the admin API's fields. Values this broker cannot
/// honour are refused; metadata it has no use for (logo_uri, contacts, …) is
/// ignored, as §2 allows. The client id is always generated.
fn input_of(m: &Map<String, Value>) -> Result<ClientInput, (&'static str, String)> {
    let bad = |d: String| ("invalid_client_metadata", d);
    let strings = |key: &str| -> Result<Option<Vec<String>>, (&'static str, String)> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| bad(format!("{key} must be an array of strings"))),
            Some(_) => Err(bad(format!("{key} must be an array of strings"))),
        }
    };
    let string_field = |key: &str| -> Result<Option<String>, (&'static str, String)> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{key} must be a string"))),
        }
    };
    for (key, allowed) in [
        ("grant_types", &["authorization_code", "refresh_token"][..]),
        ("response_types", &["code"][..]),
    ] {
        if let Some(values) = strings(key)? {
            if let Some(v) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
                return Err(bad(format!(
                    "{key}: {v:?} is not supported (only {})",
                    allowed.join(", ")
                )));
            }
        }
    }
    let redirect_uris = strings("redirect_uris")?;
    if redirect_uris.as_ref().is_none_or(|r| r.is_empty()) {
        return Err((
            "invalid_redirect_uri",
            "redirect_uris: at least one redirect URI is required".into(),
        ));
    }
    Ok(ClientInput {
        name: string_field("client_name")?,
        token_endpoint_auth_method: string_field("token_endpoint_auth_method")?,
        redirect_uris,
        post_logout_redirect_uris: strings("post_logout_redirect_uris")?,
        id_token_signed_response_alg: string_field("id_token_signed_response_alg")?,
        // Whatever the request says: an app that registered itself is never
        // first-party, so the person is always asked (docs/openid-provider.md).
        skip_consent: Some(false),
        ..Default::default()
    })
}
