//! Users, their upstream identities and link keys, and the login resolution that ties a
//! fresh upstream identity to a broker account.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};

use crate::emails;
use crate::error::{to_json_text, StoreError};
use crate::models::{
    EmailDecision, FirstLogin, Identity, IdentityRecord, LoginResolution, NewLogin, User,
};
use crate::pool::AnyConnection;
use crate::schema::{identities, link_keys, users};
use crate::statement::statement;
use crate::store::Store;

diesel::define_sql_function! {
    /// SQL `lower()`, so name search folds case the same way on both backends.
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

#[derive(Insertable)]
#[diesel(table_name = link_keys)]
struct NewLinkKey<'a> {
    link_scope: &'a str,
    link_key: &'a str,
    user_id: &'a str,
    created_at: i64,
}

impl Store {
    /// Matches a login to a user, in one transaction: by identity, then by link key, then by
    /// `policy`. Retried once when a concurrent login created the same rows first, so two
    /// simultaneous first logins with one link key end with one user.
    pub async fn resolve_login(
        &self,
        login: NewLogin,
        policy: FirstLogin,
        new_user_id: String,
        now: i64,
    ) -> Result<LoginResolution, StoreError> {
        let profile = to_json_text(&login.profile)?;
        self.write(move |conn| {
            let attempt = || {
                crate::call::transaction(conn, |c| {
                    resolve_once(c, &login, &profile, &policy, &new_user_id, now).map(|(r, _)| r)
                })
            };
            retry_once_on_conflict(attempt)
        })
        .await
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(users::table
                .find(&id)
                .select(User::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Users whose id equals `query` or whose name contains it (case folded by the
    /// database's `lower()`), oldest first. An empty query lists every user.
    pub async fn find_users(&self, query: &str, limit: i64) -> Result<Vec<User>, StoreError> {
        let query = query.to_owned();
        let limit = limit.max(0);
        self.read(move |c| {
            let base = users::table
                .select(User::as_select())
                .order((users::created_at.asc(), users::id.asc()))
                .limit(limit);
            if query.is_empty() {
                return Ok(base.load(c)?);
            }
            let pattern = format!("%{}%", escape_like(&query));
            Ok(base
                .filter(
                    users::id
                        .eq(&query)
                        .or(lower(users::name).like(lower(Some(pattern))).escape('\\')),
                )
                .load(c)?)
        })
        .await
    }

    /// Sets or clears `disabled_at`; false when no such user.
    pub async fn set_user_disabled(
        &self,
        id: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = diesel::update(users::table.find(&id))
                .set(users::disabled_at.eq(disabled_at))
                .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// A user's identities, oldest first.
    pub async fn list_identities(&self, user_id: &str) -> Result<Vec<Identity>, StoreError> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            identities::table
                .filter(identities::user_id.eq(&user_id))
                .order((
                    identities::created_at.asc(),
                    identities::connector_id.asc(),
                    identities::subject.asc(),
                ))
                .select(IdentityRecord::as_select())
                .load(c)?
                .into_iter()
                .map(IdentityRecord::into_api)
                .collect()
        })
        .await
    }

    pub async fn get_identity(
        &self,
        connector_id: &str,
        subject: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let key = (connector_id.to_owned(), subject.to_owned());
        self.read(move |c| {
            find_identity(c, &key.0, &key.1)?
                .map(IdentityRecord::into_api)
                .transpose()
        })
        .await
    }

    /// Replaces the sealed upstream tokens of an identity after a re-check
    /// upstream renewed them, only while it is still `user_id`'s; false when it
    /// is not (unlinked, or linked to someone else since).
    pub async fn set_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        user_id: &str,
        upstream_tokens: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = (
            connector_id.to_owned(),
            subject.to_owned(),
            user_id.to_owned(),
        );
        self.write(move |c| {
            let n = diesel::update(
                identities::table
                    .find((&key.0, &key.1))
                    .filter(identities::user_id.eq(&key.2)),
            )
            .set(identities::upstream_tokens.eq(Some(upstream_tokens)))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Unlinks an identity (its user and link keys stay); false when it did not exist.
    pub async fn delete_identity(
        &self,
        connector_id: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        let key = (connector_id.to_owned(), subject.to_owned());
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                emails::forget_identity(c, &key.0, &key.1)?;
                let n = diesel::delete(identities::table.find((&key.0, &key.1))).execute(c)?;
                Ok(n == 1)
            })
        })
        .await
    }
}

