//! The token endpoint: client authentication, then one function per grant
//! (authorization_code, refresh_token; token exchange lives in
//! [`crate::exchange`]). Every response is `no-store`.

use crate::error::OAuthError;
use crate::issue::{self, Grant, Issued, TokenRequest};
use crate::limits::Refused;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_store::{Redeem, Redeemed, RefreshOutcome};
use idbridge_tokens::{hash_token, pkce_s256_matches, pkce_verifier_is_valid};
use std::collections::BTreeMap;

pub fn form(body: &[u8]) -> Result<BTreeMap<String, String>, OAuthError> {
    crate::params::parse(&String::from_utf8_lossy(body))
        .map_err(|r| OAuthError::invalid_request(r.to_string()))
}

/// Run a back-channel handler under the per-IP failure limit: refused with 429
/// once an address has failed too often; bad credentials, codes and tokens count.
pub async fn limited<F>(
    state: &AppState,
    req: &HttpRequest,
    work: F,
) -> Result<HttpResponse, OAuthError>
where
    F: std::future::Future<Output = Result<HttpResponse, OAuthError>>,
{
    let ip = state.proxies.of(req);
    match state.failures.check(ip, state.now_ms()).await {
        Ok(()) => {}
        Err(Refused::Limited) => {
            tracing::warn!(stage = "rate_limit", ip = ?ip, path = req.path(), "too many failed requests from this address");
            return Err(OAuthError::slow_down(
                "too many failed requests from this address; wait a minute",
            ));
        }
        Err(Refused::Store(e)) => return Err(OAuthError::store(e)),
    }
    let result = work.await;
    if let Err(e) = &result {
        if matches!(e.error, "invalid_client" | "invalid_grant") {
            state.failures.failed(ip, state.now_ms()).await;
        }
    }
    result
}

/// POST /token
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    limited(&state, &req, token_inner(&state, &req, &body)).await
}

async fn token_inner(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, OAuthError> {
    let form = form(body).inspect_err(|e| crate::telemetry::token_grant(None, Err(e.error)))?;
    let result = grant(state, req, &form).await;
    crate::telemetry::token_grant(
        form.get("grant_type").map(String::as_str),
        result.as_ref().map(|_| ()).map_err(|e| e.error),
    );
    result
}

/// One grant, for an authenticated client.
async fn grant(
    state: &AppState,
    req: &HttpRequest,
    form: &BTreeMap<String, String>,
) -> Result<HttpResponse, OAuthError> {
    let client = state.clients.authenticate(req, form).await?;
    crate::telemetry::spans::client_id(&client.id);
    let issued = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let _turn = state.fair.enter(&client.id).await?;
            authorization_code(state, &client, form).await?
        }
        Some("refresh_token") => {
            let _turn = state.fair.enter(&client.id).await?;
            refresh_token(state, &client, form).await?
        }
        Some(crate::exchange::GRANT_TYPE) => {
            let issued = crate::exchange::token_exchange(state, req, &client, form).await?;
            return Ok(token_response(
                issued,
                Some(crate::exchange::ACCESS_TOKEN_TYPE),
            ));
        }
        Some(other) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {other:?} is not supported"
            )))
        }
        None => return Err(OAuthError::invalid_request("grant_type is required")),
    };
    Ok(token_response(issued, None))
}

