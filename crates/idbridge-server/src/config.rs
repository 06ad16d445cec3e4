//! The broker's configuration: one TOML file, every key overridable by an
//! `IDBRIDGE__SECTION__KEY` environment variable, secrets readable from `*_file`
//! keys. Loading reports every mistake at once, each naming its key.

use idbridge_core::{ConfigError, ConnectorId};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The issuer URL apps see (`iss`); every endpoint hangs below it.
    pub issuer: String,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub signing: SigningSettings,
    #[serde(default)]
    pub tokens: TokenSettings,
    #[serde(default)]
    pub verification: VerificationSettings,
    #[serde(default)]
    pub account: AccountSettings,
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
    #[serde(default)]
    pub connectors: Vec<serde_json::Value>,
    #[serde(default)]
    pub admin: AdminSettings,
}

/// The account page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    /// Linking or unlinking a sign-in method needs a sign-in (or a one-time code)
    /// at most this many seconds old; otherwise the person confirms first.
    pub reauth_after_secs: i64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            reauth_after_secs: 600,
        }
    }
}

/// One-time codes (binding an account by phone, verifying a phone number): how
/// phone codes are sent, and their limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationSettings {
    /// How codes reach a phone: `none` (phone codes off), `webhook` (POST to
    /// `webhook_url`, e.g. your SMS gateway), or `log` (development only: written
    /// to the log and the dev outbox, never sent).
    pub sender: String,
    pub webhook_url: Option<String>,
    /// Signs each webhook (`X-Idbridge-Signature: sha256=HMAC(secret, timestamp.body)`).
    pub webhook_secret: Option<String>,
    pub webhook_secret_file: Option<String>,
    /// Send a code for an existing account into its WeChat chat first (through a
    /// `wechat-mp` connector with `messages = true`), falling back to the phone.
    pub wechat: bool,
    /// The name in the message ("【idbridge】验证码 …").
    pub site_name: String,
    pub code_ttl_secs: i64,
    pub max_attempts: i64,
    /// At most one code per destination per this many seconds…
    pub resend_after_secs: i64,
    /// …and this many per hour.
    pub per_hour: i64,
    /// For numbers typed without `+`: 11-digit mainland numbers get this code.
    pub default_country_code: String,
}

