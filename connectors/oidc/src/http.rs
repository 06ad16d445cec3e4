//! The one HTTP client of a connector: connect and total timeouts, redirects
//! never followed, bodies capped, and failures turned into `ConnectorError`s
//! that name the endpoint and say what to do. URLs are never logged or put
//! into errors with their query (codes and tokens travel in bodies anyway).

use idbridge_connector_kit::call::UpstreamCall;
use idbridge_connector_kit::http::{self as kit_http, ReadError};
use idbridge_connector_kit::options::Timeouts;
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use reqwest::header::{CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use serde_json::{Map, Value};

/// The largest answer read from the provider (discovery, keys, tokens, userinfo).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

const USER_AGENT: &str = concat!("idbridge-oidc/", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeouts: Timeouts,
    /// The configured connector id: the `connector` label of the calls' metrics
    /// and spans.
    connector: String,
}

/// What came back.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: Vec<u8>,
}

pub use idbridge_connector_kit::http::shown;

impl Http {
    pub fn new(timeouts: Timeouts, connector: &str) -> Result<Self, String> {
        let client = kit_http::client(timeouts, USER_AGENT)?;
        Ok(Self {
            client,
            timeouts,
            connector: connector.to_owned(),
        })
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Send `request` (to `url`, what it is: "the discovery document", its
    /// `endpoint` label: `kit::call::endpoint::DISCOVERY`) and read the answer; a
    /// transport failure, a redirect or an oversized body is an error at `stage`.
    /// Observed as one upstream call (span, trace context, latency).
    pub async fn send(
        &self,
        stage: Stage,
        (what, endpoint): (&str, &'static str),
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ConnectorError> {
        let started = std::time::Instant::now();
        let mut request = match request.build() {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(stage, what, url, e)),
        };
        let call = UpstreamCall::begin(&self.connector, endpoint, &mut request);
        let result = tracing::Instrument::instrument(
            self.send_inner(stage, what, url, request),
            call.span(),
        )
        .await;
        match &result {
            Ok(a) => call.end(Some(a.status), kit_call_outcome(a.status)),
            Err(e) => call.end(None, e.kind.as_str()),
        }
        let elapsed_ms = started.elapsed().as_millis();
        match &result {
            Ok(a) => {
                tracing::debug!(stage = stage.as_str(), what, url = %shown(url), status = a.status, elapsed_ms, "oidc upstream call")
            }
            Err(e) => {
                tracing::debug!(stage = stage.as_str(), what, url = %shown(url), kind = e.kind.as_str(), elapsed_ms, "oidc upstream call failed")
            }
        }
        result
    }

    async fn send_inner(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        request: reqwest::Request,
    ) -> Result<Answer, ConnectorError> {
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(stage, what, url, e))?;
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let www_authenticate = header(WWW_AUTHENTICATE);
        if (300..400).contains(&status) {
            let target = header(LOCATION)
                .map(|l| shown(&l))
                .unwrap_or_else(|| "nowhere".into());
            return Err(ConnectorError::new(stage, ErrorKind::Misconfigured)
                .upstream(format!("HTTP {status}"), format!("redirect to {target}"))
                .fix(format!(
                    "{what} at {} answered with a redirect to {target}, which is never followed: check the configured issuer (scheme, host, path, trailing slash) against the provider's own",
                    shown(url)
                )));
        }
        let body = match kit_http::read_capped(response, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => return Err(too_large(stage, what, url)),
            Err(ReadError::Transport(e)) => return Err(self.transport_error(stage, what, url, e)),
        };
        Ok(Answer {
            status,
            content_type,
            www_authenticate,
            body,
        })
    }

    fn transport_error(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        error: reqwest::Error,
    ) -> ConnectorError {
        kit_http::transport_error(stage, what, url, error, self.timeouts)
    }
}

/// `ok` for a 2xx answer, else `http_4xx` / `http_5xx` (a redirect is refused: `http_3xx`).
fn kit_call_outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        300..=399 => "http_3xx",
        400..=499 => "http_4xx",
        _ => "http_5xx",
    }
}

fn too_large(stage: Stage, what: &str, url: &str) -> ConnectorError {
    ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
        "{what} at {} is larger than {MAX_BODY_BYTES} bytes; this is not an OpenID provider's answer",
        shown(url)
    ))
}

/// The answer's body as a JSON object, or `BadResponse` naming `what`.
pub fn json_object(
    stage: Stage,
    what: &str,
    url: &str,
    answer: &Answer,
) -> Result<Map<String, Value>, ConnectorError> {
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => {
            let start: String = String::from_utf8_lossy(&answer.body)
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect();
            Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream(format!("HTTP {}", answer.status), start)
                .fix(format!(
                    "{what} at {} is not a JSON object (content type {}): check the issuer points at an OpenID provider",
                    shown(url),
                    answer.content_type.as_deref().unwrap_or("none")
                )))
        }
    }
}
