//! The row types of the public API, and the private diesel records they map to
//! (JSON payloads are `serde_json::Value` in the API and TEXT in the database).
//!
//! The insertable records write `None` as NULL rather than leaving the column to its
//! default (no nullable column has one), so each table's INSERT has one fixed text,
//! which the connection prepares once and keeps (diesel cannot keep one whose
//! columns vary with the row).

use diesel::prelude::*;
use serde_json::Value;

use crate::error::{from_json_text, to_json_text, StoreError};
use crate::schema::*;

/// A broker account; `id` is the `sub` apps see.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled_at: Option<i64>,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    /// E.164 (`+8613800138000`), once verified; unique among users.
    pub phone_number: Option<String>,
    pub phone_verified_at: Option<i64>,
}

/// An upstream identity (connector id, subject) linked to a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub connector_id: String,
    pub subject: String,
    pub user_id: String,
    pub link_scope: Option<String>,
    pub link_key: Option<String>,
    pub profile: Value,
    /// Opaque blob, encrypted by the caller.
    pub upstream_tokens: Option<Vec<u8>>,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// What a connector reported about a person who just signed in upstream.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewLogin {
    pub connector_id: String,
    pub subject: String,
    /// (scope, key), e.g. (Open Platform account id, unionid).
    pub link: Option<(String, String)>,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub profile: Value,
    /// Opaque blob, encrypted by the caller. `None` keeps what is stored.
    pub upstream_tokens: Option<Vec<u8>>,
    /// The upstream's email address, for linking by email ([`LoginEmail`]);
    /// `None`: the login is never matched by email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<LoginEmail>,
}

/// A login's email address as the linking rule sees it (docs/accounts.md, "Linking
/// by email"). A new identity is linked silently to the account that holds
/// `address` only when `trusted` (the connector's `trust_email`) and `verified`
/// (the upstream said `email_verified = true`) are both true; such an identity's
/// address also becomes a link target itself. An address is a link target only
/// while it was recorded by a connector listed in `trusted_sources` (the
/// connectors trusted now), so that an operator who stops trusting a connector
/// stops its addresses from linking anyone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginEmail {
    /// Normalised with [`crate::email_key`].
    pub address: String,
    pub verified: bool,
    pub trusted: bool,
    pub trusted_sources: Vec<String>,
}

impl LoginEmail {
    /// Whether this login may link to, and become, a link target.
    pub fn links(&self) -> bool {
        self.trusted && self.verified
    }
}

/// The connector's policy for an upstream identity that matches no user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstLogin {
    Create,
    Refuse,
    /// Attach it to this (existing) user: the person proved they own that account.
    LinkTo(String),
}

/// How [`crate::Store::resolve_login`] matched a login to a user.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginResolution {
    /// The identity was known.
    Existing(User),
    /// The identity is new and was attached to an existing user through its link key.
    Linked(User),
    /// A new user was created for the identity.
    Created(User),
    /// The identity is new and its trusted, verified email is an account's
    /// (`trust_email`): it was attached to that user.
    LinkedByEmail(User),
    /// The identity is new and its email is a link target of account `owner`,
    /// but this login may not link by email (its connector is not trusted):
    /// nothing was written. The upstream verified the address, so the person may
    /// be told about the account and offered to prove it (bind).
    EmailHeld { owner: String },
    /// Policy `Refuse` and nothing matched; nothing was written.
    NotLinked,
}

/// What the email rule made of a new identity whose address is an account's
/// link target, for the audit log ([`crate::LoginCompletion::SignedIn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailDecision {
    /// Linked to `owner`: the connector is trusted and the upstream verified it.
    Linked { owner: String },
    /// Not linked to `owner`: the upstream did not verify the address (the
    /// connector's `first_login` policy applied as for anyone new).
    Unverified { owner: String },
}

/// A client registered at run time (clients from the config file are not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRow {
    pub id: String,
    pub secret_hash: Option<String>,
    pub metadata: Value,
    pub created_at: i64,
    /// The secret before the last rotation, accepted until
    /// `previous_secret_expires_at` (the rotation's grace period).
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    /// When it was last changed (`created_at` until then); an update names the
    /// value it read, so a change made meanwhile is never overwritten.
    pub updated_at: i64,
}

/// What an app asked for in /authorize, kept while the person signs in upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRequestRow {
    pub id: String,
    pub client_id: String,
    pub payload: Value,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Upstream flow state, keyed by the `state` sent upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRow {
    pub state: String,
    pub connector_id: String,
    pub auth_request_id: String,
    pub browser_hash: String,
    pub data: Value,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub outcome: Option<Value>,
}

