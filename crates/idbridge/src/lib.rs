//! The idbridge binary's pieces, as a library so tests can start a real broker:
//! the connector table (the one place that names connector crates), dev-mode
//! settings, and the commands.

use idbridge_core::Registry;
use idbridge_server::config::Settings;
use std::path::{Path, PathBuf};

/// Every connector type this build knows. Adding a provider is adding its crate
/// and one line here.
pub fn registry() -> Registry {
    Registry::new()
        .with(idbridge_connector_dev::DevFactory)
        .with(idbridge_connector_wechat_web::WeChatWebFactory)
        .with(idbridge_connector_wechat_mp::WeChatMpFactory)
        .with(idbridge_connector_wechat_app::WeChatAppFactory)
        .with(idbridge_connector_wechat_miniprogram::WeChatMiniProgramFactory)
        .with(idbridge_connector_oidc::OidcFactory)
        .with(idbridge_connector_google::GoogleFactory)
        .with(idbridge_connector_microsoft::MicrosoftFactory)
        .with(idbridge_connector_apple::AppleFactory)
        .with(idbridge_connector_oauth2::OAuth2Factory)
        .with(idbridge_connector_github::GithubFactory)
}

/// The id of the `serve --dev` sign-in through the generic OpenID provider fake.
pub const DEV_OIDC_CONNECTOR: &str = "dev-oidc";

/// `serve --dev`: a `type = "oidc"` connector ("Dev OpenID provider") at the
/// generic OpenID provider fake (provider-sim) whose issuer is `issuer`, so a
/// person can click through a real OpenID Connect sign-in (the fake's page
/// offers its test users and a Deny link).
pub fn dev_openid_connector(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "id": DEV_OIDC_CONNECTOR,
        "type": "oidc",
        "name": "Dev OpenID provider (simulator)",
        "issuer": issuer,
        "client_id": provider_sim::oidc::DEV_CLIENT_ID,
        "client_secret": provider_sim::oidc::DEV_CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "offline_access"],
    })
}

/// The client `serve --dev --spa-origin ORIGIN` registers.
pub const DEV_SPA_CLIENT_ID: &str = "dev-spa";

/// `serve --dev --spa-origin ORIGIN`: a public client for a single-page app
/// served from ORIGIN (redirect URI ORIGIN/callback, post-logout redirect URI
/// ORIGIN/); as a public client, its redirect URI's origin gets CORS.
pub fn dev_spa_client(origin: &str) -> Result<idbridge_server::config::ClientSettings, String> {
    idbridge_server::config::check_origin(origin)
        .map_err(|e| format!("--spa-origin {origin:?}: {e}"))?;
    let origin = origin.trim_end_matches('/');
    Ok(idbridge_server::config::ClientSettings {
        id: DEV_SPA_CLIENT_ID.into(),
        name: Some("Single-page app (--spa-origin)".into()),
        secret: None,
        secret_file: None,
        public: true,
        redirect_uris: vec![format!("{origin}/callback")],
        post_logout_redirect_uris: vec![format!("{origin}/")],
        require_pkce: true,
        id_token_signed_response_alg: None,
        connectors: Vec::new(),
        require_phone: false,
        refresh_without_offline_access: false,
        require_pushed_authorization_requests: false,
        allowed_origins: Vec::new(),
    })
}

/// The `serve --dev` connector on the GitHub fake (`provider-sim`) at `web`
/// and `api`: a person is picked on the fake's authorize page.
pub fn dev_github_connector(web: &str, api: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "github",
        "type": "github",
        "name": "GitHub (simulator)",
        "client_id": provider_sim::github::dev::CLIENT_ID,
        "client_secret": provider_sim::github::dev::CLIENT_SECRET,
        "base_url": web,
        "api_url": api,
    })
}

/// Dev mode: where its files live and what it generated there.
pub struct DevHome {
    pub dir: PathBuf,
    pub master_key: String,
    pub demo_secret: String,
}

fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    let existing = || {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    if let Some(value) = existing() {
        return Ok(value);
    }
    // Several dev processes may start on one directory at once (they share a
    // Postgres database): publish the file whole, with a hard link that fails if
    // another process got there first, and then use the winner's value, so every
    // process has the same master key.
    let value = make()?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &value).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(value),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => existing().ok_or_else(|| {
            format!(
                "{} exists but is empty or unreadable; delete it to have a new one made",
                path.display()
            )
        }),
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

