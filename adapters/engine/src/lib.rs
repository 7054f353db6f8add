#![doc = include_str!("../README.md")]

#[cfg(feature = "embedded-broker")]
mod broker;
mod config;
#[cfg(feature = "console")]
pub mod console;
mod desired;
mod engine;
mod error;
mod event;
mod persist;
// Compiled for unit tests too, which replay the committed fuzz seeds on stable.
#[cfg(any(test, feature = "_fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod record;
mod registry;
mod rollout;
mod send;
mod stats;
mod store;
mod target;
mod tasks;
mod text;
mod timestamp;

#[cfg(feature = "embedded-broker")]
pub use broker::broker_config;
pub use config::{default_db, EngineConfig, Limit, DB, HEARTBEAT_INTERVAL_EXPECTED, HEARTBEAT_INTERVAL_RANGE};
pub use config::{HISTORY_MAX_AGE, HISTORY_MAX_COMMANDS, MAX_INSTANCES, MAX_STORED_JSON};
pub use desired::{check_key, in_sync, merge, next_version, DesiredDocument, DesiredError, DesiredSync, InstanceState};
pub use desired::{Merged, Published, ReportedDocument, SettingValue, Settings, DESIRED_CONFIRM_WITHIN};
pub use desired::{DOCUMENTS_MAX, KEY_MAX, MAX_SETTINGS, VALUE_MAX, VERSION_MAX};
pub use engine::{Engine, MAX_PAYLOAD, SHUTDOWN_FLUSH_FOR};
pub use error::{Error, FilterError, IngestError};
pub use event::FleetEvent;
pub use persist::MAX_BACKLOG_RESULTS;
pub use record::{CommandRecord, ResultRecord, Wave};
pub use registry::{Instance, Registry, Status};
pub use rollout::{Portion, PortionError, RolloutEvent, RolloutOutcome, RolloutRequest, WaveSize};
pub use send::{SendOutcome, SendRequest, Verdict};
pub use stats::IngestStats;
pub use store::{
    Database, HistoryQuery, Location, PostgresUrl, Retention, MAX_ORPHAN_RESULTS, MAX_PROGRESS_PER_RESULT,
};
pub use target::{Selector, Target};
pub use text::{printable, Printable};
pub use timestamp::rfc3339;

/// Ingest without a broker, for the benchmark: feeds messages straight into a registry and
/// writes it to a database the way the engine does. Not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use crate::registry::Registry;

    /// An empty registry that holds up to `max_instances` (the engine's `max_instances` setting).
    pub fn registry(max_instances: usize) -> Registry {
        let mut registry = Registry::default();
        registry.limits.max_instances = max_instances;
        registry
    }

    /// Applies one message; false if it was refused.
    pub fn ingest(registry: &mut Registry, prefix: &str, topic: &str, payload: &[u8], now_ms: i64) -> bool {
        registry.ingest(prefix, topic, payload, now_ms, false).is_ok()
    }

    /// Writes the instances changed since the last flush, in one transaction.
    pub fn flush(registry: &mut Registry, db: &mut crate::Database) -> Result<usize, crate::Error> {
        let batch = crate::store::Batch { instances: registry.take_dirty(), ..Default::default() };
        db.write(&batch)?;
        Ok(batch.instances.len())
    }
}
