//! Endpoints that take tokens back: userinfo (RFC 6750 bearer), revocation
//! (RFC 7009) and introspection (RFC 7662). An access token is live only while
//! its grant (refresh-token family) is live and its user is enabled.

use crate::error::OAuthError;
use crate::issue::{profile_claims, AccessClaims};
use crate::params::has_scope;
use crate::state::AppState;
use crate::token::form;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_store::{FamilyRow, User};
use idbridge_tokens::{hash_token, Expect};

/// A verified access token whose grant and user are still live.
pub struct Live {
    pub claims: AccessClaims,
    pub user: User,
}

pub async fn check_access_token(state: &AppState, token: &str) -> Result<Option<Live>, OAuthError> {
    let now = state.now();
    let expect = Expect {
        typ: "at+jwt",
        issuer: &state.issuer,
        audience: None,
        now,
        leeway: state.settings.tokens.leeway_secs,
    };
    let Ok(claims) = state.keys.set().verify::<AccessClaims>(token, &expect) else {
        return Ok(None);
    };
    let family = state
        .store
        .get_family(claims.family_id())
        .await
        .map_err(OAuthError::store)?;
    if !family_live(family.as_ref(), now) {
        return Ok(None);
    }
    let user = state
        .store
        .get_user(&claims.sub)
        .await
        .map_err(OAuthError::store)?;
    Ok(user
        .filter(|u| u.disabled_at.is_none())
        .map(|user| Live { claims, user }))
}

fn family_live(f: Option<&FamilyRow>, now: i64) -> bool {
    f.is_some_and(|f| f.revoked_at.is_none() && f.absolute_expires_at > now)
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// GET or POST /userinfo
pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Bytes>,
) -> Result<HttpResponse, OAuthError> {
    let from_body = match (&body, req.method() == actix_web::http::Method::POST) {
        (Some(b), true) if !b.is_empty() => form(b)?.get("access_token").cloned(),
        _ => None,
    };
    let token = match (bearer(&req), from_body) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "send the access token once, not in both the header and the body",
            ))
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            let mut e = OAuthError::invalid_token("an access token is required");
            e.error = "invalid_request";
            return Err(e);
        }
    };
    let live = check_access_token(&state, &token).await?.ok_or_else(|| {
        OAuthError::invalid_token("the access token is invalid, expired or revoked")
    })?;
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), live.user.id.clone().into());
    if has_scope(&live.claims.scope, "profile") {
        profile_claims(&live.user, &mut out);
    }
    if has_scope(&live.claims.scope, "phone") {
        crate::issue::phone_claims(&live.user, &mut out);
    }
    let linked = crate::issue::linked_connectors(&state, &live.user.id).await?;
    out.insert("linked_connectors".into(), linked.into());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}

/// POST /revoke (RFC 7009): always 200 for a valid client, whatever the token.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    crate::token::limited(&state, &req, revoke_inner(&state, &req, &body)).await
}

async fn revoke_inner(
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
    let family = match state
        .store
        .find_refresh_token(&hash_token(token))
        .await
        .map_err(OAuthError::store)?
    {
        Some(rt) => Some(rt.family_id),
        None => {
            let expect = Expect {
                typ: "at+jwt",
                issuer: &state.issuer,
                audience: None,
                now,
                // An expired access token can still be revoked.
                leeway: i64::MAX / 4,
            };
            state
                .keys
                .set()
                .verify::<AccessClaims>(token, &expect)
                .ok()
                .map(|c| c.family_id().to_owned())
        }
    };
    if let Some(family_id) = family {
        if let Some(f) = state
            .store
            .get_family(&family_id)
            .await
            .map_err(OAuthError::store)?
        {
            if f.client_id == client.id {
                if state
                    .store
                    .revoke_family(&f.id, "revoked_by_client", now)
                    .await
                    .map_err(OAuthError::store)?
                {
                    crate::audit::Event::TokenRevoked {
                        user_id: &f.user_id,
                        client_id: &client.id,
                        family: &f.id,
                    }
                    .record(state)
                    .await;
                }
            } else {
                tracing::warn!(stage = "revoke", client_id = %client.id, "client tried to revoke another client's token; ignored");
            }
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

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
