//! Authorization codes and refresh-token families: single-use redemption, rotation with a
//! grace window, replay detection and revocation, each decided in one transaction.
//!
//! A refresh token has at most one successor, recorded on the token when it is first used.
//! The caller derives the successor from the token (the server keys an HMAC with the master
//! key), so every presentation asks for the same one: a reuse within the grace window gets
//! that successor back while it is unused, and nothing else is ever inserted for the token.
//! A grant therefore never has two live chains.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::{
    AuditEvent, CodeRecord, CodeRow, FamilyRecord, FamilyRow, NewAuditRecord, Redeem,
    RefreshTokenRow, Rotation,
};
use crate::pool::AnyConnection;
use crate::schema::{authorization_codes, refresh_token_families, refresh_tokens};
use crate::store::Store;

/// Reason recorded on a family revoked because a rotated token came back after the grace window.
pub const REPLAY_REVOKE_REASON: &str = "refresh_token_replayed";

impl Store {
    /// Stores a code, with its audit event when one is given (a sign-in through
    /// an existing SSO session), in one transaction. `Conflict` when the hash is
    /// taken.
    pub async fn insert_code(
        &self,
        c: CodeRow,
        audit: Option<AuditEvent>,
    ) -> Result<(), StoreError> {
        let rec = CodeRecord::from_api(c)?;
        let event = audit.map(NewAuditRecord::from_api).transpose()?;
        self.write(move |conn| {
            crate::call::transaction(conn, |conn| {
                diesel::insert_into(authorization_codes::table)
                    .values(rec)
                    .execute(conn)?;
                if let Some(event) = event {
                    diesel::insert_into(crate::schema::audit_log::table)
                        .values(event)
                        .execute(conn)?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The code as stored, used or expired or not.
    pub async fn get_code(&self, code_hash: &str) -> Result<Option<CodeRow>, StoreError> {
        let code_hash = code_hash.to_owned();
        self.read(move |conn| {
            find_code(conn, &code_hash)?
                .map(CodeRecord::into_api)
                .transpose()
        })
        .await
    }

    /// Redeems a code once, in one transaction: marks it used with `new_family.id`; if this
    /// caller won, inserts the family and (if given) its first refresh token and returns
    /// `Won(row as updated)`. A code used before gives `AlreadyUsed(row)` (its `family_id` is
    /// the family to revoke); a missing code `Unknown`. Expiry and client binding are the
    /// caller's to check (with [`Store::get_code`]) before redeeming.
    pub async fn redeem_code(
        &self,
        code_hash: &str,
        new_family: FamilyRow,
        first_refresh_token_hash: Option<String>,
        now: i64,
    ) -> Result<Redeem, StoreError> {
        let code_hash = code_hash.to_owned();
        let family = FamilyRecord::from_api(new_family)?;
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                redeem_in(c, &code_hash, &family, first_refresh_token_hash, now, None)
            })
        })
        .await
    }

    /// [`Store::redeem_code`] with the caller's checks in the same transaction,
    /// so a code costs one store call: reads the code, hands it to `check`
    /// (client binding, expiry, redirect_uri, PKCE; a replay), and redeems it with
    /// the family `check` returns. `check`'s refusal comes back as `Ok(Err(_))`
    /// with nothing written; what it accepted with (`T`, say the parsed grant)
    /// comes back beside the outcome. A missing code is `Ok(None)`, unchecked.
    pub async fn redeem_code_checked<F, T, E>(
        &self,
        code_hash: &str,
        now: i64,
        check: F,
    ) -> Result<Result<Option<(Redeem, T)>, E>, StoreError>
    where
        F: FnOnce(&CodeRow) -> Result<(FamilyRow, Option<String>, T), E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let code_hash = code_hash.to_owned();
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                let Some(row) = find_code(c, &code_hash)? else {
                    return Ok(Ok(None));
                };
                let row = row.into_api()?;
                let (family, first_refresh_token_hash, accepted) = match check(&row) {
                    Ok(accepted) => accepted,
                    Err(refused) => return Ok(Err(refused)),
                };
                let family = FamilyRecord::from_api(family)?;
                let redeemed = redeem_in(
                    c,
                    &code_hash,
                    &family,
                    first_refresh_token_hash,
                    now,
                    Some(row),
                )?;
                Ok(Ok(Some((redeemed, accepted))))
            })
        })
        .await
    }

    pub async fn get_family(&self, id: &str) -> Result<Option<FamilyRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| find_family(c, &id)?.map(FamilyRecord::into_api).transpose())
            .await
    }

    /// Revokes a family; true if it was not revoked before.
    pub async fn revoke_family(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let reason = reason.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                refresh_token_families::table
                    .find(&id)
                    .filter(refresh_token_families::revoked_at.is_null()),
            )
            .set(revocation(&reason, now))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Revokes every live family of a user; returns how many changed.
    pub async fn revoke_families_for_user(
        &self,
        user_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        let reason = reason.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                refresh_token_families::table
                    .filter(refresh_token_families::user_id.eq(&user_id))
                    .filter(refresh_token_families::revoked_at.is_null()),
            )
            .set(revocation(&reason, now))
            .execute(c)?;
            Ok(n as u64)
        })
        .await
    }

    /// Revokes every live family issued under an SSO session; returns how many changed.
    pub async fn revoke_families_for_session(
        &self,
        sso_session_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let sso_session_id = sso_session_id.to_owned();
        let reason = reason.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                refresh_token_families::table
                    .filter(refresh_token_families::sso_session_id.eq(&sso_session_id))
                    .filter(refresh_token_families::revoked_at.is_null()),
            )
            .set(revocation(&reason, now))
            .execute(c)?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read(move |c| find_token(c, &token_hash)).await
    }

    /// Rotates a refresh token to `successor_hash`, which must be the same on every call with
    /// one token (derived from it), in one transaction whose first statement is a write (so
    /// SQLite takes the write lock up front, and Postgres serialises racing rotations on the
    /// token row). Outcomes: unknown hash → `Unknown`; revoked family → `Revoked`; family past
    /// `absolute_expires_at` or idle longer than `idle_secs` → `Expired`; first use → the
    /// successor is recorded on the token and joins the family → `Rotated`; reuse within
    /// `grace_secs` of the first use while the recorded successor is `successor_hash` and
    /// still unused → nothing added → `Rotated`; such a reuse naming another successor →
    /// nothing changed → `OtherSuccessor`; reuse after the grace window, or within it once
    /// the successor has been used → family revoked ("refresh_token_replayed") → `Replayed`.
    pub async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        successor_hash: &str,
        grace_secs: i64,
        idle_secs: i64,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let token_hash = token_hash.to_owned();
        let successor_hash = successor_hash.to_owned();
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                rotate_in(c, &token_hash, &successor_hash, grace_secs, idle_secs, now)
            })
        })
        .await
    }

    /// Whether [`Store::refresh_grant`] would rotate this token for `client_id` now (with the
    /// scope as granted), without changing anything: the token and its family when it would,
    /// `None` when it would refuse or the hash is unknown. What introspection answers.
    pub async fn refreshable(
        &self,
        token_hash: &str,
        successor_hash: &str,
        client_id: &str,
        grace_secs: i64,
        idle_secs: i64,
        now: i64,
    ) -> Result<Option<(RefreshTokenRow, FamilyRow)>, StoreError> {
        let token_hash = token_hash.to_owned();
        let successor_hash = successor_hash.to_owned();
        let client_id = client_id.to_owned();
        self.read(move |c| {
            let Some(token) = find_token(c, &token_hash)? else {
                return Ok(None);
            };
            let Some(family) = find_family(c, &token.family_id)? else {
                return Ok(None);
            };
            if family.client_id != client_id {
                return Ok(None);
            }
            let disabled_at: Option<Option<i64>> = crate::schema::users::table
                .find(&family.user_id)
                .select(crate::schema::users::disabled_at)
                .first(c)
                .optional()?;
            if disabled_at != Some(None) {
                return Ok(None);
            }
            match standing(
                c,
                &token,
                &family,
                &successor_hash,
                grace_secs,
                idle_secs,
                now,
            )? {
                Standing::Fresh | Standing::GraceReuse => Ok(Some((token, family.into_api()?))),
                _ => Ok(None),
            }
        })
        .await
    }

    /// The whole refresh grant in one transaction (one connection, one round of
    /// thread hand-offs): the token must belong to `client_id`'s live family, the
    /// asked scope must be within the granted one, and the user must be enabled,
    /// all checked before anything changes; then the token rotates as in
    /// [`Store::rotate_refresh_token`], and the user and their linked connector ids
    /// come back for the new tokens. `successor_hash` as for `rotate_refresh_token`.
    #[allow(clippy::too_many_arguments)]
    pub async fn refresh_grant(
        &self,
        token_hash: &str,
        successor_hash: &str,
        client_id: &str,
        requested_scope: Option<Vec<String>>,
        grace_secs: i64,
        idle_secs: i64,
        now: i64,
    ) -> Result<RefreshOutcome, StoreError> {
        let job = RefreshJob {
            token_hash: token_hash.to_owned(),
            successor_hash: successor_hash.to_owned(),
            client_id: client_id.to_owned(),
            requested_scope,
            grace_secs,
            idle_secs,
            now,
        };
        self.refresh_batch
            .call(
                self,
                job,
                self.wait + self.query + std::time::Duration::from_secs(1),
            )
            .await
    }
}

