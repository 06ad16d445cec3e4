//! A Feishu (飞书) / Lark fake: the authorization page
//! (`/open-apis/authen/v1/authorize`, one person picked or Cancel), the token
//! endpoint (`/open-apis/authen/v2/oauth/token`, a JSON body, PKCE, the RFC
//! 6749 answer with Feishu's numeric `code` beside it, errors as
//! `{code, error, error_description}`) and `/open-apis/authen/v1/user_info`
//! (the `{code, msg, data}` envelope), shaped as Feishu documents them.
//!
//! One server plays both hosts (`accounts.feishu.cn` and `open.feishu.cn`;
//! Lark's `larksuite.com` ones are the same API). Scripted through
//! [`FeishuSim`]: people (`union_id` per developer, `open_id` derived per app,
//! a tenant, whether they may use the app: else 20010), who approves or
//! cancels, codes that expire after 5 minutes of the fake's clock and are good
//! once, refresh tokens (only with `offline_access`) good once, and faults
//! (busy, slow, throttled, a rotated App Secret, a revoked person).

pub mod dev;
mod routes;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a code lives (Feishu: 5 minutes).
pub const CODE_LIFETIME: i64 = 300;
/// `expires_in` of a user_access_token.
pub const ACCESS_LIFETIME: i64 = 7200;
/// `refresh_token_expires_in`.
pub const REFRESH_LIFETIME: i64 = 604_800;

/// A Feishu account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// `on_…`: the same across the developer's apps.
    pub union_id: String,
    pub name: String,
    pub en_name: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub tenant_key: String,
    /// In the app's availability range (可用范围); else the token endpoint
    /// answers 20010.
    pub has_access: bool,
}

impl Person {
    pub fn new(union_id: &str, name: &str) -> Self {
        Self {
            union_id: union_id.to_owned(),
            name: name.to_owned(),
            en_name: None,
            email: None,
            mobile: None,
            tenant_key: "736588c9260f175d".to_owned(),
            has_access: true,
        }
    }

    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    pub fn mobile(mut self, mobile: &str) -> Self {
        self.mobile = Some(mobile.to_owned());
        self
    }

    pub fn tenant(mut self, tenant_key: &str) -> Self {
        self.tenant_key = tenant_key.to_owned();
        self
    }

    pub fn without_access(mut self) -> Self {
        self.has_access = false;
        self
    }
}

/// The app registered at the fake.
#[derive(Debug, Clone)]
pub struct FeishuApp {
    /// App ID, `cli_…`.
    pub app_id: String,
    pub app_secret: String,
    /// 重定向 URL: a `redirect_uri` must start with one of them.
    pub redirect_urls: Vec<String>,
}

/// What the authorization page does for the next visitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The person with this `union_id` is signed in and approves.
    Approve(String),
    /// The person cancels: back with `error=access_denied`.
    Deny,
    /// A page asks (dev mode): one link per person, and Cancel.
    Ask,
}

/// A fault the token endpoint (and user_info) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 20050 with HTTP 500.
    Busy,
    /// 99991400 with HTTP 429.
    Throttled,
    /// Every token answer waits this long first.
    Slow(Duration),
}

/// Counters a test can assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub authorizations: u32,
    pub token_requests: u32,
    pub refreshes: u32,
    pub user_info_calls: u32,
}

pub(crate) struct Grant {
    pub union_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub scope: String,
    pub issued_at: i64,
    pub used: bool,
}

pub(crate) struct TokenInfo {
    pub union_id: String,
    pub scope: String,
    pub expires_at: i64,
}

pub(crate) struct RefreshInfo {
    pub union_id: String,
    pub scope: String,
    pub expires_at: i64,
    pub used: bool,
}

pub(crate) struct State {
    pub app: FeishuApp,
    pub people: Vec<Person>,
    pub decision: Decision,
    pub fault: Fault,
    pub offset: i64,
    pub codes: HashMap<String, Grant>,
    pub tokens: HashMap<String, TokenInfo>,
    pub refresh_tokens: HashMap<String, RefreshInfo>,
    pub counters: Counters,
    pub last_token_content_type: Option<String>,
}

