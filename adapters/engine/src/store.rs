//! The registry and the command history in SQLite, with versioned migrations.
//!
//! The engine keeps the registry in memory and writes it here in batches (one transaction per
//! flush, one row per instance that changed), so the file survives a restart without every
//! heartbeat costing a write.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::{Instance, Status};

/// The schema, one step per version: `PRAGMA user_version` says how many have been applied.
/// Steps are only ever appended, never edited, so every older file upgrades in order.
const MIGRATIONS: &[&str] = &[
    // 1: the registry, the commands sent and the results received.
    "CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        node_name TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        start_time TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        registered INTEGER NOT NULL DEFAULT 0,
        register_json TEXT,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        status_changed_ms INTEGER NOT NULL,
        last_heartbeat_ms INTEGER,
        uptime INTEGER,
        cpu_centipercent INTEGER,
        memory_mb INTEGER,
        threads INTEGER,
        metrics_json TEXT,
        heartbeats INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE commands (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        parameters TEXT NOT NULL,
        target TEXT NOT NULL,
        expected TEXT NOT NULL,
        sent_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        node_name TEXT NOT NULL,
        command TEXT NOT NULL,
        success INTEGER NOT NULL,
        message TEXT NOT NULL,
        data TEXT,
        state TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    );
    -- A node may publish a final result twice (QoS 1 redelivery); history keeps one.
    CREATE UNIQUE INDEX results_final ON results (request_id, instance_id) WHERE state = 'done';
    CREATE INDEX results_by_request ON results (request_id);
    CREATE INDEX commands_by_time ON commands (sent_ms);",
    // 2: when the last register message arrived (reconnect storms are measured with it).
    "ALTER TABLE instances ADD COLUMN registered_ms INTEGER;",
];

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
        let conn = Connection::open(path).map_err(|e| Error::Database(format!("{}: {e}", path.display())))?;
        // WAL: readers (`subnode nodes`) never block the engine's writes, and the engine's
        // batched transactions commit without a full fsync of the main file each time.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut store = Self { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let version: usize = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(Error::SchemaTooNew { found: version, known: MIGRATIONS.len() });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<usize, Error> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Writes every instance in `changed` in one transaction.
    pub(crate) fn save_instances<'a>(&mut self, changed: impl Iterator<Item = &'a Instance>) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        {
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
                    i.uptime.map(|u| i64::try_from(u).unwrap_or(i64::MAX)),
                    i.cpu_centipercent,
                    i.memory_mb.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
                    i.threads.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                    i.metrics_json,
                    i64::try_from(i.heartbeats).unwrap_or(i64::MAX),
                    i.registered_ms,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every instance in the file.
    pub fn load_instances(&self) -> Result<Vec<Instance>, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT instance_id, node_name, hostname, version, pid, start_time, status, registered, register_json,
                first_seen_ms, last_seen_ms, status_changed_ms, last_heartbeat_ms, uptime, cpu_centipercent,
                memory_mb, threads, metrics_json, heartbeats, registered_ms FROM instances
             ORDER BY node_name, instance_id",
        )?;
        let rows = stmt.query_map([], |r| {
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
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes instances from the registry (their history stays).
    pub(crate) fn delete_instances(&mut self, ids: &[String]) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM instances WHERE instance_id = ?1")?;
            for id in ids {
                delete.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a command, or its new attempt count.
    pub(crate) fn save_command(&mut self, c: &CommandRecord) -> Result<(), Error> {
        self.conn.execute(
            "INSERT INTO commands (request_id, command, parameters, target, expected, sent_ms, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (request_id) DO UPDATE SET attempts = ?7, expected = ?5",
            params![c.request_id, c.command, c.parameters, c.target, c.expected, c.sent_ms, c.attempts],
        )?;
        Ok(())
    }

    /// Records results in one transaction; a repeated final result is kept once.
    pub(crate) fn save_results(&mut self, results: &[ResultRecord]) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO results (request_id, instance_id, node_name, command, success, message, data,
                    state, timestamp, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in results {
                insert.execute(params![
                    r.request_id,
                    r.instance_id,
                    r.node_name,
                    r.command,
                    r.success,
                    r.message,
                    r.data,
                    r.state,
                    r.timestamp,
                    r.received_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The latest `limit` commands, newest first, each with its results in arrival order.
    pub fn history(&self, limit: usize) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        let mut commands = self.conn.prepare(
            "SELECT request_id, command, parameters, target, expected, sent_ms, attempts FROM commands
             ORDER BY sent_ms DESC, rowid DESC LIMIT ?1",
        )?;
        let mut results = self.conn.prepare_cached(
            "SELECT request_id, instance_id, node_name, command, success, message, data, state, timestamp,
                received_ms FROM results WHERE request_id = ?1 ORDER BY id",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let list = commands
            .query_map([limit], |r| {
                Ok(CommandRecord {
                    request_id: r.get(0)?,
                    command: r.get(1)?,
                    parameters: r.get(2)?,
                    target: r.get(3)?,
                    expected: r.get(4)?,
                    sent_ms: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let rs = results
                .query_map([&c.request_id], |r| {
                    Ok(ResultRecord {
                        request_id: r.get(0)?,
                        instance_id: r.get(1)?,
                        node_name: r.get(2)?,
                        command: r.get(3)?,
                        success: r.get(4)?,
                        message: r.get(5)?,
                        data: r.get(6)?,
                        state: r.get(7)?,
                        timestamp: r.get(8)?,
                        received_ms: r.get(9)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            out.push((c, rs));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
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
        }
        let store = Database::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let kept = store.load_instances().unwrap();
        assert_eq!((kept[0].instance_id.as_str(), kept[0].registered_ms), ("a-h-1", None));
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
    fn commands_and_results_survive_reopening_and_a_repeated_final_result_is_kept_once() {
        let path = temp("history");
        let mut store = Database::open(&path).unwrap();
        let command = CommandRecord {
            request_id: "r1".into(),
            command: "ping".into(),
            parameters: "{}".into(),
            target: "a/*".into(),
            expected: "a-h-1".into(),
            sent_ms: 1,
            attempts: 1,
        };
        store.save_command(&command).unwrap();
        store.save_command(&CommandRecord { attempts: 2, ..command.clone() }).unwrap();
        let result = ResultRecord {
            request_id: "r1".into(),
            instance_id: "a-h-1".into(),
            node_name: "a".into(),
            command: "ping".into(),
            success: true,
            message: "pong".into(),
            data: None,
            state: "done".into(),
            timestamp: "2024-01-01T12:00:00Z".into(),
            received_ms: 2,
        };
        store.save_results(&[result.clone(), result.clone()]).unwrap();
        drop(store);
        let store = Database::open(&path).unwrap();
        let history = store.history(10).unwrap();
        assert_eq!(history, vec![(CommandRecord { attempts: 2, ..command }, vec![result])]);
    }
}