/// One refresh grant, as [`Store::refresh_grant`] was asked for it.
pub(crate) struct RefreshJob {
    token_hash: String,
    successor_hash: String,
    client_id: String,
    requested_scope: Option<Vec<String>>,
    grace_secs: i64,
    idle_secs: i64,
    now: i64,
}

impl RefreshJob {
    pub(crate) fn key(&self) -> &str {
        &self.token_hash
    }
}

/// The queue of refresh grants: group commit (crate::batch). SQLite has one writer;
/// on Postgres a few batches run at once, each on its own connection.
pub(crate) fn refresh_batch(
    backend: crate::pool::Backend,
) -> std::sync::Arc<crate::batch::Batch<RefreshJob, RefreshOutcome>> {
    let running = match backend {
        crate::pool::Backend::Sqlite => 1,
        crate::pool::Backend::Postgres => 4,
    };
    crate::batch::Batch::new("refresh_grant", running, 64, refresh_in, RefreshJob::key)
}

/// [`Store::refresh_grant`] inside an open transaction.
fn refresh_in(c: &mut AnyConnection, job: &RefreshJob) -> Result<RefreshOutcome, StoreError> {
    let RefreshJob {
        token_hash,
        successor_hash,
        client_id,
        requested_scope,
        grace_secs,
        idle_secs,
        now,
    } = job;
    let (grace_secs, idle_secs, now) = (*grace_secs, *idle_secs, *now);
    // The token, its family and its user in one query; when one of them
    // is missing, read them one by one to say which.
    let (token, family, user, linked) = match token_family_user(c, token_hash)? {
        Some(Holder {
            token,
            family,
            user,
            linked,
        }) => (token, family, Some(user), linked),
        None => {
            let Some(token) = find_token(c, token_hash)? else {
                return Ok(RefreshOutcome::Unknown);
            };
            let Some(family) = find_family(c, &token.family_id)? else {
                return Ok(RefreshOutcome::Unknown);
            };
            let user = crate::schema::users::table
                .find(&family.user_id)
                .select(crate::models::User::as_select())
                .first(c)
                .optional()?;
            // (Only a concurrent write gets here with a user.)
            let linked = match &user {
                Some(user) => linked_connectors(c, &user.id)?,
                None => Vec::new(),
            };
            (token, family, user, linked)
        }
    };
    if family.client_id != *client_id {
        return Ok(RefreshOutcome::WrongClient);
    }
    if let Some(asked) = &requested_scope {
        let granted: Vec<&str> = family.scope.split(' ').collect();
        if let Some(extra) = asked.iter().find(|s| !granted.contains(&s.as_str())) {
            return Ok(RefreshOutcome::ScopeWidened(extra.clone()));
        }
    }
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        return Ok(RefreshOutcome::UserDisabled);
    };
    // The common case, a fresh token of a live family, without re-reading
    // what was just read: mark it used and record its successor (only if it
    // still is fresh and its family still live), add the successor, touch
    // the family.
    let live = family.revoked_at.is_none()
        && now < family.absolute_expires_at
        && family.last_used_at.saturating_add(idle_secs) >= now;
    if token.used_at.is_none()
        && live
        && rotate_fresh(c, token_hash, &family.id, successor_hash, idle_secs, now)?
    {
        let mut family = family.into_api()?;
        family.last_used_at = now;
        return Ok(RefreshOutcome::Rotated(RefreshGrant {
            family,
            user,
            linked_connectors: linked,
        }));
    }
    // Everything else (grace reuse, replay, expiry, a lost race): the general rule.
    match rotate_in(c, token_hash, successor_hash, grace_secs, idle_secs, now)? {
        Rotation::Rotated(family) => Ok(RefreshOutcome::Rotated(RefreshGrant {
            family,
            user,
            linked_connectors: linked,
        })),
        Rotation::Replayed(f) => Ok(RefreshOutcome::Replayed(f)),
        Rotation::Revoked(f) => Ok(RefreshOutcome::Revoked(f)),
        Rotation::Expired(f) => Ok(RefreshOutcome::Expired(f)),
        Rotation::OtherSuccessor(f) => Ok(RefreshOutcome::OtherSuccessor(f)),
        Rotation::Unknown => Ok(RefreshOutcome::Unknown),
    }
}

