//! The `wechat-web` connector's config keys, their checks (each error names its
//! key), and the `doctor` checks that catch the setups that break most often.

use idbridge_core::{BuildContext, ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;
use std::time::Duration;
use wechat_api::{ClientOptions, WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// The website app's AppID (`wx` + 16 hex).
    pub appid: String,
    /// Its AppSecret (or `appsecret_file`, resolved by the broker).
    pub appsecret: String,
    /// The Open Platform account (原始ID, `gh_…`) the app is bound to; scopes the
    /// unionid link key. Without it, this connector links nothing across apps.
    #[serde(default)]
    pub open_platform_id: Option<String>,
    /// `redirect` (default): to WeChat's QR page. `embedded`: the QR inside the
    /// broker's login page.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// WeChat page language: `cn`, `en`, or `auto` (from the person's locale).
    #[serde(default = "default_lang")]
    pub lang: String,
    /// The authorization callback domain registered at WeChat (host only); doctor
    /// compares it with the broker's callback URL.
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
    /// Embedded QR: `black` or `white` text around the code.
    #[serde(default = "default_style")]
    pub qr_style: String,
    /// Embedded QR: an https URL of CSS for WeChat's frame (wxLogin.js `href`).
    #[serde(default)]
    pub qr_css_url: Option<String>,
    /// Embedded QR: let desktop WeChat confirm without scanning (wxLogin.js `fast_login`).
    #[serde(default)]
    pub fast_login: bool,
}

fn default_mode() -> String {
    "redirect".into()
}
fn default_lang() -> String {
    "auto".into()
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
fn default_style() -> String {
    "black".into()
}

impl WebSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: WebSettings = serde_json::from_value(settings.options.clone()).map_err(|e| {
            let text = e.to_string();
            let field = text.split('`').nth(1).unwrap_or("?").to_owned();
            vec![ConfigError::new(key(&field), text)]
        })?;
        let mut errors = Vec::new();
        if !wechat_api::is_valid_appid(&cfg.appid) {
            errors.push(ConfigError::new(
                key("appid"),
                "must be the website app's AppID: \"wx\" followed by 16 hex digits (Open Platform > 网站应用 > AppID)",
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
        if cfg.mode != "redirect" && cfg.mode != "embedded" {
            errors.push(ConfigError::new(
                key("mode"),
                "use \"redirect\" or \"embedded\"",
            ));
        }
        if !["auto", "cn", "en"].contains(&cfg.lang.as_str()) {
            errors.push(ConfigError::new(
                key("lang"),
                "use \"auto\", \"cn\" or \"en\"",
            ));
        }
        if cfg.qr_style != "black" && cfg.qr_style != "white" {
            errors.push(ConfigError::new(
                key("qr_style"),
                "use \"black\" or \"white\"",
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
        if let Some(css) = &cfg.qr_css_url {
            if !css.starts_with("https://") {
                errors.push(ConfigError::new(
                    key("qr_css_url"),
                    "must be an https URL (WeChat loads it)",
                ));
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

    /// The checks that catch most broken WeChat setups before anyone tries to log in.
    pub fn doctor(&self, id: &ConnectorId, ctx: &BuildContext) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{id}].{k}");
        let mut problems = wechat_api::login::callback_domain_problems(
            &key("callback_domain"),
            self.callback_domain.as_deref(),
            &ctx.callback_url,
            "WeChat's authorization callback domain (Open Platform > 网站应用 > 开发信息 > 授权回调域)",
        );
        if self.open_platform_id.is_none() {
            problems.push(Problem {
                key: key("open_platform_id"),
                message: "not set: this connector's logins are not linked with other WeChat apps (Official Account, mobile app) of the same person; set the Open Platform 原始ID to link them by unionid".into(),
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
