//! What the server tells a connector about the request in front of it.

use serde::{Deserialize, Serialize};

/// Which kind of browser or client is asking, from the User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientClass {
    /// WeChat's in-app browser on a phone.
    WeChat,
    /// Desktop WeChat (`WindowsWechat`, or `MacWechat`).
    WeChatDesktop,
    /// A mini-program web view.
    WeChatMiniProgram,
    /// WeCom (企业微信): says MicroMessenger too, but is not WeChat.
    WeCom,
    /// DingTalk's (钉钉) in-app browser: `AliApp(DingTalk/…)`.
    DingTalk,
    /// Feishu's or Lark's (飞书) in-app browser: `Lark/…` (also `Feishu/…`).
    Feishu,
    /// Anything else.
    Browser,
}

impl ClientClass {
    /// Classify a User-Agent header. WeCom is checked before WeChat because its
    /// User-Agent also contains `MicroMessenger/`.
    pub fn from_user_agent(ua: &str) -> Self {
        let ua = ua.to_ascii_lowercase();
        if ua.contains("wxwork/") {
            ClientClass::WeCom
        } else if ua.contains("micromessenger/") {
            if ua.contains("miniprogram") {
                ClientClass::WeChatMiniProgram
            } else if ua.contains("windowswechat") || ua.contains("macwechat") {
                ClientClass::WeChatDesktop
            } else {
                ClientClass::WeChat
            }
        } else if ua.contains("dingtalk/") {
            ClientClass::DingTalk
        } else if ua.contains("lark/") || ua.contains("feishu/") {
            ClientClass::Feishu
        } else {
            ClientClass::Browser
        }
    }

    pub fn is_wechat(self) -> bool {
        matches!(
            self,
            ClientClass::WeChat | ClientClass::WeChatDesktop | ClientClass::WeChatMiniProgram
        )
    }
}

/// The two languages hosted pages speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Locale {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[default]
    #[serde(rename = "en")]
    En,
}

impl Locale {
    /// Pick from `ui_locales` (space separated, in order of preference) and then the
    /// Accept-Language header; English when nothing matches.
    pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> Self {
        let from_list = |list: &str, sep: char| {
            list.split(sep)
                .map(|tag| {
                    tag.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .find_map(|tag| {
                    if tag.starts_with("zh") {
                        Some(Locale::ZhCn)
                    } else if tag.starts_with("en") {
                        Some(Locale::En)
                    } else {
                        None
                    }
                })
        };
        ui_locales
            .and_then(|l| from_list(l, ' '))
            .or_else(|| accept_language.and_then(|l| from_list(l, ',')))
            .unwrap_or_default()
    }

    pub fn tag(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }
}

/// The request a connector is serving. Time is passed in, never read inside.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub user_agent: String,
    pub client_class: ClientClass,
    pub locale: Locale,
    /// Unix seconds.
    pub now: i64,
}

impl RequestContext {
    pub fn new(user_agent: &str, locale: Locale, now: i64) -> Self {
        Self {
            user_agent: user_agent.to_owned(),
            client_class: ClientClass::from_user_agent(user_agent),
            locale,
            now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wecom_is_not_wechat() {
        let ua = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.0 wxwork/4.0.0";
        assert_eq!(ClientClass::from_user_agent(ua), ClientClass::WeCom);
        assert!(!ClientClass::WeCom.is_wechat());
    }

    #[test]
    fn wechat_variants() {
        assert_eq!(
            ClientClass::from_user_agent("Mozilla/5.0 MicroMessenger/8.0.40 NetType/WIFI"),
            ClientClass::WeChat
        );
        assert_eq!(
            ClientClass::from_user_agent("Mozilla/5.0 MicroMessenger/7.0 WindowsWechat"),
            ClientClass::WeChatDesktop
        );
        assert_eq!(
            ClientClass::from_user_agent("Mozilla/5.0 micromessenger/8.0 miniProgram"),
            ClientClass::WeChatMiniProgram
        );
        assert_eq!(
            ClientClass::from_user_agent(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 AliApp(DingTalk/7.6.0) com.laiwang.DingTalk/34000000 Channel/201200 language/zh-Hans-CN"
            ),
            ClientClass::DingTalk
        );
        assert_eq!(
            ClientClass::from_user_agent(
                "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0 Mobile Safari/537.36 Lark/7.10.0 LarkLocale/zh_CN ChannelName/Feishu"
            ),
            ClientClass::Feishu
        );
        assert_eq!(
            ClientClass::from_user_agent("Mozilla/5.0 Firefox/130.0"),
            ClientClass::Browser
        );
    }

    #[test]
    fn locale_prefers_ui_locales_then_header() {
        assert_eq!(
            Locale::negotiate(Some("fr zh-CN"), Some("en")),
            Locale::ZhCn
        );
        assert_eq!(
            Locale::negotiate(None, Some("zh-TW,zh;q=0.9")),
            Locale::ZhCn
        );
        assert_eq!(Locale::negotiate(Some("de"), Some("fr")), Locale::En);
    }
}
