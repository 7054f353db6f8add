//! The registry and the command history in SQLite, with versioned migrations.
//!
//! The engine keeps the registry in memory and writes it here in batches (one transaction per
//! flush, one row per instance that changed), so the file survives a restart without every
//! heartbeat costing a write.

mod history;
mod schema;

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode};

use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::{Instance, Status};
use schema::MIGRATIONS;

pub use history::{HistoryQuery, Retention, MAX_ORPHAN_RESULTS, MAX_PROGRESS_PER_RESULT};

/// What one flush writes, in one transaction: all of it or, on an error, none of it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Instances changed since the last flush, as they are now.
    pub(crate) instances: Vec<Instance>,
    /// Instances pruned from the registry.
    pub(crate) deleted: Vec<String>,
    /// Commands sent, or their new attempt counts.
    pub(crate) commands: Vec<CommandRecord>,
    /// Results and progress updates received.
    pub(crate) results: Vec<ResultRecord>,
}

impl Batch {
    /// How many rows it writes or deletes.
    pub(crate) fn rows(&self) -> usize {
        self.instances.len() + self.deleted.len() + self.commands.len() + self.results.len()
    }
}

/// The SQLite file holding the registry and the history. The engine writes it; `subnode nodes
/// --offline` and `subnode history` read it without a broker.
#[derive(Debug)]
pub struct Database {
    conn: Connection,
}

impl Database {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, Error> {
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
        conn.pragma_update(None, "journal_mode", "WAL").map_err(at)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(at)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(at)?;
        let mut store = Self { conn };
        store.migrate(path)?;
        Ok(store)
    }

    fn migrate(&mut self, path: &Path) -> Result<(), Error> {
        let version: usize = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(Error::SchemaTooNew { found: version, known: MIGRATIONS.len() });
        }
        // Version 0 with tables in it is some other program's database: adding ours to it
        // would hide the mistake.
        let tables: i64 = self.conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
        if version == 0 && tables > 0 {
            return Err(Error::NotADatabase(path.to_owned()));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Sets how long a statement waits for another writer's lock before failing.
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&self, wait: Duration) -> Result<(), Error> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<usize, Error> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Writes `batch` in one transaction: pruned instances go before changed ones (an instance
    /// pruned and then heard from again is kept), commands before the results that answer them.
    pub(crate) fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM instances WHERE instance_id = ?1")?;
            for id in &batch.deleted {
                delete.execute([id])?;
            }
        }
        save_instances(&tx, &batch.instances)?;
        history::save_commands(&tx, &batch.commands)?;
        history::save_results(&tx, &batch.results)?;
        tx.commit()?;
        Ok(())
    }

    /// Every instance in the file; a row this engine cannot read is skipped with a warning.
    pub fn load_instances(&self) -> Result<Vec<Instance>, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT instance_id, node_name, hostname, version, pid, start_time, status, registered, register_json,
                first_seen_ms, last_seen_ms, status_changed_ms, last_heartbeat_ms, uptime, cpu_centipercent,
                memory_mb, threads, metrics_json, heartbeats, registered_ms FROM instances
             ORDER BY node_name, instance_id",
        )?;
        readable_rows(&mut stmt, [], "instances", read_instance)
    }
}

/// The rows of `stmt` that `read` makes sense of. A row it cannot read (a value of the wrong
/// type, written by hand or by a broken tool) is skipped with a warning rather than refusing
/// every other row with it.
fn readable_rows<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    table: &str,
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Error> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        match read(row) {
            Ok(value) => out.push(value),
            Err(e) => tracing::warn!(table, error = %e, "an unreadable row: skipped"),
        }
    }
    Ok(out)
}

/// One `instances` row, or why it cannot be read.
fn read_instance(r: &rusqlite::Row<'_>) -> rusqlite::Result<Instance> {
    let status: String = r.get(6)?;
    let unsigned = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Instance {
        instance_id: r.get(0)?,
        node_name: r.get(1)?,
        hostname: r.get(2)?,
        version: r.get(3)?,
        pid: r.get(4)?,
        start_time: r.get(5)?,
        status: Status::parse(&status).unwrap_or(Status::Lost),
        registered: r.get(7)?,
        register_json: r.get(8)?,
        first_seen_ms: r.get(9)?,
        last_seen_ms: r.get(10)?,
        status_changed_ms: r.get(11)?,
        last_heartbeat_ms: r.get(12)?,
        uptime: unsigned(r.get(13)?),
        cpu_centipercent: r.get(14)?,
        memory_mb: unsigned(r.get(15)?),
        threads: unsigned(r.get(16)?),
        metrics_json: r.get(17)?,
        heartbeats: unsigned(Some(r.get(18)?)).unwrap_or(0),
        registered_ms: r.get(19)?,
        dirty: false,
    })
}

