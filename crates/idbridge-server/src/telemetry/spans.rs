//! The server span of each request on the public port (docs/operations.md,
//! "Tracing"): named `METHOD /route/template` (the metrics' templates, never the
//! path), with `http.request.method`, `http.route`, `http.response.status_code`,
//! and `client_id` / `connector` once a handler knows them ([`client_id`],
//! [`connector`]). An app's W3C `traceparent`/`tracestate` makes it the span's
//! parent. The store's and the connectors' calls become its children.
//!
//! Without the binary's OpenTelemetry layer the span is disabled: nothing is
//! made, nothing recorded. No query, header, cookie or body becomes an
//! attribute.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Wraps every request in its server span.
pub async fn request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = super::method_label(req.method());
    let span = tracing::info_span!(
        "request",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = Empty,
        http.response.status_code = Empty,
        client_id = Empty,
        connector = Empty,
    );
    if span.is_none() {
        return next.call(req).await;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
    // A `traceparent` that does not parse leaves a root span, as the spec says.
    let _ = span.set_parent(parent);
    let result = next.call(req).instrument(span.clone()).await;
    let (route, status) = match &result {
        Ok(res) => (res.request().match_pattern(), res.status().as_u16()),
        Err(e) => (None, e.as_response_error().status_code().as_u16()),
    };
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    // The route is known only now; the OpenTelemetry span started with the method.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.route", route.as_str());
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    result
}

/// The registered app the current request is for (its `client_id`, never a
/// secret): an attribute of the request span.
pub fn client_id(id: &str) {
    tracing::Span::current().record("client_id", id);
}

/// The configured connector the current request signs in with.
pub fn connector(id: &str) {
    tracing::Span::current().record("connector", id);
}

struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
