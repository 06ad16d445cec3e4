//! Dev mode's directory: its SQLite database, master key and demo-app secret,
//! made on first use and kept.

use idbridge_server::config::Settings;
use std::path::{Path, PathBuf};

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
    /// connector, and (via `Options`) the demo app; [`super::Fakes`] adds the
    /// simulators' connectors. `config` (`serve --dev --config FILE`): a file
    /// underneath, whose connectors and clients dev mode adds to its own (an
    /// upstream or an app to try); dev mode's keys below win over the file's.
    pub fn settings(&self, port: u16, config: Option<&Path>) -> Result<Settings, String> {
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
        let mut settings = idbridge_server::config::load(config, &overrides).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        settings.connectors.push(serde_json::json!({
            "id": "dev",
            "type": "dev",
            "name": "Development login (test users)",
        }));
        Ok(settings)
    }
}
