//! The registry and the command history in a database: a SQLite file (the default, nothing to
//! install) or PostgreSQL (several engines sharing one fleet), with versioned migrations.
//!
//! The engine keeps the registry in memory and writes it here in batches (one transaction per
//! flush, one row per instance that changed), so the database survives a restart without every
//! heartbeat costing a write. Writes never move an instance backwards: each group of fields is
//! kept from whichever writer heard it last, and heartbeat counts add up, so engines sharing the
//! database (or a short-lived `subnode send` beside `subnode serve`) cannot undo each other. Each
//! batch that touches instances takes the next revision, and [`Database::changes`] returns the
//! rows other writers changed since, for the engine to merge.

mod history;
mod postgres;
mod schema;
mod sql;
mod sqlite;

use std::fmt;
use std::path::PathBuf;

use subnodesync_host::InvalidValue;

use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::{Instance, Status};
use sql::{readable, transaction, CellError, Conn, Row, Value};

pub use history::{HistoryQuery, Retention, MAX_ORPHAN_RESULTS, MAX_PROGRESS_PER_RESULT};
pub use postgres::PostgresUrl;

/// Where the registry and the history live.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every engine given the same URL.
    Postgres(Box<PostgresUrl>),
}

impl Location {
    /// `postgres://…` or `postgresql://…` as a PostgreSQL URL, anything else without `://` as
    /// a SQLite path. The error names `SUBNODE_DB` and shows the value without its password.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |expected| {
            Error::Setting(InvalidValue { name: crate::config::DB, value: postgres::redacted(text), expected })
        };
        if PostgresUrl::claims(text) {
            let url = PostgresUrl::parse(text).map_err(invalid)?;
            return Ok(Self::Postgres(Box::new(url)));
        }
        if text.is_empty() || text.contains("://") {
            return Err(invalid("a SQLite file path or postgres://user[:password]@host[:port]/database"));
        }
        Ok(Self::Sqlite(PathBuf::from(text)))
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display leaves the password out.
        write!(f, "Location({self})")
    }
}

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

/// The database holding the registry and the history. The engine writes it; `subnode nodes
/// --offline` and `subnode history` read it without a broker.
///
/// Its methods block: the engine calls them from `spawn_blocking`. A PostgreSQL database needs
/// a tokio runtime to open (its connection runs there).
pub struct Database {
    conn: Box<dyn Conn>,
    /// The newest revision this connection has seen of the instances (see [`Database::changes`]).
    seen_rev: i64,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("seen_rev", &self.seen_rev).finish_non_exhaustive()
    }
}

/// Locks the revision counter's row until the transaction ends, changing nothing.
pub(super) const TAKE_TURN: &str = "UPDATE subnode_meta SET rev = rev";

/// Instance rows changed after a revision, in [`read_instance`]'s column order.
const SELECT_INSTANCES: &str = "SELECT instance_id, node_name, hostname, version, pid, start_time, status, registered,
    register_json, first_seen_ms, last_seen_ms, status_changed_ms, last_heartbeat_ms, uptime, cpu_centipercent,
    memory_mb, threads, metrics_json, heartbeats, registered_ms, rev
    FROM instances WHERE rev > ?1 ORDER BY node_name, instance_id";