/// An authorization code, stored by hash.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub payload: Value,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The refresh-token family created when the code was redeemed.
    pub family_id: Option<String>,
}

/// Outcome of [`crate::Store::redeem_code`].
#[derive(Debug, Clone, PartialEq)]
pub enum Redeem {
    /// This caller redeemed the code: the row as updated, with its user and the
    /// connectors the user has identities with (read in the same transaction).
    Won(Box<Redeemed>),
    /// The code was redeemed before; `family_id` names the family to revoke.
    AlreadyUsed(CodeRow),
    Unknown,
}

/// A code this caller redeemed, and who it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Redeemed {
    pub code: CodeRow,
    /// `None` when the user no longer exists.
    pub user: Option<User>,
    pub linked_connectors: Vec<String>,
}

/// A refresh-token family: every token rotated from one code redemption.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyRow {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub sso_session_id: Option<String>,
    pub payload: Value,
    pub created_at: i64,
    pub last_used_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

/// One refresh token of a family, stored by hash.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    pub token_hash: String,
    pub family_id: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
    /// The hash of the token this one was rotated to, set with `used_at` (the
    /// one successor it can ever have).
    pub successor_hash: Option<String>,
}

/// Outcome of [`crate::Store::rotate_refresh_token`]; every variant but `Unknown` carries the
/// family as it is after the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// First use (the successor joined the family), or a reuse within the grace
    /// window while that same successor is still unused (nothing was added).
    Rotated(FamilyRow),
    /// Presented after the grace window, or within it after its successor was
    /// itself used: the family is now revoked.
    Replayed(FamilyRow),
    Revoked(FamilyRow),
    Expired(FamilyRow),
    /// Reused within the grace window with another successor than the one
    /// recorded at its first use (it was rotated before successors were
    /// recorded, or the master key changed): refused, nothing changed.
    OtherSuccessor(FamilyRow),
    Unknown,
}

/// A single-sign-on session at the broker.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = sso_sessions)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub connector_id: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

/// A signing key; `private_key` is already encrypted by the caller.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = signing_keys)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub generation: i64,
    pub private_key: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// Something worth an audit-log line.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub at: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connector_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Value,
}

/// An audit event as stored, with its id (ids grow with insertion order).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub event: AuditEvent,
}

/// How many rows [`crate::Store::collect_garbage`] deleted from each table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub auth_requests: u64,
    pub flows: u64,
    pub codes: u64,
    pub families: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub keys: u64,
    pub audit: u64,
    pub verification_codes: u64,
    pub failure_counters: u64,
}

// ---- private records: the rows as the database holds them ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = identities)]
pub(crate) struct IdentityRecord {
    pub connector_id: String,
    pub subject: String,
    pub user_id: String,
    pub link_scope: Option<String>,
    pub link_key: Option<String>,
    pub profile: String,
    pub upstream_tokens: Option<Vec<u8>>,
    pub created_at: i64,
    pub last_login_at: i64,
}

