//! What the store knows about whether the database answers, so that an outage costs
//! callers microseconds instead of their whole timeouts.
//!
//! Once a call has found the database unreachable (connections refused or failing
//! while the pool had none left, or a call that overran its deadline), the store is
//! *down*: every call fails at once with [`StoreError::Unavailable`] instead of
//! waiting out `connect_timeout` or `query_timeout` itself. A request then holds its
//! app's fair share and a worker for no time at all, and answers 503 at once. While
//! down, one trial ping at a time, at most every [`TRIAL_EVERY`], looks for the
//! database's return (started by the calls that fail fast, and by every
//! [`crate::Store::ping`], which always asks the database). The store is up again as
//! soon as a ping answers or the pool opens a new connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// Time between trial pings while the database is down.
pub(crate) const TRIAL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Outage {
    /// `down.is_some()`, readable without the lock (every call looks at it).
    is_down: AtomicBool,
    down: Mutex<Option<Down>>,
    /// Connection attempts that failed since the store opened. A checkout that sees
    /// this grow while it waits, with no connection left in the pool, knows it is
    /// waiting for a connection that cannot be made.
    connect_failures: AtomicU64,
    last_connect_error: Mutex<String>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    reason: String,
    trial_started: Option<Instant>,
    trial_running: bool,
}

/// What [`Outage::admit`] tells a caller.
pub(crate) enum Admission {
    /// The database answered last time: go ahead.
    Go,
    /// Down: fail at once with this error.
    Refuse(StoreError),
    /// Down: fail at once with this error, and start the one trial ping.
    RefuseAndTry(StoreError),
}

impl Outage {
    fn state(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to the database now.
    pub(crate) fn admit(&self) -> Admission {
        if !self.is_down.load(Ordering::Acquire) {
            return Admission::Go;
        }
        let mut state = self.state();
        let Some(down) = state.as_mut() else {
            return Admission::Go;
        };
        let err = StoreError::Unavailable(format!(
            "the database has not answered for {} s ({}); calls fail at once until it answers again",
            down.since.elapsed().as_secs(),
            down.reason
        ));
        let due = down
            .trial_started
            .is_none_or(|at| at.elapsed() >= TRIAL_EVERY);
        if !down.trial_running && due {
            down.trial_running = true;
            down.trial_started = Some(Instant::now());
            Admission::RefuseAndTry(err)
        } else {
            Admission::Refuse(err)
        }
    }

    /// A call found the database unreachable.
    pub(crate) fn failed(&self, reason: &str) {
        let mut state = self.state();
        if state.is_none() {
            tracing::error!(
                stage = "store",
                error = reason,
                "database unreachable; database calls fail at once (HTTP 503) until it answers again, checked every second"
            );
            *state = Some(Down {
                since: Instant::now(),
                reason: reason.to_owned(),
                trial_started: None,
                trial_running: false,
            });
            self.is_down.store(true, Ordering::Release);
        }
    }

    /// The database answered (a query, a ping or a new connection).
    pub(crate) fn answered(&self) {
        if !self.is_down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        self.is_down.store(false, Ordering::Release);
        if let Some(down) = state.take() {
            tracing::warn!(
                stage = "store",
                down_ms = down.since.elapsed().as_millis() as u64,
                "database answers again; database calls resume"
            );
        }
    }

    /// The trial ping started by [`Admission::RefuseAndTry`] has ended (either way).
    pub(crate) fn trial_ended(&self) {
        if let Some(down) = self.state().as_mut() {
            down.trial_running = false;
        }
    }

    #[cfg(test)]
    fn is_down(&self) -> bool {
        self.is_down.load(Ordering::Acquire)
    }

    pub(crate) fn connect_failed(&self, error: &str) {
        *self
            .last_connect_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = error.to_owned();
        self.connect_failures.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::SeqCst)
    }

    pub(crate) fn last_connect_error(&self) -> String {
        self.last_connect_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_refuses_at_once_with_one_trial_at_a_time_until_it_answers() {
        let o = Outage::default();
        assert!(matches!(o.admit(), Admission::Go));
        o.failed("connection refused");
        assert!(o.is_down());
        let Admission::RefuseAndTry(e) = o.admit() else {
            panic!("the first refused call starts a trial");
        };
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("connection refused"), "{e}");
        // The trial is running: nobody starts another.
        assert!(matches!(o.admit(), Admission::Refuse(_)));
        o.trial_ended();
        // Ended, but less than TRIAL_EVERY ago: still no new trial.
        assert!(matches!(o.admit(), Admission::Refuse(_)));
        o.answered();
        assert!(matches!(o.admit(), Admission::Go));
    }
}
