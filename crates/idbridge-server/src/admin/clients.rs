//! Clients (relying parties) managed at run time: create, list, show, update,
//! rotate a secret, delete. Shared by the HTTP API and `idbridge admin
//! clients`, which both pass the request's fields in as given. A client is
//! checked by exactly the rules of the config file's `[[clients]]`
//! ([`ClientRules`]) and stored with its audit event in one transaction.
//! Clients of the config file (and those the broker builds in) are listed and
//! shown, never changed here. Nothing is cached: every instance reads the
//! stored client on each request, so a change applies everywhere at once.

use super::client_views::{
    auth_method_of, metadata_of, settings_of, ClientDeleted, ClientList, ClientView, ClientWritten,
    SecretRotated,
};
use super::{Admin, AdminError};
use crate::config::{ClientRules, ClientSettings};
use idbridge_store::{AuditEvent, ClientReplace, ClientRow, StoreError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Default grace period of a rotated-away secret, and its bound.
pub const DEFAULT_GRACE_SECS: i64 = 86_400;
pub const MAX_GRACE_SECS: i64 = 30 * 86_400;
const MAX_NAME: usize = 200;
const MAX_LIST: usize = 50;

/// The fields of a create or an update, as given (JSON body or CLI options).
/// On an update, a field left out keeps its value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// Create only; generated when left out.
    pub id: Option<String>,
    pub name: Option<String>,
    pub public: Option<bool>,
    /// `none` (a public client), `client_secret_basic` or `client_secret_post`
    /// (only that one accepted), or `any` (either: the default).
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub require_pkce: Option<bool>,
    /// `""` goes back to the broker's default algorithm.
    pub id_token_signed_response_alg: Option<String>,
    pub connectors: Option<Vec<String>>,
    pub require_phone: Option<bool>,
    pub skip_consent: Option<bool>,
    pub refresh_without_offline_access: Option<bool>,
    pub id_token_on_refresh: Option<bool>,
    pub require_pushed_authorization_requests: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// The client operations for one actor: [`Admin`] plus the broker's rules
/// and the clients that are read-only here.
pub struct ClientAdmin<'a> {
    admin: &'a Admin<'a>,
    rules: ClientRules,
    /// Clients of the config file, shown as they are.
    configured: Vec<ClientSettings>,
    /// Ids nobody may create or change here: the config file's and the
    /// broker's own (the account page, the demo app).
    read_only: Vec<String>,
}

impl<'a> ClientAdmin<'a> {
    pub fn new(
        admin: &'a Admin<'a>,
        rules: ClientRules,
        configured: Vec<ClientSettings>,
        read_only: Vec<String>,
    ) -> Self {
        Self {
            admin,
            rules,
            configured,
            read_only,
        }
    }

    pub async fn list(&self) -> Result<ClientList, AdminError> {
        let rows = self.admin.store.list_clients().await?;
        let mut clients: Vec<ClientView> =
            self.configured.iter().map(ClientView::of_config).collect();
        clients.extend(
            rows.iter()
                .filter(|r| !self.is_read_only(&r.id))
                .map(|r| ClientView::of_row(r, self.admin.now)),
        );
        self.log("client_list", None);
        Ok(ClientList { clients })
    }

    pub async fn show(&self, id: &str) -> Result<ClientView, AdminError> {
        super::required("client id", id)?;
        if let Some(c) = self.configured.iter().find(|c| c.id == id) {
            return Ok(ClientView::of_config(c));
        }
        let row = self.row(id).await?;
        self.log("client_show", Some(id));
        Ok(ClientView::of_row(&row, self.admin.now))
    }

