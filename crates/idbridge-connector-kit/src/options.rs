//! A connector's config keys: [`parse_options`] reads them into the connector's
//! own settings type and names the key at fault (`connectors[ID].key`) for an
//! unknown key, a missing one and a value of the wrong type alike; [`Keys`]
//! collects the checks that come after parsing, every one naming its key; and
//! the typed keys most connectors share: [`Secret`], [`BaseUrl`], [`Seconds`]
//! and [`Timeouts`].
//!
//! # Secrets and `*_file`
//!
//! A connector declares a secret as `appsecret: Secret` and nothing else. The
//! operator may write `appsecret = "…"` or `appsecret_file = "/run/secrets/x"`:
//! the broker's config loader reads every connector key ending in `_file`
//! (trimmed) into the key without the suffix, and refuses both at once, before
//! the options ever reach the factory. So a connector never reads files, never
//! sees `*_file` keys, and must not give a non-secret option a name ending in
//! `_file` (the broker would read it as a secret file). [`Secret`] keeps the
//! value out of `Debug`, so a settings struct deriving `Debug` can be logged.

use idbridge_core::{ConfigError, ConnectorSettings};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// `connectors[ID].key`, the way every config error names a connector key.
pub fn option_key(settings: &ConnectorSettings, key: &str) -> String {
    format!("connectors[{}].{key}", settings.id)
}

/// Read a connector's options into its settings type `T` (use
/// `#[serde(deny_unknown_fields)]` on it). The error names the key at fault,
/// `connectors[ID].key` (nested: `connectors[ID].key.inner`, `key[2]`): an
/// unknown key, a missing key, a value of the wrong type or one a field's own
/// `Deserialize` refused. Serde stops at the first mistake, so this returns one
/// error; collect the checks after parsing with [`Keys`].
pub fn parse_options<T: DeserializeOwned>(
    settings: &ConnectorSettings,
) -> Result<T, Vec<ConfigError>> {
    let options = match &settings.options {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other.clone(),
    };
    serde_path_to_error::deserialize::<_, T>(options).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let named = message.split('`').nth(1);
        let key = match (path.as_str(), named) {
            // A missing key is reported on the table that lacks it; serde
            // names the key between backticks.
            ("" | ".", Some(inner)) => inner.to_owned(),
            ("" | ".", None) => "?".to_owned(),
            (table, Some(inner)) if message.starts_with("missing field") => {
                format!("{table}.{inner}")
            }
            // The path ends at the key at fault (an unknown key included).
            (key, _) => key.to_owned(),
        };
        let hint = if message.starts_with("unknown field") && key.ends_with("_file") {
            " (the broker reads `KEY_file` into `KEY` for the connector; this connector has no such secret)"
        } else {
            ""
        };
        vec![ConfigError::new(
            option_key(settings, &key),
            format!("{message}{hint}"),
        )]
    })
}

/// The checks after parsing, collected so that one build reports every
/// mistake, each naming its key.
pub struct Keys<'a> {
    settings: &'a ConnectorSettings,
    errors: Vec<ConfigError>,
}

impl<'a> Keys<'a> {
    pub fn new(settings: &'a ConnectorSettings) -> Self {
        Self {
            settings,
            errors: Vec::new(),
        }
    }

    /// `connectors[ID].key`.
    pub fn key(&self, key: &str) -> String {
        option_key(self.settings, key)
    }

