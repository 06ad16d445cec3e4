//! Fair shares of the broker between apps. Each client may have at most
//! `server.in_progress_per_client` requests doing local work (database, signing)
//! at once; the rest wait their turn, asynchronously and in arrival order.
//!
//! Why: a burst of one app's sign-ins — say five hundred that WeChat answers at
//! the same moment after a slow spell — would otherwise put hundreds of ready
//! tasks on the workers' run queues and in the database queue, in front of every
//! other app's token requests. With a share, that burst queues behind itself.
//!
//! A share is taken only around local work, never while waiting on an upstream:
//! the callback takes it after the connector has answered, token exchange after
//! the upstream has checked the subject token. So a slow provider cannot use up
//! an app's share either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request may wait for its app's share before it is refused as busy.
const MOST_WAIT: Duration = Duration::from_secs(10);

/// A turn at local work for one app; dropping it lets the next request of that app in.
pub type Turn = Option<OwnedSemaphorePermit>;

/// Per-client admission: one FIFO semaphore per client id.
pub struct FairShare {
    per_client: u32,
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The app's requests have waited longer than [`MOST_WAIT`] for a turn.
#[derive(Debug)]
pub struct Busy;

impl FairShare {
    /// `per_client` requests of one app at once; 0 turns fair shares off.
    pub fn new(per_client: u32) -> Self {
        Self {
            per_client,
            gates: Mutex::new(HashMap::new()),
        }
    }

    fn gate(&self, client_id: &str) -> Arc<Semaphore> {
        let mut gates = match self.gates.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Callers pass only ids of registered clients, so the map stays small.
        gates
            .entry(client_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client as usize)))
            .clone()
    }

    /// Waits for a turn of `client_id` (a registered client's id). Hold the
    /// returned value for the local work.
    pub async fn enter(&self, client_id: &str) -> Result<Turn, Busy> {
        if self.per_client == 0 {
            return Ok(None);
        }
        let gate = self.gate(client_id);
        // No turn free at once: this request waits (counted; the client is not a label).
        if let Ok(permit) = gate.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        metrics::counter!(crate::telemetry::FAIR_SHARE_WAITS).increment(1);
        match tokio::time::timeout(MOST_WAIT, gate.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed; treat it as busy rather than panic.
            Ok(Err(_)) | Err(_) => {
                metrics::counter!(crate::telemetry::FAIR_SHARE_REFUSALS).increment(1);
                tracing::warn!(stage = "fair_share", client_id, waited_secs = MOST_WAIT.as_secs(), "requests of this app waited too long for a turn; refused as busy. The app sends more than the broker can serve: raise server.in_progress_per_client, add cores or instances");
                Err(Busy)
            }
        }
    }
}

impl From<Busy> for crate::error::OAuthError {
    fn from(_: Busy) -> Self {
        Self::temporarily_unavailable(
            "the broker is busy with this application's requests; retry shortly",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_app_waits_for_its_own_turns_not_for_another_apps() {
        let fair = FairShare::new(2);
        let a1 = fair.enter("a").await.ok().flatten();
        let a2 = fair.enter("a").await.ok().flatten();
        assert!(a1.is_some() && a2.is_some());
        // A third request of app a waits...
        let third = tokio::time::timeout(Duration::from_millis(50), fair.enter("a")).await;
        assert!(third.is_err(), "app a got a third turn while holding two");
        // ...while app b goes straight in.
        let b = tokio::time::timeout(Duration::from_millis(50), fair.enter("b")).await;
        assert!(matches!(b, Ok(Ok(Some(_)))));
        drop(a1);
        let again = tokio::time::timeout(Duration::from_millis(50), fair.enter("a")).await;
        assert!(matches!(again, Ok(Ok(Some(_)))));
    }

    #[tokio::test]
    async fn zero_turns_fair_shares_off() {
        let fair = FairShare::new(0);
        for _ in 0..100 {
            assert!(matches!(fair.enter("a").await, Ok(None)));
        }
    }
}
