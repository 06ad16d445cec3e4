//! What the simulator knows before it starts: the WeChat apps, the test users,
//! and the limits it enforces. [`SimConfig::dev_default`] is the ready-made set.

use serde::{Deserialize, Serialize};

/// Everything the simulator serves: apps (appid + secret + kind) and test users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// WeChat apps registered in the simulator.
    pub apps: Vec<SimApp>,
    /// Test users; the first one is the default "current WeChat user".
    pub users: Vec<SimUser>,
}

/// One WeChat app as registered on the Open Platform or the Official Account platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimApp {
    /// `wx` + 16 hex digits.
    pub appid: String,
    /// AppSecret, 32 hex digits.
    pub secret: String,
    /// Which of WeChat's three app kinds this is.
    pub kind: AppKind,
    /// The Open Platform account (原始ID, `gh_...`) the app is bound to.
    /// `None`: not bound, so no `unionid` anywhere.
    pub open_platform_id: Option<String>,
    /// Authorization callback domain (授权回调域): host only, e.g. `127.0.0.1`.
    /// `host:port` is also accepted and then the port must match too.
    pub callback_domain: String,
}

/// WeChat's three kinds of app, which decide the pages and APIs an appid may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Open Platform website app (网站应用): `qrconnect`, scope `snsapi_login`.
    Website,
    /// Official Account (公众号): `oauth2/authorize` with `snsapi_base` or
    /// `snsapi_userinfo`, `cgi-bin` app tokens, customer-service messages.
    OfficialAccount,
    /// Open Platform mobile app (移动应用): codes come from the SDK only
    /// ([`crate::Simulator::issue_code`]), scope `snsapi_userinfo`.
    MobileApp,
    /// Mini Program (小程序): codes come from `wx.login` only
    /// ([`crate::Simulator::issue_login_code`]) and are exchanged at
    /// `sns/jscode2session`; they carry no scope (`wx.login` inside).
    MiniProgram,
}

impl AppKind {
    /// Whether `scope` may be requested by an app of this kind.
    pub fn allows_scope(self, scope: &str) -> bool {
        match self {
            AppKind::Website => scope == "snsapi_login",
            AppKind::OfficialAccount => scope == "snsapi_base" || scope == "snsapi_userinfo",
            AppKind::MobileApp => scope == "snsapi_userinfo",
            AppKind::MiniProgram => scope == MINI_PROGRAM_SCOPE,
        }
    }
}

/// The simulator's marker for a `wx.login` code (WeChat gives it no scope).
pub(crate) const MINI_PROGRAM_SCOPE: &str = "wx.login";

/// A test WeChat user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    /// The simulator's own handle for the user (never sent by WeChat; used in
    /// page element ids such as `#confirm-<id>` and in `sim_user=<id>`).
    pub id: String,
    /// Nickname as `/sns/userinfo` returns it (not unique, may hold emoji).
    pub nickname: String,
    /// Avatar URL ending in a size (`/0`, `/46`, `/64`, `/96`, `/132`), or empty.
    pub headimgurl: String,
}

/// Limits the simulator enforces; [`Default`] gives WeChat's documented numbers.
/// Change them at run time with [`crate::Simulator::set_limits`] (or
/// `POST /__sim/limits`) so a test can reach a limit with a few calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimLimits {
    /// App tokens minted per app per day (Beijing time) before 45009. WeChat: 2000.
    pub app_token_daily_quota: u32,
    /// `stable_token` calls with `force_refresh: true` per app per day before 45009. WeChat: 20.
    pub force_refresh_daily_quota: u32,
    /// Customer-service messages per user per 48 h window before 45047. WeChat: "a few"; 5 here.
    pub messages_per_window: u32,
    /// Code exchanges per app per minute before 45011. WeChat: 50,000.
    pub code_exchanges_per_minute: u32,
    /// How long a code lives, in seconds. WeChat's Official Account docs: 300
    /// (the website FAQ says 600).
    pub code_ttl_secs: i64,
}

impl Default for SimLimits {
    fn default() -> Self {
        SimLimits {
            app_token_daily_quota: 2000,
            force_refresh_daily_quota: 20,
            messages_per_window: 5,
            code_exchanges_per_minute: 50_000,
            code_ttl_secs: 300,
        }
    }
}

/// The apps and users of [`SimConfig::dev_default`], for dev mode and tests.
pub mod dev {
    /// The Open Platform account the main dev apps are bound to.
    pub const OPEN_PLATFORM_ID: &str = "gh_dev_platform";
    /// A second Open Platform account (its app's unionids differ from the first's).
    pub const OTHER_OPEN_PLATFORM_ID: &str = "gh_other_platform";

