//! Whether an access token the broker issued is live: signed by the broker
//! (RFC 9068 `at+jwt`), its grant (refresh-token family) live, its user enabled.
//! What userinfo and introspection accept.

use crate::error::OAuthError;
use crate::issue::AccessClaims;
use crate::state::AppState;
use idbridge_store::{FamilyRow, User};
use idbridge_tokens::Expect;

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
