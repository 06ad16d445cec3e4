//! Rate limits on failures: each client IP may fail at the token, revocation and
//! introspection endpoints (bad client credentials, bad codes or refresh tokens)
//! and at the upstream callback (unknown or mismatched state) only so often.
//! Successful traffic is never throttled, so a busy app is not slowed down, while
//! guessing codes, tokens, secrets or states is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// A token bucket per IP: `per_minute` failures refill over a minute, up to
/// `per_minute` at once.
pub struct FailureLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (f64, i64)>> {
        match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn refill(&self, entry: &mut (f64, i64), now_ms: i64) {
        let cap = f64::from(self.per_minute);
        let elapsed = (now_ms - entry.1).max(0) as f64 / 60_000.0;
        entry.0 = (entry.0 + elapsed * cap).min(cap);
        entry.1 = now_ms;
    }

    /// May this IP make another attempt? (Checked before the work.)
    pub fn allowed(&self, ip: Option<IpAddr>, now_ms: i64) -> bool {
        let Some(ip) = ip else { return true };
        if self.per_minute == 0 {
            return true;
        }
        let mut map = self.lock();
        match map.get_mut(&ip) {
            None => true,
            Some(entry) => {
                self.refill(entry, now_ms);
                entry.0 >= 1.0
            }
        }
    }

    /// Record one failure from this IP.
    pub fn failed(&self, ip: Option<IpAddr>, now_ms: i64) {
        let Some(ip) = ip else { return };
        if self.per_minute == 0 {
            return;
        }
        let cap = f64::from(self.per_minute);
        let mut map = self.lock();
        if map.len() > 100_000 {
            // Forget full buckets; they carry no information.
            map.retain(|_, (tokens, _)| *tokens < cap);
        }
        let entry = map.entry(ip).or_insert((cap, now_ms));
        self.refill(entry, now_ms);
        entry.0 = (entry.0 - 1.0).max(0.0);
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_exhaust_then_refill() {
        let l = FailureLimiter::new(3);
        let ip: Option<IpAddr> = "10.0.0.1".parse().ok();
        let other: Option<IpAddr> = "10.0.0.2".parse().ok();
        for _ in 0..3 {
            assert!(l.allowed(ip, 0));
            l.failed(ip, 0);
        }
        assert!(!l.allowed(ip, 0));
        assert!(l.allowed(other, 0), "other addresses are not affected");
        assert!(
            l.allowed(ip, 20_000),
            "one failure refills every 20 s at 3/min"
        );
    }
}
