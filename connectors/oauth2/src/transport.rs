//! The `oauth2` crate's HTTP client, over the workspace's `reqwest` client
//! (built by the kit: timeouts, redirects never followed, as the `oauth2`
//! docs advise against SSRF): bodies capped, and every answer but a 200 kept
//! as a [`CallError::Status`] with its body, so the connector (not the crate)
//! reads the provider's error and keeps its HTTP status.

use idbridge_connector_kit::call::{self, endpoint, UpstreamCall};
use idbridge_connector_kit::http::{read_capped, ReadError};
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use tracing::Instrument;

/// The largest answer read from the provider (tokens, userinfo).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why a call did not give a 200 answer.
#[derive(Debug)]
pub enum CallError {
    /// No answer: connection, TLS, timeout.
    Transport(reqwest::Error),
    /// The request could not be built (a header the crate made, a URL).
    Build(String),
    /// The answer passed [`MAX_BODY_BYTES`].
    TooLarge,
    /// An answer other than 200, with its body (the provider's error).
    Status {
        status: u16,
        location: Option<String>,
        body: Vec<u8>,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Build(e) => write!(f, "cannot build the request: {e}"),
            CallError::TooLarge => write!(f, "the answer is larger than {MAX_BODY_BYTES} bytes"),
            CallError::Status { status, .. } => write!(f, "HTTP {status}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// Plugged into `oauth2`'s `request_async` (the token endpoint: the code
/// exchange and the refresh grant), each call observed as the `token` endpoint
/// of `connector`.
pub struct Transport<'a> {
    pub http: &'a reqwest::Client,
    pub connector: &'a str,
}

impl<'c> AsyncHttpClient<'c> for Transport<'_> {
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, CallError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut request: reqwest::Request = request
                .try_into()
                .map_err(|e: reqwest::Error| CallError::Build(e.without_url().to_string()))?;
            let observed = UpstreamCall::begin(self.connector, endpoint::TOKEN, &mut request);
            let result = self.send(request).instrument(observed.span()).await;
            match &result {
                Ok(r) => observed.end(
                    Some(r.status().as_u16()),
                    call::outcome(Ok(r.status().as_u16())),
                ),
                Err(CallError::Transport(e)) => observed.end(None, call::outcome(Err(e))),
                Err(CallError::Status { status, .. }) => {
                    observed.end(Some(*status), call::outcome(Ok(*status)))
                }
                Err(CallError::TooLarge) => observed.end(None, "bad_response"),
                Err(CallError::Build(_)) => observed.end(None, "invalid_request"),
            }
            result
        })
    }
}

impl Transport<'_> {
    async fn send(&self, request: reqwest::Request) -> Result<HttpResponse, CallError> {
        {
            let response = self
                .http
                .execute(request)
                .await
                .map_err(CallError::Transport)?;
            let status = response.status();
            let mut builder = oauth2::http::Response::builder().status(status.as_u16());
            for (name, value) in response.headers() {
                builder = builder.header(name.as_str(), value.as_bytes());
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let body = match read_capped(response, MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(ReadError::TooLarge) => return Err(CallError::TooLarge),
                Err(ReadError::Transport(e)) => return Err(CallError::Transport(e)),
            };
            if status.as_u16() != 200 {
                return Err(CallError::Status {
                    status: status.as_u16(),
                    location,
                    body,
                });
            }
            builder
                .body(body)
                .map_err(|e| CallError::Build(e.to_string()))
        }
    }
}
