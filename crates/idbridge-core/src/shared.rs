//! What the broker lends connectors: a small cache that every broker instance
//! shares, with a lease so that only one instance at a time refreshes a value.
//! WeChat's app token is the reason: each instance fetching its own would burn
//! the daily quota and knock the others' tokens out.
//!
//! The server backs it with its store (values sealed at rest); [`MemoryCache`]
//! serves a single process (tests, `idbridge doctor`).

use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A cached value and when it stops being usable (unix seconds).
#[derive(Clone, PartialEq, Eq)]
pub struct CachedValue {
    pub value: String,
    pub expires_at: i64,
}

impl fmt::Debug for CachedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cached values are credentials: never print them.
        f.debug_struct("CachedValue")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The shared cache could not be read or written (the broker's database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared cache unavailable: {0}")]
pub struct CacheError(pub String);

/// A cache shared by every broker instance. Time is passed in.
#[async_trait]
pub trait SharedCache: Send + Sync {
    /// The value under `key`, if one is stored and not expired at `now`.
    async fn get(&self, key: &str, now: i64) -> Result<Option<CachedValue>, CacheError>;

    /// Take the refresh lease on `key` until `until`, unless another holder has a
    /// lease that is still running at `now`. True when `holder` now holds it.
    async fn try_lease(
        &self,
        key: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, CacheError>;

    /// Store a fresh value and release `holder`'s lease.
    async fn put(
        &self,
        key: &str,
        holder: &str,
        value: &CachedValue,
        now: i64,
    ) -> Result<(), CacheError>;

    /// Release `holder`'s lease without storing anything (the refresh failed).
    async fn release(&self, key: &str, holder: &str) -> Result<(), CacheError>;

    /// Forget the value if it is still `value` (the upstream rejected it); a value
    /// another instance has meanwhile replaced is kept.
    async fn invalidate(&self, key: &str, value: &str) -> Result<(), CacheError>;
}

/// A handle to the broker's shared cache, as connectors receive it.
#[derive(Clone)]
pub struct Shared(pub Arc<dyn SharedCache>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared(..)")
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared(Arc::new(MemoryCache::default()))
    }
}

impl std::ops::Deref for Shared {
    type Target = dyn SharedCache;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

#[derive(Default)]
struct Entry {
    value: Option<CachedValue>,
    lease: Option<(String, i64)>,
}

/// A [`SharedCache`] for one process.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryCache {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[async_trait]
impl SharedCache for MemoryCache {
    async fn get(&self, key: &str, now: i64) -> Result<Option<CachedValue>, CacheError> {
        Ok(self.with(|m| {
            m.get(key)
                .and_then(|e| e.value.clone())
                .filter(|v| v.expires_at > now)
        }))
    }

    async fn try_lease(
        &self,
        key: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, CacheError> {
        Ok(self.with(|m| {
            let entry = m.entry(key.to_owned()).or_default();
            let free = match &entry.lease {
                None => true,
                Some((h, t)) => h == holder || *t <= now,
            };
            if free {
                entry.lease = Some((holder.to_owned(), until));
            }
            free
        }))
    }

    async fn put(
        &self,
        key: &str,
        holder: &str,
        value: &CachedValue,
        _now: i64,
    ) -> Result<(), CacheError> {
        self.with(|m| {
            let entry = m.entry(key.to_owned()).or_default();
            entry.value = Some(value.clone());
            if entry.lease.as_ref().is_some_and(|(h, _)| h == holder) {
                entry.lease = None;
            }
        });
        Ok(())
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), CacheError> {
        self.with(|m| {
            if let Some(entry) = m.get_mut(key) {
                if entry.lease.as_ref().is_some_and(|(h, _)| h == holder) {
                    entry.lease = None;
                }
            }
        });
        Ok(())
    }

    async fn invalidate(&self, key: &str, value: &str) -> Result<(), CacheError> {
        self.with(|m| {
            if let Some(entry) = m.get_mut(key) {
                if entry.value.as_ref().is_some_and(|v| v.value == value) {
                    entry.value = None;
                }
            }
        });
        Ok(())
    }
}
