//! One upstream token shared by every broker instance: [`SharedToken`] keeps it
//! in the broker's [`Shared`] cache, lets a single instance at a time fetch a new
//! one (a lease in the cache; the others wait for its value), and refreshes it a
//! margin before it expires. For upstreams whose tokens are rationed or where a
//! new token retires the previous one (WeChat's app token:
//! `wechat_api::AppTokens` is built on this), so instances must never fetch their
//! own.

use idbridge_core::{CacheError, CachedValue, Shared};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// The histogram of [`SharedToken::get`] calls that waited for a value.
pub const LEASE_WAIT: &str = "idbridge_shared_token_lease_wait_seconds";

/// How a [`SharedToken`] times its refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// Refresh this long before the value expires.
    pub margin_secs: i64,
    /// How long one instance may hold the refresh lease.
    pub lease_secs: i64,
    /// How often to look for another instance's value while it holds the lease…
    pub poll_every: Duration,
    /// …and how many times before giving up.
    pub wait_polls: u32,
}

impl Default for LeaseTiming {
    /// Refresh 5 minutes early, a 30 s lease, wait up to 10 s (100 × 100 ms).
    fn default() -> Self {
        Self {
            margin_secs: 300,
            lease_secs: 30,
            poll_every: Duration::from_millis(100),
            wait_polls: 100,
        }
    }
}

impl LeaseTiming {
    /// How long [`SharedToken::get`] waits for another instance at most.
    pub fn max_wait(&self) -> Duration {
        self.poll_every * self.wait_polls
    }
}

/// Why [`SharedToken::get`] has no value.
#[derive(Debug)]
pub enum LeaseError<E> {
    /// The shared cache (the broker's database) could not be read or written.
    Cache(CacheError),
    /// Another instance holds the lease and stored nothing within
    /// [`LeaseTiming::max_wait`].
    Busy { waited: Duration },
    /// This instance fetched, and the fetch failed (the lease is released).
    Fetch(E),
}

impl<E: fmt::Display> fmt::Display for LeaseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::Cache(e) => write!(f, "{e}"),
            LeaseError::Busy { waited } => write!(
                f,
                "another broker instance holds the lease and stored nothing for {} s",
                waited.as_secs()
            ),
            LeaseError::Fetch(e) => write!(f, "{e}"),
        }
    }
}

/// A token [`SharedToken::get`] returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Lent {
    pub value: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// This call fetched it from the upstream (for a log line).
    pub fetched: bool,
}

impl fmt::Debug for Lent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lent")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("fetched", &self.fetched)
            .finish()
    }
}

/// One shared value under one cache key. Keep one per key in a process (it
/// remembers the last value, so most calls touch neither the upstream nor the
/// cache).
pub struct SharedToken {
    shared: Shared,
    key: String,
    timing: LeaseTiming,
    /// This process's name in the lease.
    holder: String,
    local: Mutex<Option<CachedValue>>,
    /// One refresher per process; the lease makes it one across instances.
    refreshing: tokio::sync::Mutex<()>,
}

