//! Rate limits on failures: each client IP may fail at the token, revocation and
//! introspection endpoints (bad client credentials, bad codes or refresh tokens),
//! at the upstream callback (unknown or mismatched state), at the admin API and
//! at one-time code entry only so often. Successful traffic is never throttled,
//! so a busy app is not slowed down, while guessing codes, tokens, secrets or
//! states is.
//!
//! Failures are counted in the store ([`Store::count_failure`]), so with several
//! instances on one database an address gets the configured number in total,
//! not per instance. Every request is checked, so the check must stay cheap:
//! each instance remembers what it last learnt of an address's counter, and
//! answers from that alone when
//! - it says the address is over the limit: counters only grow until they are
//!   full again, so what an instance saw is never more than the truth and such
//!   a refusal is always right; or
//! - it is under [`FRESH_MS`] old and showed more than half the limit left.
//!
//! Otherwise it reads the counter (one primary-key read). What the lag can
//! give a guesser: an instance lets an address through on a view that missed
//! failures counted meanwhile elsewhere only if more than half the limit was
//! spent elsewhere within that second, and its first failure there updates
//! the view. So across N instances an address gets at most N−1 attempts
//! beyond the limit each time it spends more than half of it within a second,
//! which it can do again only once that much has refilled. An address that
//! never failed (an app's servers) costs one read a second per instance,
//! whatever its request rate.

use idbridge_store::{FailureLimit, Store, StoreError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How long an instance trusts what it last saw of a counter that had room.
pub const FRESH_MS: i64 = 1_000;

/// Addresses remembered at most (beyond that, views that decide nothing are
/// dropped; a dropped view costs one read).
const REMEMBERED: usize = 100_000;

/// Why an attempt may not go ahead.
#[derive(Debug)]
pub enum Refused {
    /// The address has failed too often: 429.
    Limited,
    /// The counter could not be read: the database is in trouble.
    Store(StoreError),
}

/// What this instance last learnt of one address's counter.
#[derive(Debug, Clone, Copy)]
struct Seen {
    full_at_ms: i64,
    read_at_ms: i64,
}

/// The per-IP failure limit, counted in the store; `per_minute` failures
/// refill over a minute, up to `per_minute` at once. 0 turns it off.
pub struct FailureLimiter {
    limit: Option<FailureLimit>,
    store: Store,
    seen: Mutex<HashMap<IpAddr, Seen>>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32, store: Store) -> Self {
        Self {
            limit: (per_minute > 0).then(|| FailureLimit::per_minute(per_minute)),
            store,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Seen>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn remember(&self, ip: IpAddr, full_at_ms: i64, now_ms: i64, limit: FailureLimit) {
        let mut seen = self.seen();
        if seen.len() >= REMEMBERED {
            seen.retain(|_, s| {
                now_ms - s.read_at_ms < FRESH_MS || limit.left(s.full_at_ms, now_ms) <= 0
            });
        }
        let entry = seen.entry(ip).or_insert(Seen {
            full_at_ms,
            read_at_ms: now_ms,
        });
        // Another request may have learnt a later state meanwhile.
        entry.full_at_ms = entry.full_at_ms.max(full_at_ms);
        entry.read_at_ms = now_ms;
    }

    /// May this IP make another attempt? (Checked before the work.)
    pub async fn check(&self, ip: Option<IpAddr>, now_ms: i64) -> Result<(), Refused> {
        let (Some(ip), Some(limit)) = (ip, self.limit) else {
            return Ok(());
        };
        let known = self.seen().get(&ip).copied();
        if let Some(s) = known {
            let left = limit.left(s.full_at_ms, now_ms);
            if left <= 0 {
                return Err(Refused::Limited);
            }
            if now_ms - s.read_at_ms < FRESH_MS && 2 * left > limit.burst.max(2) {
                return Ok(());
            }
        }
        let full_at_ms = self
            .store
            .failure_counter(&key(ip))
            .await
            .map_err(Refused::Store)?
            .unwrap_or(0);
        self.remember(ip, full_at_ms, now_ms, limit);
        if limit.left(full_at_ms, now_ms) <= 0 {
            Err(Refused::Limited)
        } else {
            Ok(())
        }
    }

    /// Record one failure from this IP. A store error is logged: the answer
    /// to the failed request does not change.
    pub async fn failed(&self, ip: Option<IpAddr>, now_ms: i64) {
        let (Some(ip), Some(limit)) = (ip, self.limit) else {
            return;
        };
        match self.store.count_failure(&key(ip), now_ms, limit).await {
            Ok(full_at_ms) => self.remember(ip, full_at_ms, now_ms, limit),
            Err(e) => {
                tracing::error!(stage = "rate_limit", error = %e, "cannot count a failure")
            }
        }
    }
}

fn key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Two limiters on one store: two instances on one database.
    async fn two_instances(
        per_minute: u32,
    ) -> (FailureLimiter, FailureLimiter, std::path::PathBuf) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "idbridge-limits-{}-{}-{}",
            std::process::id(),
            crate::clock::Clock::default().now_ms(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let url = format!("sqlite://{}/db.sqlite", dir.display());
        let store = Store::connect(&url, idbridge_store::StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (
            FailureLimiter::new(per_minute, store.clone()),
            FailureLimiter::new(per_minute, store),
            dir,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_count_in_total_across_instances_then_refill() {
        let (a, b, dir) = two_instances(6).await;
        let ip: Option<IpAddr> = "203.0.113.1".parse().ok();
        let other: Option<IpAddr> = "203.0.113.2".parse().ok();
        let now = 1_700_000_000_000;
        for n in 0..6 {
            let at = if n % 2 == 0 { &a } else { &b };
            assert!(at.check(ip, now + n).await.is_ok(), "failure {n}");
            at.failed(ip, now + n).await;
        }
        for at in [&a, &b] {
            assert!(matches!(
                at.check(ip, now + 10).await,
                Err(Refused::Limited)
            ));
        }
        assert!(a.check(other, now).await.is_ok(), "others are not affected");
        // One failure refills every 10 s at 6 a minute, for both instances.
        assert!(a.check(ip, now + 10_006).await.is_ok());
        assert!(b.check(ip, now + 10_006).await.is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_view_gives_at_most_one_extra_attempt() {
        let (a, b, dir) = two_instances(6).await;
        let ip: Option<IpAddr> = "203.0.113.1".parse().ok();
        let now = 1_700_000_000_000;
        a.check(ip, now).await.unwrap();
        a.failed(ip, now).await;
        // The other five failures at B within the same second.
        for n in 1..6 {
            b.check(ip, now + n).await.unwrap();
            b.failed(ip, now + n).await;
        }
        // A still saw five of six left: one attempt gets through, and its
        // failure shows A the truth.
        assert!(a.check(ip, now + 10).await.is_ok());
        a.failed(ip, now + 10).await;
        assert!(matches!(a.check(ip, now + 11).await, Err(Refused::Limited)));
        // Once the view is a second old, A reads the counter again.
        let (c, d, dir2) = two_instances(6).await;
        c.check(ip, now).await.unwrap();
        c.failed(ip, now).await;
        for n in 1..6 {
            d.failed(ip, now + n).await;
        }
        assert!(matches!(
            c.check(ip, now + FRESH_MS).await,
            Err(Refused::Limited)
        ));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(dir2);
    }
}
