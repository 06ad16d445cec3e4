//! One store call on tokio's blocking pool, within its deadlines, and what becomes of a
//! connection whose call overran.
//!
//! A call has two phases, each with its own deadline:
//! 1. *connect* (`connect_timeout`): waiting for a turn at the pool and checking a
//!    connection out. While the pool has no connection left and its attempts to open
//!    one keep failing, the wait ends at once instead (the database is down).
//! 2. *query* (`query_timeout`): checking that a Postgres connection still answers, then
//!    the call's own queries. Postgres enforces the same bound on its side
//!    (`statement_timeout`, `idle_in_transaction_session_timeout`), the OS on the socket
//!    (keepalives, `tcp_user_timeout`); the caller stops waiting at the deadline however
//!    the socket behaves.
//!
//! A blocking thread cannot be interrupted. One whose caller gave up keeps its connection,
//! so a connection that is stuck is never handed to another call, and keeps its turn, so
//! stuck threads never outnumber connections. When it ends, the connection is closed rather
//! than put back, and a transaction run through [`transaction`] rolls back instead of
//! committing once its call is past the deadline.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{PooledConnection, R2D2Connection};
use diesel::Connection;

use crate::error::StoreError;
use crate::outage::Outage;
use crate::pool::{close, AnyConnection, Backend, DbPool, Manager, PgSession};

/// The span of one store call, a child of the current span (none outside one: background
/// jobs make no traces of their own). `db.operation` is the `Store` method's name, read
/// from the type of the closure it passes (`F`); no SQL, no parameters.
pub(crate) fn span<F>(backend: Backend, pool: &'static str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    named_span(backend, pool, operation(std::any::type_name::<F>()))
}

/// [`span`] with the operation named by the caller (a batched call, whose closure
/// runs elsewhere).
pub(crate) fn named_span(
    backend: Backend,
    pool: &'static str,
    operation: &'static str,
) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "store",
        otel.name = %format!("store {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        },
        db.operation = operation,
        pool,
        outcome = tracing::field::Empty,
    )
}

/// `client` of `idbridge_store::clients::<impl idbridge_store::store::Store>::client::{{closure}}::{{closure}}`:
/// the name of the function the closure was written in.
pub(crate) fn operation(closure: &'static str) -> &'static str {
    let head = closure.split("::{{closure}}").next().unwrap_or(closure);
    match head.rsplit_once("::") {
        Some((_, name)) if !name.is_empty() && !name.contains(['<', '>', ' ']) => name,
        _ => "other",
    }
}

/// How often a checkout that waits looks whether the pool's connection attempts fail.
const POLL: Duration = Duration::from_millis(50);

thread_local! {
    /// The query deadline of the call running on this thread, if it has one.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// `conn.transaction(f)`, except that it rolls back instead of committing when the call it
/// runs in is already past its query deadline: its caller has answered "unavailable", and
/// the work must then not happen behind its back (a refresh token rotated after the app was
/// told to retry, say).
pub(crate) fn transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error> + From<StoreError>,
{
    conn.transaction(|c| {
        let out = f(c)?;
        if DEADLINE.with(Cell::get).is_some_and(|d| Instant::now() > d) {
            return Err(StoreError::Unavailable(
                "the call overran its deadline before committing; rolled back".into(),
            )
            .into());
        }
        Ok(out)
    })
}

/// The deadlines of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connect: Duration,
    /// `None`: no deadline (migrations).
    pub(crate) query: Option<Duration>,
}

/// Where the blocking half of a call stands, as both halves see it. Shared through a
/// mutex rather than sent over a channel: the caller looks at it only when one of its
/// deadlines passes, so a call that finishes in time wakes its caller once (when it is
/// done), not twice.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// Still waiting for a connection.
    Waiting,
    /// Has a connection; the query deadline, if the call has one.
    Started(Option<Instant>),
    /// The caller gave up before a connection was free: run nothing.
    Abandoned,
}

#[derive(Debug)]
pub(crate) struct StartCell(std::sync::Mutex<Start>);

impl StartCell {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(Start::Waiting)))
    }

    /// Applies `f` to the state and returns what it then is.
    pub(crate) fn update(&self, f: impl FnOnce(Start) -> Start) -> Start {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = f(*g);
        *g
    }
}

/// The blocking half of a call.
pub(crate) struct Job {
    pub(crate) pool: DbPool,
    pub(crate) outage: Arc<Outage>,
    pub(crate) backend: Backend,
    pub(crate) limits: Limits,
    pub(crate) session: PgSession,
    pub(crate) pool_label: &'static str,
}

