//! A GitHub fake: the OAuth app web flow (`/login/oauth/authorize`,
//! `/login/oauth/access_token`) and the REST calls a sign-in makes (`/user`,
//! `/user/emails`, `/user/orgs`), shaped as GitHub documents them — the token
//! endpoint answers its errors with HTTP 200 and an `error` field
//! (`bad_verification_code`, `incorrect_client_credentials`,
//! `redirect_uri_mismatch`), the API answers 401 `{"message":"Bad
//! credentials"}` and a used-up rate limit as 403 with
//! `x-ratelimit-remaining: 0`.
//!
//! One server plays both hosts: the web flow at `/login/oauth/…` and the API
//! at `/api/v3/…` (the GitHub Enterprise Server layout, so a connector
//! configured with `base_url = sim` and `api_url = sim/api/v3` talks to it as
//! to a GHES). Scripted through [`GithubSim`]: people (id, login, name, emails
//! with verified/primary flags, orgs), who approves or denies, renaming a
//! login, a used-up rate limit, expiring (refreshable) tokens.

pub mod dev;
mod routes;

use crate::server::Server;
use std::collections::HashMap;
use std::io;

/// One of a person's email addresses, as `/user/emails` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub email: String,
    pub verified: bool,
    pub primary: bool,
}

impl Email {
    pub fn new(email: &str, verified: bool, primary: bool) -> Self {
        Self {
            email: email.to_owned(),
            verified,
            primary,
        }
    }
}

/// A GitHub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// GitHub's numeric user id: stable, unlike the login.
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub emails: Vec<Email>,
    /// Organisation logins.
    pub orgs: Vec<String>,
}

impl Person {
    pub fn new(id: u64, login: &str) -> Self {
        Self {
            id,
            login: login.to_owned(),
            name: None,
            emails: Vec::new(),
            orgs: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn email(mut self, email: Email) -> Self {
        self.emails.push(email);
        self
    }

    pub fn org(mut self, org: &str) -> Self {
        self.orgs.push(org.to_owned());
        self
    }
}

/// The OAuth app registered at the fake.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// The registered callback URL; a `redirect_uri` must start with it.
    pub callback_url: String,
    /// GitHub's opt-in expiring user tokens: `expires_in`, a `refresh_token`.
    pub expiring_tokens: bool,
}

/// What the authorize page does for the next visitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The person with this id is signed in at GitHub and approves.
    Approve(u64),
    /// The person clicks Cancel: back with `error=access_denied`.
    Deny,
    /// A page asks (dev mode): one button per person, and Cancel.
    Ask,
}

/// Counters a test can assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub authorizations: u32,
    pub token_requests: u32,
    pub api_calls: u32,
}

pub(crate) struct Grant {
    pub person: u64,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub scopes: Vec<String>,
    pub used: bool,
}

pub(crate) struct TokenInfo {
    pub person: u64,
    pub scopes: Vec<String>,
}

pub(crate) struct State {
    pub app: OAuthApp,
    pub people: Vec<Person>,
    pub decision: Decision,
    pub codes: HashMap<String, Grant>,
    pub tokens: HashMap<String, TokenInfo>,
    pub refresh_tokens: HashMap<String, TokenInfo>,
    pub rate_limited: bool,
    pub counters: Counters,
    pub last_token_request: Option<Vec<(String, String)>>,
}

pub(crate) type Shared = crate::server::Shared<State>;

/// The running fake.
pub struct GithubSim {
    server: Server<State>,
}

impl GithubSim {
    /// Start on 127.0.0.1 with a free port, the app registered, nobody
    /// signed in yet (add people, then [`GithubSim::decide`]).
    pub async fn start(app: OAuthApp) -> io::Result<GithubSim> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        GithubSim::start_on(app, listener).await
    }

    /// Start on the given listener (a fixed dev-mode port).
    pub async fn start_on(app: OAuthApp, listener: std::net::TcpListener) -> io::Result<GithubSim> {
        let state = State {
            app,
            people: Vec::new(),
            decision: Decision::Deny,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            rate_limited: false,
            counters: Counters::default(),
            last_token_request: None,
        };
        Ok(GithubSim {
            server: Server::start_on(state, listener, "github", routes::mount).await?,
        })
    }

    /// `http://127.0.0.1:PORT`: stands in for `https://github.com` (and for a
    /// GitHub Enterprise Server's host).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The API root, `BASE/api/v3` (GitHub Enterprise Server's layout).
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.base_url())
    }

    /// Add (or replace, by id) a person.
    pub fn add_person(&self, person: Person) {
        let mut st = self.server.lock();
        st.people.retain(|p| p.id != person.id);
        st.people.push(person);
    }

    /// What the authorize page does from now on.
    pub fn decide(&self, decision: Decision) {
        self.server.lock().decision = decision;
    }

    /// The person renames their login (their id stays).
    pub fn rename(&self, id: u64, login: &str) {
        if let Some(p) = self.server.lock().people.iter_mut().find(|p| p.id == id) {
            p.login = login.to_owned();
        }
    }

    /// Replace a person's emails.
    pub fn set_emails(&self, id: u64, emails: Vec<Email>) {
        if let Some(p) = self.server.lock().people.iter_mut().find(|p| p.id == id) {
            p.emails = emails;
        }
    }

    /// Every API call answers 403 with the rate limit used up.
    pub fn set_rate_limited(&self, limited: bool) {
        self.server.lock().rate_limited = limited;
    }

    /// Change the app's registered callback URL (prefix).
    pub fn set_callback_url(&self, url: &str) {
        self.server.lock().app.callback_url = url.to_owned();
    }

    /// Change the app's secret at GitHub (the broker's becomes wrong).
    pub fn set_client_secret(&self, secret: &str) {
        self.server.lock().app.client_secret = secret.to_owned();
    }

    /// Revoke every token the person holds (they revoked the app).
    pub fn revoke(&self, id: u64) {
        let mut st = self.server.lock();
        st.tokens.retain(|_, t| t.person != id);
        st.refresh_tokens.retain(|_, t| t.person != id);
    }

    pub fn counters(&self) -> Counters {
        self.server.lock().counters.clone()
    }

    /// The form fields of the last token request (secrets included: a test
    /// checks how the client authenticated).
    pub fn last_token_request(&self) -> Option<Vec<(String, String)>> {
        self.server.lock().last_token_request.clone()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
