//! The engine configuration the in-process engine tests share: defaults, a fresh scratch
//! database per test and process, heartbeats every second.

use std::time::Duration;

use subnodesync_engine::EngineConfig;

/// The defaults with `url` as the broker and a new empty database named after the test.
pub(crate) fn engine_config(url: &str, name: &str) -> EngineConfig {
    let db = std::env::temp_dir().join(format!("subnode-test-{}-{name}", std::process::id())).join("engine.db");
    let _ = std::fs::remove_dir_all(db.parent().expect("a parent"));
    EngineConfig {
        db: db.into(),
        heartbeat_interval: Duration::from_secs(1),
        ..EngineConfig::from_lookup(&|_| None).expect("defaults")
    }
    .broker_url(url)
    .expect("a valid url")
}