    /// Website app (qrconnect) bound to `gh_dev_platform`.
    pub const WEB_APPID: &str = "wx5d1e7c0a9b3f2401";
    /// Secret of [`WEB_APPID`].
    pub const WEB_SECRET: &str = "8b1f3c5e7a9d0b2c4e6f8a1b3c5d7e9f";
    /// Official Account bound to `gh_dev_platform`.
    pub const MP_APPID: &str = "wx5d1e7c0a9b3f2402";
    /// Secret of [`MP_APPID`].
    pub const MP_SECRET: &str = "9c2a4d6f8b0e1c3d5f7a9b2c4e6d8f0a";
    /// Mobile app bound to `gh_dev_platform`.
    pub const MOBILE_APPID: &str = "wx5d1e7c0a9b3f2403";
    /// Secret of [`MOBILE_APPID`].
    pub const MOBILE_SECRET: &str = "a3d5f7b9c1e2d4f6a8b0c2e4f6a8c0e2";
    /// Mini Program (小程序) bound to [`OPEN_PLATFORM_ID`].
    pub const MINI_PROGRAM_APPID: &str = "wx5d1e7c0a9b3f2408";
    /// Secret of [`MINI_PROGRAM_APPID`].
    pub const MINI_PROGRAM_SECRET: &str = "e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4";
    /// Website app not bound to any Open Platform account: no unionid.
    pub const UNBOUND_WEB_APPID: &str = "wx5d1e7c0a9b3f2404";
    /// Secret of [`UNBOUND_WEB_APPID`].
    pub const UNBOUND_WEB_SECRET: &str = "b4e6a8c0d2f3e5a7b9c1d3e5f7a9b1c3";
    /// Website app bound to the other platform, `gh_other_platform`.
    pub const OTHER_WEB_APPID: &str = "wx5d1e7c0a9b3f2405";
    /// Secret of [`OTHER_WEB_APPID`].
    pub const OTHER_WEB_SECRET: &str = "c5f7b9d1e3a4f6b8c0d2e4f6a8b0d2f4";
    /// Mobile app bound to the other platform, `gh_other_platform`.
    pub const OTHER_MOBILE_APPID: &str = "wx5d1e7c0a9b3f2406";
    /// Secret of [`OTHER_MOBILE_APPID`].
    pub const OTHER_MOBILE_SECRET: &str = "d6a8c0e2f4b5a7c9e1f3a5b7c9d1e3a5";

    /// A user with a plain nickname.
    pub const USER_ALICE: &str = "alice";
    /// A user with a Chinese nickname holding emoji.
    pub const USER_XIAOMING: &str = "xiaoming";
    /// Another user also nicknamed "Alice" (nicknames are not unique), with no avatar.
    pub const USER_ALICE2: &str = "alice2";
}

impl SimConfig {
    /// A ready set for dev mode and tests; see the crate docs for the table.
    /// `callback_domain` is the host the broker's callback runs on (e.g. `127.0.0.1`).
    pub fn dev_default(callback_domain: &str) -> SimConfig {
        let app = |appid: &str, secret: &str, kind: AppKind, platform: Option<&str>| SimApp {
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            kind,
            open_platform_id: platform.map(str::to_owned),
            callback_domain: callback_domain.to_owned(),
        };
        let platform = Some(dev::OPEN_PLATFORM_ID);
        SimConfig {
            apps: vec![
                app(dev::WEB_APPID, dev::WEB_SECRET, AppKind::Website, platform),
                app(
                    dev::MP_APPID,
                    dev::MP_SECRET,
                    AppKind::OfficialAccount,
                    platform,
                ),
                app(
                    dev::MOBILE_APPID,
                    dev::MOBILE_SECRET,
                    AppKind::MobileApp,
                    platform,
                ),
                app(
                    dev::MINI_PROGRAM_APPID,
                    dev::MINI_PROGRAM_SECRET,
                    AppKind::MiniProgram,
                    platform,
                ),
                app(
                    dev::UNBOUND_WEB_APPID,
                    dev::UNBOUND_WEB_SECRET,
                    AppKind::Website,
                    None,
                ),
                app(
                    dev::OTHER_WEB_APPID,
                    dev::OTHER_WEB_SECRET,
                    AppKind::Website,
                    Some(dev::OTHER_OPEN_PLATFORM_ID),
                ),
                app(
                    dev::OTHER_MOBILE_APPID,
                    dev::OTHER_MOBILE_SECRET,
                    AppKind::MobileApp,
                    Some(dev::OTHER_OPEN_PLATFORM_ID),
                ),
            ],
            users: vec![
                SimUser {
                    id: dev::USER_ALICE.to_owned(),
                    nickname: "Alice".to_owned(),
                    headimgurl: "https://thirdwx.qlogo.cn/mmopen/vi_32/SimAvatarAlice/132"
                        .to_owned(),
                },
                SimUser {
                    id: dev::USER_XIAOMING.to_owned(),
                    nickname: "王小明🐼✨".to_owned(),
                    headimgurl: "https://thirdwx.qlogo.cn/mmopen/vi_32/SimAvatarXiaoming/0"
                        .to_owned(),
                },
                SimUser {
                    id: dev::USER_ALICE2.to_owned(),
                    nickname: "Alice".to_owned(),
                    headimgurl: String::new(),
                },
            ],
        }
    }
}
