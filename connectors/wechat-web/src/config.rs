//! The `wechat-web` connector's config keys, their checks (each error names its
//! key), and the `doctor` checks that catch the setups that break most often.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Seconds, Secret};
use idbridge_core::{BuildContext, ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;
use wechat_api::{WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// The website app's AppID (`wx` + 16 hex).
    pub appid: String,
    /// Its AppSecret (or `appsecret_file`, which the broker reads into `appsecret`;
    /// redacted in `Debug`).
    pub appsecret: Secret,
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
    pub api_base_url: BaseUrl,
    #[serde(default = "default_open")]
    pub open_base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
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
fn default_api() -> BaseUrl {
    BaseUrl::new(DEFAULT_API_BASE_URL)
}
fn default_open() -> BaseUrl {
    BaseUrl::new(DEFAULT_OPEN_BASE_URL)
}
fn default_style() -> String {
    "black".into()
}

impl WebSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: WebSettings = parse_options(settings)?;
        let mut errors = cfg.app().check(&key, "Open Platform > 网站应用 > AppID");
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
        if let Some(css) = &cfg.qr_css_url {
            if !css.starts_with("https://") {
                errors.push(ConfigError::new(
                    key("qr_css_url"),
                    "must be an https URL (WeChat loads it)",
                ));
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The keys every WeChat connector shares.
    pub fn app(&self) -> wechat_api::login::AppKeys<'_> {
        wechat_api::login::AppKeys {
            appid: &self.appid,
            appsecret: self.appsecret.expose(),
            open_platform_id: self.open_platform_id.as_deref(),
            api_base_url: self.api_base_url.as_str(),
            open_base_url: self.open_base_url.as_str(),
            connect_timeout_secs: self.connect_timeout_secs.get(),
            timeout_secs: self.timeout_secs.get(),
        }
    }

    pub fn client(&self, id: &ConnectorId) -> Result<WeChatClient, Vec<ConfigError>> {
        self.app().client(id)
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
        problems.extend(self.app().warnings(&key));
        problems
    }
}
