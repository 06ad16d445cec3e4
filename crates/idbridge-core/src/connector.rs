//! The `Connector` trait: begin an upstream sign-in, complete it from the callback.

use crate::UpstreamTokens;
use crate::{ConnectorError, ConnectorId, ErrorKind, ExternalIdentity, RequestContext, Stage};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// Whether a connector can serve the browser in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Works here and should be picked over others of the same family (e.g. the
    /// in-WeChat flow inside WeChat's browser).
    Preferred,
    /// Cannot work here; the reason is shown to the person.
    Unavailable {
        reason: String,
    },
}

/// One value of the app's OpenID Connect `prompt` parameter (Core 3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// No page may be shown: succeed silently or fail.
    None,
    /// Sign the person in again, even with a session.
    Login,
    /// Ask the person's consent again.
    Consent,
    /// Let the person pick an account.
    SelectAccount,
}

impl Prompt {
    /// The value as it appears in the parameter; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Prompt::None),
            "login" => Some(Prompt::Login),
            "consent" => Some(Prompt::Consent),
            "select_account" => Some(Prompt::SelectAccount),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Prompt::None => "none",
            Prompt::Login => "login",
            Prompt::Consent => "consent",
            Prompt::SelectAccount => "select_account",
        }
    }
}

/// What the server hands `begin`: the broker's state and callback, and what the
/// app asked the broker for, so a connector can pass it on upstream (an OpenID
/// provider's `prompt=login`, `max_age`, `login_hint`, the scopes it maps to
/// upstream scopes). Built with [`BeginRequest::new`] and the `with_` methods, so
/// that new fields never break a connector or its tests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BeginRequest {
    /// Short random alphanumeric state the connector must send upstream and get
    /// back on the callback. The transaction itself lives in the server's store.
    pub state: String,
    /// `{issuer}/callback/{connector_id}`.
    pub callback_url: String,
    pub login_hint: Option<String>,
    /// The scopes the broker granted the app's request (`openid`, `profile`,
    /// `email`, `phone`, `offline_access`, …), in the app's order.
    pub scopes: Vec<String>,
    /// The app's `prompt` values.
    pub prompt: Vec<Prompt>,
    /// The app's `max_age`, in seconds: the person must have signed in upstream
    /// at most this long ago (an OpenID provider gets it passed on).
    pub max_age: Option<u64>,
    /// The app's `ui_locales` (space-separated language tags), as sent.
    pub ui_locales: Option<String>,
}

impl BeginRequest {
    pub fn new(state: impl Into<String>, callback_url: impl Into<String>) -> Self {
        Self {
            state: state.into(),
            callback_url: callback_url.into(),
            login_hint: None,
            scopes: Vec::new(),
            prompt: Vec::new(),
            max_age: None,
            ui_locales: None,
        }
    }

    pub fn with_login_hint(mut self, login_hint: Option<String>) -> Self {
        self.login_hint = login_hint;
        self
    }

    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_prompt(mut self, prompt: impl IntoIterator<Item = Prompt>) -> Self {
        self.prompt = prompt.into_iter().collect();
        self
    }

    pub fn with_max_age(mut self, max_age: Option<u64>) -> Self {
        self.max_age = max_age;
        self
    }

    pub fn with_ui_locales(mut self, ui_locales: Option<String>) -> Self {
        self.ui_locales = ui_locales;
        self
    }

    /// Whether the app asked for `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the app's `prompt` holds `prompt`.
    pub fn has_prompt(&self, prompt: Prompt) -> bool {
        self.prompt.contains(&prompt)
    }
}

/// How to send the person upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Redirect the browser here.
    Redirect(String),
    /// Render this HTML fragment inside a broker page (e.g. an embedded QR code).
    /// `script_sources` lists the extra origins the page's CSP must allow.
    Page {
        title: String,
        body_html: String,
        script_sources: Vec<String>,
        frame_sources: Vec<String>,
    },
}

/// `begin`'s result: where to go, plus anything the connector wants back on the
/// callback (stored server-side with the state, never sent to the browser).
#[derive(Debug, Clone)]
pub struct Started {
    pub begin: Begin,
    pub flow_data: serde_json::Value,
}

impl Started {
    pub fn redirect(url: impl Into<String>) -> Self {
        Self {
            begin: Begin::Redirect(url.into()),
            flow_data: serde_json::Value::Null,
        }
    }
}

/// The callback as the server received it, after it checked the state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallbackRequest {
    /// All query (or form) parameters of the callback.
    pub params: BTreeMap<String, String>,
    pub callback_url: String,
    /// What `begin` asked to keep.
    pub flow_data: serde_json::Value,
}

