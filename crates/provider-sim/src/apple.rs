//! Sign in with Apple as documented: `/auth/authorize`, `/auth/token`,
//! `/auth/keys`, `/.well-known/openid-configuration`. Asking for `name` or
//! `email` requires `response_mode=form_post`; the callback POSTs `code`,
//! `state` and, on the person's first authorization of the app only, `user`
//! (JSON with `name.firstName`, `name.lastName`, `email`). ID tokens never
//! hold the name; `email_verified` and `is_private_email` are the strings
//! `"true"`/`"false"`. The token endpoint takes `client_id` and a
//! `client_secret` that must be an ES256 JWT (`kid` the key id, `iss` the
//! team id, `sub` the client id, `aud` `https://appleid.apple.com`, `exp` at
//! most six months after `iat`, not expired), checked with the public key of
//! the `.p8` key the test made ([`AppleKey`]). Errors are Apple's bare
//! `{"error": "invalid_client"}`, `{"error": "invalid_grant"}`.

use crate::oidc::{p256_pem, Alg, ClientSecret, Shape, SimClient, SimConfig, SimUser};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

/// The audience of Apple's client secrets.
pub const AUDIENCE: &str = "https://appleid.apple.com";
/// The longest lifetime Apple accepts for a client secret (six months).
pub const MAX_SECRET_LIFETIME: i64 = 15_777_000;

/// A Sign in with Apple key as downloaded from the developer account: the
/// `.p8` PEM, its key id and the team's id; `x`/`y` its public point.
#[derive(Debug, Clone)]
pub struct AppleKey {
    pub pem: String,
    pub key_id: String,
    pub team_id: String,
    pub x: String,
    pub y: String,
}

impl AppleKey {
    pub fn generate(team_id: &str, key_id: &str) -> Result<AppleKey, String> {
        let (pem, x, y) = p256_pem()?;
        Ok(AppleKey {
            pem,
            key_id: key_id.into(),
            team_id: team_id.into(),
            x,
            y,
        })
    }
}

pub fn config(clients: Vec<SimClient>, users: Vec<SimUser>) -> SimConfig {
    SimConfig {
        shape: Shape::Apple,
        alg: Alg::RS256,
        clients,
        users,
        port: 0,
    }
}

/// A Services ID whose secrets are JWTs signed with `key`.
pub fn client(services_id: &str, key: &AppleKey, redirect_uri: &str) -> SimClient {
    SimClient {
        id: services_id.into(),
        secret: ClientSecret::AppleJwt {
            team_id: key.team_id.clone(),
            key_id: key.key_id.clone(),
            x: key.x.clone(),
            y: key.y.clone(),
        },
        redirect_uris: vec![redirect_uri.into()],
    }
}

/// A person: `sub` is `id`; the name goes only into the first `user` field.
pub fn user(id: &str, email: &str, private_relay: bool, first: &str, last: &str) -> SimUser {
    SimUser::new(
        id,
        json!({
            "email": email,
            "email_verified": "true",
            "is_private_email": if private_relay { "true" } else { "false" },
            "real_user_status": 2,
            "given_name": first,
            "family_name": last,
        }),
    )
}

pub(crate) fn discovery(base: &str, alg: &str) -> Value {
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": format!("{base}/auth/token"),
        "revocation_endpoint": format!("{base}/auth/revoke"),
        "jwks_uri": format!("{base}/auth/keys"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [alg],
        "scopes_supported": ["openid", "email", "name"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "is_private_email", "iss", "nonce", "nonce_supported", "real_user_status", "sub", "transfer_sub"],
    })
}

fn wants_name_or_email(scope: &str) -> (bool, bool) {
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    (has("name"), has("email"))
}

pub(crate) fn check_authorize(scope: &str, form_post: bool) -> Result<(), String> {
    let (name, email) = wants_name_or_email(scope);
    if (name || email) && !form_post {
        return Err(
            "response_mode must be form_post when name or email scope is requested.".into(),
        );
    }
    Ok(())
}

pub(crate) fn user_field(scope: &str, user: &SimUser) -> Option<String> {
    let (name, email) = wants_name_or_email(scope);
    if !name && !email {
        return None;
    }
    let text = |k: &str| user.claims.get(k).cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    if name {
        out.insert(
            "name".into(),
            json!({"firstName": text("given_name"), "lastName": text("family_name")}),
        );
    }
    if email {
        out.insert("email".into(), text("email"));
    }
    Some(Value::Object(out).to_string())
}

pub(crate) fn shape_claims(claims: &mut Map<String, Value>) {
    for k in ["name", "given_name", "family_name"] {
        claims.remove(k);
    }
    claims.insert("nonce_supported".into(), Value::from(true));
}

pub(crate) fn error_body(code: &str) -> Value {
    json!({ "error": code })
}

/// Check a client secret JWT the way Apple does; `Err`: why it is refused.
pub fn check_client_secret(
    expected: &ClientSecret,
    client_id: &str,
    jwt: &str,
    now: i64,
) -> Result<(), String> {
    let ClientSecret::AppleJwt {
        team_id,
        key_id,
        x,
        y,
    } = expected
    else {
        return Err("not an Apple client".into());
    };
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    if header.alg != Algorithm::ES256 {
        return Err("not ES256".into());
    }
    if header.kid.as_deref() != Some(key_id.as_str()) {
        return Err("unknown kid".into());
    }
    let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[team_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_required_spec_claims(&["iss", "sub", "aud", "exp"]);
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation).map_err(|e| e.to_string())?;
    let iat = data
        .claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("no iat")?;
    let exp = data
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("no exp")?;
    if exp <= now {
        return Err("expired".into());
    }
    if iat > now + 60 || exp - iat > MAX_SECRET_LIFETIME {
        return Err("iat in the future or lifetime over six months".into());
    }
    Ok(())
}
