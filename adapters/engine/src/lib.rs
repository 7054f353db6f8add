#![doc = include_str!("../README.md")]

#[cfg(feature = "embedded-broker")]
mod broker;
mod config;
mod engine;
mod error;
// Compiled for unit tests too, which replay the committed fuzz seeds on stable.
#[cfg(any(test, feature = "_fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod record;
mod registry;
mod send;
mod store;
mod target;
mod text;

#[cfg(feature = "embedded-broker")]
pub use broker::broker_config;
pub use config::{default_db, EngineConfig, DB, HEARTBEAT_INTERVAL_EXPECTED, HEARTBEAT_INTERVAL_RANGE};
pub use engine::{Engine, IngestStats, MAX_PAYLOAD};
pub use error::{Error, IngestError};
pub use record::{CommandRecord, ResultRecord};
pub use registry::{FleetEvent, Instance, Registry, Status};
pub use send::{SendOutcome, SendRequest};
pub use store::Database;
pub use target::{Selector, Target};
pub use text::{printable, Printable};

/// Ingest without a broker, for the benchmark: feeds messages straight into a registry and
/// writes it to a database the way the engine does. Not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use crate::registry::Registry;

    /// Applies one message; false if it was refused.
    pub fn ingest(registry: &mut Registry, prefix: &str, topic: &str, payload: &[u8], now_ms: i64) -> bool {
        registry.ingest(prefix, topic, payload, now_ms).is_ok()
    }

    /// Writes the instances changed since the last flush, in one transaction.
    pub fn flush(registry: &mut Registry, db: &mut crate::Database) -> Result<usize, crate::Error> {
        let changed: Vec<crate::Instance> = registry.take_dirty().into_iter().cloned().collect();
        db.save_instances(changed.iter())?;
        Ok(changed.len())
    }
}
