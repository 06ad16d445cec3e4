//! What an operator reads and changes: user search with identity counts, a
//! user's live SSO sessions and grants, disabling, enabling and revoking a
//! user's access, unlinking an identity, and the filtered audit log. Every
//! change is one transaction that also appends the caller's audit event, so
//! an admin action and its audit row are written together or not at all.

use diesel::prelude::*;

use crate::accounts::{escape_like, lower};
use crate::error::StoreError;
use crate::models::{
    AuditEvent, AuditRecord, AuditRecordRow, FamilyRecord, FamilyRow, Identity, IdentityRecord,
    NewAuditRecord, SessionRow, User,
};
use crate::pool::AnyConnection;
use crate::schema::{
    audit_log, identities, link_keys, refresh_token_families, sso_sessions, users,
};
use crate::store::Store;

/// A user and how many upstream identities are linked to it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSummary {
    pub user: User,
    pub identities: i64,
}

/// An operator's change to a user's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// Set `disabled_at` (kept if already set), end the live SSO sessions and
    /// revoke the live grants.
    Disable,
    /// Clear `disabled_at`. Ended sessions and revoked grants stay so.
    Enable,
    /// End the live SSO sessions and revoke the live grants; the user stays enabled.
    EndAccess,
}

/// What [`Store::change_user_access`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessOutcome {
    /// The user after the change.
    pub user: User,
    /// Whether the user was disabled before the change.
    pub was_disabled: bool,
    pub sessions_ended: u64,
    pub grants_revoked: u64,
}

/// What [`Store::unlink_identity`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Unlink {
    /// The identity is gone.
    Unlinked(Box<Unlinked>),
    /// No such user: nothing written.
    NoUser,
    /// The user has no identity with this connector id and subject: nothing written.
    NoIdentity,
    /// It is the user's last identity and `allow_last` was false: nothing written.
    LastIdentity,
}

/// A removed identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Unlinked {
    /// The identity as it was.
    pub identity: Identity,
    /// Identities the user still has.
    pub identities_left: u64,
    /// The identity's link key was removed too (no other identity of the user
    /// carried it), so a later sign-in with that link key no longer finds the user.
    pub link_key_removed: bool,
}

