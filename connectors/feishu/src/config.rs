//! The `feishu` connector's keys, the hosts each `region` signs in on, and
//! the checks after parsing.

use idbridge_connector_kit::options::{parse_options, Keys, Seconds, Secret};
use idbridge_connector_oauth2::config::{endpoint_url, ClientKeys};
use idbridge_connector_oauth2::{ClientAuth, ClientConfig};
use idbridge_core::{ConfigError, ConnectorSettings};
use serde::Deserialize;

/// Feishu (China) or Lark (international): two platforms with their own
/// hosts, apps and identifiers (a `union_id` of one is unknown to the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Feishu,
    Lark,
}

impl Region {
    pub const NAMES: [&'static str; 2] = ["feishu", "lark"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "feishu" => Some(Region::Feishu),
            "lark" => Some(Region::Lark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Feishu => "feishu",
            Region::Lark => "lark",
        }
    }

    /// The host of the authorization page.
    pub fn accounts_url(self) -> &'static str {
        match self {
            Region::Feishu => "https://accounts.feishu.cn",
            Region::Lark => "https://accounts.larksuite.com",
        }
    }

    /// The host of the open platform's APIs (token, user_info).
    pub fn open_url(self) -> &'static str {
        match self {
            Region::Feishu => "https://open.feishu.cn",
            Region::Lark => "https://open.larksuite.com",
        }
    }

    /// Where the operator creates the app and sets its redirect URL.
    pub fn console(self) -> &'static str {
        match self {
            Region::Feishu => "https://open.feishu.cn/app",
            Region::Lark => "https://open.larksuite.com/app",
        }
    }
}

pub const AUTHORIZE_PATH: &str = "/open-apis/authen/v1/authorize";
pub const TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";
pub const USER_INFO_PATH: &str = "/open-apis/authen/v1/user_info";
/// The scope that makes the token endpoint return a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// The app's App ID (`cli_…`).
    pub client_id: String,
    /// The app's App Secret.
    pub client_secret: Option<Secret>,
    #[serde(default = "default_region")]
    pub region: String,
    /// A name for the developer account that owns the app: `union_id` is one
    /// person's id across the apps of one developer, and only there.
    pub developer: String,
    /// Extra scopes asked for on the authorization page.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Ask for `offline_access`: a refresh token (single use) comes back, so
    /// `recheck_on_refresh` can re-check the person.
    #[serde(default)]
    pub offline_access: bool,
    /// Only people of these tenants (`tenant_key`) may sign in; empty: anyone
    /// Feishu lets use the app.
    #[serde(default)]
    pub tenant_keys: Vec<String>,
    /// Overrides of the region's hosts (a simulator in tests).
    #[serde(default)]
    pub accounts_url: Option<String>,
    #[serde(default)]
    pub open_url: Option<String>,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

fn default_region() -> String {
    Region::Feishu.as_str().to_owned()
}

#[derive(Debug, Clone)]
pub struct FeishuSettings {
    pub region: Region,
    pub developer: String,
    pub client: ClientConfig,
    pub accounts_url: String,
    pub open_url: String,
    pub offline_access: bool,
    pub tenant_keys: Vec<String>,
}