    /// Report `key` as wrong.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(self.key(key), message));
    }

    /// Report `key` as wrong unless `ok`.
    pub fn check(&mut self, key: &str, ok: bool, message: impl Into<String>) {
        if !ok {
            self.error(key, message);
        }
    }

    /// Report `key` unless `value` is one of `allowed`.
    pub fn one_of(&mut self, key: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            self.error(key, format!("{value:?}: use {}", list.join(" or ")));
        }
    }

    /// Report `key` unless `url` is an absolute http(s) URL.
    pub fn base_url(&mut self, key: &str, url: &BaseUrl) {
        if let Err(message) = url.check() {
            self.error(key, message);
        }
    }

    /// Report `key` unless `value` is more than 0 and at most `max` seconds.
    pub fn seconds(&mut self, key: &str, value: Seconds, max: f64) {
        if let Err(message) = value.check(max) {
            self.error(key, message);
        }
    }

    /// Errors found elsewhere (e.g. by a shared check).
    pub fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        self.errors.extend(errors);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `value` when every check passed, else every error found.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// A secret option (an app secret, a client secret, a private key): read from a
/// string, never shown by `Debug` (`Secret(<redacted>)`); [`Secret::expose`] is
/// the only way to the value. See the module docs for `*_file`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An upstream's base URL (`api_base_url`: the real one by default, a
/// simulator's in tests). Read as any string; [`Keys::base_url`] checks it is
/// an absolute http(s) URL, so one build reports it with the other mistakes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without a trailing `/`, ready for `format!("{}/path", url.trimmed())`.
    pub fn trimmed(&self) -> &str {
        self.0.trim_end_matches('/')
    }

    /// `Err` with the message for the operator unless it is an absolute http(s) URL.
    pub fn check(&self) -> Result<(), String> {
        match url::Url::parse(&self.0) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Ok(()),
            _ => Err(format!("{:?} is not an http(s) URL", self.0)),
        }
    }

    /// `scheme://host[:port]`, e.g. for a page's CSP `frame-src`.
    pub fn origin(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => self.0.clone(),
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number of seconds (`timeout_secs = 2.5`). Read as any number;
/// [`Keys::seconds`] checks its range.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(transparent)]
pub struct Seconds(f64);

impl Seconds {
    pub const fn new(secs: f64) -> Self {
        Self(secs)
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// As a `Duration`; 0 for a value [`Seconds::check`] refuses.
    pub fn duration(self) -> Duration {
        Duration::try_from_secs_f64(self.0).unwrap_or(Duration::ZERO)
    }

    /// `Err` with the message for the operator unless 0 < secs ≤ `max`.
    pub fn check(self, max: f64) -> Result<(), String> {
        if self.0 > 0.0 && self.0 <= max {
            Ok(())
        } else {
            Err(format!("must be between 0 and {max} seconds"))
        }
    }

    /// [`Timeouts::DEFAULT_CONNECT`], for `#[serde(default = "Seconds::default_connect")]`.
    pub fn default_connect() -> Self {
        Timeouts::DEFAULT_CONNECT
    }

    /// [`Timeouts::DEFAULT_TOTAL`], for `#[serde(default = "Seconds::default_total")]`.
    pub fn default_total() -> Self {
        Timeouts::DEFAULT_TOTAL
    }
}

/// The two timeouts of a connector that calls its upstream, from the keys
/// `connect_timeout_secs` (default 3) and `timeout_secs` (default 10), each more
/// than 0 and at most [`Timeouts::MAX_SECS`]. Declare the keys as [`Seconds`]
/// with `#[serde(default = "Seconds::default_connect")]` and
/// `#[serde(default = "Seconds::default_total")]` and check them with
/// [`Timeouts::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: Duration,
    /// The whole call, the body included.
    pub total: Duration,
}

impl Timeouts {
    pub const DEFAULT_CONNECT: Seconds = Seconds(3.0);
    pub const DEFAULT_TOTAL: Seconds = Seconds(10.0);
    pub const MAX_SECS: f64 = 60.0;
    pub const CONNECT_KEY: &'static str = "connect_timeout_secs";
    pub const TOTAL_KEY: &'static str = "timeout_secs";

    /// Check both keys (reported into `keys`) and build the timeouts.
    pub fn check(keys: &mut Keys<'_>, connect: Seconds, total: Seconds) -> Self {
        keys.seconds(Self::CONNECT_KEY, connect, Self::MAX_SECS);
        keys.seconds(Self::TOTAL_KEY, total, Self::MAX_SECS);
        Self {
            connect: connect.duration(),
            total: total.duration(),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Self::DEFAULT_CONNECT.duration(),
            total: Self::DEFAULT_TOTAL.duration(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        appid: String,
        appsecret: Secret,
        #[serde(default)]
        nested: Option<Inner>,
        #[serde(default = "Seconds::default_total")]
        timeout_secs: Seconds,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u32,
    }

    fn parse(options: serde_json::Value) -> Result<Opts, Vec<ConfigError>> {
        parse_options(&testing::settings("x", "test", options))
    }

    fn key_of(options: serde_json::Value) -> String {
        parse(options).unwrap_err()[0].key.clone()
    }

    #[test]
    fn every_kind_of_mistake_names_its_key() {
        let ok = parse(serde_json::json!({"appid": "a", "appsecret": "s3cr3t-value"})).unwrap();
        assert_eq!(ok.timeout_secs, Timeouts::DEFAULT_TOTAL);
        assert_eq!(
            key_of(serde_json::json!({"appid": "a", "appsecret": "s", "colour": 1})),
            "connectors[x].colour"
        );
        assert_eq!(
            key_of(serde_json::json!({"appsecret": "s"})),
            "connectors[x].appid"
        );
        assert_eq!(
            key_of(serde_json::json!({"appid": [], "appsecret": "s"})),
            "connectors[x].appid"
        );
        assert_eq!(
            key_of(serde_json::json!({"appid": "a", "appsecret": "s", "timeout_secs": "ten"})),
            "connectors[x].timeout_secs"
        );
        assert_eq!(
            key_of(
                serde_json::json!({"appid": "a", "appsecret": "s", "nested": {"depth": "deep"}})
            ),
            "connectors[x].nested.depth"
        );
        assert_eq!(
            key_of(
                serde_json::json!({"appid": "a", "appsecret": "s", "nested": {"depth": 1, "x": 2}})
            ),
            "connectors[x].nested.x"
        );
        let e = parse(serde_json::json!({"appid": "a", "appsecret": "s", "appsecret_file": "/x"}))
            .unwrap_err();
        assert_eq!(e[0].key, "connectors[x].appsecret_file");
        let e = parse(serde_json::json!({"appid": "a", "appsecret": "s", "key_file": "/x"}))
            .unwrap_err();
        assert!(e[0].message.contains("KEY_file"), "{e:?}");
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let o = parse(serde_json::json!({"appid": "a", "appsecret": "s3cr3t-value"})).unwrap();
        let shown = format!("{o:?} {:#?}", o);
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("Secret(<redacted>)"));
        assert_eq!(o.appsecret.expose(), "s3cr3t-value");
    }

    #[test]
    fn checks_after_parsing_are_collected() {
        let settings = testing::settings("x", "test", serde_json::json!({}));
        let mut keys = Keys::new(&settings);
        keys.base_url("api_base_url", &BaseUrl::new("ftp://example.com"));
        keys.base_url("open_base_url", &BaseUrl::new("https://open.example.com/"));
        keys.one_of("mode", "popup", &["redirect", "embedded"]);
        let t = Timeouts::check(&mut keys, Seconds::new(0.0), Seconds::new(61.0));
        assert_eq!(t.connect, Duration::ZERO);
        let errors = keys.finish(()).unwrap_err();
        let named: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            named,
            [
                "connectors[x].api_base_url",
                "connectors[x].mode",
                "connectors[x].connect_timeout_secs",
                "connectors[x].timeout_secs"
            ]
        );
        assert!(errors[1].message.contains("\"redirect\" or \"embedded\""));
        assert_eq!(
            BaseUrl::new("https://open.example.com/").trimmed(),
            "https://open.example.com"
        );
        assert_eq!(
            BaseUrl::new("http://127.0.0.1:8080/x").origin(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(Timeouts::default().total, Duration::from_secs(10));
    }
}
