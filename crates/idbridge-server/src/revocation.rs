//! POST /revoke (RFC 7009): a client revokes a refresh or access token it was
//! issued, and with it the whole grant (refresh-token family).

use crate::error::OAuthError;
use crate::issue::AccessClaims;
use crate::state::AppState;
use crate::token::form;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_tokens::{hash_token, Expect};

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