/// Inserts an instance, or merges it into the row another writer left: first and last sightings
/// only widen; what the instance said of itself, its register message (and whether it is in
/// place), its status and its last heartbeat are each kept from whichever writer heard them last;
/// heartbeat counts add up (?21 is how many this writer ingested since it last wrote the row).
const UPSERT_INSTANCE: &str = "INSERT INTO instances (instance_id, node_name, hostname, version, pid, start_time,
        status, registered, register_json, first_seen_ms, last_seen_ms, status_changed_ms, last_heartbeat_ms, uptime,
        cpu_centipercent, memory_mb, threads, metrics_json, heartbeats, registered_ms, rev)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?22)
    ON CONFLICT (instance_id) DO UPDATE SET
        first_seen_ms = CASE WHEN excluded.first_seen_ms < instances.first_seen_ms
            THEN excluded.first_seen_ms ELSE instances.first_seen_ms END,
        last_seen_ms = CASE WHEN excluded.last_seen_ms > instances.last_seen_ms
            THEN excluded.last_seen_ms ELSE instances.last_seen_ms END,
        hostname = CASE WHEN excluded.last_seen_ms >= instances.last_seen_ms
            THEN excluded.hostname ELSE instances.hostname END,
        version = CASE WHEN excluded.last_seen_ms >= instances.last_seen_ms
            THEN excluded.version ELSE instances.version END,
        pid = CASE WHEN excluded.last_seen_ms >= instances.last_seen_ms THEN excluded.pid ELSE instances.pid END,
        registered = CASE WHEN COALESCE(excluded.registered_ms, -1) >= COALESCE(instances.registered_ms, -1)
            THEN excluded.registered ELSE instances.registered END,
        start_time = CASE WHEN COALESCE(excluded.registered_ms, -1) >= COALESCE(instances.registered_ms, -1)
            THEN excluded.start_time ELSE instances.start_time END,
        register_json = CASE WHEN COALESCE(excluded.registered_ms, -1) >= COALESCE(instances.registered_ms, -1)
            THEN excluded.register_json ELSE instances.register_json END,
        registered_ms = CASE WHEN COALESCE(excluded.registered_ms, -1) >= COALESCE(instances.registered_ms, -1)
            THEN excluded.registered_ms ELSE instances.registered_ms END,
        status = CASE WHEN excluded.status_changed_ms >= instances.status_changed_ms
            THEN excluded.status ELSE instances.status END,
        status_changed_ms = CASE WHEN excluded.status_changed_ms >= instances.status_changed_ms
            THEN excluded.status_changed_ms ELSE instances.status_changed_ms END,
        last_heartbeat_ms = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.last_heartbeat_ms ELSE instances.last_heartbeat_ms END,
        uptime = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.uptime ELSE instances.uptime END,
        cpu_centipercent = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.cpu_centipercent ELSE instances.cpu_centipercent END,
        memory_mb = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.memory_mb ELSE instances.memory_mb END,
        threads = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.threads ELSE instances.threads END,
        metrics_json = CASE WHEN COALESCE(excluded.last_heartbeat_ms, -1) >= COALESCE(instances.last_heartbeat_ms, -1)
            THEN excluded.metrics_json ELSE instances.metrics_json END,
        heartbeats = instances.heartbeats + ?21,
        rev = excluded.rev";

/// Writes the heartbeat columns of an instance whose other columns have not changed since this
/// writer last wrote its row (see `Instance::whole`), under [`UPSERT_INSTANCE`]'s rules for them:
/// what the instance said of itself and its last heartbeat are kept from whichever writer heard
/// them last, the last sighting only moves forward, and the counts add up. 13 parameters of 22
/// and no INSERT attempt: a fifth less work in SQLite per row of a steady fleet's flush.
const UPDATE_HEARTBEAT: &str = "UPDATE instances SET
        hostname = CASE WHEN ?5 >= last_seen_ms THEN ?2 ELSE hostname END,
        version = CASE WHEN ?5 >= last_seen_ms THEN ?3 ELSE version END,
        pid = CASE WHEN ?5 >= last_seen_ms THEN ?4 ELSE pid END,
        last_seen_ms = CASE WHEN ?5 > last_seen_ms THEN ?5 ELSE last_seen_ms END,
        last_heartbeat_ms = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?6 ELSE last_heartbeat_ms END,
        uptime = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?7 ELSE uptime END,
        cpu_centipercent = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?8 ELSE cpu_centipercent END,
        memory_mb = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?9 ELSE memory_mb END,
        threads = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?10 ELSE threads END,
        metrics_json = CASE WHEN COALESCE(CAST(?6 AS BIGINT), -1) >= COALESCE(last_heartbeat_ms, -1)
            THEN ?11 ELSE metrics_json END,
        heartbeats = heartbeats + ?12,
        rev = ?13
    WHERE instance_id = ?1";

