//! The app's authorization request as the sign-in keeps it (in the store, under
//! the request id of `/login/{request}`) while the person signs in upstream, and
//! the typed `prompt` it carries.

use crate::http::accept_language;
use crate::pages::ErrorPage;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use idbridge_core::Locale;
use idbridge_store::NewLogin;
use serde::{Deserialize, Serialize};

/// What the app asked for, kept while the person signs in upstream. Stored as
/// JSON: its shape is what every instance reads, so fields only ever get added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The granted scope ([`crate::params::granted_scope`]).
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 PKCE challenge.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// A new upstream identity waiting for its owner to prove an existing account
    /// (its connector's `first_login = "bind"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingLink>,
    /// Set when this request links another sign-in method to this signed-in
    /// account (the account page), instead of signing in to an app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_to: Option<String>,
    /// `response_mode=form_post`: the response goes to the app as an
    /// auto-submitted POST form instead of a redirect with a query.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub form_post: bool,
}

impl AuthRequest {
    pub fn locale(&self, req: &HttpRequest) -> Locale {
        Locale::negotiate(self.ui_locales.as_deref(), accept_language(req))
    }

    /// The app's `ui_locales`, without a request at hand.
    pub fn locale_or_default(&self) -> Locale {
        Locale::negotiate(self.ui_locales.as_deref(), None)
    }
}

/// An identity that will be linked to whichever existing account the person proves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLink {
    pub login: NewLogin,
    /// The upstream flow it came from (its outcome follows the sign-in).
    pub flow_state: String,
    /// Only the browser that signed in upstream may finish it.
    pub browser_hash: String,
    /// Why it waits, when it is because its upstream-verified email is an
    /// account's (an untrusted connector: docs/accounts.md, "Linking by email").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_match: Option<EmailMatch>,
}

/// A waiting identity's address matched account `owner`'s link target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailMatch {
    /// As the upstream gave it: the person is shown their own address.
    pub email: String,
    /// Kept server-side for the audit log; never shown.
    pub owner: String,
    /// The connector's `first_login` is `create`: the person may choose an
    /// account of their own instead.
    pub may_create: bool,
}

/// One value of `prompt` (OpenID Connect Core §3.1.2.1): the type connectors
/// get in their `BeginRequest`.
pub use idbridge_core::Prompt as PromptValue;

/// The app's `prompt`, in the order it gave the values (stored as that list of
/// strings). `none` never comes with another value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Prompt(Vec<PromptValue>);

impl Prompt {
    /// `prompt=login`: a fresh sign-in, whatever the SSO session.
    pub fn login() -> Self {
        Prompt(vec![PromptValue::Login])
    }

    pub fn has(&self, value: PromptValue) -> bool {
        self.0.contains(&value)
    }

    pub fn iter(&self) -> impl Iterator<Item = PromptValue> + '_ {
        self.0.iter().copied()
    }
}

impl From<Vec<PromptValue>> for Prompt {
    fn from(values: Vec<PromptValue>) -> Self {
        Prompt(values)
    }
}

/// The stored request `id`, while it is live; `Ok(None)` once it expired or was
/// used. The page for a store failure is in `locale` (the browser's: the
/// request, and so the app's `ui_locales`, is not known yet).
pub async fn load_request(
    state: &AppState,
    id: &str,
    locale: Locale,
) -> Result<Option<AuthRequest>, ErrorPage> {
    match state.store.get_auth_request(id, state.now()).await {
        Ok(Some(row)) => Ok(serde_json::from_value(row.payload).ok()),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(stage = "authorize", error = %e, "cannot load the authorization request");
            Err(ErrorPage::new(
                locale,
                StatusCode::SERVICE_UNAVAILABLE,
                "db_down",
                "db_down_todo",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_stored_as_the_list_of_strings_it_always_was() {
        let p = Prompt::from(vec![PromptValue::Login, PromptValue::SelectAccount]);
        assert_eq!(
            serde_json::to_value(&p).ok(),
            Some(serde_json::json!(["login", "select_account"]))
        );
        let back: Option<Prompt> = serde_json::from_value(serde_json::json!(["consent"])).ok();
        assert_eq!(back, Some(Prompt::from(vec![PromptValue::Consent])));
        let empty: Option<Prompt> = serde_json::from_value(serde_json::json!([])).ok();
        assert_eq!(empty, Some(Prompt::default()));
    }
}
