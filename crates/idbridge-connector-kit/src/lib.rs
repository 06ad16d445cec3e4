//! What a connector crate builds on, beside `idbridge-core`'s trait:
//!
//! - [`options`]: [`options::parse_options`] reads a connector's keys into its
//!   settings type and names the key at fault (unknown, missing, wrong type);
//!   [`options::Keys`] collects the checks after it; typed common keys:
//!   [`options::Secret`] (redacted in `Debug`; the broker resolves `*_file`),
//!   [`options::BaseUrl`], [`options::Seconds`], [`options::Timeouts`].
//! - [`lease`]: [`lease::SharedToken`], one upstream token shared by every
//!   broker instance, fetched by one instance at a time under a lease in the
//!   broker's shared cache (WeChat's app token is one user).
//! - [`flow`]: nonce and PKCE (S256) values a connector keeps in
//!   `Started::flow_data` and reads back from `CallbackRequest::flow_data`.
//! - [`testing`]: fixture builders for connector tests (settings, build and
//!   request contexts, begin and callback requests).
//! - [`transport`]: [`transport::error_chain`], a failed upstream call's causes
//!   on one line for the operator's log.
//! - [`http`]: the upstream HTTP client every connector builds the same way
//!   (timeouts, no redirects), capped body reads, URLs shown without their
//!   query, transport failures as `ConnectorError`s, the https-or-loopback check.
//! - [`call`]: [`call::UpstreamCall`], one upstream call observed alike in every
//!   connector: a client span, the W3C trace context on the request, and the
//!   `idbridge_upstream_request_duration_seconds` latency by connector and endpoint.
//! - [`claims`]: [`claims::ClaimPath`], a dotted path with array indexes into
//!   an upstream's JSON answer (the `oauth2` connector's claim mapping).
//! - [`oauth_errors`]: the RFC 6749 errors of an authorization response and of
//!   a token endpoint, mapped to `ErrorKind`s with a fix.
//! - [`doctor`]: [`doctor::run`], a factory's `idbridge doctor` checks that call
//!   the upstream, run off the CLI's runtime.
//! - [`conformance`]: the suite every connector crate runs from its tests
//!   against its (simulated) upstream.
//!
//! It knows no upstream in particular. The walkthrough for a connector author
//! is `docs/connectors/writing-a-connector.md`, also rendered (and its examples
//! compiled and run) as [`guide`].

pub mod call;
pub mod claims;
pub mod conformance;
pub mod doctor;
pub mod flow;
pub mod http;
pub mod lease;
pub mod oauth_errors;
pub mod options;
pub mod testing;
pub mod transport;

#[doc = include_str!("../../../docs/connectors/writing-a-connector.md")]
pub mod guide {}
