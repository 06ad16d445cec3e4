//! Prometheus metrics (docs/operations.md, "Metrics"). Everything records through
//! the [`metrics`] facade — the server here, the connectors (`wechat-api`) and the
//! store too, none of which knows the server — and [`install`] puts the process's
//! [`recorder::Recorder`] behind it when `[telemetry] enabled`. Without it every
//! record is a no-op. `/metrics` is answered only on the telemetry listener
//! ([`split`]); on the public port it is a 404 like any unknown path.
//!
//! Labels are bounded: route templates never raw paths, connector ids from the
//! configuration, stages and kinds from closed enums, upstream codes from a known
//! list ([`upstream_code`]). No user, client secret or token ever becomes a label.

pub mod otel;
pub mod recorder;
pub mod spans;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{http::header, HttpResponse};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

pub use recorder::Recorder;

pub const HTTP_REQUESTS: &str = "idbridge_http_requests_total";
pub const HTTP_DURATION: &str = "idbridge_http_request_duration_seconds";
pub const SIGN_INS_STARTED: &str = "idbridge_sign_ins_started_total";
pub const SIGN_INS_COMPLETED: &str = "idbridge_sign_ins_completed_total";
pub const SIGN_INS_FAILED: &str = "idbridge_sign_ins_failed_total";
pub const TOKEN_GRANTS: &str = "idbridge_token_grants_total";
pub const REFRESH_REUSE: &str = "idbridge_refresh_token_reuse_detected_total";
pub const RECHECKS: &str = "idbridge_refresh_rechecks_total";
pub const FAIR_SHARE_WAITS: &str = "idbridge_fair_share_waits_total";
pub const FAIR_SHARE_REFUSALS: &str = "idbridge_fair_share_refusals_total";
pub const ONE_TIME_CODES: &str = "idbridge_one_time_codes_sent_total";
pub const SIGNING_KEY_AGE: &str = "idbridge_signing_key_age_seconds";
pub const SIGNING_KEY_NEXT_ROTATION: &str = "idbridge_signing_key_next_rotation_timestamp_seconds";
pub const BUILD_INFO: &str = "idbridge_build_info";

static RECORDER: OnceLock<Option<Recorder>> = OnceLock::new();

