//! Fixed SQL statements that the connection keeps prepared.
//!
//! diesel prepares a statement once and reuses it only when it can tell the SQL
//! cannot change from call to call. It never can for an `UPDATE` of the query
//! builder (the changeset may vary) or for [`diesel::sql_query`], so those are
//! sent afresh on every call: on Postgres a parse and plan, and an extra round
//! trip to prepare the unnamed statement; on SQLite a `sqlite3_prepare`.
//!
//! A [`Statement`] is one fixed SQL text with `?` where each bound value goes, in
//! order (no other `?` may appear in the text). Its text is its cache key, so the
//! connection prepares it on first use and reuses it after. The placeholders are
//! written as each backend spells them (`$1, $2…` on Postgres, `?` on SQLite), so
//! one text serves both.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;

/// A fixed statement and its bound values; see the module's documentation.
pub(crate) struct Statement<B> {
    sql: &'static str,
    binds: B,
}

/// `sql`, with nothing bound yet.
pub(crate) fn statement(sql: &'static str) -> Statement<()> {
    Statement { sql, binds: () }
}

impl<B> Statement<B> {
    /// Binds the value for the next `?`, as SQL type `ST`.
    pub(crate) fn bind<ST, T>(self, value: T) -> Statement<Bind<B, ST, T>> {
        Statement {
            sql: self.sql,
            binds: Bind {
                earlier: self.binds,
                value,
                sql_type: PhantomData,
            },
        }
    }
}

/// One bound value after the ones bound `earlier`.
pub(crate) struct Bind<B, ST, T> {
    earlier: B,
    value: T,
    sql_type: PhantomData<ST>,
}

/// Writes the text up to each bound value, then the value, earliest first.
pub(crate) trait Binds<DB: Backend> {
    fn walk<'b>(
        &'b self,
        pieces: &mut std::str::Split<'static, char>,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()>;
}

impl<DB: Backend> Binds<DB> for () {
    fn walk<'b>(
        &'b self,
        _: &mut std::str::Split<'static, char>,
        _: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        Ok(())
    }
}

impl<DB, B, ST, T> Binds<DB> for Bind<B, ST, T>
where
    DB: Backend + HasSqlType<ST>,
    B: Binds<DB>,
    T: ToSql<ST, DB>,
{
    fn walk<'b>(
        &'b self,
        pieces: &mut std::str::Split<'static, char>,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        self.earlier.walk(pieces, out)?;
        let Some(before) = pieces.next() else {
            return Err(mismatch());
        };
        out.push_sql(before);
        out.push_bind_param::<ST, T>(&self.value)
    }
}

fn mismatch() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        "a fixed statement has not as many `?` as bound values".into(),
    )
}

impl<DB: Backend, B: Binds<DB>> QueryFragment<DB> for Statement<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut pieces = self.sql.split('?');
        self.binds.walk(&mut pieces, &mut out)?;
        let (Some(last), None) = (pieces.next(), pieces.next()) else {
            return Err(mismatch());
        };
        out.push_sql(last);
        Ok(())
    }
}