/// The token response; `issued_token_type` for RFC 8693 token exchange.
fn token_response(issued: Issued, issued_token_type: Option<&str>) -> HttpResponse {
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(t) = issued_token_type {
            obj.insert("issued_token_type".into(), t.into());
        }
        if let Some(id) = issued.id_token {
            obj.insert("id_token".into(), id.into());
        }
        if let Some(rt) = issued.refresh_token {
            obj.insert("refresh_token".into(), rt.into());
        }
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

async fn authorization_code(
    state: &AppState,
    client: &crate::clients::Client,
    form: &BTreeMap<String, String>,
) -> Result<Issued, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let code_hash = hash_token(code);
    let now = state.now();
    // The family's id and a refresh token are drawn before the store call; the
    // checks run inside the redeeming transaction (one store call per code).
    let family_id = idbridge_tokens::random_token(16).map_err(OAuthError::token)?;
    let (refresh, refresh_hash) = issue::new_refresh_token()?;
    let check = CodeCheck {
        client: client.clone(),
        redirect_uri: form.get("redirect_uri").cloned(),
        code_verifier: form.get("code_verifier").cloned(),
        now,
        family_id: family_id.clone(),
        absolute_ttl: state.settings.tokens.refresh_absolute_ttl_secs,
        refresh_hash,
    };
    let redeemed = state
        .store
        .redeem_code_checked(&code_hash, now, move |row| check.accept(row))
        .await
        .map_err(OAuthError::store)?;
    let used = match redeemed {
        Ok(Some((Redeem::Won(redeemed), accepted))) => Ok((redeemed, accepted)),
        // Redeemed before (a replay, or another instance won the race just now).
        Ok(Some((Redeem::AlreadyUsed(used), _))) => Err(Some(used)),
        Err(CodeRefused::Replayed(used)) => Err(Some(*used)),
        Ok(None | Some((Redeem::Unknown, _))) => Err(None),
        Err(CodeRefused::Error(e)) => return Err(e),
    };
    let (
        redeemed,
        Accepted {
            grant,
            gets_refresh_token,
        },
    ) = match used {
        Ok(won) => won,
        Err(used) => {
            if let Some((f, used)) = used
                .as_ref()
                .and_then(|u| Some((u.family_id.as_deref()?, u)))
            {
                revoke_replayed(state, f, used, now).await;
            }
            return Err(OAuthError::invalid_grant(
                "the code is invalid, expired or already used",
            ));
        }
    };
    let refresh = gets_refresh_token.then_some(refresh);
    // The user and their linked connectors come from the redeeming transaction.
    let Redeemed {
        user,
        linked_connectors: linked,
        ..
    } = *redeemed;
    let user = user
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| OAuthError::invalid_grant("the account is disabled"))?;
    let contact = crate::contact::lookup(state, &user, &grant.scope).await?;
    issue::sign_tokens(
        state,
        TokenRequest {
            client,
            user: &user,
            family_id: &family_id,
            scope: &grant.scope,
            auth_time: grant.auth_time,
            sid: Some(&grant.sid),
            nonce: grant.nonce.as_deref(),
            refresh_token: refresh,
            linked_connectors: linked,
            contact,
            id_token: true,
        },
    )
}

/// Why a code was not redeemed, decided inside the redeeming transaction.
enum CodeRefused {
    /// The answer to the app.
    Error(OAuthError),
    /// The code was redeemed before: the grant made from it is revoked.
    Replayed(Box<idbridge_store::CodeRow>),
}

/// What a code that passed its checks grants.
struct Accepted {
    grant: Grant,
    /// The app gets a refresh token (offline_access, or the client's setting).
    gets_refresh_token: bool,
}

/// What the token request says about the code it presents.
struct CodeCheck {
    client: crate::clients::Client,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    now: i64,
    family_id: String,
    absolute_ttl: i64,
    refresh_hash: String,
}

impl CodeCheck {
    /// The code's checks in the order they always ran; on success the family to
    /// redeem it with, its first refresh token's hash when the app gets one, and
    /// the grant with whether it gets one.
    fn accept(
        self,
        row: &idbridge_store::CodeRow,
    ) -> Result<(idbridge_store::FamilyRow, Option<String>, Accepted), CodeRefused> {
        let refuse = |description: &str| CodeRefused::Error(OAuthError::invalid_grant(description));
        if row.client_id != self.client.id {
            tracing::warn!(stage = "token", client_id = %self.client.id, "code presented by a client it was not issued to");
            return Err(refuse("the code is invalid, expired or already used"));
        }
        if row.used_at.is_some() {
            return match row.family_id {
                Some(_) => Err(CodeRefused::Replayed(Box::new(row.clone()))),
                None => Err(refuse("the code is invalid, expired or already used")),
            };
        }
        if row.expires_at <= self.now {
            return Err(refuse("the code is invalid, expired or already used"));
        }
        let grant: Grant = serde_json::from_value(row.payload.clone()).map_err(|_| {
            CodeRefused::Error(OAuthError::server_error("stored code is unreadable"))
        })?;
        if self.redirect_uri.as_ref() != Some(&grant.redirect_uri) {
            return Err(refuse(
                "redirect_uri must be the one used in the authorization request",
            ));
        }
        match (&grant.code_challenge, &self.code_verifier) {
            (Some(challenge), Some(verifier)) => {
                if !pkce_verifier_is_valid(verifier) || !pkce_s256_matches(verifier, challenge) {
                    return Err(refuse("code_verifier does not match the code_challenge"));
                }
            }
            (Some(_), None) => return Err(refuse("code_verifier is required")),
            (None, Some(_)) => {
                return Err(refuse(
                    "code_verifier sent but the authorization request had no code_challenge",
                ))
            }
            (None, None) => {}
        }
        // The family always exists (access tokens are revoked by it); a refresh
        // token only when the app asked for offline_access (OpenID Connect Core §11).
        let family = issue::family_row(
            self.family_id,
            &self.client.id,
            &row.user_id,
            &grant,
            self.now,
            self.absolute_ttl,
        );
        let gets_refresh_token = self.client.gets_refresh_token(&grant.scope);
        let refresh_hash = gets_refresh_token.then_some(self.refresh_hash);
        Ok((
            family,
            refresh_hash,
            Accepted {
                grant,
                gets_refresh_token,
            },
        ))
    }
}

