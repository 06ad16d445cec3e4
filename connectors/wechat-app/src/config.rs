//! The `wechat-app` connector's config: the keys of a WeChat app that only
//! exchanges codes (`wechat_api::ExchangeSettings`), with the mobile app's
//! AppID location and doctor wording.

use idbridge_core::{ConfigError, ConnectorId, ConnectorSettings, Problem};

pub use wechat_api::ExchangeSettings as AppSettings;

/// Where the Open Platform shows a mobile app's AppID.
const APPID_WHERE: &str = "Open Platform > 管理中心 > 移动应用 > AppID";

pub fn parse(settings: &ConnectorSettings) -> Result<AppSettings, Vec<ConfigError>> {
    let cfg = AppSettings::parse(settings, APPID_WHERE)?;
    if cfg.phone_number {
        return Err(vec![ConfigError::new(
            format!("connectors[{}].phone_number", settings.id),
            "is for wechat-miniprogram connectors only (the Mini Program's getPhoneNumber button); a mobile app has no such code: remove the key",
        )]);
    }
    Ok(cfg)
}

pub fn doctor(cfg: &AppSettings, id: &ConnectorId) -> Vec<Problem> {
    cfg.doctor(id, "the mobile app")
}
