//! The JSON payloads of the wire contract (PROTOCOL.md).
//!
//! Field names and JSON types follow the original design document exactly, so an engine written
//! against it reads these unchanged. Each message writes itself with [`Writer`], fields in the
//! order the design shows them.

use super::json::{Object, RawJson, Writer};
use crate::error::{EncodeError, PayloadError};
use crate::time::Timestamp;

/// A payload that writes itself as JSON.
pub trait ToJson {
    /// Writes the whole JSON text.
    fn write_json(&self, w: &mut Writer<'_>);
}

/// Writes `message` as JSON into `buf`, returning the length written.
pub fn to_json<T: ToJson + ?Sized>(message: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    message.write_json(&mut w);
    w.finish()
}

/// Opens an object with the three fields every node message starts with. The config refuses
/// names that would need escaping, so they are written as they are.
fn head(w: &mut Writer<'_>, timestamp: Timestamp, node_name: &str, instance_id: &str) {
    w.raw(b"{\"timestamp\":");
    w.timestamp(timestamp);
    w.raw(b",\"node_name\":");
    w.escaped_str(node_name);
    w.raw(b",\"instance_id\":");
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
        w.raw(b"{\"git_version\":");
        w.str(self.git_version);
        w.raw(b",\"git_commit\":");
        w.str(self.git_commit);
        w.raw(b",\"build_date\":");
        w.str(self.build_date);
        w.raw(b",\"go_version\":");
        w.str(self.go_version);
        w.raw(b",\"platform\":");
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
const BUILTIN_METRICS: [&str; 3] = ["process_cpu_usage_percent", "process_memory_usage_mb", "process_goroutine_count"];

impl ToJson for Metrics<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        // A string with exactly two decimals, as the design shows: 250 → "2.50".
        w.raw(b"{\"process_cpu_usage_percent\":\"");
        w.u64(u64::from(self.cpu_centipercent / 100));
        let cents = self.cpu_centipercent % 100;
        // Both are single decimal digits.
        w.raw(&[b'.', b'0' + (cents / 10) as u8, b'0' + (cents % 10) as u8, b'"']);
        w.raw(b",\"process_memory_usage_mb\":");
        w.u64(self.memory_mb);
        w.raw(b",\"process_goroutine_count\":");
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
        w.raw(b"{\"hostname\":");
        w.str(self.hostname);
        for (k, v) in self.extra.iter().filter(|(k, _)| *k != "hostname") {
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

impl ToJson for Register<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(b",\"version\":");
        w.str(self.version);
        w.raw(b",\"pid\":");
        w.u64(u64::from(self.pid));
        w.raw(b",\"start_time\":");
        w.timestamp(self.start_time);
        w.raw(b",\"capabilities\":");
        self.capabilities.write_json(w);
        w.raw(b",\"metadata\":");
        self.metadata.write_json(w);
        w.raw(b",\"node_version\":");
        self.node_version.write_json(w);
        w.raw(b"}");
    }
}

/// Published on `.../heartbeat` every heartbeat interval while connected.
#[derive(Debug, Clone, Copy)]
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

impl ToJson for Heartbeat<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(b",\"status\":");
        w.str(self.status);
        w.raw(b",\"pid\":");
        w.u64(u64::from(self.pid));
        w.raw(b",\"uptime\":");
        w.u64(self.uptime);
        w.raw(b",\"version\":");
        w.str(self.version);
        w.raw(b",\"hostname\":");
        w.str(self.hostname);
        w.raw(b",\"metrics\":");
        self.metrics.write_json(w);
        w.raw(b"}");
    }
}

/// Published retained on `.../status`: `online`, `offline`, or `lost` (the last will).
#[derive(Debug, Clone, Copy)]
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

impl ToJson for Status<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(b",\"status\":");
        w.str(self.status);
        w.raw(b"}");
    }
}

/// Published on `.../result` for every command: progress updates, then the final result.
#[derive(Debug, Clone, Copy)]
pub struct CommandResult<'a> {
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

