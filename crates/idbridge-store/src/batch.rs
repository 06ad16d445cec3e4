//! Group commit: calls of one kind that arrive while a batch of them is being written
//! wait in a queue, and the next batch writes them all in one transaction (one store
//! call, one commit). Under load that saves, per call, the hand-off to a blocking
//! thread, BEGIN and COMMIT (on SQLite the commit writes the log frames; on Postgres
//! it is a round trip and a WAL flush); when quiet, a batch holds a single call.
//!
//! A task drains the queue while it has jobs; a call that finds fewer than
//! `max_running` such tasks starts one. (A variant where the first caller leads the
//! batch itself and hands the lead to the next was measured 8 % slower: it needs a
//! task of its own anyway, so that a request that goes away cannot stall the queue.)
//!
//! Each job's answer is given only after its batch committed. When a batch fails with
//! an error (not an outcome such as "unknown token"), it rolled back and each of its
//! jobs runs again on its own, so one job's error is never another's. Jobs run in the
//! order of their key, so two batches (of two instances on one Postgres) take row
//! locks in one order and cannot deadlock on each other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::store::Store;

/// The work of one job inside an open transaction.
pub(crate) type Run<J, R> = fn(&mut AnyConnection, &J) -> Result<R, StoreError>;

struct Pending<J, R> {
    job: J,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

/// One draining task's place in [`Batch::running`].
struct Running<'a> {
    running: &'a AtomicUsize,
    counted: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The queue of one kind of call.
pub(crate) struct Batch<J, R> {
    queue: Mutex<Vec<Pending<J, R>>>,
    /// Draining tasks now (changed only under the queue's lock).
    running: AtomicUsize,
    /// At most this many at once (1 on SQLite, which has one writer).
    max_running: usize,
    /// At most this many jobs in one transaction.
    max_jobs: usize,
    run: Run<J, R>,
    key: fn(&J) -> &str,
    /// The store method, for its span.
    operation: &'static str,
}

impl<J, R> Batch<J, R>
where
    J: Send + Sync + 'static,
    R: Send + 'static,
{
    pub(crate) fn new(
        operation: &'static str,
        max_running: usize,
        max_jobs: usize,
        run: Run<J, R>,
        key: fn(&J) -> &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: max_running.max(1),
            max_jobs: max_jobs.max(1),
            run,
            key,
            operation,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending<J, R>>> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Queues `job` and waits for its answer, no longer than `wait` (the batch's
    /// store call has its own deadlines; this also covers waiting for a turn).
    pub(crate) async fn call(
        self: &Arc<Self>,
        store: &Store,
        job: J,
        wait: Duration,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.queue();
            q.push(Pending { job, reply });
            let start = self.running.load(Ordering::Acquire) < self.max_running;
            if start {
                self.running.fetch_add(1, Ordering::AcqRel);
            }
            start
        };
        if start {
            let (batch, store) = (self.clone(), store.clone());
            tokio::spawn(async move { batch.drain(store).await });
        }
        let span = crate::call::named_span(store.backend(), "writer", self.operation);
        let answered =
            tracing::Instrument::instrument(tokio::time::timeout(wait, answer), span.clone()).await;
        let result = match answered {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Unavailable(
                "the batch this call was in ended without an answer".into(),
            )),
            // Still queued: the batch skips it (its sender is closed).
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {wait:?}"
            ))),
        };
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    /// Writes batches until the queue is empty.
    async fn drain(self: Arc<Self>, store: Store) {
        // Dropped unfinished (its runtime stopped under it), the task still
        // counts itself out, so the next call starts another.
        let mut running = Running {
            running: &self.running,
            counted: true,
        };
        loop {
            let taken: Vec<Pending<J, R>> = {
                let mut q = self.queue();
                let n = q.len().min(self.max_jobs);
                let taken: Vec<_> = q.drain(..n).filter(|p| !p.reply.is_closed()).collect();
                if taken.is_empty() && q.is_empty() {
                    // Under the lock: a call queued from now on starts a task.
                    self.running.fetch_sub(1, Ordering::AcqRel);
                    running.counted = false;
                    return;
                }
                taken
            };
            if !taken.is_empty() {
                self.write(&store, taken).await;
            }
        }
    }

    /// One batch: all in one transaction, or (after an error) each on its own.
    async fn write(&self, store: &Store, mut taken: Vec<Pending<J, R>>) {
        let key = self.key;
        taken.sort_by(|a, b| key(&a.job).cmp(key(&b.job)));
        let (jobs, replies): (Vec<J>, Vec<_>) = taken.into_iter().map(|p| (p.job, p.reply)).unzip();
        let jobs = Arc::new(jobs);
        let run = self.run;
        let all = {
            let jobs = jobs.clone();
            store
                .write(move |conn| {
                    crate::call::transaction(conn, |c| {
                        jobs.iter()
                            .map(|j| run(c, j))
                            .collect::<Result<Vec<R>, _>>()
                    })
                })
                .await
        };
        match all {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            // The database is not answering: each job would only wait for it again.
            Err(e) if e.is_unavailable() || replies.len() == 1 => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                for (i, reply) in replies.into_iter().enumerate() {
                    let jobs = jobs.clone();
                    let one = store
                        .write(move |conn| crate::call::transaction(conn, |c| run(c, &jobs[i])))
                        .await;
                    let _ = reply.send(one);
                }
            }
        }
    }
}
