//! GET or POST /userinfo (OpenID Connect Core §5.3): the claims of the person an
//! access token (RFC 6750 bearer, or `access_token` in a POSTed form) was issued
//! for, as its scope allows.

use crate::access_token::check_access_token;
use crate::error::OAuthError;
use crate::issue::profile_claims;
use crate::params::has_scope;
use crate::state::AppState;
use crate::token::form;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

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
    // One read for both the contact claims and linked_connectors.
    let identities = state
        .store
        .list_identities(&live.user.id)
        .await
        .map_err(OAuthError::store)?;
    crate::contact::of(&live.user, &identities).claims(&live.claims.scope, &mut out);
    out.insert(
        "linked_connectors".into(),
        crate::issue::linked_connectors(&identities).into(),
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}
