//! The JSON payloads of the wire contract (PROTOCOL.md), serialized with `serde-json-core`.
//!
//! Field names and JSON types follow the original design document exactly, so an engine written
//! against it reads these unchanged.

use core::fmt::Write as _;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json_core::str::EscapedStr;

use super::json::RawJson;
use crate::error::EncodeError;
use crate::time::Timestamp;

/// Serializes `message` as JSON into `buf`, returning the length written.
pub fn to_json<T: Serialize>(message: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    serde_json_core::to_slice(message, buf).map_err(|_| EncodeError::BufferTooSmall)
}

/// Build information reported in `node_version` (names kept from the Go original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Metric::Int(v) => s.serialize_i64(v),
            Metric::Float(v) => s.serialize_f64(v),
            Metric::Str(v) => s.serialize_str(v),
            Metric::Bool(v) => s.serialize_bool(v),
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
const BUILTIN_METRICS: [&str; 3] = ["process_cpu_usage_percent", "process_memory_usage_mb", "process_goroutine_count"];

/// Formats hundredths as a decimal with two places, `250` → `2.50`.
fn centi(value: u32) -> heapless::String<16> {
    let mut out = heapless::String::new();
    // u32::MAX / 100 has 8 digits, so at most 11 bytes are written: the capacity holds them.
    let _ = write!(out, "{}.{:02}", value / 100, value % 100);
    out
}

impl Serialize for Metrics<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(BUILTIN_METRICS[0], centi(self.cpu_centipercent).as_str())?;
        map.serialize_entry(BUILTIN_METRICS[1], &self.memory_mb)?;
        map.serialize_entry(BUILTIN_METRICS[2], &self.threads)?;
        for (name, value) in self.custom.iter().filter(|(n, _)| !BUILTIN_METRICS.contains(n)) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// `{"hostname": ..., extra...}`.
#[derive(Debug, Clone, Copy)]
pub struct Metadata<'a> {
    /// The host name, always present.
    pub hostname: &'a str,
    /// Further string pairs from the configuration.
    pub extra: &'a [(&'a str, &'a str)],
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("hostname", self.hostname)?;
        for (k, v) in self.extra.iter().filter(|(k, _)| *k != "hostname") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Published retained on `.../register` after every connect.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Register<'a> {
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

/// The `capabilities` array: fixed ones followed by configured ones.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities<'a> {
    /// Always present, e.g. `mqtt_control`, `heartbeat`.
    pub fixed: &'a [&'a str],
    /// Extra capabilities from the configuration.
    pub extra: &'a [&'a str],
}

impl Serialize for Capabilities<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.fixed.iter().chain(self.extra))
    }
}

/// Published on `.../heartbeat` every heartbeat interval while connected.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Heartbeat<'a> {
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

/// Published retained on `.../status`: `online`, `offline`, or `lost` (the last will).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Status<'a> {
    /// When the status was set (for `lost`: when the connection that registered the will began).
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// `online`, `offline` or `lost`.
    pub status: &'a str,
}

/// Published on `.../result` for every command: progress updates, then the final result.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CommandResult<'a> {
    /// When the result was built.
    pub timestamp: Timestamp,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// The command's `request_id`, byte for byte as received.
    pub request_id: EscapedStr<'a>,
    /// The command name, byte for byte as received (empty if the control message had none).
    pub command: EscapedStr<'a>,
    /// Whether the command succeeded (progress updates say `true`).
    pub success: bool,
    /// Human-readable outcome; on failure, what went wrong.
    pub message: &'a str,
    /// Handler output, any JSON value, or `null`.
    pub data: Option<RawJson<'a>>,
    /// `in_progress` for a progress update, `done` for the final result.
    pub state: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_two_decimal_string_and_custom_metrics_join_the_object() {
        let custom = [("queue_depth", Metric::Int(7)), ("process_goroutine_count", Metric::Int(1))];
        let m = Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &custom };
        let mut buf = [0u8; 256];
        let n = to_json(&m, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"process_cpu_usage_percent":"2.50","process_memory_usage_mb":128,"process_goroutine_count":42,"queue_depth":7}"#
        );
        assert_eq!(centi(5), "0.05");
        assert_eq!(centi(u32::MAX), "42949672.95");
    }

    #[test]
    fn result_data_is_embedded_verbatim_and_ids_are_not_escaped_twice() {
        let data = RawJson::parse(br#"{"echo": [1, "x"]}"#).unwrap();
        let r = CommandResult {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "n",
            instance_id: "n-h-1",
            request_id: EscapedStr(r#"a\"b"#),
            command: EscapedStr("echo"),
            success: true,
            message: "line\nbreak",
            data: Some(data),
            state: "done",
        };
        let mut buf = [0u8; 512];
        let n = to_json(&r, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"timestamp":"1970-01-01T00:00:00Z","node_name":"n","instance_id":"n-h-1","request_id":"a\"b","command":"echo","success":true,"message":"line\nbreak","data":{"echo": [1, "x"]},"state":"done"}"#
        );
        assert_eq!(to_json(&r, &mut buf[..20]), Err(EncodeError::BufferTooSmall));
    }
}