impl Default for VerificationSettings {
    fn default() -> Self {
        Self {
            sender: "none".into(),
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            wechat: true,
            site_name: "idbridge".into(),
            code_ttl_secs: 300,
            max_attempts: 5,
            resend_after_secs: 60,
            per_hour: 5,
            default_country_code: "86".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// actix worker threads; 0 = one per core.
    pub workers: usize,
    /// Failed attempts (bad client credentials, codes, refresh tokens, callback
    /// states) one IP address may make per minute before it gets 429; 0 = off.
    pub failures_per_minute: u32,
    /// Requests of one app (client) doing local work — database, signing — at
    /// once; more wait their turn, so one app's burst cannot hold up the
    /// others. 0 = no limit.
    pub in_progress_per_client: u32,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For`
    /// names the client; empty = the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client may take to send a request's head, and again its body;
    /// a connection still sending after that is answered 408 and closed.
    pub request_read_timeout_secs: u64,
    /// Seconds requests still in flight at SIGTERM/SIGINT get to finish before
    /// their connections are closed and the process exits.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            failures_per_minute: 30,
            in_progress_per_client: 8,
            trusted_proxies: Vec::new(),
            request_read_timeout_secs: 5,
            shutdown_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// How long a database call waits for a connection.
    pub connect_timeout_secs: u64,
    /// How long a database call's queries may take once it has a connection (also
    /// Postgres's `statement_timeout` and `idle_in_transaction_session_timeout`).
    pub query_timeout_secs: u64,
    /// Seconds between garbage-collection sweeps of expired rows.
    pub gc_interval_secs: u64,
    /// How long audit-log rows are kept.
    pub audit_retention_days: i64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://idbridge.db".into(),
            max_connections: 16,
            connect_timeout_secs: 5,
            query_timeout_secs: 5,
            gc_interval_secs: 300,
            audit_retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// 32 bytes, base64 or hex, that encrypt the private signing keys at rest.
    pub master_key: Option<String>,
    pub master_key_file: Option<String>,
    /// Algorithms to keep keys for. RS256 is always included (OpenID requires it).
    pub algorithms: Vec<String>,
    /// Algorithm for access tokens and (unless a client says otherwise) ID tokens.
    pub default_algorithm: String,
    /// Algorithm for access tokens only, when it should differ from
    /// `default_algorithm` (ES256 signs about 20 times faster than RS256).
    pub access_token_algorithm: Option<String>,
    pub rotate_every_days: i64,
    /// A new key is published this long before it signs, so caches pick it up.
    pub publish_ahead_hours: i64,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            master_key: None,
            master_key_file: None,
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            default_algorithm: "RS256".into(),
            access_token_algorithm: None,
            rotate_every_days: 30,
            publish_ahead_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub code_ttl_secs: i64,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_idle_ttl_secs: i64,
    pub refresh_absolute_ttl_secs: i64,
    /// A rotated refresh token still works this long (a lost response, parallel refreshes).
    pub refresh_grace_secs: i64,
    pub session_ttl_secs: i64,
    pub auth_request_ttl_secs: i64,
    /// Allowed clock skew when verifying tokens.
    pub leeway_secs: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 60,
            access_token_ttl_secs: 600,
            id_token_ttl_secs: 3600,
            refresh_idle_ttl_secs: 30 * 86400,
            refresh_absolute_ttl_secs: 90 * 86400,
            refresh_grace_secs: 10,
            session_ttl_secs: 7 * 86400,
            auth_request_ttl_secs: 900,
            leeway_secs: 30,
        }
    }
}

/// The operator's admin HTTP API: off unless at least one token is configured.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer tokens for `/admin/v1` (at least 24 characters each; the
    /// environment variable takes them space-separated).
    pub tokens: Vec<String>,
    /// A file with one token per line (blank lines and `#` comments skipped).
    pub token_file: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("tokens", &format!("<{} redacted>", self.tokens.len()))
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub id: String,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    /// A public client (SPA, native app): no secret, PKCE required.
    #[serde(default)]
    pub public: bool,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// PKCE for confidential clients (always required for public ones).
    #[serde(default = "yes")]
    pub require_pkce: bool,
    /// Algorithm for this client's ID tokens; default `signing.default_algorithm`.
    pub id_token_signed_response_alg: Option<String>,
    /// Connectors this client may use; empty = all.
    #[serde(default)]
    pub connectors: Vec<String>,
    /// The person must have a verified phone number (asked once, after sign-in).
    #[serde(default)]
    pub require_phone: bool,
    /// Issue refresh tokens even when the app did not ask for `offline_access`
    /// (a deviation from OpenID Connect Core §11, for apps that cannot ask).
    #[serde(default)]
    pub refresh_without_offline_access: bool,
}

fn yes() -> bool {
    true
}

/// Load and validate; every problem at once, each naming its key.
pub fn load(
    path: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<Settings, Vec<ConfigError>> {
    match load_with_problems(path, overrides) {
        (Some(settings), errors) if errors.is_empty() => Ok(settings),
        (_, errors) => Err(errors),
    }
}

/// Load and validate, keeping the settings even when some values are wrong (for
/// `idbridge doctor`, which goes on to check connectors and the database).
/// `None` only when the file cannot be read or has the wrong shape.
pub fn load_with_problems(
    path: Option<&Path>,
    overrides: &[(&str, String)],
) -> (Option<Settings>, Vec<ConfigError>) {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        if !path.exists() {
            return (
                None,
                vec![ConfigError::new(
                    "--config",
                    format!("file {} does not exist", path.display()),
                )],
            );
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("IDBRIDGE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(" ")
            .with_list_parse_key("admin.tokens")
            .with_list_parse_key("server.trusted_proxies"),
    );
    for (key, value) in overrides {
        builder = match builder.set_override(*key, value.clone()) {
            Ok(b) => b,
            Err(e) => return (None, vec![ConfigError::new(*key, e.to_string())]),
        };
    }
    let raw = match builder.build() {
        Ok(raw) => raw,
        Err(e) => return (None, vec![config_error(e)]),
    };
    let mut settings: Settings = match raw.try_deserialize() {
        Ok(s) => s,
        Err(e) => return (None, vec![config_error(e)]),
    };
    let mut errors = Vec::new();
    resolve_secret_files(&mut settings, &mut errors);
    validate(&settings, &mut errors);
    (Some(settings), errors)
}

fn config_error(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    match &e {
        // A file that is not TOML: the key is the file, never a guess taken from
        // the text, which quotes the operator's own (possibly garbled) lines.
        config::ConfigError::FileParse { uri, .. } => ConfigError::new(
            "--config",
            format!(
                "{} is not valid TOML: {text}",
                uri.as_deref().unwrap_or("the configuration file")
            ),
        ),
        config::ConfigError::Type { key: Some(key), .. }
        | config::ConfigError::At { key: Some(key), .. }
            if !key.is_empty() =>
        {
            ConfigError::new(key.clone(), text)
        }
        // serde's own wording: "missing field `x`" / "unknown field `y`".
        _ => {
            let key = text
                .split("for key `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .or_else(|| text.split('`').nth(1))
                .filter(|k| !k.is_empty())
                .unwrap_or("config")
                .to_owned();
            ConfigError::new(key, text)
        }
    }
}

fn read_secret(path: &str, key: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) => {
            errors.push(ConfigError::new(key, format!("cannot read {path}: {e}")));
            None
        }
    }
}

fn resolve_secret_files(s: &mut Settings, errors: &mut Vec<ConfigError>) {
    if let Some(path) = s.signing.master_key_file.clone() {
        if s.signing.master_key.is_some() {
            errors.push(ConfigError::new(
                "signing.master_key_file",
                "set either master_key or master_key_file, not both",
            ));
        }
        s.signing.master_key = read_secret(&path, "signing.master_key_file", errors);
    }
    if let Some(path) = s.verification.webhook_secret_file.clone() {
        if s.verification.webhook_secret.is_some() {
            errors.push(ConfigError::new(
                "verification.webhook_secret_file",
                "set either webhook_secret or webhook_secret_file, not both",
            ));
        }
        s.verification.webhook_secret =
            read_secret(&path, "verification.webhook_secret_file", errors);
    }
    if let Some(path) = s.admin.token_file.clone() {
        if !s.admin.tokens.is_empty() {
            errors.push(ConfigError::new(
                "admin.token_file",
                "set either tokens or token_file, not both",
            ));
        }
        if let Some(text) = read_secret(&path, "admin.token_file", errors) {
            s.admin.tokens = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            if s.admin.tokens.is_empty() {
                errors.push(ConfigError::new(
                    "admin.token_file",
                    format!("{path} holds no token (one per line)"),
                ));
            }
        }
    }
    for c in &mut s.clients {
        if let Some(path) = c.secret_file.clone() {
            let key = format!("clients[{}].secret_file", c.id);
            if c.secret.is_some() {
                errors.push(ConfigError::new(
                    &key,
                    "set either secret or secret_file, not both",
                ));
            }
            c.secret = read_secret(&path, &key, errors);
        }
    }
    for (i, conn) in s.connectors.iter_mut().enumerate() {
        let Some(map) = conn.as_object_mut() else {
            continue;
        };
        let label = map
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| i.to_string());
        let file_keys: Vec<String> = map
            .keys()
            .filter(|k| k.ends_with("_file"))
            .cloned()
            .collect();
        for fk in file_keys {
            let base = fk.trim_end_matches("_file").to_owned();
            let key = format!("connectors[{label}].{fk}");
            if map.contains_key(&base) {
                errors.push(ConfigError::new(
                    &key,
                    format!("set either {base} or {fk}, not both"),
                ));
                continue;
            }
            let path = map.remove(&fk).and_then(|v| v.as_str().map(str::to_owned));
            match path {
                Some(p) => {
                    if let Some(secret) = read_secret(&p, &key, errors) {
                        map.insert(base, serde_json::Value::String(secret));
                    }
                }
                None => errors.push(ConfigError::new(&key, "must be a file path")),
            }
        }
    }
}

/// Is this an absolute http(s) URL on a loopback host?
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate(s: &Settings, errors: &mut Vec<ConfigError>) {
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

#[cfg(test)]
mod properties {
    //! Loading over generated values: whatever an operator writes, loading answers
    //! with settings or with errors that each name a key, never a panic; a wrong
    //! value is reported under the key it was written to.

    use super::*;
    use proptest::prelude::*;

    const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

    fn base() -> Vec<(&'static str, String)> {
        vec![
            ("issuer", "https://id.example.com".to_owned()),
            ("storage.url", "sqlite://idbridge.db".to_owned()),
            ("signing.master_key", MASTER_KEY.to_owned()),
        ]
    }

    /// Keys an operator sets, with the section each error may be reported under.
    const KEYS: [&str; 17] = [
        "issuer",
        "storage.url",
        "storage.max_connections",
        "storage.connect_timeout_secs",
        "storage.gc_interval_secs",
        "signing.master_key",
        "tokens.refresh_grace_secs",
        "tokens.refresh_idle_ttl_secs",
        "server.bind",
        "server.workers",
        "server.failures_per_minute",
        "server.in_progress_per_client",
        "server.shutdown_timeout_secs",
        "verification.code_ttl_secs",
        "verification.max_attempts",
        "verification.sender",
        "account.reauth_after_secs",
    ];

    #[test]
    fn the_base_settings_load() {
        assert!(load(None, &base()).is_ok());
    }

    #[test]
    fn bounded_keys_refuse_values_outside_their_range() {
        for (key, value, ok) in [
            ("tokens.refresh_grace_secs", "-1", false),
            ("tokens.refresh_grace_secs", "0", true),
            ("tokens.refresh_grace_secs", "10", true),
            ("tokens.refresh_grace_secs", "300", true),
            ("tokens.refresh_grace_secs", "301", false),
            ("server.shutdown_timeout_secs", "0", true),
            ("server.shutdown_timeout_secs", "300", true),
            ("server.shutdown_timeout_secs", "301", false),
        ] {
            let mut overrides = base();
            overrides.push((key, value.to_owned()));
            match load(None, &overrides) {
                Ok(_) => assert!(ok, "{key} = {value} accepted"),
                Err(errors) => {
                    assert!(!ok, "{key} = {value} refused: {errors:?}");
                    assert_eq!(errors[0].key, key);
                }
            }
        }
        assert_eq!(
            load(None, &base())
                .map(|s| s.server.shutdown_timeout_secs)
                .ok(),
            Some(10)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn any_value_of_any_key_loads_or_names_that_key(
            key in prop::sample::select(KEYS.to_vec()),
            value in prop_oneof![
                "\\PC{0,40}",
                "-?[0-9]{1,25}",
                Just(String::new()),
                "(https?|ftp|sqlite|postgres)://[a-z0-9.:@/_-]{0,30}",
            ],
        ) {
            let mut overrides = base();
            overrides.retain(|(k, _)| *k != key);
            overrides.push((key, value.clone()));
            if let Err(errors) = load(None, &overrides) {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.message.is_empty(), "{:?}", e);
                    prop_assert!(
                        e.key == key || key.starts_with(&format!("{}.", e.key)) || e.key.starts_with(key),
                        "{key} = {value:?} was reported under {:?}: {}", e.key, e.message
                    );
                }
            }
        }

        #[test]
        fn any_file_loads_or_says_why(text in "\\PC{0,200}") {
            let dir = std::env::temp_dir().join(format!("idbridge-config-prop-{}", std::process::id()));
            prop_assert!(std::fs::create_dir_all(&dir).is_ok());
            let path = dir.join("idbridge.toml");
            prop_assert!(std::fs::write(&path, &text).is_ok());
            let (_settings, errors) = load_with_problems(Some(&path), &[]);
            for e in &errors {
                prop_assert!(!e.key.is_empty() && !e.message.is_empty(), "{:?}", e);
            }
        }
    }
}
