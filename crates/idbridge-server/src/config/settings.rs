//! The settings, section by section, as the TOML file spells them (with their
//! defaults): `[server]`, `[storage]`, `[signing]`, `[tokens]`, `[account]`,
//! `[verification]`, `[admin]`, `[telemetry]`, `[[clients]]`.

use serde::Deserialize;

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
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

/// Prometheus metrics on a listener of their own (docs/operations.md, "Metrics").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Serve `/metrics` on `bind`. Off by default.
    pub enabled: bool,
    /// `host:port` of the metrics listener: loopback by default; never the public
    /// `server.bind`. Port 0 picks a free one (it is logged).
    pub bind: String,
    /// OpenTelemetry traces over OTLP/HTTP (docs/operations.md, "Tracing").
    pub tracing: TracingSettings,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: "127.0.0.1:9464".into(),
            tracing: TracingSettings::default(),
        }
    }
}

/// `[telemetry.tracing]`: each key set here wins over its `OTEL_*` variable; a
/// key left out falls back to the variable (docs/operations.md, "Tracing").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// The OTLP/HTTP collector, e.g. `http://127.0.0.1:4318` (`/v1/traces` is
    /// added unless the path already ends with it). Absent, and no
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`: off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans (else `OTEL_SERVICE_NAME`, else `idbridge`).
    pub service_name: Option<String>,
    /// The share of new traces kept, 0.0–1.0 (a sampled parent's choice is
    /// followed); else `OTEL_TRACES_SAMPLER`/`_ARG`, else every trace.
    pub sampling_ratio: Option<f64>,
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
    /// Any connector that can send messages qualifies; the key is `wechat`.
    #[serde(rename = "wechat")]
    pub connector_messages: bool,
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
            connector_messages: true,
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
    /// A file holding the URL (a Postgres URL with its password, as a container
    /// secret); when set, its content replaces `url`.
    pub url_file: Option<String>,
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
            url_file: None,
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
    /// Initial access tokens for RFC 7591 dynamic client registration at
    /// `POST /register` (off while empty; at least 24 characters each).
    pub registration_tokens: Vec<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("tokens", &format!("<{} redacted>", self.tokens.len()))
            .field("token_file", &self.token_file)
            .field(
                "registration_tokens",
                &format!("<{} redacted>", self.registration_tokens.len()),
            )
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
    /// The operator's own (first-party) app: the person is not asked to allow
    /// it what it gets (no consent page, unless it sends `prompt=consent`).
    #[serde(default)]
    pub skip_consent: bool,
    /// Issue refresh tokens even when the app did not ask for `offline_access`
    /// (a deviation from OpenID Connect Core §11, for apps that cannot ask).
    #[serde(default)]
    pub refresh_without_offline_access: bool,
    /// A refresh response carries a new ID token (with `openid` in the scope). OpenID
    /// Connect Core §12.2 lets it be left out; `false` saves one signature a refresh
    /// (docs/openid-provider.md, "ID tokens on refresh").
    #[serde(default = "default_true")]
    pub id_token_on_refresh: bool,
    /// Origins (`https://app.example.com`) that may call the token, userinfo,
    /// revocation and introspection endpoints from a browser (CORS), besides
    /// the origins of a public client's redirect URIs.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Authorization requests only as pushed requests (RFC 9126, `/par`).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

fn yes() -> bool {
    true
}

fn default_true() -> bool {
    true
}
