//! Minting what the broker hands out: authorization codes, ID tokens, access
//! tokens (RFC 9068 JWTs) and refresh tokens. Codes and refresh tokens are random
//! and stored only as hashes; JWTs are signed with the current key.

use crate::clients::Client;
use crate::error::OAuthError;
use crate::params::has_scope;
use crate::state::AppState;
use idbridge_store::{AuditEvent, CodeRow, FamilyRow, User};
use idbridge_tokens::{at_hash, hash_token, random_token, Algorithm};
use serde::{Deserialize, Serialize};

/// What an authorization code (and the grant it starts) carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub redirect_uri: String,
    pub scope: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub sid: String,
    pub connector_id: String,
}

/// Claims of an access token (RFC 9068).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    /// `{family id}.{random}`: opaque to apps; lets the broker revoke by grant.
    pub jti: String,
    pub scope: String,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AccessClaims {
    pub fn family_id(&self) -> &str {
        self.jti.split('.').next().unwrap_or("")
    }
}

pub struct Issued {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
}

/// A new authorization code and the row that stores it (by hash), not yet stored.
pub fn code_row(
    state: &AppState,
    client_id: &str,
    user_id: &str,
    grant: &Grant,
) -> Result<(String, CodeRow), OAuthError> {
    let now = state.now();
    let code = random_token(32).map_err(OAuthError::token)?;
    let payload = serde_json::to_value(grant).map_err(|_| OAuthError::server_error("grant"))?;
    let row = CodeRow {
        code_hash: hash_token(&code),
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        payload,
        created_at: now,
        expires_at: now + state.settings.tokens.code_ttl_secs,
        used_at: None,
        family_id: None,
    };
    Ok((code, row))
}

/// Store a new authorization code, with its audit event when given, and return it.
pub async fn new_code(
    state: &AppState,
    client_id: &str,
    user_id: &str,
    grant: &Grant,
    audit: Option<AuditEvent>,
) -> Result<String, OAuthError> {
    let (code, row) = code_row(state, client_id, user_id, grant)?;
    state
        .store
        .insert_code(row, audit)
        .await
        .map_err(OAuthError::store)?;
    Ok(code)
}

/// The refresh-token family `id` of a redeemed code (not yet stored), made at
/// `now` and good for `absolute_ttl` seconds.
pub fn family_row(
    id: String,
    client_id: &str,
    user_id: &str,
    grant: &Grant,
    now: i64,
    absolute_ttl: i64,
) -> FamilyRow {
    FamilyRow {
        id,
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        scope: grant.scope.clone(),
        sso_session_id: Some(grant.sid.clone()),
        payload: serde_json::json!({
            "auth_time": grant.auth_time,
            "connector_id": grant.connector_id,
        }),
        created_at: now,
        last_used_at: now,
        absolute_expires_at: now + absolute_ttl,
        revoked_at: None,
        revoked_reason: None,
    }
}

/// A new refresh-token family for a token exchange (not yet stored; the store
/// fills in the resolved user). It belongs to no SSO session.
pub fn exchange_family(
    state: &AppState,
    client_id: &str,
    scope: &str,
    connector_id: &str,
) -> Result<FamilyRow, OAuthError> {
    let now = state.now();
    Ok(FamilyRow {
        id: random_token(16).map_err(OAuthError::token)?,
        client_id: client_id.to_owned(),
        user_id: String::new(),
        scope: scope.to_owned(),
        sso_session_id: None,
        payload: serde_json::json!({
            "auth_time": now,
            "connector_id": connector_id,
            "grant": "token_exchange",
        }),
        created_at: now,
        last_used_at: now,
        absolute_expires_at: now + state.settings.tokens.refresh_absolute_ttl_secs,
        revoked_at: None,
        revoked_reason: None,
    })
}

pub struct TokenRequest<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub family_id: &'a str,
    pub scope: &'a str,
    pub auth_time: i64,
    pub sid: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub refresh_token: Option<String>,
    pub linked_connectors: Vec<String>,
    /// Email and phone, looked up as far as the scope needs them.
    pub contact: crate::contact::Contact,
    /// An ID token too, when the scope has `openid` (`false`: a refresh for a client
    /// with `id_token_on_refresh = false`).
    pub id_token: bool,
}