impl FeishuSettings {
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.open_url)
    }

    pub fn user_info_url(&self) -> String {
        format!("{}{USER_INFO_PATH}", self.open_url)
    }

    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        keys.one_of("region", &raw.region, &Region::NAMES);
        let region = Region::parse(&raw.region).unwrap_or(Region::Feishu);
        let host = |given: &Option<String>, default: &str| {
            given
                .clone()
                .unwrap_or_else(|| default.to_owned())
                .trim_end_matches('/')
                .to_owned()
        };
        let accounts_url = host(&raw.accounts_url, region.accounts_url());
        let open_url = host(&raw.open_url, region.open_url());
        endpoint_url(&mut keys, "accounts_url", &accounts_url);
        endpoint_url(&mut keys, "open_url", &open_url);
        keys.check(
            "client_id",
            raw.client_id.starts_with("cli_"),
            "must be the app's App ID from the developer console (it starts with cli_)",
        );
        keys.check(
            "developer",
            !raw.developer.is_empty()
                && raw.developer.len() <= 64
                && raw
                    .developer
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "must name the developer account that owns the app (letters, digits, - _ .; at most 64): union_id is the same person only across one developer's apps, so every Feishu connector of one developer gets the same name",
        );
        for t in &raw.tenant_keys {
            keys.check(
                "tenant_keys",
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()),
                format!("{t:?} is not a tenant_key (letters and digits, as user_info returns it)"),
            );
        }
        let mut scopes = raw.scopes.clone();
        if raw.offline_access && !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
            scopes.push(OFFLINE_ACCESS.to_owned());
        }
        let offline_access = scopes.iter().any(|s| s == OFFLINE_ACCESS);
        let client = ClientKeys {
            client_id: &raw.client_id,
            client_secret: raw.client_secret.as_ref(),
            client_auth: ClientAuth::SecretPost.as_str(),
            scopes: &scopes,
            connect_timeout_secs: raw.connect_timeout_secs,
            timeout_secs: raw.timeout_secs,
        }
        .check(
            &mut keys,
            format!("{accounts_url}{AUTHORIZE_PATH}"),
            format!("{open_url}{TOKEN_PATH}"),
        );
        let (Some(mut client), true) = (client, keys.is_empty()) else {
            return Err(keys.finish(()).err().unwrap_or_default());
        };
        client.pkce = true;
        client.user_agent = concat!("idbridge-feishu/", env!("CARGO_PKG_VERSION")).to_owned();
        keys.finish(FeishuSettings {
            region,
            developer: raw.developer,
            client,
            accounts_url,
            open_url,
            offline_access,
            tenant_keys: raw.tenant_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use idbridge_connector_kit::testing;

    fn parse(options: serde_json::Value) -> Result<FeishuSettings, Vec<ConfigError>> {
        FeishuSettings::parse(&testing::settings("feishu", "feishu", options))
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"client_id": "cli_a5ca35a685b0x26e", "client_secret": "baBqE5um9LbFGDy3X7LcfxQX1sqpXlwy", "developer": "acme"})
    }

    #[test]
    fn the_region_switches_every_host() {
        let feishu = parse(base()).unwrap();
        assert_eq!(feishu.region, Region::Feishu);
        assert_eq!(
            feishu.client.authorization_url,
            "https://accounts.feishu.cn/open-apis/authen/v1/authorize"
        );
        assert_eq!(
            feishu.token_url(),
            "https://open.feishu.cn/open-apis/authen/v2/oauth/token"
        );
        assert_eq!(
            feishu.user_info_url(),
            "https://open.feishu.cn/open-apis/authen/v1/user_info"
        );
        let mut o = base();
        o["region"] = "lark".into();
        let lark = parse(o).unwrap();
        assert_eq!(lark.region, Region::Lark);
        assert_eq!(
            lark.client.authorization_url,
            "https://accounts.larksuite.com/open-apis/authen/v1/authorize"
        );
        assert_eq!(
            lark.client.token_url,
            "https://open.larksuite.com/open-apis/authen/v2/oauth/token"
        );
        assert_eq!(
            lark.user_info_url(),
            "https://open.larksuite.com/open-apis/authen/v1/user_info"
        );
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let mut o = base();
        o["region"] = "global".into();
        o["developer"] = "".into();
        o["client_id"] = "a5ca35".into();
        o["tenant_keys"] = serde_json::json!(["73 65"]);
        let keys: Vec<String> = parse(o).unwrap_err().into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "connectors[feishu].region",
                "connectors[feishu].client_id",
                "connectors[feishu].developer",
                "connectors[feishu].tenant_keys"
            ]
        );
    }

    #[test]
    fn offline_access_is_a_scope_and_turns_refresh_on() {
        let plain = parse(base()).unwrap();
        assert!(!plain.offline_access);
        assert!(plain.client.scopes.is_empty());
        let mut o = base();
        o["offline_access"] = true.into();
        let offline = parse(o).unwrap();
        assert!(offline.offline_access);
        assert_eq!(offline.client.scopes, ["offline_access"]);
    }
}
