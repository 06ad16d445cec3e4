//! Signing keys as stored: the private key arrives already encrypted, so the store never
//! sees a clear key. (alg, generation) is unique so that racing instances create one key.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::KeyRow;
use crate::schema::signing_keys;
use crate::store::Store;

impl Store {
    /// Every key, by alg then generation.
    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        self.read(|c| {
            Ok(signing_keys::table
                .order((signing_keys::alg.asc(), signing_keys::generation.asc()))
                .select(KeyRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Stores a key. `Ok(false)` when (alg, generation) is already taken: another instance won
    /// the race and the caller should reload the keys. A clash on `kid` alone is `Conflict`.
    pub async fn insert_key(&self, k: KeyRow) -> Result<bool, StoreError> {
        self.write(move |c| {
            match diesel::insert_into(signing_keys::table)
                .values(&k)
                .execute(c)
            {
                Ok(_) => Ok(true),
                Err(e) => {
                    let e = StoreError::from(e);
                    if !e.is_conflict() {
                        return Err(e);
                    }
                    let taken: i64 = signing_keys::table
                        .filter(signing_keys::alg.eq(&k.alg))
                        .filter(signing_keys::generation.eq(k.generation))
                        .count()
                        .get_result(c)?;
                    if taken > 0 {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// Sets when a key stops signing and when it leaves the JWKS. A missing kid is not an error.
    pub async fn set_key_schedule(
        &self,
        kid: &str,
        retires_at: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let kid = kid.to_owned();
        self.write(move |c| {
            diesel::update(signing_keys::table.find(&kid))
                .set((
                    signing_keys::retires_at.eq(retires_at),
                    signing_keys::expires_at.eq(expires_at),
                ))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// A missing kid is not an error.
    pub async fn delete_key(&self, kid: &str) -> Result<(), StoreError> {
        let kid = kid.to_owned();
        self.write(move |c| {
            diesel::delete(signing_keys::table.find(&kid)).execute(c)?;
            Ok(())
        })
        .await
    }
}