impl Job {
    /// Checks a connection out, records the query deadline in `start` (and how long the
    /// wait for a connection took, since `begun`), and runs `f`. Runs nothing when the
    /// caller has stopped waiting before a connection was free.
    pub(crate) fn run<T, F>(self, start: &StartCell, begun: Instant, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    {
        let mut conn = self.checkout(Instant::now() + self.limits.connect)?;
        let deadline = self.limits.query.map(|q| Instant::now() + q);
        let now = start.update(|s| match s {
            Start::Abandoned => Start::Abandoned,
            _ => Start::Started(deadline),
        });
        if matches!(now, Start::Abandoned) {
            return Err(StoreError::Unavailable(
                "the caller stopped waiting before a connection was free".into(),
            ));
        }
        metrics::histogram!("idbridge_store_connection_wait_seconds", "pool" => self.pool_label)
            .record(begun.elapsed().as_secs_f64());
        if self.backend == Backend::Postgres {
            // A pooled connection may have died with the server (a restart): try the next.
            while let Err(e) = conn.ping() {
                close(conn);
                let Some(d) = deadline.filter(|d| Instant::now() < *d) else {
                    return Err(StoreError::Unavailable(format!(
                        "no pooled connection answered: {e}"
                    )));
                };
                conn = self.checkout(d)?;
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            // Stuck in the check above until after the caller was told "unavailable".
            close(conn);
            return Err(StoreError::Unavailable(
                "the connection answered only after the call's deadline".into(),
            ));
        }
        let own_limit = self.limits.query != Some(self.session.query);
        if own_limit && self.backend == Backend::Postgres {
            let statement = self.limits.query.unwrap_or(Duration::ZERO);
            if let Err(e) = conn.batch_execute(&self.session.settings(statement)) {
                close(conn);
                return Err(e.into());
            }
        }
        DEADLINE.with(|d| d.set(deadline));
        let result = f(&mut conn);
        DEADLINE.with(|d| d.set(None));
        let overran = deadline.is_some_and(|d| Instant::now() > d);
        let restored = !own_limit
            || self.backend != Backend::Postgres
            || conn
                .batch_execute(&self.session.settings(self.session.query))
                .is_ok();
        if overran || !restored || matches!(result, Err(StoreError::Unavailable(_))) {
            close(conn);
        }
        result
    }

    /// A connection from the pool by `deadline`; gives up at once when the pool has none
    /// and its attempts to open one fail meanwhile (the database is down, then).
    fn checkout(&self, deadline: Instant) -> Result<PooledConnection<Manager>, StoreError> {
        let failures = self.outage.connect_failures();
        let cannot_connect = || {
            format!(
                "cannot connect to the database: {}",
                self.outage.last_connect_error()
            )
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if self.outage.connect_failures() != failures {
                    let reason = cannot_connect();
                    self.outage.failed(&reason);
                    return Err(StoreError::Unavailable(reason));
                }
                return Err(StoreError::Unavailable(format!(
                    "no database connection became free within {:?}",
                    self.limits.connect
                )));
            }
            match self.pool.get_timeout(left.min(POLL)) {
                Ok(conn) => return Ok(conn),
                Err(_) => {
                    if self.outage.connect_failures() != failures
                        && self.pool.state().connections == 0
                    {
                        let reason = cannot_connect();
                        self.outage.failed(&reason);
                        return Err(StoreError::Unavailable(reason));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::BigInt;
    use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn rows(conn: &mut AnyConnection) -> i64 {
        diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result::<Count>(conn)
            .map(|c| c.n)
            .unwrap_or(-1)
    }

    #[test]
    fn a_calls_operation_is_the_name_of_the_function_its_closure_is_in() {
        fn named<F>(_: F) -> &'static str {
            operation(std::any::type_name::<F>())
        }
        fn lookup_client() -> &'static str {
            named(|c: &mut AnyConnection| rows(c))
        }
        assert_eq!(lookup_client(), "lookup_client");
        assert_eq!(operation("not a closure <T>"), "other");
        assert_eq!(
            operation("idbridge_store::clients::<impl idbridge_store::store::Store>::client::{{closure}}::{{closure}}"),
            "client"
        );
    }

    #[test]
    fn a_transaction_past_its_calls_deadline_rolls_back_instead_of_committing() {
        let mut conn = AnyConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        let insert = |c: &mut AnyConnection| -> Result<usize, StoreError> {
            Ok(diesel::sql_query("INSERT INTO t VALUES (1)").execute(c)?)
        };
        // In time: committed.
        DEADLINE.with(|d| d.set(Some(Instant::now() + Duration::from_secs(60))));
        assert_eq!(transaction(&mut conn, insert).unwrap(), 1);
        assert_eq!(rows(&mut conn), 1);
        // The caller was told "unavailable" meanwhile: rolled back.
        DEADLINE.with(|d| d.set(Some(Instant::now() - Duration::from_millis(1))));
        let err = transaction(&mut conn, insert).unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        DEADLINE.with(|d| d.set(None));
        assert_eq!(rows(&mut conn), 1, "the late insert did not commit");
    }
}
