//! The SQLite backend: a file beside the engine, nothing to install.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, ToSql, TransactionBehavior};

use super::schema::SQLITE;
use super::sql::{Cell, Conn, Row, Value};
use crate::error::Error;

/// An open SQLite file.
pub(super) struct Sqlite {
    conn: Connection,
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Self::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Self::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(n)),
            Self::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

impl Sqlite {
    /// Opens (creating if needed) the file at `path` and brings its schema up to date.
    pub(super) fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Database(format!("{}: {e}", dir.display())))?;
        }
        let at = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Error::NotADatabase(path.to_owned()),
            _ => Error::Database(format!("{}: {e}", path.display())),
        };
        let conn = Connection::open(path).map_err(at)?;
        // WAL: readers (`subnode nodes`) never block the engine's writes, and the engine's
        // batched transactions commit without a full fsync of the main file each time.
        conn.busy_timeout(Duration::from_secs(5)).map_err(at)?;
        // Two openers switching a new file to WAL at once can each hold the lock the other
        // needs; SQLite then fails one at once rather than wait, so it tries again.
        let mut tries = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            tries += 1;
            if e.sqlite_error_code() != Some(ErrorCode::DatabaseBusy) || tries == 100 {
                return Err(at(e));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(at)?;
        let mut store = Self { conn };
        store.migrate(path)?;
        Ok(store)
    }

    fn migrate(&mut self, path: &Path) -> Result<(), Error> {
        loop {
            // The write lock before the version is read: two processes opening a new file at
            // once take turns, and the second finds the steps done, instead of both creating
            // the tables.
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version > SQLITE.len() {
                return Err(Error::SchemaTooNew { found: version, known: SQLITE.len() });
            }
            let Some(step) = SQLITE.get(version) else { return Ok(()) };
            // Version 0 with tables in it is some other program's database: adding ours to it
            // would hide the mistake.
            let tables: i64 = tx.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
            if version == 0 && tables > 0 {
                return Err(Error::NotADatabase(path.to_owned()));
            }
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
        }
    }
}

impl Conn for Sqlite {
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<u64, Error> {
        let changed = self.conn.prepare_cached(sql)?.execute(params_from_iter(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn execute_each(&mut self, sql: &'static str, each: &[&[Value<'_>]]) -> Result<Vec<u64>, Error> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        each.iter()
            .map(|params| Ok(u64::try_from(stmt.execute(params_from_iter(*params))?).unwrap_or(u64::MAX)))
            .collect()
    }

    fn query(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<Vec<Row>, Error> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let cells = (0..columns).map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Cell::Text(t.to_owned()),
                        Err(_) => Cell::Other("text that is not UTF-8"),
                    },
                    ValueRef::Real(_) => Cell::Other("a real"),
                    ValueRef::Blob(_) => Cell::Other("a blob"),
                })
            });
            out.push(Row(cells.collect::<rusqlite::Result<_>>()?));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), Error> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn schema_version(&mut self) -> Result<usize, Error> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}
