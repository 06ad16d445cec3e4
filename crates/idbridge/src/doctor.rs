//! `idbridge doctor`: check a configuration without starting the broker, and print
//! every problem at once (config keys, connectors' own checks, the database, and
//! whether the master key opens the stored signing keys).

use idbridge_core::{BuildContext, ConfigError, Problem};
use idbridge_server::config::{self, Sender};
use idbridge_server::connector_config::FirstLoginPolicy;
use std::path::Path;
use std::process::ExitCode;

pub async fn check(path: &Path) -> Vec<Problem> {
    // The broker's own validation pass, then the rules of a run without --dev
    // (which do not stand in the way of the database check).
    let checked = match config::load_with_problems(Some(path), &[]) {
        Ok(checked) => checked,
        Err(errors) => return errors.into_iter().map(fatal).collect(),
    };
    let config_ok = checked.errors.is_empty();
    let checked = checked.for_mode(false);
    let mut problems: Vec<Problem> = checked.errors.iter().cloned().map(fatal).collect();
    let settings = &checked.settings;
    let registry = crate::registry();
    for entry in &checked.connectors {
        let cs = &entry.settings;
        if entry.first_login == FirstLoginPolicy::Bind
            && settings.connectors.len() < 2
            && checked.sender == Some(Sender::None)
        {
            problems.push(Problem {
                key: format!("connectors[{}].first_login", cs.id),
                message: "\"bind\" makes a new person prove an existing account by signing in another way or with a one-time code, but there is no other connector and phone codes are off (verification.sender = \"none\"): nobody new can get in".into(),
                fatal: false,
            });
        }
        let ctx = BuildContext::new(
            settings.issuer.clone(),
            format!("{}/callback/{}", settings.issuer, cs.id),
            false,
        );
        match registry.build(cs, &ctx) {
            Ok(connector) => {
                problems.extend(entry.check_built(connector.as_ref()).into_iter().map(fatal))
            }
            Err(errors) => problems.extend(errors.into_iter().map(fatal)),
        }
        if let Some(factory) = registry.factory(&cs.kind) {
            problems.extend(factory.doctor(cs, &ctx));
        }
    }
    for (i, message) in idbridge_server::admin::tokens::warnings(&settings.admin.tokens) {
        problems.push(Problem {
            key: idbridge_server::admin::tokens::config_key(
                settings.admin.token_file.as_deref(),
                i,
            ),
            message,
            fatal: false,
        });
    }
    if settings.connectors.is_empty() {
        problems.push(Problem {
            key: "connectors".into(),
            message: "no connectors are configured: nobody can sign in".into(),
            fatal: false,
        });
    }
    if settings.clients.is_empty() {
        problems.push(Problem {
            key: "clients".into(),
            message:
                "no clients are configured in the file (runtime-registered clients still work)"
                    .into(),
            fatal: false,
        });
    }
    if !config_ok {
        // The database check needs a valid storage.url and master key.
        return problems;
    }
    match crate::open_store(settings).await {
        Err(e) => problems.push(Problem {
            key: "storage.url".into(),
            message: e,
            fatal: true,
        }),
        Ok(store) => match store.ping().await {
            Err(e) => problems.push(Problem {
                key: "storage.url".into(),
                message: format!("the database does not answer: {e}"),
                fatal: true,
            }),
            Ok(()) => {
                if let (Ok(rows), Some(master)) = (store.list_keys().await, &checked.master_key) {
                    if let Some(row) = rows.first() {
                        if master.open(&row.private_key, row.kid.as_bytes()).is_err() {
                            problems.push(Problem {
                                key: "signing.master_key".into(),
                                message: format!(
                                    "cannot decrypt the stored signing key {}: this is not the master key the keys were created with",
                                    row.kid
                                ),
                                fatal: true,
                            });
                        }
                    }
                }
            }
        },
    }
    problems
}

pub async fn run(path: &Path) -> ExitCode {
    let problems = check(path).await;
    if problems.is_empty() {
        println!("{}: no problems found", path.display());
        return ExitCode::SUCCESS;
    }
    let fatal = problems.iter().filter(|p| p.fatal).count();
    println!(
        "{}: {} problem(s), {} of them stop start-up",
        path.display(),
        problems.len(),
        fatal
    );
    for p in &problems {
        println!(
            "  {} {}: {}",
            if p.fatal { "error  " } else { "warning" },
            p.key,
            p.message
        );
    }
    if fatal > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A configuration mistake that stops the broker from starting.
fn fatal(e: ConfigError) -> Problem {
    Problem {
        key: e.key,
        message: e.message,
        fatal: true,
    }
}
