//! The one validation pass over loaded settings ([`Checked::new`]): every wrong
//! value reported under its key, all at once, and the typed values made on the
//! way ([`Config::new`] for the broker). The checks of a client's URLs are in
//! [`super::client_check`].

use super::client_check::{is_loopback, ClientRules};
use super::typed::{missing_master_key, Algorithms, Checked, Config, Sender};
use super::Settings;
use crate::client_ip::TrustedProxies;
use crate::connector_config::ConnectorConfig;
use idbridge_core::ConfigError;

impl Checked {
    /// Check `settings` (without the rules of a mode: [`Checked::for_mode`]).
    pub fn new(settings: Settings) -> Checked {
        let mut errors = Vec::new();
        let typed = validate(&settings, &mut errors);
        Checked {
            settings,
            master_key: typed.master_key,
            sender: typed.sender,
            algorithms: typed.algorithms,
            proxies: typed.proxies,
            telemetry: typed.telemetry,
            connectors: typed.connectors,
            errors,
        }
    }
}

impl Config {
    /// Check and type `settings` for a broker run with `--dev` or without: the
    /// one validation pass and the rules of that mode; every mistake at once.
    pub fn new(settings: Settings, dev_mode: bool) -> Result<Config, Vec<ConfigError>> {
        Checked::new(settings).for_mode(dev_mode).into_config()
    }
}

/// The values [`validate`] typed on its way.
struct Typed {
    master_key: Option<idbridge_tokens::MasterKey>,
    sender: Option<Sender>,
    algorithms: Algorithms,
    proxies: TrustedProxies,
    connectors: Vec<ConnectorConfig>,
    telemetry: Option<std::net::SocketAddr>,
}