/// A used code came back: revoke the grant made from it, and record whose it was.
async fn revoke_replayed(state: &AppState, family: &str, code: &idbridge_store::CodeRow, now: i64) {
    match state
        .store
        .revoke_family(family, "code_replayed", now)
        .await
    {
        Ok(true) => {
            tracing::warn!(
                stage = "token",
                family,
                "authorization code replayed; every token issued from it is revoked"
            );
            crate::audit::Event::CodeReplayed {
                user_id: &code.user_id,
                client_id: &code.client_id,
                family,
            }
            .record(state)
            .await;
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(stage = "token", error = %e, "cannot revoke the family of a replayed code")
        }
    }
}

async fn refresh_token(
    state: &AppState,
    client: &crate::clients::Client,
    form: &BTreeMap<String, String>,
) -> Result<Issued, OAuthError> {
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let hash = hash_token(token);
    let now = state.now();
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let asked: Option<Vec<String>> = form.get("scope").map(|s| {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    // Derived from the token: a retry within the grace window asks for the same one.
    // A refresh always rotates, whatever the family's scope: families made since
    // refresh tokens need offline_access carry it, and ones made before (without
    // it) keep working rather than break live grants on upgrade.
    let (new_token, new_hash) = issue::successor_refresh_token(state, token);
    let t = &state.settings.tokens;
    // A connector with `recheck_on_refresh` re-checks the person upstream first,
    // before anything rotates: an upstream outage then leaves the token usable.
    // Without such a connector, a refresh reads nothing more than before.
    let recheck = state.connectors.iter().any(|(_, c)| c.recheck_on_refresh);
    let to_recheck = if recheck {
        state
            .store
            .refreshable(
                &hash,
                &new_hash,
                &client.id,
                t.refresh_grace_secs,
                t.refresh_idle_ttl_secs,
                now,
            )
            .await
            .map_err(OAuthError::store)?
    } else {
        None
    };
    if let Some((_, family)) = to_recheck {
        crate::recheck::before_refresh(state, &client.id, &family).await?;
    }
    // One transaction: client binding, scope, user, rotation.
    let grant = match state
        .store
        .refresh_grant(
            &hash,
            &new_hash,
            &client.id,
            asked.clone(),
            t.refresh_grace_secs,
            t.refresh_idle_ttl_secs,
            now,
        )
        .await
        .map_err(OAuthError::store)?
    {
        RefreshOutcome::Rotated(g) => g,
        RefreshOutcome::Replayed(f) => {
            crate::telemetry::refresh_reuse_detected();
            tracing::warn!(stage = "token", client_id = %client.id, user_id = %f.user_id, family = %f.id, "rotated refresh token replayed; the whole family is revoked");
            crate::audit::Event::RefreshTokenReplayed {
                user_id: &f.user_id,
                client_id: &client.id,
                family: &f.id,
            }
            .record(state)
            .await;
            return Err(invalid());
        }
        RefreshOutcome::OtherSuccessor(f) => {
            tracing::warn!(stage = "token", client_id = %client.id, user_id = %f.user_id, family = %f.id, "refresh token reused within the grace window, but it was rotated to another successor than this broker computes (rotated before an upgrade, or the master key changed); refused, nothing issued");
            return Err(invalid());
        }
        RefreshOutcome::WrongClient => {
            tracing::warn!(stage = "token", client_id = %client.id, "refresh token presented by a client it was not issued to");
            return Err(invalid());
        }
        RefreshOutcome::ScopeWidened(extra) => {
            return Err(OAuthError::invalid_scope(format!(
                "scope {extra:?} was not granted; a refresh can only narrow the scope"
            )))
        }
        RefreshOutcome::UserDisabled => {
            return Err(OAuthError::invalid_grant("the account is disabled"))
        }
        RefreshOutcome::Revoked(_) | RefreshOutcome::Expired(_) | RefreshOutcome::Unknown => {
            return Err(invalid())
        }
    };
    let family = grant.family;
    let user = grant.user;
    let linked = grant.linked_connectors;
    let scope = match &asked {
        None => family.scope.clone(),
        Some(asked) => family
            .scope
            .split(' ')
            .filter(|s| asked.iter().any(|a| a == s))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let auth_time = family
        .payload
        .get("auth_time")
        .and_then(|v| v.as_i64())
        .unwrap_or(family.created_at);
    let contact = crate::contact::lookup(state, &user, &scope).await?;
    issue::sign_tokens(
        state,
        TokenRequest {
            client,
            user: &user,
            family_id: &family.id,
            scope: &scope,
            auth_time,
            sid: family.sso_session_id.as_deref(),
            nonce: None,
            refresh_token: Some(new_token),
            linked_connectors: linked,
            contact,
            id_token: client.id_token_on_refresh,
        },
    )
}
