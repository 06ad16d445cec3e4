//! The `Store` handle: connecting, migrations, health, and running blocking diesel work on
//! tokio's blocking pool against the right r2d2 pool, within each call's deadlines
//! ([`crate::call`]) and failing at once while the database is known to be down
//! ([`crate::outage`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use diesel::r2d2::R2D2Connection;
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::call::{Job, Limits, Start, StartCell};
use crate::error::StoreError;
use crate::outage::{Admission, Outage};
use crate::pool::{build_pools, AnyConnection, Backend, PgSession, PoolSettings, Pools, Target};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Key of the Postgres advisory lock held while migrating ("idbridge" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6964_6272_6964_6765;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections open at once (Postgres pool; SQLite reader pool — the SQLite writer
    /// pool always has exactly one).
    pub max_connections: u32,
    /// How long a method waits for a connection before failing with `StoreError::Unavailable`.
    pub connect_timeout: Duration,
    /// How long a method's queries may take once it has a connection before it fails with
    /// `StoreError::Unavailable` (on Postgres also each connection's `statement_timeout`).
    pub query_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Expiry collection may delete a large backlog in one call (after a long pause, say): its
/// own, longer bound.
const GC_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Slack for the blocking pool to start a call's thread, beyond `connect_timeout`.
const START_SLACK: Duration = Duration::from_secs(1);

/// The broker's storage: one API over SQLite or Postgres. Cheap to clone; every method is
/// async and runs its queries on tokio's blocking thread pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    pools: Pools,
    /// At most as many blocking tasks as there are connections: callers beyond that
    /// wait here, asynchronously, instead of as parked threads fighting over the
    /// pool (on SQLite every write waits for the one writer).
    read_gate: Arc<Semaphore>,
    write_gate: Arc<Semaphore>,
    pub(crate) wait: Duration,
    pub(crate) query: Duration,
    outage: Arc<Outage>,
    /// Held by every clone; background threads (the SQLite checkpointer) stop
    /// once it is gone.
    alive: Arc<()>,
    /// Refresh grants, written in batches (crate::batch).
    pub(crate) refresh_batch:
        Arc<crate::batch::Batch<crate::tokens::RefreshJob, crate::tokens::RefreshOutcome>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens pools for `url` (`sqlite://relative/path.db`, `sqlite:///abs/path.db`,
    /// `sqlite:relative.db`, `postgres://...`, `postgresql://...`) and checks that one
    /// connection can be made. Creates the SQLite file and its directory if missing.
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let target = Target::parse(url)?;
        let backend = target.backend();
        let outage = Arc::new(Outage::default());
        let pools = build_pools(
            &target,
            &PoolSettings {
                max_connections: opts.max_connections,
                connect_timeout: opts.connect_timeout,
                query_timeout: opts.query_timeout,
                outage: outage.clone(),
            },
        )?;
        let readers = opts.max_connections.max(1) as usize;
        // SQLite has one writer connection; letting a few tasks queue on it keeps
        // the hand-over from one write to the next short.
        let writers = match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => readers,
        };
        let store = Store {
            backend,
            pools,
            read_gate: Arc::new(Semaphore::new(readers)),
            write_gate: Arc::new(Semaphore::new(writers)),
            wait: opts.connect_timeout,
            query: opts.query_timeout,
            outage,
            alive: Arc::new(()),
            refresh_batch: crate::tokens::refresh_batch(backend),
        };
        // The writer first: on SQLite it creates the file and switches it to WAL.
        store.write(|conn| Ok(conn.ping()?)).await?;
        if let Target::Sqlite(path) = &target {
            crate::checkpoint::spawn(
                path.clone(),
                store.pools.writer.clone(),
                Arc::downgrade(&store.alive),
            );
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations and returns the names of those applied now (empty when the
    /// schema was up to date). On Postgres an advisory lock makes concurrent callers (several
    /// broker instances starting at once) take turns.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        // No query deadline: a migration may rewrite a large table.
        let limits = Limits {
            connect: self.wait,
            query: None,
        };
        self.call(true, limits, false, |conn| match conn {
            AnyConnection::Sqlite(c) => apply_migrations(c, SQLITE_MIGRATIONS),
            AnyConnection::Postgresql(c) => {
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(c)?;
                let applied = apply_migrations(c, POSTGRES_MIGRATIONS);
                let unlocked =
                    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                        .execute(c);
                let applied = applied?;
                unlocked?;
                Ok(applied)
            }
        })
        .await
    }

    /// Names of the embedded migrations the database has not applied (empty when the
    /// schema is up to date). Only reads the migrations table: cheap enough for a
    /// readiness probe, and never changes anything.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| match conn {
            AnyConnection::Sqlite(c) => not_applied(c, SQLITE_MIGRATIONS),
            AnyConnection::Postgresql(c) => not_applied(c, POSTGRES_MIGRATIONS),
        })
        .await
    }

    /// Checks that the database answers. Always asks the database, even while it is known
    /// to be down (this is how the store finds out it is back).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(false, self.limits(), false, |conn| Ok(conn.ping()?))
            .await
    }

    /// [`Store::ping`], answering within `bound` however the database behaves (for health
    /// checks). A ping still under way then goes on in the background and counts as usual.
    pub async fn ping_within(&self, bound: Duration) -> Result<(), StoreError> {
        let store = self.clone();
        let ping = tokio::spawn(async move { store.ping().await });
        match tokio::time::timeout(bound, ping).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(StoreError::Database(format!("ping task failed: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer a ping within {bound:?}"
            ))),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            connect: self.wait,
            query: Some(self.query),
        }
    }

    /// Runs `f` with a connection from the reader pool (read-only on SQLite).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(false, self.limits(), true, f).await
    }

    /// Runs `f` with a connection from the writer pool (the single writer on SQLite).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(true, self.limits(), true, f).await
    }

    /// [`Store::write`] for expiry collection, whose deletes get a longer bound.
    pub(crate) async fn write_gc<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let limits = Limits {
            connect: self.wait,
            query: Some(GC_QUERY_TIMEOUT.max(self.query)),
        };
        self.call(true, limits, true, f).await
    }

    /// One call: fails at once while the database is known to be down (`guarded`; a trial
    /// ping goes out meanwhile), else runs `f` on the blocking pool and waits for it no
    /// longer than its deadlines allow.
    pub(crate) async fn call<T, F>(
        &self,
        writer: bool,
        limits: Limits,
        guarded: bool,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if guarded {
            match self.outage.admit() {
                Admission::Go => {}
                Admission::Refuse(e) => return Err(e),
                Admission::RefuseAndTry(e) => {
                    self.spawn_trial();
                    return Err(e);
                }
            }
        }
        let pool_label = if writer { "writer" } else { "reader" };
        let begun = std::time::Instant::now();
        let in_flight = metrics::gauge!("idbridge_store_calls_in_flight", "pool" => pool_label);
        in_flight.increment(1.0);
        let span = crate::call::span::<F>(self.backend, pool_label);
        let result =
            tracing::Instrument::instrument(self.call_timed(writer, limits, f), span.clone()).await;
        if let Err(e) = &result {
            span.record("otel.status_code", "error");
            span.record(
                "outcome",
                if e.is_unavailable() {
                    "unavailable"
                } else {
                    "error"
                },
            );
        }
        in_flight.decrement(1.0);
        let pool = if writer {
            &self.pools.writer
        } else {
            &self.pools.reader
        };
        record_pool(pool_label, pool);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        metrics::histogram!("idbridge_store_call_duration_seconds", "pool" => pool_label, "outcome" => outcome)
            .record(begun.elapsed().as_secs_f64());
        result
    }

    /// [`Store::call`] past the outage guard: a turn, a connection, the work.
    async fn call_timed<T, F>(&self, writer: bool, limits: Limits, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool_label = if writer { "writer" } else { "reader" };
        let begun = std::time::Instant::now();
        let (pool, gate) = if writer {
            (&self.pools.writer, &self.write_gate)
        } else {
            (&self.pools.reader, &self.read_gate)
        };
        let turn = self.enter(gate).await?;
        let job = Job {
            pool: pool.clone(),
            outage: self.outage.clone(),
            backend: self.backend,
            limits,
            session: PgSession { query: self.query },
            pool_label,
        };
        let start = StartCell::new();
        let job_start = start.clone();
        // The thread holds the turn: one stuck on a stalled connection keeps it.
        let mut task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            job.run(&job_start, begun, f)
        });
        // Wait for the task; at each deadline, look where it stands. Until it has a
        // connection the deadline is the connect limit's, then the query limit's.
        let connect_by = begun + limits.connect + START_SLACK;
        let result = loop {
            let wake_at = match start.update(|s| s) {
                Start::Waiting | Start::Abandoned => connect_by,
                Start::Started(Some(at)) => at,
                Start::Started(None) => break joined(task.await),
            };
            if let Ok(done) =
                tokio::time::timeout_at(tokio::time::Instant::from_std(wake_at), &mut task).await
            {
                break joined(done);
            }
            let now = start.update(|s| match s {
                Start::Waiting => Start::Abandoned,
                other => other,
            });
            match now {
                Start::Waiting | Start::Abandoned => {
                    return Err(StoreError::Unavailable(format!(
                        "no database connection became free within {:?}",
                        limits.connect
                    )))
                }
                Start::Started(Some(at)) if std::time::Instant::now() >= at => {
                    let reason = format!(
                        "the database did not answer within {:?}",
                        limits.query.unwrap_or_default()
                    );
                    self.outage.failed(&reason);
                    break Err(StoreError::Unavailable(reason));
                }
                // Started after the connect deadline was set: wait on for the query's.
                Start::Started(_) => continue,
            }
        };
        if result.is_ok() {
            self.outage.answered();
        }
        result
    }

    /// The one trial ping while the database is down.
    fn spawn_trial(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let _ = store.ping().await;
            store.outage.trial_ended();
        });
    }

    async fn enter(&self, gate: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, StoreError> {
        match tokio::time::timeout(self.wait, gate.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(StoreError::Unavailable("the store is shutting down".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no database connection became free within {:?}",
                self.wait
            ))),
        }
    }
}

