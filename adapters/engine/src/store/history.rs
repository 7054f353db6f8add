//! The command history: commands and their results, bounded by age and count.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction};

use super::{readable_rows, Database};
use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord};

/// Results kept for request ids no command in this database has (another tool's requests, or a
/// publisher making them up); the oldest go first.
pub const MAX_ORPHAN_RESULTS: usize = 10_000;
/// Progress updates kept per request and instance; later ones are not stored (they still reach
/// whoever waits for the request).
pub const MAX_PROGRESS_PER_RESULT: usize = 100;

/// How much history the database keeps: commands older than `max_age`, or beyond the newest
/// `max_commands`, go with their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The oldest command kept.
    pub max_age: Duration,
    /// The most commands kept.
    pub max_commands: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(30 * 86_400), max_commands: 10_000 }
    }
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// Commands, with their results.
    pub(crate) commands: usize,
    /// Result rows, those of the commands included.
    pub(crate) results: usize,
}

/// Records commands, or their new attempt counts, and adopts results that arrived first.
pub(super) fn save_commands(tx: &Transaction<'_>, commands: &[CommandRecord]) -> Result<(), Error> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO commands (request_id, command, parameters, target, expected, sent_ms, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (request_id) DO UPDATE SET attempts = ?7, expected = ?5",
    )?;
    // Another engine on this file may have stored the answers before this one stored the command.
    let mut adopt = tx.prepare_cached("UPDATE results SET orphan = 0 WHERE request_id = ?1 AND orphan = 1")?;
    for c in commands {
        upsert.execute(params![c.request_id, c.command, c.parameters, c.target, c.expected, c.sent_ms, c.attempts])?;
        adopt.execute([&c.request_id])?;
    }
    Ok(())
}

/// Records results; a repeated result or progress update is kept once, and progress updates
/// beyond [`MAX_PROGRESS_PER_RESULT`] per request and instance are not kept.
pub(super) fn save_results(tx: &Transaction<'_>, results: &[ResultRecord]) -> Result<(), Error> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO results (request_id, instance_id, node_name, command, success, message, data,
            state, timestamp, received_ms, orphan)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
            NOT EXISTS (SELECT 1 FROM commands WHERE request_id = ?1)
         WHERE ?8 = 'done' OR (SELECT COUNT(*) FROM results
            WHERE request_id = ?1 AND instance_id = ?2 AND state != 'done') < ?11",
    )?;
    let cap = i64::try_from(MAX_PROGRESS_PER_RESULT).unwrap_or(i64::MAX);
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
            r.received_ms,
            cap
        ])?;
    }
    Ok(())
}

/// Which commands of the history to read, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The most commands.
    pub limit: usize,
    /// Only commands sent before this one (the request id a page ended with).
    pub before: Option<String>,
    /// Only commands this instance was expected to answer or answered, with its results only.
    pub instance: Option<String>,
    /// Only the command with this request id.
    pub request_id: Option<String>,
}

impl HistoryQuery {
    /// The latest `limit` commands.
    pub fn latest(limit: usize) -> Self {
        Self { limit, before: None, instance: None, request_id: None }
    }
}

impl Database {
    /// The latest `limit` commands sent before the command `before` (or the latest of all), newest
    /// first, each with its results in arrival order.
    pub fn history(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        self.query_history(&HistoryQuery { before: before.map(str::to_owned), ..HistoryQuery::latest(limit) })
    }