    /// A new client; a confidential one gets a generated secret, returned here
    /// once (only its hash is stored).
    pub async fn create(&self, input: &ClientInput) -> Result<ClientWritten, AdminError> {
        let reason = super::parse_reason(input.reason.as_deref())?;
        let id = match input.id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_owned(),
            Some(_) => return Err(field("id", "must be non-empty printable ASCII without ':'")),
            None => idbridge_tokens::random_alnum(22).map_err(internal)?,
        };
        if self.is_read_only(&id) {
            return Err(self.read_only_error(&id));
        }
        let base = ClientSettings {
            id: id.clone(),
            name: None,
            secret: None,
            secret_file: None,
            public: false,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            require_pkce: true,
            id_token_signed_response_alg: None,
            connectors: Vec::new(),
            require_phone: false,
            skip_consent: false,
            refresh_without_offline_access: false,
            id_token_on_refresh: true,
            require_pushed_authorization_requests: false,
            allowed_origins: Vec::new(),
        };
        let (settings, method, _) = self.apply(base, None, input)?;
        let secret = (!settings.public)
            .then(idbridge_tokens::generate_client_secret)
            .transpose()
            .map_err(internal)?;
        self.check(&settings, secret.as_deref())?;
        let now = self.admin.now;
        let row = ClientRow {
            id: id.clone(),
            secret_hash: hash(secret.as_deref())?,
            metadata: metadata_of(&settings, method.as_deref()),
            created_at: now,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            updated_at: now,
        };
        let mut detail = self.admin.detail(reason.as_deref());
        put(
            &mut detail,
            "client",
            public_fields(&row.metadata, settings.public),
        );
        match self
            .admin
            .store
            .create_client(row.clone(), self.event("admin_client_create", &id, detail))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(AdminError::Conflict(
                    "client_exists",
                    format!(
                        "a client with id {id:?} already exists; update it, or choose another id"
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.log("client_create", Some(&id));
        Ok(ClientWritten {
            client: ClientView::of_row(&row, now),
            client_secret: secret,
            changed: Vec::new(),
        })
    }

    /// Change the given fields of a stored client. A confidential client made
    /// public loses its secrets; a public one made confidential gets a new
    /// secret, returned here once.
    pub async fn update(&self, id: &str, input: &ClientInput) -> Result<ClientWritten, AdminError> {
        super::required("client id", id)?;
        let reason = super::parse_reason(input.reason.as_deref())?;
        if self.is_read_only(id) {
            return Err(self.read_only_error(id));
        }
        if input.id.as_deref().is_some_and(|new| new != id) {
            return Err(field(
                "id",
                "a client's id cannot be changed: create a new client instead",
            ));
        }
        let row = self.row(id).await?;
        let before = settings_of(&row);
        let (settings, method, changed) =
            self.apply(before.clone(), auth_method_of(&row), input)?;
        let secret = (!settings.public && before.public)
            .then(idbridge_tokens::generate_client_secret)
            .transpose()
            .map_err(internal)?;
        self.check(&settings, secret.as_deref().or(row.secret_hash.as_deref()))?;
        let mut next = row.clone();
        next.metadata = metadata_of(&settings, method.as_deref());
        if settings.public {
            next.secret_hash = None;
            next.previous_secret_hash = None;
            next.previous_secret_expires_at = None;
        } else if secret.is_some() {
            next.secret_hash = hash(secret.as_deref())?;
        }
        next.updated_at = self.admin.now.max(row.updated_at + 1);
        let mut detail = self.admin.detail(reason.as_deref());
        let (old, new) = (
            public_fields(&row.metadata, before.public),
            public_fields(&next.metadata, settings.public),
        );
        let diff: Map<String, Value> = changed
            .iter()
            .map(|k| (k.clone(), json!({ "from": old.get(k), "to": new.get(k) })))
            .collect();
        put(&mut detail, "changed", Value::Object(diff));
        let event = self.event("admin_client_update", id, detail);
        self.replace(next.clone(), row.updated_at, event).await?;
        self.log("client_update", Some(id));
        Ok(ClientWritten {
            client: ClientView::of_row(&next, self.admin.now),
            client_secret: secret,
            changed,
        })
    }

    /// A new secret for a confidential client; the current one keeps working
    /// for `grace` (`24h`, `30m`, `0`; default 24 hours, at most 30 days). A
    /// secret still in the grace of an earlier rotation stops working now.
    pub async fn rotate_secret(
        &self,
        id: &str,
        grace: Option<&str>,
        reason: Option<&str>,
    ) -> Result<SecretRotated, AdminError> {
        super::required("client id", id)?;
        let reason = super::parse_reason(reason)?;
        let grace = parse_grace(grace)?;
        if self.is_read_only(id) {
            return Err(self.read_only_error(id));
        }
        let row = self.row(id).await?;
        let Some(current) = row.secret_hash.clone() else {
            return Err(AdminError::Conflict(
                "public_client",
                format!("client {id:?} is public: it has no secret to rotate"),
            ));
        };
        let secret = idbridge_tokens::generate_client_secret().map_err(internal)?;
        let now = self.admin.now;
        let mut next = row.clone();
        next.secret_hash = hash(Some(&secret))?;
        next.previous_secret_hash = Some(current);
        next.previous_secret_expires_at = Some(now + grace);
        next.updated_at = now.max(row.updated_at + 1);
        let mut detail = self.admin.detail(reason.as_deref());
        put(&mut detail, "grace_secs", grace.into());
        put(
            &mut detail,
            "previous_secret_expires_at",
            (now + grace).into(),
        );
        let event = self.event("admin_client_rotate_secret", id, detail);
        self.replace(next, row.updated_at, event).await?;
        self.log("client_rotate_secret", Some(id));
        Ok(SecretRotated {
            client_id: id.to_owned(),
            client_secret: secret,
            previous_secret_expires_at: now + grace,
        })
    }

    /// Remove a stored client: its secrets stop working, its grants are
    /// revoked (refresh fails; userinfo and introspection refuse its access
    /// tokens at once), its unredeemed codes and sign-ins in progress go.
    pub async fn delete(
        &self,
        id: &str,
        reason: Option<&str>,
    ) -> Result<ClientDeleted, AdminError> {
        super::required("client id", id)?;
        let reason = super::parse_reason(reason)?;
        if self.is_read_only(id) {
            return Err(self.read_only_error(id));
        }
        let detail = self.admin.detail(reason.as_deref());
        let event = self.event("admin_client_delete", id, detail);
        let removed = self
            .admin
            .store
            .remove_client(id, "client_deleted", self.admin.now, move |r| {
                let mut event = event;
                put(&mut event.detail, "grants_revoked", r.grants_revoked.into());
                put(&mut event.detail, "codes_removed", r.codes_removed.into());
                put(
                    &mut event.detail,
                    "sign_ins_cancelled",
                    r.requests_removed.into(),
                );
                event
            })
            .await?
            .ok_or_else(|| no_client(id))?;
        self.log("client_delete", Some(id));
        Ok(ClientDeleted {
            client_id: id.to_owned(),
            grants_revoked: removed.grants_revoked,
            codes_removed: removed.codes_removed,
            sign_ins_cancelled: removed.requests_removed,
        })
    }

    /// `base` with `input`'s fields applied: the settings, the one token
    /// method held to (if any), and the names of the fields that changed.
    fn apply(
        &self,
        base: ClientSettings,
        method: Option<String>,
        input: &ClientInput,
    ) -> Result<(ClientSettings, Option<String>, Vec<String>), AdminError> {
        let mut c = base.clone();
        let mut method = method;
        if let Some(name) = &input.name {
            let name = name.trim();
            super::text("name", name, MAX_NAME)?;
            c.name = (!name.is_empty()).then(|| name.to_owned());
        }
        if let Some(public) = input.public {
            c.public = public;
        }
        if let Some(m) = input.token_endpoint_auth_method.as_deref() {
            let public = match m {
                "none" => true,
                "client_secret_basic" | "client_secret_post" | "any" => false,
                other => return Err(field(
                    "token_endpoint_auth_method",
                    &format!("{other:?}: use none (a public client), client_secret_basic, client_secret_post, or any (either of those two)"),
                )),
            };
            if input.public.is_some_and(|p| p != public) {
                return Err(field(
                    "token_endpoint_auth_method",
                    &format!(
                        "{m:?} contradicts \"public\": {}",
                        input.public.unwrap_or(false)
                    ),
                ));
            }
            c.public = public;
            method =
                matches!(m, "client_secret_basic" | "client_secret_post").then(|| m.to_owned());
        }
        if c.public {
            method = None;
        }
        let list = |f: &'static str,
                    v: &Option<Vec<String>>,
                    into: &mut Vec<String>|
         -> Result<(), AdminError> {
            if let Some(v) = v {
                if v.len() > MAX_LIST {
                    return Err(field(f, &format!("at most {MAX_LIST} entries")));
                }
                *into = v.iter().map(|s| s.trim().to_owned()).collect();
            }
            Ok(())
        };
        list("redirect_uris", &input.redirect_uris, &mut c.redirect_uris)?;
        list(
            "post_logout_redirect_uris",
            &input.post_logout_redirect_uris,
            &mut c.post_logout_redirect_uris,
        )?;
        list("connectors", &input.connectors, &mut c.connectors)?;
        list(
            "allowed_origins",
            &input.allowed_origins,
            &mut c.allowed_origins,
        )?;
        if let Some(v) = input.require_pkce {
            c.require_pkce = v;
        }
        if let Some(alg) = input.id_token_signed_response_alg.as_deref().map(str::trim) {
            c.id_token_signed_response_alg = (!alg.is_empty()).then(|| alg.to_owned());
        }
        if let Some(v) = input.require_phone {
            c.require_phone = v;
        }
        if let Some(v) = input.skip_consent {
            c.skip_consent = v;
        }
        if let Some(v) = input.refresh_without_offline_access {
            c.refresh_without_offline_access = v;
        }
        if let Some(v) = input.id_token_on_refresh {
            c.id_token_on_refresh = v;
        }
        if let Some(v) = input.require_pushed_authorization_requests {
            c.require_pushed_authorization_requests = v;
        }
        if c.public {
            c.require_pkce = true;
        }
        let (old, new) = (metadata_of(&base, None), metadata_of(&c, method.as_deref()));
        let mut changed: Vec<String> = [
            "name",
            "redirect_uris",
            "post_logout_redirect_uris",
            "require_pkce",
            "id_token_signed_response_alg",
            "connectors",
            "require_phone",
            "skip_consent",
            "refresh_without_offline_access",
            "id_token_on_refresh",
            "require_pushed_authorization_requests",
            "allowed_origins",
        ]
        .iter()
        .filter(|k| old.get(**k) != new.get(**k))
        .map(|k| (*k).to_owned())
        .collect();
        if base.public != c.public {
            changed.insert(0, "public".into());
        }
        if input.token_endpoint_auth_method.is_some() || base.public != c.public {
            changed.push("token_endpoint_auth_method".into());
        }
        Ok((c, method, changed))
    }

    /// The config file's rules; the secret, always one the broker made (or
    /// kept), is shown to them as present.
    fn check(&self, c: &ClientSettings, secret: Option<&str>) -> Result<(), AdminError> {
        let mut c = c.clone();
        c.secret = (!c.public).then(|| secret.unwrap_or_default().to_owned());
        match self.rules.check(&c).into_iter().next() {
            None => Ok(()),
            Some(p) => Err(field(p.field, &p.message)),
        }
    }

    async fn replace(
        &self,
        next: ClientRow,
        read_at: i64,
        event: AuditEvent,
    ) -> Result<(), AdminError> {
        let id = next.id.clone();
        match self.admin.store.replace_client(next, read_at, event).await? {
            ClientReplace::Replaced => Ok(()),
            ClientReplace::Gone => Err(no_client(&id)),
            ClientReplace::ChangedMeanwhile => Err(AdminError::Conflict(
                "changed_meanwhile",
                format!("client {id:?} was changed by someone else meanwhile; nothing was written: read it again and retry"),
            )),
        }
    }

    async fn row(&self, id: &str) -> Result<ClientRow, AdminError> {
        self.admin
            .store
            .get_client(id)
            .await?
            .ok_or_else(|| no_client(id))
    }

    fn is_read_only(&self, id: &str) -> bool {
        self.read_only.iter().any(|r| r == id) || self.configured.iter().any(|c| c.id == id)
    }

    fn read_only_error(&self, id: &str) -> AdminError {
        AdminError::Conflict(
            "read_only",
            format!("client {id:?} is registered in the config file (or built into the broker): it cannot be changed here; edit its [[clients]] entry in the config file and restart the broker"),
        )
    }

    fn event(&self, name: &str, client_id: &str, detail: Value) -> AuditEvent {
        AuditEvent {
            at: self.admin.now,
            event: name.into(),
            user_id: None,
            client_id: Some(client_id.to_owned()),
            connector_id: None,
            ip: self.admin.actor.ip(),
            detail,
        }
    }

    fn log(&self, action: &str, client_id: Option<&str>) {
        let actor = &self.admin.actor;
        tracing::info!(event = "admin", action, admin = %actor.label(), via = actor.via(), client_id = client_id.unwrap_or("-"), "admin client operation");
    }
}

/// A grace period: `0`, seconds (`3600`), or `90s`, `30m`, `24h`, `7d`.
pub fn parse_grace(grace: Option<&str>) -> Result<i64, AdminError> {
    let Some(g) = grace.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(DEFAULT_GRACE_SECS);
    };
    let wrong = || {
        field(
            "grace",
            &format!("{g:?}: use seconds or a duration such as 30m, 24h or 7d, from 0 to 30d"),
        )
    };
    let (number, per) = match g.chars().last() {
        Some('s') => (&g[..g.len() - 1], 1),
        Some('m') => (&g[..g.len() - 1], 60),
        Some('h') => (&g[..g.len() - 1], 3600),
        Some('d') => (&g[..g.len() - 1], 86_400),
        _ => (g, 1),
    };
    let secs = number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .filter(|s| (0..=MAX_GRACE_SECS).contains(s))
        .ok_or_else(wrong)?;
    Ok(secs)
}

/// What the audit log keeps of a client: its settings, never a secret.
fn public_fields(metadata: &Value, public: bool) -> Value {
    let mut m = metadata.clone();
    put(&mut m, "public", public.into());
    m
}

fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.into(), value);
    }
}

fn hash(secret: Option<&str>) -> Result<Option<String>, AdminError> {
    secret
        .map(idbridge_tokens::hash_client_secret)
        .transpose()
        .map_err(internal)
}

fn field(name: &str, message: &str) -> AdminError {
    AdminError::Field {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

fn internal(e: idbridge_tokens::TokenError) -> AdminError {
    AdminError::Store(StoreError::Database(format!("cannot make a secret: {e}")))
}

fn no_client(id: &str) -> AdminError {
    AdminError::NotFound(format!("no client with id {id:?}"))
}