/// A login transaction that lost a race (a unique link key or identity inserted
/// by a concurrent login) runs once more and then finds what the winner wrote.
pub(crate) fn retry_once_on_conflict<T, E: From<StoreError> + AsConflict>(
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    match attempt() {
        Err(e) if e.as_conflict().is_some() => {
            tracing::debug!(
                msg = e.as_conflict().unwrap_or_default(),
                "concurrent login wrote first; resolving again"
            );
            attempt()
        }
        other => other,
    }
}

/// A unique-key violation's message, if that is what this error is.
pub(crate) trait AsConflict {
    fn as_conflict(&self) -> Option<&str>;
}

impl AsConflict for StoreError {
    fn as_conflict(&self) -> Option<&str> {
        match self {
            StoreError::Conflict(msg) => Some(msg),
            _ => None,
        }
    }
}

fn find_identity(
    c: &mut AnyConnection,
    connector_id: &str,
    subject: &str,
) -> Result<Option<IdentityRecord>, StoreError> {
    Ok(identities::table
        .find((connector_id, subject))
        .select(IdentityRecord::as_select())
        .first(c)
        .optional()?)
}

/// Records `phone` as `user_id`'s verified number, in the caller's transaction,
/// unless another user has it.
pub(crate) fn set_phone(
    c: &mut AnyConnection,
    user_id: &str,
    phone: &str,
    now: i64,
) -> Result<PhoneOutcome, StoreError> {
    let owner: Option<String> = users::table
        .filter(users::phone_number.eq(phone))
        .select(users::id)
        .first(c)
        .optional()?;
    if let Some(owner) = owner.filter(|o| o != user_id) {
        return Ok(PhoneOutcome::TakenBy(owner));
    }
    let n = diesel::update(users::table.find(user_id))
        .set((
            users::phone_number.eq(Some(phone)),
            users::phone_verified_at.eq(Some(now)),
            users::updated_at.eq(now),
        ))
        .execute(c)?;
    if n == 0 {
        return Ok(PhoneOutcome::NoSuchUser);
    }
    Ok(PhoneOutcome::Set(load_user(c, user_id)?))
}

fn load_user(c: &mut AnyConnection, id: &str) -> Result<User, StoreError> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("user {id} referenced but missing")))
}

fn insert_identity(
    c: &mut AnyConnection,
    login: &NewLogin,
    profile: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let (link_scope, link_key) = match &login.link {
        Some((s, k)) => (Some(s.clone()), Some(k.clone())),
        None => (None, None),
    };
    diesel::insert_into(identities::table)
        .values(IdentityRecord {
            connector_id: login.connector_id.clone(),
            subject: login.subject.clone(),
            user_id: user_id.to_owned(),
            link_scope,
            link_key,
            profile: profile.to_owned(),
            upstream_tokens: login.upstream_tokens.clone(),
            created_at: now,
            last_login_at: now,
        })
        .execute(c)?;
    Ok(())
}

/// How a login transaction resolved, and what the email rule decided on the way
/// (for the audit log).
type Resolved = (LoginResolution, Option<EmailDecision>);

