//! The idbridge binary's pieces, as a library so tests can start a real broker:
//! the connector table (the one place that names connector crates), dev mode
//! ([`dev`]), and the commands.

use idbridge_core::Registry;
use idbridge_server::config::Settings;
use std::path::Path;

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
        .with(idbridge_connector_wecom::WeComFactory)
        .with(idbridge_connector_feishu::FeishuFactory)
        .with(idbridge_connector_dingtalk::DingTalkFactory)
}

pub mod admin;
pub mod dev;
pub use dev::{DevHome, DEV_OIDC_CONNECTOR, DEV_SPA_CLIENT_ID};
pub mod admin_clients;
mod admin_io;
pub mod doctor;
pub mod log_fields;
pub mod log_trace;
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