/// A successful refresh grant: the family after rotation, its user, and the
/// connector ids the user has identities with.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshGrant {
    pub family: FamilyRow,
    pub user: crate::models::User,
    pub linked_connectors: Vec<String>,
}

/// What [`Store::refresh_grant`] decided. Only `Rotated` and `Replayed` changed anything.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// Rotated: on first use the successor was stored; on a reuse within the grace
    /// window the same successor stands (nothing was added).
    Rotated(RefreshGrant),
    /// Presented after the grace window, or within it once its successor was used:
    /// the family is now revoked.
    Replayed(FamilyRow),
    Revoked(FamilyRow),
    Expired(FamilyRow),
    /// Reused within the grace window with another successor than the recorded one:
    /// nothing changed (see [`Rotation::OtherSuccessor`]).
    OtherSuccessor(FamilyRow),
    /// The token belongs to another client: nothing changed.
    WrongClient,
    /// The asked scope names this scope, which was not granted: nothing changed.
    ScopeWidened(String),
    /// The user is disabled or gone: nothing changed.
    UserDisabled,
    Unknown,
}

/// A refresh token with its family, the family's user and the connector ids the
/// user has identities with (sorted, once each), as one query reads them.
struct Holder {
    token: RefreshTokenRow,
    family: FamilyRecord,
    user: crate::models::User,
    linked: Vec<String>,
}

