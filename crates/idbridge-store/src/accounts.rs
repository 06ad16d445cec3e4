//! Users, their upstream identities and link keys, and the login resolution that ties a
//! fresh upstream identity to a broker account.

use diesel::prelude::*;

use crate::error::{to_json_text, StoreError};
use crate::models::{FirstLogin, Identity, IdentityRecord, LoginResolution, NewLogin, User};
use crate::pool::AnyConnection;
use crate::schema::{identities, link_keys, users};
use crate::store::Store;

diesel::define_sql_function! {
    /// SQL `lower()`, so name search folds case the same way on both backends.
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Profile fields copied from a login onto the user; `None` fields are left alone.
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserProfileChange<'a> {
    updated_at: i64,
    name: Option<&'a str>,
    picture: Option<&'a str>,
    locale: Option<&'a str>,
}

/// What a repeated login updates on a known identity; `None` fields are left alone.
#[derive(AsChangeset)]
#[diesel(table_name = identities)]
struct IdentityLoginChange<'a> {
    profile: &'a str,
    last_login_at: i64,
    upstream_tokens: Option<&'a [u8]>,
    link_scope: Option<&'a str>,
    link_key: Option<&'a str>,
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
                conn.transaction(|c| resolve_once(c, &login, &profile, policy, &new_user_id, now))
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

    /// Unlinks an identity (its user and link keys stay); false when it did not exist.
    pub async fn delete_identity(
        &self,
        connector_id: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        let key = (connector_id.to_owned(), subject.to_owned());
        self.write(move |c| {
            let n = diesel::delete(identities::table.find((&key.0, &key.1))).execute(c)?;
            Ok(n == 1)
        })
        .await
    }
}

/// A login transaction that lost a race (a unique link key or identity inserted
/// by a concurrent login) runs once more and then finds what the winner wrote.
fn retry_once_on_conflict<T>(
    mut attempt: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match attempt() {
        Err(StoreError::Conflict(msg)) => {
            tracing::debug!(%msg, "concurrent login wrote first; resolving again");
            attempt()
        }
        other => other,
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

fn resolve_once(
    c: &mut AnyConnection,
    login: &NewLogin,
    profile: &str,
    policy: FirstLogin,
    new_user_id: &str,
    now: i64,
) -> Result<LoginResolution, StoreError> {
    // (1) A known identity.
    if let Some(identity) = find_identity(c, &login.connector_id, &login.subject)? {
        let user_id = identity.user_id;
        let new_link = match (&login.link, &identity.link_key) {
            (Some((scope, key)), None) => Some((scope.as_str(), key.as_str())),
            _ => None,
        };
        diesel::update(identities::table.find((&login.connector_id, &login.subject)))
            .set(IdentityLoginChange {
                profile,
                last_login_at: now,
                upstream_tokens: login.upstream_tokens.as_deref(),
                link_scope: new_link.map(|(s, _)| s),
                link_key: new_link.map(|(_, k)| k),
            })
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
        diesel::update(users::table.find(&user_id))
            .set(UserProfileChange {
                updated_at: now,
                name: login.name.as_deref(),
                picture: login.picture.as_deref(),
                locale: login.locale.as_deref(),
            })
            .execute(c)?;
        return Ok(LoginResolution::Existing(load_user(c, &user_id)?));
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
            return Ok(LoginResolution::Linked(load_user(c, &user_id)?));
        }
    }

    // (3) Nothing matched: the connector's policy decides.
    match policy {
        FirstLogin::Refuse => Ok(LoginResolution::NotLinked),
        FirstLogin::Create => {
            let user = User {
                id: new_user_id.to_owned(),
                created_at: now,
                updated_at: now,
                disabled_at: None,
                name: login.name.clone(),
                picture: login.picture.clone(),
                locale: login.locale.clone(),
            };
            diesel::insert_into(users::table).values(&user).execute(c)?;
            insert_identity(c, login, profile, &user.id, now)?;
            if let Some((scope, key)) = &login.link {
                diesel::insert_into(link_keys::table)
                    .values(NewLinkKey {
                        link_scope: scope,
                        link_key: key,
                        user_id: &user.id,
                        created_at: now,
                    })
                    .execute(c)?;
            }
            Ok(LoginResolution::Created(user))
        }
    }
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

/// Everything a successful upstream sign-in writes, for [`Store::complete_login`].
/// The `user_id` fields of `session`, `code` and `audit` are filled in with the
/// resolved account.
#[derive(Debug, Clone)]
pub struct CompleteLogin {
    pub login: NewLogin,
    pub policy: FirstLogin,
    pub new_user_id: String,
    pub session: crate::models::SessionRow,
    pub code: crate::models::CodeRow,
    pub audit: crate::models::AuditEvent,
    /// The authorization request this sign-in answers (deleted: it is used up).
    pub auth_request_id: String,
    /// The upstream flow, and what a repeated callback for it should do.
    pub flow_state: String,
    pub flow_outcome: serde_json::Value,
}

/// What [`Store::complete_login`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginCompletion {
    /// Signed in: the session, code, audit event and flow outcome are written.
    SignedIn {
        user: User,
        resolution: LoginResolution,
    },
    /// No account and the policy refused to create one: nothing written.
    NotLinked,
    /// The account is disabled: only the identity's profile refresh is written.
    Disabled(User),
}

impl Store {
    /// Finish an upstream sign-in in one transaction: resolve the account (as
    /// [`Store::resolve_login`]), then open the SSO session, store the app's code,
    /// append the audit event, use up the authorization request and record the
    /// flow's outcome. One trip to the (single, on SQLite) writer instead of six.
    pub async fn complete_login(
        &self,
        done: CompleteLogin,
        now: i64,
    ) -> Result<LoginCompletion, StoreError> {
        let profile = to_json_text(&done.login.profile)?;
        let outcome = to_json_text(&done.flow_outcome)?;
        self.write(move |conn| {
            let attempt = || {
                conn.transaction(|c| {
                    let resolution = resolve_once(
                        c,
                        &done.login,
                        &profile,
                        done.policy,
                        &done.new_user_id,
                        now,
                    )?;
                    let user = match &resolution {
                        LoginResolution::NotLinked => return Ok(LoginCompletion::NotLinked),
                        LoginResolution::Existing(u)
                        | LoginResolution::Linked(u)
                        | LoginResolution::Created(u) => u.clone(),
                    };
                    if user.disabled_at.is_some() {
                        return Ok(LoginCompletion::Disabled(user));
                    }
                    let mut session = done.session.clone();
                    session.user_id = user.id.clone();
                    diesel::insert_into(crate::schema::sso_sessions::table)
                        .values(session)
                        .execute(c)?;
                    let mut code = done.code.clone();
                    code.user_id = user.id.clone();
                    diesel::insert_into(crate::schema::authorization_codes::table)
                        .values(crate::models::CodeRecord::from_api(code)?)
                        .execute(c)?;
                    let mut audit = done.audit.clone();
                    audit.user_id = Some(user.id.clone());
                    diesel::insert_into(crate::schema::audit_log::table)
                        .values(crate::models::NewAuditRecord::from_api(audit)?)
                        .execute(c)?;
                    diesel::delete(crate::schema::auth_requests::table.find(&done.auth_request_id))
                        .execute(c)?;
                    diesel::update(crate::schema::upstream_flows::table.find(&done.flow_state))
                        .set(crate::schema::upstream_flows::outcome.eq(Some(outcome.clone())))
                        .execute(c)?;
                    Ok(LoginCompletion::SignedIn { user, resolution })
                })
            };
            retry_once_on_conflict(attempt)
        })
        .await
    }
}
