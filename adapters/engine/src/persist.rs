//! Write-behind: what the engine accepted and the database does not have yet.
//!
//! Ingest and `send` never wait for the disk: they leave rows in the [`Backlog`], and a flush
//! writes the backlog and the changed instances in one transaction. A flush that fails puts
//! everything back, so a locked or full disk delays rows rather than losing them, and the
//! [`FlushSchedule`] spaces out the retries.

use std::sync::Mutex;
use std::time::Duration;

use subnodesync_host::RetryDelays;
use tokio::time::Instant;

use crate::engine::lock;
use crate::error::Error;
use crate::event::FleetEvent;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::Registry;
use crate::store::{Batch, Database};

/// Results held while the database cannot be written; beyond this, new ones are counted and not
/// stored (they still reach whoever waits for them).
pub const MAX_BACKLOG_RESULTS: usize = 100_000;
/// First delay before retrying a failed flush.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest delay between flush attempts while the database fails.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Rows waiting for the next flush.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    batch: Batch,
    /// Results not stored because the backlog was full.
    pub(crate) results_not_stored: u64,
}

impl Backlog {
    /// Queues a command (or its new attempt count).
    pub(crate) fn command(&mut self, command: CommandRecord) {
        self.batch.commands.push(command);
    }

    /// Queues a result, unless [`MAX_BACKLOG_RESULTS`] are already waiting.
    pub(crate) fn result(&mut self, result: ResultRecord) {
        if self.batch.results.len() < MAX_BACKLOG_RESULTS {
            self.batch.results.push(result);
        } else {
            self.results_not_stored += 1;
            if self.results_not_stored == 1 {
                tracing::error!(
                    waiting = MAX_BACKLOG_RESULTS,
                    "the database has not been written for too long: new results are not stored"
                );
            }
        }
    }

    /// Queues the deletion of pruned instances.
    pub(crate) fn deleted(&mut self, ids: impl IntoIterator<Item = String>) {
        self.batch.deleted.extend(ids);
    }

    /// Rows waiting, changed instances not counted.
    pub(crate) fn rows(&self) -> usize {
        self.batch.rows()
    }

    /// Puts a batch that could not be written back in front of what arrived meanwhile, so rows
    /// keep their order.
    fn put_back(&mut self, mut failed: Batch) {
        let newer = std::mem::take(&mut self.batch);
        failed.deleted.extend(newer.deleted);
        failed.commands.extend(newer.commands);
        failed.results.extend(newer.results);
        failed.instances.clear();
        self.batch = failed;
    }
}

/// Writes the backlog and the changed instances in one transaction; on an error they all stay
/// queued. Returns how many rows were written.
pub(crate) fn flush(
    store: &Mutex<Database>,
    registry: &Mutex<Registry>,
    backlog: &Mutex<Backlog>,
) -> Result<usize, Error> {
    // Holding the store for the whole flush makes flushes take turns, so a failed batch is back
    // in the queue before the next one is taken.
    let mut store = lock(store);
    let mut batch = std::mem::take(&mut lock(backlog).batch);
    batch.instances = lock(registry).take_dirty();
    let rows = batch.rows();
    if rows == 0 {
        return Ok(0);
    }
    match store.write(&batch) {
        Ok(()) => Ok(rows),
        Err(e) => {
            lock(registry).unsaved(&batch.instances);
            lock(backlog).put_back(batch);
            Err(e)
        }
    }
}

/// Merges what other writers of the database changed into the registry (engines sharing it,
/// or a `subnode send` beside `subnode serve`); returns the status changes that makes.
pub(crate) fn refresh(store: &Mutex<Database>, registry: &Mutex<Registry>) -> Result<Vec<FleetEvent>, Error> {
    let changed = lock(store).changes()?;
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(lock(registry).merge(changed))
}

/// When to try the next flush: every tick while the database works, then after growing,
/// jittered delays once it fails.
#[derive(Debug)]
pub(crate) struct FlushSchedule {
    delays: RetryDelays,
    retry_at: Option<Instant>,
}