impl DevHome {
    /// Create (or reuse) the dev directory with its master key and demo secret.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let master_key = read_or_create(&dir.join("master.key"), || {
            idbridge_tokens::MasterKey::generate()
                .map(|k| k.encode())
                .map_err(|e| e.to_string())
        })?;
        let demo_secret = read_or_create(&dir.join("demo-client.secret"), || {
            idbridge_tokens::generate_client_secret().map_err(|e| e.to_string())
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            master_key,
            demo_secret,
        })
    }

    /// Settings for `serve --dev`: SQLite in the dev directory, the development
    /// connector, WeChat website, Official Account and mobile-app login against
    /// the simulator at `wechat_sim` (when given), and (via `Options`) the demo app.
    pub fn settings(&self, port: u16, wechat_sim: Option<&str>) -> Result<Settings, String> {
        let db = self.dir.join("idbridge.db");
        let mut overrides = vec![
            ("server.bind", format!("127.0.0.1:{port}")),
            ("signing.master_key", self.master_key.clone()),
            // One-time codes are written to the log and /dev/outbox, never sent.
            ("verification.sender", "log".to_owned()),
        ];
        // Dev mode may run on Postgres, several instances behind one issuer:
        // IDBRIDGE__STORAGE__URL and IDBRIDGE__ISSUER win over the defaults.
        if std::env::var_os("IDBRIDGE__STORAGE__URL").is_none() {
            overrides.push(("storage.url", format!("sqlite://{}", db.display())));
        }
        if std::env::var_os("IDBRIDGE__ISSUER").is_none() {
            overrides.push(("issuer", format!("http://127.0.0.1:{port}")));
        }
        let mut settings = idbridge_server::config::load(None, &overrides).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        if let Some(sim) = wechat_sim {
            // The simulator's website app, once as a redirect to its QR page and
            // once as the QR embedded in the broker's page.
            for (id, name, mode) in [
                ("wechat", "微信登录 WeChat (simulator)", "redirect"),
                (
                    "wechat-qr",
                    "微信扫码 WeChat QR on this page (simulator)",
                    "embedded",
                ),
            ] {
                settings.connectors.push(serde_json::json!({
                    "id": id,
                    "type": "wechat-web",
                    "name": name,
                    "mode": mode,
                    "appid": wechat_sim::dev::WEB_APPID,
                    "appsecret": wechat_sim::dev::WEB_SECRET,
                    "open_platform_id": wechat_sim::dev::OPEN_PLATFORM_ID,
                    "callback_domain": "127.0.0.1",
                    "api_base_url": sim,
                    "open_base_url": sim,
                }));
            }
            // The simulator's mobile app: no browser flow; a native app (or curl)
            // exchanges an SDK code from POST {sim}/__sim/codes at /token.
            settings.connectors.push(serde_json::json!({
                "id": "wechat-app",
                "type": "wechat-app",
                "name": "微信 WeChat mobile app (simulator)",
                "appid": wechat_sim::dev::MOBILE_APPID,
                "appsecret": wechat_sim::dev::MOBILE_SECRET,
                "open_platform_id": wechat_sim::dev::OPEN_PLATFORM_ID,
                "api_base_url": sim,
            }));
            // The simulator's Official Account: offered (and picked by itself)
            // inside WeChat, i.e. with a MicroMessenger User-Agent. It also sends
            // one-time codes into the person's WeChat chat.
            settings.connectors.push(serde_json::json!({
                "id": "wechat-mp",
                "type": "wechat-mp",
                "name": "微信公众号 WeChat Official Account (simulator)",
                "appid": wechat_sim::dev::MP_APPID,
                "appsecret": wechat_sim::dev::MP_SECRET,
                "open_platform_id": wechat_sim::dev::OPEN_PLATFORM_ID,
                "callback_domain": "127.0.0.1",
                "api_base_url": sim,
                "open_base_url": sim,
                "messages": true,
            }));
            // A website app bound to no Open Platform account (no unionid): a new
            // person must first prove an existing account (first_login = bind).
            settings.connectors.push(serde_json::json!({
                "id": "wechat-unbound",
                "type": "wechat-web",
                "name": "微信登录（需关联账号）WeChat, link to your account first (simulator)",
                "first_login": "bind",
                "appid": wechat_sim::dev::UNBOUND_WEB_APPID,
                "appsecret": wechat_sim::dev::UNBOUND_WEB_SECRET,
                "callback_domain": "127.0.0.1",
                "api_base_url": sim,
                "open_base_url": sim,
            }));
        }
        settings.connectors.push(serde_json::json!({
            "id": "dev",
            "type": "dev",
            "name": "Development login (test users)",
        }));
        Ok(settings)
    }
}

pub mod admin;
pub mod admin_clients;
mod admin_io;
pub mod doctor;
pub mod log_fields;
pub mod probe;

/// Load a config file for a command; on problems print every one (naming its
/// key) and give exit code 2.
pub fn load_config(path: &Path) -> Result<Settings, std::process::ExitCode> {
    idbridge_server::config::load(Some(path), &[]).map_err(|errors| {
        eprintln!(
            "idbridge: the configuration in {} has {} problem(s):",
            path.display(),
            errors.len()
        );
        for e in errors {
            eprintln!("  - {e}");
        }
        std::process::ExitCode::from(2)
    })
}

/// Open the configured store (no migrations).
pub async fn open_store(settings: &Settings) -> Result<idbridge_store::Store, String> {
    idbridge_store::Store::connect(
        &settings.storage.url,
        idbridge_store::StoreOptions {
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(settings.storage.connect_timeout_secs),
            query_timeout: std::time::Duration::from_secs(settings.storage.query_timeout_secs),
        },
    )
    .await
    .map_err(|e| format!("storage.url: {e}"))
}

