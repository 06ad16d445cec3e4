//! A DingTalk (钉钉) fake: the sign-in page (`/oauth2/auth`, back to the app
//! with **`authCode`** and `state`), the v1.0 user token
//! (`POST /v1.0/oauth2/userAccessToken`, JSON both ways, the authorization
//! code and refresh grants, `corpId` when scope `corpid` was asked for) and
//! `GET /v1.0/contact/users/me` (the token in the
//! `x-acs-dingtalk-access-token` header), with DingTalk's error bodies
//! `{"code","message","requestid"}` on HTTP 4xx/5xx.
//!
//! One server plays both hosts (`login.dingtalk.com` and `api.dingtalk.com`).
//! Scripted through [`DingTalkSim`]: people (unionId, nick, mobile, the
//! organisations they belong to), who approves or cancels, the person signed
//! in to the DingTalk client (its in-app browser signs them in without a
//! page), per-app `openId`s, authCodes that are single-use and expire
//! ([`CODE_TTL_SECS`], on the fake's clock, moved with [`DingTalkSim::advance`]),
//! and faults: busy (503), slow, throttled, a changed secret, a missing
//! permission, a person who withdrew the app.

pub mod dev;
mod routes;

use crate::server::Server;
use std::collections::HashMap;
use std::io;
use std::time::Duration;

/// How long an authCode lives (DingTalk: a few minutes; the fake: 5).
pub const CODE_TTL_SECS: i64 = 300;
/// `expireIn` of a user token.
pub const TOKEN_TTL_SECS: i64 = 7200;

/// A DingTalk account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Stable within the developer organisation (the fake has one).
    pub union_id: String,
    pub nick: String,
    pub mobile: Option<String>,
    /// Country calling code, e.g. `86`.
    pub state_code: String,
    pub email: Option<String>,
    /// The organisations (corpId, name) the person is a member of.
    pub corps: Vec<(String, String)>,
}

impl Person {
    pub fn new(union_id: &str, nick: &str) -> Self {
        Self {
            union_id: union_id.to_owned(),
            nick: nick.to_owned(),
            mobile: None,
            state_code: "86".into(),
            email: None,
            corps: Vec::new(),
        }
    }

    pub fn mobile(mut self, mobile: &str) -> Self {
        self.mobile = Some(mobile.to_owned());
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    pub fn corp(mut self, corp_id: &str, name: &str) -> Self {
        self.corps.push((corp_id.to_owned(), name.to_owned()));
        self
    }
}

/// An app registered at the fake.
#[derive(Debug, Clone)]
pub struct DingApp {
    pub client_id: String,
    pub client_secret: String,
    /// A `redirect_uri` must start with it (the app's redirect URL).
    pub redirect_prefix: String,
}

/// What the sign-in page does for the next visitors (outside DingTalk's
/// own browser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This person scans and confirms; with scope `corpid` they pick the
    /// request's `corpId` if they are in it, else `corp`, else their first.
    Approve {
        union_id: String,
        corp: Option<String>,
    },
    /// The person cancels: back with `error=access_denied`.
    Deny,
    /// A page asks (dev mode): one button per person (and organisation), and Cancel.
    Ask,
}

impl Decision {
    pub fn approve(union_id: &str) -> Self {
        Decision::Approve {
            union_id: union_id.to_owned(),
            corp: None,
        }
    }

    pub fn approve_for(union_id: &str, corp: &str) -> Self {
        Decision::Approve {
            union_id: union_id.to_owned(),
            corp: Some(corp.to_owned()),
        }
    }
}

/// Counters a test can assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub authorizations: u32,
    /// Sign-ins answered for DingTalk's in-app browser without a page.
    pub in_app: u32,
    pub token_requests: u32,
    pub me_calls: u32,
}

/// The faults the fake can play.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every API call answers 503 `ServiceUnavailable`.
    pub busy: bool,
    /// Every API call answers 403 `Forbidden.AccessDenied.QpsLimitForApi`.
    pub throttled: bool,
    /// `users/me` answers 403 `Forbidden.AccessDenied.AccessTokenPermissionDenied`.
    pub no_contact_permission: bool,
    /// Every API call waits this long first.
    pub delay: Option<Duration>,
}

pub(crate) struct Grant {
    pub client_id: String,
    pub union_id: String,
    pub corp_id: Option<String>,
    pub issued_at: i64,
    pub used: bool,
}

#[derive(Clone)]
pub(crate) struct TokenInfo {
    pub client_id: String,
    pub union_id: String,
    pub corp_id: Option<String>,
}