/// The process's recorder, installed behind the facade on first call. `None` when
/// another recorder was installed first (an embedder's): then `/metrics` says so.
pub fn install() -> Option<&'static Recorder> {
    RECORDER
        .get_or_init(|| {
            let recorder = Recorder::default();
            match metrics::set_global_recorder(recorder.clone()) {
                Ok(()) => {
                    describe();
                    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(recorder)
                }
                Err(_) => {
                    tracing::warn!(
                        stage = "telemetry",
                        "another metrics recorder is installed; /metrics stays empty"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The families' help texts (the connectors' and the store's too: they cannot
/// describe theirs without knowing whether anyone listens).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered on the public port, by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        "Time to answer an HTTP request on the public port, by method and route template."
    );
    describe_counter!(
        SIGN_INS_STARTED,
        "Upstream sign-ins begun, by connector and way in (browser, token_exchange)."
    );
    describe_counter!(
        SIGN_INS_COMPLETED,
        "Sign-ins that ended with an account, by connector and way in."
    );
    describe_counter!(
        SIGN_INS_FAILED,
        "Upstream sign-ins that failed, by connector, way in, stage, kind and upstream error code."
    );
    describe_counter!(
        TOKEN_GRANTS,
        "Token endpoint requests, by grant type and outcome (issued or the OAuth error)."
    );
    describe_counter!(
        RECHECKS,
        "Refreshes re-checked upstream (recheck_on_refresh), by connector and outcome: passed, refused (the grant ended) or unavailable (the grant kept)."
    );
    describe_counter!(
        REFRESH_REUSE,
        "Refresh tokens presented again after rotation: the whole family is revoked."
    );
    describe_counter!(
        FAIR_SHARE_WAITS,
        "Requests that had to wait for their app's fair share of local work."
    );
    describe_counter!(
        FAIR_SHARE_REFUSALS,
        "Requests refused as busy after waiting too long for their app's fair share."
    );
    describe_counter!(
        ONE_TIME_CODES,
        "One-time codes sent, by channel (phone, connector) and outcome."
    );
    describe_gauge!(
        SIGNING_KEY_AGE,
        "Seconds since the signing key in use for each algorithm became active."
    );
    describe_gauge!(
        SIGNING_KEY_NEXT_ROTATION,
        "Unix time at which the next signing key of each algorithm becomes active."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version of the running broker.");
    describe_histogram!(
        "idbridge_upstream_request_duration_seconds",
        "Time of one call to an upstream API, by connector, endpoint and outcome."
    );
    describe_counter!("idbridge_wechat_app_token_fetches_total", "Fetches of a WeChat app token (stable_token) by this instance, by connector and outcome; WeChat allows 2,000 a day per app.");
    describe_histogram!(
        "idbridge_store_call_duration_seconds",
        "Time of one store call, waiting for a connection included, by pool and outcome."
    );
    describe_histogram!(
        "idbridge_store_connection_wait_seconds",
        "Time a store call waited for a turn and a connection, by pool."
    );
    describe_gauge!(
        "idbridge_store_calls_in_flight",
        "Store calls holding or waiting for a connection, by pool."
    );
}

/// `[telemetry]` at run time: where the listener is, once bound.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// From `[telemetry] bind` when enabled.
    pub bind: Option<SocketAddr>,
    bound: OnceLock<SocketAddr>,
}

impl Telemetry {
    pub fn new(bind: Option<SocketAddr>) -> Self {
        Self {
            bind,
            bound: OnceLock::new(),
        }
    }

    /// Bind the telemetry listener (when enabled) and install the recorder.
    pub fn listen(&self) -> std::io::Result<Option<std::net::TcpListener>> {
        let Some(bind) = self.bind else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::bind(bind).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {bind} for metrics: {e} (telemetry.bind)"),
            )
        })?;
        let addr = listener.local_addr()?;
        let _ = self.bound.set(addr);
        install();
        tracing::info!(url = %format!("http://{addr}/metrics"), "metrics served");
        Ok(Some(listener))
    }

    /// The telemetry listener's address, once bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.get().copied()
    }
}

/// The outermost middleware: on the telemetry listener only `GET /metrics` is
/// answered (everything else 404); on the public port, requests go on.
pub async fn split(
    telemetry: Option<SocketAddr>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if telemetry.is_none() || Some(req.app_config().local_addr()) != telemetry {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let response = if req.path() == "/metrics" && req.method() == actix_web::http::Method::GET {
        match RECORDER.get().and_then(Option::as_ref) {
            Some(r) => HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(r.render()),
            None => HttpResponse::ServiceUnavailable().body("metrics recorder not installed\n"),
        }
    } else {
        HttpResponse::NotFound().body("only /metrics is served here\n")
    };
    Ok(req.into_response(response).map_into_right_body())
}

/// HTTP request count and duration by method, route *template* (`/login/{request}`,
/// never the path itself) and status. Unmatched paths are `route="unmatched"`.
pub async fn http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(res) => (res.request().match_pattern(), res.status().as_u16()),
        // A middleware's error: actix answers with its status.
        Err(e) => (None, e.as_response_error().status_code().as_u16()),
    };
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route).record(elapsed);
    result
}

pub(crate) fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

// The `connector` label comes from `AppState::connector_label` (a configured
// connector's id, else `unknown`), the `via` label from `audit::LoginVia::as_str`:
// this module imports nothing of the server's, so every module may record.

pub fn sign_in_started(connector: &str, via: &'static str) {
    metrics::counter!(SIGN_INS_STARTED, "connector" => connector.to_owned(), "via" => via)
        .increment(1);
}

pub fn sign_in_completed(connector: &str, via: &'static str) {
    metrics::counter!(SIGN_INS_COMPLETED, "connector" => connector.to_owned(), "via" => via)
        .increment(1);
}