impl CallbackRequest {
    pub fn new(
        params: BTreeMap<String, String>,
        callback_url: impl Into<String>,
        flow_data: serde_json::Value,
    ) -> Self {
        Self {
            params,
            callback_url: callback_url.into(),
            flow_data,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A token exchange as the server received it at its token endpoint (RFC 8693),
/// after it authenticated the app and picked this connector by the token's type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExchangeRequest {
    /// `subject_token`: what the native app got upstream (e.g. a WeChat SDK code).
    pub subject_token: String,
    /// `subject_token_type`: one of [`Connector::subject_token_types`].
    pub subject_token_type: String,
    /// The request's other parameters, for a connector's documented extensions
    /// (e.g. `wechat_phone_code`); the app's credentials are never among them.
    pub params: BTreeMap<String, String>,
}

impl ExchangeRequest {
    pub fn new(subject_token: impl Into<String>, subject_token_type: impl Into<String>) -> Self {
        Self {
            subject_token: subject_token.into(),
            subject_token_type: subject_token_type.into(),
            params: BTreeMap::new(),
        }
    }

    pub fn with_params(mut self, params: BTreeMap<String, String>) -> Self {
        self.params = params;
        self
    }

    /// A non-empty parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// An upstream identity provider. Object safe: the server holds `Arc<dyn Connector>`.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The configured id (URL path segment, `connector=` value).
    fn id(&self) -> &ConnectorId;

    /// The configured `type` (e.g. `wechat-web`).
    fn kind(&self) -> &'static str;

    /// The name shown on the login page.
    fn display_name(&self) -> &str;

    /// Whether `begin` answers with a page fragment that can sit on the sign-in
    /// page itself, next to the other choices (an embedded QR code). Such a
    /// connector is begun when the chooser is shown. Default: false.
    fn shows_inline(&self) -> bool {
        false
    }

    /// Get ready to serve: the I/O a connector needs before its first sign-in
    /// (fetch a discovery document, signing keys). Building a connector checks its
    /// configuration and does no I/O; the server then calls `prepare` in the
    /// background at start-up, and again after a failure with growing pauses (1 s,
    /// doubling, at most 60 s) until it succeeds. Until then the connector is
    /// shown as not ready (`/readyz`, `/healthz`, the sign-in page) and is
    /// neither begun nor completed: the broker itself keeps running. `now` is unix
    /// seconds. Default: ready at once.
    async fn prepare(&self, _now: i64) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Can it serve this browser?
    fn availability(&self, _ctx: &RequestContext) -> Availability {
        Availability::Available
    }

    /// Whether people sign in through this connector in a browser (`begin`, then
    /// the callback). A connector without one (e.g. a native app's SDK code,
    /// exchanged at the token endpoint) is never offered on the login page and
    /// cannot be picked with `connector=`. Default: true.
    fn has_browser_flow(&self) -> bool {
        true
    }

    /// The RFC 8693 `subject_token_type` URIs [`Connector::exchange`] accepts at
    /// the broker's token endpoint. The server calls `exchange` only with a token
    /// of one of these types. Default: none.
    fn subject_token_types(&self) -> &[&str] {
        &[]
    }

    /// Start an upstream sign-in: build where to send the browser. It should not
    /// wait on the upstream — the server runs it within the app's share of local
    /// work (`server.in_progress_per_client`); fetch what it needs (discovery
    /// documents, keys) ahead of time or in `complete`.
    async fn begin(
        &self,
        ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError>;

    /// Finish it from the callback.
    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError>;

    /// Whether this upstream can vouch for an email address: an identity's
    /// `email_verified = true` then means the upstream verified that the person
    /// receives mail at `email`, and the operator may set `trust_email` for the
    /// connector (a new identity whose verified address is an account's is then
    /// linked to it; docs/accounts.md, "Linking by email"). Even so, each
    /// sign-in links only when its own profile says `email_verified = true`.
    /// Answer false for an upstream that reports no email, or whose email its
    /// user can set to anything (Entra ID's `email`): `trust_email` is then a
    /// configuration error. Default: true.
    fn vouches_for_email(&self) -> bool {
        true
    }

    /// Whether this upstream can vouch for a phone number: an identity's
    /// `phone_number_verified = true` then means the upstream verified that the
    /// person holds `phone_number` (WeChat's `getPhoneNumber`, checked with the
    /// carrier), and the broker records it as the account's verified number,
    /// as a one-time code would (unless another account has it). Default: false
    /// (an upstream's phone is then only released under the `phone` scope).
    fn vouches_for_phone(&self) -> bool {
        false
    }

    /// Whether [`Connector::refresh`] is implemented: the operator may then set
    /// `recheck_on_refresh` for it. Default: false.
    fn supports_refresh(&self) -> bool {
        false
    }

    /// Re-check a returning person with stored upstream tokens, without a new
    /// upstream login. Returns the refreshed identity (with new tokens), which
    /// must have the same `subject`. The server calls it when an app refreshes a
    /// grant from this connector and the operator set `recheck_on_refresh`; an
    /// error whose kind is the upstream's word about the person
    /// ([`ErrorKind::InvalidCode`], [`ErrorKind::CodeReused`],
    /// [`ErrorKind::NotAllowed`], [`ErrorKind::UserCancelled`],
    /// [`ErrorKind::TokenVerificationFailed`]) ends the app's grant; any other
    /// (the upstream failing, the setup wrong) leaves it alone and the app is
    /// told to retry.
    async fn refresh(
        &self,
        _ctx: &RequestContext,
        _subject: &str,
        _tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        Err(ConnectorError::new(Stage::Refresh, ErrorKind::Unsupported))
    }

    /// Exchange a token obtained by a native app (e.g. a WeChat SDK code) for an
    /// identity (RFC 8693 token exchange at the broker's token endpoint). Only
    /// called with a token of a type listed by [`Connector::subject_token_types`].
    async fn exchange(
        &self,
        _ctx: &RequestContext,
        _request: &ExchangeRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        Err(ConnectorError::new(Stage::Exchange, ErrorKind::Unsupported))
    }

    /// Whether [`Connector::send_message`] can work at all (configured for it).
    fn can_send_messages(&self) -> bool {
        false
    }

    /// Send a short text to the person known upstream as `subject` (e.g. a one-time
    /// code into their WeChat chat with an Official Account).
    async fn send_message(
        &self,
        _ctx: &RequestContext,
        _subject: &str,
        _text: &str,
    ) -> Result<(), ConnectorError> {
        Err(ConnectorError::new(Stage::Message, ErrorKind::Unsupported))
    }
}