impl ToJson for CommandResult<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        head(w, self.timestamp, self.node_name, self.instance_id);
        w.raw(b",\"request_id\":");
        w.escaped_str(self.request_id);
        w.raw(b",\"command\":");
        w.escaped_str(self.command);
        w.raw(b",\"success\":");
        w.bool(self.success);
        w.raw(b",\"message\":");
        w.str(self.message);
        w.raw(b",\"data\":");
        w.raw(self.data.map_or(&b"null"[..], |d| d.as_str().as_bytes()));
        w.raw(b",\"state\":");
        // `in_progress` or `done`: nothing to escape.
        w.escaped_str(self.state);
        w.raw(b"}");
    }
}

/// A control message (engine → node, PROTOCOL.md §5.4), as an engine sends it.
#[derive(Debug, Clone, Copy)]
pub struct Control<'a> {
    /// Command name, as the engine chose it (escaped on the way out).
    pub command: &'a str,
    /// When the engine sent it.
    pub timestamp: Timestamp,
    /// The engine's id for this request (escaped on the way out).
    pub request_id: &'a str,
    /// The `parameters` object; `None` sends `{}`.
    pub parameters: Option<Object<'a>>,
}

impl ToJson for Control<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        w.raw(b"{\"command\":");
        w.str(self.command);
        w.raw(b",\"timestamp\":");
        w.timestamp(self.timestamp);
        w.raw(b",\"request_id\":");
        w.str(self.request_id);
        w.raw(b",\"parameters\":");
        w.raw(self.parameters.map_or(&b"{}"[..], |p| p.as_raw().as_str().as_bytes()));
        w.raw(b"}");
    }
}

/// The field names the engine-side decoders look up. The encoders above spell the same names in
/// their byte literals; the round-trip tests (encode, then decode) keep the two in step.
pub mod field {
    /// When a message was built.
    pub const TIMESTAMP: &str = "timestamp";
    /// Application name.
    pub const NODE_NAME: &str = "node_name";
    /// `{node_name}-{hostname}-{pid}`.
    pub const INSTANCE_ID: &str = "instance_id";
    /// Application version.
    pub const VERSION: &str = "version";
    /// Process id.
    pub const PID: &str = "pid";
    /// When the node started.
    pub const START_TIME: &str = "start_time";
    /// Register: capability array.
    pub const CAPABILITIES: &str = "capabilities";
    /// Register: string pairs, `hostname` first.
    pub const METADATA: &str = "metadata";
    /// Register: build information object.
    pub const NODE_VERSION: &str = "node_version";
    /// `node_version.git_version`.
    pub const GIT_VERSION: &str = "git_version";
    /// `node_version.git_commit`.
    pub const GIT_COMMIT: &str = "git_commit";
    /// `node_version.build_date`.
    pub const BUILD_DATE: &str = "build_date";
    /// `node_version.go_version` (the Go original's name for the compiler version).
    pub const GO_VERSION: &str = "go_version";
    /// `node_version.platform`.
    pub const PLATFORM: &str = "platform";
    /// Heartbeat `running`; status `online` / `offline` / `lost`.
    pub const STATUS: &str = "status";
    /// Heartbeat: seconds since start.
    pub const UPTIME: &str = "uptime";
    /// Heartbeat: host name.
    pub const HOSTNAME: &str = "hostname";
    /// Heartbeat: metrics object.
    pub const METRICS: &str = "metrics";
    /// `metrics.process_cpu_usage_percent`, a two-decimal string.
    pub const CPU: &str = "process_cpu_usage_percent";
    /// `metrics.process_memory_usage_mb`.
    pub const MEMORY_MB: &str = "process_memory_usage_mb";
    /// `metrics.process_goroutine_count`.
    pub const THREADS: &str = "process_goroutine_count";
    /// Result and control: the engine's request id.
    pub const REQUEST_ID: &str = "request_id";
    /// Result and control: the command name.
    pub const COMMAND: &str = "command";
    /// Result: whether the command succeeded.
    pub const SUCCESS: &str = "success";
    /// Result: human-readable outcome.
    pub const MESSAGE: &str = "message";
    /// Result: command output.
    pub const DATA: &str = "data";
    /// Result: `in_progress` or `done`.
    pub const STATE: &str = "state";
}