fn joined<T>(done: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    done.map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
}

fn apply_migrations<DB, C>(
    conn: &mut C,
    source: EmbeddedMigrations,
) -> Result<Vec<String>, StoreError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::Database(format!("migration failed: {e}"))
    };
    let pending = conn.pending_migrations(source).map_err(failed)?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in pending {
        conn.run_migration(&migration).map_err(failed)?;
        let name = migration.name().to_string();
        tracing::info!(migration = %name, "applied database migration");
        applied.push(name);
    }
    Ok(applied)
}

/// The full name (`version_name`) of the embedded SQLite migration with `version`, or
/// the version itself when this build does not know it (a newer database).
pub(crate) fn sqlite_migration_name(version: &str) -> String {
    use diesel::migration::MigrationSource;
    let migrations: Vec<Box<dyn diesel::migration::Migration<diesel::sqlite::Sqlite>>> =
        SQLITE_MIGRATIONS.migrations().unwrap_or_default();
    migrations
        .iter()
        .find(|m| m.name().version().to_string() == version)
        .map(|m| m.name().to_string())
        .unwrap_or_else(|| version.to_owned())
}

#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// The embedded migrations whose version is missing from `__diesel_schema_migrations`
/// (all of them when the table does not exist yet).
fn not_applied<DB, C>(conn: &mut C, source: EmbeddedMigrations) -> Result<Vec<String>, StoreError>
where
    DB: diesel::backend::Backend + 'static,
    C: diesel::Connection<Backend = DB> + diesel::connection::LoadConnection,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
    AppliedVersion: diesel::QueryableByName<DB>,
    diesel::query_builder::SqlQuery: diesel::query_builder::QueryFragment<DB>,
{
    use diesel::migration::MigrationSource;
    let embedded = source
        .migrations()
        .map_err(|e| StoreError::Database(format!("embedded migrations: {e}")))?;
    let applied: Vec<AppliedVersion> =
        match diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(conn) {
            Ok(rows) => rows,
            // No migrations table: nothing has been applied.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("__diesel_schema_migrations") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
    let applied: std::collections::HashSet<String> =
        applied.into_iter().map(|r| r.version).collect();
    Ok(embedded
        .iter()
        .map(|m| m.name())
        .filter(|name| !applied.contains(&name.version().to_string()))
        .map(|name| name.to_string())
        .collect())
}

/// The pool's size now: open connections in use and idle, and its ceiling
/// (`idbridge_store_pool_connections`, `idbridge_store_pool_max_connections`).
fn record_pool(pool_label: &'static str, pool: &crate::pool::DbPool) {
    let state = pool.state();
    let idle = f64::from(state.idle_connections);
    let open = f64::from(state.connections);
    metrics::gauge!("idbridge_store_pool_connections", "pool" => pool_label, "state" => "idle")
        .set(idle);
    metrics::gauge!("idbridge_store_pool_connections", "pool" => pool_label, "state" => "in_use")
        .set(open - idle);
    metrics::gauge!("idbridge_store_pool_max_connections", "pool" => pool_label)
        .set(f64::from(pool.max_size()));
}
