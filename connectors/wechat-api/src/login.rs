//! What every WeChat login connector does with WeChat's answers: complete a
//! browser sign-in from its callback ([`complete_sign_in`]: the code exchange,
//! the snapshot-user refusal, the profile), fetch and check the profile, turn a
//! token (and profile) into the broker's `ExternalIdentity` (openid as subject,
//! unionid scoped by the Open Platform account as link key, tokens to keep),
//! and the doctor check of the registered callback domain.

use crate::{SnsToken, UserInfo, WeChatClient};
use idbridge_connector_kit::options::{BaseUrl, Seconds, Timeouts};
use idbridge_core::{
    CallbackRequest, ConfigError, ConnectorError, ConnectorId, ErrorKind, ExternalIdentity,
    LinkKey, Locale, Problem, Profile, RequestContext, Stage, UpstreamTokens,
};

/// The WeChat app a browser sign-in completes for.
pub struct LoginApp<'a> {
    pub connector_id: &'a ConnectorId,
    pub appid: &'a str,
    pub appsecret: &'a str,
    pub open_platform_id: Option<&'a str>,
}

/// The refusal of a snapshot-mode (virtual) user: a page opened from Moments
/// (朋友圈快照) gets a virtual openid, unionid and profile. Never create or link
/// an account from it.
pub fn snapshot_user_refused(stage: Stage, locale: Locale) -> ConnectorError {
    let advice = match locale {
        Locale::ZhCn => "你打开的是朋友圈里的页面快照。请点击页面底部的“使用完整服务”打开完整页面，然后重新登录。",
        Locale::En => "You opened a snapshot of this page from WeChat Moments. Tap \"使用完整服务\" (Use full service) at the bottom of the page to open the full page, then sign in again.",
    };
    ConnectorError::new(stage, ErrorKind::NotAllowed)
        .upstream("is_snapshotuser", "a snapshot-mode (virtual) WeChat user")
        .fix("the person opened a snapshot page (from Moments, 朋友圈快照); they must tap \"使用完整服务\" to open the full page, then sign in again")
        .advice(advice)
}

/// Complete a browser sign-in (website QR, Official Account) from WeChat's
/// callback: no code means the person refused or closed the page; the code is
/// exchanged (one retry when WeChat is busy); a snapshot-mode user is refused;
/// the profile is fetched when `wants_profile` says the token may have it
/// (`snsapi_base` tokens may not: 48001); then the identity.
pub async fn complete_sign_in(
    client: &WeChatClient,
    app: &LoginApp<'_>,
    ctx: &RequestContext,
    callback: &CallbackRequest,
    wants_profile: impl Fn(&SnsToken) -> bool,
) -> Result<ExternalIdentity, ConnectorError> {
    let Some(code) = callback.param("code") else {
        // WeChat sends the person back with only the state when they refuse.
        return Err(
            ConnectorError::new(Stage::Callback, ErrorKind::UserCancelled).upstream(
                "no_code",
                "WeChat returned without a code: the person refused or closed the page",
            ),
        );
    };
    let token = client
        .exchange_code_with_retry(app.appid, app.appsecret, code)
        .await
        .map_err(ConnectorError::from)?;
    if token.is_snapshotuser {
        return Err(snapshot_user_refused(Stage::TokenExchange, ctx.locale));
    }
    let profile = if wants_profile(&token) {
        Some(fetch_profile(client, &token, ctx.locale).await?)
    } else {
        None
    };
    Ok(identity(
        app.connector_id,
        app.appid,
        app.open_platform_id,
        &token,
        profile.as_ref(),
        ctx.now,
    ))
}