/// Why `idbridge backup` wrote nothing: a request it will not carry out (exit 2), or
/// a failure on the way (exit 1).
#[derive(Debug)]
pub enum BackupError {
    Usage(String),
    Failed(String),
}

/// `idbridge backup`: an online copy of the SQLite database at `to` (which must not
/// exist); for Postgres, the `pg_dump` command line to run instead.
pub async fn backup(settings: &Settings, to: &Path) -> Result<String, BackupError> {
    let url = settings.storage.url.trim();
    let source = idbridge_store::sqlite_path(url)
        .map_err(|e| BackupError::Usage(format!("storage.url: {e}")))?;
    let Some(source) = source else {
        return Err(BackupError::Usage(format!(
            "storage.url is a Postgres database: back it up with pg_dump, which takes a \
             consistent snapshot while the broker serves. Run:\n  {}\n(the password comes \
             from PGPASSWORD or ~/.pgpass; restore with pg_restore, see docs/operations.md)",
            pg_dump_command(url, to)
        )));
    };
    if to.exists() {
        return Err(BackupError::Usage(format!(
            "{} already exists; not overwriting it (choose a new --to)",
            to.display()
        )));
    }
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(BackupError::Usage(format!(
                "--to: the directory {} does not exist",
                dir.display()
            )));
        }
    }
    if !source.is_file() {
        return Err(BackupError::Usage(format!(
            "storage.url: there is no SQLite database at {}",
            source.display()
        )));
    }
    let store = open_store(settings).await.map_err(BackupError::Failed)?;
    let done = store.backup_sqlite(to).await.map_err(|e| match e {
        idbridge_store::StoreError::Conflict(m) => BackupError::Usage(m),
        e => BackupError::Failed(e.to_string()),
    })?;
    Ok(format!(
        "backup written: {}\nsize: {} bytes\nnewest migration: {}\n",
        done.path.display(),
        done.bytes,
        done.newest_migration.as_deref().unwrap_or("none")
    ))
}

/// The `pg_dump` command line for a Postgres URL, without its password.
pub fn pg_dump_command(url: &str, to: &Path) -> String {
    let shown = match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "postgres://HOST:PORT/DATABASE".to_owned(),
    };
    format!(
        "pg_dump --format=custom --file={} {}",
        shell_quote(&to.display().to_string()),
        shell_quote(&shown)
    )
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@=,+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `idbridge keys list`: one line per key.
pub async fn keys_list(settings: &Settings) -> Result<String, String> {
    let store = open_store(settings).await?;
    let rows = store.list_keys().await.map_err(|e| e.to_string())?;
    let now = idbridge_server::Clock::default().now();
    let mut out = format!(
        "{:<24} {:<6} {:>4}  {:<10} {:>12} {:>12}\n",
        "kid", "alg", "gen", "status", "activates", "expires"
    );
    for r in rows {
        let status = if r.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if r.retires_at.is_some_and(|t| t <= now) {
            "verifying"
        } else if r.activates_at > now {
            "published"
        } else {
            "signing"
        };
        out.push_str(&format!(
            "{:<24} {:<6} {:>4}  {:<10} {:>12} {:>12}\n",
            r.kid,
            r.alg,
            r.generation,
            status,
            r.activates_at,
            r.expires_at
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    Ok(out)
}

/// `idbridge keys rotate`: create the next key for `alg`, published now.
pub async fn keys_rotate(settings: &Settings, alg: &str) -> Result<String, String> {
    let alg: idbridge_tokens::Algorithm = alg
        .parse()
        .map_err(|_| format!("--alg {alg:?}: use RS256, ES256 or EdDSA"))?;
    let store = open_store(settings).await?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let master = idbridge_tokens::MasterKey::parse(
        settings.signing.master_key.as_deref().unwrap_or_default(),
    )
    .map_err(|e| format!("signing.master_key: {e}"))?;
    let now = idbridge_server::Clock::default().now();
    let policy = idbridge_server::keys::policy(settings);
    let keys = idbridge_server::keys::Keys::new(vec![alg], policy).map_err(|e| e.to_string())?;
    let rows = store.list_keys().await.map_err(|e| e.to_string())?;
    let metas: Vec<idbridge_tokens::KeyMeta> = rows
        .iter()
        .filter_map(idbridge_server::keys::meta)
        .collect();
    let action = idbridge_tokens::manual_rotation(&metas, alg, &policy, now);
    let described = format!("{action:?}");
    keys.apply(&store, &master, action, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{described}\nThe new key is in the JWKS now and starts signing after {} hour(s).",
        settings.signing.publish_ahead_hours
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_command_drops_the_password_and_quotes_for_the_shell() {
        assert_eq!(
            pg_dump_command(
                "postgres://app:p%40ss@db:5432/idb",
                Path::new("/backups/it's here.dump")
            ),
            "pg_dump --format=custom --file='/backups/it'\\''s here.dump' postgres://app@db:5432/idb"
        );
        assert_eq!(
            pg_dump_command("postgresql://db/idb?sslmode=require", Path::new("x.dump")),
            "pg_dump --format=custom --file=x.dump 'postgresql://db/idb?sslmode=require'"
        );
    }
}
