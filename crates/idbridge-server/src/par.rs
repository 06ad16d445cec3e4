//! POST /par: pushed authorization requests (RFC 9126). An app sends its
//! authorization request on the back channel, authenticated like at `/token`,
//! and gets a `request_uri` to send the browser to `/authorize` with, instead of
//! the parameters: they never pass through the browser (nothing to tamper with,
//! nothing in the address bar or the logs of proxies on the way), and a bad
//! request is refused to the app in JSON before any person is involved.
//!
//! - The request is checked by the same function `/authorize` uses
//!   ([`crate::login::parse::parse`]); what needs the broker's state
//!   (`connector`, `id_token_hint`, the SSO session) is checked when it is used.
//! - It is kept in the authorization requests table under the SHA-256 of its
//!   `request_uri` (so the store holds no usable value) for [`PUSHED_TTL_SECS`],
//!   and used once: `/authorize` takes it ([`take`]) and a second use, an
//!   expired one or one pushed by another client gets a page saying to start
//!   again from the app.
//! - A client with `require_pushed_authorization_requests = true` must use it:
//!   a plain authorization request is refused with `invalid_request`.

use crate::error::OAuthError;
use crate::login::parse::{self, Refusal};
use crate::state::AppState;
use crate::token::form;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use idbridge_store::AuthRequestRow;
use idbridge_tokens::{hash_token, random_token};
use std::collections::BTreeMap;

/// RFC 9126 §2.2: the `request_uri` is a URN under this prefix.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request can be used (RFC 9126's example uses 60 s: the
/// browser is sent to `/authorize` at once).
pub const PUSHED_TTL_SECS: i64 = 60;

/// What the store keeps: the stored row's id, and its payload's one key.
fn row_id(request_uri: &str) -> String {
    format!("par.{}", hash_token(request_uri))
}
const PAYLOAD_KEY: &str = "pushed";

/// Parameters that authenticate the client: checked at the push, never kept.
const CREDENTIALS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// POST /par.
pub async fn push(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    crate::token::limited(&state, &req, push_inner(&state, &req, &body)).await
}

async fn push_inner(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, OAuthError> {
    let mut params = form(body)?;
    let client = state.clients.authenticate(req, &params).await?;
    let refuse = |error: OAuthError| {
        tracing::warn!(stage = "par", client_id = %client.id, error = error.error, description = %error.description, "pushed authorization request refused");
        Err(error)
    };
    if params.contains_key("request_uri") {
        return refuse(OAuthError::invalid_request(
            "request_uri cannot be pushed: push the authorization request's parameters themselves",
        ));
    }
    if params.contains_key("request") {
        return refuse(OAuthError::with_code(
            StatusCode::BAD_REQUEST,
            "request_not_supported",
            "request objects (JAR) are not supported: push the parameters as a form",
        ));
    }
    for name in CREDENTIALS {
        params.remove(name);
    }
    // With Basic authentication the form may omit client_id; /authorize needs it.
    params.insert("client_id".to_owned(), client.id.clone());
    match parse::parse(&params, None, &client) {
        Ok(_) => {}
        Err(Refusal::BadRedirect) => {
            return refuse(OAuthError::invalid_request(
                "redirect_uri is missing or not registered for this client",
            ))
        }
        Err(Refusal::ToApp(e)) => {
            return refuse(OAuthError::with_code(
                StatusCode::BAD_REQUEST,
                e.error,
                e.description,
            ))
        }
    }
    let secret =
        random_token(32).map_err(|_| OAuthError::server_error("random generator failure"))?;
    let request_uri = format!("{REQUEST_URI_PREFIX}{secret}");
    let now = state.now();
    let row = AuthRequestRow {
        id: row_id(&request_uri),
        client_id: client.id.clone(),
        payload: serde_json::json!({ PAYLOAD_KEY: params }),
        created_at: now,
        expires_at: now + PUSHED_TTL_SECS,
    };
    state
        .store
        .insert_auth_request(row)
        .await
        .map_err(OAuthError::store)?;
    tracing::info!(stage = "par", client_id = %client.id, expires_in = PUSHED_TTL_SECS, "authorization request pushed");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "request_uri": request_uri,
            "expires_in": PUSHED_TTL_SECS,
        })))
}

/// Why a `request_uri` at `/authorize` cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Unknown, already used or expired (the three look the same by design).
    Gone,
    /// Pushed by another client than the one `/authorize` names.
    OtherClient,
}

/// `/authorize` with `request_uri`: the pushed parameters, used once.
pub async fn take(
    state: &AppState,
    request_uri: &str,
    client_id: &str,
) -> Result<Result<BTreeMap<String, String>, Unusable>, idbridge_store::StoreError> {
    if !request_uri.starts_with(REQUEST_URI_PREFIX) {
        return Ok(Err(Unusable::Gone));
    }
    let Some(row) = state
        .store
        .take_auth_request(&row_id(request_uri), state.now())
        .await?
    else {
        return Ok(Err(Unusable::Gone));
    };
    if row.client_id != client_id {
        return Ok(Err(Unusable::OtherClient));
    }
    let params = serde_json::from_value(row.payload[PAYLOAD_KEY].clone()).unwrap_or_default();
    Ok(Ok(params))
}
