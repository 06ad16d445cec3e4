//! # wechat-sim: a WeChat simulator
//!
//! A real HTTP server on 127.0.0.1 that behaves like WeChat's login pages
//! (open.weixin.qq.com) and APIs (api.weixin.qq.com), on the same paths, so the
//! broker's WeChat connectors can be tested end to end and people can "sign in
//! with WeChat" in dev mode without a WeChat account. The rules it follows are
//! those of `shared/design/WECHAT.md`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wechat_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::dev_default("127.0.0.1")).await?;
//! let base = sim.base_url(); // serves /connect/..., /sns/..., /cgi-bin/..., /__sim/...
//! # let _ = base; sim.stop().await; Ok(()) }
//! ```
//!
//! ## Dev defaults ([`SimConfig::dev_default`], constants in [`dev`])
//!
//! | appid | secret | kind | Open Platform |
//! |---|---|---|---|
//! | `wx5d1e7c0a9b3f2401` | `8b1f3c5e7a9d0b2c4e6f8a1b3c5d7e9f` | Website | `gh_dev_platform` |
//! | `wx5d1e7c0a9b3f2402` | `9c2a4d6f8b0e1c3d5f7a9b2c4e6d8f0a` | OfficialAccount | `gh_dev_platform` |
//! | `wx5d1e7c0a9b3f2403` | `a3d5f7b9c1e2d4f6a8b0c2e4f6a8c0e2` | MobileApp | `gh_dev_platform` |
//! | `wx5d1e7c0a9b3f2404` | `b4e6a8c0d2f3e5a7b9c1d3e5f7a9b1c3` | Website | none (no unionid) |
//! | `wx5d1e7c0a9b3f2405` | `c5f7b9d1e3a4f6b8c0d2e4f6a8b0d2f4` | Website | `gh_other_platform` |
//! | `wx5d1e7c0a9b3f2406` | `d6a8c0e2f4b5a7c9e1f3a5b7c9d1e3a5` | MobileApp | `gh_other_platform` |
//!
//! All use the callback domain given to `dev_default`. Users: `alice` ("Alice",
//! avatar ending `/132`), `xiaoming` ("王小明🐼✨", avatar ending `/0`), `alice2`
//! (also "Alice": nicknames are not unique; empty avatar).
//!
//! ## Identifiers
//! openid = `o` + base64url(HMAC-SHA256(appid, "openid\0" + user id))[..27]: per
//! app. unionid: the same with the Open Platform id as key: per platform, absent
//! for unbound apps. [`Simulator::openid`] / [`Simulator::unionid`] predict them.
//!
//! ## Pages, and how a browser or a test drives them
//! * `GET /connect/qrconnect?appid&redirect_uri&response_type=code&scope=snsapi_login&state[&lang=cn|en]`:
//!   validated like WeChat; errors are HTML pages (HTTP 200, `#error-message`,
//!   `#error-code` with `data-errcode`), never callbacks. On success, the "scan"
//!   page: one submit button per test user, `#confirm-<userid>` ("确认登录" /
//!   "Confirm"), and `#refuse` ("拒绝"). Confirm → 302 to
//!   `redirect_uri?code=CODE&state=STATE` (appended to any existing query);
//!   refuse → 302 to `redirect_uri?state=STATE`. `#lang-switch` flips the language.
//!   The buttons post to `POST /connect/sim/decide` (`flow`, `user` or `decision=refuse`).
//! * `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`:
//!   Official Accounts only; needs a `MicroMessenger/` User-Agent (WeCom's
//!   `wxwork/` does not count). The "current WeChat user" is `sim_user=<id>` on
//!   the URL, else the `sim_wechat_user` cookie (set by confirming on a consent
//!   page, or on the `/__sim/` index page via `#as-<userid>`), else the first
//!   user. `snsapi_base` redirects at once with a code for that user;
//!   `snsapi_userinfo` shows a consent page: `#allow` (current user),
//!   `#confirm-<userid>` (allow as that user), `#refuse`.
//!   `sim_snapshot=1` with `snsapi_userinfo` simulates a page opened from Moments:
//!   it redirects at once, and the code's token has `is_snapshotuser: 1`, a
//!   virtual openid/unionid, and userinfo gives "微信用户" with a grey avatar.
//! * The authorize parameters must come in WeChat's order (appid, redirect_uri,
//!   response_type, scope, state); the simulator shows an error page otherwise.
//!   Put simulator-only parameters (`sim_user`, `sim_snapshot`) before the
//!   `#wechat_redirect` fragment, or they never reach the server.
//! * Embedded QR: `GET /connect/zh_CN/htmledition/js/wxLogin.js` stands in for
//!   res.wx.qq.com's script; `new WxLogin({id, appid, scope, redirect_uri,
//!   state, self_redirect, lang, ...})` puts an iframe with a compact qrconnect
//!   page (`login_type=jssdk`: WeChat's own parameter order, no response_type)
//!   into the element. The confirm form targets `_top` unless
//!   `self_redirect: true`. `style`, `href`, `stylelite` are accepted and ignored.
//! * Under a [`FaultKind::DoubleCallback`] fault, a confirm (or a silent
//!   `snsapi_base`/snapshot redirect) answers with a small HTML page
//!   (`#double-callback`) that loads `redirect_uri?code=CODE1&state=S` in a
//!   hidden iframe (`#first-callback`) and, when it has loaded (or after 2 s
//!   by meta refresh), replaces the window with `redirect_uri?code=CODE2&state=S`
//!   (also the link `#second-callback`). Either code exchanges; whichever is
//!   exchanged second gets 40163, as WeChat does. The URLs of the last confirm
//!   are in [`Simulator::last_redirects`] and `GET /__sim/redirects`.
//! * [`Simulator::scan`] / [`Simulator::refuse`] do the same steps without a
//!   browser and return the callback URL(s).
//!
//! ## APIs
//! `/sns/oauth2/access_token`, `/sns/oauth2/refresh_token`, `/sns/userinfo`,
//! `/sns/auth` answer JSON labelled `text/plain`; `/cgi-bin/token`,
//! `/cgi-bin/stable_token`, `/cgi-bin/message/custom/send` answer
//! `application/json; encoding=utf-8`. Errors are HTTP 200 with
//! `{"errcode":N,"errmsg":"... rid: xxxxxxxx-xxxxxxxx-xxxxxxxx"}`.
//! Lifetimes follow the sim clock ([`Simulator::advance`]): codes 5 min, user
//! access tokens 2 h, refresh tokens 30 days, app tokens 2 h; a superseded app
//! token works 5 more minutes. Limits are in [`SimLimits`].
//!
//! ## Admin API (`/__sim/`)
//! `GET /__sim/` (index page), `GET|POST|DELETE /__sim/faults` (JSON form in
//! [`Fault`]'s docs: `{"endpoint":"access_token","kind":"busy","times":1}`),
//! `GET /__sim/counters`, `GET /__sim/messages`, `GET /__sim/redirects`,
//! `POST /__sim/advance?secs=N`, `GET|POST /__sim/limits` (partial JSON),
//! `POST /__sim/interaction?appid&user`, `POST /__sim/codes?appid&user[&scope][&snapshot=1]`
//! (an SDK code, for the mobile app flow: `{"code": "..."}`; `snapshot=1` makes
//! it a snapshot-mode (virtual) user's, as [`Simulator::issue_snapshot_code`]),
//! `POST /__sim/wechat-user` (`user=ID`).