pub fn sign_in_failed(connector: &str, via: &'static str, e: &idbridge_core::ConnectorError) {
    metrics::counter!(
        SIGN_INS_FAILED,
        "connector" => connector.to_owned(),
        "via" => via,
        "stage" => e.stage.as_str(),
        "kind" => e.kind.as_str(),
        "upstream_code" => upstream_code(e.upstream_code.as_deref()),
    )
    .increment(1);
}

/// WeChat errcodes worth telling apart on a dashboard; any other number is `other`.
const WECHAT_ERRCODES: &[&str] = &[
    "-1", "40001", "40002", "40003", "40013", "40014", "40029", "40030", "40125", "40163", "40164",
    "40226", "40243", "41001", "41002", "41003", "41004", "41008", "42001", "42002", "42003",
    "43004", "45009", "45011", "45015", "45047", "48001", "50001", "50002", "61023", "89503",
    "89506", "89507",
];

/// OAuth 2.0 / OpenID Connect error codes an OpenID provider answers with.
const OAUTH_ERRORS: &[&str] = &[
    "access_denied",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "invalid_token",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "consent_required",
    "account_selection_required",
];

/// The `upstream_code` label: `none` without a code, the code itself when it is a
/// known WeChat errcode or OAuth error, else `other` — an upstream must not be able
/// to mint series.
pub fn upstream_code(code: Option<&str>) -> &'static str {
    let Some(code) = code.map(str::trim) else {
        return "none";
    };
    WECHAT_ERRCODES
        .iter()
        .chain(OAUTH_ERRORS)
        .find(|known| **known == code)
        .copied()
        .unwrap_or("other")
}

/// The `grant_type` label of the token endpoint.
pub fn grant_type_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some(crate::params::TOKEN_EXCHANGE_GRANT_TYPE) => "token_exchange",
        None => "none",
        Some(_) => "other",
    }
}

/// One token endpoint answer: `issued`, or the OAuth error code (a closed set of
/// `&'static str`s).
pub fn token_grant(grant_type: Option<&str>, outcome: Result<(), &'static str>) {
    let outcome = match outcome {
        Ok(()) => "issued",
        Err(e) => e,
    };
    metrics::counter!(TOKEN_GRANTS, "grant_type" => grant_type_label(grant_type), "outcome" => outcome).increment(1);
}

/// A one-time code handed to a channel (`sms`, `connector`): `sent` or `failed`.
pub fn one_time_code(channel: &'static str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    metrics::counter!(ONE_TIME_CODES, "channel" => channel, "outcome" => outcome).increment(1);
}

/// A refresh re-checked upstream: `passed`, `refused` (the grant ended) or
/// `unavailable` (the upstream failed; the grant kept).
pub fn refresh_recheck(connector: &str, outcome: &'static str) {
    metrics::counter!(RECHECKS, "connector" => connector.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub fn refresh_reuse_detected() {
    metrics::counter!(REFRESH_REUSE).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_codes_are_a_closed_set() {
        assert_eq!(upstream_code(None), "none");
        assert_eq!(upstream_code(Some("40029")), "40029");
        assert_eq!(upstream_code(Some("40163")), "40163");
        assert_eq!(upstream_code(Some("invalid_grant")), "invalid_grant");
        assert_eq!(upstream_code(Some("99999")), "other");
        assert_eq!(upstream_code(Some("user 12345 said no")), "other");
        assert_eq!(upstream_code(Some(&"9".repeat(10_000))), "other");
    }

    #[test]
    fn grant_types_are_a_closed_set() {
        assert_eq!(
            grant_type_label(Some("authorization_code")),
            "authorization_code"
        );
        assert_eq!(grant_type_label(Some("refresh_token")), "refresh_token");
        assert_eq!(
            grant_type_label(Some(crate::params::TOKEN_EXCHANGE_GRANT_TYPE)),
            "token_exchange"
        );
        assert_eq!(grant_type_label(Some("password")), "other");
        assert_eq!(grant_type_label(Some("../../etc")), "other");
        assert_eq!(grant_type_label(None), "none");
    }

    #[test]
    fn methods_are_a_closed_set() {
        use actix_web::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or(Method::GET)),
            "other"
        );
    }
}
