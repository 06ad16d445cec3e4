//! A WeCom (企业微信) fake for one self-built app (自建应用): the web QR login
//! page (`/wwlogin/sso/login`, `login_type=CorpApp`), the in-WeCom authorize
//! page (`/connect/oauth2/authorize`), and the server API a sign-in calls
//! (`/cgi-bin/gettoken`, `/cgi-bin/auth/getuserinfo`, `/cgi-bin/user/get`,
//! and `/cgi-bin/auth/getuserdetail` for a `snsapi_privateinfo` sign-in),
//! answering `{"errcode":…,"errmsg":"…"}` with HTTP 200 as WeCom does.
//!
//! One server plays the three hosts (`login.work.weixin.qq.com`,
//! `open.weixin.qq.com`, `qyapi.weixin.qq.com`). Scripted through
//! [`WeComSim`]: members (userid, name, inside the app's visible range or
//! not), non-members (an `openid`), who signs in next, faults (system busy,
//! slow answers, a rotated secret, a non-trusted IP, expired corp tokens), and
//! its own clock ([`WeComSim::advance`]) so codes (5 minutes, single use) and
//! tokens (7200 s) expire without sleeping. `gettoken` fetches are counted.

pub mod dev;
mod routes;

use crate::server::Server;
use std::collections::HashMap;
use std::io;
use std::time::Duration;

/// How long a sign-in code lives (WeCom: 5 minutes, used once).
pub const CODE_TTL_SECS: i64 = 300;
/// How long a corp access token lives (`expires_in`).
pub const TOKEN_TTL_SECS: i64 = 7200;
/// How long a `user_ticket` lives (WeCom: 1800 s).
pub const TICKET_TTL_SECS: i64 = 1800;

/// A member of the corp (通讯录成员).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub userid: String,
    pub name: String,
    pub alias: Option<String>,
    pub position: Option<String>,
    pub department: Vec<u64>,
    /// Inside the app's visible range (可见范围); outside it `user/get`
    /// answers 60011 and the QR page says there is no permission.
    pub visible: bool,
    /// What `auth/getuserdetail` answers once the member allowed
    /// `snsapi_privateinfo` (the sensitive fields the admin picked).
    pub avatar: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub biz_mail: Option<String>,
}

impl Member {
    pub fn new(userid: &str, name: &str) -> Self {
        Self {
            userid: userid.to_owned(),
            name: name.to_owned(),
            alias: None,
            position: None,
            department: vec![1],
            visible: true,
            avatar: None,
            mobile: None,
            email: None,
            biz_mail: None,
        }
    }

    /// The sensitive fields `auth/getuserdetail` gives for this member.
    pub fn private_info(mut self, mobile: &str, biz_mail: &str, avatar: &str) -> Self {
        self.mobile = Some(mobile.to_owned());
        self.biz_mail = Some(biz_mail.to_owned());
        self.avatar = Some(avatar.to_owned());
        self
    }

    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_owned());
        self
    }

    pub fn position(mut self, position: &str) -> Self {
        self.position = Some(position.to_owned());
        self
    }

    pub fn outside_visible_range(mut self) -> Self {
        self.visible = false;
        self
    }
}

/// Who signs in on the next page visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This member scans and confirms.
    Member(String),
    /// A WeChat user who is not a member (an `openid` comes back).
    NonMember(String),
    /// The person refuses: back to `redirect_uri?state=STATE`, no code.
    Cancel,
    /// A page asks (dev mode): one button per member, the non-members, Cancel.
    Ask,
}

/// The self-built app registered at the fake.
#[derive(Debug, Clone)]
pub struct CorpApp {
    pub corp_id: String,
    pub agent_id: u64,
    pub secret: String,
    /// The app's trusted domain (可信域名): a `redirect_uri` on another host
    /// gets "该链接无法访问" (50001) and never comes back.
    pub trusted_domain: String,
}

/// Counters a test can assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// `gettoken` calls answered with a token (the same one while it is
    /// valid, as WeCom does).
    pub tokens_issued: u32,
    pub gettoken_calls: u32,
    pub getuserinfo_calls: u32,
    pub user_get_calls: u32,
    pub getuserdetail_calls: u32,
    pub qr_pages: u32,
    pub in_app_pages: u32,
}

pub(crate) enum Who {
    Member(String),
    NonMember(String),
}

