//! Consent: the scopes a person allowed an app, remembered per account and app
//! (the union of every grant), and revoked with that app's grants.

use diesel::prelude::*;

use crate::admin::append;
use crate::error::StoreError;
use crate::models::AuditEvent;
use crate::schema::{consents, refresh_token_families};
use crate::store::Store;
use std::collections::BTreeSet;

/// What a person allowed one app: `scope` is the union of the scopes granted
/// so far, space-separated and sorted.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = consents)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
    pub updated_at: i64,
}

impl Consent {
    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Whether every scope in `scope` (space-separated) is granted.
    pub fn covers(&self, scope: &str) -> bool {
        let granted: BTreeSet<&str> = self.scopes().collect();
        scope.split_ascii_whitespace().all(|s| granted.contains(s))
    }
}

/// `a` and `b` (space-separated scopes) as one sorted, deduplicated list.
fn union(a: &str, b: &str) -> String {
    let all: BTreeSet<&str> = a
        .split_ascii_whitespace()
        .chain(b.split_ascii_whitespace())
        .collect();
    all.into_iter().collect::<Vec<_>>().join(" ")
}

pub(crate) fn find(
    c: &mut crate::pool::AnyConnection,
    user_id: &str,
    client_id: &str,
) -> QueryResult<Option<Consent>> {
    consents::table
        .find((user_id, client_id))
        .select(Consent::as_select())
        .first(c)
        .optional()
}

impl Store {
    /// What `user_id` allowed `client_id`, if anything.
    pub async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.read(move |c| Ok(find(c, &user_id, &client_id)?)).await
    }

    /// Every app `user_id` allowed, by client id.
    pub async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Ok(consents::table
                .filter(consents::user_id.eq(&user_id))
                .order(consents::client_id.asc())
                .select(Consent::as_select())
                .load(c)?)
        })
        .await
    }

    /// `user_id` allows `client_id` the scopes in `scope` (space-separated):
    /// added to what was granted before, with the audit event, in one
    /// transaction. Returns the consent as stored now.
    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
        audit: AuditEvent,
    ) -> Result<Consent, StoreError> {
        let (user_id, client_id, scope) =
            (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.write(move |conn| {
            let mut attempt = || {
                crate::call::transaction(conn, |c| {
                    let stored = match find(c, &user_id, &client_id)? {
                        Some(before) => {
                            let scope = union(&before.scope, &scope);
                            diesel::update(consents::table.find((&user_id, &client_id)))
                                .set((consents::scope.eq(&scope), consents::updated_at.eq(now)))
                                .execute(c)?;
                            Consent {
                                scope,
                                updated_at: now,
                                ..before
                            }
                        }
                        None => {
                            let row = Consent {
                                user_id: user_id.clone(),
                                client_id: client_id.clone(),
                                scope: union(&scope, ""),
                                granted_at: now,
                                updated_at: now,
                            };
                            diesel::insert_into(consents::table)
                                .values(&row)
                                .execute(c)?;
                            row
                        }
                    };
                    append(c, audit.clone())?;
                    Ok::<_, StoreError>(stored)
                })
            };
            // Two tabs allowing at once: the second finds the first's row.
            match attempt() {
                Err(e) if e.is_conflict() => attempt(),
                other => other,
            }
        })
        .await
    }

    /// `user_id` takes back what `client_id` was allowed: the consent is
    /// deleted and that app's live grants for this account are revoked (with
    /// `revoke_reason`), with the audit event `audit` makes of how many grants
    /// ended, in one transaction. `None` (nothing written) when there was no
    /// consent; else how many grants ended.
    pub async fn revoke_consent<F>(
        &self,
        user_id: &str,
        client_id: &str,
        revoke_reason: &str,
        now: i64,
        audit: F,
    ) -> Result<Option<u64>, StoreError>
    where
        F: FnOnce(u64) -> AuditEvent + Send + 'static,
    {
        let (user_id, client_id, reason) = (
            user_id.to_owned(),
            client_id.to_owned(),
            revoke_reason.to_owned(),
        );
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                if diesel::delete(consents::table.find((&user_id, &client_id))).execute(c)? == 0 {
                    return Ok(None);
                }
                let grants = diesel::update(
                    refresh_token_families::table
                        .filter(refresh_token_families::user_id.eq(&user_id))
                        .filter(refresh_token_families::client_id.eq(&client_id))
                        .filter(refresh_token_families::revoked_at.is_null()),
                )
                .set((
                    refresh_token_families::revoked_at.eq(Some(now)),
                    refresh_token_families::revoked_reason.eq(Some(&reason)),
                ))
                .execute(c)?;
                append(c, audit(grants as u64))?;
                Ok(Some(grants as u64))
            })
        })
        .await
    }
}

/// Every consent given to `client_id` goes with it (the client is removed).
pub(crate) fn delete_for_client(
    c: &mut crate::pool::AnyConnection,
    client_id: &str,
) -> QueryResult<usize> {
    diesel::delete(consents::table.filter(consents::client_id.eq(client_id))).execute(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_unioned_sorted_and_covered_by_subsets() {
        assert_eq!(
            union("openid profile", "email openid"),
            "email openid profile"
        );
        assert_eq!(union("  profile openid ", ""), "openid profile");
        let c = Consent {
            user_id: "u".into(),
            client_id: "c".into(),
            scope: "email openid profile".into(),
            granted_at: 0,
            updated_at: 0,
        };
        assert!(c.covers("openid"));
        assert!(c.covers("profile openid"));
        assert!(c.covers(""));
        assert!(!c.covers("openid phone"));
    }
}
