//! Calls to the provider's API with the person's access token (userinfo, or a
//! preset's own endpoints) and what their answers mean.

use crate::client::OAuthClient;
use idbridge_connector_kit::call::{self, endpoint, UpstreamCall};
use idbridge_connector_kit::http::{self as kit_http, shown};
use idbridge_core::{ConnectorError, ErrorKind, ExternalIdentity, Stage};
use serde_json::Value;
use tracing::Instrument;

/// An API answer (status, the headers a connector may look at, the body).
pub struct ApiAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl ApiAnswer {
    /// The body as JSON (`Value::Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The start of the body, for a log line (no control characters).
    pub fn start(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect()
    }
}

impl OAuthClient {
    /// `GET url` with the access token as a bearer token and `headers`; a
    /// transport failure, a redirect or an oversized body is an error at
    /// `stage`, any HTTP status an answer. Observed as the `userinfo` endpoint
    /// at `Stage::Userinfo`, else `api`.
    pub async fn get(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        access_token: &str,
        headers: &[(&str, &str)],
    ) -> Result<ApiAnswer, ConnectorError> {
        let label = if stage == Stage::Userinfo {
            endpoint::USERINFO
        } else {
            endpoint::API
        };
        let mut request = self.http().get(url).bearer_auth(access_token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = match request.build() {
            Ok(r) => r,
            Err(e) => {
                return Err(kit_http::transport_error(
                    stage,
                    what,
                    url,
                    e,
                    self.config().timeouts,
                ))
            }
        };
        let observed = UpstreamCall::begin(self.connector_label(), label, &mut request);
        let result = self
            .get_inner(stage, what, url, request)
            .instrument(observed.span())
            .await;
        match &result {
            Ok(a) => observed.end(Some(a.status), call::outcome(Ok(a.status))),
            Err(e) => observed.end(None, e.kind.as_str()),
        }
        result
    }

    async fn get_inner(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        request: reqwest::Request,
    ) -> Result<ApiAnswer, ConnectorError> {
        let started = std::time::Instant::now();
        let sent = self.http().execute(request).await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(kit_http::transport_error(
                    stage,
                    what,
                    url,
                    e,
                    self.config().timeouts,
                ))
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match kit_http::read_capped(response, crate::transport::MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(kit_http::ReadError::TooLarge) => {
                return Err(
                    ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                        "{what} at {} answered more than {} bytes",
                        shown(url),
                        crate::transport::MAX_BODY_BYTES
                    )),
                )
            }
            Err(kit_http::ReadError::Transport(e)) => {
                return Err(kit_http::transport_error(
                    stage,
                    what,
                    url,
                    e,
                    self.config().timeouts,
                ))
            }
        };
        tracing::debug!(stage = stage.as_str(), what, url = %shown(url), status, elapsed_ms = started.elapsed().as_millis(), "oauth2 upstream call");
        if (300..400).contains(&status) {
            return Err(ConnectorError::new(stage, ErrorKind::Misconfigured)
                .upstream(format!("HTTP {status}"), "redirect")
                .fix(format!(
                    "{what} at {} answered with a redirect, which is never followed: check the URL against the provider's docs",
                    shown(url)
                )));
        }
        Ok(ApiAnswer {
            status,
            headers,
            body,
        })
    }
}

/// A re-checked identity must be the person who signed in.
pub fn same_subject(
    identity: ExternalIdentity,
    subject: &str,
) -> Result<ExternalIdentity, ConnectorError> {
    if identity.subject == subject {
        Ok(identity)
    } else {
        Err(
            ConnectorError::new(Stage::Refresh, ErrorKind::TokenVerificationFailed).fix(
                "after the refresh grant the provider names another person than the sign-in did",
            ),
        )
    }
}

/// The usual meaning of an API answer other than 200 at `stage` (`what`:
/// "the userinfo request"): 429 (or 403 with no requests left) `RateLimited`,
/// 5xx `UpstreamUnavailable`, 401/403 on refresh `InvalidCode` (the person's
/// token was revoked: their grant ends), else `BadResponse`.
pub fn api_error(stage: Stage, what: &str, url: &str, answer: &ApiAnswer) -> ConnectorError {
    let status = answer.status;
    let place = shown(url);
    let exhausted = answer.header("x-ratelimit-remaining") == Some("0");
    let (kind, fix) = match status {
        429 => (ErrorKind::RateLimited, format!("{place} throttles the broker ({what}); retry later")),
        403 if exhausted => (
            ErrorKind::RateLimited,
            format!("{place} says the rate limit is used up ({what}); retry after the limit resets"),
        ),
        s if s >= 500 => (ErrorKind::UpstreamUnavailable, format!("{place} answered {what} with HTTP {s}; retry later")),
        401 | 403 if stage == Stage::Refresh => (
            ErrorKind::InvalidCode,
            format!("{place} no longer accepts the person's access token ({what}, HTTP {status}): they revoked the app or the token expired; they sign in again"),
        ),
        401 | 403 => (
            ErrorKind::BadResponse,
            format!("{place} refused the access token it just issued ({what}, HTTP {status}): check that the URL belongs to the same provider as token_url, and that scopes allow the call"),
        ),
        s => (ErrorKind::BadResponse, format!("{place} answered {what} with HTTP {s}")),
    };
    ConnectorError::new(stage, kind)
        .upstream(format!("HTTP {status}"), answer.start())
        .fix(fix)
}
