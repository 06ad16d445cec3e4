//! Upstream app-level tokens (WeChat's `access_token` for an Official Account),
//! one row per key, shared by every broker instance: the (sealed) token, its
//! expiry, and a lease so that only one instance at a time fetches a new one.
//! The store keeps the token as the caller gives it (the server seals it).

use diesel::prelude::*;

use crate::error::StoreError;
use crate::schema::app_tokens;
use crate::store::Store;

/// A stored app token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTokenRow {
    pub token: Vec<u8>,
    pub expires_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = app_tokens)]
struct NewAppToken<'a> {
    app_key: &'a str,
    token: &'a [u8],
    expires_at: i64,
    lease_owner: Option<&'a str>,
    lease_until: Option<i64>,
    updated_at: i64,
}

impl Store {
    /// The token under `key` if one is stored and live at `now`.
    pub async fn get_app_token(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<AppTokenRow>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            let row: Option<(Vec<u8>, i64)> = app_tokens::table
                .find(&key)
                .filter(app_tokens::expires_at.gt(now))
                .select((app_tokens::token, app_tokens::expires_at))
                .first(c)
                .optional()?;
            Ok(row
                .filter(|(token, _)| !token.is_empty())
                .map(|(token, expires_at)| AppTokenRow { token, expires_at }))
        })
        .await
    }

    /// Takes the refresh lease on `key` for `holder` until `until`, unless another
    /// holder's lease is still running at `now`. True when `holder` holds it now.
    /// Atomic across instances: one conditional UPDATE decides.
    pub async fn lease_app_token(
        &self,
        key: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let holder = holder.to_owned();
        self.write(move |c| {
            let exists: i64 = app_tokens::table
                .filter(app_tokens::app_key.eq(&key))
                .count()
                .get_result(c)?;
            if exists == 0 {
                let inserted = diesel::insert_into(app_tokens::table)
                    .values(NewAppToken {
                        app_key: &key,
                        token: &[],
                        expires_at: 0,
                        lease_owner: Some(&holder),
                        lease_until: Some(until),
                        updated_at: now,
                    })
                    .execute(c);
                match inserted {
                    Ok(_) => return Ok(true),
                    // Another instance created the row first: compete for the lease below.
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let taken = diesel::update(
                app_tokens::table.find(&key).filter(
                    app_tokens::lease_until
                        .is_null()
                        .or(app_tokens::lease_until.le(now))
                        .or(app_tokens::lease_owner.eq(&holder)),
                ),
            )
            .set((
                app_tokens::lease_owner.eq(Some(&holder)),
                app_tokens::lease_until.eq(Some(until)),
            ))
            .execute(c)?;
            Ok(taken == 1)
        })
        .await
    }

    /// Stores a fresh token under `key` and releases `holder`'s lease.
    pub async fn put_app_token(
        &self,
        key: &str,
        holder: &str,
        token: Vec<u8>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        let holder = holder.to_owned();
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                let updated = diesel::update(app_tokens::table.find(&key))
                    .set((
                        app_tokens::token.eq(&token),
                        app_tokens::expires_at.eq(expires_at),
                        app_tokens::updated_at.eq(now),
                    ))
                    .execute(c)?;
                if updated == 0 {
                    diesel::insert_into(app_tokens::table)
                        .values(NewAppToken {
                            app_key: &key,
                            token: &token,
                            expires_at,
                            lease_owner: None,
                            lease_until: None,
                            updated_at: now,
                        })
                        .execute(c)?;
                }
                release(c, &key, &holder)
            })
        })
        .await
    }

    /// Releases `holder`'s lease on `key`, if it still holds it.
    pub async fn release_app_token_lease(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        let holder = holder.to_owned();
        self.write(move |c| release(c, &key, &holder)).await
    }

    /// Forgets the token under `key` if it is still exactly `token` (as stored); one
    /// that another instance has meanwhile replaced is kept. True when it was dropped.
    pub async fn invalidate_app_token(
        &self,
        key: &str,
        token: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                app_tokens::table
                    .find(&key)
                    .filter(app_tokens::token.eq(&token)),
            )
            .set(app_tokens::expires_at.eq(0))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }
}

fn release(c: &mut crate::pool::AnyConnection, key: &str, holder: &str) -> Result<(), StoreError> {
    diesel::update(
        app_tokens::table
            .find(key)
            .filter(app_tokens::lease_owner.eq(holder)),
    )
    .set((
        app_tokens::lease_owner.eq(None::<String>),
        app_tokens::lease_until.eq(None::<i64>),
    ))
    .execute(c)?;
    Ok(())
}