pub(crate) struct State {
    pub apps: Vec<DingApp>,
    pub people: Vec<Person>,
    pub decision: Decision,
    pub client_user: Option<String>,
    pub codes: HashMap<String, Grant>,
    pub tokens: HashMap<String, TokenInfo>,
    pub refresh_tokens: HashMap<String, TokenInfo>,
    pub faults: Faults,
    pub counters: Counters,
    pub clock_offset: i64,
    pub last_token_body: Option<serde_json::Value>,
}

impl State {
    pub fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
            + self.clock_offset
    }

    pub fn app(&self, client_id: &str) -> Option<&DingApp> {
        self.apps.iter().find(|a| a.client_id == client_id)
    }

    pub fn person(&self, union_id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.union_id == union_id)
    }
}

/// The per-app `openId` of a person: differs between apps, stable in one.
pub fn open_id(client_id: &str, union_id: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{client_id}\n{union_id}").as_bytes(),
    );
    d.as_ref()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) type Shared = crate::server::Shared<State>;

/// The running fake.
pub struct DingTalkSim {
    server: Server<State>,
}

impl DingTalkSim {
    /// Start on 127.0.0.1 with a free port, `app` registered, nobody signed
    /// in yet (add people, then [`DingTalkSim::decide`]).
    pub async fn start(app: DingApp) -> io::Result<DingTalkSim> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        DingTalkSim::start_on(app, listener).await
    }

    /// Start on the given listener (a fixed dev-mode port).
    pub async fn start_on(
        app: DingApp,
        listener: std::net::TcpListener,
    ) -> io::Result<DingTalkSim> {
        let state = State {
            apps: vec![app],
            people: Vec::new(),
            decision: Decision::Deny,
            client_user: None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            faults: Faults::default(),
            counters: Counters::default(),
            clock_offset: 0,
            last_token_body: None,
        };
        Ok(DingTalkSim {
            server: Server::start_on(state, listener, "dingtalk", routes::mount).await?,
        })
    }

    /// `http://127.0.0.1:PORT`: stands in for `https://login.dingtalk.com`
    /// and `https://api.dingtalk.com` alike.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Register another app (another developer's, or a second one).
    pub fn add_app(&self, app: DingApp) {
        let mut st = self.server.lock();
        st.apps.retain(|a| a.client_id != app.client_id);
        st.apps.push(app);
    }

    /// Add (or replace, by unionId) a person.
    pub fn add_person(&self, person: Person) {
        let mut st = self.server.lock();
        st.people.retain(|p| p.union_id != person.union_id);
        st.people.push(person);
    }

    /// What the sign-in page does from now on.
    pub fn decide(&self, decision: Decision) {
        self.server.lock().decision = decision;
    }

    /// The person signed in to the DingTalk client: its in-app browser signs
    /// them in at once (no QR code, no page).
    pub fn set_client_user(&self, union_id: Option<&str>) {
        self.server.lock().client_user = union_id.map(str::to_owned);
    }

    /// Change an app's secret at DingTalk (the broker's becomes wrong).
    pub fn set_client_secret(&self, client_id: &str, secret: &str) {
        if let Some(a) = self
            .server
            .lock()
            .apps
            .iter_mut()
            .find(|a| a.client_id == client_id)
        {
            a.client_secret = secret.to_owned();
        }
    }

    /// Play (or stop playing) faults.
    pub fn set_faults(&self, faults: Faults) {
        self.server.lock().faults = faults;
    }

    /// Move the fake's clock forward (authCodes expire).
    pub fn advance(&self, secs: i64) {
        self.server.lock().clock_offset += secs;
    }

    /// The person withdraws their authorization: their tokens stop working.
    pub fn revoke(&self, union_id: &str) {
        let mut st = self.server.lock();
        st.tokens.retain(|_, t| t.union_id != union_id);
        st.refresh_tokens.retain(|_, t| t.union_id != union_id);
    }

    /// The person leaves an organisation.
    pub fn leave(&self, union_id: &str, corp_id: &str) {
        if let Some(p) = self
            .server
            .lock()
            .people
            .iter_mut()
            .find(|p| p.union_id == union_id)
        {
            p.corps.retain(|(c, _)| c != corp_id);
        }
    }

    pub fn counters(&self) -> Counters {
        self.server.lock().counters.clone()
    }

    /// The JSON body of the last token request (the secret included: a test
    /// checks what was sent).
    pub fn last_token_body(&self) -> Option<serde_json::Value> {
        self.server.lock().last_token_body.clone()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