mod admin;
mod api;
mod config;
mod conn;
mod fault;
mod ids;
mod pages;
mod shared;
mod state;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use config::{dev, AppKind, SimApp, SimConfig, SimLimits, SimUser};
pub use fault::{Endpoint, Fault, FaultKind};
pub use state::{Counters, SentMessage};

use shared::Shared;

/// Errors of the Rust-side helpers (the HTTP side answers like WeChat instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No app with this appid.
    #[error("unknown appid {0}")]
    UnknownApp(String),
    /// No test user with this id.
    #[error("unknown test user {0}")]
    UnknownUser(String),
    /// The app's kind cannot request this scope.
    #[error("app {appid} ({kind:?}) cannot request scope {scope}")]
    ScopeNotAllowed {
        /// The app.
        appid: String,
        /// Its kind.
        kind: AppKind,
        /// The scope asked for.
        scope: String,
    },
    /// Not a phone number as `+`, country code and number.
    #[error("{0:?} is not a phone number as +<country code><number>, e.g. +8613800138000")]
    BadPhone(String),
    /// What WeChat's page would show instead of calling back.
    #[error("WeChat would show an error page: {message} (code {code:?})")]
    Page {
        /// The page's error code, e.g. 10003, if it shows one.
        code: Option<i64>,
        /// The page's (Chinese) message.
        message: String,
    },
}