    /// The commands `query` selects, newest first, each with its results in arrival order.
    pub fn query_history(&self, query: &HistoryQuery) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        let cursor = match query.before.as_deref() {
            Some(id) => Some(
                self.conn
                    .query_row("SELECT sent_ms, rowid FROM commands WHERE request_id = ?1", [id], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()?
                    .ok_or_else(|| Error::UnknownRequest(id.to_owned()))?,
            ),
            None => None,
        };
        let (sent, rowid) = cursor.unzip();
        let mut commands = self.conn.prepare_cached(
            "SELECT request_id, command, parameters, target, expected, sent_ms, attempts FROM commands
             WHERE (?2 IS NULL OR (sent_ms, rowid) < (?2, ?3))
                AND (?4 IS NULL OR instr(',' || expected || ',', ',' || ?4 || ',') > 0
                    OR request_id IN (SELECT request_id FROM results WHERE instance_id = ?4))
                AND (?5 IS NULL OR request_id = ?5)
             ORDER BY sent_ms DESC, rowid DESC LIMIT ?1",
        )?;
        let mut results = self.conn.prepare_cached(
            "SELECT request_id, instance_id, node_name, command, success, message, data, state, timestamp,
                received_ms FROM results WHERE request_id = ?1 AND (?2 IS NULL OR instance_id = ?2) ORDER BY id",
        )?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let filter = params![limit, sent, rowid, query.instance, query.request_id];
        let list = readable_rows(&mut commands, filter, "commands", |r| {
            Ok(CommandRecord {
                request_id: r.get(0)?,
                command: r.get(1)?,
                parameters: r.get(2)?,
                target: r.get(3)?,
                expected: r.get(4)?,
                sent_ms: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let rs = readable_rows(&mut results, params![c.request_id, query.instance], "results", |r| {
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
            })?;
            out.push((c, rs));
        }
        Ok(out)
    }

    /// Deletes what `retention` no longer keeps as of `now_ms`, and orphan results beyond
    /// [`MAX_ORPHAN_RESULTS`] or older than `max_age`, in one transaction.
    pub(crate) fn apply_retention(&mut self, retention: &Retention, now_ms: i64) -> Result<Pruned, Error> {
        let age = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age);
        let keep = i64::try_from(retention.max_commands).unwrap_or(i64::MAX);
        let orphans = i64::try_from(MAX_ORPHAN_RESULTS).unwrap_or(i64::MAX);
        let tx = self.conn.transaction()?;
        // The newest command beyond the count: it and everything older go.
        let (sent, rowid) = tx
            .query_row(
                "SELECT sent_ms, rowid FROM commands ORDER BY sent_ms DESC, rowid DESC LIMIT 1 OFFSET ?1",
                [keep],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
            .unzip();
        let old = "sent_ms < ?1 OR (sent_ms, rowid) <= (?2, ?3)";
        let mut results = tx.execute(
            &format!("DELETE FROM results WHERE request_id IN (SELECT request_id FROM commands WHERE {old})"),
            params![cutoff, sent, rowid],
        )?;
        let commands = tx.execute(&format!("DELETE FROM commands WHERE {old}"), params![cutoff, sent, rowid])?;
        results += tx.execute(
            "DELETE FROM results WHERE orphan = 1 AND (received_ms < ?1 OR id <=
                (SELECT id FROM results WHERE orphan = 1 ORDER BY id DESC LIMIT 1 OFFSET ?2))",
            params![cutoff, orphans],
        )?;
        tx.commit()?;
        Ok(Pruned { commands, results })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp;
    use crate::store::Batch;

    fn command(request_id: &str, sent_ms: i64) -> CommandRecord {
        CommandRecord {
            request_id: request_id.into(),
            command: "ping".into(),
            parameters: "{}".into(),
            target: "a/*".into(),
            expected: "a-h-1".into(),
            sent_ms,
            attempts: 1,
        }
    }

    fn result(request_id: &str, state: &str, message: &str, received_ms: i64) -> ResultRecord {
        ResultRecord {
            request_id: request_id.into(),
            instance_id: "a-h-1".into(),
            node_name: "a".into(),
            command: "ping".into(),
            success: true,
            message: message.into(),
            data: None,
            state: state.into(),
            timestamp: "2024-01-01T12:00:00Z".into(),
            received_ms,
        }
    }

    fn write(store: &mut Database, commands: Vec<CommandRecord>, results: Vec<ResultRecord>) {
        store.write(&Batch { commands, results, ..Batch::default() }).unwrap();
    }

    fn count(store: &Database, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn commands_and_results_survive_reopening_and_a_repeated_result_or_progress_update_is_kept_once() {
        let path = temp("history");
        let mut store = Database::open(&path).unwrap();
        let c = command("r1", 1);
        let (progress, done) = (result("r1", "in_progress", "half", 2), result("r1", "done", "pong", 3));
        write(&mut store, vec![c.clone()], vec![progress.clone(), progress.clone()]);
        let again = CommandRecord { attempts: 2, ..c.clone() };
        write(&mut store, vec![again.clone()], vec![progress.clone(), done.clone(), done.clone()]);
        drop(store);
        let store = Database::open(&path).unwrap();
        assert_eq!(store.history(10, None).unwrap(), vec![(again, vec![progress, done])]);
    }

    #[test]
    fn progress_updates_beyond_the_cap_are_not_kept_but_the_final_result_is() {
        let mut store = Database::open(&temp("progress-cap")).unwrap();
        let flood = (0..MAX_PROGRESS_PER_RESULT + 50).map(|n| result("r1", "in_progress", &n.to_string(), 1));
        write(&mut store, vec![command("r1", 1)], flood.chain([result("r1", "done", "ok", 2)]).collect());
        let kept = &store.history(1, None).unwrap()[0].1;
        assert_eq!(kept.len(), MAX_PROGRESS_PER_RESULT + 1);
        assert_eq!(kept.last().map(|r| r.state.as_str()), Some("done"));
    }

    #[test]
    fn history_pages_backwards_from_a_request_id_and_an_unknown_one_is_an_error() {
        let mut store = Database::open(&temp("pages")).unwrap();
        // Two commands in the same millisecond still page in a fixed order.
        let commands = ["r1", "r2", "r3", "r4", "r5"].iter().map(|id| command(id, if *id == "r3" { 2 } else { 3 }));
        write(&mut store, commands.collect(), Vec::new());
        let ids = |page: Vec<(CommandRecord, Vec<ResultRecord>)>| {
            page.into_iter().map(|(c, _)| c.request_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(store.history(2, None).unwrap()), ["r5", "r4"]);
        assert_eq!(ids(store.history(2, Some("r4")).unwrap()), ["r2", "r1"]);
        assert_eq!(ids(store.history(2, Some("r1")).unwrap()), ["r3"]);
        assert_eq!(ids(store.history(2, Some("r3")).unwrap()), Vec::<String>::new());
        assert!(matches!(store.history(2, Some("nope")), Err(Error::UnknownRequest(id)) if id == "nope"));
    }

    #[test]
    fn retention_deletes_old_and_surplus_commands_with_their_results_and_bounds_orphans() {
        let mut store = Database::open(&temp("retention")).unwrap();
        let day = 86_400_000;
        let now = 100 * day;
        // r0 is 40 days old; r1..r5 are recent; only the newest 3 are kept.
        let commands = (0..6).map(|n| command(&format!("r{n}"), if n == 0 { now - 40 * day } else { now - 10 + n }));
        let answers = (0..6).map(|n| result(&format!("r{n}"), "done", "ok", now));
        write(&mut store, commands.collect(), answers.collect());
        // Orphans: one 40 days old, and more recent ones than the cap.
        let old_orphan = result("stranger-0", "done", "ok", now - 40 * day);
        let orphans = (1..=MAX_ORPHAN_RESULTS + 5).map(|n| result(&format!("stranger-{n}"), "done", "ok", now));
        write(&mut store, Vec::new(), std::iter::once(old_orphan).chain(orphans).collect());

        let retention = Retention { max_age: Duration::from_secs(30 * 86_400), max_commands: 3 };
        let pruned = store.apply_retention(&retention, now).unwrap();
        assert_eq!(pruned, Pruned { commands: 3, results: 3 + 6 });
        let left: Vec<String> = store.history(10, None).unwrap().into_iter().map(|(c, _)| c.request_id).collect();
        assert_eq!(left, ["r5", "r4", "r3"]);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM results WHERE orphan = 0"), 3);
        let kept = usize::try_from(count(&store, "SELECT COUNT(*) FROM results WHERE orphan = 1")).unwrap();
        assert_eq!(kept, MAX_ORPHAN_RESULTS);
        // The newest orphans are the ones kept.
        assert_eq!(count(&store, "SELECT COUNT(*) FROM results WHERE request_id = 'stranger-1'"), 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM results WHERE request_id = 'stranger-10005'"), 1);
        assert_eq!(store.apply_retention(&retention, now).unwrap(), Pruned::default());
    }

    #[test]
    fn an_unreadable_command_or_result_row_is_skipped_and_the_rest_of_the_history_read() {
        let mut store = Database::open(&temp("bad-history-row")).unwrap();
        let (good, bad) = (result("r1", "done", "ok", 1), result("r1", "in_progress", "half", 1));
        write(&mut store, vec![command("r1", 1), command("r2", 2)], vec![bad, good.clone()]);
        store
            .conn
            .execute_batch(
                "UPDATE commands SET attempts = 'often' WHERE request_id = 'r2';
                 UPDATE results SET received_ms = 'soon' WHERE state = 'in_progress';",
            )
            .unwrap();
        assert_eq!(store.history(10, None).unwrap(), vec![(command("r1", 1), vec![good])]);
    }

    #[test]
    fn the_history_of_one_instance_or_one_request_is_read_alone() {
        let mut store = Database::open(&temp("history-of")).unwrap();
        let other = ResultRecord { instance_id: "a-h-2".into(), ..result("r2", "done", "ok", 2) };
        // r1 expected a-h-1 (unanswered); r2 was a broadcast both answered; r3 was for a-h-2 only.
        let commands = vec![
            command("r1", 1),
            CommandRecord { expected: String::new(), ..command("r2", 2) },
            CommandRecord { expected: "a-h-2,a-h-12".into(), ..command("r3", 3) },
        ];
        write(&mut store, commands, vec![result("r2", "done", "ok", 2), other]);
        let of = |instance: &str| {
            let query = HistoryQuery { instance: Some(instance.to_owned()), ..HistoryQuery::latest(10) };
            store.query_history(&query).unwrap()
        };
        let mine = of("a-h-1");
        assert_eq!(mine.iter().map(|(c, _)| c.request_id.as_str()).collect::<Vec<_>>(), ["r2", "r1"]);
        assert_eq!(mine[0].1.iter().map(|r| r.instance_id.as_str()).collect::<Vec<_>>(), ["a-h-1"]);
        assert_eq!(of("a-h").len(), 0, "an id inside another is not that id");
        let query = HistoryQuery { request_id: Some("r2".into()), ..HistoryQuery::latest(10) };
        let one = store.query_history(&query).unwrap();
        assert_eq!((one.len(), one[0].1.len()), (1, 2));
    }

    #[test]
    fn a_result_stored_before_its_command_is_adopted_when_the_command_arrives() {
        let mut store = Database::open(&temp("adopt")).unwrap();
        write(&mut store, Vec::new(), vec![result("r1", "done", "ok", 1)]);
        assert_eq!(count(&store, "SELECT orphan FROM results"), 1);
        write(&mut store, vec![command("r1", 1)], Vec::new());
        assert_eq!(count(&store, "SELECT orphan FROM results"), 0);
    }
}
