//! The state shared by the HTTP handlers and the [`crate::Simulator`] handle,
//! and the simulator's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::SimConfig;
use crate::state::State;

/// Sim time: the wall clock at start, plus real time elapsed since, plus every
/// [`crate::Simulator::advance`]. Milliseconds since the Unix epoch.
#[derive(Debug)]
pub(crate) struct Clock {
    base_ms: i64,
    started: Instant,
    offset_ms: AtomicI64,
}

impl Clock {
    fn new() -> Clock {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Clock {
            base_ms,
            started: Instant::now(),
            offset_ms: AtomicI64::new(0),
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn advance(&self, secs: i64) {
        let delta = secs.saturating_mul(1000);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(delta))
            });
    }
}

/// State plus clock, behind one lock; never held across an `.await`.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) clock: Clock,
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Shared {
        Shared {
            state: Mutex::new(State::new(config)),
            clock: Clock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a handler died mid-update; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state with the current sim time.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, i64) -> R) -> R {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        f(&mut state, now)
    }
}
