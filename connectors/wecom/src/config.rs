//! The `wecom` connector's keys, the checks after parsing, and doctor's
//! trusted-domain rule.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Keys, Seconds, Secret, Timeouts};
use idbridge_core::{ConfigError, ConnectorSettings, Problem};
use serde::Deserialize;

pub const LOGIN_BASE_URL: &str = "https://login.work.weixin.qq.com";
pub const OPEN_BASE_URL: &str = "https://open.weixin.qq.com";
pub const API_BASE_URL: &str = "https://qyapi.weixin.qq.com";

/// What is fetched about a member after `auth/getuserinfo` named them.
pub const PROFILES: [&str; 3] = ["basic", "private", "none"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// 企业ID (CorpID), `ww…`: My Company → Company Information.
    corp_id: String,
    /// The self-built app's AgentId.
    agent_id: u64,
    /// The app's Secret (or `corp_secret_file`).
    corp_secret: Secret,
    /// The app's trusted domain (可信域名), for `idbridge doctor`.
    #[serde(default)]
    trusted_domain: Option<String>,
    /// Let a WeChat user who is not a member of the corp sign in (subject
    /// from their `openid`). Default false: refused.
    #[serde(default)]
    allow_non_members: bool,
    /// `basic` (default): `user/get` for the name, alias and position;
    /// `private`: that, and inside the WeCom client `snsapi_privateinfo`, so the
    /// member can allow `auth/getuserdetail` (avatar, mobile, email);
    /// `none`: only the userid.
    #[serde(default = "default_profile")]
    profile: String,
    #[serde(default = "default_login")]
    login_base_url: BaseUrl,
    #[serde(default = "default_open")]
    open_base_url: BaseUrl,
    #[serde(default = "default_api")]
    api_base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    timeout_secs: Seconds,
}

fn default_profile() -> String {
    "basic".into()
}
fn default_login() -> BaseUrl {
    BaseUrl::new(LOGIN_BASE_URL)
}
fn default_open() -> BaseUrl {
    BaseUrl::new(OPEN_BASE_URL)
}
fn default_api() -> BaseUrl {
    BaseUrl::new(API_BASE_URL)
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct WeComSettings {
    pub corp_id: String,
    pub agent_id: u64,
    pub corp_secret: Secret,
    pub trusted_domain: Option<String>,
    pub allow_non_members: bool,
    /// `user/get` after `auth/getuserinfo`.
    pub fetch_member: bool,
    /// `profile = "private"`: ask for `snsapi_privateinfo` in the WeCom client,
    /// and read `auth/getuserdetail` when `auth/getuserinfo` gives a `user_ticket`.
    pub private_info: bool,
    pub login_base_url: BaseUrl,
    pub open_base_url: BaseUrl,
    pub api_base_url: BaseUrl,
    pub timeouts: Timeouts,
}

/// A corp id as WeCom issues them: letters and digits (`ww` + 16 hex for
/// most corps, `wx…` for older ones).
pub fn is_valid_corp_id(id: &str) -> bool {
    (8..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl WeComSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        keys.check(
            "corp_id",
            is_valid_corp_id(&raw.corp_id),
            "must be the corp's 企业ID (CorpID, e.g. ww1234567890abcdef): WeCom admin console → My Company → Company Information",
        );
        keys.check(
            "agent_id",
            raw.agent_id > 0,
            "must be the self-built app's AgentId (App Management → the app)",
        );
        keys.check(
            "corp_secret",
            raw.corp_secret.len() >= 16
                && raw
                    .corp_secret
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_graphic()),
            "must be the self-built app's Secret (App Management → the app → Secret, viewed in the WeCom client)",
        );
        if let Some(domain) = &raw.trusted_domain {
            keys.check(
                "trusted_domain",
                !domain.is_empty() && !domain.contains("://") && !domain.contains('/'),
                "a host only (no scheme, no path), as set in the app's 网页授权及JS-SDK trusted domain",
            );
        }
        keys.one_of("profile", &raw.profile, &PROFILES);
        keys.base_url("login_base_url", &raw.login_base_url);
        keys.base_url("open_base_url", &raw.open_base_url);
        keys.base_url("api_base_url", &raw.api_base_url);
        let timeouts = Timeouts::check(&mut keys, raw.connect_timeout_secs, raw.timeout_secs);
        keys.finish(WeComSettings {
            corp_id: raw.corp_id,
            agent_id: raw.agent_id,
            corp_secret: raw.corp_secret,
            trusted_domain: raw.trusted_domain,
            allow_non_members: raw.allow_non_members,
            fetch_member: raw.profile != "none",
            private_info: raw.profile == "private",
            login_base_url: raw.login_base_url,
            open_base_url: raw.open_base_url,
            api_base_url: raw.api_base_url,
            timeouts,
        })
    }

    /// `idbridge doctor`: the callback's host must be the app's trusted domain
    /// (else WeCom shows "该链接无法访问", errcode 50001, and never comes back),
    /// and the upstream URLs https (http only to loopback).
    pub fn doctor(&self, id: &str, callback_url: &str) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{id}].{k}");
        let mut problems = Vec::new();
        let host = url::Url::parse(callback_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        match self.trusted_domain.as_deref().map(str::trim) {
            None => problems.push(Problem {
                key: key("trusted_domain"),
                message: format!("not set, so it cannot be checked: the app's trusted domain (可信域名, App Management → the app → 网页授权及JS-SDK) must be exactly {host:?} (callback URL {callback_url})"),
                fatal: false,
            }),
            Some(domain) if !domain.eq_ignore_ascii_case(&host) => problems.push(Problem {
                key: key("trusted_domain"),
                message: format!("the callback URL {callback_url} has host {host:?} but the app's trusted domain is {domain:?}: WeCom will show \"该链接无法访问\" (50001) and never come back. Set the trusted domain to {host} in the admin console (and verify it there), or change the issuer"),
                fatal: true,
            }),
            Some(_) => {}
        }
        for (k, url) in [
            ("login_base_url", &self.login_base_url),
            ("open_base_url", &self.open_base_url),
            ("api_base_url", &self.api_base_url),
        ] {
            if let Err(message) = idbridge_connector_kit::http::check_secure_url(url.as_str()) {
                problems.push(Problem {
                    key: key(k),
                    message,
                    fatal: true,
                });
            }
        }
        problems
    }
}