impl Database {
    /// Opens (creating if needed) the database at `location` and brings its schema up to date.
    /// Engines starting together on one PostgreSQL database migrate it once, in turn.
    pub fn open(location: &Location) -> Result<Self, Error> {
        let conn: Box<dyn Conn> = match location {
            Location::Sqlite(path) => Box::new(sqlite::Sqlite::open(path)?),
            Location::Postgres(url) => Box::new(postgres::Postgres::connect(url)?),
        };
        Ok(Self { conn, seen_rev: 0 })
    }

    /// The schema version of the open database.
    pub fn schema_version(&mut self) -> Result<usize, Error> {
        self.conn.schema_version()
    }

    /// Writes `batch` in one transaction: pruned instances go before changed ones (an instance
    /// pruned and then heard from again is kept), commands before the results that answer them.
    pub(crate) fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        let rev = transaction(&mut *self.conn, |conn| {
            let mut rev = None;
            if batch.instances.is_empty() && batch.deleted.is_empty() {
                // Every writer locks the counter's row first, so concurrent engines take turns
                // instead of deadlocking on each other's rows.
                conn.execute(TAKE_TURN, &[])?;
            } else {
                // Taking the revision locks the counter until the commit, so writers of instances
                // take turns and revisions become visible in order.
                let next = conn.query("UPDATE subnode_meta SET rev = rev + 1 RETURNING rev", &[])?;
                let next = next.first().and_then(|row| row.int(0).ok()).ok_or_else(no_meta)?;
                for id in &batch.deleted {
                    conn.execute("DELETE FROM instances WHERE instance_id = ?1", &[Value::Text(id)])?;
                }
                let (whole, beats): (Vec<&Instance>, Vec<&Instance>) = batch.instances.iter().partition(|i| i.whole);
                let rows: Vec<[Value<'_>; 13]> = beats.iter().map(|i| heartbeat_row(i, next)).collect();
                let each: Vec<&[Value<'_>]> = rows.iter().map(|row| &row[..]).collect();
                let changed = conn.execute_each(UPDATE_HEARTBEAT, &each)?;
                // A row another writer deleted since this one last wrote it is written whole again.
                let gone = beats.iter().zip(changed).filter(|&(_, n)| n == 0).map(|(i, _)| *i);
                let rows: Vec<[Value<'_>; 22]> = whole.into_iter().chain(gone).map(|i| instance_row(i, next)).collect();
                let each: Vec<&[Value<'_>]> = rows.iter().map(|row| &row[..]).collect();
                conn.execute_each(UPSERT_INSTANCE, &each)?;
                rev = Some(next);
            }
            history::save_commands(conn, &batch.commands)?;
            history::save_results(conn, &batch.results)?;
            Ok(rev)
        })?;
        // The revision after the last one seen is this writer's own: nothing to read back.
        if rev == Some(self.seen_rev + 1) {
            self.seen_rev += 1;
        }
        Ok(())
    }

    /// Every instance in the database; a row this engine cannot read is skipped with a warning.
    pub fn load_instances(&mut self) -> Result<Vec<Instance>, Error> {
        self.seen_rev = self.current_rev()?;
        let rows = self.conn.query(SELECT_INSTANCES, &[Value::Int(-1)])?;
        Ok(readable(rows, "instances", read_instance))
    }

    /// The instances other writers changed since this connection last loaded, wrote or asked,
    /// for the engine to merge into its registry.
    pub(crate) fn changes(&mut self) -> Result<Vec<Instance>, Error> {
        // Most flushes find nobody else wrote: one row read, rather than a scan of the table
        // (which has no index on `rev`, so that writes stay cheap).
        let current = self.current_rev()?;
        if current == self.seen_rev {
            return Ok(Vec::new());
        }
        let rows = self.conn.query(SELECT_INSTANCES, &[Value::Int(self.seen_rev)])?;
        // Revisions up to `current` were committed before these rows were read.
        let newest = rows.iter().filter_map(|row| row.int(20).ok()).max().unwrap_or(0);
        self.seen_rev = self.seen_rev.max(current).max(newest);
        Ok(readable(rows, "instances", read_instance))
    }

    /// Sets how long a SQLite statement waits for another writer's lock before failing.
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&mut self, wait: std::time::Duration) -> Result<(), Error> {
        self.conn.batch(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))
    }

    /// The single integer `sql` selects.
    #[cfg(test)]
    pub(crate) fn count(&mut self, sql: &'static str) -> i64 {
        self.conn.query(sql, &[]).ok().and_then(|rows| rows.first()?.int(0).ok()).expect(sql)
    }

    fn current_rev(&mut self) -> Result<i64, Error> {
        let rows = self.conn.query("SELECT rev FROM subnode_meta", &[])?;
        rows.first().and_then(|row| row.int(0).ok()).ok_or_else(no_meta)
    }
}

fn no_meta() -> Error {
    Error::Database("the subnode_meta table has no row".into())
}

/// One `instances` row, or why it cannot be read.
fn read_instance(r: &Row) -> Result<Instance, CellError> {
    let status = r.text(6)?;
    // Counters written by a broken tool as negative read as zero rather than failing the row.
    let unsigned = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Instance {
        instance_id: r.text(0)?,
        node_name: r.text(1)?,
        hostname: r.text(2)?,
        version: r.text(3)?,
        pid: r.int_as(4)?,
        start_time: r.text(5)?,
        status: Status::parse(&status).unwrap_or(Status::Lost),
        registered: r.int(7)? != 0,
        register_json: r.opt_text(8)?,
        first_seen_ms: r.int(9)?,
        last_seen_ms: r.int(10)?,
        status_changed_ms: r.int(11)?,
        last_heartbeat_ms: r.opt_int(12)?,
        uptime: unsigned(r.opt_int(13)?),
        cpu_centipercent: r.opt_int_as(14)?,
        memory_mb: unsigned(r.opt_int(15)?),
        threads: unsigned(r.opt_int(16)?),
        metrics_json: r.opt_text(17)?,
        heartbeats: unsigned(Some(r.int(18)?)).unwrap_or(0),
        registered_ms: r.opt_int(19)?,
        unsaved_heartbeats: 0,
        dirty: false,
        whole: false,
    })
}