impl From<pages::PageError> for SimError {
    fn from(e: pages::PageError) -> Self {
        SimError::Page {
            code: e.code,
            message: e.zh,
        }
    }
}

/// `+8613800138000` → (`86`, `13800138000`); other countries' codes are one to
/// three digits: the mainland's `86` is recognised, else `1` (North America)
/// or the first two digits.
pub(crate) fn split_phone(phone: &str) -> Option<(&str, &str)> {
    let digits = phone.strip_prefix('+')?;
    if digits.len() < 8 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let split = if digits.starts_with("86") {
        2
    } else if digits.starts_with('1') {
        1
    } else {
        2
    };
    Some(digits.split_at(split))
}

pub(crate) fn issue_code(
    st: &mut state::State,
    appid: &str,
    user_id: &str,
    scope: Option<&str>,
    snapshot: bool,
    now: i64,
) -> Result<String, SimError> {
    let app = st
        .app(appid)
        .ok_or_else(|| SimError::UnknownApp(appid.to_owned()))?;
    let kind = app.kind;
    let scope = scope.unwrap_or(match kind {
        AppKind::Website => "snsapi_login",
        AppKind::OfficialAccount | AppKind::MobileApp => "snsapi_userinfo",
        AppKind::MiniProgram => config::MINI_PROGRAM_SCOPE,
    });
    if st.user(user_id).is_none() {
        return Err(SimError::UnknownUser(user_id.to_owned()));
    }
    if !kind.allows_scope(scope) {
        return Err(SimError::ScopeNotAllowed {
            appid: appid.to_owned(),
            kind,
            scope: scope.to_owned(),
        });
    }
    let grant = state::Grant {
        appid: appid.to_owned(),
        user_id: user_id.to_owned(),
        scope: scope.to_owned(),
        // Only a snsapi_userinfo grant has a profile to make virtual.
        snapshot: snapshot && scope == "snsapi_userinfo",
    };
    Ok(st.new_code(grant, now))
}

/// A running simulator. Dropping it stops the server; [`Simulator::stop`] also
/// waits for that.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

fn app_factory(
    data: web::Data<Shared>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data)
        .app_data(web::PayloadConfig::new(1 << 20))
        .route("/connect/qrconnect", web::get().to(pages::qrconnect))
        .route(
            "/connect/oauth2/authorize",
            web::get().to(pages::oauth2_authorize),
        )
        .route("/connect/sim/decide", web::post().to(pages::decide))
        .route(
            "/connect/zh_CN/htmledition/js/wxLogin.js",
            web::get().to(pages::wx_login_js),
        )
        .route("/sns/oauth2/access_token", web::get().to(api::access_token))
        .route(
            "/sns/oauth2/access_token",
            web::post().to(api::access_token),
        )
        .route(
            "/sns/oauth2/refresh_token",
            web::get().to(api::refresh_token),
        )
        .route(
            "/sns/oauth2/refresh_token",
            web::post().to(api::refresh_token),
        )
        .route("/sns/userinfo", web::get().to(api::userinfo))
        .route("/sns/userinfo", web::post().to(api::userinfo))
        .route("/sns/auth", web::get().to(api::auth))
        .route("/sns/auth", web::post().to(api::auth))
        .route("/sns/jscode2session", web::get().to(api::jscode2session))
        .route(
            "/wxa/business/getuserphonenumber",
            web::post().to(api::user_phone_number),
        )
        .route("/cgi-bin/token", web::get().to(api::cgi_token))
        .route("/cgi-bin/stable_token", web::post().to(api::stable_token))
        .route(
            "/cgi-bin/message/custom/send",
            web::post().to(api::custom_send),
        )
        .service(admin::scope())
        .default_service(web::to(api::not_found))
}

