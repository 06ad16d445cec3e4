//! Checking loaded settings: every wrong value reported under its key, all at
//! once; and the checks other places reuse (redirect URIs, loopback hosts, a
//! `[[connectors]]` entry split for the registry).

use super::Settings;
use idbridge_core::{ConfigError, ConnectorId};

/// Is this an absolute http(s) URL on a loopback host?
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(super) fn validate(s: &Settings, errors: &mut Vec<ConfigError>) {
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
    if let Err(e) = crate::client_ip::TrustedProxies::parse(&s.server.trusted_proxies) {
        errors.push(ConfigError::new("server.trusted_proxies", e));
    }
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
    let mut algs = Vec::new();
    for a in &s.signing.algorithms {
        match a.parse::<idbridge_tokens::Algorithm>() {
            Ok(alg) => algs.push(alg),
            Err(_) => errors.push(ConfigError::new(
                "signing.algorithms",
                format!("unknown algorithm {a:?}; use RS256, ES256 or EdDSA"),
            )),
        }
    }
    for (key, value) in [
        (
            "signing.default_algorithm",
            Some(&s.signing.default_algorithm),
        ),
        (
            "signing.access_token_algorithm",
            s.signing.access_token_algorithm.as_ref(),
        ),
    ] {
        let Some(value) = value else { continue };
        match value.parse::<idbridge_tokens::Algorithm>() {
            Ok(alg) if alg != idbridge_tokens::Algorithm::RS256 && !algs.contains(&alg) => errors
                .push(ConfigError::new(
                    key,
                    format!("{} is not listed in signing.algorithms", alg.as_str()),
                )),
            Ok(_) => {}
            Err(_) => errors.push(ConfigError::new(key, "use RS256, ES256 or EdDSA")),
        }
    }
    match &s.signing.master_key {
        None => errors.push(ConfigError::new(
            "signing.master_key",
            "missing: set signing.master_key or signing.master_key_file (32 random bytes, base64; `idbridge keys generate-master` prints one)",
        )),
        Some(k) => {
            if let Err(e) = idbridge_tokens::MasterKey::parse(k) {
                errors.push(ConfigError::new("signing.master_key", e.to_string()));
            }
        }
    }
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
    for (i, token) in s.admin.tokens.iter().enumerate() {
        if let Err(msg) = crate::admin::tokens::check(token) {
            let key = crate::admin::tokens::config_key(s.admin.token_file.as_deref(), i);
            errors.push(ConfigError::new(key, msg));
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
    let mut seen = std::collections::BTreeSet::new();
    for c in &s.clients {
        let key = |k: &str| format!("clients[{}].{k}", c.id);
        if c.id.is_empty() || !c.id.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            errors.push(ConfigError::new(
                key("id"),
                "must be non-empty printable ASCII without ':'",
            ));
        }
        if !seen.insert(c.id.clone()) {
            errors.push(ConfigError::new(key("id"), "is used by two clients"));
        }
        match (c.public, &c.secret) {
            (true, Some(_)) => errors.push(ConfigError::new(
                key("secret"),
                "a public client has no secret",
            )),
            (false, None) => errors.push(ConfigError::new(
                key("secret"),
                "missing: a confidential client needs secret or secret_file (or set public = true)",
            )),
            (false, Some(secret)) if secret.len() < 16 => errors.push(ConfigError::new(
                key("secret"),
                "too short: use at least 16 random characters",
            )),
            _ => {}
        }
        if c.redirect_uris.is_empty() {
            errors.push(ConfigError::new(
                key("redirect_uris"),
                "at least one redirect URI is required",
            ));
        }
        for (field, uris) in [
            ("redirect_uris", &c.redirect_uris),
            ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
        ] {
            for uri in uris.iter() {
                if let Err(msg) = check_redirect_uri(uri, c.public) {
                    errors.push(ConfigError::new(key(field), format!("{uri:?}: {msg}")));
                }
            }
        }
        if let Some(alg) = &c.id_token_signed_response_alg {
            match alg.parse::<idbridge_tokens::Algorithm>() {
                Ok(a) if a == idbridge_tokens::Algorithm::RS256 || algs.contains(&a) => {}
                _ => errors.push(ConfigError::new(
                    key("id_token_signed_response_alg"),
                    format!("{alg:?} is not one of signing.algorithms"),
                )),
            }
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, conn) in s.connectors.iter().enumerate() {
        let id = conn.get("id").and_then(|v| v.as_str());
        match id {
            None => errors.push(ConfigError::new(format!("connectors[{i}].id"), "missing")),
            Some(id) => {
                if let Err(msg) = ConnectorId::parse(id) {
                    errors.push(ConfigError::new(format!("connectors[{i}].id"), msg));
                }
                if !ids.insert(id.to_owned()) {
                    errors.push(ConfigError::new(
                        format!("connectors[{id}].id"),
                        "is used twice",
                    ));
                }
            }
        }
        if conn.get("type").and_then(|v| v.as_str()).is_none() {
            errors.push(ConfigError::new(
                format!("connectors[{}].type", id.unwrap_or("?")),
                "missing",
            ));
        }
    }
    if s.account.reauth_after_secs < 0 {
        errors.push(ConfigError::new(
            "account.reauth_after_secs",
            "must be 0 (always confirm) or a positive number of seconds",
        ));
    }
    let v = &s.verification;
    match v.sender.as_str() {
        "none" | "log" => {}
        "webhook" => match v.webhook_url.as_deref().map(url::Url::parse) {
            Some(Ok(u)) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {}
            Some(_) => errors.push(ConfigError::new(
                "verification.webhook_url",
                "must be an https URL (http only on a loopback host)",
            )),
            None => errors.push(ConfigError::new(
                "verification.webhook_url",
                "missing: sender = \"webhook\" posts each code there",
            )),
        },
        other => errors.push(ConfigError::new(
            "verification.sender",
            format!("{other:?}: use \"none\", \"webhook\" or \"log\" (development only)"),
        )),
    }
    if v.sender == "webhook" && v.webhook_secret.as_deref().is_none_or(|s| s.len() < 16) {
        errors.push(ConfigError::new(
            "verification.webhook_secret",
            "missing or shorter than 16 characters: the receiver checks each webhook's signature with it",
        ));
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
    for c in &s.clients {
        if c.require_phone && v.sender == "none" {
            errors.push(ConfigError::new(
                format!("clients[{}].require_phone", c.id),
                "needs a way to send codes: set verification.sender (\"webhook\")",
            ));
        }
    }
    for c in &s.clients {
        for name in &c.connectors {
            if !ids.contains(name) {
                errors.push(ConfigError::new(
                    format!("clients[{}].connectors", c.id),
                    format!("no connector with id {name:?}"),
                ));
            }
        }
    }
}

/// A registered redirect URI must be absolute, without fragment, https unless on
/// loopback (or a custom scheme for public native apps).
pub fn check_redirect_uri(uri: &str, public: bool) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if u.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        "http" => Err("http is allowed only on loopback hosts; use https".into()),
        s if public && s.contains('.') => Ok(()), // reverse-domain custom scheme (RFC 8252 §7.1)
        s => Err(format!("scheme {s:?} is not allowed")),
    }
}

/// The `[[connectors]]` entry split into what the registry needs.
pub fn connector_settings(
    raw: &serde_json::Value,
) -> Result<idbridge_core::ConnectorSettings, ConfigError> {
    let mut map = raw.as_object().cloned().unwrap_or_default();
    let id_raw = map
        .remove("id")
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| ConfigError::new("connectors[].id", "missing"))?;
    let id = ConnectorId::parse(&id_raw)
        .map_err(|m| ConfigError::new(format!("connectors[{id_raw}].id"), m))?;
    let kind = map
        .remove("type")
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| ConfigError::new(format!("connectors[{id}].type"), "missing"))?;
    let name = map
        .remove("name")
        .and_then(|v| v.as_str().map(str::to_owned));
    Ok(idbridge_core::ConnectorSettings {
        id,
        kind,
        name,
        options: serde_json::Value::Object(map),
    })
}