/// Upserts every instance in `changed`.
fn save_instances(tx: &rusqlite::Transaction<'_>, changed: &[Instance]) -> Result<(), Error> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO instances (instance_id, node_name, hostname, version, pid, start_time, status, registered,
            register_json, first_seen_ms, last_seen_ms, status_changed_ms, last_heartbeat_ms, uptime,
            cpu_centipercent, memory_mb, threads, metrics_json, heartbeats, registered_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT (instance_id) DO UPDATE SET node_name = ?2, hostname = ?3, version = ?4, pid = ?5,
            start_time = ?6, status = ?7, registered = ?8, register_json = ?9, last_seen_ms = ?11,
            status_changed_ms = ?12, last_heartbeat_ms = ?13, uptime = ?14, cpu_centipercent = ?15,
            memory_mb = ?16, threads = ?17, metrics_json = ?18, heartbeats = ?19, registered_ms = ?20",
    )?;
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for i in changed {
        upsert.execute(params![
            i.instance_id,
            i.node_name,
            i.hostname,
            i.version,
            i.pid,
            i.start_time,
            i.status.as_str(),
            i.registered,
            i.register_json,
            i.first_seen_ms,
            i.last_seen_ms,
            i.status_changed_ms,
            i.last_heartbeat_ms,
            i.uptime.map(signed),
            i.cpu_centipercent,
            i.memory_mb.map(signed),
            i.threads.map(signed),
            i.metrics_json,
            signed(i.heartbeats),
            i.registered_ms,
        ])?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh database path under the temporary directory.
    pub(crate) fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("subnode-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("engine.db")
    }

    #[test]
    fn a_new_file_gets_every_migration_and_reopening_changes_nothing() {
        let path = temp("migrate");
        let store = Database::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        drop(store);
        assert_eq!(Database::open(&path).unwrap().schema_version().unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn a_version_1_file_is_upgraded_in_place_keeping_its_rows() {
        let path = temp("upgrade");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
                 VALUES ('a-h-1', 'a', 'online', 1, 2, 3)",
                [],
            )
            .unwrap();
            // A redelivered progress update, stored twice before version 3 kept one.
            for _ in 0..2 {
                conn.execute(
                    "INSERT INTO results (request_id, instance_id, node_name, command, success, message, state,
                        timestamp, received_ms) VALUES ('r', 'a-h-1', 'a', 'c', 1, 'half', 'in_progress', 't', 1)",
                    [],
                )
                .unwrap();
            }
        }
        let store = Database::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let kept = store.load_instances().unwrap();
        assert_eq!((kept[0].instance_id.as_str(), kept[0].registered_ms), ("a-h-1", None));
        let progress: i64 = store.conn.query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0)).unwrap();
        assert_eq!(progress, 1);
    }

    #[test]
    fn a_file_from_a_newer_engine_is_refused_rather_than_misread() {
        let path = temp("newer");
        let store = Database::open(&path).unwrap();
        store.conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1).unwrap();
        drop(store);
        assert!(
            matches!(Database::open(&path), Err(Error::SchemaTooNew { found, .. }) if found == MIGRATIONS.len() + 1)
        );
    }

    #[test]
    fn a_file_that_is_not_a_subnodesync_database_is_named_as_such_and_left_alone() {
        let text = temp("not-a-db");
        std::fs::create_dir_all(text.parent().unwrap()).unwrap();
        let words = "these are not the bytes of a database, but there are enough of them to look at\n".repeat(20);
        std::fs::write(&text, &words).unwrap();
        assert!(matches!(Database::open(&text), Err(Error::NotADatabase(p)) if p == text));
        assert_eq!(std::fs::read_to_string(&text).unwrap(), words, "the file was changed");

        let foreign = temp("foreign-db");
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE invoices (id INTEGER)").unwrap();
        assert!(matches!(Database::open(&foreign), Err(Error::NotADatabase(_))));
        let conn = Connection::open(&foreign).unwrap();
        let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1, "tables were added to another program's database");
    }

    #[test]
    fn an_unreadable_instance_row_is_skipped_and_the_others_load() {
        let path = temp("bad-row");
        drop(Database::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
                 VALUES ('a-h-1', 'a', 'online', 1, 2, 3), ('a-h-2', 'a', 'online', 1, 2, 3);
             UPDATE instances SET pid = 'not a number' WHERE instance_id = 'a-h-1';",
        )
        .unwrap();
        let loaded = Database::open(&path).unwrap().load_instances().unwrap();
        assert_eq!(loaded.iter().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), ["a-h-2"]);
    }

    #[test]
    fn a_batch_is_written_whole_or_not_at_all() {
        let path = temp("atomic");
        let mut store = Database::open(&path).unwrap();
        let mut good = crate::registry::tests::instance("a-h-1");
        let batch = Batch { instances: vec![good.clone()], ..Batch::default() };
        store.write(&batch).unwrap();
        // A second writer holds the file: the whole batch fails and nothing of it is written.
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        store.set_busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        good.version = "2.0".into();
        let batch = Batch { instances: vec![good.clone()], deleted: vec!["a-h-9".into()], ..Batch::default() };
        assert!(matches!(store.write(&batch), Err(Error::Database(_))));
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(store.load_instances().unwrap()[0].version, "");
        store.write(&batch).unwrap();
        assert_eq!(store.load_instances().unwrap()[0].version, "2.0");
    }
}