/// Re-check a returning person with their stored WeChat tokens: renew the user
/// token with the refresh token (30 days, not renewable), make sure it is still
/// this `subject`'s, and ask `sns/auth` that it is valid. `again` tells the
/// operator how the person signs in anew ("scan again", "sign in again inside
/// WeChat").
pub async fn refreshed_token(
    client: &WeChatClient,
    appid: &str,
    subject: &str,
    tokens: &UpstreamTokens,
    now: i64,
    again: &str,
) -> Result<SnsToken, ConnectorError> {
    let Some(refresh_token) = tokens.refresh_token.as_deref() else {
        return Err(
            ConnectorError::new(Stage::Refresh, ErrorKind::InvalidCode).fix(format!(
                "no WeChat refresh token is stored for this person; they must {again}"
            )),
        );
    };
    if tokens.refresh_expires_at.is_some_and(|t| t <= now) {
        return Err(ConnectorError::new(Stage::Refresh, ErrorKind::InvalidCode)
            .upstream(42002, "refresh_token expired (30 days)")
            .fix(format!("the person must {again}")));
    }
    let token = client
        .refresh(appid, refresh_token)
        .await
        .map_err(ConnectorError::from)?;
    if token.openid != subject {
        return Err(
            ConnectorError::new(Stage::Refresh, ErrorKind::BadResponse).upstream(
                "openid_mismatch",
                "the refreshed token belongs to another openid",
            ),
        );
    }
    client
        .check_token(&token.access_token, &token.openid)
        .await
        .map_err(ConnectorError::from)?;
    Ok(token)
}

/// A refreshed identity keeps the stored refresh token's expiry: WeChat does
/// not renew refresh tokens.
pub fn keep_refresh_expiry(
    mut identity: ExternalIdentity,
    stored: &UpstreamTokens,
) -> ExternalIdentity {
    if let Some(t) = identity.upstream_tokens.as_mut() {
        t.refresh_expires_at = stored.refresh_expires_at.or(t.refresh_expires_at);
    }
    identity
}

/// WeChat user refresh tokens last 30 days and cannot be renewed.
pub const REFRESH_TOKEN_LIFETIME: i64 = 30 * 86400;

/// WeChat's codes (an SDK code, a `wx.login` code) are short printable ASCII;
/// anything longer than this is not one.
pub const MAX_CODE_LEN: usize = 512;

/// Could `code` be a WeChat code (not empty, at most [`MAX_CODE_LEN`], printable
/// ASCII without spaces)? Anything else is refused without calling WeChat.
pub fn looks_like_a_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_LEN && code.bytes().all(|b| b.is_ascii_graphic())
}

/// A code a native app sent to the token endpoint, trimmed, when it
/// [`looks_like_a_code`]; else the exchange's refusal (`invalid_code`, without
/// calling WeChat), with `upstream_code` and `what` naming the code and `fix`
/// saying what the app must send.
pub fn exchanged_code<'a>(
    raw: &'a str,
    upstream_code: &str,
    what: &str,
    fix: &str,
) -> Result<&'a str, ConnectorError> {
    let code = raw.trim();
    if looks_like_a_code(code) {
        Ok(code)
    } else {
        Err(ConnectorError::new(Stage::Exchange, ErrorKind::InvalidCode)
            .upstream(upstream_code, what)
            .fix(fix))
    }
}

/// `sns/userinfo` for the token's openid, in the person's language; a profile for
/// another openid is refused.
pub async fn fetch_profile(
    client: &WeChatClient,
    token: &SnsToken,
    locale: Locale,
) -> Result<UserInfo, ConnectorError> {
    let lang = if locale == Locale::ZhCn {
        "zh_CN"
    } else {
        "en"
    };
    let info = client
        .userinfo(&token.access_token, &token.openid, lang)
        .await
        .map_err(ConnectorError::from)?;
    if info.openid != token.openid {
        return Err(ConnectorError::new(Stage::Userinfo, ErrorKind::BadResponse)
            .upstream("openid_mismatch", "sns/userinfo answered for another openid")
            .fix("WeChat returned a profile for a different user; report it with the rid from the log"));
    }
    Ok(info)
}

/// The identity of a WeChat login: subject = openid (per app), link key =
/// (open_platform_id, unionid) when both are known, profile name and picture, and
/// the WeChat tokens for later refresh.
pub fn identity(
    connector_id: &ConnectorId,
    appid: &str,
    open_platform_id: Option<&str>,
    token: &SnsToken,
    profile: Option<&UserInfo>,
    now: i64,
) -> ExternalIdentity {
    let unionid = token
        .unionid
        .clone()
        .or_else(|| profile.and_then(|p| p.unionid.clone()))
        .filter(|u| !u.is_empty());
    let link_key = match (open_platform_id, &unionid) {
        (Some(scope), Some(key)) => Some(LinkKey {
            scope: scope.to_owned(),
            key: key.clone(),
        }),
        _ => None,
    };
    ExternalIdentity {
        connector_id: connector_id.clone(),
        subject: token.openid.clone(),
        link_key,
        profile: Profile {
            name: profile
                .map(|p| p.nickname.clone())
                .filter(|n| !n.is_empty()),
            picture: profile
                .map(|p| avatar_over_https(&p.headimgurl))
                .filter(|h| !h.is_empty()),
            ..Profile::default()
        },
        upstream_tokens: Some(UpstreamTokens {
            access_token: Some(token.access_token.clone()),
            refresh_token: Some(token.refresh_token.clone()),
            access_expires_at: Some(now + token.expires_in),
            refresh_expires_at: Some(now + REFRESH_TOKEN_LIFETIME),
            scope: Some(token.scope.clone()),
        }),
        raw_claims: serde_json::json!({
            "openid": token.openid,
            "unionid": unionid,
            "scope": token.scope,
            "appid": appid,
        }),
    }
}

