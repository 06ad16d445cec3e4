//! Single-sign-on sessions at the broker.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::{SessionRow, User};
use crate::schema::{sso_sessions, users};
use crate::store::Store;

impl Store {
    /// `Conflict` when the id is taken.
    pub async fn insert_session(&self, s: SessionRow) -> Result<(), StoreError> {
        self.write(move |c| {
            diesel::insert_into(sso_sessions::table)
                .values(s)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// The session as stored, ended or expired or not (the caller decides).
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(sso_sessions::table
                .find(&id)
                .select(SessionRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// The session as stored (ended or expired or not) with its account, in one
    /// read; `None` when either is gone.
    pub async fn get_session_and_user(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRow, User)>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(sso_sessions::table
                .inner_join(users::table)
                .filter(sso_sessions::id.eq(&id))
                .select((SessionRow::as_select(), User::as_select()))
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Sets `last_seen_at` on a session that has not ended; otherwise does nothing.
    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            diesel::update(
                sso_sessions::table
                    .find(&id)
                    .filter(sso_sessions::ended_at.is_null()),
            )
            .set(sso_sessions::last_seen_at.eq(now))
            .execute(c)?;
            Ok(())
        })
        .await
    }

    /// The person proved again who they are (a step-up): the session's
    /// `auth_time` becomes `now`. False when the session has ended.
    pub async fn reauthenticate_session(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                sso_sessions::table
                    .find(&id)
                    .filter(sso_sessions::ended_at.is_null()),
            )
            .set((
                sso_sessions::auth_time.eq(now),
                sso_sessions::last_seen_at.eq(now),
            ))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Ends a session; true if it was still open.
    pub async fn end_session(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                sso_sessions::table
                    .find(&id)
                    .filter(sso_sessions::ended_at.is_null()),
            )
            .set(sso_sessions::ended_at.eq(now))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Ends every open session of a user; returns how many were open.
    pub async fn end_sessions_for_user(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                sso_sessions::table
                    .filter(sso_sessions::user_id.eq(&user_id))
                    .filter(sso_sessions::ended_at.is_null()),
            )
            .set(sso_sessions::ended_at.eq(now))
            .execute(c)?;
            Ok(n as u64)
        })
        .await
    }
}
