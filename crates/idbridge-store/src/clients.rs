//! Clients registered at run time through the admin API.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::{ClientRecord, ClientRow};
use crate::schema::clients;
use crate::store::Store;

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
        self.write(move |conn| Ok(diesel::delete(clients::table.find(&id)).execute(conn)? == 1))
            .await
    }
}
