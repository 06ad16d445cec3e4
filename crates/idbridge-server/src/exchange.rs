//! The token-exchange grant (RFC 8693) at the token endpoint: a native app trades
//! a token it got from an upstream provider's SDK (e.g. a WeChat SDK code) for the
//! broker's tokens. The connector that accepts the token's `subject_token_type`
//! turns it into an identity; the account is resolved exactly like a browser
//! login's (identity, link key, the connector's `first_login` policy), in one
//! transaction with the grant the tokens belong to. No SSO session is opened.

use crate::audit::{Denied, EmailOutcome, Event, LoginVia, SignedInBy};
use crate::clients::Client;
use crate::email_link::{self, Origin};
use crate::error::OAuthError;
use crate::issue::{self, Issued, TokenRequest};
use crate::params::granted_scope;
use crate::state::{AppState, ConnectorEntry};
use crate::upstream::{new_login, record_connector_failure};
use actix_web::HttpRequest;
use idbridge_core::{ConnectorError, ErrorKind};
use idbridge_store::{CompleteExchange, LoginCompletion, LoginResolution, VerifiedPhone};
use idbridge_tokens::random_token;
use std::collections::BTreeMap;

/// `grant_type` of RFC 8693 token exchange.
pub const GRANT_TYPE: &str = crate::params::TOKEN_EXCHANGE_GRANT_TYPE;
/// The only token type the broker issues by exchange (`issued_token_type`).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Whether any configured connector accepts a subject token (discovery lists the
/// grant only then).
pub fn offered(state: &AppState) -> bool {
    state
        .connectors
        .iter()
        .any(|(_, c)| !c.connector.subject_token_types().is_empty())
}

/// May this client exchange tokens through this connector? A confidential client
/// may use every connector it may use at all (its `connectors` list, empty = all).
/// A public client (a native app without a secret) only those its `connectors`
/// list names explicitly: its client_id is no secret, so the operator opts in.
pub fn client_may_exchange(client: &Client, connector_id: &str) -> bool {
    if client.is_public() {
        client.connectors.iter().any(|c| c == connector_id)
    } else {
        client.may_use_connector(connector_id)
    }
}