/// Sign the access token and (with `openid`) the ID token.
pub fn sign_tokens(state: &AppState, req: TokenRequest<'_>) -> Result<Issued, OAuthError> {
    let now = state.now();
    let keys = state.keys.set();
    let t = &state.settings.tokens;
    let access = AccessClaims {
        iss: state.issuer.clone(),
        sub: req.user.id.clone(),
        aud: req.client.id.clone(),
        client_id: req.client.id.clone(),
        exp: now + t.access_token_ttl_secs,
        iat: now,
        jti: format!(
            "{}.{}",
            req.family_id,
            random_token(12).map_err(OAuthError::token)?
        ),
        scope: req.scope.to_owned(),
        auth_time: req.auth_time,
        sid: req.sid.map(str::to_owned),
    };
    let access_token = keys
        .sign(state.access_token_alg, "at+jwt", &access)
        .map_err(OAuthError::token)?;
    let id_token = if req.id_token && has_scope(req.scope, "openid") {
        let alg = req.client.id_token_alg.unwrap_or(state.default_alg);
        let mut claims = serde_json::json!({
            "iss": state.issuer,
            "sub": req.user.id,
            "aud": req.client.id,
            "azp": req.client.id,
            "exp": now + t.id_token_ttl_secs,
            "iat": now,
            "auth_time": req.auth_time,
            "at_hash": at_hash(&access_token, alg),
            "linked_connectors": req.linked_connectors,
        });
        if let Some(obj) = claims.as_object_mut() {
            if let Some(nonce) = req.nonce {
                obj.insert("nonce".into(), nonce.into());
            }
            if let Some(sid) = req.sid {
                obj.insert("sid".into(), sid.into());
            }
            if has_scope(req.scope, "profile") {
                profile_claims(req.user, obj);
            }
            req.contact.claims(req.scope, obj);
        }
        Some(keys.sign(alg, "JWT", &claims).map_err(OAuthError::token)?)
    } else {
        None
    };
    Ok(Issued {
        access_token,
        id_token,
        refresh_token: req.refresh_token,
        expires_in: t.access_token_ttl_secs,
        scope: req.scope.to_owned(),
    })
}

pub fn profile_claims(user: &User, obj: &mut serde_json::Map<String, serde_json::Value>) {
    if let Some(name) = &user.name {
        obj.insert("name".into(), name.clone().into());
    }
    // Pictures are screened when they arrive; one stored before that rule is
    // held to it here too.
    if let Some(picture) = user
        .picture
        .as_deref()
        .and_then(|p| idbridge_core::Profile::safe_picture(p).ok())
    {
        obj.insert("picture".into(), picture.into());
    }
    if let Some(locale) = &user.locale {
        obj.insert("locale".into(), locale.clone().into());
    }
    obj.insert("updated_at".into(), user.updated_at.into());
}

/// A random refresh token and its stored hash: the first token of a grant.
pub fn new_refresh_token() -> Result<(String, String), OAuthError> {
    let token = random_token(32).map_err(OAuthError::token)?;
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// The refresh token that `token` rotates to, and its stored hash: an HMAC of
/// `token` under a key derived from the master key, shaped like
/// [`new_refresh_token`]'s. Every presentation of one token yields the same
/// successor, so a retry or a parallel refresh within the grace window gets the
/// successor the first one got (the store hands out no other), and only the
/// broker can compute it.
pub fn successor_refresh_token(state: &AppState, token: &str) -> (String, String) {
    let successor = state
        .master_key
        .mac_token(REFRESH_SUCCESSOR_PURPOSE, token.as_bytes());
    let hash = hash_token(&successor);
    (successor, hash)
}

/// The purpose the master key is derived for to compute refresh successors.
const REFRESH_SUCCESSOR_PURPOSE: &str = "refresh-successor";

/// Connector ids the user has identities with, for the `linked_connectors` claim.
pub fn linked_connectors(identities: &[idbridge_store::Identity]) -> Vec<String> {
    let mut ids: Vec<String> = identities.iter().map(|i| i.connector_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

pub fn alg_names(algs: &[Algorithm]) -> Vec<&'static str> {
    algs.iter().map(|a| a.as_str()).collect()
}

/// What the broker reads from an `id_token_hint` (OpenID Connect Core §3.1.2.1,
/// RP-Initiated Logout §2): the person and session an ID token it issued names.
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenHint {
    pub sub: String,
    /// A string (what the broker issues) or an array.
    #[serde(default)]
    pub aud: serde_json::Value,
    #[serde(default)]
    pub sid: Option<String>,
}

impl IdTokenHint {
    /// The single client the token was issued to, when `aud` is one string.
    pub fn client_id(&self) -> Option<&str> {
        self.aud.as_str()
    }
}

/// Verify `token` as an ID token this broker issued: signed with its keys, its
/// `iss`, typed `JWT`, and (when given) issued to `client_id`. An expired ID
/// token is still a fine hint, so `exp` is not enforced.
pub fn verify_id_token_hint(
    state: &AppState,
    token: &str,
    client_id: Option<&str>,
) -> Option<IdTokenHint> {
    let expect = idbridge_tokens::Expect {
        typ: "JWT",
        issuer: &state.issuer,
        audience: client_id,
        now: state.now(),
        leeway: i64::MAX / 4,
    };
    state.keys.set().verify(token, &expect).ok()
}
