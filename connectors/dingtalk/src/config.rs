//! The `dingtalk` connector's keys and the checks after parsing.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Keys, Seconds, Secret, Timeouts};
use idbridge_core::{ConfigError, ConnectorSettings};
use serde::Deserialize;

/// DingTalk's sign-in pages (`/oauth2/auth`).
pub const LOGIN_BASE: &str = "https://login.dingtalk.com";
/// DingTalk's new-style (v1.0) server API.
pub const API_BASE: &str = "https://api.dingtalk.com";
/// How long DingTalk says a refresh token lives (30 days).
pub const REFRESH_LIFETIME_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// The app's Client ID (AppKey; SuiteKey for a third-party app).
    pub client_id: String,
    /// The app's Client Secret (AppSecret).
    pub client_secret: Secret,
    /// Organisations (corpIds) whose members may sign in; empty: any DingTalk
    /// account may.
    #[serde(default)]
    pub corp_ids: Vec<String>,
    #[serde(default = "default_login")]
    pub login_base_url: BaseUrl,
    #[serde(default = "default_api")]
    pub api_base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

fn default_login() -> BaseUrl {
    BaseUrl::new(LOGIN_BASE)
}

fn default_api() -> BaseUrl {
    BaseUrl::new(API_BASE)
}

#[derive(Debug, Clone)]
pub struct DingTalkSettings {
    pub client_id: String,
    pub client_secret: Secret,
    pub corp_ids: Vec<String>,
    /// Without a trailing `/`.
    pub login_base_url: String,
    /// Without a trailing `/`.
    pub api_base_url: String,
    pub timeouts: Timeouts,
}

impl DingTalkSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        keys.check(
            "client_id",
            !raw.client_id.is_empty()
                && raw.client_id.len() <= 128
                && raw.client_id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "the app's Client ID (AppKey) is letters and digits, e.g. dingxxxxxxxx: copy it from the app's Credentials page in DingTalk's developer console",
        );
        keys.check(
            "client_secret",
            !raw.client_secret.is_empty(),
            "empty: copy the app's Client Secret (AppSecret) from its Credentials page in DingTalk's developer console",
        );
        for corp in &raw.corp_ids {
            keys.check(
                "corp_ids",
                !corp.is_empty()
                    && corp.len() <= 64
                    && corp.bytes().all(|b| b.is_ascii_alphanumeric()),
                format!("{corp:?} is not a DingTalk corpId (letters and digits, e.g. ding0123456789abcdef)"),
            );
        }
        keys.base_url("login_base_url", &raw.login_base_url);
        keys.base_url("api_base_url", &raw.api_base_url);
        let timeouts = Timeouts::check(&mut keys, raw.connect_timeout_secs, raw.timeout_secs);
        keys.finish(DingTalkSettings {
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            corp_ids: raw.corp_ids,
            login_base_url: raw.login_base_url.trimmed().to_owned(),
            api_base_url: raw.api_base_url.trimmed().to_owned(),
            timeouts,
        })
    }

    /// The scopes asked for: `openid`, and `corpid` when organisations are
    /// checked (DingTalk then asks the person which organisation they sign in
    /// for and says it with the user token).
    pub fn scope(&self) -> &'static str {
        if self.corp_ids.is_empty() {
            "openid"
        } else {
            "openid corpid"
        }
    }
}