/// The parameters of [`UPSERT_INSTANCE`] for one instance under revision `rev`.
fn instance_row(i: &Instance, rev: i64) -> [Value<'_>; 22] {
    let opt_count = |v: Option<u64>| v.map_or(Value::Null, Value::count);
    [
        Value::Text(&i.instance_id),
        Value::Text(&i.node_name),
        Value::Text(&i.hostname),
        Value::Text(&i.version),
        Value::Int(i64::from(i.pid)),
        Value::Text(&i.start_time),
        Value::Text(i.status.as_str()),
        Value::Int(i64::from(i.registered)),
        Value::opt_text(i.register_json.as_deref()),
        Value::Int(i.first_seen_ms),
        Value::Int(i.last_seen_ms),
        Value::Int(i.status_changed_ms),
        Value::opt_int(i.last_heartbeat_ms),
        opt_count(i.uptime),
        Value::opt_int(i.cpu_centipercent.map(i64::from)),
        opt_count(i.memory_mb),
        opt_count(i.threads),
        Value::opt_text(i.metrics_json.as_deref()),
        Value::count(i.heartbeats),
        Value::opt_int(i.registered_ms),
        Value::count(i.unsaved_heartbeats),
        Value::Int(rev),
    ]
}

/// Where [`UPDATE_HEARTBEAT`]'s parameters sit among [`UPSERT_INSTANCE`]'s (from 0), in its order:
/// the heartbeat columns, the id, the count and the revision.
const HEARTBEAT_PARAMETERS: [usize; 13] = [0, 2, 3, 4, 10, 12, 13, 14, 15, 16, 17, 20, 21];