pub(crate) struct Code {
    pub who: Who,
    pub issued_at: i64,
    pub used: bool,
    /// Issued by the in-app page with `snsapi_privateinfo`: `getuserinfo`
    /// gives a member in the visible range a `user_ticket`.
    pub private: bool,
}

pub(crate) struct State {
    pub app: CorpApp,
    pub members: Vec<Member>,
    pub non_members: Vec<String>,
    pub decision: Decision,
    pub codes: HashMap<String, Code>,
    /// user_ticket → (userid, expires at).
    pub tickets: HashMap<String, (String, i64)>,
    /// token → expires at (the fake's clock).
    pub tokens: HashMap<String, i64>,
    pub counters: Counters,
    pub clock_offset: i64,
    pub busy: bool,
    pub slow: Option<Duration>,
    pub ip_denied: bool,
}

impl State {
    pub(crate) fn now(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        wall + self.clock_offset
    }
}

pub(crate) type Shared = crate::server::Shared<State>;

/// The running fake.
pub struct WeComSim {
    server: Server<State>,
}

impl WeComSim {
    /// Start on 127.0.0.1 with a free port, the app registered, nobody in it.
    pub async fn start(app: CorpApp) -> io::Result<WeComSim> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        WeComSim::start_on(app, listener).await
    }

    /// Start on the given listener (a fixed dev-mode port).
    pub async fn start_on(app: CorpApp, listener: std::net::TcpListener) -> io::Result<WeComSim> {
        let state = State {
            app,
            members: Vec::new(),
            non_members: Vec::new(),
            decision: Decision::Cancel,
            codes: HashMap::new(),
            tickets: HashMap::new(),
            tokens: HashMap::new(),
            counters: Counters::default(),
            clock_offset: 0,
            busy: false,
            slow: None,
            ip_denied: false,
        };
        Ok(WeComSim {
            server: Server::start_on(state, listener, "wecom", routes::mount).await?,
        })
    }

    /// `http://127.0.0.1:PORT`: stands in for `https://login.work.weixin.qq.com`,
    /// `https://open.weixin.qq.com` and `https://qyapi.weixin.qq.com`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn add_member(&self, member: Member) {
        let mut st = self.server.lock();
        st.members.retain(|m| m.userid != member.userid);
        st.members.push(member);
    }

    /// A WeChat user outside the corp, known by this `openid`.
    pub fn add_non_member(&self, openid: &str) {
        self.server.lock().non_members.push(openid.to_owned());
    }

    pub fn decide(&self, decision: Decision) {
        self.server.lock().decision = decision;
    }

    /// Move the fake's clock forward (codes and tokens expire).
    pub fn advance(&self, secs: i64) {
        self.server.lock().clock_offset += secs;
    }

    /// Every API call answers `-1` "system busy".
    pub fn set_busy(&self, busy: bool) {
        self.server.lock().busy = busy;
    }

    /// Every API call waits this long before answering.
    pub fn set_slow(&self, delay: Option<Duration>) {
        self.server.lock().slow = delay;
    }

    /// The broker's address is not among the app's trusted IPs: 60020.
    pub fn set_ip_denied(&self, denied: bool) {
        self.server.lock().ip_denied = denied;
    }

    /// The app's secret is reset in the admin console (the broker's goes stale).
    pub fn set_secret(&self, secret: &str) {
        self.server.lock().app.secret = secret.to_owned();
    }

    /// Every corp token issued so far has expired (the next call with one
    /// answers 42001), as if 7200 s passed for them only.
    pub fn expire_tokens(&self) {
        let mut st = self.server.lock();
        for expires in st.tokens.values_mut() {
            *expires = i64::MIN;
        }
    }

    pub fn set_trusted_domain(&self, domain: &str) {
        self.server.lock().app.trusted_domain = domain.to_owned();
    }

    pub fn counters(&self) -> Counters {
        self.server.lock().counters.clone()
    }

    /// What the fake's clock says (unix seconds).
    pub fn now_unix(&self) -> i64 {
        self.server.lock().now()
    }

    /// Follow an authorize URL (QR or in-app) as the browser would, as the
    /// current decision: where the fake sends the browser back (`Ok`), or the
    /// page it stopped at (`Err`, its text). For tests without a browser.
    pub async fn visit(&self, url: &str) -> Result<String, String> {
        let url = url.split('#').next().unwrap_or(url);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        match resp.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) => Ok(l.to_owned()),
            None => Err(resp.text().await.unwrap_or_default()),
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
