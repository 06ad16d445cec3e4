//! The config keys of a WeChat app whose codes reach the broker through token
//! exchange (RFC 8693), never through a browser: the mobile app's SDK code
//! (`wechat-app`) and the Mini Program's `wx.login` code
//! (`wechat-miniprogram`). Neither has an authorize page or a callback, so there
//! is no `open_base_url` and no `callback_domain`. Each error names its key.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Seconds, Secret};
use idbridge_core::{ConfigError, ConnectorId, ConnectorSettings, Problem};
use serde::Deserialize;

use crate::{login::AppKeys, WeChatClient, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSettings {
    /// The app's AppID (`wx` + 16 hex).
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
    /// Mini Program only: accept a `getPhoneNumber` code beside the `wx.login`
    /// code and record the number WeChat returns as the account's verified
    /// phone (`wxa/business/getuserphonenumber`, with the shared app token).
    #[serde(default)]
    pub phone_number: bool,
}

fn default_api() -> BaseUrl {
    BaseUrl::new(DEFAULT_API_BASE_URL)
}

impl ExchangeSettings {
    /// `appid_where`: where WeChat shows this kind of app's AppID.
    pub fn parse(
        settings: &ConnectorSettings,
        appid_where: &str,
    ) -> Result<Self, Vec<ConfigError>> {
        let id = &settings.id;
        let key = |k: &str| format!("connectors[{id}].{k}");
        let cfg: ExchangeSettings = parse_options(settings)?;
        let errors = cfg.app().check(&key, appid_where);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The keys every WeChat connector shares (WeChat's authorize pages are never
    /// used, so their host stays the default).
    pub fn app(&self) -> AppKeys<'_> {
        AppKeys {
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

    /// Warnings for `idbridge doctor`; `app_kind` names the app for the
    /// missing-`open_platform_id` warning ("the mobile app", "the Mini Program").
    pub fn doctor(&self, id: &ConnectorId, app_kind: &str) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{id}].{k}");
        let mut problems = Vec::new();
        if self.open_platform_id.is_none() {
            problems.push(Problem {
                key: key("open_platform_id"),
                message: format!("not set: people who sign in through {app_kind} are not linked with their logins through your other WeChat apps (website QR, Official Account, mobile app, Mini Program); set the Open Platform 原始ID {app_kind} belongs to"),
                fatal: false,
            });
        }
        problems.extend(self.app().warnings(&key));
        problems
    }
}