/// The parameters of [`UPDATE_HEARTBEAT`] for one instance under revision `rev`: the whole
/// row's, picked, so the two statements always write the same values.
fn heartbeat_row(i: &Instance, rev: i64) -> [Value<'_>; 13] {
    let row = instance_row(i, rev);
    HEARTBEAT_PARAMETERS.map(|at| row[at])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rusqlite::Connection;
    use schema::SQLITE;
    use std::time::Duration;

    /// A database for a test: a SQLite file, or a PostgreSQL server of its own with the
    /// runtime its connections run on.
    pub(crate) struct Backend {
        location: Location,
        runtime: Option<tokio::runtime::Runtime>,
        _server: Option<subnodesync_fixtures::Postgres>,
    }

    impl Backend {
        /// A new connection to the test's database.
        pub(crate) fn open(&self) -> Database {
            let _inside = self.runtime.as_ref().map(tokio::runtime::Runtime::enter);
            Database::open(&self.location).unwrap_or_else(|e| panic!("{}: {e}", self.location))
        }
    }

    /// The test database `name` on each backend: a fresh SQLite file and a fresh PostgreSQL.
    pub(crate) fn backends(name: &str) -> [Backend; 2] {
        let server = subnodesync_fixtures::Postgres::start().expect("PostgreSQL for the store's tests");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        [
            Backend { location: temp(name).into(), runtime: None, _server: None },
            Backend {
                location: Location::parse(&server.url()).unwrap(),
                runtime: Some(runtime),
                _server: Some(server),
            },
        ]
    }

    /// A fresh database path under the temporary directory.
    pub(crate) fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("subnode-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("engine.db")
    }

    #[test]
    fn a_new_file_gets_every_migration_and_reopening_changes_nothing() {
        let path = temp("migrate");
        let mut store = Database::open(&path.clone().into()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SQLITE.len());
        drop(store);
        assert_eq!(Database::open(&path.clone().into()).unwrap().schema_version().unwrap(), SQLITE.len());
    }

    #[test]
    fn processes_opening_a_new_file_at_once_take_turns_at_the_migrations() {
        for round in 0..5 {
            let path = temp(&format!("race-{round}"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Database::open(&path.into()).map(|mut db| db.schema_version())
                    })
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap().expect("every opener succeeds").unwrap();
                assert_eq!(version, SQLITE.len());
            }
        }
    }

    #[test]
    fn a_version_1_file_is_upgraded_in_place_keeping_its_rows() {
        let path = temp("upgrade");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SQLITE[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
                 VALUES ('a-h-1', 'a', 'online', 1, 2, 3)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO commands (request_id, command, parameters, target, expected, sent_ms, attempts)
                 VALUES ('c', 'ping', '{}', 'a/*', 'a-h-1', 1, 1)",
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
        let mut store = Database::open(&path.clone().into()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SQLITE.len());
        let kept = store.load_instances().unwrap();
        assert_eq!((kept[0].instance_id.as_str(), kept[0].registered_ms), ("a-h-1", None));
        let progress = store.count("SELECT COUNT(*) FROM results");
        assert_eq!(progress, 1);
        // A command from before rollouts is no wave of one.
        let commands = store.history(10, None).unwrap();
        assert_eq!((commands[0].0.request_id.as_str(), commands[0].0.wave.as_ref()), ("c", None));
    }

    #[test]
    fn a_file_from_a_newer_engine_is_refused_rather_than_misread() {
        let path = temp("newer");
        drop(Database::open(&path.clone().into()).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SQLITE.len() + 1).unwrap();
        assert!(
            matches!(Database::open(&path.clone().into()), Err(Error::SchemaTooNew { found, .. }) if found == SQLITE.len() + 1)
        );
    }

    #[test]
    fn a_file_that_is_not_a_subnodesync_database_is_named_as_such_and_left_alone() {
        let text = temp("not-a-db");
        std::fs::create_dir_all(text.parent().unwrap()).unwrap();
        let words = "these are not the bytes of a database, but there are enough of them to look at\n".repeat(20);
        std::fs::write(&text, &words).unwrap();
        assert!(matches!(Database::open(&text.clone().into()), Err(Error::NotADatabase(p)) if p == text));
        assert_eq!(std::fs::read_to_string(&text).unwrap(), words, "the file was changed");

        let foreign = temp("foreign-db");
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE invoices (id INTEGER)").unwrap();
        assert!(matches!(Database::open(&foreign.clone().into()), Err(Error::NotADatabase(_))));
        let conn = Connection::open(&foreign).unwrap();
        let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1, "tables were added to another program's database");
    }

    #[test]
    fn an_unreadable_instance_row_is_skipped_and_the_others_load() {
        let path = temp("bad-row");
        drop(Database::open(&path.clone().into()).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
                 VALUES ('a-h-1', 'a', 'online', 1, 2, 3), ('a-h-2', 'a', 'online', 1, 2, 3);
             UPDATE instances SET pid = 'not a number' WHERE instance_id = 'a-h-1';",
        )
        .unwrap();
        let loaded = Database::open(&path.clone().into()).unwrap().load_instances().unwrap();
        assert_eq!(loaded.iter().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), ["a-h-2"]);
    }

    #[test]
    fn a_batch_is_written_whole_or_not_at_all() {
        let path = temp("atomic");
        let mut store = Database::open(&path.clone().into()).unwrap();
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

    fn beat(id: &str, at_ms: i64, cpu: u32, unsaved: u64) -> Instance {
        Instance {
            last_seen_ms: at_ms,
            last_heartbeat_ms: Some(at_ms),
            cpu_centipercent: Some(cpu),
            heartbeats: unsaved,
            unsaved_heartbeats: unsaved,
            ..crate::registry::tests::instance(id)
        }
    }

    #[test]
    fn a_stale_writer_never_moves_an_instance_backwards_and_heartbeat_counts_add_up() {
        for db in backends("merge-writes") {
            let (mut a, mut b) = (db.open(), db.open());
            a.write(&Batch { instances: vec![beat("a-h-1", 100, 5, 3)], ..Batch::default() }).unwrap();
            // B heard an older heartbeat, and an older status, and ingested two heartbeats of its own.
            let stale = Instance { status: Status::Lost, status_changed_ms: 0, ..beat("a-h-1", 50, 9, 2) };
            b.write(&Batch { instances: vec![stale], ..Batch::default() }).unwrap();
            let row = a.load_instances().unwrap().remove(0);
            assert_eq!((row.cpu_centipercent, row.last_heartbeat_ms, row.status), (Some(5), Some(100), Status::Online));
            assert_eq!(row.heartbeats, 5);
            // A newer status and heartbeat from B are taken.
            let newer = Instance { status: Status::Offline, status_changed_ms: 200, ..beat("a-h-1", 150, 9, 1) };
            b.write(&Batch { instances: vec![newer], ..Batch::default() }).unwrap();
            let row = a.load_instances().unwrap().remove(0);
            assert_eq!((row.cpu_centipercent, row.status, row.heartbeats), (Some(9), Status::Offline, 6));
        }
    }

    /// Both writes of the same change to instances `a-h-1` (its heartbeat columns only) and
    /// `a-h-2` (whole), whose rows were equal; the rows as they read back, ids aside.
    fn written_both_ways(db: &mut Database, before: &Instance, after: &Instance) -> [Instance; 2] {
        let as_id = |inst: &Instance, id: &str| Instance { instance_id: id.into(), ..inst.clone() };
        db.write(&Batch { instances: vec![as_id(before, "a-h-1"), as_id(before, "a-h-2")], ..Batch::default() })
            .unwrap();
        let narrow = Instance { whole: false, ..as_id(after, "a-h-1") };
        let whole = Instance { whole: true, ..as_id(after, "a-h-2") };
        db.write(&Batch { instances: vec![narrow, whole], ..Batch::default() }).unwrap();
        let rows = db.load_instances().unwrap();
        assert_eq!(rows.len(), 2);
        [as_id(&rows[0], "a-h"), as_id(&rows[1], "a-h")]
    }

    #[test]
    fn a_heartbeat_written_alone_leaves_the_row_as_the_whole_write_would() {
        for db in backends("narrow") {
            let mut db = db.open();
            let before = Instance { metrics_json: Some("{}".into()), ..beat("a-h", 100, 5, 3) };
            let after = Instance {
                hostname: "h2".into(),
                version: "1.1".into(),
                pid: 9,
                uptime: Some(60),
                memory_mb: Some(64),
                threads: Some(3),
                metrics_json: Some(r#"{"x":1}"#.into()),
                ..beat("a-h", 150, 7, 2)
            };
            let [narrow, whole] = written_both_ways(&mut db, &before, &after);
            assert_eq!(narrow, whole);
            assert_eq!((narrow.cpu_centipercent, narrow.heartbeats, narrow.last_seen_ms), (Some(7), 5, 150));
            // An older heartbeat (another writer's rows are newer) moves nothing back; its count adds up.
            let [narrow, whole] = written_both_ways(&mut db, &after, &before);
            assert_eq!(narrow, whole);
            assert_eq!((narrow.cpu_centipercent, narrow.hostname.as_str(), narrow.heartbeats), (Some(7), "h2", 10));
        }
    }

    #[test]
    fn a_heartbeat_for_a_row_another_writer_deleted_writes_the_whole_row() {
        for db in backends("narrow-gone") {
            let (mut a, mut b) = (db.open(), db.open());
            a.write(&Batch { instances: vec![beat("a-h-1", 100, 5, 1)], ..Batch::default() }).unwrap();
            b.write(&Batch { deleted: vec!["a-h-1".into()], ..Batch::default() }).unwrap();
            let narrow = Instance { whole: false, ..beat("a-h-1", 150, 7, 1) };
            a.write(&Batch { instances: vec![narrow.clone()], ..Batch::default() }).unwrap();
            let row = b.load_instances().unwrap().remove(0);
            assert_eq!(row, Instance { dirty: false, unsaved_heartbeats: 0, ..narrow });
        }
    }

    #[test]
    fn changes_are_what_other_writers_wrote_since_and_never_ones_own() {
        for db in backends("changes") {
            let (mut a, mut b) = (db.open(), db.open());
            assert!(a.load_instances().unwrap().is_empty());
            a.write(&Batch { instances: vec![beat("a-h-1", 100, 5, 1)], ..Batch::default() }).unwrap();
            assert_eq!(a.changes().unwrap(), Vec::new(), "its own write came back");
            b.write(&Batch { instances: vec![beat("a-h-2", 100, 5, 1)], ..Batch::default() }).unwrap();
            let theirs: Vec<String> = a.changes().unwrap().into_iter().map(|i| i.instance_id).collect();
            assert_eq!(theirs, ["a-h-2"]);
            assert_eq!(a.changes().unwrap(), Vec::new(), "read twice");
            // After another writer's revision, this writer's own next one is read back with it.
            b.write(&Batch { instances: vec![beat("a-h-2", 110, 5, 1)], ..Batch::default() }).unwrap();
            a.write(&Batch { instances: vec![beat("a-h-1", 110, 5, 1)], ..Batch::default() }).unwrap();
            let both: Vec<String> = a.changes().unwrap().into_iter().map(|i| i.instance_id).collect();
            assert_eq!(both, ["a-h-1", "a-h-2"]);
        }
    }
}
