//! The command history: commands and their results, bounded by age and count.

use std::time::Duration;

use super::sql::{readable, transaction, CellError, Conn, Row, Value};
use super::Database;
use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord, Wave};

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
pub(super) fn save_commands(conn: &mut dyn Conn, commands: &[CommandRecord]) -> Result<(), Error> {
    let rows: Vec<[Value<'_>; 9]> = commands
        .iter()
        .map(|c| {
            [
                Value::Text(&c.request_id),
                Value::Text(&c.command),
                Value::Text(&c.parameters),
                Value::Text(&c.target),
                Value::Text(&c.expected),
                Value::Int(c.sent_ms),
                Value::Int(c.attempts.into()),
                Value::opt_text(c.wave.as_ref().map(|w| w.rollout_id.as_str())),
                Value::opt_int(c.wave.as_ref().map(|w| w.number.into())),
            ]
        })
        .collect();
    conn.execute_each(
        "INSERT INTO commands (request_id, command, parameters, target, expected, sent_ms, attempts, rollout_id, wave)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (request_id) DO UPDATE SET attempts = excluded.attempts, expected = excluded.expected",
        &rows.iter().map(|row| &row[..]).collect::<Vec<_>>(),
    )?;
    // Another engine on this database may have stored the answers before this one stored the
    // command.
    conn.execute_each(
        "UPDATE results SET orphan = 0 WHERE request_id = ?1 AND orphan = 1",
        &rows.iter().map(|row| &row[..1]).collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// Records results; a repeated result or progress update is kept once, and progress updates
/// beyond [`MAX_PROGRESS_PER_RESULT`] per request and instance are not kept.
pub(super) fn save_results(conn: &mut dyn Conn, results: &[ResultRecord]) -> Result<(), Error> {
    let cap = Value::count(MAX_PROGRESS_PER_RESULT as u64);
    let rows: Vec<[Value<'_>; 11]> = results
        .iter()
        .map(|r| {
            [
                Value::Text(&r.request_id),
                Value::Text(&r.instance_id),
                Value::Text(&r.node_name),
                Value::Text(&r.command),
                Value::Int(r.success.into()),
                Value::Text(&r.message),
                Value::opt_text(r.data.as_deref()),
                Value::Text(&r.state),
                Value::Text(&r.timestamp),
                Value::Int(r.received_ms),
                cap,
            ]
        })
        .collect();
    conn.execute_each(
        "INSERT INTO results (request_id, instance_id, node_name, command, success, message, data,
            state, timestamp, received_ms, orphan)
         SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT), CAST(?5 AS BIGINT),
            CAST(?6 AS TEXT), CAST(?7 AS TEXT), CAST(?8 AS TEXT), CAST(?9 AS TEXT), CAST(?10 AS BIGINT),
            CASE WHEN EXISTS (SELECT 1 FROM commands WHERE request_id = ?1) THEN 0 ELSE 1 END
         WHERE ?8 = 'done' OR (SELECT COUNT(*) FROM results
            WHERE request_id = ?1 AND instance_id = ?2 AND state != 'done') < ?11
         ON CONFLICT DO NOTHING",
        &rows.iter().map(|row| &row[..]).collect::<Vec<_>>(),
    )?;
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

fn read_command(r: &Row) -> Result<CommandRecord, CellError> {
    Ok(CommandRecord {
        request_id: r.text(0)?,
        command: r.text(1)?,
        parameters: r.text(2)?,
        target: r.text(3)?,
        expected: r.text(4)?,
        sent_ms: r.int(5)?,
        attempts: r.int_as(6)?,
        wave: match (r.opt_text(7)?, r.opt_int_as(8)?) {
            (Some(rollout_id), Some(number)) => Some(Wave { rollout_id, number }),
            _ => None,
        },
    })
}

fn read_result(r: &Row) -> Result<ResultRecord, CellError> {
    Ok(ResultRecord {
        request_id: r.text(0)?,
        instance_id: r.text(1)?,
        node_name: r.text(2)?,
        command: r.text(3)?,
        success: r.int(4)? != 0,
        message: r.text(5)?,
        data: r.opt_text(6)?,
        state: r.text(7)?,
        timestamp: r.text(8)?,
        received_ms: r.int(9)?,
    })
}

/// Where a command sits in the history's order: when it was sent, then insertion order.
fn position(conn: &mut dyn Conn, request_id: &str) -> Result<Option<(i64, i64)>, Error> {
    let rows = conn.query("SELECT sent_ms, rowid FROM commands WHERE request_id = ?1", &[Value::Text(request_id)])?;
    Ok(rows.first().and_then(|r| Some((r.int(0).ok()?, r.int(1).ok()?))))
}

impl Database {
    /// The latest `limit` commands sent before the command `before` (or the latest of all), newest
    /// first, each with its results in arrival order.
    pub fn history(
        &mut self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        self.query_history(&HistoryQuery { before: before.map(str::to_owned), ..HistoryQuery::latest(limit) })
    }

    /// The commands `query` selects, newest first, each with its results in arrival order.
    pub fn query_history(&mut self, query: &HistoryQuery) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        let conn = &mut *self.conn;
        let cursor = match query.before.as_deref() {
            Some(id) => Some(position(conn, id)?.ok_or_else(|| Error::UnknownRequest(id.to_owned()))?),
            None => None,
        };
        let (sent, order) = cursor.unzip();
        let instance = Value::opt_text(query.instance.as_deref());
        let rows = conn.query(
            "SELECT request_id, command, parameters, target, expected, sent_ms, attempts, rollout_id, wave FROM commands
             WHERE (CAST(?2 AS BIGINT) IS NULL OR (sent_ms, rowid) < (CAST(?2 AS BIGINT), CAST(?3 AS BIGINT)))
                AND (CAST(?4 AS TEXT) IS NULL OR instr(',' || expected || ',', ',' || CAST(?4 AS TEXT) || ',') > 0
                    OR request_id IN (SELECT request_id FROM results WHERE instance_id = CAST(?4 AS TEXT)))
                AND (CAST(?5 AS TEXT) IS NULL OR request_id = CAST(?5 AS TEXT))
             ORDER BY sent_ms DESC, rowid DESC LIMIT ?1",
            &[
                Value::count(query.limit as u64),
                Value::opt_int(sent),
                Value::opt_int(order),
                instance,
                Value::opt_text(query.request_id.as_deref()),
            ],
        )?;
        let mut out = Vec::new();
        for c in readable(rows, "commands", read_command) {
            let rows = conn.query(
                "SELECT request_id, instance_id, node_name, command, success, message, data, state, timestamp,
                    received_ms FROM results
                    WHERE request_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR instance_id = CAST(?2 AS TEXT)) ORDER BY id",
                &[Value::Text(&c.request_id), instance],
            )?;
            out.push((c, readable(rows, "results", read_result)));
        }
        Ok(out)
    }

    /// Deletes what `retention` no longer keeps as of `now_ms`, and orphan results beyond
    /// [`MAX_ORPHAN_RESULTS`] or older than `max_age`, in one transaction.
    pub(crate) fn apply_retention(&mut self, retention: &Retention, now_ms: i64) -> Result<Pruned, Error> {
        let age = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Value::Int(now_ms.saturating_sub(age));
        transaction(&mut *self.conn, |conn| {
            conn.execute(super::TAKE_TURN, &[])?;
            // The newest command beyond the count: it and everything older go.
            let oldest_kept = conn.query(
                "SELECT sent_ms, rowid FROM commands ORDER BY sent_ms DESC, rowid DESC LIMIT 1 OFFSET ?1",
                &[Value::count(retention.max_commands as u64)],
            )?;
            let beyond = oldest_kept.first().and_then(|r| Some((r.int(0).ok()?, r.int(1).ok()?)));
            let (sent, order) = beyond.map_or((Value::Null, Value::Null), |(s, o)| (Value::Int(s), Value::Int(o)));
            let old = [cutoff, sent, order];
            let mut results = conn.execute(
                "DELETE FROM results WHERE request_id IN
                    (SELECT request_id FROM commands
                        WHERE sent_ms < ?1 OR (sent_ms, rowid) <= (CAST(?2 AS BIGINT), CAST(?3 AS BIGINT)))",
                &old,
            )?;
            let commands = conn.execute(
                "DELETE FROM commands WHERE sent_ms < ?1 OR (sent_ms, rowid) <= (CAST(?2 AS BIGINT), CAST(?3 AS BIGINT))",
                &old,
            )?;
            // A result and its command written by two engines at once may both have missed the
            // other: such a result is not an orphan.
            conn.execute(
                "UPDATE results SET orphan = 0 WHERE orphan = 1 AND request_id IN (SELECT request_id FROM commands)",
                &[],
            )?;
            results += conn.execute(
                "DELETE FROM results WHERE orphan = 1 AND (received_ms < ?1 OR id <=
                    (SELECT id FROM results WHERE orphan = 1 ORDER BY id DESC LIMIT 1 OFFSET ?2))",
                &[cutoff, Value::count(MAX_ORPHAN_RESULTS as u64)],
            )?;
            let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            Ok(Pruned { commands: count(commands), results: count(results) })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::tests::{backends, temp};
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
            wave: None,
        }
    }

    /// A result of instance `a-h-1` for `request_id`.
    pub(crate) fn result(request_id: &str, state: &str, message: &str, received_ms: i64) -> ResultRecord {
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

    #[test]
    fn commands_and_results_survive_reopening_and_a_repeated_result_or_progress_update_is_kept_once() {
        for db in backends("history") {
            let mut store = db.open();
            let c = command("r1", 1);
            let (progress, done) = (result("r1", "in_progress", "half", 2), result("r1", "done", "pong", 3));
            write(&mut store, vec![c.clone()], vec![progress.clone(), progress.clone()]);
            let again = CommandRecord { attempts: 2, ..c.clone() };
            write(&mut store, vec![again.clone()], vec![progress.clone(), done.clone(), done.clone()]);
            drop(store);
            let mut store = db.open();
            assert_eq!(store.history(10, None).unwrap(), vec![(again, vec![progress, done])]);
        }
    }

    #[test]
    fn the_waves_of_a_rollout_are_read_back_with_its_id_and_their_numbers() {
        for db in backends("waves") {
            let mut store = db.open();
            let wave = |id: &str, number, sent_ms| CommandRecord {
                wave: Some(Wave { rollout_id: "r9".into(), number }),
                ..command(id, sent_ms)
            };
            let (first, second) = (wave("r9-w1", 1, 1), wave("r9-w2", 2, 2));
            write(&mut store, vec![first.clone(), second.clone(), command("alone", 3)], Vec::new());
            let read: Vec<CommandRecord> = store.history(10, None).unwrap().into_iter().map(|(c, _)| c).collect();
            assert_eq!(read, [command("alone", 3), second.clone(), first]);
            assert_eq!(second.to_json()["rollout"], serde_json::json!({"id": "r9", "wave": 2}));
            assert_eq!(command("alone", 3).to_json()["rollout"], serde_json::Value::Null);
        }
    }

    #[test]
    fn progress_updates_beyond_the_cap_are_not_kept_but_the_final_result_is() {
        for db in backends("progress-cap") {
            let mut store = db.open();
            let flood = (0..MAX_PROGRESS_PER_RESULT + 50).map(|n| result("r1", "in_progress", &n.to_string(), 1));
            write(&mut store, vec![command("r1", 1)], flood.chain([result("r1", "done", "ok", 2)]).collect());
            let kept = &store.history(1, None).unwrap()[0].1;
            assert_eq!(kept.len(), MAX_PROGRESS_PER_RESULT + 1);
            assert_eq!(kept.last().map(|r| r.state.as_str()), Some("done"));
        }
    }

    #[test]
    fn history_pages_backwards_from_a_request_id_and_an_unknown_one_is_an_error() {
        for db in backends("pages") {
            let mut store = db.open();
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
    }

    #[test]
    fn retention_deletes_old_and_surplus_commands_with_their_results_and_bounds_orphans() {
        for db in backends("retention") {
            let mut store = db.open();
            let day = 86_400_000;
            let now = 100 * day;
            // r0 is 40 days old; r1..r5 are recent; only the newest 3 are kept.
            let commands =
                (0..6).map(|n| command(&format!("r{n}"), if n == 0 { now - 40 * day } else { now - 10 + n }));
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
            assert_eq!(store.count("SELECT COUNT(*) FROM results WHERE orphan = 0"), 3);
            let kept = usize::try_from(store.count("SELECT COUNT(*) FROM results WHERE orphan = 1")).unwrap();
            assert_eq!(kept, MAX_ORPHAN_RESULTS);
            // The newest orphans are the ones kept.
            assert_eq!(store.count("SELECT COUNT(*) FROM results WHERE request_id = 'stranger-1'"), 0);
            assert_eq!(store.count("SELECT COUNT(*) FROM results WHERE request_id = 'stranger-10005'"), 1);
            assert_eq!(store.apply_retention(&retention, now).unwrap(), Pruned::default());
        }
    }

    #[test]
    fn an_unreadable_command_or_result_row_is_skipped_and_the_rest_of_the_history_read() {
        let mut store = Database::open(&temp("bad-history-row").into()).unwrap();
        let (good, bad) = (result("r1", "done", "ok", 1), result("r1", "in_progress", "half", 1));
        write(&mut store, vec![command("r1", 1), command("r2", 2)], vec![bad, good.clone()]);
        store
            .conn
            .batch(
                "UPDATE commands SET attempts = 'often' WHERE request_id = 'r2';
                 UPDATE results SET received_ms = 'soon' WHERE state = 'in_progress';",
            )
            .unwrap();
        assert_eq!(store.history(10, None).unwrap(), vec![(command("r1", 1), vec![good])]);
    }

    #[test]
    fn the_history_of_one_instance_or_one_request_is_read_alone() {
        for db in backends("history-of") {
            let mut store = db.open();
            let other = ResultRecord { instance_id: "a-h-2".into(), ..result("r2", "done", "ok", 2) };
            // r1 expected a-h-1 (unanswered); r2 was a broadcast both answered; r3 was for a-h-2 only.
            let commands = vec![
                command("r1", 1),
                CommandRecord { expected: String::new(), ..command("r2", 2) },
                CommandRecord { expected: "a-h-2,a-h-12".into(), ..command("r3", 3) },
            ];
            write(&mut store, commands, vec![result("r2", "done", "ok", 2), other]);
            let mut of = |instance: &str| {
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
    }

    #[test]
    fn a_result_stored_before_its_command_is_adopted_when_the_command_arrives() {
        for db in backends("adopt") {
            let mut store = db.open();
            write(&mut store, Vec::new(), vec![result("r1", "done", "ok", 1)]);
            assert_eq!(store.count("SELECT orphan FROM results"), 1);
            write(&mut store, vec![command("r1", 1)], Vec::new());
            assert_eq!(store.count("SELECT orphan FROM results"), 0);
        }
    }
}
