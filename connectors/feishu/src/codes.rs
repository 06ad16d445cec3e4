//! Feishu's own error codes (the `code` of its token endpoint's and APIs'
//! answers) as `ErrorKind`s with a fix for the operator. From Feishu's pages
//! "获取 user_access_token" (20001–20072), "刷新 user_access_token" (20026,
//! 20037, 20064, 20073) and the open platform's common codes (99991xxx);
//! listed in docs/connectors/feishu.md.

use idbridge_core::ErrorKind;

/// `code` at the token endpoint (code or refresh grant), or `None` when
/// Feishu's docs do not list it.
pub fn token_code(code: i64) -> Option<(ErrorKind, &'static str)> {
    Some(match code {
        20001 | 20063 => (
            ErrorKind::Misconfigured,
            "Feishu says the token request lacks a field or is malformed: a broker bug or a proxy rewriting the body; report it with this log line",
        ),
        20002 => (
            ErrorKind::BadCredentials,
            "Feishu refused client_id with its client_secret: copy App ID and App Secret from the developer console (应用详情 → 凭证与基础信息) into client_id and client_secret (or client_secret_file); a reset App Secret must be copied again",
        ),
        20003 => (
            ErrorKind::InvalidCode,
            "Feishu does not know the code (wrong, or already spent): a replayed or doubled callback; the person starts the sign-in again",
        ),
        20004 => (
            ErrorKind::InvalidCode,
            "the code expired (Feishu's codes live 5 minutes): the sign-in took too long; the person starts again",
        ),
        20065 => (
            ErrorKind::CodeReused,
            "the code was already used (Feishu's codes are single use): a replayed or doubled callback; if the sign-in already succeeded ignore it",
        ),
        20024 => (
            ErrorKind::InvalidCode,
            "the code was issued to another app than client_id: two Feishu connectors or apps are mixed up (check each connector's client_id and that the callback reached the connector that began the sign-in)",
        ),
        20049 => (
            ErrorKind::InvalidCode,
            "Feishu's PKCE check failed (code_verifier does not match the sign-in's code_challenge): the code was not issued for this sign-in; the person starts again",
        ),
        20008 | 20066 => (
            ErrorKind::NotAllowed,
            "Feishu says the person's account does not exist or is not active (left the tenant, frozen, not activated): the tenant's admin checks the member in the admin console",
        ),
        20009 => (
            ErrorKind::NotAllowed,
            "the person's tenant has not installed the app: a tenant admin installs it (store apps), or the person signs in with an account of the tenant that owns the app",
        ),
        20010 => (
            ErrorKind::NotAllowed,
            "the person has no access to the app (error 20010: outside its availability range): in the developer console add them (or their department) to 版本管理与发布 → 可用范围 and publish a version, or in the admin console 工作台 → 应用管理 → the app → 可用成员",
        ),
        20036 => (
            ErrorKind::Misconfigured,
            "Feishu refused the grant_type: a broker bug; report it with this log line",
        ),
        20048 | 20069 => (
            ErrorKind::Misconfigured,
            "Feishu says the app does not exist or is not enabled: check client_id, and that the app has a published, enabled version in the developer console",
        ),
        20067 | 20068 => (
            ErrorKind::Misconfigured,
            "Feishu refused the scopes: remove duplicates from scopes, and ask only for permissions the app has been granted (开发者后台 → 权限管理)",
        ),
        20070 => (
            ErrorKind::Misconfigured,
            "Feishu saw two client authentications (Basic and client_secret): a proxy adds an Authorization header; remove it",
        ),
        20071 => (
            ErrorKind::Misconfigured,
            "Feishu refused redirect_uri: the broker's callback ISSUER/callback/CONNECTOR_ID must be listed under 安全设置 → 重定向 URL in the developer console, exactly",
        ),
        20026 | 20037 | 20064 => (
            ErrorKind::InvalidCode,
            "Feishu no longer accepts the refresh token (expired, revoked by the person or the admin, or of an old format): the person signs in again",
        ),
        20073 => (
            ErrorKind::CodeReused,
            "the refresh token was already used (Feishu's refresh tokens are single use): another refresh spent it first; the person signs in again",
        ),
        20050 | 20072 => (
            ErrorKind::UpstreamUnavailable,
            "Feishu's token service failed or is unavailable (20050/20072): retry later; see Feishu's status page if it persists",
        ),
        99991400 => (
            ErrorKind::RateLimited,
            "Feishu throttles the app (99991400): too many requests; retry later",
        ),
        _ => return None,
    })
}

/// A user_access_token Feishu refuses on an API call (invalid, expired).
pub fn is_token_refused(code: i64) -> bool {
    matches!(
        code,
        99991661 | 99991663 | 99991668 | 99991671 | 99991677 | 20005
    )
}
