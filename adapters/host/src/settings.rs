//! What the builder resolved from code, environment and defaults, owned by the node task:
//! the one list of a node's settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use subnodesync_core::{Config, ConfigError, NodeVersion};

use crate::config::{HttpUrl, Secret};
use crate::handler::{CommandHandler, SettingsHandler};
use crate::metrics::{CustomMetrics, Sampler};
use crate::time::to_core;
use crate::transport::Endpoint;

/// Everything the builder resolved: owned, so the node task can lend it to the core.
pub(crate) struct Settings {
    /// What the core's configuration borrows for the node's whole life.
    pub(crate) identity: Identity,
    pub(crate) timing: Timing,
    /// The broker URL and how to reach it.
    pub(crate) endpoint: Endpoint,
    pub(crate) http_register_url: Option<HttpUrl>,
    pub(crate) handlers: HashMap<String, Arc<dyn CommandHandler>>,
    pub(crate) handler_timeout: Duration,
    pub(crate) sampler: SampleSource,
    pub(crate) metrics: CustomMetrics,
    pub(crate) stop_on_request: bool,
    /// Applies application settings; without one, every application setting is refused.
    pub(crate) settings: Option<Box<dyn SettingsHandler>>,
    pub(crate) buffers: BufferSizes,
    pub(crate) seed: u64,
    /// Core field name → the environment variable that supplied it.
    pub(crate) sources: Vec<(&'static str, &'static str)>,
}

/// Who the node is and what it announces: the text the core's [`Config`] borrows.
pub(crate) struct Identity {
    pub(crate) node_name: String,
    pub(crate) hostname: String,
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) topic_prefix: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) node_version: OwnedNodeVersion,
}

/// The core's durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) keep_alive: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) stop_timeout: Duration,
}

impl Identity {
    /// The core's configuration: this identity, `timing`, and the lists the caller keeps alive
    /// (the core takes `&str` slices, the identity owns `String`s).
    pub(crate) fn config<'a>(
        &'a self,
        timing: Timing,
        commands: &'a [&'a str],
        capabilities: &'a [&'a str],
        metadata: &'a [(&'a str, &'a str)],
    ) -> Config<'a> {
        Config {
            version: &self.version,
            topic_prefix: &self.topic_prefix,
            username: self.username.as_deref(),
            password: self.password.as_ref().map(|p| p.expose().as_bytes()),
            keep_alive: to_core(timing.keep_alive),
            heartbeat_interval: to_core(timing.heartbeat_interval),
            reconnect_min: to_core(timing.reconnect_min),
            reconnect_max: to_core(timing.reconnect_max),
            connect_timeout: to_core(timing.connect_timeout),
            stop_timeout: to_core(timing.stop_timeout),
            commands,
            capabilities,
            metadata,
            node_version: self.node_version.as_node_version(),
            ..Config::new(&self.node_name, &self.hostname, self.pid)
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("node_name", &self.identity.node_name)
            .field("hostname", &self.identity.hostname)
            .field("endpoint", &self.endpoint)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where heartbeat metrics come from.
pub(crate) enum SampleSource {
    /// The process-wide sample every node of the process shares (the default).
    Shared,
    /// The application's own sampler; `None` while it is out taking a sample.
    Own(Option<Box<dyn Sampler>>),
}

/// The register message's `node_version`, owned: the core's [`NodeVersion`] with the same
/// (the original design's) field names. Every field is `unknown` unless set, except `platform`,
/// which is this build's `os/arch` in Go's spelling (`linux/amd64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedNodeVersion {
    /// `git describe` of the build, e.g. `v1.0.0`.
    pub git_version: String,
    /// Commit hash.
    pub git_commit: String,
    /// Build date, e.g. `2024-01-01`.
    pub build_date: String,
    /// Compiler version, e.g. `rustc 1.82.0` (the design's name for it).
    pub go_version: String,
    /// Target platform, e.g. `linux/amd64`.
    pub platform: String,
}

impl Default for OwnedNodeVersion {
    fn default() -> Self {
        let unknown = || String::from("unknown");
        Self {
            git_version: unknown(),
            git_commit: unknown(),
            build_date: unknown(),
            go_version: unknown(),
            platform: subnodesync_sysinfo::build_info::go_platform(
                std::env::consts::OS,
                std::env::consts::ARCH,
                cfg!(target_endian = "little"),
            ),
        }
    }
}

impl OwnedNodeVersion {
    /// Borrowed, as the core's configuration takes it.
    pub fn as_node_version(&self) -> NodeVersion<'_> {
        NodeVersion {
            git_version: &self.git_version,
            git_commit: &self.git_commit,
            build_date: &self.build_date,
            go_version: &self.go_version,
            platform: &self.platform,
        }
    }
}

impl From<NodeVersion<'_>> for OwnedNodeVersion {
    fn from(v: NodeVersion<'_>) -> Self {
        Self {
            git_version: v.git_version.into(),
            git_commit: v.git_commit.into(),
            build_date: v.build_date.into(),
            go_version: v.go_version.into(),
            platform: v.platform.into(),
        }
    }
}

/// Sizes of the node's three buffers, in bytes (see `subnodesync_core::Buffers`).
///
/// `tx` bounds the largest message the node publishes: a result whose `data` does not fit is
/// replaced by a failed result saying so. `outbox` holds every unacknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// Inbound packets; a larger control message is skipped (and acknowledged).
    pub rx: usize,
    /// One outbound packet or JSON payload.
    pub tx: usize,
    /// Unacknowledged outbound messages.
    pub outbox: usize,
    /// Both desired documents and the reasons for rejected settings (PROTOCOL.md §15).
    pub desired: usize,
}

impl Default for BufferSizes {
    fn default() -> Self {
        Self { rx: 8 * 1024, tx: 8 * 1024, outbox: 64 * 1024, desired: 2 * 1024 }
    }
}

/// The environment variable that supplied the value the core refused, if one did.
pub(crate) fn variable_for(error: &ConfigError, sources: &[(&'static str, &'static str)]) -> Option<&'static str> {
    let fields: &[&str] = match error {
        ConfigError::Empty(f) | ConfigError::TooLong(f, _) | ConfigError::InvalidCharacter(f) => &[*f],
        ConfigError::InvalidDuration(f) => &[*f],
        ConfigError::BackoffRange => &["reconnect_min", "reconnect_max"],
        _ => &[],
    };
    sources.iter().find(|(field, _)| fields.contains(field)).map(|(_, var)| *var)
}
