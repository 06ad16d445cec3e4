//! Who is acting on the admin operations, for the audit log and the log line.

/// Who is acting, for the audit log and the log line.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A request to the HTTP API with this admin token (by its id, never the token).
    Token { id: String, ip: Option<String> },
    /// The `idbridge admin` command, run by this operating-system user (as the
    /// environment says: whoever can read the config and the database).
    Cli { os_user: String },
    /// An app registering itself (RFC 7591) with this initial access token (by its id).
    Registration { id: String, ip: Option<String> },
}

impl Actor {
    /// `token:AbCdEf0123` or `cli:alice`.
    pub fn label(&self) -> String {
        match self {
            Actor::Token { id, .. } | Actor::Registration { id, .. } => id.clone(),
            Actor::Cli { os_user } => format!("cli:{os_user}"),
        }
    }

    pub fn via(&self) -> &'static str {
        match self {
            Actor::Token { .. } => "api",
            Actor::Cli { .. } => "cli",
            Actor::Registration { .. } => "registration",
        }
    }

    pub(super) fn ip(&self) -> Option<String> {
        match self {
            Actor::Token { ip, .. } | Actor::Registration { ip, .. } => ip.clone(),
            Actor::Cli { .. } => None,
        }
    }

    /// The CLI's actor: `$USER` (or `$LOGNAME`), else `unknown`.
    pub fn from_environment() -> Actor {
        let os_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Actor::Cli { os_user }
    }
}
