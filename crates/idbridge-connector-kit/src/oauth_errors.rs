//! The OAuth 2.0 errors (RFC 6749) every OAuth or OpenID upstream answers,
//! mapped once to the broker's `ErrorKind`s with a fix for the operator: an
//! authorization response's `error` on the callback ([`authorization_error`])
//! and the token endpoint's ([`token_error`]). A connector with
//! provider-specific codes maps those first and falls back to these.

use crate::http::shown;
use idbridge_core::{ConnectorError, ErrorKind, Stage};

/// An upstream `error_description`, safe for a log line: no control
/// characters, at most 300 characters.
pub fn clean_description(description: &str) -> String {
    description
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// The upstream's `error` on the callback (RFC 6749 4.1.2.1, OpenID Core
/// 3.1.2.6), at `Stage::Callback`.
pub fn authorization_error(code: &str, description: &str) -> ConnectorError {
    let (kind, fix) = match code {
        "access_denied" => (
            ErrorKind::UserCancelled,
            "the person refused (or the provider denied them) at the provider".to_owned(),
        ),
        "login_required" | "interaction_required" | "consent_required"
        | "account_selection_required" => (
            ErrorKind::UserCancelled,
            "the app asked for prompt=none and the provider needs the person to interact".to_owned(),
        ),
        "temporarily_unavailable" | "server_error" => (
            ErrorKind::UpstreamUnavailable,
            "the provider failed the authorization request; retry later".to_owned(),
        ),
        "unauthorized_client" | "unsupported_response_type" => (
            ErrorKind::Misconfigured,
            "the client may not use the authorization code flow at the provider: allow response type code for it".to_owned(),
        ),
        "invalid_scope" => (
            ErrorKind::Misconfigured,
            "the provider refused the scopes: make scopes hold only what the client may ask for".to_owned(),
        ),
        "invalid_request" | "invalid_request_uri" | "invalid_request_object"
        | "request_not_supported" | "request_uri_not_supported" | "registration_not_supported" => (
            ErrorKind::Misconfigured,
            format!("the provider refused the authorization request: {description}"),
        ),
        _ => (
            ErrorKind::BadResponse,
            format!("the provider answered the authorization request with error {code:?}"),
        ),
    };
    ConnectorError::new(Stage::Callback, kind)
        .upstream(code, description)
        .fix(fix)
}

/// What the token endpoint said, for [`token_error`].
pub struct TokenFailure<'a> {
    /// Its `error`, if the body had one.
    pub code: Option<&'a str>,
    /// Its `error_description`, cleaned ([`clean_description`]).
    pub description: &'a str,
    pub status: u16,
    /// The token endpoint (shown without its query).
    pub endpoint: &'a str,
    /// "the code exchange", "the refresh token grant".
    pub what: &'a str,
    /// The fix for `invalid_client`: which keys hold the client's credentials
    /// and how it authenticates.
    pub credentials_fix: String,
    /// The client id, for the grant-type fixes.
    pub client_id: &'a str,
}

