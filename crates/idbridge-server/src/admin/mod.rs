//! The operator's tools: find users, show one with their identities, live
//! sessions and grants, unlink an identity, disable / enable a user, end a
//! user's sessions and tokens, and read the audit log. [`Admin`] holds the
//! operations, shared by the HTTP API (`http`) and the `idbridge admin` CLI;
//! both pass raw text in, so both validate and word errors the same way, and
//! both get the same JSON-serialisable results out. Every change is audited
//! (who, what, which user) in the same transaction as the change, and logged.

mod actor;
mod api;
pub mod client_views;
pub mod clients;
pub mod clients_http;
pub mod http;
pub mod time;
pub mod tokens;

pub use actor::Actor;
pub use client_views::{ClientDeleted, ClientList, ClientView, ClientWritten, SecretRotated};
pub use clients::{ClientAdmin, ClientInput};
pub use tokens::AdminTokens;

use idbridge_store::{
    AccessChange, AccessOutcome, AuditEvent, AuditFilter, Store, StoreError, Unlink, Unlinked, User,
};
use serde::Serialize;
use serde_json::json;

/// Most rows one request returns; also the default is this small.
pub const MAX_LIMIT: i64 = 500;
pub const DEFAULT_LIMIT: i64 = 50;
/// Longest search text, reason, connector id or subject accepted.
const MAX_TEXT: usize = 500;

/// What went wrong, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad input: HTTP 400, exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// A bad value of one field: HTTP 400 naming the field, exit code 2.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// Refused as things stand (the error code says why: `read_only`,
    /// `client_exists`, `changed_meanwhile`, `public_client`): HTTP 409, exit code 2.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// No such user or identity: HTTP 404, exit code 1.
    #[error("{0}")]
    NotFound(String),
    /// Refused: unlinking the user's last identity without `force`. HTTP 409, exit code 2.
    #[error("{0}")]
    LastIdentity(String),
    /// The database failed: HTTP 503 or 500, exit code 3.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A user as listed and shown.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub disabled: bool,
    pub disabled_at: Option<i64>,
    /// How many upstream identities are linked.
    pub identities: i64,
}

