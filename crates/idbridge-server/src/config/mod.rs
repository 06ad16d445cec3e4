//! The broker's configuration: one TOML file, every key overridable by an
//! `IDBRIDGE__SECTION__KEY` environment variable, secrets readable from `*_file`
//! keys. Loading reports every mistake at once, each naming its key.
//!
//! `settings` holds the sections as the file spells them; `validate` is the one
//! validation pass, which types what `typed` defines (the one-time-code sender,
//! the signing algorithms, the trusted proxies, the master key, the
//! `[[connectors]]` entries) on its way: a [`Checked`] for `idbridge doctor`, a
//! [`Config`] for the broker (`serve` and `serve --dev` alike).

mod client_check;
mod settings;
mod typed;
mod validate;

pub use client_check::{check_origin, check_redirect_uri, is_loopback};
pub use client_check::{ClientProblem, ClientRules};
pub use settings::*;
pub use typed::{Algorithms, Checked, Config, Sender};

use idbridge_core::ConfigError;
use std::path::Path;

/// Load and validate; every problem at once, each naming its key. (The rules of
/// a mode, such as `verification.sender = "log"` only under `--dev`, are
/// [`Config::new`]'s.)
pub fn load(
    path: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<Settings, Vec<ConfigError>> {
    match load_with_problems(path, overrides) {
        Ok(checked) if checked.errors.is_empty() => Ok(checked.settings),
        Ok(checked) => Err(checked.errors),
        Err(errors) => Err(errors),
    }
}

/// Load and validate, keeping the settings and what could be typed even when
/// some values are wrong (for `idbridge doctor`, which goes on to check
/// connectors and the database): [`Checked::errors`] has every mistake. `Err`
/// only when the file cannot be read or has the wrong shape.
pub fn load_with_problems(
    path: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<Checked, Vec<ConfigError>> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        if !path.exists() {
            return Err(vec![ConfigError::new(
                "--config",
                format!("file {} does not exist", path.display()),
            )]);
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
            .with_list_parse_key("admin.registration_tokens")
            .with_list_parse_key("server.trusted_proxies"),
    );
    for (key, value) in overrides {
        builder = match builder.set_override(*key, value.clone()) {
            Ok(b) => b,
            Err(e) => return Err(vec![ConfigError::new(*key, e.to_string())]),
        };
    }
    let raw = match builder.build() {
        Ok(raw) => raw,
        Err(e) => return Err(vec![config_error(e)]),
    };
    let mut settings: Settings = match raw.try_deserialize() {
        Ok(s) => s,
        Err(e) => return Err(vec![config_error(e)]),
    };
    let mut errors = Vec::new();
    resolve_secret_files(&mut settings, &mut errors);
    let mut checked = Checked::new(settings);
    errors.append(&mut checked.errors);
    checked.errors = errors;
    Ok(checked)
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
    if let Some(path) = s.storage.url_file.clone() {
        if let Some(url) = read_secret(&path, "storage.url_file", errors) {
            s.storage.url = url;
        }
    }
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

    /// `[telemetry]`: off by default; when on, a socket address of its own.
    #[test]
    fn telemetry_is_off_by_default_and_needs_its_own_address() {
        let with = |extra: &[(&'static str, &str)]| {
            let mut o = base();
            o.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            load(None, &o)
        };
        let checked = |extra: &[(&'static str, &str)]| Checked::new(with(extra).expect("loads"));
        let off = checked(&[]);
        assert_eq!(off.telemetry, None);
        assert!(off.errors.is_empty(), "{:?}", off.errors);
        let on = checked(&[("telemetry.enabled", "true")]);
        assert_eq!(on.telemetry, Some("127.0.0.1:9464".parse().unwrap()));
        for bind in ["localhost:9464", "9464", "127.0.0.1", "127.0.0.1:8080"] {
            let errors = with(&[("telemetry.enabled", "true"), ("telemetry.bind", bind)])
                .err()
                .unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.key == "telemetry.bind"),
                "{bind}: {errors:?}"
            );
        }
        let any = checked(&[
            ("telemetry.enabled", "true"),
            ("telemetry.bind", "0.0.0.0:9100"),
        ]);
        assert_eq!(any.telemetry, Some("0.0.0.0:9100".parse().unwrap()));
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
            let errors = match load_with_problems(Some(&path), &[]) {
                Ok(checked) => checked.errors,
                Err(errors) => errors,
            };
            for e in &errors {
                prop_assert!(!e.key.is_empty() && !e.message.is_empty(), "{:?}", e);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn storage_url_file_replaces_the_url_and_a_missing_one_names_the_key() {
        let dir = std::env::temp_dir().join(format!("idbridge-url-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("storage-url");
        std::fs::write(&file, "postgres://idbridge:s3cret@db.internal/idbridge\n").unwrap();
        let path = file.display().to_string();
        let overrides = [
            ("issuer", "https://id.example.com".to_owned()),
            ("storage.url_file", path.clone()),
        ];
        let checked = load_with_problems(None, &overrides).unwrap();
        assert_eq!(
            checked.settings.storage.url,
            "postgres://idbridge:s3cret@db.internal/idbridge"
        );
        assert!(!checked.errors.iter().any(|e| e.key == "storage.url_file"));
        std::fs::remove_dir_all(&dir).unwrap();
        let checked = load_with_problems(None, &overrides).unwrap();
        let problem = checked
            .errors
            .iter()
            .find(|e| e.key == "storage.url_file")
            .expect("a missing url_file is a problem");
        assert!(problem.message.contains(&path), "{problem:?}");
    }
}