/// The token endpoint's error (RFC 6749 5.2) or bare HTTP failure at `stage`:
/// `invalid_grant` is `InvalidCode` (on refresh: the person's grant at the
/// provider ended), `invalid_client` `BadCredentials`, the grant and scope
/// codes `Misconfigured`, 429 `RateLimited`, 5xx and `server_error`
/// `UpstreamUnavailable`.
pub fn token_error(stage: Stage, f: TokenFailure<'_>) -> ConnectorError {
    let url = shown(f.endpoint);
    let what = f.what;
    let (kind, fix) = match f.code {
        Some("invalid_grant") if stage == Stage::Refresh => (
            ErrorKind::InvalidCode,
            "the provider no longer accepts the refresh token: the person's session or consent ended there (signed out, disabled, consent revoked); they sign in again".to_owned(),
        ),
        Some("invalid_grant") => (
            ErrorKind::InvalidCode,
            "the provider refused the code: expired, already used (a replayed or doubled callback), or issued for another redirect_uri or PKCE verifier; start the sign-in again".to_owned(),
        ),
        Some("invalid_client") => (ErrorKind::BadCredentials, f.credentials_fix),
        Some("unauthorized_client") => (
            ErrorKind::Misconfigured,
            format!("the client {:?} may not use this grant at the provider: allow the authorization_code (and refresh_token) grant types for it", f.client_id),
        ),
        Some("unsupported_grant_type") => (
            ErrorKind::Misconfigured,
            "the provider does not support this grant type: enable authorization_code and refresh_token".to_owned(),
        ),
        Some("invalid_scope") => (
            ErrorKind::Misconfigured,
            "the provider refused the scopes: make scopes hold only what the client may ask for".to_owned(),
        ),
        Some("invalid_request") => (
            ErrorKind::Misconfigured,
            format!("the provider says the token request is malformed: {}", f.description),
        ),
        Some("slow_down") => (
            ErrorKind::RateLimited,
            format!("the token endpoint {url} throttles the broker; retry later"),
        ),
        Some("temporarily_unavailable") | Some("server_error") => (
            ErrorKind::UpstreamUnavailable,
            format!("the token endpoint {url} is failing; retry later"),
        ),
        _ if f.status == 429 => (
            ErrorKind::RateLimited,
            format!("the token endpoint {url} throttles the broker; retry later"),
        ),
        _ if f.status >= 500 => (
            ErrorKind::UpstreamUnavailable,
            format!("the token endpoint {url} answered HTTP {}; retry later", f.status),
        ),
        _ if f.status == 401 => (
            ErrorKind::BadCredentials,
            format!("the token endpoint {url} refused the client's authentication (HTTP 401): check client_id, the secret or key, and how the client authenticates"),
        ),
        Some(other) => (
            ErrorKind::BadResponse,
            format!("the token endpoint {url} answered {what} with error {other:?}, which this connector does not know"),
        ),
        None => (
            ErrorKind::BadResponse,
            format!("the token endpoint {url} answered {what} with HTTP {} and no OAuth error", f.status),
        ),
    };
    ConnectorError::new(stage, kind)
        .upstream(
            f.code
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {}", f.status)),
            f.description,
        )
        .fix(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: Option<&str>, status: u16) -> TokenFailure<'_> {
        TokenFailure {
            code,
            description: "",
            status,
            endpoint: "https://p.example/token?x=1",
            what: "the code exchange",
            credentials_fix: "check client_secret".into(),
            client_id: "c",
        }
    }

    #[test]
    fn the_rfc_codes_map_to_kinds() {
        let kind = |stage, code, status| token_error(stage, failure(code, status)).kind;
        assert_eq!(
            kind(Stage::TokenExchange, Some("invalid_grant"), 400),
            ErrorKind::InvalidCode
        );
        assert_eq!(
            kind(Stage::Refresh, Some("invalid_grant"), 400),
            ErrorKind::InvalidCode
        );
        let e = token_error(Stage::TokenExchange, failure(Some("invalid_client"), 401));
        assert_eq!(e.kind, ErrorKind::BadCredentials);
        assert_eq!(e.fix.as_deref(), Some("check client_secret"));
        assert_eq!(
            kind(Stage::TokenExchange, None, 503),
            ErrorKind::UpstreamUnavailable
        );
        assert_eq!(
            kind(Stage::TokenExchange, None, 429),
            ErrorKind::RateLimited
        );
        assert_eq!(
            kind(Stage::TokenExchange, Some("odd"), 400),
            ErrorKind::BadResponse
        );
        let e = token_error(Stage::TokenExchange, failure(None, 418));
        assert_eq!(e.upstream_code.as_deref(), Some("HTTP 418"));
        assert!(!e.fix.unwrap_or_default().contains("x=1"));
        assert_eq!(
            authorization_error("access_denied", "").kind,
            ErrorKind::UserCancelled
        );
        assert_eq!(clean_description("a\nb").len(), 2);
    }
}
