//! The `wechat-mp` connector's config keys, their checks (each error names its
//! key), and the `doctor` checks that catch the setups that break most often.

use idbridge_core::{BuildContext, ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;
use std::time::Duration;
use wechat_api::{ClientOptions, WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

/// Silent: openid only, no consent page, no profile, no unionid.
pub const SCOPE_BASE: &str = "snsapi_base";
/// Asks the person: profile, and the unionid when the account is bound.
pub const SCOPE_USERINFO: &str = "snsapi_userinfo";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpSettings {
    /// The Official Account's AppID (`wx` + 16 hex), not an Open Platform app's.
    pub appid: String,
    /// Its AppSecret (or `appsecret_file`, resolved by the broker).
    pub appsecret: String,
    /// The Open Platform account (原始ID, `gh_…`) the Official Account is bound to;
    /// scopes the unionid link key. Without it, this connector links nothing.
    #[serde(default)]
    pub open_platform_id: Option<String>,
    /// `snsapi_userinfo` (default) or `snsapi_base`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Outside WeChat: `page` (default) explains that the link must be opened in
    /// WeChat; `hide` just keeps the connector off the list.
    #[serde(default = "default_outside")]
    pub outside_wechat: String,
    /// The 网页授权域名 registered at WeChat (host only); doctor compares it with
    /// the broker's callback URL.
    #[serde(default)]
    pub callback_domain: Option<String>,
    #[serde(default = "default_api")]
    pub api_base_url: String,
    #[serde(default = "default_open")]
    pub open_base_url: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_scope() -> String {
    SCOPE_USERINFO.into()
}
fn default_outside() -> String {
    "page".into()
}
fn default_api() -> String {
    DEFAULT_API_BASE_URL.into()
}
fn default_open() -> String {
    DEFAULT_OPEN_BASE_URL.into()
}
fn default_connect_timeout() -> f64 {
    3.0
}
fn default_timeout() -> f64 {
    10.0
}

impl MpSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: MpSettings = serde_json::from_value(settings.options.clone()).map_err(|e| {
            let text = e.to_string();
            let field = text.split('`').nth(1).unwrap_or("?").to_owned();
            vec![ConfigError::new(key(&field), text)]
        })?;
        let mut errors = Vec::new();
        if !wechat_api::is_valid_appid(&cfg.appid) {
            errors.push(ConfigError::new(
                key("appid"),
                "must be the Official Account's AppID: \"wx\" followed by 16 hex digits (公众平台 > 设置与开发 > 基本配置 > AppID)",
            ));
        }
        if cfg.appsecret.len() != 32 {
            errors.push(ConfigError::new(
                key("appsecret"),
                format!(
                    "must be the 32-character AppSecret (got {} characters)",
                    cfg.appsecret.len()
                ),
            ));
        }
        if let Some(p) = &cfg.open_platform_id {
            if p.is_empty() || p.contains(char::is_whitespace) {
                errors.push(ConfigError::new(
                    key("open_platform_id"),
                    "must be the Open Platform 原始ID, e.g. gh_0123456789ab",
                ));
            }
        }
        if cfg.scope != SCOPE_BASE && cfg.scope != SCOPE_USERINFO {
            errors.push(ConfigError::new(
                key("scope"),
                "use \"snsapi_userinfo\" (profile, asks the person) or \"snsapi_base\" (silent, openid only)",
            ));
        }
        if cfg.outside_wechat != "page" && cfg.outside_wechat != "hide" {
            errors.push(ConfigError::new(
                key("outside_wechat"),
                "use \"page\" or \"hide\"",
            ));
        }
        for (k, v) in [
            ("api_base_url", &cfg.api_base_url),
            ("open_base_url", &cfg.open_base_url),
        ] {
            match url::Url::parse(v) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                _ => errors.push(ConfigError::new(
                    key(k),
                    format!("{v:?} is not an http(s) URL"),
                )),
            }
        }
        for (k, v) in [
            ("connect_timeout_secs", cfg.connect_timeout_secs),
            ("timeout_secs", cfg.timeout_secs),
        ] {
            if !(v > 0.0 && v <= 60.0) {
                errors.push(ConfigError::new(key(k), "must be between 0 and 60 seconds"));
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    pub fn client(&self) -> Result<WeChatClient, wechat_api::BuildError> {
        WeChatClient::new(ClientOptions {
            api_base_url: self.api_base_url.clone(),
            connect_timeout: Duration::from_secs_f64(self.connect_timeout_secs),
            timeout: Duration::from_secs_f64(self.timeout_secs),
        })
    }

    /// The checks that catch most broken Official Account setups before anyone
    /// tries to log in.
    pub fn doctor(&self, id: &ConnectorId, ctx: &BuildContext) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{id}].{k}");
        let mut problems = wechat_api::login::callback_domain_problems(
            &key("callback_domain"),
            self.callback_domain.as_deref(),
            &ctx.callback_url,
            "the Official Account's 网页授权域名 (公众平台 > 设置与开发 > 公众号设置 > 功能设置)",
        );
        if self.open_platform_id.is_none() {
            problems.push(Problem {
                key: key("open_platform_id"),
                message: "not set: this connector's logins are not linked with other WeChat apps (website QR, mobile app) of the same person; set the Open Platform 原始ID to link them by unionid".into(),
                fatal: false,
            });
        } else if self.scope == SCOPE_BASE {
            problems.push(Problem {
                key: key("scope"),
                message: "snsapi_base never returns a unionid: logins through this connector are not linked with other WeChat apps; use snsapi_userinfo to link them".into(),
                fatal: false,
            });
        }
        if self.api_base_url != DEFAULT_API_BASE_URL || self.open_base_url != DEFAULT_OPEN_BASE_URL
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
        if !wechat_api::is_valid_secret(&self.appsecret) {
            problems.push(Problem {
                key: key("appsecret"),
                message: "does not look like a WeChat AppSecret (32 hex digits); check for a copy-paste mistake".into(),
                fatal: false,
            });
        }
        problems
    }
}
