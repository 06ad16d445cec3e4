//! Clients registered at run time through the admin API. Every change an
//! operator makes is one transaction with its audit event: the change and its
//! audit row are written together or not at all.

use diesel::prelude::*;

use crate::admin::append;
use crate::error::StoreError;
use crate::models::{AuditEvent, ClientRecord, ClientRow};
use crate::schema::{auth_requests, authorization_codes, clients, refresh_token_families};
use crate::store::Store;

/// The result of [`Store::replace_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientReplace {
    /// Written (with its audit event).
    Replaced,
    /// No such client (any more).
    Gone,
    /// Someone changed it after it was read: nothing written; read it again.
    ChangedMeanwhile,
}

/// What removing a client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRemoved {
    /// Its grants (refresh-token families) revoked: their refresh tokens and
    /// access tokens stop working.
    pub grants_revoked: u64,
    /// Its authorization codes not yet redeemed, and its sign-ins in progress.
    pub codes_removed: u64,
    pub requests_removed: u64,
}

impl Store {
    /// Stores a new client; `Conflict` when the id is taken.
    pub async fn insert_client(&self, c: ClientRow) -> Result<(), StoreError> {
        let rec = ClientRecord::from_api(c)?;
        self.write(move |conn| {
            diesel::insert_into(clients::table)
                .values(rec)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    pub async fn get_client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            clients::table
                .find(&id)
                .select(ClientRecord::as_select())
                .first(conn)
                .optional()?
                .map(ClientRecord::into_api)
                .transpose()
        })
        .await
    }

    /// Every stored client, by id.
    pub async fn list_clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.read(|conn| {
            clients::table
                .order(clients::id.asc())
                .select(ClientRecord::as_select())
                .load(conn)?
                .into_iter()
                .map(ClientRecord::into_api)
                .collect()
        })
        .await
    }

    /// False when no such client.
    pub async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                crate::consents::delete_for_client(c, &id)?;
                Ok::<_, StoreError>(diesel::delete(clients::table.find(&id)).execute(c)? == 1)
            })
        })
        .await
    }

    /// Stores a new client with its audit event; `Conflict` (and nothing
    /// written) when the id is taken.
    pub async fn create_client(&self, c: ClientRow, audit: AuditEvent) -> Result<(), StoreError> {
        let rec = ClientRecord::from_api(c)?;
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                diesel::insert_into(clients::table).values(rec).execute(c)?;
                append(c, audit)
            })
        })
        .await
    }

    /// Overwrites the client `c.id` with `c`, with its audit event, only if
    /// its `updated_at` is still `read_at` (the value the caller read it with);
    /// `c.updated_at` must be later than `read_at`.
    pub async fn replace_client(
        &self,
        c: ClientRow,
        read_at: i64,
        audit: AuditEvent,
    ) -> Result<ClientReplace, StoreError> {
        if c.updated_at <= read_at {
            return Err(StoreError::Database(format!(
                "replace_client: updated_at {} must be later than {read_at}",
                c.updated_at
            )));
        }
        let rec = ClientRecord::from_api(c)?;
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                let n = diesel::update(
                    clients::table
                        .find(&rec.id)
                        .filter(clients::updated_at.eq(read_at)),
                )
                .set((
                    clients::secret_hash.eq(&rec.secret_hash),
                    clients::metadata.eq(&rec.metadata),
                    clients::previous_secret_hash.eq(&rec.previous_secret_hash),
                    clients::previous_secret_expires_at.eq(rec.previous_secret_expires_at),
                    clients::updated_at.eq(rec.updated_at),
                ))
                .execute(c)?;
                if n == 1 {
                    append(c, audit)?;
                    return Ok(ClientReplace::Replaced);
                }
                let exists = clients::table
                    .find(&rec.id)
                    .select(clients::id)
                    .first::<String>(c)
                    .optional()?
                    .is_some();
                Ok(if exists {
                    ClientReplace::ChangedMeanwhile
                } else {
                    ClientReplace::Gone
                })
            })
        })
        .await
    }

    /// Removes a client, revokes its grants (with `revoke_reason`), drops its
    /// unredeemed codes and its sign-ins in progress, and appends the audit
    /// event `audit` makes of that, all in one transaction. `None` (nothing
    /// written) when there is no such client.
    pub async fn remove_client<F>(
        &self,
        id: &str,
        revoke_reason: &str,
        now: i64,
        audit: F,
    ) -> Result<Option<ClientRemoved>, StoreError>
    where
        F: FnOnce(&ClientRemoved) -> AuditEvent + Send + 'static,
    {
        let id = id.to_owned();
        let reason = revoke_reason.to_owned();
        self.write(move |conn| {
            crate::call::transaction(conn, |c| {
                if diesel::delete(clients::table.find(&id)).execute(c)? == 0 {
                    return Ok(None);
                }
                crate::consents::delete_for_client(c, &id)?;
                let grants = diesel::update(
                    refresh_token_families::table
                        .filter(refresh_token_families::client_id.eq(&id))
                        .filter(refresh_token_families::revoked_at.is_null()),
                )
                .set((
                    refresh_token_families::revoked_at.eq(Some(now)),
                    refresh_token_families::revoked_reason.eq(Some(&reason)),
                ))
                .execute(c)?;
                let codes = diesel::delete(
                    authorization_codes::table.filter(authorization_codes::client_id.eq(&id)),
                )
                .execute(c)?;
                let requests =
                    diesel::delete(auth_requests::table.filter(auth_requests::client_id.eq(&id)))
                        .execute(c)?;
                let removed = ClientRemoved {
                    grants_revoked: grants as u64,
                    codes_removed: codes as u64,
                    requests_removed: requests as u64,
                };
                append(c, audit(&removed))?;
                Ok(Some(removed))
            })
        })
        .await
    }
}
