//! Whether a sign-in stops at the consent page ([`crate::consent`]) before the
//! app gets its code: the app is not first-party (`skip_consent`) or asked
//! (`prompt=consent`), and the account has not allowed it every scope asked
//! for (or `prompt=consent`).

use super::request::{AuthRequest, PromptValue};
use crate::clients::Client;
use crate::state::AppState;
use idbridge_store::{ConsentCheck, StoreError};

/// What consent the request of `ar` to `client` needs: `None` when the client
/// is first-party and did not ask (`prompt=consent`).
pub fn check(client: &Client, ar: &AuthRequest) -> Option<ConsentCheck> {
    let always = ar.prompt.has(PromptValue::Consent);
    if client.skip_consent && !always {
        return None;
    }
    Some(ConsentCheck {
        scope: ar.scope.clone(),
        always,
    })
}

/// Whether `user_id` must be asked before `client` gets a code for `ar`.
pub async fn needed(
    state: &AppState,
    client: &Client,
    ar: &AuthRequest,
    user_id: &str,
) -> Result<bool, StoreError> {
    let Some(check) = check(client, ar) else {
        return Ok(false);
    };
    if check.always {
        return Ok(true);
    }
    let given = state.store.get_consent(user_id, &client.id).await?;
    Ok(check.needed(given.as_ref()))
}

/// The consent page of the stored request `request_id`.
pub fn url(state: &AppState, request_id: &str) -> String {
    state.endpoint(&format!("/login/{request_id}/consent"))
}
