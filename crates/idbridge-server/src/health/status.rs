//! What the instance remembers of its health between probes: readiness already
//! established, and upstream health as the broker sees it: consecutive failures of each
//! connector's upstream (unavailable, timing out, answering garbage, throttling).
//! One upstream down never stops the broker or other connectors; `/healthz`
//! reports it as degraded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What `/readyz` remembers between probes.
#[derive(Default)]
pub struct Readiness {
    /// Every embedded migration was seen applied once.
    migrations_current: AtomicBool,
}

impl Readiness {
    pub fn migrations_current(&self) -> bool {
        self.migrations_current.load(Ordering::Relaxed)
    }

    pub fn set_migrations_current(&self) {
        self.migrations_current.store(true, Ordering::Relaxed);
    }
}

/// Failures in a row before a connector counts as degraded.
const DEGRADED_AFTER: u32 = 3;
/// A degraded connector recovers by itself this long after its last failure, even
/// if nobody signs in through it meanwhile.
const FORGET_AFTER_SECS: i64 = 300;

#[derive(Default)]
pub struct UpstreamHealth {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl UpstreamHealth {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, i64)>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn failed(&self, connector: &str, now: i64) {
        let mut map = self.map();
        let entry = map.entry(connector.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    pub fn succeeded(&self, connector: &str) {
        self.map().remove(connector);
    }

    pub fn degraded(&self, connector: &str, now: i64) -> bool {
        self.map()
            .get(connector)
            .is_some_and(|(n, last)| *n >= DEGRADED_AFTER && now - last < FORGET_AFTER_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_degrade_and_success_or_time_heals() {
        let h = UpstreamHealth::default();
        h.failed("wechat", 0);
        h.failed("wechat", 1);
        assert!(!h.degraded("wechat", 1));
        h.failed("wechat", 2);
        assert!(h.degraded("wechat", 2));
        assert!(!h.degraded("other", 2));
        assert!(!h.degraded("wechat", 2 + FORGET_AFTER_SECS));
        h.succeeded("wechat");
        assert!(!h.degraded("wechat", 3));
    }
}
