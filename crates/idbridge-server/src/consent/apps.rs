//! "Apps you have allowed" on the account page: what each app was allowed and
//! since when, and Revoke, which deletes the consent and ends that app's grants
//! for this account (its refresh tokens fail; its next sign-in asks again).

use crate::audit::Event;
use crate::csrf;
use crate::http::{fallback_locale, found, see_other};
use crate::login::page_error::{PageError, PageResult};
use crate::sessions::current_session;
use crate::state::AppState;
use actix_web::{web, HttpRequest};
use idbridge_store::StoreError;

/// The CSRF purpose of the revoke forms.
pub const CSRF_PURPOSE: &str = "account-consents";

/// One allowed app, as the account page lists it.
pub struct AllowedApp {
    pub client_id: String,
    pub name: String,
    /// Text keys of what it gets ([`super::lines`]).
    pub lines: Vec<&'static str>,
    /// When it was first allowed (`2026-12-01`, UTC).
    pub since: String,
}

/// The apps `user_id` allowed; `date` formats unix seconds as the page does.
pub async fn allowed(
    state: &AppState,
    user_id: &str,
    date: fn(i64) -> String,
) -> Result<Vec<AllowedApp>, StoreError> {
    let consents = state.store.list_consents(user_id).await?;
    let mut apps = Vec::with_capacity(consents.len());
    for c in consents {
        let name = match state.clients.get(&c.client_id).await {
            Ok(Some(client)) => client.name.clone(),
            _ => c.client_id.clone(),
        };
        apps.push(AllowedApp {
            lines: super::lines(&c.scope),
            since: date(c.granted_at),
            name,
            client_id: c.client_id,
        });
    }
    Ok(apps)
}

/// POST /account/consents/revoke (`client_id`)
pub async fn revoke(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> PageResult {
    let locale = fallback_locale(&req);
    let f = csrf::checked_form(&req, &body, CSRF_PURPOSE).map_err(|e| e.page(&req, locale))?;
    let Some((_, user)) = current_session(&state, &req, state.now(), locale).await? else {
        return Ok(found(&state.endpoint("/account")));
    };
    let client_id = f.get("client_id").cloned().unwrap_or_default();
    let now = state.now();
    let (uid, cid, ip) = (user.id.clone(), client_id.clone(), state.proxies.of(&req));
    let revoked = state
        .store
        .revoke_consent(
            &user.id,
            &client_id,
            "consent_revoked",
            now,
            move |grants| {
                Event::ConsentRevoked {
                    user_id: &uid,
                    client_id: &cid,
                    grants_revoked: grants,
                }
                .row(now, ip)
            },
        )
        .await;
    let done = match revoked {
        Ok(Some(grants)) => {
            tracing::info!(event = "consent_revoked", user_id = %user.id, client_id = %client_id, grants_revoked = grants, "the person revoked an application's access on the account page");
            "revoked"
        }
        Ok(None) => "not_found",
        Err(e) => {
            tracing::error!(stage = "account", error = %e, "cannot revoke the consent");
            return Err(PageError::db_down(locale));
        }
    };
    Ok(see_other(&format!("/account?done={done}#apps")))
}
