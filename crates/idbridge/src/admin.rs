//! `idbridge admin …`: the admin API's operations on the command line, working
//! directly on the configured database (so they work while the broker is down).
//! Human-readable output by default, `--json` prints exactly what the HTTP API
//! returns. Exit codes: 0 done, 1 not found, 2 bad usage or configuration (or
//! refused without `--force`), 3 the database failed.

pub use crate::admin_io::Common;
use crate::admin_io::{finish, open, opt, pretty, table};
use clap::Subcommand;
use idbridge_server::admin::time::format as fmt_time;
use idbridge_server::admin::{
    tokens, AccessResult, Actor, Admin, AuditPage, AuditQuery, UnlinkResult, UserDetail, UserList,
};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Find users: by id, by name (contains, any case), or by an upstream
    /// subject or link key (exact, e.g. a WeChat openid or unionid). No query
    /// lists everyone, oldest first.
    Find {
        #[arg(allow_hyphen_values = true)]
        query: Option<String>,
        /// At most this many (1-500, default 50).
        #[arg(long)]
        limit: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// One user: identities, live SSO sessions, live grants.
    Show {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove one identity (connector id and subject) from a user.
    Unlink {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[arg(allow_hyphen_values = true)]
        connector: String,
        #[arg(allow_hyphen_values = true)]
        subject: String,
        /// Also when it is the user's last identity (the account becomes
        /// unreachable; that identity's next sign-in makes a new account).
        #[arg(long)]
        force: bool,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Disable a user: sign-in refused, SSO sessions ended, grants (and so
    /// access and refresh tokens) revoked.
    Disable {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// End a user's SSO sessions and revoke their grants (they stay enabled).
    Revoke {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The audit log, newest first.
    Audit {
        /// Only this user's events (an id may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// Only these events (comma-separated, e.g. login,admin_disable).
        #[arg(long)]
        event: Option<String>,
        /// From this time on: unix seconds, 2026-11-30T08:00:00Z, 2026-11-30, or 24h / 7d ago.
        #[arg(long)]
        since: Option<String>,
        /// Before this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// Older than this event id (the previous page's `next_before`).
        #[arg(long)]
        before: Option<String>,
        /// At most this many (1-500, default 50).
        #[arg(long)]
        limit: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print a new random admin token (for admin.tokens or admin.token_file).
    GenerateToken,
    /// Apps (clients) registered at run time: create, list, show, update,
    /// rotate-secret, delete. Clients of the config file are listed, never changed.
    Clients {
        #[command(subcommand)]
        command: Box<crate::admin_clients::ClientsCommand>,
    },
}

pub async fn run(command: AdminCommand) -> ExitCode {
    let common = match &command {
        AdminCommand::GenerateToken => return generate_token(),
        AdminCommand::Clients { command } => return crate::admin_clients::run(command).await,
        AdminCommand::Find { common, .. }
        | AdminCommand::Show { common, .. }
        | AdminCommand::Unlink { common, .. }
        | AdminCommand::Disable { common, .. }
        | AdminCommand::Enable { common, .. }
        | AdminCommand::Revoke { common, .. }
        | AdminCommand::Audit { common, .. } => common,
    };
    let (_, store) = match open(common).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let now = idbridge_server::Clock::default().now();
    let admin = Admin::new(&store, Actor::from_environment(), now);
    let json = common.json;
    let result = match &command {
        AdminCommand::GenerateToken => return generate_token(),
        AdminCommand::Clients { command } => return crate::admin_clients::run(command).await,
        AdminCommand::Find { query, limit, .. } => admin
            .find_users(query.as_deref(), limit.as_deref())
            .await
            .map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    find_text(&v)
                }
            }),
        AdminCommand::Show { user, .. } => admin.show_user(user).await.map(|v| {
            if json {
                pretty(serde_json::to_value(&v))
            } else {
                show_text(&v)
            }
        }),
        AdminCommand::Unlink {
            user,
            connector,
            subject,
            force,
            reason,
            ..
        } => admin
            .unlink(user, connector, subject, *force, reason.as_deref())
            .await
            .map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    unlink_text(&v)
                }
            }),
        AdminCommand::Disable { user, reason, .. } => {
            admin.disable(user, reason.as_deref()).await.map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    access_text("disable", &v)
                }
            })
        }
        AdminCommand::Enable { user, reason, .. } => {
            admin.enable(user, reason.as_deref()).await.map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    access_text("enable", &v)
                }
            })
        }
        AdminCommand::Revoke { user, reason, .. } => {
            admin.revoke(user, reason.as_deref()).await.map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    access_text("revoke", &v)
                }
            })
        }
        AdminCommand::Audit {
            user,
            event,
            since,
            until,
            before,
            limit,
            ..
        } => admin
            .audit(&AuditQuery {
                user: user.clone(),
                event: event.clone(),
                since: since.clone(),
                until: until.clone(),
                before: before.clone(),
                limit: limit.clone(),
            })
            .await
            .map(|v| {
                if json {
                    pretty(serde_json::to_value(&v))
                } else {
                    audit_text(&v)
                }
            }),
    };
    finish(result, common)
}

