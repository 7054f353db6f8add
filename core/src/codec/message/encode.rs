//! The encoders: every message a node publishes and the control message an engine sends,
//! each writing itself with [`Writer`], fields in the order the design shows them.

use super::names::{field, key};
use super::{open, ToJson};
use crate::codec::json::{Object, RawJson, Writer};
use crate::time::Timestamp;

/// Opens an object with the three fields every node message starts with. The config refuses
/// names that would need escaping, so they are written as they are.
#[inline(always)]
fn head(w: &mut Writer<'_>, timestamp: Timestamp, node_name: &str, instance_id: &str) {
    open(w, key::TIMESTAMP);
    w.timestamp(timestamp);
    w.raw(key::NODE_NAME);
    w.escaped_str(node_name);
    w.raw(key::INSTANCE_ID);
    w.escaped_str(instance_id);
}

/// Build information reported in `node_version` (names kept from the Go original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeVersion<'a> {
    /// `git describe` of the build, e.g. `v1.0.0`.
    pub git_version: &'a str,
    /// Commit hash of the build.
    pub git_commit: &'a str,
    /// Build date, e.g. `2024-01-01`.
    pub build_date: &'a str,
    /// Compiler version; the Go original's field name, carrying e.g. `rustc 1.95.0`.
    pub go_version: &'a str,
    /// Target platform, e.g. `linux/amd64`.
    pub platform: &'a str,
}

impl NodeVersion<'_> {
    /// Every field `unknown`, for builds that captured no information.
    pub const UNKNOWN: NodeVersion<'static> = NodeVersion {
        git_version: "unknown",
        git_commit: "unknown",
        build_date: "unknown",
        go_version: "unknown",
        platform: "unknown",
    };
}

impl ToJson for NodeVersion<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::GIT_VERSION);
        w.str(self.git_version);
        w.raw(key::GIT_COMMIT);
        w.str(self.git_commit);
        w.raw(key::BUILD_DATE);
        w.str(self.build_date);
        w.raw(key::GO_VERSION);
        w.str(self.go_version);
        w.raw(key::PLATFORM);
        w.str(self.platform);
        w.raw(b"}");
    }
}

/// A custom metric's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric<'a> {
    /// A JSON integer.
    Int(i64),
    /// A JSON number; NaN and infinities become `null`.
    Float(f64),
    /// A JSON string.
    Str(&'a str),
    /// A JSON boolean.
    Bool(bool),
}

impl ToJson for Metric<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        match *self {
            Metric::Int(v) => w.i64(v),
            Metric::Float(v) => w.f64(v),
            Metric::Str(v) => w.str(v),
            Metric::Bool(v) => w.bool(v),
        }
    }
}

/// Process metrics sampled by the caller for one heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics<'a> {
    /// Process CPU use in hundredths of a percent: 250 is sent as `"2.50"`.
    pub cpu_centipercent: u32,
    /// Resident memory in MiB (`process_memory_usage_mb`).
    pub memory_mb: u64,
    /// Threads, or tasks where the adapter counts them (`process_goroutine_count`).
    pub threads: u64,
    /// Application metrics, written into the same `metrics` object after the built-in three.
    /// A custom metric that reuses a built-in name is left out.
    pub custom: &'a [(&'a str, Metric<'a>)],
}

/// The metric names the design fixes.
const BUILTIN_METRICS: [&str; 3] = [field::CPU, field::MEMORY_MB, field::THREADS];

impl ToJson for Metrics<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        // A string with exactly two decimals, as the design shows: 250 → "2.50".
        open(w, key::CPU);
        w.raw(b"\"");
        w.u64(u64::from(self.cpu_centipercent / 100));
        let cents = self.cpu_centipercent % 100;
        // Both are single decimal digits.
        w.raw(&[b'.', b'0' + (cents / 10) as u8, b'0' + (cents % 10) as u8, b'"']);
        w.raw(key::MEMORY_MB);
        w.u64(self.memory_mb);
        w.raw(key::THREADS);
        w.u64(self.threads);
        for (name, value) in self.custom.iter().filter(|(n, _)| !BUILTIN_METRICS.contains(n)) {
            w.raw(b",");
            w.str(name);
            w.raw(b":");
            value.write_json(w);
        }
        w.raw(b"}");
    }
}

/// `{"hostname": ..., extra...}`.
#[derive(Debug, Clone, Copy)]
pub struct Metadata<'a> {
    /// The host name, always present.
    pub hostname: &'a str,
    /// Further string pairs from the configuration; a second `hostname` is left out.
    pub extra: &'a [(&'a str, &'a str)],
}

impl ToJson for Metadata<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::HOSTNAME);
        w.str(self.hostname);
        for (k, v) in self.extra.iter().filter(|(k, _)| *k != field::HOSTNAME) {
            w.raw(b",");
            w.str(k);
            w.raw(b":");
            w.str(v);
        }
        w.raw(b"}");
    }
}

/// The `capabilities` array: fixed ones followed by configured ones.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities<'a> {
    /// Always present, e.g. `mqtt_control`, `heartbeat`.
    pub fixed: &'a [&'a str],
    /// Extra capabilities from the configuration.
    pub extra: &'a [&'a str],
}

