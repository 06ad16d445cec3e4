//! The cache connectors share across broker instances (`idbridge_core::SharedCache`),
//! kept in the store's `app_tokens` table. Values are credentials (WeChat app
//! tokens), so they are sealed with the master key, bound to their key.

use async_trait::async_trait;
use idbridge_core::{CacheError, CachedValue, SharedCache};
use idbridge_store::{AppTokenRow, Store, StoreError};
use idbridge_tokens::MasterKey;

pub struct StoreCache {
    store: Store,
    master_key: MasterKey,
}

impl StoreCache {
    pub fn new(store: Store, master_key: MasterKey) -> Self {
        Self { store, master_key }
    }

    fn aad(key: &str) -> Vec<u8> {
        format!("shared-cache:{key}").into_bytes()
    }

    /// The stored token and its clear value, if it is live and opens under this key.
    async fn load(&self, key: &str, now: i64) -> Result<Option<(AppTokenRow, String)>, CacheError> {
        let Some(row) = self
            .store
            .get_app_token(key, now)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        match self.master_key.open(&row.token, &Self::aad(key)) {
            Ok(clear) => Ok(String::from_utf8(clear).ok().map(|v| (row, v))),
            Err(_) => {
                // Sealed under another master key (rotated) or tampered with: treat as
                // absent, so a fresh value is fetched and overwrites it.
                tracing::warn!(
                    stage = "shared_cache",
                    key,
                    "a cached value does not open with the master key; fetching a new one"
                );
                Ok(None)
            }
        }
    }
}

fn unavailable(e: StoreError) -> CacheError {
    CacheError(e.to_string())
}

#[async_trait]
impl SharedCache for StoreCache {
    async fn get(&self, key: &str, now: i64) -> Result<Option<CachedValue>, CacheError> {
        Ok(self.load(key, now).await?.map(|(row, value)| CachedValue {
            value,
            expires_at: row.expires_at,
        }))
    }

    async fn try_lease(
        &self,
        key: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, CacheError> {
        self.store
            .lease_app_token(key, holder, now, until)
            .await
            .map_err(unavailable)
    }

    async fn put(
        &self,
        key: &str,
        holder: &str,
        value: &CachedValue,
        now: i64,
    ) -> Result<(), CacheError> {
        let sealed = self
            .master_key
            .seal(value.value.as_bytes(), &Self::aad(key))
            .map_err(|e| CacheError(e.to_string()))?;
        self.store
            .put_app_token(key, holder, sealed, value.expires_at, now)
            .await
            .map_err(unavailable)
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), CacheError> {
        self.store
            .release_app_token_lease(key, holder)
            .await
            .map_err(unavailable)
    }

    async fn invalidate(&self, key: &str, value: &str) -> Result<(), CacheError> {
        // Only the sealed blob identifies the stored value; drop it if it still holds
        // the rejected value. `i64::MIN` as "now": expired values are candidates too.
        if let Some((row, clear)) = self.load(key, i64::MIN).await? {
            if clear == value {
                self.store
                    .invalidate_app_token(key, row.token)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}
