//! What every connector that calls its upstream over HTTP shares: one way to
//! build the `reqwest` client (connect and total timeouts, redirects never
//! followed, so a hostile or misconfigured endpoint cannot send the broker
//! elsewhere), a capped body read, URLs shown without their query or
//! credentials, and transport failures (no connection, a timeout, a reset)
//! turned into a `ConnectorError` that names the endpoint and says what to do.

use crate::options::Timeouts;
use idbridge_core::{ConnectorError, ErrorKind, Stage};

/// The client a connector sends its upstream calls with: the timeouts, no
/// redirects followed, `user_agent` on every request.
pub fn client(timeouts: Timeouts, user_agent: &str) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
        .map_err(|e| e.without_url().to_string())
}

/// `scheme://host[:port]/path` of `url`, without query, fragment or
/// credentials, for messages and logs (codes and tokens never show).
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.chars().take(120).collect(),
    }
}

/// Why a body read stopped.
#[derive(Debug)]
pub enum ReadError {
    /// More than the cap.
    TooLarge,
    Transport(reqwest::Error),
}

/// The whole body of `response`, or [`ReadError::TooLarge`] once it passes
/// `max` bytes (checked against `Content-Length` first, then while reading).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A failed call below HTTP (`what`: "the code exchange"; `url`: where it
/// went) as `Timeout` (which limit, and what to raise) or
/// `UpstreamUnavailable` (the cause chain as the upstream message).
pub fn transport_error(
    stage: Stage,
    what: &str,
    url: &str,
    error: reqwest::Error,
    timeouts: Timeouts,
) -> ConnectorError {
    let error = error.without_url();
    let place = shown(url);
    if error.is_timeout() {
        let (limit, during) = if error.is_connect() {
            (timeouts.connect, "connecting")
        } else {
            (timeouts.total, "waiting for the answer")
        };
        return ConnectorError::new(stage, ErrorKind::Timeout).fix(format!(
            "no answer for {what} from {place} within {} s ({during}): check the broker's egress to the provider (firewall, proxy, DNS), or raise connect_timeout_secs / timeout_secs",
            limit.as_secs_f64()
        ));
    }
    let detail = crate::transport::error_chain(&error);
    let fix = if error.is_connect() {
        format!("could not connect to {place} for {what}: check the configured host and port, DNS, firewall and proxy for the broker's egress")
    } else {
        format!("the connection to {place} failed before a complete answer to {what}: retry; if it persists, look at proxies or TLS between the broker and the provider")
    };
    ConnectorError::new(stage, ErrorKind::UpstreamUnavailable)
        .upstream("transport", detail)
        .fix(fix)
}

/// `Err` with the operator's message unless `url` is an absolute `https` URL,
/// or `http` to a loopback host (`127.0.0.0/8`, `::1`, `localhost`: a
/// simulator, a local test provider). For `idbridge doctor`: tokens and
/// secrets must not cross a network in the clear.
pub fn check_secure_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.has_host() => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err(format!(
            "{} is plain http to a host that is not loopback: codes, tokens and the client secret would cross the network in the clear; use https",
            shown(url)
        )),
        _ => Err(format!("{} is not an https URL", shown(url))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_are_shown_without_query_or_credentials() {
        assert_eq!(
            shown("https://u:p@example.com/token?code=secret#x"),
            "https://example.com/token"
        );
    }

    #[test]
    fn only_https_or_loopback_http_is_secure() {
        assert!(check_secure_url("https://github.com/login/oauth/authorize").is_ok());
        assert!(check_secure_url("http://127.0.0.1:8080/token").is_ok());
        assert!(check_secure_url("http://[::1]/token").is_ok());
        assert!(check_secure_url("http://localhost:3000/x").is_ok());
        let e = check_secure_url("http://github.example.com/token").unwrap_err();
        assert!(e.contains("use https"), "{e}");
        assert!(check_secure_url("ftp://example.com/x").is_err());
        assert!(check_secure_url("not a url").is_err());
    }
}