pub(crate) fn resolve_once(
    c: &mut AnyConnection,
    login: &NewLogin,
    profile: &str,
    policy: &FirstLogin,
    new_user_id: &str,
    now: i64,
) -> Result<Resolved, StoreError> {
    // (1) A known identity.
    if let Some(identity) = find_identity(c, &login.connector_id, &login.subject)? {
        let user_id = identity.user_id;
        let new_link = match (&login.link, &identity.link_key) {
            (Some((scope, key)), None) => Some((scope.as_str(), key.as_str())),
            _ => None,
        };
        // What a repeated login updates on a known identity; a NULL leaves the field alone.
        statement(
            "UPDATE identities SET profile = ?, last_login_at = ?, \
             upstream_tokens = COALESCE(?, upstream_tokens), \
             link_scope = COALESCE(?, link_scope), link_key = COALESCE(?, link_key) \
             WHERE connector_id = ? AND subject = ?",
        )
        .bind::<Text, _>(profile)
        .bind::<BigInt, _>(now)
        .bind::<Nullable<Binary>, _>(login.upstream_tokens.as_deref())
        .bind::<Nullable<Text>, _>(new_link.map(|(s, _)| s))
        .bind::<Nullable<Text>, _>(new_link.map(|(_, k)| k))
        .bind::<Text, _>(&login.connector_id)
        .bind::<Text, _>(&login.subject)
        .execute(c)?;
        if let Some((scope, key)) = &login.link {
            let owner: Option<String> = link_keys::table
                .find((scope, key))
                .select(link_keys::user_id)
                .first(c)
                .optional()?;
            match owner {
                None => {
                    diesel::insert_into(link_keys::table)
                        .values(NewLinkKey {
                            link_scope: scope,
                            link_key: key,
                            user_id: &user_id,
                            created_at: now,
                        })
                        .execute(c)?;
                }
                Some(other) if other != user_id => tracing::warn!(
                    connector_id = %login.connector_id,
                    user_id = %user_id,
                    link_owner = %other,
                    link_scope = %scope,
                    "link key already belongs to another user; keeping the identity on its user"
                ),
                Some(_) => {}
            }
        }
        // The profile fields the login brought; a NULL leaves the field alone.
        statement(
            "UPDATE users SET updated_at = ?, name = COALESCE(?, name), \
             picture = COALESCE(?, picture), locale = COALESCE(?, locale) WHERE id = ?",
        )
        .bind::<BigInt, _>(now)
        .bind::<Nullable<Text>, _>(login.name.as_deref())
        .bind::<Nullable<Text>, _>(login.picture.as_deref())
        .bind::<Nullable<Text>, _>(login.locale.as_deref())
        .bind::<Text, _>(&user_id)
        .execute(c)?;
        emails::follow(c, login, &user_id, false, now)?;
        return Ok((LoginResolution::Existing(load_user(c, &user_id)?), None));
    }

    // (2) A new identity whose link key is known: attach it to that user.
    if let Some((scope, key)) = &login.link {
        let owner: Option<String> = link_keys::table
            .find((scope, key))
            .select(link_keys::user_id)
            .first(c)
            .optional()?;
        if let Some(user_id) = owner {
            insert_identity(c, login, profile, &user_id, now)?;
            emails::follow(c, login, &user_id, false, now)?;
            return Ok((LoginResolution::Linked(load_user(c, &user_id)?), None));
        }
    }

    // (3) A new identity whose email is an account's link target (docs/accounts.md,
    // "Linking by email"). Not when the person just proved an account (`LinkTo`).
    let mut decision = None;
    if !matches!(policy, FirstLogin::LinkTo(_)) {
        if let (Some(email), Some(owner)) = (&login.email, emails::owner(c, login)?) {
            if email.links() {
                let user = load_user(c, &owner)?;
                // A disabled account gets no new sign-in methods (the caller refuses).
                if user.disabled_at.is_none() {
                    attach_new_identity(c, login, profile, &user.id, now)?;
                }
                return Ok((
                    LoginResolution::LinkedByEmail(user),
                    Some(EmailDecision::Linked { owner }),
                ));
            }
            if email.verified {
                return Ok((LoginResolution::EmailHeld { owner }, None));
            }
            // Unverified: anyone may claim the address upstream. The policy
            // applies as for anyone new, and nothing tells the person about it.
            decision = Some(EmailDecision::Unverified { owner });
        }
    }

    // (4) Nothing matched: the connector's policy decides.
    let resolution = match policy {
        FirstLogin::Refuse => LoginResolution::NotLinked,
        FirstLogin::LinkTo(user_id) => {
            let user = load_user(c, user_id)?;
            // A disabled account gets no new sign-in methods (the caller refuses).
            if user.disabled_at.is_none() {
                attach_new_identity(c, login, profile, &user.id, now)?;
                emails::follow(c, login, &user.id, false, now)?;
            }
            LoginResolution::Linked(user)
        }
        FirstLogin::Create => {
            let user = User {
                id: new_user_id.to_owned(),
                created_at: now,
                updated_at: now,
                disabled_at: None,
                name: login.name.clone(),
                picture: login.picture.clone(),
                locale: login.locale.clone(),
                phone_number: None,
                phone_verified_at: None,
            };
            diesel::insert_into(users::table).values(&user).execute(c)?;
            attach_new_identity(c, login, profile, &user.id, now)?;
            emails::follow(c, login, &user.id, true, now)?;
            LoginResolution::Created(user)
        }
    };
    Ok((resolution, decision))
}