/// Which audit rows [`Store::find_audit`] returns: all conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    /// Any of these event names; empty = every event.
    pub events: Vec<String>,
    /// `at >= since`.
    pub since: Option<i64>,
    /// `at < until`.
    pub until: Option<i64>,
    /// `id < before_id`: pass the last id of a page to get the next one.
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Users whose id equals `query`, whose name contains it (case folded), or
    /// who have an identity whose subject or link key equals it (e.g. a WeChat
    /// openid or unionid); oldest first, each with its number of identities. An
    /// empty query lists every user.
    pub async fn search_users(
        &self,
        query: &str,
        limit: i64,
    ) -> Result<Vec<UserSummary>, StoreError> {
        let query = query.to_owned();
        let limit = limit.max(0);
        self.read(move |c| {
            let mut q = users::table
                .select(User::as_select())
                .order((users::created_at.asc(), users::id.asc()))
                .limit(limit)
                .into_boxed();
            if !query.is_empty() {
                let pattern = format!("%{}%", escape_like(&query));
                let by_identity = identities::table
                    .filter(
                        identities::subject
                            .eq(query.clone())
                            .or(identities::link_key.eq(query.clone())),
                    )
                    .select(identities::user_id);
                q = q.filter(
                    users::id
                        .eq(query.clone())
                        .or(lower(users::name).like(lower(Some(pattern))).escape('\\'))
                        .or(users::id.eq_any(by_identity)),
                );
            }
            let found: Vec<User> = q.load(c)?;
            let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
            let counts: Vec<(String, i64)> = identities::table
                .filter(identities::user_id.eq_any(&ids))
                .group_by(identities::user_id)
                .select((identities::user_id, diesel::dsl::count_star()))
                .load(c)?;
            Ok(found
                .into_iter()
                .map(|user| {
                    let identities = counts
                        .iter()
                        .find(|(id, _)| *id == user.id)
                        .map_or(0, |(_, n)| *n);
                    UserSummary { user, identities }
                })
                .collect())
        })
        .await
    }

    /// A user's SSO sessions that have not ended and not expired, newest first.
    pub async fn live_sessions_for_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Ok(sso_sessions::table
                .filter(sso_sessions::user_id.eq(&user_id))
                .filter(sso_sessions::ended_at.is_null())
                .filter(sso_sessions::expires_at.gt(now))
                .order((sso_sessions::created_at.desc(), sso_sessions::id.asc()))
                .select(SessionRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// A user's grants (refresh-token families) that are not revoked and not past
    /// their absolute lifetime — the ones whose access tokens still work —
    /// newest first.
    pub async fn live_families_for_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<FamilyRow>, StoreError> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            refresh_token_families::table
                .filter(refresh_token_families::user_id.eq(&user_id))
                .filter(refresh_token_families::revoked_at.is_null())
                .filter(refresh_token_families::absolute_expires_at.gt(now))
                .order((
                    refresh_token_families::created_at.desc(),
                    refresh_token_families::id.asc(),
                ))
                .select(FamilyRecord::as_select())
                .load(c)?
                .into_iter()
                .map(FamilyRecord::into_api)
                .collect()
        })
        .await
    }

    /// Disable, enable, or end the access of a user, in one transaction with the
    /// audit event `audit` makes from the outcome. Sessions that end are the live
    /// ones (not ended, not expired); grants revoked are the live ones (not
    /// revoked, not past their absolute lifetime), with `revoke_reason`. `None`
    /// (and nothing written) when there is no such user.
    pub async fn change_user_access<F>(
        &self,
        user_id: &str,
        change: AccessChange,
        revoke_reason: &str,
        now: i64,
        audit: F,
    ) -> Result<Option<AccessOutcome>, StoreError>
    where
        F: FnOnce(&AccessOutcome) -> AuditEvent + Send + 'static,
    {
        let user_id = user_id.to_owned();
        let reason = revoke_reason.to_owned();
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                let Some(before) = find_user(c, &user_id)? else {
                    return Ok(None);
                };
                let was_disabled = before.disabled_at.is_some();
                let (mut sessions_ended, mut grants_revoked) = (0, 0);
                match change {
                    AccessChange::Disable => {
                        if !was_disabled {
                            diesel::update(users::table.find(&user_id))
                                .set((users::disabled_at.eq(Some(now)), users::updated_at.eq(now)))
                                .execute(c)?;
                        }
                        (sessions_ended, grants_revoked) = end_access(c, &user_id, &reason, now)?;
                    }
                    AccessChange::Enable => {
                        if was_disabled {
                            diesel::update(users::table.find(&user_id))
                                .set((
                                    users::disabled_at.eq(None::<i64>),
                                    users::updated_at.eq(now),
                                ))
                                .execute(c)?;
                        }
                    }
                    AccessChange::EndAccess => {
                        (sessions_ended, grants_revoked) = end_access(c, &user_id, &reason, now)?;
                    }
                }
                let user = find_user(c, &user_id)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("user {user_id} vanished mid-transaction"))
                })?;
                let outcome = AccessOutcome {
                    user,
                    was_disabled,
                    sessions_ended,
                    grants_revoked,
                };
                append(c, audit(&outcome))?;
                Ok(Some(outcome))
            })
        })
        .await
    }

    /// Remove the identity (`connector_id`, `subject`) of `user_id`, in one
    /// transaction with the audit event `audit` makes from the result. Its link
    /// key goes too unless another identity of the user carries the same one.
    /// The user's last identity is removed only with `allow_last`.
    pub async fn unlink_identity<F>(
        &self,
        user_id: &str,
        connector_id: &str,
        subject: &str,
        allow_last: bool,
        audit: F,
    ) -> Result<Unlink, StoreError>
    where
        F: FnOnce(&Unlinked) -> AuditEvent + Send + 'static,
    {
        let key = (
            user_id.to_owned(),
            connector_id.to_owned(),
            subject.to_owned(),
        );
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                let (user_id, connector_id, subject) = (&key.0, &key.1, &key.2);
                if find_user(c, user_id)?.is_none() {
                    return Ok(Unlink::NoUser);
                }
                let record: Option<IdentityRecord> = identities::table
                    .find((connector_id, subject))
                    .filter(identities::user_id.eq(user_id))
                    .select(IdentityRecord::as_select())
                    .first(c)
                    .optional()?;
                let Some(record) = record else {
                    return Ok(Unlink::NoIdentity);
                };
                let identity = record.into_api()?;
                let count: i64 = identities::table
                    .filter(identities::user_id.eq(user_id))
                    .count()
                    .get_result(c)?;
                if count <= 1 && !allow_last {
                    return Ok(Unlink::LastIdentity);
                }
                diesel::delete(identities::table.find((connector_id, subject))).execute(c)?;
                crate::emails::forget_identity(c, connector_id, subject)?;
                let mut link_key_removed = false;
                if let (Some(scope), Some(link)) = (&identity.link_scope, &identity.link_key) {
                    let shared: i64 = identities::table
                        .filter(identities::user_id.eq(user_id))
                        .filter(identities::link_scope.eq(scope))
                        .filter(identities::link_key.eq(link))
                        .count()
                        .get_result(c)?;
                    if shared == 0 {
                        link_key_removed = diesel::delete(
                            link_keys::table
                                .find((scope, link))
                                .filter(link_keys::user_id.eq(user_id)),
                        )
                        .execute(c)?
                            == 1;
                    }
                }
                let unlinked = Unlinked {
                    identity,
                    identities_left: u64::try_from(count - 1).unwrap_or(0),
                    link_key_removed,
                };
                append(c, audit(&unlinked))?;
                Ok(Unlink::Unlinked(Box::new(unlinked)))
            })
        })
        .await
    }

    /// Audit rows matching `filter`, newest first, at most `filter.limit`.
    pub async fn find_audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |c| {
            let mut q = audit_log::table
                .select(AuditRecordRow::as_select())
                .order(audit_log::id.desc())
                .limit(filter.limit.max(0))
                .into_boxed();
            if let Some(u) = filter.user_id {
                q = q.filter(audit_log::user_id.eq(u));
            }
            if !filter.events.is_empty() {
                q = q.filter(audit_log::event.eq_any(filter.events));
            }
            if let Some(since) = filter.since {
                q = q.filter(audit_log::at.ge(since));
            }
            if let Some(until) = filter.until {
                q = q.filter(audit_log::at.lt(until));
            }
            if let Some(b) = filter.before_id {
                q = q.filter(audit_log::id.lt(b));
            }
            q.load(c)?
                .into_iter()
                .map(AuditRecordRow::into_api)
                .collect()
        })
        .await
    }
}

fn find_user(c: &mut AnyConnection, id: &str) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// End the user's live sessions and revoke their live grants; the counts.
fn end_access(
    c: &mut AnyConnection,
    user_id: &str,
    reason: &str,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let sessions = diesel::update(
        sso_sessions::table
            .filter(sso_sessions::user_id.eq(user_id))
            .filter(sso_sessions::ended_at.is_null())
            .filter(sso_sessions::expires_at.gt(now)),
    )
    .set(sso_sessions::ended_at.eq(Some(now)))
    .execute(c)?;
    let grants = diesel::update(
        refresh_token_families::table
            .filter(refresh_token_families::user_id.eq(user_id))
            .filter(refresh_token_families::revoked_at.is_null())
            .filter(refresh_token_families::absolute_expires_at.gt(now)),
    )
    .set((
        refresh_token_families::revoked_at.eq(Some(now)),
        refresh_token_families::revoked_reason.eq(Some(reason)),
    ))
    .execute(c)?;
    Ok((sessions as u64, grants as u64))
}

pub(crate) fn append(c: &mut AnyConnection, event: AuditEvent) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values(NewAuditRecord::from_api(event)?)
        .execute(c)?;
    Ok(())
}
