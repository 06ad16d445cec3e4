//! DingTalk's v1.0 API errors: an HTTP 4xx or 5xx with the body
//! `{"code": "…", "message": "…", "requestid": "…"}`, mapped to the broker's
//! `ErrorKind`s with a fix for the operator. The `code` is matched without
//! regard to case (DingTalk spells the same family `Forbidden.AccessDenied…`
//! and `forbidden.accessDenied…` on different APIs).

use idbridge_connector_kit::http::shown;
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use serde_json::Value;

/// What an error body said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl ApiError {
    /// Read `body` (of any shape: a proxy's HTML page has no code).
    pub fn read(status: u16, body: &[u8]) -> Self {
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect())
                .unwrap_or_default()
        };
        Self {
            status,
            code: text("code"),
            message: text("message"),
            request_id: text("requestid"),
        }
    }
}

/// `stage`'s call `what` to `url` failed with `e`.
pub fn api_error(stage: Stage, what: &str, url: &str, e: &ApiError) -> ConnectorError {
    let code = e.code.to_ascii_lowercase();
    let place = shown(url);
    let (kind, fix) = if code == "invalidclientidorsecret"
        || code.contains("clientsecret")
        || code.contains("clientid")
    {
        (
            ErrorKind::BadCredentials,
            "DingTalk refused client_id with its client_secret: copy the Client ID (AppKey) and Client Secret (AppSecret) from the app's Credentials page in DingTalk's developer console and set client_id and client_secret (or client_secret_file)".to_owned(),
        )
    } else if code.contains("authcode") || code.contains("refreshtoken") || code == "invalidcode" {
        if code.contains("refreshtoken") || stage == Stage::Refresh {
            (
                ErrorKind::InvalidCode,
                "DingTalk no longer accepts the refresh token (older than 30 days, or the person withdrew the app's authorization): they sign in again".to_owned(),
            )
        } else {
            (
                ErrorKind::InvalidCode,
                "DingTalk refused the authCode: wrong, already used or expired (it is single-use and short-lived; a replayed or doubled callback, or a slow sign-in): start the sign-in again".to_owned(),
            )
        }
    } else if e.status == 429 || code.contains("qpslimit") || code.contains("throttl") {
        (
            ErrorKind::RateLimited,
            format!("DingTalk throttles the app ({what}): too many calls per second for this API or app; wait and retry, or lower the sign-in rate"),
        )
    } else if code.contains("ipnotinwhitelist") {
        (
            ErrorKind::Misconfigured,
            "DingTalk refuses calls from the broker's address: add the broker's egress IP to the app's server IP allow-list (developer console → the app → Security settings)".to_owned(),
        )
    } else if code.contains("permissiondenied") || code.contains("accesstokenpermission") {
        (
            ErrorKind::Misconfigured,
            format!("the app lacks the permission for {what}: grant Contact.User.Read (personal information) in the app's Permission management in DingTalk's developer console and publish a new version"),
        )
    } else if code == "invalidauthentication" || e.status == 401 {
        (
            ErrorKind::UpstreamUnavailable,
            format!("DingTalk did not accept the user token it had just issued for {what} at {place}: check api_base_url points at https://api.dingtalk.com, then retry"),
        )
    } else if e.status >= 500
        || code.contains("serviceunavailable")
        || code.contains("systemerror")
        || code.contains("internalerror")
        || code.contains("system.err")
    {
        (
            ErrorKind::UpstreamUnavailable,
            format!("DingTalk failed {what} (HTTP {}): retry; see https://status.dingtalk.com if it persists", e.status),
        )
    } else if e.status == 403 || code.starts_with("forbidden") {
        (
            ErrorKind::Misconfigured,
            format!("DingTalk forbids {what} for this app: check the app is published and enabled, and its permissions in DingTalk's developer console"),
        )
    } else if e.status == 404 || e.code.is_empty() {
        (
            ErrorKind::BadResponse,
            format!("{place} answered HTTP {} without a DingTalk error code: check api_base_url points at DingTalk's API (https://api.dingtalk.com)", e.status),
        )
    } else {
        (
            ErrorKind::Misconfigured,
            format!("DingTalk refused {what} with code {:?}: see its message and DingTalk's error code table for the API", e.code),
        )
    };
    let shown_code = if e.code.is_empty() {
        format!("HTTP {}", e.status)
    } else {
        e.code.clone()
    };
    let message = if e.request_id.is_empty() {
        e.message.clone()
    } else {
        format!("{} (requestid {})", e.message, e.request_id)
    };
    ConnectorError::new(stage, kind)
        .upstream(shown_code, message)
        .fix(fix)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn kind(status: u16, code: &str) -> ErrorKind {
        let body = serde_json::json!({"code": code, "message": "m", "requestid": "r1"}).to_string();
        api_error(
            Stage::TokenExchange,
            "x",
            "https://api.dingtalk.com/v1.0/oauth2/userAccessToken",
            &ApiError::read(status, body.as_bytes()),
        )
        .kind
    }

    #[test]
    fn dingtalks_codes_map_to_kinds() {
        assert_eq!(
            kind(400, "invalidClientIdOrSecret"),
            ErrorKind::BadCredentials
        );
        assert_eq!(kind(400, "invalidAuthCode"), ErrorKind::InvalidCode);
        assert_eq!(
            kind(403, "Forbidden.AccessDenied.QpsLimitForApi"),
            ErrorKind::RateLimited
        );
        assert_eq!(kind(429, "Throttling"), ErrorKind::RateLimited);
        assert_eq!(
            kind(403, "Forbidden.AccessDenied.IpNotInWhiteList"),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            kind(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            kind(503, "ServiceUnavailable"),
            ErrorKind::UpstreamUnavailable
        );
        assert_eq!(kind(404, ""), ErrorKind::BadResponse);
        let e = api_error(
            Stage::Userinfo,
            "GET /v1.0/contact/users/me",
            "https://api.dingtalk.com/v1.0/contact/users/me",
            &ApiError::read(
                401,
                br#"{"code":"InvalidAuthentication","message":"bad","requestid":"ABC"}"#,
            ),
        );
        assert_eq!(e.upstream_code.as_deref(), Some("InvalidAuthentication"));
        assert_eq!(e.upstream_message.as_deref(), Some("bad (requestid ABC)"));
        let e = api_error(
            Stage::Userinfo,
            "x",
            "https://a/b",
            &ApiError::read(502, b"<html>"),
        );
        assert_eq!(e.upstream_code.as_deref(), Some("HTTP 502"));
    }
}
