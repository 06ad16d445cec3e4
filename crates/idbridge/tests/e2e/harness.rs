//! A real broker on 127.0.0.1 per test, on a fresh SQLite file or a fresh Postgres
//! database, with a clock the test can move forward, and a cookie-keeping
//! "browser" that follows the login the way a person would.

use actix_web::web;
use idbridge_server::{build_state, run, AppState, Clock, Options};
use idbridge_store::testing::TempDatabase;
use std::net::TcpListener;
use std::sync::Arc;

pub const APP_ID: &str = "app";
pub const APP_SECRET: &str = "app-secret-0123456789abcdef";
pub const APP_REDIRECT: &str = "https://app.example.com/callback";
pub const APP_LOGOUT: &str = "https://app.example.com/signed-out";
pub const OTHER_ID: &str = "other";
pub const OTHER_SECRET: &str = "other-secret-0123456789abcdef";
pub const SPA_ID: &str = "spa";
pub const SPA_REDIRECT: &str = "http://127.0.0.1/spa/callback";
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct Broker {
    pub base: String,
    pub state: web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::mem::drop(handle.stop(false));
    }
}

/// One database shared by the brokers of a test.
pub struct TestDb {
    pub db: TempDatabase,
}

impl TestDb {
    pub fn new(kind: Db) -> Self {
        let db = match kind {
            Db::Sqlite => TempDatabase::sqlite(),
            Db::Postgres => TempDatabase::postgres(),
        };
        Self { db }
    }

    pub fn url(&self) -> String {
        self.db.url().to_owned()
    }
}

pub fn base_settings(issuer: &str, db_url: &str) -> idbridge_server::Settings {
    let overrides = vec![
        ("issuer", issuer.to_owned()),
        ("storage.url", db_url.to_owned()),
        ("signing.master_key", MASTER_KEY.to_owned()),
        // Tests run RS256 and ES256; EdDSA keys too, to publish all three.
        ("storage.max_connections", "8".to_owned()),
    ];
    let mut s = idbridge_server::config::load(None, &overrides).expect("settings");
    s.clients = vec![
        client(APP_ID, Some(APP_SECRET), APP_REDIRECT),
        client(OTHER_ID, Some(OTHER_SECRET), "https://other.example.com/cb"),
        client(SPA_ID, None, SPA_REDIRECT),
    ];
    s.connectors = vec![
        serde_json::json!({"id": "dev", "type": "dev", "name": "Dev"}),
        serde_json::json!({"id": "dev2", "type": "dev", "name": "Dev two"}),
    ];
    s
}

pub fn client(
    id: &str,
    secret: Option<&str>,
    redirect: &str,
) -> idbridge_server::config::ClientSettings {
    idbridge_server::config::ClientSettings {
        id: id.into(),
        name: Some(format!("{id} app")),
        secret: secret.map(str::to_owned),
        secret_file: None,
        public: secret.is_none(),
        redirect_uris: vec![redirect.into()],
        post_logout_redirect_uris: vec![APP_LOGOUT.into()],
        require_pkce: secret.is_none(),
        id_token_signed_response_alg: None,
        connectors: Vec::new(),
        require_phone: false,
        // The usual apps are first-party: tests of consent use their own.
        skip_consent: true,
        refresh_without_offline_access: false,
        id_token_on_refresh: true,
        require_pushed_authorization_requests: false,
        allowed_origins: Vec::new(),
    }
}

/// Start a broker on a free port. `issuer` defaults to its own address.
pub async fn start(
    db_url: &str,
    issuer: Option<&str>,
    tweak: impl FnOnce(&mut idbridge_server::Settings) + Send + 'static,
) -> Broker {
    start_with_registry(db_url, issuer, idbridge::registry(), tweak).await
}

/// [`start`] with connector types of the test's own beside the built-in ones.
pub async fn start_with_registry(
    db_url: &str,
    issuer: Option<&str>,
    registry: idbridge_core::Registry,
    tweak: impl FnOnce(&mut idbridge_server::Settings) + Send + 'static,
) -> Broker {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    start_on(listener, db_url, issuer, registry, tweak).await
}

/// [`start_with_registry`] on a listener the test bound already (so another
/// party can be configured with the broker's address before it starts).
pub async fn start_on(
    listener: TcpListener,
    db_url: &str,
    issuer: Option<&str>,
    registry: idbridge_core::Registry,
    tweak: impl FnOnce(&mut idbridge_server::Settings) + Send + 'static,
) -> Broker {
    capture_logs();
    let port = listener.local_addr().expect("addr").port();
    let base = format!("http://127.0.0.1:{port}");
    let issuer = issuer.unwrap_or(&base).to_owned();
    let mut settings = base_settings(&issuer, db_url);
    tweak(&mut settings);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let options = Options {
                dev_mode: true,
                demo_secret: None,
                clock: Arc::new(Clock::default()),
            };
            let state = build_state(settings, &registry, &options)
                .await
                .expect("broker starts");
            let server = run(state.clone(), None, listener).expect("server runs");
            let _ = tx.send((state, server.handle()));
            let _ = server.await;
        });
    });
    let (state, handle) = rx.await.expect("broker started");
    Broker {
        base,
        state,
        handle,
        thread: Some(thread),
    }
}

