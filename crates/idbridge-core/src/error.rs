//! Typed connector failures: where it failed (stage), what kind of failure it was,
//! and what the upstream said. The server turns the kind into a page and an OAuth
//! error; the log line keeps everything so an operator can fix it without the code.

use serde::Serialize;
use std::fmt;

/// Where in a sign-in the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Begin,
    Callback,
    TokenExchange,
    Userinfo,
    Refresh,
    Exchange,
    /// Sending a message to the person upstream (e.g. a one-time code into WeChat).
    Message,
    /// Getting ready to serve ([`crate::Connector::prepare`]: discovery, keys).
    Setup,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Begin => "begin",
            Stage::Callback => "callback",
            Stage::TokenExchange => "token_exchange",
            Stage::Userinfo => "userinfo",
            Stage::Refresh => "refresh",
            Stage::Exchange => "exchange",
            Stage::Message => "message",
            Stage::Setup => "setup",
        }
    }
}

/// What kind of failure it was; decides what the person and the app are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The person refused or cancelled upstream.
    UserCancelled,
    /// The upstream code is invalid or expired: start the sign-in again.
    InvalidCode,
    /// The upstream code was already used (a replay or a double callback).
    CodeReused,
    /// The upstream rejected our credentials (app id or secret).
    BadCredentials,
    /// Our configuration does not match the upstream's (callback domain, scope, IP
    /// allow-list…).
    Misconfigured,
    /// The upstream is down, busy or answered with an HTTP error.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream answered something we cannot parse.
    BadResponse,
    /// A token the upstream signed (an OpenID provider's ID token) failed
    /// verification: signature, issuer, audience, expiry or nonce.
    TokenVerificationFailed,
    /// The upstream throttled us.
    RateLimited,
    /// The callback is malformed (missing parameters).
    InvalidRequest,
    /// The upstream identity may not sign in (e.g. a WeChat snapshot user).
    NotAllowed,
    /// The connector does not do this (e.g. refresh).
    Unsupported,
}

impl ErrorKind {
    /// Every kind, for tables that must cover them all.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::UserCancelled,
        ErrorKind::InvalidCode,
        ErrorKind::CodeReused,
        ErrorKind::BadCredentials,
        ErrorKind::Misconfigured,
        ErrorKind::UpstreamUnavailable,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::TokenVerificationFailed,
        ErrorKind::RateLimited,
        ErrorKind::InvalidRequest,
        ErrorKind::NotAllowed,
        ErrorKind::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UserCancelled => "user_cancelled",
            ErrorKind::InvalidCode => "invalid_code",
            ErrorKind::CodeReused => "code_reused",
            ErrorKind::BadCredentials => "bad_credentials",
            ErrorKind::Misconfigured => "misconfigured",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::TokenVerificationFailed => "token_verification_failed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotAllowed => "not_allowed",
            ErrorKind::Unsupported => "unsupported",
        }
    }

    /// Whether the person can fix it by simply trying again.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidCode
                | ErrorKind::CodeReused
                | ErrorKind::UpstreamUnavailable
                | ErrorKind::Timeout
                | ErrorKind::RateLimited
                | ErrorKind::BadResponse
        )
    }
}

/// A failed connector operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorError {
    pub stage: Stage,
    pub kind: ErrorKind,
    /// The upstream's own error code (WeChat: the errcode), if it gave one.
    pub upstream_code: Option<String>,
    /// The upstream's own message, if it gave one.
    pub upstream_message: Option<String>,
    /// What an operator should do about it.
    pub fix: Option<String>,
    /// What the *person* can do about it, in their language (the request's
    /// [`crate::RequestContext::locale`]), when the connector knows better than
    /// the broker's general text for the kind: e.g. "open the full page" for a
    /// WeChat snapshot-mode user. Shown on the error page below that text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl ConnectorError {
    pub fn new(stage: Stage, kind: ErrorKind) -> Self {
        Self {
            stage,
            kind,
            upstream_code: None,
            upstream_message: None,
            fix: None,
            advice: None,
        }
    }

    pub fn upstream(mut self, code: impl fmt::Display, message: impl Into<String>) -> Self {
        self.upstream_code = Some(code.to_string());
        self.upstream_message = Some(message.into());
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// What the person can do, in their language; see [`ConnectorError::advice`].
    pub fn advice(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage={} kind={}",
            self.stage.as_str(),
            self.kind.as_str()
        )?;
        if let Some(code) = &self.upstream_code {
            write!(f, " upstream_code={code}")?;
        }
        if let Some(msg) = &self.upstream_message {
            write!(f, " upstream_message={msg:?}")?;
        }
        if let Some(fix) = &self.fix {
            write!(f, " fix={fix:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectorError {}