impl State {
    pub fn now(&self) -> i64 {
        system_now() + self.offset
    }

    /// The person's `open_id` in this app (`ou_…`, per app).
    pub fn open_id(&self, union_id: &str) -> String {
        open_id(&self.app.app_id, union_id)
    }
}

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `ou_` and 32 hex digits from the app and the person: per app, stable.
pub fn open_id(app_id: &str, union_id: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{app_id}/{union_id}").as_bytes(),
    );
    let hex: String = digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ou_{hex}")
}

pub(crate) struct Shared(Mutex<State>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake.
pub struct FeishuSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

impl FeishuSim {
    /// Start on 127.0.0.1 with a free port, the app registered, nobody
    /// signed in yet (add people, then [`FeishuSim::decide`]).
    pub async fn start(app: FeishuApp) -> io::Result<FeishuSim> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        FeishuSim::start_on(app, listener).await
    }

    /// Start on the given listener (a fixed dev-mode port).
    pub async fn start_on(
        app: FeishuApp,
        listener: std::net::TcpListener,
    ) -> io::Result<FeishuSim> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared(Mutex::new(State {
            app,
            people: Vec::new(),
            decision: Decision::Deny,
            fault: Fault::None,
            offset: 0,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            counters: Counters::default(),
            last_token_content_type: None,
        })));
        let data = web::Data::from(Arc::clone(&shared));
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).configure(routes::mount))
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)?
                .run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::info!(%addr, "feishu simulator listening");
        Ok(FeishuSim {
            shared,
            addr,
            handle: Some(handle),
        })
    }

    /// `http://127.0.0.1:PORT`: stands in for both `https://accounts.feishu.cn`
    /// and `https://open.feishu.cn`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add (or replace, by `union_id`) a person.
    pub fn add_person(&self, person: Person) {
        let mut st = self.shared.lock();
        st.people.retain(|p| p.union_id != person.union_id);
        st.people.push(person);
    }

    /// What the authorization page does from now on.
    pub fn decide(&self, decision: Decision) {
        self.shared.lock().decision = decision;
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().fault = fault;
    }

    /// The App Secret is reset at Feishu (the broker's becomes wrong).
    pub fn set_app_secret(&self, secret: &str) {
        self.shared.lock().app.app_secret = secret.to_owned();
    }

    /// The 重定向 URL list.
    pub fn set_redirect_urls(&self, urls: Vec<String>) {
        self.shared.lock().app.redirect_urls = urls;
    }

    /// The person is taken out of (or put back into) the app's availability range.
    pub fn set_access(&self, union_id: &str, has_access: bool) {
        if let Some(p) = self
            .shared
            .lock()
            .people
            .iter_mut()
            .find(|p| p.union_id == union_id)
        {
            p.has_access = has_access;
        }
    }

    /// The person's tokens are revoked (refresh answers 20064).
    pub fn revoke(&self, union_id: &str) {
        let mut st = self.shared.lock();
        st.tokens.retain(|_, t| t.union_id != union_id);
        st.refresh_tokens.retain(|_, t| t.union_id != union_id);
    }

    /// Move the fake's clock (codes expire after [`CODE_LIFETIME`]).
    pub fn advance(&self, secs: i64) {
        self.shared.lock().offset += secs;
    }

    /// The fake's clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.shared.lock().now()
    }

    /// The person's `open_id` in the fake's app.
    pub fn open_id(&self, union_id: &str) -> String {
        self.shared.lock().open_id(union_id)
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// The `Content-Type` of the last token request.
    pub fn last_token_content_type(&self) -> Option<String> {
        self.shared.lock().last_token_content_type.clone()
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(true).await;
        }
    }
}

impl Drop for FeishuSim {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop(h.stop(false));
        }
    }
}
