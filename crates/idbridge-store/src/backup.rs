//! Online SQLite backups: `VACUUM INTO` a temporary file next to the destination, then
//! publish it under its final name only once it is whole.
//!
//! `VACUUM INTO` copies from one read transaction on the main database: a consistent
//! snapshot, and in WAL mode the broker's writer (another process) goes on committing
//! meanwhile. It runs on this store's writer connection because the readers are
//! `query_only`, which refuses to write even the new file; it takes no write lock on
//! the database, but it does occupy this store's one writer while it copies, which is
//! why `idbridge backup` opens a store of its own.

use std::path::{Path, PathBuf};

use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::call::Limits;
use crate::error::StoreError;
use crate::pool::{AnyConnection, Target};
use crate::store::Store;

/// A finished backup.
#[derive(Debug, Clone)]
pub struct SqliteBackup {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The newest migration it holds (`version_name`, as in `migrations/sqlite`), if any.
    pub newest_migration: Option<String>,
}

/// The SQLite file a storage URL names, or `None` for Postgres; an error for a URL
/// the store would refuse. Opens nothing.
pub fn sqlite_path(url: &str) -> Result<Option<PathBuf>, StoreError> {
    Ok(match Target::parse(url)? {
        Target::Sqlite(path) => Some(path),
        Target::Postgres(_) => None,
    })
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    version: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Check {
    #[diesel(sql_type = diesel::sql_types::Text)]
    quick_check: String,
}

impl Store {
    /// Copies the SQLite database to `to`, which must not exist. Nothing is left at `to`
    /// (nor any temporary file) when this fails.
    pub async fn backup_sqlite(&self, to: &Path) -> Result<SqliteBackup, StoreError> {
        let to = to.to_owned();
        // No query deadline: copying a large database takes as long as it takes.
        let limits = Limits {
            connect: self.wait,
            query: None,
        };
        self.call(true, limits, true, move |conn| match conn {
            AnyConnection::Sqlite(c) => copy(c, &to),
            AnyConnection::Postgresql(_) => Err(StoreError::Config(
                "a Postgres database is backed up with pg_dump, not by idbridge".into(),
            )),
        })
        .await
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Database(format!("{what} {}: {e}", path.display()))
}

fn copy(conn: &mut SqliteConnection, to: &Path) -> Result<SqliteBackup, StoreError> {
    if to.exists() {
        return Err(exists(to));
    }
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = to
        .file_name()
        .ok_or_else(|| StoreError::Config(format!("{} names no file", to.display())))?;
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.partial-{}-{suffix}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_and_publish(conn, &tmp, to, &dir);
    // Whatever happened, the temporary name goes (after a success it is a second link).
    let _ = std::fs::remove_file(&tmp);
    result
}

fn exists(to: &Path) -> StoreError {
    StoreError::Conflict(format!(
        "{} already exists; not overwriting it",
        to.display()
    ))
}

fn write_and_publish(
    conn: &mut SqliteConnection,
    tmp: &Path,
    to: &Path,
    dir: &Path,
) -> Result<SqliteBackup, StoreError> {
    let tmp_text = tmp
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("{} is not valid UTF-8", tmp.display())))?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(tmp_text)
        .execute(conn)?;
    // Read the copy back: it opens, passes a quick check, and says what schema it has.
    let newest_migration = {
        let mut copy = SqliteConnection::establish(tmp_text)
            .map_err(|e| StoreError::Database(format!("cannot open the copy: {e}")))?;
        let checks: Vec<Check> = diesel::sql_query("PRAGMA quick_check").load(&mut copy)?;
        if checks.iter().any(|c| c.quick_check != "ok") {
            return Err(StoreError::Corrupt(format!(
                "the copy fails SQLite's quick_check: {}",
                checks
                    .iter()
                    .map(|c| c.quick_check.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let newest: Vec<Version> =
            diesel::sql_query("SELECT MAX(version) AS version FROM __diesel_schema_migrations")
                .load(&mut copy)
                .unwrap_or_default();
        newest.into_iter().next().and_then(|v| v.version)
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot sync", tmp, e))?;
    // A hard link publishes the whole file under its name, and fails if something
    // appeared there meanwhile (a rename would replace it).
    match std::fs::hard_link(tmp, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists(to)),
        Err(e) => return Err(io("cannot write", to, e)),
    }
    let _ = std::fs::remove_file(tmp);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let bytes = std::fs::metadata(to)
        .map_err(|e| io("cannot read", to, e))?
        .len();
    Ok(SqliteBackup {
        path: to.to_owned(),
        bytes,
        newest_migration: newest_migration.map(|v| crate::store::sqlite_migration_name(&v)),
    })
}