impl FlushSchedule {
    /// A schedule whose retry jitter comes from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { delays: RetryDelays::new(RETRY_MIN, RETRY_MAX, seed), retry_at: None }
    }

    /// Whether a flush is due at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// A flush succeeded; true if it ended a run of failures.
    pub(crate) fn succeeded(&mut self) -> bool {
        self.delays.reset();
        self.retry_at.take().is_some()
    }

    /// A flush failed at `now`; returns the delay before the next attempt.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.delays.next_delay();
        self.retry_at = Some(now + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::instance;
    use crate::store::tests::temp;

    fn result(n: u32) -> ResultRecord {
        ResultRecord {
            request_id: format!("r{n}"),
            instance_id: "a-h-1".into(),
            node_name: "a".into(),
            command: "ping".into(),
            success: true,
            message: "pong".into(),
            data: None,
            state: "done".into(),
            timestamp: "t".into(),
            received_ms: i64::from(n),
        }
    }

    #[test]
    fn a_failed_flush_keeps_every_row_in_order_and_the_next_one_writes_them() {
        let path = temp("persist-retry");
        let store = Mutex::new(Database::open(&path.clone().into()).unwrap());
        let registry = Mutex::new(Registry::from_instances(Vec::new()));
        let backlog = Mutex::new(Backlog::default());
        lock(&backlog).result(result(1));
        lock(&backlog).deleted(["a-h-0".to_owned()]);

        // Another connection holds the write lock: the flush fails and keeps its rows.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("PRAGMA busy_timeout = 0; BEGIN EXCLUSIVE").unwrap();
        lock(&store).set_busy_timeout(Duration::ZERO).unwrap();
        assert!(flush(&store, &registry, &backlog).is_err());
        assert_eq!(lock(&backlog).rows(), 2);
        // Rows arriving meanwhile queue behind the failed ones.
        lock(&backlog).result(result(2));
        other.execute_batch("COMMIT").unwrap();

        assert_eq!(flush(&store, &registry, &backlog).unwrap(), 3);
        assert_eq!(lock(&backlog).rows(), 0);
        let stored: Vec<i64> = other
            .prepare("SELECT received_ms FROM results ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, [1, 2]);
    }

    #[test]
    fn a_failed_flush_marks_its_instances_changed_again() {
        let path = temp("persist-dirty");
        let store = Mutex::new(Database::open(&path.clone().into()).unwrap());
        let registry = Mutex::new(Registry::from_instances(vec![instance("a-h-1")]));
        let backlog = Mutex::new(Backlog::default());
        lock(&registry).unsaved(&[instance("a-h-1")]);
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("PRAGMA busy_timeout = 0; BEGIN EXCLUSIVE").unwrap();
        lock(&store).set_busy_timeout(Duration::ZERO).unwrap();
        assert!(flush(&store, &registry, &backlog).is_err());
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(flush(&store, &registry, &backlog).unwrap(), 1);
        assert_eq!(lock(&store).load_instances().unwrap().len(), 1);
    }

    #[test]
    fn a_full_backlog_counts_what_it_cannot_hold() {
        let mut backlog = Backlog::default();
        for n in 0..=u32::try_from(MAX_BACKLOG_RESULTS).unwrap() {
            backlog.result(result(n));
        }
        assert_eq!((backlog.rows(), backlog.results_not_stored), (MAX_BACKLOG_RESULTS, 1));
    }

    #[test]
    fn failures_space_out_the_attempts_and_a_success_resets_them() {
        let mut schedule = FlushSchedule::new(7);
        let start = Instant::now();
        assert!(schedule.due(start));
        let first = schedule.failed(start);
        assert!(first >= RETRY_MIN, "{first:?}");
        assert!(!schedule.due(start) && schedule.due(start + first));
        assert!(schedule.failed(start + first) <= RETRY_MAX);
        assert!(schedule.succeeded(), "a success after failures is a recovery");
        assert!(!schedule.succeeded());
        assert!(schedule.due(start));
    }
}
