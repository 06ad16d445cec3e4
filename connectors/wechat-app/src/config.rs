//! The `wechat-app` connector's config keys, their checks (each error names its
//! key), and the `doctor` checks. A mobile app has no authorize page and no
//! callback, so there is no `open_base_url` and no `callback_domain`.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Seconds, Secret};
use idbridge_core::{ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;
use wechat_api::{WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// The mobile app's AppID (`wx` + 16 hex) on the Open Platform.
    pub appid: String,
    /// Its AppSecret (or `appsecret_file`, which the broker reads into `appsecret`;
    /// redacted in `Debug`).
    pub appsecret: Secret,
    /// The Open Platform account (原始ID, `gh_…`) the app belongs to; scopes the
    /// unionid link key. Without it, this connector links nothing across apps.
    #[serde(default)]
    pub open_platform_id: Option<String>,
    #[serde(default = "default_api")]
    pub api_base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

fn default_api() -> BaseUrl {
    BaseUrl::new(DEFAULT_API_BASE_URL)
}

impl AppSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: AppSettings = parse_options(settings)?;
        let errors = cfg
            .app()
            .check(&key, "Open Platform > 管理中心 > 移动应用 > AppID");
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The keys every WeChat connector shares (a mobile app never uses WeChat's
    /// authorize pages, so their host stays the default).
    pub fn app(&self) -> wechat_api::login::AppKeys<'_> {
        wechat_api::login::AppKeys {
            appid: &self.appid,
            appsecret: self.appsecret.expose(),
            open_platform_id: self.open_platform_id.as_deref(),
            api_base_url: self.api_base_url.as_str(),
            open_base_url: DEFAULT_OPEN_BASE_URL,
            connect_timeout_secs: self.connect_timeout_secs.get(),
            timeout_secs: self.timeout_secs.get(),
        }
    }

    pub fn client(&self, id: &ConnectorId) -> Result<WeChatClient, Vec<ConfigError>> {
        self.app().client(id)
    }

    /// Warnings for `idbridge doctor`.
    pub fn doctor(&self, id: &ConnectorId) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{id}].{k}");
        let mut problems = Vec::new();
        if self.open_platform_id.is_none() {
            problems.push(Problem {
                key: key("open_platform_id"),
                message: "not set: people who sign in through the mobile app are not linked with their logins through your other WeChat apps (website QR, Official Account); set the Open Platform 原始ID the mobile app belongs to".into(),
                fatal: false,
            });
        }
        problems.extend(self.app().warnings(&key));
        problems
    }
}
