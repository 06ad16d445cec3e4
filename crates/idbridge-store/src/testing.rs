//! Test support (feature `test-support`): throwaway databases for the conformance suite and
//! for other crates' tests — a fresh SQLite file, or a fresh Postgres database dropped on Drop.
//! These helpers panic on setup failure on purpose: a test must never skip silently.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;

use diesel::{Connection, PgConnection, RunQueryDsl};

/// Environment variable naming the Postgres admin URL used to create test databases.
pub const POSTGRES_URL_ENV: &str = "IDBRIDGE_TEST_POSTGRES_URL";
/// Used when [`POSTGRES_URL_ENV`] is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that exists for the lifetime of this value.
#[derive(Debug)]
pub struct TempDatabase {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite { dir: PathBuf },
    Postgres { admin_url: String, name: String },
}

fn unique_name() -> String {
    format!(
        "idb_t_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

impl TempDatabase {
    /// A fresh SQLite file in a fresh directory under the system temp dir.
    pub fn sqlite() -> TempDatabase {
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating temp dir {}: {e}", dir.display()));
        let file = dir.join("idbridge.db");
        TempDatabase {
            url: format!("sqlite://{}", file.display()),
            kind: Kind::Sqlite { dir },
        }
    }

    /// A fresh, uniquely named database on the Postgres server named by
    /// `IDBRIDGE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
    /// Panics when the server cannot be reached.
    pub fn postgres() -> TempDatabase {
        let admin_url =
            std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!(
                "cannot reach the test Postgres server ({e}); start one or point \
                 {POSTGRES_URL_ENV} at a server where this user may CREATE DATABASE"
            )
        });
        let name = unique_name();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .unwrap_or_else(|e| {
                panic!("CREATE DATABASE {name} failed ({e}); check {POSTGRES_URL_ENV}")
            });
        TempDatabase {
            url: with_database(&admin_url, &name),
            kind: Kind::Postgres { admin_url, name },
        }
    }

    /// The URL to pass to [`crate::Store::connect`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Postgres only: simulates the database going down (`true`: new connections are refused
    /// and every open one is killed) or coming back (`false`), without touching the server or
    /// any other database on it. Panics for SQLite.
    pub fn set_postgres_down(&self, down: bool) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            panic!("set_postgres_down needs a Postgres TempDatabase");
        };
        let mut admin = PgConnection::establish(admin_url)
            .unwrap_or_else(|e| panic!("cannot reach the test Postgres server: {e}"));
        diesel::sql_query(format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {}",
            !down
        ))
        .execute(&mut admin)
        .unwrap_or_else(|e| panic!("ALTER DATABASE {name} failed: {e}"));
        if down {
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("terminating connections to {name} failed: {e}"));
        }
    }
}

impl TempDatabase {
    /// Runs `sql` on this database behind the store's back (to set up states the API
    /// cannot reach, such as a migration missing from the migrations table).
    pub fn execute(&self, sql: &str) {
        let done = match &self.kind {
            Kind::Sqlite { dir } => {
                let path = dir.join("idbridge.db");
                diesel::SqliteConnection::establish(&path.display().to_string())
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        diesel::sql_query(sql)
                            .execute(&mut c)
                            .map_err(|e| e.to_string())
                    })
            }
            Kind::Postgres { .. } => PgConnection::establish(&self.url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    diesel::sql_query(sql)
                        .execute(&mut c)
                        .map_err(|e| e.to_string())
                }),
        };
        if let Err(e) = done {
            panic!("{sql}: {e}");
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Postgres { admin_url, name } => {
                // Never panic in Drop; a leftover database is only litter.
                let dropped = PgConnection::establish(admin_url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut admin| {
                        diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut admin)
                        .map_err(|e| e.to_string())
                    });
                if let Err(e) = dropped {
                    eprintln!("warning: could not drop test database {name}: {e}");
                }
            }
        }
    }
}

/// `admin_url` with its database name replaced by `name` (query parameters kept).
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