/// The top-level members named in `names`, in one pass over `payload`; the first occurrence of
/// a name wins, as in [`Object::get`].
fn members<'a, const N: usize>(payload: &'a [u8], names: [&str; N]) -> Result<[Option<RawJson<'a>>; N], PayloadError> {
    let mut found = [None; N];
    Object::parse_with(payload, |key, value| keep_first(&mut found, &names, key, value))
        .map_err(PayloadError::Malformed)?;
    Ok(found)
}

/// Files `value` under `key`'s slot in `found` if `key` is one of `names` and not seen yet.
fn keep_first<'a, const N: usize>(
    found: &mut [Option<RawJson<'a>>; N],
    names: &[&str; N],
    key: &str,
    value: RawJson<'a>,
) {
    if let Some(slot) = names.iter().position(|n| *n == key).and_then(|i| found.get_mut(i)) {
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// The process id: an unsigned integer that fits 32 bits.
fn pid(value: Option<RawJson<'_>>) -> Result<u32, PayloadError> {
    u32::try_from(unsigned(value, field::PID)?).map_err(|_| PayloadError::WrongType(field::PID))
}

fn required<'a>(value: Option<RawJson<'a>>, name: &'static str) -> Result<RawJson<'a>, PayloadError> {
    value.ok_or(PayloadError::MissingField(name))
}

/// A required string, in its escaped wire form.
fn string<'a>(value: Option<RawJson<'a>>, name: &'static str) -> Result<&'a str, PayloadError> {
    required(value, name)?.as_escaped_str().ok_or(PayloadError::WrongType(name))
}

/// A required non-negative integer, read without a float detour.
fn unsigned(value: Option<RawJson<'_>>, name: &'static str) -> Result<u64, PayloadError> {
    let text = required(value, name)?.as_str().as_bytes();
    if text.is_empty() {
        return Err(PayloadError::WrongType(name));
    }
    text.iter().try_fold(0u64, |n, &c| {
        let digit = c.checked_sub(b'0').filter(|d| *d < 10).ok_or(PayloadError::WrongType(name))?;
        n.checked_mul(10).and_then(|n| n.checked_add(u64::from(digit))).ok_or(PayloadError::WrongType(name))
    })
}

fn object<'a>(value: Option<RawJson<'a>>, name: &'static str) -> Result<Object<'a>, PayloadError> {
    required(value, name)?.as_object().ok_or(PayloadError::WrongType(name))
}

/// `"2.50"` → 250: the two-decimal CPU string of §5.2. More or fewer decimals are accepted and
/// truncated to hundredths, since other implementations may not pad.
fn centipercent(value: Option<RawJson<'_>>) -> Result<u32, PayloadError> {
    let wrong = PayloadError::WrongType(field::CPU);
    let text = string(value, field::CPU)?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(wrong);
    }
    let whole: u32 = whole.parse().map_err(|_| wrong)?;
    let mut cents = 0;
    for (i, c) in frac.bytes().chain([b'0', b'0']).take(2).enumerate() {
        cents += u32::from(c - b'0') * if i == 0 { 10 } else { 1 };
    }
    whole.checked_mul(100).and_then(|w| w.checked_add(cents)).ok_or(wrong)
}

/// A register message as an engine reads it (§5.1). Strings are borrowed in their escaped wire
/// form; names never need escaping, so for them that is the text itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterView<'a> {
    /// When the message was built, RFC 3339.
    pub timestamp: &'a str,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// Application version.
    pub version: &'a str,
    /// Process id.
    pub pid: u32,
    /// When the node started, RFC 3339.
    pub start_time: &'a str,
    /// The `capabilities` array, as JSON.
    pub capabilities: RawJson<'a>,
    /// The `metadata` object (`hostname` first).
    pub metadata: Object<'a>,
    /// Build information.
    pub node_version: NodeVersion<'a>,
}