/// The [`Holder`] of a refresh token (`None` when the token, its family or its user
/// is missing).
fn token_family_user(
    c: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<Holder>, StoreError> {
    use crate::schema::{identities, users};
    // One row per identity of the user (one with no connector when there is none).
    type Row = (
        RefreshTokenRow,
        FamilyRecord,
        crate::models::User,
        Option<String>,
    );
    let rows: Vec<Row> = refresh_tokens::table
        .inner_join(
            refresh_token_families::table.inner_join(users::table.left_join(identities::table)),
        )
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((
            RefreshTokenRow::as_select(),
            FamilyRecord::as_select(),
            crate::models::User::as_select(),
            identities::connector_id.nullable(),
        ))
        .load(c)?;
    let mut linked: Vec<String> = Vec::with_capacity(rows.len());
    let mut first = None;
    for (token, family, user, connector) in rows {
        linked.extend(connector);
        if first.is_none() {
            first = Some((token, family, user));
        }
    }
    linked.sort();
    linked.dedup();
    Ok(first.map(|(token, family, user)| Holder {
        token,
        family,
        user,
        linked,
    }))
}

/// The rotation of a fresh token whose family this transaction has just read and
/// found live: mark the token used with its successor (only if it still is unused
/// and, where that can have changed, its family still live), add the successor,
/// touch the family. `false`, with nothing changed, when the mark did not apply.
///
/// - SQLite: three plain statements. The read already holds: the transaction has
///   the one writer connection, and a write by anyone else since would fail this
///   one with `SQLITE_BUSY_SNAPSHOT`, so the mark need not check the family again
///   (diesel prepares every UPDATE afresh, and SQLite would plan that subquery on
///   every call).
/// - Postgres: one statement (data-modifying CTEs), one round trip instead of
///   three. Another transaction may revoke the family between the read and this
///   statement, so the mark checks it as [`mark_used_if_live`] does.
fn rotate_fresh(
    c: &mut AnyConnection,
    token_hash: &str,
    family_id: &str,
    successor_hash: &str,
    idle_secs: i64,
    now: i64,
) -> Result<bool, StoreError> {
    use diesel::sql_types::{BigInt, Text};
    match c {
        AnyConnection::Postgresql(pg) => {
            let touched = crate::statement::statement(
                "WITH marked AS ( \
                   UPDATE refresh_tokens SET used_at = ?, successor_hash = ? \
                   WHERE token_hash = ? AND used_at IS NULL AND family_id IN ( \
                     SELECT id FROM refresh_token_families WHERE id = ? \
                     AND revoked_at IS NULL AND absolute_expires_at > ? AND last_used_at >= ?) \
                   RETURNING family_id), \
                 added AS ( \
                   INSERT INTO refresh_tokens (token_hash, family_id, created_at) \
                   SELECT ?, family_id, ? FROM marked RETURNING family_id) \
                 UPDATE refresh_token_families SET last_used_at = ? \
                 WHERE id IN (SELECT family_id FROM added)",
            )
            .bind::<BigInt, _>(now)
            .bind::<Text, _>(successor_hash)
            .bind::<Text, _>(token_hash)
            .bind::<Text, _>(family_id)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now - idle_secs)
            .bind::<Text, _>(successor_hash)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now)
            .execute(pg)?;
            Ok(touched == 1)
        }
        AnyConnection::Sqlite(_) => {
            let marked = crate::statement::statement(
                "UPDATE refresh_tokens SET used_at = ?, successor_hash = ? \
                 WHERE token_hash = ? AND used_at IS NULL",
            )
            .bind::<BigInt, _>(now)
            .bind::<Text, _>(successor_hash)
            .bind::<Text, _>(token_hash)
            .execute(c)?;
            if marked != 1 {
                return Ok(false);
            }
            insert_token(c, successor_hash.to_owned(), family_id, now)?;
            crate::statement::statement(
                "UPDATE refresh_token_families SET last_used_at = ? WHERE id = ?",
            )
            .bind::<BigInt, _>(now)
            .bind::<Text, _>(family_id)
            .execute(c)?;
            Ok(true)
        }
    }
}

