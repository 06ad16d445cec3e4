//! The `wechat-mp` connector's config keys, their checks (each error names its
//! key), and the `doctor` checks that catch the setups that break most often.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Seconds, Secret};
use idbridge_core::{BuildContext, ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;
use wechat_api::{WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

/// Silent: openid only, no consent page, no profile, no unionid.
pub const SCOPE_BASE: &str = "snsapi_base";
/// Asks the person: profile, and the unionid when the account is bound.
pub const SCOPE_USERINFO: &str = "snsapi_userinfo";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpSettings {
    /// The Official Account's AppID (`wx` + 16 hex), not an Open Platform app's.
    pub appid: String,
    /// Its AppSecret (or `appsecret_file`, which the broker reads into `appsecret`;
    /// redacted in `Debug`).
    pub appsecret: Secret,
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
    /// Send one-time codes into the person's chat with the Official Account
    /// (customer-service messages): needs the account's 客服消息 permission, and
    /// works only within 48 h of the person's last message to the account.
    #[serde(default)]
    pub messages: bool,
    #[serde(default = "default_api")]
    pub api_base_url: BaseUrl,
    #[serde(default = "default_open")]
    pub open_base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

fn default_scope() -> String {
    SCOPE_USERINFO.into()
}
fn default_outside() -> String {
    "page".into()
}
fn default_api() -> BaseUrl {
    BaseUrl::new(DEFAULT_API_BASE_URL)
}
fn default_open() -> BaseUrl {
    BaseUrl::new(DEFAULT_OPEN_BASE_URL)
}

impl MpSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: MpSettings = parse_options(settings)?;
        let mut errors = cfg
            .app()
            .check(&key, "公众平台 > 设置与开发 > 基本配置 > AppID");
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
        problems.extend(self.app().warnings(&key));
        problems
    }
}
