//! One upstream HTTP call observed the same way by every connector: a client
//! span (a child of whatever span is current, e.g. the broker's request span),
//! the W3C `traceparent`/`tracestate` of that span put on the request, and the
//! call's latency in `idbridge_upstream_request_duration_seconds` by connector,
//! endpoint and outcome (docs/operations.md, "Metrics" and "Tracing").
//!
//! Through the `tracing` and `metrics` facades and the OpenTelemetry API only:
//! without the broker's tracing layer no span is made and nothing is injected,
//! without its recorder nothing is recorded. Span attributes never hold the URL's
//! query or path beyond the endpoint label (WeChat puts `secret`, `code` and
//! `access_token` in query strings), nor any header or body.

use opentelemetry::propagation::Injector;
use std::time::Instant;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The latency family every upstream call records into.
pub const UPSTREAM_DURATION: &str = "idbridge_upstream_request_duration_seconds";

/// The bounded `endpoint` labels of the kit's connectors.
pub mod endpoint {
    pub const DISCOVERY: &str = "discovery";
    pub const JWKS: &str = "jwks";
    pub const TOKEN: &str = "token";
    pub const USERINFO: &str = "userinfo";
    /// Any other API call with the person's token (GitHub's `/user/emails`…).
    pub const API: &str = "api";
    /// `idbridge doctor`'s reachability checks.
    pub const CHECK: &str = "check";
}

/// One call under way: [`UpstreamCall::begin`] before sending, [`UpstreamCall::end`]
/// when its answer has been read (or it failed). Run the sending and reading
/// inside [`UpstreamCall::span`] (`.instrument(call.span())`).
pub struct UpstreamCall {
    span: tracing::Span,
    started: Instant,
    connector: String,
    endpoint: &'static str,
}

impl UpstreamCall {
    /// Starts the span (only when a span is current: a call outside a request,
    /// at start-up or in a background job, makes no trace of its own) and puts
    /// its trace context on `request`. `connector`: the configured id (a bounded
    /// label); `endpoint`: one of a connector's fixed labels ([`endpoint`]).
    pub fn begin(connector: &str, endpoint: &'static str, request: &mut reqwest::Request) -> Self {
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            let url = request.url();
            tracing::info_span!(
                "upstream",
                otel.name = %format!("{} {endpoint}", request.method()),
                otel.kind = "client",
                otel.status_code = Empty,
                http.request.method = %request.method(),
                server.address = url.host_str().unwrap_or(""),
                server.port = url.port_or_known_default().unwrap_or(0),
                connector,
                upstream.endpoint = endpoint,
                http.response.status_code = Empty,
                outcome = Empty,
            )
        };
        if !span.is_none() {
            let context = span.context();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&context, &mut Headers(request.headers_mut()))
            });
        }
        Self {
            span,
            started: Instant::now(),
            connector: connector.to_owned(),
            endpoint,
        }
    }

    /// The call's span, to run the call in.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// Ends the call: the HTTP status when an answer came, and the outcome (`ok`,
    /// or a closed set of words such as an `ErrorKind`'s `as_str`).
    pub fn end(self, status: Option<u16>, outcome: &'static str) {
        metrics::histogram!(
            UPSTREAM_DURATION,
            "connector" => self.connector,
            "endpoint" => self.endpoint,
            "outcome" => outcome,
        )
        .record(self.started.elapsed().as_secs_f64());
        if let Some(status) = status {
            self.span.record("http.response.status_code", status);
        }
        self.span.record("outcome", outcome);
        if outcome != "ok" {
            self.span.record("otel.status_code", "error");
        }
    }
}

/// The outcome of a plain HTTP answer or transport failure, for [`UpstreamCall::end`]:
/// `ok` below 400, `http_4xx`/`http_5xx`, `timeout` or `upstream_unavailable`.
pub fn outcome(result: Result<u16, &reqwest::Error>) -> &'static str {
    match result {
        Ok(s) if s < 400 => "ok",
        Ok(s) if s < 500 => "http_4xx",
        Ok(_) => "http_5xx",
        Err(e) if e.is_timeout() => "timeout",
        Err(_) => "upstream_unavailable",
    }
}

struct Headers<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn outside_a_span_nothing_is_injected() {
        let client = reqwest::Client::new();
        let mut request = client
            .get("http://127.0.0.1:1/sns/oauth2/access_token?secret=s&code=c")
            .build()
            .unwrap();
        let call = UpstreamCall::begin("wx", endpoint::TOKEN, &mut request);
        assert!(call.span().is_none());
        assert!(request.headers().get("traceparent").is_none());
        call.end(Some(200), "ok");
    }

    #[test]
    fn outcomes_are_a_closed_set() {
        assert_eq!(outcome(Ok(200)), "ok");
        assert_eq!(outcome(Ok(302)), "ok");
        assert_eq!(outcome(Ok(401)), "http_4xx");
        assert_eq!(outcome(Ok(503)), "http_5xx");
    }
}