impl Simulator {
    /// Starts on 127.0.0.1 with a free port; the server runs in the background.
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        Simulator::start_on(config, listener).await
    }

    /// Starts on the given listener (e.g. a fixed dev-mode port).
    pub async fn start_on(
        config: SimConfig,
        listener: std::net::TcpListener,
    ) -> io::Result<Simulator> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || app_factory(data.clone()))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .on_connect(conn::on_connect)
            .listen(listener)?
            .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, "wechat simulator listening");
        Ok(Simulator {
            shared,
            addr,
            handle: Some(handle),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: stands in for both `https://open.weixin.qq.com`
    /// and `https://api.weixin.qq.com`.
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Moves the simulator's clock forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.shared.clock.advance(secs);
    }

    /// The sim clock, in seconds since the Unix epoch.
    pub fn now_unix(&self) -> i64 {
        self.shared.clock.now_ms() / 1000
    }

    /// Adds a fault (faults match in the order they were set).
    pub fn set_fault(&self, fault: Fault) {
        self.shared.with(|st, _| st.faults.push(fault));
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.with(|st, _| st.faults.clear());
    }

    /// The faults still active (with their remaining `times`).
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.with(|st, _| st.faults.list())
    }

    /// Calls seen so far.
    pub fn counters(&self) -> Counters {
        self.shared.with(|st, _| st.counters.clone())
    }

    /// Customer-service messages delivered so far.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.shared.with(|st, _| st.messages.clone())
    }

    /// The callback URL(s) of the last confirm or refusal on a page (two under
    /// a DoubleCallback fault, in the order a browser loads them).
    pub fn last_redirects(&self) -> Vec<String> {
        self.shared.with(|st, _| st.last_redirects.clone())
    }

    /// The user's openid in `appid`.
    pub fn openid(&self, appid: &str, user_id: &str) -> String {
        ids::openid(appid, user_id)
    }

    /// The user's unionid as `appid` sees it; `None` if the app is unknown or unbound.
    pub fn unionid(&self, appid: &str, user_id: &str) -> Option<String> {
        self.shared.with(|st, _| {
            st.app(appid)
                .and_then(|a| a.open_platform_id.as_deref())
                .map(|platform| ids::unionid(platform, user_id))
        })
    }

    /// A code as the WeChat SDK hands it to a mobile app (works for any app
    /// kind with a scope it may request: Website `snsapi_login`, Official
    /// Account `snsapi_base`/`snsapi_userinfo`, MobileApp `snsapi_userinfo`).
    pub fn issue_code(&self, appid: &str, user_id: &str, scope: &str) -> Result<String, SimError> {
        self.shared
            .with(|st, now| issue_code(st, appid, user_id, Some(scope), false, now))
    }

    /// A code as `wx.login` hands it to a Mini Program, for `sns/jscode2session`.
    pub fn issue_login_code(&self, appid: &str, user_id: &str) -> Result<String, SimError> {
        self.shared
            .with(|st, now| issue_code(st, appid, user_id, None, false, now))
    }

    /// A code as the Mini Program's `getPhoneNumber` button hands it out, for
    /// `wxa/business/getuserphonenumber`: the person allowed sharing `phone`,
    /// `+` country code and number (`+8613800138000`). Single use, 5 minutes.
    pub fn issue_phone_code(&self, appid: &str, phone: &str) -> Result<String, SimError> {
        let (country, number) =
            split_phone(phone).ok_or_else(|| SimError::BadPhone(phone.to_owned()))?;
        self.shared
            .with(|st, now| st.issue_phone_code(appid, country, number, now))
            .ok_or_else(|| SimError::UnknownApp(appid.to_owned()))
    }

    /// An SDK code (`snsapi_userinfo`) whose token is a snapshot-mode user's:
    /// `is_snapshotuser: 1`, a virtual openid and unionid, and userinfo's
    /// "微信用户" with a grey avatar. WeChat documents snapshot mode for pages
    /// opened from Moments; this lets a test check that a mobile-app connector
    /// refuses such a user too.
    pub fn issue_snapshot_code(&self, appid: &str, user_id: &str) -> Result<String, SimError> {
        self.shared
            .with(|st, now| issue_code(st, appid, user_id, Some("snsapi_userinfo"), true, now))
    }

    /// The user messaged the Official Account: opens (or reopens) the 48 h
    /// window for customer-service messages. Unknown appid or user: logged, ignored.
    pub fn mark_interaction(&self, appid: &str, user_id: &str) {
        if !self
            .shared
            .with(|st, now| st.mark_interaction(appid, user_id, now))
        {
            tracing::warn!(
                appid,
                user_id,
                "wechat-sim: mark_interaction for unknown appid or user"
            );
        }
    }

    /// What a browser inside WeChat ends up at when `user_id` opens
    /// `authorize_url` (qrconnect or oauth2/authorize) and confirms: the
    /// callback URL(s), or the page's error.
    pub fn scan(&self, authorize_url: &str, user_id: &str) -> Result<Vec<String>, SimError> {
        self.shared
            .with(|st, now| pages::scan(st, authorize_url, user_id, now))
            .map_err(SimError::from)
    }

    /// Where a browser ends up when the person refuses on `authorize_url`.
    pub fn refuse(&self, authorize_url: &str) -> Result<String, SimError> {
        self.shared
            .with(|st, now| pages::refuse_url(st, authorize_url, now))
            .map_err(SimError::from)
    }

    /// Replaces the limits (quotas, message cap, code lifetime).
    pub fn set_limits(&self, limits: SimLimits) {
        self.shared.with(|st, _| st.limits = limits);
    }

    /// The limits in force.
    pub fn limits(&self) -> SimLimits {
        self.shared.with(|st, _| st.limits)
    }

    /// Binds an app to an Open Platform account (or unbinds it): what happens
    /// on WeChat's side the day an operator binds the app. Openids do not change.
    pub fn set_open_platform(
        &self,
        appid: &str,
        open_platform_id: Option<&str>,
    ) -> Result<(), SimError> {
        self.shared.with(|st, _| {
            let app = st
                .app_mut(appid)
                .ok_or_else(|| SimError::UnknownApp(appid.to_owned()))?;
            app.open_platform_id = open_platform_id.map(str::to_owned);
            Ok(())
        })
    }

    /// The person withdraws `appid`'s authorization in WeChat (Settings > Privacy >
    /// Authorization Management): every user token and refresh token WeChat gave
    /// that app for them stops working (refresh: 40030, `sns/auth`: 40001).
    /// Returns how many refresh tokens were revoked.
    pub fn revoke_authorization(&self, appid: &str, user_id: &str) -> usize {
        self.shared
            .with(|st, _| st.revoke_authorization(appid, user_id))
    }

    /// Changes a user's nickname and avatar (WeChat profiles change; avatar URLs go stale).
    pub fn update_user(&self, user: SimUser) -> Result<(), SimError> {
        self.shared.with(|st, _| {
            let slot = st
                .user_mut(&user.id)
                .ok_or_else(|| SimError::UnknownUser(user.id.clone()))?;
            *slot = user;
            Ok(())
        })
    }

    /// Restricts `cgi-bin/token` and `stable_token` for `appid` to these client
    /// IPs (else 40164); `None` lifts the restriction.
    pub fn set_ip_allowlist(&self, appid: &str, ips: Option<Vec<IpAddr>>) -> Result<(), SimError> {
        self.shared.with(|st, _| {
            if st.app(appid).is_none() {
                return Err(SimError::UnknownApp(appid.to_owned()));
            }
            st.set_ip_allowlist(appid, ips);
            Ok(())
        })
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(true).await;
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "wechat-sim: server task failed");
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The stop command is sent at once; nobody waits for it here.
            drop(handle.stop(false));
        }
    }
}