/// The token request's parameters a connector may read as documented
/// extensions (`ExchangeRequest::params`): all but the grant's own and the
/// app's credentials.
fn extension_params(form: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const OWN: [&str; 13] = [
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "scope",
        "audience",
        "resource",
        "requested_token_type",
    ];
    form.iter()
        .filter(|(k, _)| !OWN.contains(&k.as_str()) && k.as_str() != "connector")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, for an
/// authenticated client.
pub async fn token_exchange(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    form: &BTreeMap<String, String>,
) -> Result<Issued, OAuthError> {
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if param("actor_token").is_some() || param("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not supported (no delegation): exchange a subject_token alone",
        ));
    }
    if param("resource").is_some() {
        return Err(OAuthError::invalid_target(
            "resource is not supported: the tokens are for the client itself",
        ));
    }
    if param("audience").is_some_and(|a| a != client.id) {
        return Err(OAuthError::invalid_target(
            "audience must be omitted or be the client's own client_id",
        ));
    }
    if param("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type must be omitted or be {ACCESS_TOKEN_TYPE}"
        )));
    }
    let subject_token = param("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let token_type = param("subject_token_type")
        .ok_or_else(|| OAuthError::invalid_request("subject_token_type is required"))?;
    let scope = granted_scope(param("scope").unwrap_or("openid"))
        .ok_or_else(|| OAuthError::invalid_scope("the openid scope is required"))?;
    let (connector_id, entry) = choose_connector(state, client, token_type, param("connector"))?;

    let ctx = crate::http::request_context(state, req, crate::http::fallback_locale(req));
    crate::telemetry::sign_in_started(
        state.connector_label(connector_id),
        LoginVia::TokenExchange.as_str(),
    );
    let request = idbridge_core::ExchangeRequest::new(subject_token, token_type)
        .with_params(extension_params(form));
    let exchanged = entry.connector.exchange(&ctx, &request).await;
    // Every connector's answer passes the same check (idbridge_core::ExternalIdentity::screened).
    let identity = match exchanged.and_then(|i| i.screened(idbridge_core::Stage::Exchange)) {
        Ok(identity) => identity,
        Err(e) => {
            record_connector_failure(state, &client.id, connector_id, &e, LoginVia::TokenExchange)
                .await;
            return Err(exchange_error(connector_id, &e));
        }
    };
    state.upstream.succeeded(connector_id);
    // The app's turn at local work, now that the upstream has answered (crate::fair).
    let _turn = state.fair.enter(&client.id).await?;

    let now = state.now();
    let new_user_id = random_token(16).map_err(OAuthError::token)?;
    let family = issue::exchange_family(state, &client.id, &scope, connector_id)?;
    let family_id = family.id.clone();
    let (refresh_token, refresh_hash) = if client.gets_refresh_token(&scope) {
        let (token, hash) = issue::new_refresh_token()?;
        (Some(token), Some(hash))
    } else {
        (None, None)
    };
    let login = new_login(state, connector_id, &identity);
    let origin = Origin {
        client_id: &client.id,
        connector_id,
        via: LoginVia::TokenExchange,
    };
    let email_link_audit = email_link::link_audit_row(&login, origin, now, state.proxies.of(req));
    // A number the upstream verified (WeChat's getPhoneNumber) becomes the
    // account's verified phone, as a one-time code would make it.
    let verified_phone = (entry.connector.vouches_for_phone()
        && identity.profile.phone_number_verified == Some(true))
    .then(|| identity.profile.phone_number.clone())
    .flatten();
    // Account, grant, first refresh token and audit event: one transaction, so a
    // failure leaves nothing half-written.
    let completion = state
        .store
        .complete_exchange(
            CompleteExchange {
                login: login.clone(),
                policy: entry.first_login.store_policy(),
                new_user_id,
                family,
                refresh_token_hash: refresh_hash,
                audit: Event::SignedIn {
                    user_id: None,
                    client_id: &client.id,
                    connector_id,
                    by: SignedInBy::TokenExchange,
                }
                .row(now, state.proxies.of(req)),
                require_phone: client.require_phone,
                email_link_audit,
                verified_phone: verified_phone.clone().map(|number| VerifiedPhone {
                    number,
                    audit: Event::PhoneVerified {
                        user_id: "",
                        client_id: &client.id,
                    }
                    .row(now, state.proxies.of(req)),
                }),
                // No page to ask on: a third-party app needs the person's
                // consent from a browser sign-in first.
                consent: (!client.skip_consent).then(|| idbridge_store::ConsentCheck {
                    scope: scope.clone(),
                    always: false,
                }),
            },
            now,
        )
        .await
        .map_err(|e| {
            tracing::error!(event = "login_failed", via = "token_exchange", stage = "account", connector = %connector_id, client_id = %client.id, error = %e, "cannot complete the token exchange");
            OAuthError::store(e)
        })?;
    if let (Some(phone), LoginCompletion::SignedIn { user, .. }) = (&verified_phone, &completion) {
        if user.phone_number.as_deref() != Some(phone.as_str()) {
            tracing::warn!(event = "phone_not_recorded", via = "token_exchange", connector = %connector_id, client_id = %client.id, user_id = %user.id, reason = "phone_taken", fix = "the number the upstream verified is another broker account's verified phone: the person signs in to that account, or an operator resolves the two accounts (idbridge admin find)", "the verified phone number was not recorded on this account");
        }
    }
    let user = match completion {
        LoginCompletion::SignedIn {
            user,
            needs_phone: true,
            ..
        } => {
            // A connector that verifies numbers itself brings one with the
            // exchange; otherwise only a browser sign-in's phone step can.
            let (fix, description) = if entry.connector.vouches_for_phone() {
                (
                    "this client has require_phone: send the getPhoneNumber button's code as wechat_phone_code with the exchange",
                    "this application needs a verified phone number: send the code of the getPhoneNumber button as wechat_phone_code",
                )
            } else {
                (
                    "this client has require_phone: the person verifies a number once through a browser sign-in to it",
                    "this application needs a verified phone number: the person must sign in to it once in a browser and verify one",
                )
            };
            tracing::warn!(event = "login_failed", via = "token_exchange", stage = "account", connector = %connector_id, client_id = %client.id, user_id = %user.id, reason = "phone_required", fix, "no verified phone number");
            return Err(OAuthError::invalid_grant(description));
        }
        LoginCompletion::SignedIn {
            user,
            needs_consent: true,
            ..
        } => {
            tracing::warn!(event = "login_failed", via = "token_exchange", stage = "consent", connector = %connector_id, client_id = %client.id, user_id = %user.id, reason = "consent_required", fix = "the person allows this app once through a browser sign-in to it, or the operator marks it skip_consent (a first-party app)", "the person has not allowed this application the requested scopes");
            return Err(OAuthError::invalid_grant(
                "the person has not allowed this application the requested scopes: they must sign in to it once in a browser and allow it",
            ));
        }
        LoginCompletion::LinkConflict { owner } => {
            tracing::error!(event = "login_failed", via = "token_exchange", stage = "account", connector = %connector_id, owner = %owner, "unexpected link conflict in a token exchange");
            return Err(OAuthError::server_error(
                "the account could not be resolved",
            ));
        }
        LoginCompletion::SignedIn {
            user,
            resolution,
            email,
            ..
        } => {
            email_link::signed_in(state, email.as_ref(), &login, &user.id, origin).await;
            let how = match resolution {
                LoginResolution::Existing(_) => "existing",
                LoginResolution::Linked(_) => "linked",
                LoginResolution::LinkedByEmail(_) => "linked_by_email",
                _ => "created",
            };
            tracing::info!(event = "login", via = "token_exchange", connector = %connector_id, client_id = %client.id, user_id = %user.id, account = how, "signed in");
            crate::telemetry::sign_in_completed(
                state.connector_label(connector_id),
                LoginVia::TokenExchange.as_str(),
            );
            user
        }
        LoginCompletion::EmailHeld { owner } => {
            // Non-interactive: there is no page to prove the account on. The
            // upstream verified the address, so saying why is no enumeration.
            email_link::held(state, &login, &owner, origin, EmailOutcome::Refused).await;
            return Err(OAuthError::invalid_grant(format!(
                "this identity's verified email is an existing account's, and connector {connector_id:?} is not trusted to link accounts by email: the person signs in once in a browser and proves that account"
            )));
        }
        LoginCompletion::NotLinked => {
            tracing::warn!(event = "login_failed", via = "token_exchange", stage = "account", connector = %connector_id, client_id = %client.id, reason = "first_login_denied", fix = "this connector's first_login is \"deny\": link the identity to an account first", "no broker account for this identity");
            Event::LoginDenied {
                user_id: None,
                client_id: &client.id,
                connector_id,
                reason: Denied::NoAccount,
                via: LoginVia::TokenExchange,
            }
            .record(state)
            .await;
            return Err(OAuthError::invalid_grant(format!(
                "no broker account is linked to this identity, and connector {connector_id:?} does not create accounts (first_login = deny)"
            )));
        }
        LoginCompletion::Disabled(user) => {
            tracing::warn!(event = "login_failed", via = "token_exchange", stage = "account", connector = %connector_id, client_id = %client.id, user_id = %user.id, reason = "user_disabled", "the broker account is disabled");
            Event::LoginDenied {
                user_id: Some(&user.id),
                client_id: &client.id,
                connector_id,
                reason: Denied::Disabled,
                via: LoginVia::TokenExchange,
            }
            .record(state)
            .await;
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
    };
    // One read for both the linked_connectors claim and the contact claims.
    let identities = state
        .store
        .list_identities(&user.id)
        .await
        .map_err(OAuthError::store)?;
    let linked = issue::linked_connectors(&identities);
    let contact = crate::contact::of(&user, &identities);
    issue::sign_tokens(
        state,
        TokenRequest {
            client,
            user: &user,
            family_id: &family_id,
            scope: &scope,
            auth_time: now,
            sid: None,
            nonce: None,
            refresh_token,
            linked_connectors: linked,
            contact,
            id_token: true,
        },
    )
}

/// The connector for this token type: the one named by `connector=`, or the only
/// one this client may exchange through.
fn choose_connector<'a>(
    state: &'a AppState,
    client: &Client,
    token_type: &str,
    wanted: Option<&str>,
) -> Result<(&'a str, &'a ConnectorEntry), OAuthError> {
    let accepting: Vec<(&str, &ConnectorEntry)> = state
        .connectors
        .iter()
        .filter(|(_, c)| c.connector.subject_token_types().contains(&token_type))
        .map(|(id, c)| (id.as_str(), c))
        .collect();
    if accepting.is_empty() {
        let mut known: Vec<&str> = state
            .connectors
            .iter()
            .flat_map(|(_, c)| c.connector.subject_token_types().iter().copied())
            .collect();
        known.sort_unstable();
        known.dedup();
        return Err(OAuthError::invalid_request(if known.is_empty() {
            format!("subject_token_type {token_type:?} is not supported: no connector of this broker accepts token exchange")
        } else {
            format!(
                "subject_token_type {token_type:?} is not supported; supported: {}",
                known.join(", ")
            )
        }));
    }
    let not_allowed = |id: &str| {
        let how = if client.is_public() {
            "a public client must have the connector listed explicitly in its connectors"
        } else {
            "the connector is not in the client's connectors"
        };
        OAuthError::unauthorized_client(format!(
            "this client may not exchange tokens through connector {id:?} ({how})"
        ))
    };
    if let Some(wanted) = wanted {
        if state.connector(wanted).is_none() {
            return Err(OAuthError::invalid_request(format!(
                "there is no connector {wanted:?}"
            )));
        }
        let Some(&(id, entry)) = accepting.iter().find(|(a, _)| *a == wanted) else {
            return Err(OAuthError::invalid_request(format!(
                "connector {wanted:?} does not accept subject_token_type {token_type:?}"
            )));
        };
        if !client_may_exchange(client, id) {
            return Err(not_allowed(id));
        }
        return Ok((id, entry));
    }
    let allowed: Vec<(&str, &ConnectorEntry)> = accepting
        .iter()
        .copied()
        .filter(|(id, _)| client_may_exchange(client, id))
        .collect();
    match allowed.as_slice() {
        [one] => Ok(*one),
        [] => Err(match accepting.as_slice() {
            [(id, _)] => not_allowed(id),
            _ => OAuthError::unauthorized_client(format!(
                "this client may not exchange tokens of type {token_type:?} through any connector"
            )),
        }),
        several => Err(OAuthError::invalid_request(format!(
            "several connectors accept subject_token_type {token_type:?}: pass connector=<id>, one of {}",
            several
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The OAuth error an app receives for a failed upstream exchange. The subject
/// token is single use in general (a WeChat code is), so every description says to
/// get a new one. Details for the operator are in the log line, not here.
fn exchange_error(connector_id: &str, e: &ConnectorError) -> OAuthError {
    use ErrorKind as K;
    let upstream = e
        .upstream_code
        .as_deref()
        .map(|c| format!(", upstream code {c}"))
        .unwrap_or_default();
    let what = format!(
        "{connector_id} failed at {}: {}{upstream}",
        e.stage.as_str(),
        e.kind.as_str()
    );
    let description = match e.kind {
        K::InvalidCode | K::InvalidRequest => format!(
            "the subject_token is invalid or expired ({what}); get a new one and exchange it right away"
        ),
        K::CodeReused => format!(
            "the subject_token was already used ({what}); each one works once: get a new one"
        ),
        K::TokenVerificationFailed => format!(
            "the upstream's signed answer for this subject_token failed verification ({what}); get a new subject_token"
        ),
        K::NotAllowed | K::UserCancelled => format!(
            "this upstream identity may not sign in ({what}); e.g. a WeChat snapshot-mode (virtual) user must sign in with their full account"
        ),
        K::UpstreamUnavailable | K::Timeout | K::RateLimited | K::BadResponse => format!(
            "the upstream provider is not answering properly ({what}); retry shortly with a new subject_token"
        ),
        K::BadCredentials | K::Misconfigured | K::Unsupported => format!(
            "the broker's configuration of connector {connector_id:?} is wrong ({what}); its operator finds the fix in the broker's log"
        ),
    };
    OAuthError::for_connector_failure(e.kind, description)
}
