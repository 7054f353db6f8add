//! What the engine knows of one instance, and the statuses it can be in.

use std::fmt;

use crate::timestamp::rfc3339;

/// What the engine believes about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Its last status said `online` and heartbeats arrive.
    Online,
    /// It stopped cleanly.
    Offline,
    /// The broker published its last will: the connection died without a goodbye.
    Lost,
    /// Online by its last status, but silent for three heartbeat intervals.
    Missing,
}

impl Status {
    /// The lowercase name used on the wire, in the database and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Lost => "lost",
            Self::Missing => "missing",
        }
    }

    /// The status named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "online" => Self::Online,
            "offline" => Self::Offline,
            "lost" => Self::Lost,
            "missing" => Self::Missing,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: String,
    /// Application name.
    pub node_name: String,
    /// Host name.
    pub hostname: String,
    /// Application version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// When the node started, RFC 3339 (empty until its register message is seen).
    pub start_time: String,
    /// Current status.
    pub status: Status,
    /// Whether its retained register message is in place (false after a clean stop).
    pub registered: bool,
    /// The last register payload, as received.
    pub register_json: Option<String>,
    /// When the engine first heard of it, Unix milliseconds.
    pub first_seen_ms: i64,
    /// When the engine last heard anything from it, Unix milliseconds.
    pub last_seen_ms: i64,
    /// When its status last changed, Unix milliseconds.
    pub status_changed_ms: i64,
    /// When its last heartbeat arrived, Unix milliseconds.
    pub last_heartbeat_ms: Option<i64>,
    /// Uptime in seconds from the last heartbeat.
    pub uptime: Option<u64>,
    /// CPU in hundredths of a percent from the last heartbeat.
    pub cpu_centipercent: Option<u32>,
    /// Resident memory in MiB from the last heartbeat.
    pub memory_mb: Option<u64>,
    /// Threads or tasks from the last heartbeat.
    pub threads: Option<u64>,
    /// The last heartbeat's whole `metrics` object, as JSON text.
    pub metrics_json: Option<String>,
    /// Heartbeats ingested from it by this registry's engines.
    pub heartbeats: u64,
    /// When its last register message arrived, Unix milliseconds.
    pub registered_ms: Option<i64>,
    /// Heartbeats ingested since the last flush: what the flush adds to the database's count,
    /// which other engines add to as well.
    pub(crate) unsaved_heartbeats: u64,
    /// Changed since the last flush to the database.
    pub(crate) dirty: bool,
    /// Changed since the last flush beyond what a heartbeat changes, or never written: the next
    /// write is the whole row rather than its heartbeat columns.
    pub(crate) whole: bool,
}

impl Instance {
    /// A new instance of `node_name`, heard of first at `now_ms`.
    pub(crate) fn new(node_name: &str, instance_id: &str, now_ms: i64) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            node_name: node_name.to_owned(),
            hostname: String::new(),
            version: String::new(),
            pid: 0,
            start_time: String::new(),
            status: Status::Online,
            registered: false,
            register_json: None,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            status_changed_ms: now_ms,
            last_heartbeat_ms: None,
            uptime: None,
            cpu_centipercent: None,
            memory_mb: None,
            threads: None,
            metrics_json: None,
            heartbeats: 0,
            registered_ms: None,
            unsaved_heartbeats: 0,
            dirty: true,
            whole: true,
        }
    }

    /// The instance as JSON, for `--json` output.
    pub fn to_json(&self, now_ms: i64) -> serde_json::Value {
        serde_json::json!({
            "instance_id": self.instance_id,
            "node_name": self.node_name,
            "hostname": self.hostname,
            "version": self.version,
            "pid": self.pid,
            "start_time": self.start_time,
            "status": self.status.as_str(),
            "registered": self.registered,
            "uptime": self.uptime,
            "cpu_percent": self.cpu_centipercent.map(|c| f64::from(c) / 100.0),
            "memory_mb": self.memory_mb,
            "threads": self.threads,
            "last_heartbeat_age_ms": self.last_heartbeat_ms.map(|t| now_ms.saturating_sub(t)),
            "last_heartbeat_at": self.last_heartbeat_ms.map(rfc3339),
            "heartbeats": self.heartbeats,
            "registered_ms": self.registered_ms,
            "registered_at": self.registered_ms.map(rfc3339),
            "first_seen_at": rfc3339(self.first_seen_ms),
            "last_seen_at": rfc3339(self.last_seen_ms),
            "status_changed_at": rfc3339(self.status_changed_ms),
            "metrics": self.metrics_json.as_deref().and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok()),
        })
    }
}
