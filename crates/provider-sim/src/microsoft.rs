//! Microsoft Entra ID (the v2.0 endpoints) as documented: every endpoint is
//! under a tenant (`/{tenant}/oauth2/v2.0/authorize`, `/token`,
//! `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/discovery/v2.0/keys`); `common` and `organizations` publish the
//! issuer template `{base}/{tenantid}/v2.0`, a tenant id (and `consumers`,
//! whose tenant is [`CONSUMERS_TENANT`]) its own issuer. ID tokens carry
//! `iss` = `{base}/{tid}/v2.0`, `tid`, `oid` (the person in their directory),
//! a pairwise `sub` (per application), `ver` 2.0. A person whose tenant the
//! authority does not serve gets Entra's AADSTS50020 page; token errors are
//! Entra's JSON (`error`, `error_description` starting `AADSTS…`,
//! `error_codes`, `trace_id`, `correlation_id`, `timestamp`).

use crate::oidc::{Alg, ClientSecret, Shape, SimClient, SimConfig, SimUser};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The tenant of personal Microsoft accounts.
pub const CONSUMERS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// An Entra ID fake with these applications and people.
pub fn config(clients: Vec<SimClient>, users: Vec<SimUser>) -> SimConfig {
    SimConfig {
        shape: Shape::Microsoft,
        alg: Alg::RS256,
        clients,
        users,
        port: 0,
    }
}

/// An application registration with a client secret.
pub fn client(id: &str, secret: &str, redirect_uri: &str) -> SimClient {
    SimClient {
        id: id.into(),
        secret: ClientSecret::Plain(secret.into()),
        redirect_uris: vec![redirect_uri.into()],
    }
}

/// A person of tenant `tid` with object id `oid`. `email` is what the tenant's
/// admin typed into the account: Entra does not verify it.
pub fn user(id: &str, tid: &str, oid: &str, name: &str, email: &str) -> SimUser {
    SimUser::new(
        id,
        json!({"tid": tid, "oid": oid, "name": name, "preferred_username": email, "email": email}),
    )
}

/// The authority base of the fake's `tenant` (what `authority_url` plus the
/// tenant make).
pub fn issuer_of(base: &str, tid: &str) -> String {
    format!("{base}/{tid}/v2.0")
}

pub(crate) fn discovery(base: &str, tenant: &str, alg: &str) -> Value {
    let issuer = match tenant {
        "common" | "organizations" => format!("{base}/{{tenantid}}/v2.0"),
        "consumers" => issuer_of(base, CONSUMERS_TENANT),
        t => issuer_of(base, t),
    };
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "preferred_username", "email", "oid", "tid", "ver"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    })
}

/// Whether the authority `tenant` serves a person of `user`'s tenant.
pub(crate) fn check_user_in_authority(tenant: &str, user: &SimUser) -> Result<(), String> {
    let tid = user.claims.get("tid").and_then(Value::as_str).unwrap_or("");
    let served = match tenant {
        "common" => true,
        "organizations" => tid != CONSUMERS_TENANT,
        "consumers" => tid == CONSUMERS_TENANT,
        t => t == tid,
    };
    if served {
        Ok(())
    } else {
        Err(format!("AADSTS50020: User account '{}' from identity provider does not exist in tenant '{tenant}' and cannot access the application in that tenant.", user.id))
    }
}

pub(crate) fn shape_claims(
    claims: &mut Map<String, Value>,
    base: &str,
    client_id: &str,
    user: &SimUser,
) {
    let tid = user.claims.get("tid").and_then(Value::as_str).unwrap_or("");
    let oid = user.claims.get("oid").and_then(Value::as_str).unwrap_or("");
    let pairwise = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{client_id}\0{oid}").as_bytes(),
    );
    claims.insert("iss".into(), Value::from(issuer_of(base, tid)));
    claims.insert(
        "sub".into(),
        Value::from(URL_SAFE_NO_PAD.encode(pairwise.as_ref())),
    );
    claims.insert("ver".into(), Value::from("2.0"));
}

pub(crate) fn error_body(code: &str, detail: &str, now: i64) -> Value {
    let (number, message) = match code {
        "invalid_client" => (7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app."),
        "invalid_grant" if detail.contains("already") => (54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."),
        "invalid_grant" if detail.contains("PKCE") => (501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request."),
        "invalid_grant" => (70008, "The provided authorization code or refresh token has expired due to inactivity."),
        "unsupported_grant_type" => (70003, "The app requested an unsupported grant type."),
        _ => (90014, "The request body must contain the required parameters."),
    };
    let trace = crate::oidc::random_id();
    json!({
        "error": code,
        "error_description": format!("AADSTS{number}: {message} Trace ID: {trace} Correlation ID: {trace} Timestamp: {now}"),
        "error_codes": [number],
        "timestamp": now.to_string(),
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={number}"),
    })
}