/// The hosts of WeChat's avatar CDN. They serve https too, but some profiles
/// still carry `http://` avatars, which the broker would drop (apps only get
/// https pictures, `idbridge_core::Profile::safe_picture`).
const AVATAR_HOSTS: [&str; 2] = ["thirdwx.qlogo.cn", "wx.qlogo.cn"];

/// `headimgurl` with an `http://` avatar on WeChat's own CDN moved to https;
/// anything else as it came (the broker's picture rule decides about it).
pub fn avatar_over_https(headimgurl: &str) -> String {
    // The URL parser drops tabs and newlines: such a URL is left for the rule to drop.
    if headimgurl.chars().any(char::is_control) {
        return headimgurl.to_owned();
    }
    let Ok(mut u) = url::Url::parse(headimgurl) else {
        return headimgurl.to_owned();
    };
    let ours = u.scheme() == "http"
        && u.host_str().is_some_and(|h| AVATAR_HOSTS.contains(&h))
        && u.port().is_none();
    if ours && u.set_scheme("https").is_ok() {
        u.to_string()
    } else {
        headimgurl.to_owned()
    }
}

/// The most common broken setup: the host of `{issuer}/callback/{id}` is not the
/// domain registered at WeChat. `what` names that setting for the operator, e.g.
/// "WeChat's authorization callback domain (Open Platform > 网站应用 > 授权回调域)".
pub fn callback_domain_problems(
    key: &str,
    registered: Option<&str>,
    callback_url: &str,
    what: &str,
) -> Vec<Problem> {
    let callback_host = url::Url::parse(callback_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let problem = |message: String, fatal| Problem {
        key: key.to_owned(),
        message,
        fatal,
    };
    match registered {
        None => vec![problem(
            format!("not set, so it cannot be checked: {what} must be exactly {callback_host:?} (callback URL {callback_url})"),
            false,
        )],
        Some(domain) => {
            let domain = domain.trim().trim_end_matches('/');
            if domain.contains("://") || domain.contains('/') {
                vec![problem(
                    format!("{domain:?}: {what} is a host only (no scheme, no path), e.g. {callback_host}"),
                    true,
                )]
            } else if !domain.eq_ignore_ascii_case(&callback_host) {
                vec![problem(
                    format!(
                        "the callback URL {callback_url} has host {callback_host:?} but {what} is {domain:?}: WeChat will show \"redirect_uri 参数错误\" (10003) and never come back. Register {callback_host} there, or change the issuer (the host must match exactly; www.{callback_host} does not cover {callback_host})"
                    ),
                    true,
                )]
            } else {
                Vec::new()
            }
        }
    }
}

/// The keys every WeChat login connector has.
pub struct AppKeys<'a> {
    pub appid: &'a str,
    pub appsecret: &'a str,
    pub open_platform_id: Option<&'a str>,
    pub api_base_url: &'a str,
    pub open_base_url: &'a str,
    pub connect_timeout_secs: f64,
    pub timeout_secs: f64,
}