// No static id: the cache key is the SQL text (with the bind types), which is fixed.
impl<B> QueryId for Statement<B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B, Conn> RunQueryDsl<Conn> for Statement<B> {}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{InstrumentationEvent, SimpleConnection};
    use diesel::sql_types::{BigInt, Text};
    use diesel::{Connection, PgConnection, SqliteConnection};

    use super::*;
    use crate::pool::AnyConnection;
    use crate::testing::TempDatabase;

    /// The SQL of each statement the connection prepared and kept, as it did.
    fn record_cached(c: &mut AnyConnection) -> Arc<Mutex<Vec<String>>> {
        let cached = Arc::new(Mutex::new(Vec::new()));
        let seen = cached.clone();
        let record = move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                if let Ok(mut seen) = seen.lock() {
                    seen.push(sql.to_owned());
                }
            }
        };
        match c {
            AnyConnection::Postgresql(pg) => pg.set_instrumentation(record),
            AnyConnection::Sqlite(lite) => lite.set_instrumentation(record),
        }
        cached
    }

    fn insert(c: &mut AnyConnection, id: i64, name: &str) -> QueryResult<usize> {
        statement("INSERT INTO t (id, name) VALUES (?, ?)")
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(name.to_owned())
            .execute(c)
    }

    /// Binds go where the `?` are, the text is prepared once and reused, and a
    /// statement whose `?` and values do not pair runs nothing.
    fn prepared_once(mut c: AnyConnection) {
        c.batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .unwrap();
        let cached = record_cached(&mut c);
        assert_eq!(insert(&mut c, 1, "one").unwrap(), 1);
        assert_eq!(insert(&mut c, 2, "two").unwrap(), 1);
        let renamed = statement("UPDATE t SET name = ? WHERE id = ?")
            .bind::<Text, _>("zwei")
            .bind::<BigInt, _>(2_i64)
            .execute(&mut c)
            .unwrap();
        assert_eq!(renamed, 1);
        let names: Vec<(i64, String)> = {
            use diesel::dsl::sql;
            diesel::select(sql::<(BigInt, Text)>("id, name FROM t ORDER BY id"))
                .load(&mut c)
                .unwrap()
        };
        assert_eq!(names, [(1, "one".to_owned()), (2, "zwei".to_owned())]);
        let cached = cached.lock().unwrap().clone();
        assert_eq!(
            cached
                .iter()
                .filter(|s| s.starts_with("INSERT INTO t"))
                .count(),
            1,
            "the insert is prepared once for two calls: {cached:?}"
        );
        assert!(cached.iter().any(|s| s.starts_with("UPDATE t SET")));

        let short = statement("UPDATE t SET name = ? WHERE id = ?")
            .bind::<Text, _>("drei")
            .execute(&mut c);
        assert!(matches!(
            short,
            Err(diesel::result::Error::QueryBuilderError(_))
        ));
        let long = statement("UPDATE t SET name = 'x'")
            .bind::<Text, _>("drei")
            .execute(&mut c);
        assert!(matches!(
            long,
            Err(diesel::result::Error::QueryBuilderError(_))
        ));
        assert!(insert(&mut c, 2, "again").is_err(), "the key is taken");
        let unchanged: Vec<String> = {
            use diesel::dsl::sql;
            diesel::select(sql::<Text>("name FROM t ORDER BY id"))
                .load(&mut c)
                .unwrap()
        };
        assert_eq!(unchanged, ["one", "zwei"]);
    }

    #[test]
    fn fixed_statements_are_prepared_once_on_sqlite() {
        let db = TempDatabase::sqlite();
        let path = db.url().trim_start_matches("sqlite://").to_owned();
        prepared_once(AnyConnection::Sqlite(
            SqliteConnection::establish(&path).unwrap(),
        ));
    }

    #[test]
    fn fixed_statements_are_prepared_once_on_postgres() {
        let db = TempDatabase::postgres();
        prepared_once(AnyConnection::Postgresql(
            PgConnection::establish(db.url()).unwrap(),
        ));
        // The server holds one prepared insert for three calls.
        let mut c = AnyConnection::Postgresql(PgConnection::establish(db.url()).unwrap());
        for id in 10..13 {
            insert(&mut c, id, "n").unwrap();
        }
        let held = |c: &mut AnyConnection| -> i64 {
            diesel::select(diesel::dsl::sql::<BigInt>(
                "count(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO t%'",
            ))
            .get_result(c)
            .unwrap()
        };
        assert_eq!(held(&mut c), 1);
        let mut other = AnyConnection::Postgresql(PgConnection::establish(db.url()).unwrap());
        let other = held(&mut other);
        assert_eq!(other, 0, "prepared statements belong to their connection");
    }
}
