//! OpenID Provider metadata (OpenID Connect Discovery 1.0 / RFC 8414) and the
//! JWKS. Health endpoints are in [`crate::health`].

use crate::issue::alg_names;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub async fn configuration(state: web::Data<AppState>) -> HttpResponse {
    let iss = &state.issuer;
    let algs = alg_names(&state.keys.algorithms);
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if crate::exchange::offered(&state) {
        grant_types.push(crate::exchange::GRANT_TYPE);
    }
    let mut meta = serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "jwks_uri": format!("{iss}/jwks"),
            "revocation_endpoint": format!("{iss}/revoke"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "end_session_endpoint": format!("{iss}/logout"),
            "pushed_authorization_request_endpoint": format!("{iss}/par"),
            "require_pushed_authorization_requests": false,
            "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": grant_types,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "userinfo_signing_alg_values_supported": [],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "sid", "name", "picture", "locale", "updated_at", "email", "email_verified", "phone_number", "phone_number_verified", "linked_connectors"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "require_request_uri_registration": false,
            "authorization_response_iss_parameter_supported": true,
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "ui_locales_supported": ["zh-CN", "en"],
            "claim_types_supported": ["normal"],
    });
    if state.registration.enabled() {
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "registration_endpoint".into(),
                format!("{iss}{}", crate::registration::PATH).into(),
            );
        }
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(meta)
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .body(state.keys.set().jwks().to_string())
}