impl AppKeys<'_> {
    /// Config errors, each naming its key. `appid_where` tells the operator where
    /// WeChat shows the AppID for this kind of app.
    pub fn check(&self, key: &dyn Fn(&str) -> String, appid_where: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !crate::is_valid_appid(self.appid) {
            errors.push(ConfigError::new(
                key("appid"),
                format!("must be the AppID: \"wx\" followed by 16 hex digits ({appid_where})"),
            ));
        }
        if self.appsecret.len() != 32 {
            errors.push(ConfigError::new(
                key("appsecret"),
                format!(
                    "must be the 32-character AppSecret (got {} characters)",
                    self.appsecret.len()
                ),
            ));
        }
        if let Some(p) = self.open_platform_id {
            if p.is_empty() || p.contains(char::is_whitespace) {
                errors.push(ConfigError::new(
                    key("open_platform_id"),
                    "must be the Open Platform 原始ID, e.g. gh_0123456789ab",
                ));
            }
        }
        for (k, v) in [
            ("api_base_url", self.api_base_url),
            ("open_base_url", self.open_base_url),
        ] {
            if let Err(message) = BaseUrl::new(v).check() {
                errors.push(ConfigError::new(key(k), message));
            }
        }
        for (k, v) in [
            (Timeouts::CONNECT_KEY, self.connect_timeout_secs),
            (Timeouts::TOTAL_KEY, self.timeout_secs),
        ] {
            if let Err(message) = Seconds::new(v).check(Timeouts::MAX_SECS) {
                errors.push(ConfigError::new(key(k), message));
            }
        }
        errors
    }

    /// The WeChat client of connector `id` (its metrics carry that id); a base
    /// URL it cannot use is a config error under `api_base_url`.
    pub fn client(&self, id: &ConnectorId) -> Result<WeChatClient, Vec<ConfigError>> {
        WeChatClient::new(crate::ClientOptions {
            api_base_url: self.api_base_url.to_owned(),
            connect_timeout: Seconds::new(self.connect_timeout_secs).duration(),
            timeout: Seconds::new(self.timeout_secs).duration(),
        })
        .map(|client| client.for_connector(id.as_str()))
        .map_err(|e| {
            vec![ConfigError::new(
                format!("connectors[{id}].api_base_url"),
                e.to_string(),
            )]
        })
    }

    /// Doctor warnings every WeChat connector shares: pointing away from WeChat,
    /// and a secret that does not look like one.
    pub fn warnings(&self, key: &dyn Fn(&str) -> String) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.api_base_url != crate::DEFAULT_API_BASE_URL
            || self.open_base_url != crate::DEFAULT_OPEN_BASE_URL
        {
            problems.push(Problem {
                key: key("api_base_url"),
                message: format!(
                    "points away from WeChat ({} / {}): fine for a simulator, wrong in production",
                    self.api_base_url, self.open_base_url
                ),
                fatal: false,
            });
        }
        if !crate::is_valid_secret(self.appsecret) {
            problems.push(Problem {
                key: key("appsecret"),
                message: "does not look like a WeChat AppSecret (32 hex digits); check for a copy-paste mistake".into(),
                fatal: false,
            });
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_snapshot_user_refusal_for_every_browser_sign_in() {
        let e = snapshot_user_refused(Stage::TokenExchange, Locale::ZhCn);
        assert!(e
            .advice
            .as_deref()
            .is_some_and(|a| a.contains("使用完整服务") && a.contains("完整页面")));
        let en = snapshot_user_refused(Stage::TokenExchange, Locale::En);
        assert!(en
            .advice
            .as_deref()
            .is_some_and(|a| a.contains("full page") && a.contains("使用完整服务")));
        assert_eq!(
            (e.stage, e.kind, e.upstream_code.as_deref()),
            (
                Stage::TokenExchange,
                ErrorKind::NotAllowed,
                Some("is_snapshotuser")
            )
        );
        let fix = e.fix.unwrap_or_default();
        assert!(
            fix.contains("full page") && fix.contains("使用完整服务"),
            "{fix}"
        );
    }

    #[test]
    fn http_avatars_on_the_wechat_cdn_move_to_https_and_nothing_else_does() {
        assert_eq!(
            avatar_over_https("http://thirdwx.qlogo.cn/mmopen/vi_32/abc/132"),
            "https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132"
        );
        assert_eq!(
            avatar_over_https("http://wx.qlogo.cn/mmhead/abc/0"),
            "https://wx.qlogo.cn/mmhead/abc/0"
        );
        for same in [
            "https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132",
            "http://example.com/a.png",
            "http://thirdwx.qlogo.cn.example.com/a",
            "http://thirdwx.qlogo.cn:8080/a",
            "http://thirdwx.qlogo.cn/a\n/132",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(avatar_over_https(same), same);
        }
    }
}
