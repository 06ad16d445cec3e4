//! POST /introspect (RFC 7662): a client asks whether a token issued to it is
//! active — a refresh token exactly when `/token` would take it, an access token
//! while it is live ([`crate::access_token`]).

use crate::access_token::check_access_token;
use crate::error::OAuthError;
use crate::state::AppState;
use crate::token::form;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_tokens::hash_token;

/// POST /introspect (RFC 7662): a client may introspect the tokens issued to it.
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    crate::token::limited(&state, &req, introspect_inner(&state, &req, &body)).await
}

async fn introspect_inner(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, OAuthError> {
    let form = form(body)?;
    let client = state.clients.authenticate(req, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = state.now();
    let inactive = || {
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({"active": false}))
    };
    // A refresh token? Active exactly when `/token` would refresh it for this client
    // now: unused, or reused within the grace window while its successor is unused.
    let t = &state.settings.tokens;
    let (_, successor_hash) = crate::issue::successor_refresh_token(state, token);
    if let Some((rt, f)) = state
        .store
        .refreshable(
            &hash_token(token),
            &successor_hash,
            &client.id,
            t.refresh_grace_secs,
            t.refresh_idle_ttl_secs,
            now,
        )
        .await
        .map_err(OAuthError::store)?
    {
        // When `/token` stops taking it: the grant's lifetimes, and for a token
        // already rotated, the end of its grace window.
        let mut exp = f
            .absolute_expires_at
            .min(f.last_used_at.saturating_add(t.refresh_idle_ttl_secs));
        if let Some(used_at) = rt.used_at {
            exp = exp.min(used_at.saturating_add(t.refresh_grace_secs));
        }
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": f.client_id,
                "sub": f.user_id,
                "scope": f.scope,
                "iss": state.issuer,
                "iat": rt.created_at,
                "exp": exp,
            })));
    }
    // Not a refresh token /token would take: an access token, or inactive (a refresh
    // token is no JWT, so it fails verification below).
    match check_access_token(state, token).await? {
        Some(live) if live.claims.client_id == client.id => {
            let c = &live.claims;
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(serde_json::json!({
                    "active": true,
                    "token_type": "Bearer",
                    "client_id": c.client_id,
                    "sub": c.sub,
                    "scope": c.scope,
                    "iss": c.iss,
                    "aud": c.aud,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    "auth_time": c.auth_time,
                })))
        }
        _ => Ok(inactive()),
    }
}