impl<'a> RegisterView<'a> {
    /// Reads a non-empty register payload (an empty one means "deregistered", §5.1).
    pub fn parse(payload: &'a [u8]) -> Result<Self, PayloadError> {
        use field::*;
        let [ts, name, id, version, pid_value, start, caps, meta, nv] = members(
            payload,
            [TIMESTAMP, NODE_NAME, INSTANCE_ID, VERSION, PID, START_TIME, CAPABILITIES, METADATA, NODE_VERSION],
        )?;
        let capabilities = required(caps, CAPABILITIES)?;
        if !capabilities.as_str().starts_with('[') {
            return Err(PayloadError::WrongType(CAPABILITIES));
        }
        let nv = object(nv, NODE_VERSION)?;
        let nv_field = |name: &'static str| string(nv.get(name), name);
        Ok(Self {
            timestamp: string(ts, TIMESTAMP)?,
            node_name: string(name, NODE_NAME)?,
            instance_id: string(id, INSTANCE_ID)?,
            version: string(version, VERSION)?,
            pid: pid(pid_value)?,
            start_time: string(start, START_TIME)?,
            capabilities,
            metadata: object(meta, METADATA)?,
            node_version: NodeVersion {
                git_version: nv_field(GIT_VERSION)?,
                git_commit: nv_field(GIT_COMMIT)?,
                build_date: nv_field(BUILD_DATE)?,
                go_version: nv_field(GO_VERSION)?,
                platform: nv_field(PLATFORM)?,
            },
        })
    }
}

/// A heartbeat as an engine reads it (§5.2), the three fixed metrics decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartbeatView<'a> {
    /// When the metrics were sampled, RFC 3339.
    pub timestamp: &'a str,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// Always `running` from this implementation.
    pub status: &'a str,
    /// Process id.
    pub pid: u32,
    /// Whole seconds since the node started.
    pub uptime: u64,
    /// Application version.
    pub version: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// `process_cpu_usage_percent` in hundredths of a percent: `"2.50"` is 250.
    pub cpu_centipercent: u32,
    /// `process_memory_usage_mb`.
    pub memory_mb: u64,
    /// `process_goroutine_count`: threads or tasks.
    pub threads: u64,
    /// The whole `metrics` object, custom metrics included.
    pub metrics: Object<'a>,
}

impl<'a> HeartbeatView<'a> {
    /// Reads a heartbeat payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, PayloadError> {
        use field::*;
        let [ts, name, id, status, pid_value, uptime, version, hostname, metrics] =
            members(payload, [TIMESTAMP, NODE_NAME, INSTANCE_ID, STATUS, PID, UPTIME, VERSION, HOSTNAME, METRICS])?;
        let metrics = object(metrics, METRICS)?;
        let mut fixed = [None; 3];
        for (key, value) in metrics.members() {
            keep_first(&mut fixed, &[CPU, MEMORY_MB, THREADS], key, value);
        }
        let [cpu, memory, threads] = fixed;
        Ok(Self {
            timestamp: string(ts, TIMESTAMP)?,
            node_name: string(name, NODE_NAME)?,
            instance_id: string(id, INSTANCE_ID)?,
            status: string(status, STATUS)?,
            pid: pid(pid_value)?,
            uptime: unsigned(uptime, UPTIME)?,
            version: string(version, VERSION)?,
            hostname: string(hostname, HOSTNAME)?,
            cpu_centipercent: centipercent(cpu)?,
            memory_mb: unsigned(memory, MEMORY_MB)?,
            threads: unsigned(threads, THREADS)?,
            metrics,
        })
    }
}

/// A status message as an engine reads it (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusView<'a> {
    /// When the status was set, RFC 3339.
    pub timestamp: &'a str,
    /// Application name.
    pub node_name: &'a str,
    /// `{node_name}-{hostname}-{pid}`.
    pub instance_id: &'a str,
    /// `online`, `offline` or `lost`.
    pub status: &'a str,
}