/// A new identity (and its link key, if any) for `user_id`.
fn attach_new_identity(
    c: &mut AnyConnection,
    login: &NewLogin,
    profile: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    insert_identity(c, login, profile, user_id, now)?;
    if let Some((scope, key)) = &login.link {
        diesel::insert_into(link_keys::table)
            .values(NewLinkKey {
                link_scope: scope,
                link_key: key,
                user_id,
                created_at: now,
            })
            .execute(c)?;
    }
    Ok(())
}

/// Escapes LIKE wildcards so a search for `50%` means the text `50%`.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// What [`Store::link_identity`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkOutcome {
    /// The identity is now linked to the user.
    Linked,
    /// It already was.
    AlreadyLinked,
    /// It (or its link key) belongs to another user: nothing written.
    OtherUser(String),
}

/// What [`Store::set_user_phone`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneOutcome {
    Set(User),
    /// Another account has this verified number: nothing written.
    TakenBy(String),
    NoSuchUser,
}

impl Store {
    /// Links an identity to a signed-in user (the account page's "link another"),
    /// in one transaction. Never moves an identity or link key between users.
    pub async fn link_identity(
        &self,
        login: NewLogin,
        user_id: &str,
        now: i64,
    ) -> Result<LinkOutcome, StoreError> {
        let profile = to_json_text(&login.profile)?;
        let user_id = user_id.to_owned();
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                if let Some(known) = find_identity(c, &login.connector_id, &login.subject)? {
                    return Ok(if known.user_id == user_id {
                        LinkOutcome::AlreadyLinked
                    } else {
                        LinkOutcome::OtherUser(known.user_id)
                    });
                }
                if let Some((scope, key)) = &login.link {
                    let owner: Option<String> = link_keys::table
                        .find((scope, key))
                        .select(link_keys::user_id)
                        .first(c)
                        .optional()?;
                    match owner {
                        Some(owner) if owner != user_id => {
                            return Ok(LinkOutcome::OtherUser(owner))
                        }
                        Some(_) => insert_identity(c, &login, &profile, &user_id, now)?,
                        None => attach_new_identity(c, &login, &profile, &user_id, now)?,
                    }
                } else {
                    insert_identity(c, &login, &profile, &user_id, now)?;
                }
                emails::follow(c, &login, &user_id, false, now)?;
                Ok(LinkOutcome::Linked)
            })
        })
        .await
    }

    /// The enabled or disabled user whose verified phone number is `phone` (E.164).
    pub async fn find_user_by_phone(&self, phone: &str) -> Result<Option<User>, StoreError> {
        let phone = phone.to_owned();
        self.read(move |c| {
            Ok(users::table
                .filter(users::phone_number.eq(&phone))
                .select(User::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Records a verified phone number on a user; refused when another user has it.
    pub async fn set_user_phone(
        &self,
        user_id: &str,
        phone: &str,
        now: i64,
    ) -> Result<PhoneOutcome, StoreError> {
        let (user_id, phone) = (user_id.to_owned(), phone.to_owned());
        self.write(move |c| {
            let attempt = |c: &mut AnyConnection| {
                crate::call::transaction(c, |c| set_phone(c, &user_id, &phone, now))
            };
            match attempt(c) {
                // A concurrent verification of the same number won the unique index.
                Err(StoreError::Conflict(_)) => attempt(c),
                other => other,
            }
        })
        .await
    }
}