impl SharedToken {
    /// `key` names the value in the cache every instance shares: put the
    /// upstream and the account in it (`wechat:app_token:{appid}`).
    pub fn new(shared: Shared, key: impl Into<String>, timing: LeaseTiming) -> Self {
        Self {
            shared,
            key: key.into(),
            timing,
            holder: format!("{:016x}", rand::random::<u64>()),
            local: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn usable(&self, v: &CachedValue, now: i64) -> bool {
        v.expires_at - self.timing.margin_secs > now
    }

    fn local(&self, now: i64) -> Option<CachedValue> {
        let guard = self.local.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|v| self.usable(v, now)).cloned()
    }

    fn remember(&self, v: Option<CachedValue>) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// A live value: from this process, else from the shared cache, else from
    /// `fetch`, called by whichever instance wins the lease (the others wait for
    /// its value). `fetch` answers the new value and when it expires.
    ///
    /// A call that had to wait (for this process's refresher, or for another
    /// instance holding the lease) is timed in `idbridge_shared_token_lease_wait_seconds`
    /// by `token` (the key's kind, e.g. `wechat:app_token`) and outcome (`value`:
    /// another's value came; `fetched`: this call fetched after all; `busy`; `error`).
    pub async fn get<E, F, Fut>(&self, now: i64, fetch: F) -> Result<Lent, LeaseError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedValue, E>>,
    {
        if let Some(v) = self.local(now) {
            return Ok(Lent {
                value: v.value,
                expires_at: v.expires_at,
                fetched: false,
            });
        }
        let started = std::time::Instant::now();
        let mut waited = false;
        let result = self.get_slow(now, fetch, &mut waited).await;
        if waited {
            let outcome = match &result {
                Ok(l) if l.fetched => "fetched",
                Ok(_) => "value",
                Err(LeaseError::Busy { .. }) => "busy",
                Err(_) => "error",
            };
            metrics::histogram!(
                LEASE_WAIT,
                "token" => self.kind(),
                "outcome" => outcome,
            )
            .record(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The key without its last `:`-part (the account): a bounded label.
    fn kind(&self) -> String {
        match self.key.rsplit_once(':') {
            Some((kind, _)) => kind.to_owned(),
            None => "other".to_owned(),
        }
    }

    async fn get_slow<E, F, Fut>(
        &self,
        now: i64,
        fetch: F,
        waited: &mut bool,
    ) -> Result<Lent, LeaseError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedValue, E>>,
    {
        let lent = |v: CachedValue, fetched| Lent {
            value: v.value,
            expires_at: v.expires_at,
            fetched,
        };
        let _one_at_a_time = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                *waited = true;
                self.refreshing.lock().await
            }
        };
        for _ in 0..self.timing.wait_polls {
            if let Some(v) = self.local(now) {
                return Ok(lent(v, false));
            }
            if let Some(v) = self.cached(now).await? {
                return Ok(lent(v, false));
            }
            let leased = self
                .shared
                .try_lease(&self.key, &self.holder, now, now + self.timing.lease_secs)
                .await
                .map_err(LeaseError::Cache)?;
            if leased {
                // Another instance may have stored its value and let go of the
                // lease between the read above and this lease: look once more
                // before asking the upstream, or both would fetch.
                if let Some(v) = self.cached(now).await? {
                    self.release_lease().await;
                    return Ok(lent(v, false));
                }
                return match fetch().await {
                    Ok(v) => {
                        self.shared
                            .put(&self.key, &self.holder, &v, now)
                            .await
                            .map_err(LeaseError::Cache)?;
                        self.remember(Some(v.clone()));
                        Ok(lent(v, true))
                    }
                    Err(e) => {
                        self.release_lease().await;
                        Err(LeaseError::Fetch(e))
                    }
                };
            }
            // Another instance is fetching: its value lands in the cache shortly.
            *waited = true;
            tokio::time::sleep(self.timing.poll_every).await;
        }
        Err(LeaseError::Busy {
            waited: self.timing.max_wait(),
        })
    }

    /// A usable value from the shared cache, remembered here too.
    async fn cached<E>(&self, now: i64) -> Result<Option<CachedValue>, LeaseError<E>> {
        let cached = self
            .shared
            .get(&self.key, now)
            .await
            .map_err(LeaseError::Cache)?;
        Ok(cached.filter(|v| self.usable(v, now)).inspect(|v| {
            self.remember(Some(v.clone()));
        }))
    }

    async fn release_lease(&self) {
        if let Err(e) = self.shared.release(&self.key, &self.holder).await {
            tracing::warn!(key = %self.key, error = %e, "cannot release the shared-cache lease; it runs out by itself");
        }
    }

    /// The upstream rejected `value` (stale, superseded, revoked): forget it here
    /// and in the shared cache (unless another instance already replaced it).
    pub async fn rejected(&self, value: &str) {
        self.remember(None);
        if let Err(e) = self.shared.invalidate(&self.key, value).await {
            tracing::warn!(key = %self.key, error = %e, "cannot drop the rejected value from the shared cache");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn quick() -> LeaseTiming {
        LeaseTiming {
            poll_every: Duration::from_millis(5),
            wait_polls: 10,
            ..LeaseTiming::default()
        }
    }

    #[tokio::test]
    async fn one_fetch_serves_every_instance_until_the_margin() {
        let shared = Shared::default();
        let a = SharedToken::new(shared.clone(), "k", quick());
        let b = SharedToken::new(shared.clone(), "k", quick());
        let fetches = AtomicU32::new(0);
        let fetch = |n: i64| {
            let fetches = &fetches;
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(CachedValue {
                    value: format!("t{n}"),
                    expires_at: n + 7200,
                })
            }
        };
        let first = a.get(1000, fetch(1000)).await.unwrap();
        assert!(first.fetched);
        let second = b.get(1001, fetch(1001)).await.unwrap();
        assert_eq!((second.value.as_str(), second.fetched), ("t1000", false));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Within the margin before expiry: a new one.
        let later = b.get(1000 + 7200 - 299, fetch(9000)).await.unwrap();
        assert_eq!(later.value, "t9000");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Rejected: dropped everywhere, fetched again.
        b.rejected("t9000").await;
        let again = a.get(9001, fetch(9001)).await.unwrap();
        assert!(again.fetched);
        assert!(!format!("{again:?}").contains("t9001"));
    }

    #[tokio::test]
    async fn a_failed_fetch_releases_the_lease_and_a_held_lease_makes_others_wait() {
        let shared = Shared::default();
        let a = SharedToken::new(shared.clone(), "k", quick());
        let e = a
            .get(0, || async { Err::<CachedValue, _>("down") })
            .await
            .unwrap_err();
        assert!(matches!(e, LeaseError::Fetch("down")));
        // Released: the next call fetches at once.
        let ok = a
            .get(0, || async {
                Ok::<_, &str>(CachedValue {
                    value: "v".into(),
                    expires_at: 7200,
                })
            })
            .await
            .unwrap();
        assert!(ok.fetched);
        // Someone else holds the lease and never stores: Busy after the wait.
        let other = Shared::default();
        assert!(other.try_lease("k", "elsewhere", 0, 30).await.unwrap());
        let waiting = SharedToken::new(other, "k", quick());
        let called = Arc::new(AtomicU32::new(0));
        let c = called.clone();
        let e = waiting
            .get(0, move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok::<_, &str>(CachedValue {
                    value: "mine".into(),
                    expires_at: 7200,
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(e, LeaseError::Busy { .. }), "{e}");
        assert_eq!(called.load(Ordering::SeqCst), 0);
    }
}