impl<'a> StatusView<'a> {
    /// Reads a status payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, PayloadError> {
        use field::*;
        let [ts, name, id, status] = members(payload, [TIMESTAMP, NODE_NAME, INSTANCE_ID, STATUS])?;
        Ok(Self {
            timestamp: string(ts, TIMESTAMP)?,
            node_name: string(name, NODE_NAME)?,
            instance_id: string(id, INSTANCE_ID)?,
            status: string(status, STATUS)?,
        })
    }
}

/// A result or progress update as an engine reads it (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultView<'a> {
    /// When the result was built, RFC 3339.
    pub timestamp: &'a str,
    /// Application name.
    pub node_name: &'a str,
    /// The instance that answered.
    pub instance_id: &'a str,
    /// The command's `request_id`, escaped as on the wire.
    pub request_id: &'a str,
    /// The command name, escaped as on the wire; empty for a malformed control message.
    pub command: &'a str,
    /// Whether the command succeeded.
    pub success: bool,
    /// Human-readable outcome, escaped as on the wire.
    pub message: &'a str,
    /// Command output; `None` for `null`.
    pub data: Option<RawJson<'a>>,
    /// `in_progress` or `done`.
    pub state: &'a str,
}

impl<'a> ResultView<'a> {
    /// Reads a result payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, PayloadError> {
        use field::*;
        let [ts, name, id, request_id, command, success, message, data, state] =
            members(payload, [TIMESTAMP, NODE_NAME, INSTANCE_ID, REQUEST_ID, COMMAND, SUCCESS, MESSAGE, DATA, STATE])?;
        let success = match required(success, SUCCESS)?.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(PayloadError::WrongType(SUCCESS)),
        };
        Ok(Self {
            timestamp: string(ts, TIMESTAMP)?,
            node_name: string(name, NODE_NAME)?,
            instance_id: string(id, INSTANCE_ID)?,
            request_id: string(request_id, REQUEST_ID)?,
            command: string(command, COMMAND)?,
            success,
            message: string(message, MESSAGE)?,
            data: data.filter(|d| d.as_str() != "null"),
            state: string(state, STATE)?,
        })
    }

    /// Whether this is the final result (`done`) rather than a progress update.
    pub fn is_final(&self) -> bool {
        self.state == "done"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[u8]) -> &str {
        core::str::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_heartbeat_decodes_to_what_was_encoded() {
        let custom = [("queue_depth", Metric::Int(7))];
        let hb = Heartbeat {
            timestamp: Timestamp::from_unix_secs(1_704_110_400),
            node_name: "my-app",
            instance_id: "my-app-server01-12345",
            status: "running",
            pid: 12345,
            uptime: 99,
            version: "1.0.0",
            hostname: "server01",
            metrics: Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &custom },
        };
        let mut buf = [0u8; 512];
        let n = to_json(&hb, &mut buf).unwrap();
        let v = HeartbeatView::parse(&buf[..n]).unwrap();
        assert_eq!(v.timestamp, "2024-01-01T12:00:00Z");
        assert_eq!(
            (v.node_name, v.instance_id, v.status, v.version, v.hostname),
            ("my-app", "my-app-server01-12345", "running", "1.0.0", "server01")
        );
        assert_eq!((v.pid, v.uptime, v.cpu_centipercent, v.memory_mb, v.threads), (12345, 99, 250, 128, 42));
        assert_eq!(v.metrics.get("queue_depth").map(|m| m.as_str()), Some("7"));
    }

    #[test]
    fn register_status_and_result_decode_to_what_was_encoded() {
        let mut buf = [0u8; 1024];
        let extra = [("zone", "eu")];
        let reg = Register {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "a",
            instance_id: "a-h-1",
            version: "2.0",
            pid: u32::MAX,
            start_time: Timestamp::from_unix_secs(60),
            capabilities: Capabilities { fixed: &["mqtt_control", "heartbeat"], extra: &["x"] },
            metadata: Metadata { hostname: "h", extra: &extra },
            node_version: NodeVersion { git_commit: "abc", ..NodeVersion::UNKNOWN },
        };
        let n = to_json(&reg, &mut buf).unwrap();
        let v = RegisterView::parse(&buf[..n]).unwrap();
        assert_eq!((v.node_name, v.instance_id, v.version, v.pid), ("a", "a-h-1", "2.0", u32::MAX));
        assert_eq!((v.timestamp, v.start_time), ("1970-01-01T00:00:00Z", "1970-01-01T00:01:00Z"));
        assert_eq!(v.capabilities.as_str(), r#"["mqtt_control","heartbeat","x"]"#);
        assert_eq!(v.metadata.get("zone").and_then(|z| z.as_escaped_str()), Some("eu"));
        assert_eq!(v.node_version, NodeVersion { git_commit: "abc", ..NodeVersion::UNKNOWN });

        let st =
            Status { timestamp: Timestamp::from_unix_secs(0), node_name: "a", instance_id: "a-h-1", status: "lost" };
        let n = to_json(&st, &mut buf).unwrap();
        let v = StatusView::parse(&buf[..n]).unwrap();
        assert_eq!((v.node_name, v.instance_id, v.status), ("a", "a-h-1", "lost"));

        let data = RawJson::parse(br#"{"k":[1]}"#).unwrap();
        for (success, data) in [(true, Some(data)), (false, None)] {
            let r = CommandResult {
                timestamp: Timestamp::from_unix_secs(0),
                node_name: "a",
                instance_id: "a-h-1",
                request_id: r#"r\"1"#,
                command: "echo",
                success,
                message: "say \"hi\"",
                data,
                state: "done",
            };
            let n = to_json(&r, &mut buf).unwrap();
            let v = ResultView::parse(&buf[..n]).unwrap();
            assert_eq!((v.request_id, v.command, v.success, v.message), (r#"r\"1"#, "echo", success, r#"say \"hi\""#));
            assert_eq!((v.data, v.is_final()), (data, true));
        }
    }

    #[test]
    fn a_control_message_is_read_back_by_the_node_parser() {
        let params = Object::parse(br#"{"timeout_ms":1500,"x":"y"}"#).unwrap();
        let c = Control {
            command: "echo",
            timestamp: Timestamp::from_unix_secs(0),
            request_id: "req-1",
            parameters: Some(params),
        };
        let mut buf = [0u8; 256];
        let n = to_json(&c, &mut buf).unwrap();
        assert_eq!(
            text(&buf[..n]),
            r#"{"command":"echo","timestamp":"1970-01-01T00:00:00Z","request_id":"req-1","parameters":{"timeout_ms":1500,"x":"y"}}"#
        );
        let parsed = crate::node::command::parse_control(&buf[..n]).unwrap();
        assert_eq!(parsed.request_id, "req-1");
        let body = parsed.body.unwrap();
        assert_eq!((body.name, body.parameters.get("x").and_then(|x| x.as_escaped_str())), ("echo", Some("y")));
        let bare = Control { parameters: None, ..c };
        let n = to_json(&bare, &mut buf).unwrap();
        assert!(text(&buf[..n]).ends_with(r#""parameters":{}}"#));
    }

    #[test]
    fn payloads_that_break_the_contract_get_a_typed_error() {
        assert!(matches!(StatusView::parse(b"{"), Err(PayloadError::Malformed(_))));
        assert_eq!(StatusView::parse(b"[1]"), Err(PayloadError::Malformed(crate::error::JsonError::NotAnObject)));
        assert_eq!(
            StatusView::parse(br#"{"timestamp":"t","node_name":"a","instance_id":"i"}"#),
            Err(PayloadError::MissingField("status"))
        );
        assert_eq!(
            StatusView::parse(br#"{"timestamp":"t","node_name":1,"instance_id":"i","status":"x"}"#),
            Err(PayloadError::WrongType("node_name"))
        );
        let hb = |pid: &str, cpu: &str| {
            std::format!(
                r#"{{"timestamp":"t","node_name":"a","instance_id":"i","status":"running","pid":{pid},"uptime":1,"version":"v","hostname":"h","metrics":{{"process_cpu_usage_percent":{cpu},"process_memory_usage_mb":1,"process_goroutine_count":1}}}}"#
            )
        };
        assert_eq!(HeartbeatView::parse(hb("1", r#""3.5""#).as_bytes()).map(|h| h.cpu_centipercent), Ok(350));
        assert_eq!(HeartbeatView::parse(hb("1", r#""7""#).as_bytes()).map(|h| h.cpu_centipercent), Ok(700));
        for (pid, cpu, field) in [
            ("-1", r#""1.00""#, "pid"),
            ("4294967296", r#""1.00""#, "pid"),
            ("1.5", r#""1.00""#, "pid"),
            ("1", "1.00", "process_cpu_usage_percent"),
            ("1", r#""x.00""#, "process_cpu_usage_percent"),
            ("1", r#""99999999999.00""#, "process_cpu_usage_percent"),
        ] {
            assert_eq!(
                HeartbeatView::parse(hb(pid, cpu).as_bytes()),
                Err(PayloadError::WrongType(field)),
                "{pid} {cpu}"
            );
        }
    }

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
        for (centi, text) in [(5, "0.05"), (100, "1.00"), (u32::MAX, "42949672.95")] {
            let m = Metrics { cpu_centipercent: centi, ..Metrics::default() };
            let n = to_json(&m, &mut buf).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
            assert_eq!(v["process_cpu_usage_percent"], text);
        }
    }

    #[test]
    fn result_data_is_embedded_verbatim_and_ids_are_not_escaped_twice() {
        let data = RawJson::parse(br#"{"echo": [1, "x"]}"#).unwrap();
        let r = CommandResult {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "n",
            instance_id: "n-h-1",
            request_id: r#"a\"b"#,
            command: "echo",
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

    proptest::proptest! {
        #[test]
        fn every_heartbeat_and_result_round_trips(
            name in "[a-z0-9_.-]{1,48}",
            host in "[a-zA-Z0-9.-]{1,64}",
            pid in proptest::prelude::any::<u32>(),
            uptime in proptest::prelude::any::<u64>(),
            cpu in proptest::prelude::any::<u32>(),
            memory in proptest::prelude::any::<u64>(),
            message in "\\PC{0,40}",
            success in proptest::prelude::any::<bool>(),
        ) {
            let mut buf = [0u8; 2048];
            let hb = Heartbeat {
                timestamp: Timestamp::from_unix_secs(uptime),
                node_name: &name,
                instance_id: &host,
                status: "running",
                pid,
                uptime,
                version: &name,
                hostname: &host,
                metrics: Metrics { cpu_centipercent: cpu, memory_mb: memory, threads: memory, custom: &[] },
            };
            let n = to_json(&hb, &mut buf).unwrap();
            let v = HeartbeatView::parse(&buf[..n]).unwrap();
            proptest::prop_assert_eq!((v.node_name, v.hostname, v.pid, v.uptime), (name.as_str(), host.as_str(), pid, uptime));
            proptest::prop_assert_eq!((v.cpu_centipercent, v.memory_mb, v.threads), (cpu, memory, memory));
            proptest::prop_assert_eq!(v.timestamp.as_bytes(), &Timestamp::from_unix_secs(uptime).to_rfc3339()[..]);

            let r = CommandResult {
                timestamp: Timestamp::from_unix_secs(0),
                node_name: &name,
                instance_id: &host,
                request_id: &name,
                command: "c",
                success,
                message: &message,
                data: None,
                state: "in_progress",
            };
            let n = to_json(&r, &mut buf).unwrap();
            let v = ResultView::parse(&buf[..n]).unwrap();
            // The message comes back escaped; unescaping it gives the original.
            let unescaped: std::string::String = serde_json::from_str(&std::format!("\"{}\"", v.message)).unwrap();
            proptest::prop_assert_eq!(unescaped, message);
            proptest::prop_assert_eq!((v.request_id, v.success, v.is_final(), v.data), (name.as_str(), success, false, None));
        }
    }
}