/// A browser: keeps cookies, does not follow redirects (tests look at each hop).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A back-channel HTTP client (no cookies, no redirects).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The name of the newest migration the broker embeds (the same on both backends).
pub fn newest_migration() -> String {
    std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .expect("migrations directory")
    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
    .max()
    .expect("a migration")
}

/// GET `url` with `client` and parse the answer as JSON, whatever its status.
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

/// GET `url` with `client` (a browser keeps its cookies) and read the body.
pub async fn get_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a body")
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The hidden `state` field of the development connector's page.
pub fn state_from_page(html: &str) -> String {
    let marker = "name=\"state\" value=\"";
    let start = html.find(marker).expect("state field on the page") + marker.len();
    let end = html[start..].find('"').expect("end of state") + start;
    html[start..end].to_owned()
}

/// Follow an authorization URL through the development connector as `user`, and
/// return the URL the broker finally sends the browser to (the app's redirect URI).
pub async fn sign_in(
    browser: &reqwest::Client,
    base: &str,
    authorize_url: &str,
    user: &str,
) -> String {
    let resp = browser.get(authorize_url).send().await.expect("authorize");
    let (page, connector) = match resp.status().as_u16() {
        200 => (resp.text().await.expect("page"), "dev".to_owned()),
        302 => {
            let loc = location(&resp);
            if !loc.starts_with(base) {
                return loc; // SSO: straight back to the app
            }
            let connector = query_param(&loc, "connector").unwrap_or_else(|| "dev".into());
            let page = browser.get(&loc).send().await.expect("login page");
            assert_eq!(page.status(), 200, "login page for {loc}");
            (page.text().await.expect("page"), connector)
        }
        s => panic!(
            "unexpected authorize status {s}: {}",
            resp.text().await.unwrap_or_default()
        ),
    };
    let state = state_from_page(&page);
    // The development page's form posts to its connector's callback.
    let action = page
        .split("<form method=\"get\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{base}/callback/{connector}"));
    let cb = browser
        .get(&action)
        .query(&[("state", state.as_str()), ("user", user)])
        .send()
        .await
        .expect("callback");
    assert_eq!(
        cb.status(),
        302,
        "callback: {}",
        cb.text().await.unwrap_or_default()
    );
    location(&cb)
}

/// A hand-built authorization URL for the confidential test app (PKCE included).
pub fn authorize_url(base: &str, extra: &[(&str, &str)]) -> (String, String) {
    let verifier = "verifier-0123456789-0123456789-0123456789-abcdef".to_owned();
    let challenge = idbridge_tokens::pkce_s256(&verifier);
    let mut u = url::Url::parse(&format!("{base}/authorize")).expect("url");
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", APP_ID)
            .append_pair("redirect_uri", APP_REDIRECT)
            .append_pair("scope", "openid profile offline_access")
            .append_pair("state", "app-state-1")
            .append_pair("nonce", "nonce-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("connector", "dev");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    (u.to_string(), verifier)
}

/// Sign in and redeem the code: the token response JSON.
pub async fn tokens_for(base: &str, user: &str) -> serde_json::Value {
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(&browser(), base, &url, user).await;
    let code = query_param(&back, "code").expect("code");
    redeem(base, &code, &verifier)
        .await
        .json()
        .await
        .expect("json")
}

pub async fn redeem(base: &str, code: &str, verifier: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token request")
}

pub async fn refresh(base: &str, token: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("refresh request")
}

pub async fn introspect(base: &str, token: &str) -> serde_json::Value {
    http()
        .post(format!("{base}/introspect"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

/// The broker's audit events named `event`, newest first (at most 10).
pub async fn audit_events(broker: &Broker, event: &str) -> Vec<idbridge_store::AuditRecord> {
    broker
        .state
        .store
        .find_audit(idbridge_store::AuditFilter {
            events: vec![event.into()],
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit log")
}

/// Decode a JWT's payload without verifying (to look at claims).
pub fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

/// Run a scenario on both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::harness::TestDb::new($crate::harness::Db::Sqlite);
                super::$name(&db.url()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = $crate::harness::TestDb::new($crate::harness::Db::Postgres);
                super::$name(&db.url()).await;
            }
        }
    };
}

/// Every log line the brokers in this test binary wrote (they share one global
/// subscriber), so tests can assert on what an operator would read.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Log lines that contain every one of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Whether a sign-in stopped at the broker's consent page (`/login/{id}/consent`).
pub fn is_consent_page(base: &str, url: &str) -> bool {
    url.starts_with(&format!("{base}/login/")) && url.ends_with("/consent")
}

/// On the consent page at `url`, press `decision` (`allow` or `deny`) as the
/// person would; the broker's answer (a redirect to the app, or a page).
pub async fn decide_consent(b: &reqwest::Client, url: &str, decision: &str) -> reqwest::Response {
    let page = b.get(url).send().await.expect("consent page");
    assert_eq!(page.status(), 200, "consent page {url}");
    let html = page.text().await.expect("page");
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    let end = html[start..].find('"').expect("end of csrf") + start;
    let csrf = html[start..end].to_owned();
    b.post(url)
        .form(&[("csrf", csrf.as_str()), ("decision", decision)])
        .send()
        .await
        .expect("consent form")
}

/// Allow on the consent page at `url`: the URL the app is sent to.
pub async fn allow_consent(b: &reqwest::Client, url: &str) -> String {
    let resp = decide_consent(b, url, "allow").await;
    assert_eq!(resp.status(), 302, "allow");
    location(&resp)
}