fn generate_token() -> ExitCode {
    match tokens::generate() {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "idbridge: the audit log and logs will name this token {}",
                tokens::token_id(&token)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("idbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(disabled_at: Option<i64>) -> String {
    match disabled_at {
        None => "enabled".into(),
        Some(t) => format!("disabled since {}", fmt_time(t)),
    }
}

fn find_text(list: &UserList) -> String {
    if list.users.is_empty() {
        return "no users found\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .users
        .iter()
        .map(|u| {
            vec![
                u.id.clone(),
                opt(&u.name),
                fmt_time(u.created_at),
                if u.disabled { "disabled" } else { "enabled" }.into(),
                u.identities.to_string(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "CREATED", "STATUS", "IDENTITIES"], &rows)
}

fn show_text(d: &UserDetail) -> String {
    let u = &d.user;
    let mut out = format!(
        "user     {}\nname     {}\ncreated  {}\nstatus   {}\n",
        u.id,
        opt(&u.name),
        fmt_time(u.created_at),
        status(u.disabled_at)
    );
    out.push_str(&format!("\nidentities ({})\n", d.identities.len()));
    if !d.identities.is_empty() {
        let rows: Vec<Vec<String>> = d
            .identities
            .iter()
            .map(|i| {
                vec![
                    i.connector_id.clone(),
                    i.subject.clone(),
                    opt(&i.link_key),
                    fmt_time(i.created_at),
                    fmt_time(i.last_login_at),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CONNECTOR", "SUBJECT", "LINK KEY", "LINKED", "LAST LOGIN"],
            &rows,
        ));
    }
    out.push_str(&format!("\nsessions ({})\n", d.sessions.len()));
    if !d.sessions.is_empty() {
        let rows: Vec<Vec<String>> = d
            .sessions
            .iter()
            .map(|s| {
                vec![
                    s.connector_id.clone(),
                    fmt_time(s.auth_time),
                    fmt_time(s.last_seen_at),
                    fmt_time(s.expires_at),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CONNECTOR", "SIGNED IN", "LAST SEEN", "EXPIRES"],
            &rows,
        ));
    }
    out.push_str(&format!("\ngrants ({})\n", d.grants.len()));
    if !d.grants.is_empty() {
        let rows: Vec<Vec<String>> = d
            .grants
            .iter()
            .map(|g| {
                vec![
                    g.client_id.clone(),
                    fmt_time(g.created_at),
                    fmt_time(g.last_used_at),
                    fmt_time(g.expires_at),
                    g.scope.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CLIENT", "GRANTED", "LAST USED", "EXPIRES", "SCOPE"],
            &rows,
        ));
    }
    out
}

fn unlink_text(r: &UnlinkResult) -> String {
    let left = match r.identities_left {
        0 => "no identity left: nobody can sign in to this account".to_owned(),
        1 => "1 identity left".to_owned(),
        n => format!("{n} identities left"),
    };
    let key = if r.link_key_removed {
        "; its link key was removed too"
    } else {
        ""
    };
    format!(
        "unlinked {} {} from user {} ({left}{key})\n",
        r.connector_id, r.subject, r.user_id
    )
}

fn access_text(action: &str, r: &AccessResult) -> String {
    let ended = format!(
        "{} session(s) ended, {} grant(s) revoked",
        r.sessions_ended, r.grants_revoked
    );
    match (action, r.was_disabled) {
        ("disable", false) => format!("user {} disabled; {ended}\n", r.user_id),
        ("disable", true) => format!(
            "user {} was already {}; {ended}\n",
            r.user_id,
            status(r.disabled_at)
        ),
        ("enable", true) => format!("user {} enabled\n", r.user_id),
        ("enable", false) => format!("user {} was not disabled\n", r.user_id),
        _ => format!("user {}: {ended}\n", r.user_id),
    }
}

fn audit_text(page: &AuditPage) -> String {
    if page.events.is_empty() {
        return "no audit events found\n".into();
    }
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                fmt_time(e.at),
                e.event.clone(),
                opt(&e.user_id),
                opt(&e.client_id),
                opt(&e.connector_id),
                e.detail.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "TIME",
            "EVENT",
            "USER",
            "CLIENT",
            "CONNECTOR",
            "DETAIL",
        ],
        &rows,
    );
    if let Some(b) = page.next_before {
        out.push_str(&format!("(more: --before {b})\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::AdminCommand;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn user_of(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            AdminCommand::Show { user, common } => {
                assert_eq!(common.config.to_str(), Some("c.toml"));
                user
            }
            _ => panic!("not show"),
        }
    }

    /// A user id is base64url: one in 32 starts with `-`, and must still be
    /// taken as the id wherever it stands, beside the flags.
    #[test]
    fn a_user_id_that_starts_with_a_hyphen_is_an_id() {
        for args in [
            ["x", "show", "-7aBc_d", "--config", "c.toml"],
            ["x", "show", "--config", "c.toml", "-7aBc_d"],
            ["x", "show", "-c", "c.toml", "-7aBc_d"],
        ] {
            assert_eq!(user_of(&args), "-7aBc_d");
        }
        assert_eq!(user_of(&["x", "show", "plain", "-c", "c.toml"]), "plain");
        // A flag after the id is still a flag.
        let cli = Cli::try_parse_from(["x", "show", "-7aBc_d", "--json", "-c", "c.toml"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::Show { ref user, ref common } if user == "-7aBc_d" && common.json)
        );
    }
}
