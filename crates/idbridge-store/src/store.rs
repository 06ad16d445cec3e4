//! The `Store` handle: connecting, migrations, health, and running blocking diesel work on
//! tokio's blocking pool against the right r2d2 pool.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use diesel::r2d2::R2D2Connection;
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::StoreError;
use crate::pool::{build_pools, AnyConnection, Backend, DbPool, Pools, Target};

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

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
    wait: Duration,
    /// Held by every clone; background threads (the SQLite checkpointer) stop
    /// once it is gone.
    alive: Arc<()>,
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
        let pools = build_pools(&target, opts.max_connections, opts.connect_timeout)?;
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
            alive: Arc::new(()),
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
        self.write(|conn| match conn {
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

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.ping()?)).await
    }

    /// Runs `f` with a connection from the reader pool (read-only on SQLite).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self.enter(&self.read_gate).await?;
        run_blocking(self.pools.reader.clone(), f).await
    }

    /// Runs `f` with a connection from the writer pool (the single writer on SQLite).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self.enter(&self.write_gate).await?;
        run_blocking(self.pools.writer.clone(), f).await
    }

    async fn enter<'a>(
        &self,
        gate: &'a Semaphore,
    ) -> Result<tokio::sync::SemaphorePermit<'a>, StoreError> {
        match tokio::time::timeout(self.wait, gate.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(StoreError::Unavailable("the store is shutting down".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no database connection became free within {:?}",
                self.wait
            ))),
        }
    }
}

async fn run_blocking<T, F>(pool: DbPool, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
    .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
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