impl ToJson for Capabilities<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        w.raw(b"[");
        for (i, c) in self.fixed.iter().chain(self.extra).enumerate() {
            if i > 0 {
                w.raw(b",");
            }
            w.str(c);
        }
        w.raw(b"]");
    }
}

/// Published retained on `.../register` after every connect.
#[derive(Debug, Clone, Copy)]
pub struct RegisterMessage<'a> {
    /// When the message was built.
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// Application version.
    pub version: &'a str,
    /// Operating-system process id (or any instance number on a device).
    pub pid: u32,
    /// When the node started.
    pub start_time: Timestamp,
    /// What this node can do: `mqtt_control` and `heartbeat`, then the configured extras.
    pub capabilities: Capabilities<'a>,
    /// Host name and configured extras.
    pub metadata: Metadata<'a>,
    /// Build information.
    pub node_version: NodeVersion<'a>,
}

impl ToJson for RegisterMessage<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(key::VERSION);
        w.str(self.version);
        w.raw(key::PID);
        w.u64(u64::from(self.pid));
        w.raw(key::START_TIME);
        w.timestamp(self.start_time);
        w.raw(key::CAPABILITIES);
        self.capabilities.write_json(w);
        w.raw(key::METADATA);
        self.metadata.write_json(w);
        w.raw(key::NODE_VERSION);
        self.node_version.write_json(w);
        w.raw(b"}");
    }
}

/// Published on `.../heartbeat` every heartbeat interval while connected.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatMessage<'a> {
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// Always `running`: a stopping or stopped node sends no heartbeats.
    pub status: &'a str,
    /// Process id.
    pub pid: u32,
    /// Seconds since the node started.
    pub uptime: u64,
    /// Application version.
    pub version: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Sampled metrics.
    pub metrics: Metrics<'a>,
}

impl ToJson for HeartbeatMessage<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(key::STATUS);
        w.str(self.status);
        w.raw(key::PID);
        w.u64(u64::from(self.pid));
        w.raw(key::UPTIME);
        w.u64(self.uptime);
        w.raw(key::VERSION);
        w.str(self.version);
        w.raw(key::HOSTNAME);
        w.str(self.hostname);
        w.raw(key::METRICS);
        self.metrics.write_json(w);
        w.raw(b"}");
    }
}

/// Published retained on `.../status`: `online`, `offline`, or `lost` (the last will).
#[derive(Debug, Clone, Copy)]
pub struct StatusMessage<'a> {
    /// When the status was set (for `lost`: when the connection that registered the will began).
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// `online`, `offline` or `lost`.
    pub status: &'a str,
}

impl ToJson for StatusMessage<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(key::STATUS);
        w.str(self.status);
        w.raw(b"}");
    }
}

/// Published on `.../result` for every command: progress updates, then the final result.
#[derive(Debug, Clone, Copy)]
pub struct ResultMessage<'a> {
    /// When the result was built.
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// The command's `request_id`, byte for byte as received (still JSON-escaped).
    pub request_id: &'a str,
    /// The command name, byte for byte as received (empty if it could not be read).
    pub command: &'a str,
    /// Whether the command succeeded (progress updates say `true`).
    pub success: bool,
    /// Human-readable outcome; on failure, what went wrong.
    pub message: &'a str,
    /// Handler output, any JSON value, or `null`.
    pub data: Option<RawJson<'a>>,
    /// `in_progress` for a progress update, `done` for the final result.
    pub state: &'a str,
}

impl ToJson for ResultMessage<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(key::REQUEST_ID);
        w.escaped_str(self.request_id);
        w.raw(key::COMMAND);
        w.escaped_str(self.command);
        w.raw(key::SUCCESS);
        w.bool(self.success);
        w.raw(key::MESSAGE);
        w.str(self.message);
        w.raw(key::DATA);
        w.raw(self.data.map_or(&b"null"[..], |d| d.as_str().as_bytes()));
        w.raw(key::STATE);
        // `in_progress` or `done`: nothing to escape.
        w.escaped_str(self.state);
        w.raw(b"}");
    }
}

/// A control message (engine → node, PROTOCOL.md §5.4), as an engine sends it.
#[derive(Debug, Clone, Copy)]
pub struct ControlMessage<'a> {
    /// Command name, as the engine chose it (escaped on the way out).
    pub command: &'a str,
    /// When the engine sent it.
    pub timestamp: Timestamp,
    /// The engine's id for this request (escaped on the way out).
    pub request_id: &'a str,
    /// The `parameters` object; `None` sends `{}`.
    pub parameters: Option<Object<'a>>,
}

impl ToJson for ControlMessage<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::COMMAND);
        w.str(self.command);
        w.raw(key::TIMESTAMP);
        w.timestamp(self.timestamp);
        w.raw(key::REQUEST_ID);
        w.str(self.request_id);
        w.raw(key::PARAMETERS);
        w.raw(self.parameters.map_or(&b"{}"[..], |p| p.as_raw().as_str().as_bytes()));
        w.raw(b"}");
    }
}