fn validate(s: &Settings, errors: &mut Vec<ConfigError>) -> Typed {
    match url::Url::parse(&s.issuer) {
        Ok(u) => {
            if u.scheme() != "https" && !(u.scheme() == "http" && is_loopback(&u)) {
                errors.push(ConfigError::new(
                    "issuer",
                    "must use https (plain http is allowed only on a loopback host)",
                ));
            }
            if u.query().is_some() || u.fragment().is_some() {
                errors.push(ConfigError::new(
                    "issuer",
                    "must not have a query or fragment",
                ));
            }
            if s.issuer.ends_with('/') {
                errors.push(ConfigError::new("issuer", "must not end with '/'"));
            }
        }
        Err(e) => errors.push(ConfigError::new(
            "issuer",
            format!("{:?} is not an absolute URL: {e}", s.issuer),
        )),
    }
    let proxies = match TrustedProxies::parse(&s.server.trusted_proxies) {
        Ok(proxies) => proxies,
        Err(e) => {
            errors.push(ConfigError::new("server.trusted_proxies", e));
            TrustedProxies::default()
        }
    };
    if !(1..=300).contains(&s.server.request_read_timeout_secs) {
        errors.push(ConfigError::new(
            "server.request_read_timeout_secs",
            "must be between 1 and 300 seconds",
        ));
    }
    if s.server.shutdown_timeout_secs > 300 {
        errors.push(ConfigError::new(
            "server.shutdown_timeout_secs",
            "must be between 0 and 300 seconds",
        ));
    }
    let algorithms = Algorithms::read(&s.signing, errors);
    let master_key = match &s.signing.master_key {
        None => {
            errors.push(missing_master_key());
            None
        }
        Some(k) => match idbridge_tokens::MasterKey::parse(k) {
            Ok(key) => Some(key),
            Err(e) => {
                errors.push(ConfigError::new("signing.master_key", e.to_string()));
                None
            }
        },
    };
    if !(s.storage.url.starts_with("sqlite:")
        || s.storage.url.starts_with("postgres://")
        || s.storage.url.starts_with("postgresql://"))
    {
        errors.push(ConfigError::new(
            "storage.url",
            "use sqlite://path/to/file.db or postgres://user@host/db",
        ));
    }
    for (key, v) in [
        (
            "storage.connect_timeout_secs",
            s.storage.connect_timeout_secs,
        ),
        ("storage.query_timeout_secs", s.storage.query_timeout_secs),
    ] {
        if v == 0 {
            errors.push(ConfigError::new(key, "must be at least 1 (seconds)"));
        }
    }
    let telemetry = telemetry(s, errors);
    for (key, message) in crate::telemetry::otel::check(&s.telemetry.tracing) {
        errors.push(ConfigError::new(key, message));
    }
    for (i, token) in s.admin.tokens.iter().enumerate() {
        if let Err(msg) = crate::admin::tokens::check(token) {
            let key = crate::admin::tokens::config_key(s.admin.token_file.as_deref(), i);
            errors.push(ConfigError::new(key, msg));
        }
    }
    for (i, token) in s.admin.registration_tokens.iter().enumerate() {
        if let Err(msg) = crate::admin::tokens::check(token) {
            errors.push(ConfigError::new(
                format!("admin.registration_tokens[{i}]"),
                msg,
            ));
        }
    }
    let t = &s.tokens;
    for (key, v) in [
        ("tokens.code_ttl_secs", t.code_ttl_secs),
        ("tokens.access_token_ttl_secs", t.access_token_ttl_secs),
        ("tokens.id_token_ttl_secs", t.id_token_ttl_secs),
        ("tokens.refresh_idle_ttl_secs", t.refresh_idle_ttl_secs),
        (
            "tokens.refresh_absolute_ttl_secs",
            t.refresh_absolute_ttl_secs,
        ),
        ("tokens.session_ttl_secs", t.session_ttl_secs),
        ("tokens.auth_request_ttl_secs", t.auth_request_ttl_secs),
    ] {
        if v <= 0 {
            errors.push(ConfigError::new(
                key,
                "must be a positive number of seconds",
            ));
        }
    }
    if !(0..=300).contains(&t.refresh_grace_secs) {
        errors.push(ConfigError::new(
            "tokens.refresh_grace_secs",
            "must be from 0 to 300 seconds: the window only has to cover a retry after a \
             lost response, and inside it a stolen refresh token works as well as the app's",
        ));
    }
    if t.code_ttl_secs > 600 {
        errors.push(ConfigError::new(
            "tokens.code_ttl_secs",
            "must be at most 600 (codes are short-lived)",
        ));
    }
    let mut connectors = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (i, raw) in s.connectors.iter().enumerate() {
        let (entry, mut errs) = ConnectorConfig::read(i, raw);
        errors.append(&mut errs);
        if let Some(id) = raw.get("id").and_then(|v| v.as_str()) {
            if !ids.insert(id.to_owned()) {
                errors.push(ConfigError::new(
                    format!("connectors[{id}].id"),
                    "is used twice",
                ));
            }
        }
        connectors.extend(entry);
    }
    if s.account.reauth_after_secs < 0 {
        errors.push(ConfigError::new(
            "account.reauth_after_secs",
            "must be 0 (always confirm) or a positive number of seconds",
        ));
    }
    let v = &s.verification;
    let sender = match Sender::parse(&v.sender) {
        Ok(sender) => Some(sender),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if sender == Some(Sender::Webhook) {
        match v.webhook_url.as_deref().map(url::Url::parse) {
            Some(Ok(u)) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {}
            Some(_) => errors.push(ConfigError::new(
                "verification.webhook_url",
                "must be an https URL (http only on a loopback host)",
            )),
            None => errors.push(ConfigError::new(
                "verification.webhook_url",
                "missing: sender = \"webhook\" posts each code there",
            )),
        }
        if v.webhook_secret.as_deref().is_none_or(|s| s.len() < 16) {
            errors.push(ConfigError::new(
                "verification.webhook_secret",
                "missing or shorter than 16 characters: the receiver checks each webhook's signature with it",
            ));
        }
    }
    for (key, value) in [
        ("verification.code_ttl_secs", v.code_ttl_secs),
        ("verification.max_attempts", v.max_attempts),
        ("verification.resend_after_secs", v.resend_after_secs),
        ("verification.per_hour", v.per_hour),
    ] {
        if value <= 0 {
            errors.push(ConfigError::new(key, "must be a positive number"));
        }
    }
    if v.code_ttl_secs > 1800 {
        errors.push(ConfigError::new(
            "verification.code_ttl_secs",
            "must be at most 1800 (codes are short-lived)",
        ));
    }
    if v.default_country_code.is_empty()
        || !v.default_country_code.bytes().all(|b| b.is_ascii_digit())
    {
        errors.push(ConfigError::new(
            "verification.default_country_code",
            "digits only, without '+', e.g. \"86\"",
        ));
    }
    let rules = ClientRules {
        algorithms: algorithms.clone(),
        sender,
        connectors: ids,
        // Not built yet: checked again at start (crate::check_phone_clients).
        phone_connectors: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in &s.clients {
        if !seen.insert(c.id.clone()) {
            errors.push(ConfigError::new(
                format!("clients[{}].id", c.id),
                "is used by two clients",
            ));
        }
        for p in rules.check(c) {
            errors.push(ConfigError::new(
                format!("clients[{}].{}", c.id, p.field),
                p.message,
            ));
        }
    }
    Typed {
        master_key,
        sender,
        algorithms,
        proxies,
        telemetry,
        connectors,
    }
}

/// `[telemetry]`: when enabled, a socket address that is not the public one.
fn telemetry(s: &Settings, errors: &mut Vec<ConfigError>) -> Option<std::net::SocketAddr> {
    if !s.telemetry.enabled {
        return None;
    }
    match s.telemetry.bind.trim().parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            let public: Option<std::net::SocketAddr> = s.server.bind.trim().parse().ok();
            if public.is_some_and(|p| p.port() == addr.port() && addr.port() != 0) {
                errors.push(ConfigError::new(
                    "telemetry.bind",
                    format!(
                        "must not share server.bind's port ({}): metrics are served on a listener of their own",
                        addr.port()
                    ),
                ));
                return None;
            }
            Some(addr)
        }
        Err(_) => {
            errors.push(ConfigError::new(
                "telemetry.bind",
                format!(
                    "{:?} is not an IP address and port (e.g. 127.0.0.1:9464)",
                    s.telemetry.bind
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::client_check::check_origin;
    use super::*;
    use idbridge_tokens::Algorithm;

    const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut overrides = vec![
            ("issuer", "https://id.example.com".to_owned()),
            ("signing.master_key", MASTER_KEY.to_owned()),
        ];
        overrides.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        crate::config::load(None, &overrides).unwrap()
    }

    #[test]
    fn the_pass_types_what_the_broker_uses() {
        let mut s = settings(&[
            ("signing.access_token_algorithm", "ES256"),
            ("verification.sender", "webhook"),
            ("verification.webhook_url", "https://sms.example.com/send"),
            ("verification.webhook_secret", "0123456789abcdef"),
        ]);
        s.signing.algorithms = vec!["ES256".into()];
        s.connectors = vec![serde_json::json!({"id": "dev", "type": "dev", "first_login": "deny"})];
        let config = Config::new(s, false).unwrap();
        assert_eq!(config.sender, Sender::Webhook);
        assert_eq!(config.algorithms.keys, [Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(config.algorithms.default, Algorithm::RS256);
        assert_eq!(config.algorithms.access_token, Algorithm::ES256);
        assert_eq!(config.connectors.len(), 1);
        assert_eq!(
            config.connectors[0].first_login,
            crate::connector_config::FirstLoginPolicy::Deny
        );
    }

    #[test]
    fn log_passes_the_pass_but_starts_only_under_dev() {
        let s = settings(&[("verification.sender", "log")]);
        assert_eq!(Config::new(s.clone(), true).unwrap().sender, Sender::Log);
        let errors = Config::new(s, false).err().unwrap();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["verification.sender"]);
    }

    #[test]
    fn connector_entries_are_checked_in_the_pass_each_mistake_once() {
        let mut s = settings(&[]);
        s.connectors = vec![
            serde_json::json!({"id": "d", "type": "dev", "first_login": "maybe"}),
            serde_json::json!({"id": "d", "type": "dev"}),
            serde_json::json!({"type": "dev"}),
        ];
        let checked = Checked::new(s);
        let keys: Vec<&str> = checked.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors[d].first_login",
                "connectors[d].id",
                "connectors[2].id"
            ]
        );
        assert_eq!(
            checked.connectors.len(),
            2,
            "both entries with an id and a type"
        );
    }

    #[test]
    fn a_missing_master_key_is_named_and_there_is_no_config() {
        let s = crate::config::load_with_problems(
            None,
            &[("issuer", "https://id.example.com".to_owned())],
        )
        .ok()
        .unwrap();
        assert!(s.master_key.is_none());
        let errors = s.into_config().err().unwrap();
        assert_eq!(errors[0].key, "signing.master_key");
    }

    #[test]
    fn allowed_origins_are_bare_origins() {
        for ok in [
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com:8443",
            "http://127.0.0.1:5173",
            "http://localhost:3000",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "*",
            "null",
            "app.example.com",
            "http://app.example.com",
            "https://app.example.com/spa",
            "https://app.example.com/?x",
            "https://app.example.com#f",
            "https://user@app.example.com",
            "com.example.app:/",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
