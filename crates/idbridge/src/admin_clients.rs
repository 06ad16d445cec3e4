//! `idbridge admin clients …`: the admin API's client operations on the
//! command line, directly on the configured database (as the other `idbridge
//! admin` commands). Secrets are printed once, when made; `--json` prints
//! exactly what the HTTP API returns.

use crate::admin_io::{finish, open, opt, pretty, table, Common};
use clap::{Args, Subcommand};
use idbridge_server::admin::time::format as fmt_time;
use idbridge_server::admin::{
    Actor, Admin, ClientAdmin, ClientDeleted, ClientInput, ClientList, ClientView, ClientWritten,
    SecretRotated,
};
use idbridge_server::config::ClientRules;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Every client: the config file's (read-only) and those made here.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One client (its secrets only as when they expire).
    Show {
        client: String,
        #[command(flatten)]
        common: Common,
    },
    /// Register a client. A confidential one gets a generated secret, printed
    /// this once.
    Create {
        /// The client_id; generated when left out.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: Fields,
        #[command(flatten)]
        common: Common,
    },
    /// Change the options given; the others keep their values. A list option
    /// replaces the whole list.
    Update {
        client: String,
        #[command(flatten)]
        fields: Fields,
        /// Empty this list: post_logout_redirect_uris, connectors or allowed_origins.
        #[arg(long, value_name = "LIST")]
        clear: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A new secret (printed this once); the old one keeps working for the grace period.
    RotateSecret {
        client: String,
        /// How long the old secret keeps working: 0, seconds, 30m, 24h, 7d (at most 30d).
        #[arg(long, default_value = "24h")]
        grace: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a client: its secrets stop working and its grants are revoked.
    Delete {
        client: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// A client's options, as create and update take them.
#[derive(Args, Debug, Default)]
pub struct Fields {
    #[arg(long)]
    name: Option<String>,
    /// true: a public client (SPA, native app: no secret, PKCE required).
    #[arg(long)]
    public: Option<bool>,
    /// none, client_secret_basic, client_secret_post, or any (either of the two).
    #[arg(long, value_name = "METHOD")]
    token_auth_method: Option<String>,
    /// A redirect URI (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// A post-logout redirect URI (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// A connector id the client may use (repeat; none given: all).
    #[arg(long = "connector", value_name = "ID")]
    connectors: Vec<String>,
    /// A browser origin allowed CORS (repeat for several).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    #[arg(long)]
    require_pkce: Option<bool>,
    /// RS256, ES256 or EdDSA (one of signing.algorithms); "" for the default.
    #[arg(long, value_name = "ALG")]
    id_token_alg: Option<String>,
    #[arg(long)]
    require_phone: Option<bool>,
    /// A first-party app: no consent page (unless it sends prompt=consent).
    #[arg(long)]
    skip_consent: Option<bool>,
    #[arg(long)]
    refresh_without_offline_access: Option<bool>,
    /// A new ID token in each refresh response (default true).
    #[arg(long)]
    id_token_on_refresh: Option<bool>,
    /// Only pushed authorization requests (RFC 9126, POST /par).
    #[arg(long)]
    require_par: Option<bool>,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
}

impl Fields {
    fn input(&self, id: Option<String>, clear: &[String]) -> Result<ClientInput, String> {
        let list = |v: &Vec<String>, name: &str| {
            if clear.iter().any(|c| c == name) {
                Some(Vec::new())
            } else {
                (!v.is_empty()).then(|| v.clone())
            }
        };
        for c in clear {
            if !["post_logout_redirect_uris", "connectors", "allowed_origins"].contains(&c.as_str())
            {
                return Err(format!(
                    "--clear {c:?}: use post_logout_redirect_uris, connectors or allowed_origins"
                ));
            }
        }
        Ok(ClientInput {
            id,
            name: self.name.clone(),
            public: self.public,
            token_endpoint_auth_method: self.token_auth_method.clone(),
            redirect_uris: list(&self.redirect_uris, "redirect_uris"),
            post_logout_redirect_uris: list(
                &self.post_logout_redirect_uris,
                "post_logout_redirect_uris",
            ),
            require_pkce: self.require_pkce,
            id_token_signed_response_alg: self.id_token_alg.clone(),
            connectors: list(&self.connectors, "connectors"),
            require_phone: self.require_phone,
            skip_consent: self.skip_consent,
            refresh_without_offline_access: self.refresh_without_offline_access,
            id_token_on_refresh: self.id_token_on_refresh,
            require_pushed_authorization_requests: self.require_par,
            allowed_origins: list(&self.allowed_origins, "allowed_origins"),
            reason: self.reason.clone(),
        })
    }
}

pub async fn run(command: &ClientsCommand) -> ExitCode {
    let common = match command {
        ClientsCommand::List { common }
        | ClientsCommand::Show { common, .. }
        | ClientsCommand::Create { common, .. }
        | ClientsCommand::Update { common, .. }
        | ClientsCommand::RotateSecret { common, .. }
        | ClientsCommand::Delete { common, .. } => common,
    };
    let (settings, store) = match open(common).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let now = idbridge_server::Clock::default().now();
    let admin = Admin::new(&store, Actor::from_environment(), now);
    // Read-only here besides the config file's: the broker's built-in clients.
    let builtin = [
        idbridge_server::account::ACCOUNT_CLIENT_ID,
        idbridge_server::demo::DEMO_CLIENT_ID,
        idbridge_server::demo::DEMO_PHONE_CLIENT_ID,
    ];
    let clients = ClientAdmin::new(
        &admin,
        ClientRules::from_settings(&settings),
        settings.clients.clone(),
        builtin.iter().map(|s| (*s).to_owned()).collect(),
    );
    let json = common.json;
    let out = |v: Result<serde_json::Value, serde_json::Error>, text: String| {
        if json {
            pretty(v)
        } else {
            text
        }
    };
    let result = match command {
        ClientsCommand::List { .. } => clients
            .list()
            .await
            .map(|v| out(serde_json::to_value(&v), list_text(&v))),
        ClientsCommand::Show { client, .. } => clients
            .show(client)
            .await
            .map(|v| out(serde_json::to_value(&v), show_text(&v))),
        ClientsCommand::Create { id, fields, .. } => match fields.input(id.clone(), &[]) {
            Ok(input) => clients
                .create(&input)
                .await
                .map(|v| out(serde_json::to_value(&v), written_text("created", &v))),
            Err(e) => return usage(&e),
        },
        ClientsCommand::Update {
            client,
            fields,
            clear,
            ..
        } => match fields.input(None, clear) {
            Ok(input) => clients
                .update(client, &input)
                .await
                .map(|v| out(serde_json::to_value(&v), written_text("updated", &v))),
            Err(e) => return usage(&e),
        },
        ClientsCommand::RotateSecret {
            client,
            grace,
            reason,
            ..
        } => clients
            .rotate_secret(client, Some(grace), reason.as_deref())
            .await
            .map(|v| out(serde_json::to_value(&v), rotated_text(&v))),
        ClientsCommand::Delete { client, reason, .. } => clients
            .delete(client, reason.as_deref())
            .await
            .map(|v| out(serde_json::to_value(&v), deleted_text(&v))),
    };
    finish(result, common)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("idbridge: bad input: {message}");
    ExitCode::from(2)
}

fn list_text(list: &ClientList) -> String {
    if list.clients.is_empty() {
        return "no clients\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .clients
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.name.clone(),
                c.source.into(),
                if c.public { "public" } else { "confidential" }.into(),
                c.redirect_uris.join(" "),
            ]
        })
        .collect();
    table(&["ID", "NAME", "SOURCE", "TYPE", "REDIRECT URIS"], &rows)
}

fn show_text(c: &ClientView) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    let secrets = if c.public {
        "none (public client)".to_owned()
    } else {
        c.secrets
            .iter()
            .map(|s| match (s.current, s.expires_at) {
                (true, _) => "current".to_owned(),
                (false, Some(t)) => format!("previous, works until {}", fmt_time(t)),
                (false, None) => "previous".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut out = String::new();
    for (k, v) in [
        ("client", c.id.clone()),
        ("name", c.name.clone()),
        ("source", c.source.to_owned()),
        (
            "type",
            if c.public { "public" } else { "confidential" }.to_owned(),
        ),
        ("auth method", opt(&c.token_endpoint_auth_method)),
        ("secrets", secrets),
        ("redirect uris", list(&c.redirect_uris)),
        ("post-logout uris", list(&c.post_logout_redirect_uris)),
        (
            "connectors",
            if c.connectors.is_empty() {
                "all".into()
            } else {
                list(&c.connectors)
            },
        ),
        ("allowed origins", list(&c.allowed_origins)),
        ("require pkce", c.require_pkce.to_string()),
        ("id token alg", opt(&c.id_token_signed_response_alg)),
        ("require phone", c.require_phone.to_string()),
        ("skip consent", c.skip_consent.to_string()),
        (
            "refresh without offline_access",
            c.refresh_without_offline_access.to_string(),
        ),
        ("ID token on refresh", c.id_token_on_refresh.to_string()),
        (
            "require pushed requests",
            c.require_pushed_authorization_requests.to_string(),
        ),
        (
            "created",
            c.created_at.map(fmt_time).unwrap_or_else(|| "-".into()),
        ),
        (
            "updated",
            c.updated_at.map(fmt_time).unwrap_or_else(|| "-".into()),
        ),
    ] {
        out.push_str(&format!("{k:<31} {v}\n"));
    }
    out
}

fn written_text(what: &str, w: &ClientWritten) -> String {
    let mut out = format!("client {} {what}", w.client.id);
    if !w.changed.is_empty() {
        out.push_str(&format!(" ({})", w.changed.join(", ")));
    }
    out.push('\n');
    if let Some(secret) = &w.client_secret {
        out.push_str(&format!(
            "client_secret {secret}\n(shown this once: store it now; only its hash is kept)\n"
        ));
    }
    out.push('\n');
    out.push_str(&show_text(&w.client));
    out
}

fn rotated_text(r: &SecretRotated) -> String {
    format!(
        "client {}: new secret made; the old one works until {}\nclient_secret {}\n(shown this once: store it now; only its hash is kept)\n",
        r.client_id,
        fmt_time(r.previous_secret_expires_at),
        r.client_secret
    )
}

fn deleted_text(d: &ClientDeleted) -> String {
    format!(
        "client {} deleted; {} grant(s) revoked, {} unredeemed code(s) and {} sign-in(s) in progress removed\n",
        d.client_id, d.grants_revoked, d.codes_removed, d.sign_ins_cancelled
    )
}
