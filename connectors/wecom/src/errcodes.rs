//! WeCom's errcodes (全局错误码, developer.work.weixin.qq.com/document/path/90313)
//! as the broker's error kinds, each with the fix an operator can act on.

use idbridge_core::{ConnectorError, ErrorKind, Stage};

/// System busy (系统繁忙): retry later.
pub const BUSY: i64 = -1;
/// Invalid secret (获取 access_token 时 Secret 错误).
pub const INVALID_SECRET: i64 = 40001;
/// Invalid corp id.
pub const INVALID_CORP_ID: i64 = 40013;
/// Invalid access_token (a token from another app, or retired).
pub const INVALID_TOKEN: i64 = 40014;
/// Invalid, used or expired sign-in code (不合法的 oauth_code).
pub const INVALID_CODE: i64 = 40029;
/// Invalid agentid.
pub const INVALID_AGENT_ID: i64 = 40056;
/// The access_token expired.
pub const TOKEN_EXPIRED: i64 = 42001;
/// API call frequency over the limit.
pub const RATE_LIMITED: i64 = 45009;
/// The app may not call this API (接口无权限).
pub const API_FORBIDDEN: i64 = 48002;
/// The redirect URL is not on the app's trusted domain (shown on WeCom's page).
pub const UNTRUSTED_REDIRECT: i64 = 50001;
/// The member is outside the app's visible range (无权限).
pub const NO_PRIVILEGE: i64 = 60011;
/// The broker's IP is not among the app's trusted IPs (企业可信IP).
pub const IP_NOT_ALLOWED: i64 = 60020;
/// No such userid.
pub const USER_NOT_FOUND: i64 = 60111;

/// Whether `errcode` says the corp token itself is stale (drop it, fetch a
/// new one, call once more).
pub fn token_rejected(errcode: i64) -> bool {
    matches!(errcode, TOKEN_EXPIRED | INVALID_TOKEN)
}

/// The kind and fix for `errcode` answered by `api`.
pub fn classify(errcode: i64, api: &str) -> (ErrorKind, String) {
    let (kind, fix) = match errcode {
        BUSY => (ErrorKind::UpstreamUnavailable, "WeCom says it is busy (系统繁忙): the person signs in again in a moment; if it persists, check WeCom's status".to_owned()),
        INVALID_SECRET => (ErrorKind::BadCredentials, "WeCom refused corp_secret for this corp: copy the self-built app's Secret (admin console → App Management → the app → Secret, viewed in the WeCom client; the corp's contacts or other apps' secrets do not work) into corp_secret (or corp_secret_file)".to_owned()),
        INVALID_CORP_ID => (ErrorKind::BadCredentials, "WeCom does not know corp_id: copy the 企业ID from the admin console (My Company → Company Information)".to_owned()),
        INVALID_TOKEN | TOKEN_EXPIRED => (ErrorKind::UpstreamUnavailable, "WeCom rejected a fresh corp access token right after issuing it: check that corp_secret is the secret of this app (agent_id) and that no other system rotates it; retry".to_owned()),
        INVALID_CODE => (ErrorKind::InvalidCode, "WeCom refused the sign-in code: used already, older than 5 minutes, or issued for another corp (a replayed callback, a slow sign-in, or corp_id not the app's corp); the person signs in again".to_owned()),
        INVALID_AGENT_ID => (ErrorKind::Misconfigured, "WeCom does not know agent_id in this corp: copy the AgentId of the self-built app (App Management → the app)".to_owned()),
        RATE_LIMITED => (ErrorKind::RateLimited, "WeCom's call frequency limit for this app is used up: wait a minute; if sign-ins are this frequent, ask WeCom for a higher limit".to_owned()),
        API_FORBIDDEN => (ErrorKind::Misconfigured, format!("WeCom says this app may not call {api}: give the self-built app the permission in the admin console (App Management → the app), or set profile = \"none\"")),
        UNTRUSTED_REDIRECT => (ErrorKind::Misconfigured, "the broker's callback host is not the app's trusted domain: set it (App Management → the app → 网页授权及JS-SDK) to the issuer's host and verify it; `idbridge doctor` checks trusted_domain".to_owned()),
        NO_PRIVILEGE => (ErrorKind::NotAllowed, "the member is outside the app's visible range (可见范围): add them (or their department) to the app's visible range in the admin console, if they should sign in here".to_owned()),
        IP_NOT_ALLOWED => (ErrorKind::Misconfigured, "WeCom refuses calls from the broker's IP address: add the broker's egress IP to the app's trusted IPs (企业可信IP, App Management → the app → 开发者接口)".to_owned()),
        USER_NOT_FOUND => (ErrorKind::NotAllowed, "WeCom has no member with this userid any more (removed from the corp between the scan and the lookup); nothing to fix unless they should be a member".to_owned()),
        41001..=41999 => (ErrorKind::Misconfigured, format!("WeCom says a parameter of {api} is missing: check corp_id, corp_secret and agent_id")),
        _ => (ErrorKind::BadResponse, format!("WeCom answered {api} with an errcode the broker does not know: look it up at https://open.work.weixin.qq.com/devtool/query?e={errcode}")),
    };
    (kind, fix)
}

/// A failed WeCom API call as the broker's error at `stage`. `errmsg` is
/// WeCom's own text (no secrets or codes in it).
pub fn error(stage: Stage, api: &str, errcode: i64, errmsg: &str) -> ConnectorError {
    let (kind, fix) = classify(errcode, api);
    let errmsg: String = errmsg.chars().take(200).collect();
    ConnectorError::new(stage, kind)
        .upstream(errcode, format!("{api}: {errmsg}"))
        .fix(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_codes_have_their_kinds() {
        let kind = |code| classify(code, "cgi-bin/x").0;
        assert_eq!(kind(INVALID_CODE), ErrorKind::InvalidCode);
        assert_eq!(kind(INVALID_SECRET), ErrorKind::BadCredentials);
        assert_eq!(kind(UNTRUSTED_REDIRECT), ErrorKind::Misconfigured);
        assert_eq!(kind(NO_PRIVILEGE), ErrorKind::NotAllowed);
        assert_eq!(kind(IP_NOT_ALLOWED), ErrorKind::Misconfigured);
        assert_eq!(kind(BUSY), ErrorKind::UpstreamUnavailable);
        assert_eq!(kind(RATE_LIMITED), ErrorKind::RateLimited);
        assert_eq!(kind(99999), ErrorKind::BadResponse);
        assert!(token_rejected(TOKEN_EXPIRED) && token_rejected(INVALID_TOKEN));
        assert!(!token_rejected(INVALID_CODE));
    }
}
