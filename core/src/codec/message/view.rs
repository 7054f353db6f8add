//! The decoders: zero-copy views of what nodes publish, as an engine reads them, with a typed
//! error for anything that breaks the wire contract.

use super::names::field;
use super::NodeVersion;
use crate::codec::json::{Object, RawJson, Unescaped};
use crate::error::PayloadError;

/// The top-level members named in `names`, in one pass over `payload`. A name that appears
/// twice, however it is escaped, is an error: which one counts would depend on the reader.
pub(crate) fn members<'a, const N: usize>(
    payload: &'a [u8],
    names: [&'static str; N],
) -> Result<[Option<RawJson<'a>>; N], PayloadError> {
    let mut found = [None; N];
    let mut duplicate = None;
    Object::parse_with(payload, |key, value| {
        if let Err(name) = file(&mut found, &names, key, value) {
            duplicate = duplicate.or(Some(name));
        }
    })
    .map_err(PayloadError::Malformed)?;
    match duplicate {
        Some(name) => Err(PayloadError::DuplicateField(name)),
        None => Ok(found),
    }
}

/// The members of a nested `object` named in `names`, with the same rule as [`members`]: one
/// given twice is an error.
fn nested<'a, const N: usize>(
    object: Object<'a>,
    names: [&'static str; N],
) -> Result<[Option<RawJson<'a>>; N], PayloadError> {
    let mut found = [None; N];
    for (key, value) in object.members() {
        file(&mut found, &names, key, value).map_err(PayloadError::DuplicateField)?;
    }
    Ok(found)
}

/// Files `value` under `key`'s slot in `found` if `key` (escaped as on the wire) is one of
/// `names`; the name back if its slot was taken already.
fn file<'a, const N: usize>(
    found: &mut [Option<RawJson<'a>>; N],
    names: &[&'static str; N],
    key: &str,
    value: RawJson<'a>,
) -> Result<(), &'static str> {
    let key = Unescaped(key);
    let Some((slot, name)) = found.iter_mut().zip(names).find(|(_, n)| key.means(n)) else { return Ok(()) };
    if slot.is_some() {
        return Err(name);
    }
    *slot = Some(value);
    Ok(())
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
    /// `metadata.hostname`, in its escaped wire form, if it is there.
    pub hostname: Option<&'a str>,
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
        let [git_version, git_commit, build_date, go_version, platform] =
            nested(object(nv, NODE_VERSION)?, [GIT_VERSION, GIT_COMMIT, BUILD_DATE, GO_VERSION, PLATFORM])?;
        let metadata = object(meta, METADATA)?;
        let [hostname] = nested(metadata, [HOSTNAME])?;
        Ok(Self {
            timestamp: string(ts, TIMESTAMP)?,
            node_name: string(name, NODE_NAME)?,
            instance_id: string(id, INSTANCE_ID)?,
            version: string(version, VERSION)?,
            pid: pid(pid_value)?,
            start_time: string(start, START_TIME)?,
            capabilities,
            metadata,
            hostname: hostname.map(|h| h.as_escaped_str().ok_or(PayloadError::WrongType(HOSTNAME))).transpose()?,
            node_version: NodeVersion {
                git_version: string(git_version, GIT_VERSION)?,
                git_commit: string(git_commit, GIT_COMMIT)?,
                build_date: string(build_date, BUILD_DATE)?,
                go_version: string(go_version, GO_VERSION)?,
                platform: string(platform, PLATFORM)?,
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
        let [cpu, memory, threads] = nested(metrics, [CPU, MEMORY_MB, THREADS])?;
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