/// Marks a refresh token used and records its successor, in one statement, only
/// if it is still unused and its family still live (not revoked, within its
/// absolute and idle lifetimes): under concurrency exactly one caller gets
/// `true`, so a token gets one successor at most.
fn mark_used_if_live(
    c: &mut AnyConnection,
    token_hash: &str,
    family_id: &str,
    successor_hash: &str,
    idle_secs: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let live_family = refresh_token_families::table
        .filter(refresh_token_families::id.eq(family_id))
        .filter(refresh_token_families::revoked_at.is_null())
        .filter(refresh_token_families::absolute_expires_at.gt(now))
        .filter(refresh_token_families::last_used_at.ge(now - idle_secs))
        .select(refresh_token_families::id);
    Ok(diesel::update(
        refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::family_id.eq_any(live_family)),
    )
    .set((
        refresh_tokens::used_at.eq(now),
        refresh_tokens::successor_hash.eq(successor_hash),
    ))
    .execute(c)?
        == 1)
}

/// The connector ids `user_id` has identities with, sorted, once each.
fn linked_connectors(c: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, StoreError> {
    let mut linked: Vec<String> = crate::schema::identities::table
        .filter(crate::schema::identities::user_id.eq(user_id))
        .select(crate::schema::identities::connector_id)
        .load(c)?;
    linked.sort();
    linked.dedup();
    Ok(linked)
}

/// Where a presented refresh token stands, by the rules of [`Store::rotate_refresh_token`].
enum Standing {
    Revoked,
    Expired,
    /// Unused, of a live family.
    Fresh,
    /// Used within the grace window; its recorded successor is the one asked for and is
    /// still unused.
    GraceReuse,
    /// Used within the grace window, but another successor was recorded (or none).
    OtherSuccessor,
    /// Used within the grace window, and its successor has been used too.
    ChainMovedOn,
    /// Used longer ago than the grace window.
    Replay,
}

/// Judges a token on its row, its family's and (for a reuse within the grace window)
/// its successor's. Used by rotation and by [`Store::refreshable`], so introspection
/// says what `/token` does.
fn standing(
    c: &mut AnyConnection,
    token: &RefreshTokenRow,
    family: &FamilyRecord,
    successor_hash: &str,
    grace_secs: i64,
    idle_secs: i64,
    now: i64,
) -> Result<Standing, StoreError> {
    if family.revoked_at.is_some() {
        return Ok(Standing::Revoked);
    }
    if now >= family.absolute_expires_at || family.last_used_at.saturating_add(idle_secs) < now {
        return Ok(Standing::Expired);
    }
    let Some(used_at) = token.used_at else {
        return Ok(Standing::Fresh);
    };
    if now.saturating_sub(used_at) > grace_secs {
        return Ok(Standing::Replay);
    }
    if token.successor_hash.as_deref() != Some(successor_hash) {
        return Ok(Standing::OtherSuccessor);
    }
    let successor_used: Option<Option<i64>> = refresh_tokens::table
        .find(successor_hash)
        .select(refresh_tokens::used_at)
        .first(c)
        .optional()?;
    Ok(match successor_used {
        Some(None) => Standing::GraceReuse,
        Some(Some(_)) => Standing::ChainMovedOn,
        // Recorded but gone (cannot happen while the family lives): give out nothing.
        None => Standing::OtherSuccessor,
    })
}

/// Rotation inside an open transaction (see [`Store::rotate_refresh_token`]).
fn rotate_in(
    c: &mut AnyConnection,
    token_hash: &str,
    successor_hash: &str,
    grace_secs: i64,
    idle_secs: i64,
    now: i64,
) -> Result<Rotation, StoreError> {
    // Mark the token used and record its successor if it is fresh and its family
    // is live. (The family is looked up first so the liveness check is a key
    // lookup, not a scan of every live family.)
    let Some(family_id) = refresh_tokens::table
        .find(&token_hash)
        .select(refresh_tokens::family_id)
        .first::<String>(c)
        .optional()?
    else {
        return Ok(Rotation::Unknown);
    };
    if mark_used_if_live(c, token_hash, &family_id, successor_hash, idle_secs, now)? {
        insert_token(c, successor_hash.to_owned(), &family_id, now)?;
        return Ok(Rotation::Rotated(touch_family(c, &family_id, now)?));
    }

    let Some(token) = find_token(c, token_hash)? else {
        return Ok(Rotation::Unknown);
    };
    let Some(family) = find_family(c, &token.family_id)? else {
        return Err(StoreError::Corrupt(format!(
            "refresh token refers to missing family {}",
            token.family_id
        )));
    };
    let moved_on = match standing(
        c,
        &token,
        &family,
        successor_hash,
        grace_secs,
        idle_secs,
        now,
    )? {
        Standing::Revoked => return Ok(Rotation::Revoked(family.into_api()?)),
        Standing::Expired => return Ok(Rotation::Expired(family.into_api()?)),
        // The same successor again, for a lost response or a parallel refresh.
        Standing::GraceReuse => return Ok(Rotation::Rotated(touch_family(c, &family.id, now)?)),
        Standing::OtherSuccessor => return Ok(Rotation::OtherSuccessor(family.into_api()?)),
        // The mark above has the same conditions as `Fresh`, under the row lock.
        Standing::Fresh => {
            return Err(StoreError::Corrupt(format!(
                "refresh token of live family {} is unused but could not be marked",
                family.id
            )))
        }
        Standing::ChainMovedOn => true,
        Standing::Replay => false,
    };
    // Two parties hold this grant (or a client lost track of it): end it, whoever
    // of them is the rightful one.
    tracing::warn!(
        family_id = %family.id,
        user_id = %family.user_id,
        client_id = %family.client_id,
        "{}",
        if moved_on {
            "refresh token reused within the grace window after its successor was used; revoking its family"
        } else {
            "refresh token replayed after the grace window; revoking its family"
        }
    );
    diesel::update(
        refresh_token_families::table
            .find(&family.id)
            .filter(refresh_token_families::revoked_at.is_null()),
    )
    .set(revocation(REPLAY_REVOKE_REASON, now))
    .execute(c)?;
    Ok(Rotation::Replayed(reload_family(c, &family.id)?))
}

/// Records use of the family now; the family as it is then.
fn touch_family(c: &mut AnyConnection, family_id: &str, now: i64) -> Result<FamilyRow, StoreError> {
    diesel::update(refresh_token_families::table.find(family_id))
        .set(refresh_token_families::last_used_at.eq(now))
        .execute(c)?;
    reload_family(c, family_id)
}

#[allow(clippy::type_complexity)]
fn revocation(
    reason: &str,
    now: i64,
) -> (
    diesel::dsl::Eq<refresh_token_families::revoked_at, Option<i64>>,
    diesel::dsl::Eq<refresh_token_families::revoked_reason, Option<String>>,
) {
    (
        refresh_token_families::revoked_at.eq(Some(now)),
        refresh_token_families::revoked_reason.eq(Some(reason.to_owned())),
    )
}

/// Marks the code used with `family` if it is unused; the winner inserts the
/// family and its first refresh token and reads the code's user. `read` is the
/// code as this transaction already read it, if it did (a winner need not read
/// it again).
fn redeem_in(
    c: &mut AnyConnection,
    code_hash: &str,
    family: &FamilyRecord,
    first_refresh_token_hash: Option<String>,
    now: i64,
    read: Option<CodeRow>,
) -> Result<Redeem, StoreError> {
    let won = crate::statement::statement(
        "UPDATE authorization_codes SET used_at = ?, family_id = ? \
         WHERE code_hash = ? AND used_at IS NULL",
    )
    .bind::<diesel::sql_types::BigInt, _>(now)
    .bind::<diesel::sql_types::Text, _>(&family.id)
    .bind::<diesel::sql_types::Text, _>(code_hash)
    .execute(c)?
        == 1;
    if won {
        diesel::insert_into(refresh_token_families::table)
            .values(family)
            .execute(c)?;
        if let Some(token_hash) = first_refresh_token_hash {
            insert_token(c, token_hash, &family.id, now)?;
        }
    }
    let row = match read.filter(|_| won) {
        Some(read) => CodeRow {
            used_at: Some(now),
            family_id: Some(family.id.clone()),
            ..read
        },
        // Another caller won (its family is the one to revoke), or not read yet.
        None => match find_code(c, code_hash)? {
            Some(row) => row.into_api()?,
            None => return Ok(Redeem::Unknown),
        },
    };
    if !won {
        return Ok(Redeem::AlreadyUsed(row));
    }
    let user = crate::schema::users::table
        .find(&row.user_id)
        .select(crate::models::User::as_select())
        .first(c)
        .optional()?;
    let linked_connectors = linked_connectors(c, &row.user_id)?;
    Ok(Redeem::Won(Box::new(crate::models::Redeemed {
        code: row,
        user,
        linked_connectors,
    })))
}

fn find_code(c: &mut AnyConnection, code_hash: &str) -> Result<Option<CodeRecord>, StoreError> {
    Ok(authorization_codes::table
        .find(code_hash)
        .select(CodeRecord::as_select())
        .first(c)
        .optional()?)
}

fn find_family(c: &mut AnyConnection, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
    Ok(refresh_token_families::table
        .find(id)
        .select(FamilyRecord::as_select())
        .first(c)
        .optional()?)
}

fn reload_family(c: &mut AnyConnection, id: &str) -> Result<FamilyRow, StoreError> {
    find_family(c, id)?
        .ok_or_else(|| StoreError::Corrupt(format!("family {id} vanished mid-transaction")))?
        .into_api()
}

fn find_token(
    c: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<RefreshTokenRow>, StoreError> {
    Ok(refresh_tokens::table
        .find(token_hash)
        .select(RefreshTokenRow::as_select())
        .first(c)
        .optional()?)
}

pub(crate) fn insert_token(
    c: &mut AnyConnection,
    token_hash: String,
    family_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    // Only the columns that have values: a row struct's `None` fields would make
    // diesel write DEFAULT, which it never caches the prepared statement for.
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::family_id.eq(family_id),
            refresh_tokens::created_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}
