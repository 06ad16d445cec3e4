//! Database URLs, the backend-switching connection type and the r2d2 pools.
//! SQLite gets a single-connection writer pool and a read-only reader pool; Postgres one shared pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::error::StoreError;

/// A connection to whichever database the store was configured with; every query is written
/// once against this type.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database engine a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A Postgres connection URL, passed to libpq as given.
    Postgres(String),
}

pub(crate) const ACCEPTED_URLS: &str = "sqlite://relative/path.db, sqlite:///absolute/path.db, \
     sqlite:relative.db, postgres://... or postgresql://...";

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlite:///abs -> /abs ; sqlite://rel -> rel ; sqlite:rel -> rel
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Config(format!(
                    "storage URL {url:?} names no database file; accepted forms: {ACCEPTED_URLS}"
                )));
            }
            if path == ":memory:" || path.starts_with("file:") || path.contains('?') {
                return Err(StoreError::Config(format!(
                    "storage URL {url:?}: in-memory databases, URI filenames and query \
                     parameters are not supported; accepted forms: {ACCEPTED_URLS}"
                )));
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        let shown = match url.split_once("://") {
            // never echo a password back into logs
            Some((scheme, _)) => format!("{scheme}://..."),
            None => url.to_owned(),
        };
        Err(StoreError::Config(format!(
            "unsupported storage URL {shown:?}; accepted forms: {ACCEPTED_URLS}"
        )))
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Opens connections of the configured variant only (diesel's own `ConnectionManager` would
/// try every variant in turn, so a Postgres URL could end up opened as a SQLite file).
#[derive(Debug)]
pub(crate) struct Manager {
    target: Target,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match &self.target {
            Target::Postgres(url) => PgConnection::establish(url).map(AnyConnection::Postgresql),
            Target::Sqlite(path) => {
                SqliteConnection::establish(&path.to_string_lossy()).map(AnyConnection::Sqlite)
            }
        }
        .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Sets the per-connection SQLite PRAGMAs; does nothing for Postgres connections.
#[derive(Debug)]
struct SqlitePragmas {
    read_only: bool,
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            // busy_timeout first, so that switching to WAL waits for a concurrent opener.
            c.batch_execute(
                "PRAGMA busy_timeout = 5000; \
                 PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
            if self.read_only {
                c.batch_execute("PRAGMA query_only = ON;")
                    .map_err(diesel::r2d2::Error::QueryError)?;
            } else {
                // Checkpoints run on their own thread (crate::checkpoint), not in commits.
                c.batch_execute(crate::checkpoint::WRITER_PRAGMAS)
                    .map_err(diesel::r2d2::Error::QueryError)?;
            }
        }
        Ok(())
    }
}

pub(crate) type DbPool = Pool<Manager>;

/// The pools a store uses: `writer` for every method that writes, `reader` for the rest.
#[derive(Clone)]
pub(crate) struct Pools {
    pub(crate) writer: DbPool,
    pub(crate) reader: DbPool,
}

fn build_pool(target: &Target, max_size: u32, timeout: Duration, read_only: bool) -> DbPool {
    Pool::builder()
        .max_size(max_size.max(1))
        // Connections are opened on demand; a database that is down at start-up or later
        // only makes checkouts time out (-> StoreError::Unavailable) until it is back.
        .min_idle(Some(0))
        .connection_timeout(timeout)
        // A Postgres connection can die with the server; check it before use so a
        // restart costs no failed request. A SQLite file connection cannot, and
        // the check would be a query on every store call.
        .test_on_check_out(matches!(target, Target::Postgres(_)))
        .connection_customizer(Box::new(SqlitePragmas { read_only }))
        .build_unchecked(Manager {
            target: target.clone(),
        })
}

pub(crate) fn build_pools(
    target: &Target,
    max_connections: u32,
    timeout: Duration,
) -> Result<Pools, StoreError> {
    match target {
        Target::Postgres(_) => {
            let pool = build_pool(target, max_connections, timeout, false);
            Ok(Pools {
                writer: pool.clone(),
                reader: pool,
            })
        }
        Target::Sqlite(path) => {
            create_parent_dir(path)?;
            // One writer connection: writes in this process queue in the pool instead of
            // fighting over SQLite's single write lock (SQLITE_BUSY). Readers run beside it (WAL).
            let writer = build_pool(target, 1, timeout, false);
            let reader = build_pool(target, max_connections, timeout, true);
            Ok(Pools { writer, reader })
        }
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create the directory {} for the SQLite database: {e}",
                dir.display()
            ))
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accepted_urls() {
        assert_eq!(
            Target::parse("sqlite://data/idb.db").unwrap(),
            Target::Sqlite("data/idb.db".into())
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/idb.db").unwrap(),
            Target::Sqlite("/var/lib/idb.db".into())
        );
        assert_eq!(
            Target::parse("sqlite:idb.db").unwrap(),
            Target::Sqlite("idb.db".into())
        );
        assert_eq!(
            Target::parse("postgres://u@h/db").unwrap(),
            Target::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
    }

    #[test]
    fn rejects_other_urls_naming_accepted_forms() {
        for url in [
            "mysql://root:hunter2@h/db",
            "idb.db",
            "sqlite:",
            "sqlite://",
            "sqlite::memory:",
        ] {
            let err = Target::parse(url).unwrap_err().to_string();
            assert!(err.contains("sqlite:///absolute/path.db"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
