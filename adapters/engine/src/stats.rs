//! What the engine counts: messages, refusals, database writes and command outcomes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::Refusals;

/// Counters since the engine started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) flush_failures: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    pub(crate) commands_succeeded: AtomicU64,
    pub(crate) commands_failed: AtomicU64,
    pub(crate) commands_timed_out: AtomicU64,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Messages received from the broker.
    pub messages: u64,
    /// Heartbeats ingested.
    pub heartbeats: u64,
    /// Messages refused (bad topic or payload).
    pub rejected: u64,
    /// Messages larger than [`MAX_PAYLOAD`](crate::MAX_PAYLOAD), skipped unread.
    pub oversized: u64,
    /// Messages about new instances refused because the registry held `max_instances`.
    pub registry_full: u64,
    /// Register payloads and metrics objects over `max_stored_json`, ingested without their JSON.
    pub json_not_stored: u64,
    /// Results not stored because [`MAX_BACKLOG_RESULTS`](crate::MAX_BACKLOG_RESULTS) were
    /// already waiting for the database.
    pub results_not_stored: u64,
    /// Database writes that failed (and were retried).
    pub flush_failures: u64,
    /// Rows written to the database (instances, commands, results, deletions).
    pub rows_written: u64,
    /// Rows accepted and not yet in the database, changed instances included.
    pub unsaved_rows: usize,
    /// Commands sent by this engine that every target answered with success.
    pub commands_succeeded: u64,
    /// Commands sent by this engine with at least one failed result (and none missing).
    pub commands_failed: u64,
    /// Commands sent by this engine that some target did not answer in time (or none was expected).
    pub commands_timed_out: u64,
}

impl Counters {
    /// The counts now, with what the registry refused and what waits for the database.
    pub(crate) fn snapshot(&self, refusals: Refusals, results_not_stored: u64, unsaved_rows: usize) -> IngestStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestStats {
            messages: get(&self.messages),
            heartbeats: get(&self.heartbeats),
            rejected: get(&self.rejected),
            oversized: get(&self.oversized),
            registry_full: refusals.registry_full,
            json_not_stored: refusals.json_not_stored,
            results_not_stored,
            flush_failures: get(&self.flush_failures),
            rows_written: get(&self.rows_written),
            unsaved_rows,
            commands_succeeded: get(&self.commands_succeeded),
            commands_failed: get(&self.commands_failed),
            commands_timed_out: get(&self.commands_timed_out),
        }
    }
}
