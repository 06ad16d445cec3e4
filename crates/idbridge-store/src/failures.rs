//! Failure counters shared by every broker instance: how often one key (a
//! client address) has failed lately, so that a limit holds in total however
//! many instances a load balancer spreads the attempts over.
//!
//! Each counter is a token bucket stored as one number, the time at which it
//! is full again (`full_at_ms`; the "theoretical arrival time" of GCRA): every
//! failure moves it one refill interval later, and the bucket refills as the
//! clock catches up. A missing row, or one whose time has passed, is a full
//! bucket; expiry collection deletes those. Reading is one primary-key lookup;
//! counting is one atomic UPDATE (an INSERT for the first failure), so
//! concurrent failures at several instances are all counted.

use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::error::StoreError;
use crate::schema::failure_counters;
use crate::store::Store;

/// A limit: `burst` failures at once, then one more per `interval_ms` as the
/// bucket refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub burst: i64,
    pub interval_ms: i64,
}

impl FailureLimit {
    /// `n` failures a minute, all of them at once if need be (`n` >= 1).
    pub fn per_minute(n: u32) -> Self {
        let n = i64::from(n.max(1));
        FailureLimit {
            burst: n,
            interval_ms: (60_000 / n).max(1),
        }
    }

    /// Failures still allowed at `now_ms` by a counter full again at
    /// `full_at_ms` (0 or less: refuse).
    pub fn left(&self, full_at_ms: i64, now_ms: i64) -> i64 {
        let owed = (full_at_ms - now_ms).max(0);
        // A failure refilled only in part is still owed.
        let owed_failures = (owed + self.interval_ms - 1) / self.interval_ms;
        self.burst - owed_failures
    }
}

impl Store {
    /// When the counter under `key` is full again (unix ms), if it has one.
    pub async fn failure_counter(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(failure_counters::table
                .find(&key)
                .select(failure_counters::full_at_ms)
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Counts one failure under `key` at `now_ms` and returns when the counter
    /// is full again: at least what this failure made it (later when another
    /// instance counted one meanwhile). The bucket never owes more than
    /// `limit.burst` failures, so failures past the limit do not lock the key
    /// out for longer than a full refill.
    pub async fn count_failure(
        &self,
        key: &str,
        now_ms: i64,
        limit: FailureLimit,
    ) -> Result<i64, StoreError> {
        let key = key.to_owned();
        self.write(move |c| {
            let step = limit.interval_ms;
            let ceiling = now_ms + limit.burst.max(1) * step;
            let bump = |c: &mut crate::pool::AnyConnection| {
                let full_at = failure_counters::full_at_ms;
                diesel::update(failure_counters::table.find(&key))
                    .set(
                        full_at.eq(case_when(
                            full_at.ge(ceiling - step),
                            ceiling.into_sql::<BigInt>(),
                        )
                        .when(full_at.gt(now_ms), full_at + step)
                        .otherwise((now_ms + step).into_sql::<BigInt>())),
                    )
                    .execute(c)
            };
            if bump(c)? == 0 {
                let inserted = diesel::insert_into(failure_counters::table)
                    .values((
                        failure_counters::key.eq(&key),
                        failure_counters::full_at_ms.eq(now_ms + step),
                    ))
                    .execute(c);
                match inserted {
                    Ok(_) => return Ok(now_ms + step),
                    // Another instance counted this key's first failure at the
                    // same moment: count ours on its row.
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        bump(c)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(failure_counters::table
                .find(&key)
                .select(failure_counters::full_at_ms)
                .first(c)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_one_per_interval() {
        let l = FailureLimit::per_minute(3);
        assert_eq!(l.interval_ms, 20_000);
        let now = 1_000_000;
        assert_eq!(l.left(0, now), 3, "no counter: a full bucket");
        assert_eq!(l.left(now + 20_000, now), 2);
        assert_eq!(l.left(now + 60_000, now), 0);
        assert_eq!(
            l.left(now + 60_000, now + 19_999),
            0,
            "a part refill is owed"
        );
        assert_eq!(l.left(now + 60_000, now + 20_000), 1);
    }
}
