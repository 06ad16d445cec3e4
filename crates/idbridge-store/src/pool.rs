//! Database URLs, the backend-switching connection type and the r2d2 pools.
//! SQLite gets a single-connection writer pool and a read-only reader pool; Postgres one shared pool.
//! Postgres connections get the timeouts that let the database and the OS end a stalled call
//! (see [`postgres_conninfo`] and [`PgSession`]).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::error::StoreError;
use crate::outage::Outage;

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
/// try every variant in turn, so a Postgres URL could end up opened as a SQLite file), and
/// tells the store's [`Outage`] whether the database accepted them.
#[derive(Debug)]
pub(crate) struct Manager {
    target: Target,
    /// For Postgres: the URL with the connection's timeouts added ([`postgres_conninfo`]).
    conninfo: String,
    session: PgSession,
    outage: Arc<Outage>,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let opened = match &self.target {
            Target::Postgres(_) => PgConnection::establish(&self.conninfo)
                .map_err(diesel::r2d2::Error::ConnectionError)
                .and_then(|mut c| {
                    c.batch_execute(&self.session.settings(self.session.query))
                        .map_err(diesel::r2d2::Error::QueryError)?;
                    Ok(AnyConnection::Postgresql(c))
                }),
            Target::Sqlite(path) => SqliteConnection::establish(&path.to_string_lossy())
                .map(AnyConnection::Sqlite)
                .map_err(diesel::r2d2::Error::ConnectionError),
        };
        match &opened {
            Ok(_) => self.outage.answered(),
            Err(e) => self.outage.connect_failed(&e.to_string()),
        }
        opened
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection whose call overran or failed on the connection is closed, not reused
        // (crate::call, through `close`).
        std::thread::panicking() || CLOSE.with(Cell::get) || conn.is_broken()
    }
}

/// The server-side timeouts of a Postgres session: `statement_timeout` cancels a statement
/// that runs longer than a call may, `idle_in_transaction_session_timeout` ends (and rolls
/// back) a transaction whose client stopped talking mid-way — a stalled network, or a
/// caller's thread stuck elsewhere — so it cannot hold row locks or commit late.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgSession {
    /// The store's `query_timeout`.
    pub(crate) query: Duration,
}

impl PgSession {
    /// `SET` statements for a call whose queries may take `statement` (zero: no limit).
    pub(crate) fn settings(&self, statement: Duration) -> String {
        format!(
            "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {};",
            statement.as_millis(),
            self.query.as_millis()
        )
    }
}

/// `url` with the libpq connection parameters that bound a connection's waits at the OS
/// level, unless the URL sets them itself: `connect_timeout` (a server that accepts TCP but
/// never answers the start-up), TCP keepalives and `tcp_user_timeout` (a network partition
/// makes a socket error out instead of waiting for ever, so the thread and the connection
/// stuck on it are freed).
pub(crate) fn postgres_conninfo(url: &str, connect: Duration, query: Duration) -> String {
    let secs = |d: Duration| d.as_secs_f64().ceil().max(1.0) as u64;
    let params = [
        ("connect_timeout", secs(connect).to_string()),
        ("keepalives", "1".to_owned()),
        ("keepalives_idle", secs(query).to_string()),
        ("keepalives_interval", "1".to_owned()),
        ("keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", (secs(query) * 1000).to_string()),
    ];
    let given: Vec<&str> = url
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .map(|p| p.split('=').next().unwrap_or(p))
                .collect()
        })
        .unwrap_or_default();
    let mut out = url.to_owned();
    for (key, value) in params {
        if given.contains(&key) {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

thread_local! {
    /// Set while a connection that must not be reused is dropped (read by
    /// `Manager::has_broken`, which r2d2 calls on this thread as the connection is returned).
    static CLOSE: Cell<bool> = const { Cell::new(false) };
}

/// Drops `conn`, closing it instead of returning it to the pool.
pub(crate) fn close(conn: diesel::r2d2::PooledConnection<Manager>) {
    CLOSE.with(|c| c.set(true));
    drop(conn);
    CLOSE.with(|c| c.set(false));
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

/// What every pool of a store shares.
pub(crate) struct PoolSettings {
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) query_timeout: Duration,
    pub(crate) outage: Arc<Outage>,
}

fn build_pool(target: &Target, max_size: u32, s: &PoolSettings, read_only: bool) -> DbPool {
    let conninfo = match target {
        Target::Postgres(url) => postgres_conninfo(url, s.connect_timeout, s.query_timeout),
        Target::Sqlite(_) => String::new(),
    };
    Pool::builder()
        .max_size(max_size.max(1))
        // Connections are opened on demand; a database that is down at start-up or later
        // only makes checkouts time out (-> StoreError::Unavailable) until it is back.
        .min_idle(Some(0))
        .connection_timeout(s.connect_timeout)
        // A Postgres connection can die with the server, so each call checks its
        // connection before use (crate::call), so a restart costs no failed request: there,
        // not here, because a check that hangs on a stalled socket must count against the
        // call's query deadline. A SQLite file connection cannot die that way.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SqlitePragmas { read_only }))
        .build_unchecked(Manager {
            target: target.clone(),
            conninfo,
            session: PgSession {
                query: s.query_timeout,
            },
            outage: s.outage.clone(),
        })
}

pub(crate) fn build_pools(target: &Target, settings: &PoolSettings) -> Result<Pools, StoreError> {
    match target {
        Target::Postgres(_) => {
            let pool = build_pool(target, settings.max_connections, settings, false);
            Ok(Pools {
                writer: pool.clone(),
                reader: pool,
            })
        }
        Target::Sqlite(path) => {
            create_parent_dir(path)?;
            // One writer connection: writes in this process queue in the pool instead of
            // fighting over SQLite's single write lock (SQLITE_BUSY). Readers run beside it (WAL).
            let writer = build_pool(target, 1, settings, false);
            let reader = build_pool(target, settings.max_connections, settings, true);
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
    fn postgres_urls_get_timeouts_unless_they_set_them() {
        let d = Duration::from_secs;
        assert_eq!(
            postgres_conninfo("postgres://u@h/db", d(5), d(3)),
            "postgres://u@h/db?connect_timeout=5&keepalives=1&keepalives_idle=3\
             &keepalives_interval=1&keepalives_count=3&tcp_user_timeout=3000"
        );
        let own = postgres_conninfo(
            "postgres://u@h/db?sslmode=require&connect_timeout=30&tcp_user_timeout=0",
            Duration::from_millis(500),
            d(3),
        );
        assert!(own.starts_with("postgres://u@h/db?sslmode=require&connect_timeout=30&tcp_user_timeout=0&keepalives=1"), "{own}");
        assert_eq!(own.matches("connect_timeout").count(), 1, "{own}");
        assert_eq!(own.matches("tcp_user_timeout").count(), 1, "{own}");
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
