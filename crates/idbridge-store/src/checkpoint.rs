//! SQLite checkpoints, mostly off the request path.
//!
//! In WAL mode SQLite copies the log back into the database file ("checkpoints")
//! every 1,000 pages by default, and it does so inside the commit that crosses the
//! mark, `fdatasync` included. Every write queued behind that commit waits, which
//! was most of the broker's tail latency on SQLite (docs/benchmarks.md). So the
//! writer connection turns automatic checkpoints off, and this thread checkpoints
//! every [`INTERVAL`], in two steps:
//!
//! 1. A `PASSIVE` checkpoint on the thread's own connection copies the bulk of
//!    the log. It takes neither the write lock nor any reader's lock: the writer
//!    keeps committing meanwhile.
//! 2. Pages committed during step 1 are still only in the log, and SQLite
//!    restarts the log from the top only when a write begins with every page
//!    copied. Under steady writes a checkpoint beside the writer never gets
//!    there, and the log grows without end (162 MB in ten seconds of the refresh
//!    benchmark, with reads slowing down as it grew). So when the log is longer
//!    than [`CATCH_UP_PAGES`], a second `PASSIVE` checkpoint runs *on the writer
//!    connection*: commits pause while it copies the few pages written since step
//!    1 (a few milliseconds), and the next write restarts the log.
//!
//! Never `RESTART` or `TRUNCATE` from the thread's own connection: those take the
//! write lock, and the writer's deferred transactions, which begin with a read,
//! get `SQLITE_BUSY` when they upgrade.
//!
//! The thread ends by itself once the last clone of the store is dropped.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::pool::{AnyConnection, DbPool};

/// Time between checkpoints: at a thousand writes a second this keeps the log
/// to a few megabytes.
const INTERVAL: Duration = Duration::from_millis(200);

/// A log longer than this (4 MB of 4 KiB pages, SQLite's own default mark) gets
/// step 2 on the writer.
const CATCH_UP_PAGES: i64 = 1_000;

/// A log (WAL) this many pages long means checkpoints cannot keep up — a reader
/// holds an old snapshot, or the disk is too slow; worth a warning.
const LONG_LOG_PAGES: i64 = 50_000;

/// The PRAGMAs the writer connection gets when this thread checkpoints for it.
pub(crate) const WRITER_PRAGMAS: &str =
    "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

#[derive(QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = BigInt)]
    busy: i64,
    #[diesel(sql_type = BigInt)]
    log: i64,
    #[diesel(sql_type = BigInt)]
    checkpointed: i64,
}

/// Starts the checkpoint thread for the database at `path`, whose single writer
/// connection is in `writer`; it runs while `alive` can be upgraded.
pub(crate) fn spawn<T: Send + Sync + 'static>(path: PathBuf, writer: DbPool, alive: Weak<T>) {
    let started = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(&path, &writer, &alive));
    if let Err(e) = started {
        tracing::error!(stage = "store", error = %e, "cannot start the SQLite checkpoint thread; the log (WAL) will grow until the broker restarts");
    }
}

fn run<T>(path: &std::path::Path, writer: &DbPool, alive: &Weak<T>) {
    let mut conn: Option<SqliteConnection> = None;
    let mut warned = false;
    loop {
        std::thread::sleep(INTERVAL);
        if alive.upgrade().is_none() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match open(path) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(stage = "store", error = %e, "cannot open a connection for SQLite checkpoints; retrying");
                    continue;
                }
            },
        };
        match checkpoint(c) {
            Ok(done) => {
                let done = if done.log > CATCH_UP_PAGES {
                    match catch_up(writer) {
                        Ok(after) => after,
                        Err(e) => {
                            tracing::warn!(stage = "store", error = %e, "SQLite checkpoint on the writer failed; retrying");
                            done
                        }
                    }
                } else {
                    done
                };
                // The log's length and what of it is not yet in the database
                // file: the checkpoint lag, in pages.
                metrics::gauge!("idbridge_sqlite_wal_pages").set(done.log.max(0) as f64);
                metrics::gauge!("idbridge_sqlite_wal_uncheckpointed_pages")
                    .set((done.log - done.checkpointed).max(0) as f64);
                let behind = done.busy != 0 || done.log - done.checkpointed > LONG_LOG_PAGES;
                if behind && done.log > LONG_LOG_PAGES && !warned {
                    tracing::warn!(stage = "store", log_pages = done.log, checkpointed_pages = done.checkpointed, "the SQLite log (WAL) is long and checkpoints are not catching up; a long-running reader (a backup, an sqlite3 shell) may be holding an old snapshot");
                    warned = true;
                } else if !behind {
                    warned = false;
                }
            }
            Err(e) => {
                tracing::warn!(stage = "store", error = %e, "SQLite checkpoint failed; retrying with a new connection");
                conn = None;
            }
        }
    }
}

fn checkpoint(c: &mut SqliteConnection) -> Result<Checkpointed, diesel::result::Error> {
    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result::<Checkpointed>(c)
}

/// Step 2: the pages left, copied by the writer connection itself.
fn catch_up(writer: &DbPool) -> Result<Checkpointed, String> {
    let mut conn = writer.get().map_err(|e| e.to_string())?;
    match &mut *conn {
        AnyConnection::Sqlite(c) => checkpoint(c).map_err(|e| e.to_string()),
        AnyConnection::Postgresql(_) => Err("not a SQLite connection".into()),
    }
}

fn open(path: &std::path::Path) -> Result<SqliteConnection, String> {
    let mut c = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| e.to_string())?;
    c.batch_execute("PRAGMA busy_timeout = 5000;")
        .map_err(|e| e.to_string())?;
    Ok(c)
}