impl UserView {
    fn new(user: User, identities: i64) -> Self {
        Self {
            disabled: user.disabled_at.is_some(),
            id: user.id,
            name: user.name,
            created_at: user.created_at,
            disabled_at: user.disabled_at,
            identities,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UserList {
    pub users: Vec<UserView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    pub connector_id: String,
    pub subject: String,
    /// E.g. the WeChat Open Platform account id.
    pub link_scope: Option<String>,
    /// E.g. the WeChat unionid.
    pub link_key: Option<String>,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// A live SSO session at the broker (its id is the `sid` apps see in ID tokens).
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub connector_id: String,
    pub auth_time: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A live grant: one app's refresh-token family and the access tokens issued from it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    pub sso_session_id: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// The grant's absolute end; its refresh token also expires when unused for
    /// `tokens.refresh_idle_ttl_secs`.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserDetail {
    pub user: UserView,
    pub identities: Vec<IdentityView>,
    pub sessions: Vec<SessionView>,
    pub grants: Vec<GrantView>,
    /// What the person allowed each app on the consent page.
    pub consents: Vec<ConsentView>,
}

/// One app's consent: the scopes allowed so far, first and last given.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
    pub updated_at: i64,
}

/// The result of disable, enable and revoke.
#[derive(Debug, Clone, Serialize)]
pub struct AccessResult {
    pub user_id: String,
    pub disabled: bool,
    pub disabled_at: Option<i64>,
    pub was_disabled: bool,
    pub sessions_ended: u64,
    pub grants_revoked: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnlinkResult {
    pub user_id: String,
    pub connector_id: String,
    pub subject: String,
    pub identities_left: u64,
    /// The identity's link key (unionid) went too: no other identity of the
    /// user carried it.
    pub link_key_removed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connector_id: Option<String>,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// The audit log's filters, as given (text), all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    /// Event names, comma-separated.
    pub event: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

/// The operations, for one actor at one moment.
pub struct Admin<'a> {
    store: &'a Store,
    actor: Actor,
    now: i64,
}

impl<'a> Admin<'a> {
    pub fn new(store: &'a Store, actor: Actor, now: i64) -> Self {
        Self { store, actor, now }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Users whose id equals `query`, whose name contains it, or with an
    /// identity whose subject or link key equals it; all users when empty.
    pub async fn find_users(
        &self,
        query: Option<&str>,
        limit: Option<&str>,
    ) -> Result<UserList, AdminError> {
        let query = query.unwrap_or("").trim();
        text("q", query, MAX_TEXT)?;
        let limit = parse_limit(limit)?;
        let users = self
            .store
            .search_users(query, limit)
            .await?
            .into_iter()
            .map(|s| UserView::new(s.user, s.identities))
            .collect::<Vec<_>>();
        tracing::info!(event = "admin", action = "find", admin = %self.actor.label(), via = self.actor.via(), results = users.len(), "admin searched users");
        Ok(UserList { users })
    }

    /// One user with their identities, live SSO sessions and live grants.
    pub async fn show_user(&self, user_id: &str) -> Result<UserDetail, AdminError> {
        let user = self.user(user_id).await?;
        let identities = self.store.list_identities(&user.id).await?;
        let sessions = self
            .store
            .live_sessions_for_user(&user.id, self.now)
            .await?;
        let grants = self
            .store
            .live_families_for_user(&user.id, self.now)
            .await?;
        let consents = self.store.list_consents(&user.id).await?;
        tracing::info!(event = "admin", action = "show", admin = %self.actor.label(), via = self.actor.via(), user_id = %user.id, "admin viewed a user");
        Ok(UserDetail {
            user: UserView::new(user, identities.len() as i64),
            identities: identities
                .into_iter()
                .map(|i| IdentityView {
                    connector_id: i.connector_id,
                    subject: i.subject,
                    link_scope: i.link_scope,
                    link_key: i.link_key,
                    created_at: i.created_at,
                    last_login_at: i.last_login_at,
                })
                .collect(),
            sessions: sessions
                .into_iter()
                .map(|s| SessionView {
                    id: s.id,
                    connector_id: s.connector_id,
                    auth_time: s.auth_time,
                    last_seen_at: s.last_seen_at,
                    expires_at: s.expires_at,
                })
                .collect(),
            grants: grants
                .into_iter()
                .map(|f| GrantView {
                    id: f.id,
                    client_id: f.client_id,
                    scope: f.scope,
                    sso_session_id: f.sso_session_id,
                    created_at: f.created_at,
                    last_used_at: f.last_used_at,
                    expires_at: f.absolute_expires_at,
                })
                .collect(),
            consents: consents
                .into_iter()
                .map(|c| ConsentView {
                    client_id: c.client_id,
                    scope: c.scope,
                    granted_at: c.granted_at,
                    updated_at: c.updated_at,
                })
                .collect(),
        })
    }

    /// Remove one identity from a user. The last one only with `force`: without
    /// any identity nobody can sign in to the account, and the next sign-in of
    /// that upstream identity makes a new account (a new `sub`).
    pub async fn unlink(
        &self,
        user_id: &str,
        connector_id: &str,
        subject: &str,
        force: bool,
        reason: Option<&str>,
    ) -> Result<UnlinkResult, AdminError> {
        required("user id", user_id)?;
        required("connector_id", connector_id)?;
        required("subject", subject)?;
        text("connector_id", connector_id, MAX_TEXT)?;
        text("subject", subject, MAX_TEXT)?;
        let reason = parse_reason(reason)?;
        let detail = self.detail(reason.as_deref());
        let (actor, ip, at) = (self.actor.label(), self.actor.ip(), self.now);
        let audit = move |u: &Unlinked| {
            let mut detail = detail;
            if let Some(d) = detail.as_object_mut() {
                d.insert("subject".into(), u.identity.subject.clone().into());
                d.insert("identities_left".into(), u.identities_left.into());
                d.insert("link_key_removed".into(), u.link_key_removed.into());
                d.insert("forced".into(), force.into());
            }
            AuditEvent {
                at,
                event: "admin_unlink".into(),
                user_id: Some(u.identity.user_id.clone()),
                client_id: None,
                connector_id: Some(u.identity.connector_id.clone()),
                ip,
                detail,
            }
        };
        match self
            .store
            .unlink_identity(user_id, connector_id, subject, force, audit)
            .await?
        {
            Unlink::Unlinked(u) => {
                tracing::info!(event = "admin", action = "unlink", admin = %actor, via = self.actor.via(), user_id, connector = connector_id, identities_left = u.identities_left, link_key_removed = u.link_key_removed, forced = force, "admin unlinked an identity");
                Ok(UnlinkResult {
                    user_id: user_id.to_owned(),
                    connector_id: u.identity.connector_id,
                    subject: u.identity.subject,
                    identities_left: u.identities_left,
                    link_key_removed: u.link_key_removed,
                })
            }
            Unlink::NoUser => Err(no_user(user_id)),
            Unlink::NoIdentity => Err(AdminError::NotFound(format!(
                "user {user_id:?} has no identity with connector_id {connector_id:?} and subject {subject:?}"
            ))),
            Unlink::LastIdentity => Err(AdminError::LastIdentity(
                "this is the user's last identity: without it nobody can sign in to this account, and the next sign-in with that upstream identity creates a new account. Disable the user instead, or unlink with force (\"force\": true, or --force) to do it anyway".into(),
            )),
        }
    }

    /// Disable a user: sign-in is refused, their SSO sessions end and their
    /// grants are revoked, so their access tokens stop working at once.
    pub async fn disable(
        &self,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<AccessResult, AdminError> {
        self.access(user_id, AccessChange::Disable, reason).await
    }

    /// Let a disabled user sign in again (their old sessions and tokens stay ended).
    pub async fn enable(
        &self,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<AccessResult, AdminError> {
        self.access(user_id, AccessChange::Enable, reason).await
    }

    /// End a user's SSO sessions and revoke their grants; they stay enabled and
    /// may sign in again.
    pub async fn revoke(
        &self,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<AccessResult, AdminError> {
        self.access(user_id, AccessChange::EndAccess, reason).await
    }

    async fn access(
        &self,
        user_id: &str,
        change: AccessChange,
        reason: Option<&str>,
    ) -> Result<AccessResult, AdminError> {
        required("user id", user_id)?;
        let reason = parse_reason(reason)?;
        let (action, revoke_reason) = match change {
            AccessChange::Disable => ("disable", "user_disabled"),
            AccessChange::Enable => ("enable", "user_enabled"),
            AccessChange::EndAccess => ("revoke", "revoked_by_admin"),
        };
        let detail = self.detail(reason.as_deref());
        let (ip, at) = (self.actor.ip(), self.now);
        let audit = move |o: &AccessOutcome| {
            let mut detail = detail;
            if let Some(d) = detail.as_object_mut() {
                d.insert("was_disabled".into(), o.was_disabled.into());
                if change != AccessChange::Enable {
                    d.insert("sessions_ended".into(), o.sessions_ended.into());
                    d.insert("grants_revoked".into(), o.grants_revoked.into());
                }
            }
            AuditEvent {
                at,
                event: format!("admin_{action}"),
                user_id: Some(o.user.id.clone()),
                client_id: None,
                connector_id: None,
                ip,
                detail,
            }
        };
        let outcome = self
            .store
            .change_user_access(user_id, change, revoke_reason, self.now, audit)
            .await?
            .ok_or_else(|| no_user(user_id))?;
        tracing::info!(event = "admin", action, admin = %self.actor.label(), via = self.actor.via(), user_id, was_disabled = outcome.was_disabled, sessions_ended = outcome.sessions_ended, grants_revoked = outcome.grants_revoked, "admin changed a user's access");
        Ok(AccessResult {
            user_id: outcome.user.id,
            disabled: outcome.user.disabled_at.is_some(),
            disabled_at: outcome.user.disabled_at,
            was_disabled: outcome.was_disabled,
            sessions_ended: outcome.sessions_ended,
            grants_revoked: outcome.grants_revoked,
        })
    }

    /// The audit log, newest first, filtered.
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, AdminError> {
        let limit = parse_limit(q.limit.as_deref())?;
        let mut events = Vec::new();
        for name in q.event.as_deref().unwrap_or("").split(',') {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            if name.len() > 64 || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(AdminError::Invalid(format!(
                    "event {name:?} is not an event name (lowercase letters and _, e.g. login,admin_disable)"
                )));
            }
            events.push(name.to_owned());
        }
        if events.len() > 32 {
            return Err(AdminError::Invalid("at most 32 event names".into()));
        }
        let since = q
            .since
            .as_deref()
            .map(|s| {
                time::parse(s, self.now).map_err(|e| AdminError::Invalid(format!("since: {e}")))
            })
            .transpose()?;
        let until = q
            .until
            .as_deref()
            .map(|s| {
                time::parse(s, self.now).map_err(|e| AdminError::Invalid(format!("until: {e}")))
            })
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(AdminError::Invalid("since must be before until".into()));
            }
        }
        let before_id = q
            .before
            .as_deref()
            .map(|b| match b.trim().parse::<i64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(AdminError::Invalid(format!(
                    "before must be an audit event id (a positive whole number), not {b:?}"
                ))),
            })
            .transpose()?;
        let user_id = q.user.as_deref().map(str::trim).filter(|u| !u.is_empty());
        if let Some(u) = user_id {
            text("user", u, MAX_TEXT)?;
        }
        let rows = self
            .store
            .find_audit(AuditFilter {
                user_id: user_id.map(str::to_owned),
                events,
                since,
                until,
                before_id,
                limit,
            })
            .await?;
        let next_before = if rows.len() as i64 == limit {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        tracing::info!(event = "admin", action = "audit", admin = %self.actor.label(), via = self.actor.via(), results = rows.len(), "admin read the audit log");
        Ok(AuditPage {
            events: rows
                .into_iter()
                .map(|r| AuditEntry {
                    id: r.id,
                    at: r.event.at,
                    event: r.event.event,
                    user_id: r.event.user_id,
                    client_id: r.event.client_id,
                    connector_id: r.event.connector_id,
                    ip: r.event.ip,
                    detail: r.event.detail,
                })
                .collect(),
            next_before,
        })
    }

    async fn user(&self, user_id: &str) -> Result<User, AdminError> {
        required("user id", user_id)?;
        self.store
            .get_user(user_id)
            .await?
            .ok_or_else(|| no_user(user_id))
    }

    /// The audit detail every admin action starts from: who, through what, why.
    fn detail(&self, reason: Option<&str>) -> serde_json::Value {
        let mut d = json!({ "admin": self.actor.label(), "via": self.actor.via() });
        if let (Some(r), Some(m)) = (reason, d.as_object_mut()) {
            m.insert("reason".into(), r.into());
        }
        d
    }
}

fn no_user(user_id: &str) -> AdminError {
    AdminError::NotFound(format!("no user with id {user_id:?}"))
}

fn required(what: &str, value: &str) -> Result<(), AdminError> {
    if value.trim().is_empty() {
        return Err(AdminError::Invalid(format!("{what} is required")));
    }
    Ok(())
}

fn text(what: &str, value: &str, max: usize) -> Result<(), AdminError> {
    if value.chars().count() > max {
        return Err(AdminError::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

fn parse_limit(limit: Option<&str>) -> Result<i64, AdminError> {
    match limit.map(str::trim) {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(AdminError::Invalid(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, not {l:?}"
            ))),
        },
    }
}

fn parse_reason(reason: Option<&str>) -> Result<Option<String>, AdminError> {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => {
            text("reason", r, MAX_TEXT)?;
            Ok(Some(r.to_owned()))
        }
    }
}