impl IdentityRecord {
    pub(crate) fn into_api(self) -> Result<Identity, StoreError> {
        Ok(Identity {
            profile: from_json_text(&self.profile, "identities.profile")?,
            connector_id: self.connector_id,
            subject: self.subject,
            user_id: self.user_id,
            link_scope: self.link_scope,
            link_key: self.link_key,
            upstream_tokens: self.upstream_tokens,
            created_at: self.created_at,
            last_login_at: self.last_login_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = clients)]
pub(crate) struct ClientRecord {
    pub id: String,
    pub secret_hash: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub updated_at: i64,
}

impl ClientRecord {
    pub(crate) fn from_api(c: ClientRow) -> Result<Self, StoreError> {
        Ok(ClientRecord {
            metadata: to_json_text(&c.metadata)?,
            id: c.id,
            secret_hash: c.secret_hash,
            created_at: c.created_at,
            previous_secret_hash: c.previous_secret_hash,
            previous_secret_expires_at: c.previous_secret_expires_at,
            updated_at: c.updated_at,
        })
    }

    pub(crate) fn into_api(self) -> Result<ClientRow, StoreError> {
        Ok(ClientRow {
            metadata: from_json_text(&self.metadata, "clients.metadata")?,
            id: self.id,
            secret_hash: self.secret_hash,
            created_at: self.created_at,
            previous_secret_hash: self.previous_secret_hash,
            previous_secret_expires_at: self.previous_secret_expires_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = auth_requests)]
pub(crate) struct AuthRequestRecord {
    pub id: String,
    pub client_id: String,
    pub payload: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl AuthRequestRecord {
    pub(crate) fn from_api(r: AuthRequestRow) -> Result<Self, StoreError> {
        Ok(AuthRequestRecord {
            payload: to_json_text(&r.payload)?,
            id: r.id,
            client_id: r.client_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }

    pub(crate) fn into_api(self) -> Result<AuthRequestRow, StoreError> {
        Ok(AuthRequestRow {
            payload: from_json_text(&self.payload, "auth_requests.payload")?,
            id: self.id,
            client_id: self.client_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = upstream_flows)]
pub(crate) struct FlowRecord {
    pub state: String,
    pub connector_id: String,
    pub auth_request_id: String,
    pub browser_hash: String,
    pub data: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub outcome: Option<String>,
}

impl FlowRecord {
    pub(crate) fn from_api(f: FlowRow) -> Result<Self, StoreError> {
        Ok(FlowRecord {
            data: to_json_text(&f.data)?,
            outcome: f.outcome.as_ref().map(to_json_text).transpose()?,
            state: f.state,
            connector_id: f.connector_id,
            auth_request_id: f.auth_request_id,
            browser_hash: f.browser_hash,
            created_at: f.created_at,
            expires_at: f.expires_at,
            used_at: f.used_at,
        })
    }

    pub(crate) fn into_api(self) -> Result<FlowRow, StoreError> {
        Ok(FlowRow {
            data: from_json_text(&self.data, "upstream_flows.data")?,
            outcome: self
                .outcome
                .as_deref()
                .map(|o| from_json_text(o, "upstream_flows.outcome"))
                .transpose()?,
            state: self.state,
            connector_id: self.connector_id,
            auth_request_id: self.auth_request_id,
            browser_hash: self.browser_hash,
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = authorization_codes)]
pub(crate) struct CodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub payload: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub family_id: Option<String>,
}

impl CodeRecord {
    pub(crate) fn from_api(c: CodeRow) -> Result<Self, StoreError> {
        Ok(CodeRecord {
            payload: to_json_text(&c.payload)?,
            code_hash: c.code_hash,
            client_id: c.client_id,
            user_id: c.user_id,
            created_at: c.created_at,
            expires_at: c.expires_at,
            used_at: c.used_at,
            family_id: c.family_id,
        })
    }

    pub(crate) fn into_api(self) -> Result<CodeRow, StoreError> {
        Ok(CodeRow {
            payload: from_json_text(&self.payload, "authorization_codes.payload")?,
            code_hash: self.code_hash,
            client_id: self.client_id,
            user_id: self.user_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
            family_id: self.family_id,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = refresh_token_families)]
pub(crate) struct FamilyRecord {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub sso_session_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl FamilyRecord {
    pub(crate) fn from_api(f: FamilyRow) -> Result<Self, StoreError> {
        Ok(FamilyRecord {
            payload: to_json_text(&f.payload)?,
            id: f.id,
            client_id: f.client_id,
            user_id: f.user_id,
            scope: f.scope,
            sso_session_id: f.sso_session_id,
            created_at: f.created_at,
            last_used_at: f.last_used_at,
            absolute_expires_at: f.absolute_expires_at,
            revoked_at: f.revoked_at,
            revoked_reason: f.revoked_reason,
        })
    }

    pub(crate) fn into_api(self) -> Result<FamilyRow, StoreError> {
        Ok(FamilyRow {
            payload: from_json_text(&self.payload, "refresh_token_families.payload")?,
            id: self.id,
            client_id: self.client_id,
            user_id: self.user_id,
            scope: self.scope,
            sso_session_id: self.sso_session_id,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            absolute_expires_at: self.absolute_expires_at,
            revoked_at: self.revoked_at,
            revoked_reason: self.revoked_reason,
        })
    }
}

#[derive(Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = audit_log)]
pub(crate) struct NewAuditRecord {
    pub at: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connector_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

impl NewAuditRecord {
    pub(crate) fn from_api(e: AuditEvent) -> Result<Self, StoreError> {
        Ok(NewAuditRecord {
            detail: to_json_text(&e.detail)?,
            at: e.at,
            event: e.event,
            user_id: e.user_id,
            client_id: e.client_id,
            connector_id: e.connector_id,
            ip: e.ip,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub(crate) struct AuditRecordRow {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connector_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

impl AuditRecordRow {
    pub(crate) fn into_api(self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            id: self.id,
            event: AuditEvent {
                detail: from_json_text(&self.detail, "audit_log.detail")?,
                at: self.at,
                event: self.event,
                user_id: self.user_id,
                client_id: self.client_id,
                connector_id: self.connector_id,
                ip: self.ip,
            },
        })
    }
}
