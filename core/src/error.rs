//! Typed errors, one enum per layer and fault.
//!
//! Every enum is small, `Copy` and `#[non_exhaustive]`, with a doc line per variant and a
//! lowercase `Display`, so adapters can log them and map them into their own error types.

use core::fmt;

/// Why bytes from the broker could not be decoded as an MQTT 3.1.1 packet.
///
/// A decode error breaks the byte stream, so the node closes the connection and reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining-length field ran past its four-byte maximum.
    MalformedRemainingLength,
    /// The packet type nibble is reserved (0 or 15).
    UnknownPacketType(u8),
    /// The fixed-header flags are not the ones the spec fixes for this packet type.
    InvalidFlags(u8),
    /// The remaining length does not match what the packet's fields need.
    InvalidLength,
    /// A string field is not UTF-8.
    InvalidUtf8,
    /// A QoS field holds 3.
    InvalidQos,
    /// A packet identifier is zero.
    InvalidPid,
    /// A CONNACK return code above 5, or a SUBACK code other than 0, 1, 2 or 0x80.
    InvalidReturnCode(u8),
    /// A packet a broker never sends to a client (CONNECT, SUBSCRIBE, PINGREQ, ...), or a QoS 2
    /// packet although this node only ever subscribes with QoS 1.
    UnexpectedPacket(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedRemainingLength => f.write_str("malformed remaining length"),
            Self::UnknownPacketType(t) => write!(f, "reserved packet type {t}"),
            Self::InvalidFlags(b) => write!(f, "invalid fixed-header flags in byte {b:#04x}"),
            Self::InvalidLength => f.write_str("remaining length does not match the packet"),
            Self::InvalidUtf8 => f.write_str("string is not utf-8"),
            Self::InvalidQos => f.write_str("qos 3 is reserved"),
            Self::InvalidPid => f.write_str("packet identifier 0"),
            Self::InvalidReturnCode(c) => write!(f, "invalid return code {c}"),
            Self::UnexpectedPacket(t) => write!(f, "packet type {t} is not sent to clients"),
        }
    }
}

/// Why an outgoing packet or payload could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's buffer is too small for the packet or its JSON payload.
    BufferTooSmall,
    /// A topic over 65535 bytes or a packet over MQTT's 256 MiB limit.
    TooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("buffer too small"),
            Self::TooLarge => f.write_str("larger than mqtt can express"),
        }
    }
}

/// Why a message was not written into the room offered it. Crate-internal: the outbox turns it
/// into a [`NodeError`], after using `Needs` to decide, before it drops anything, whether
/// dropping can make room at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// The room was too small; this many bytes would do.
    Needs(usize),
    /// More room would not help.
    Encode(EncodeError),
}

impl From<EncodeError> for Unfit {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// A configuration or identity the node refuses at construction, before any byte is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The named field is empty.
    Empty(&'static str),
    /// The named field is longer than the limit (bytes) that keeps every topic bounded.
    TooLong(&'static str, usize),
    /// The named field contains `/`, `+`, `#` or a control character, which would break or widen
    /// an MQTT topic, or `"` or `\`, which names never need.
    InvalidCharacter(&'static str),
    /// The named duration is zero or outside what MQTT can express (keep-alive ≤ 65535 s).
    InvalidDuration(&'static str),
    /// `reconnect_min` is greater than `reconnect_max`.
    BackoffRange,
    /// A caller buffer is too small to hold the packets the node must be able to send.
    BufferTooSmall(&'static str),
    /// An entry of `Config::commands` is not a name the engine can reach.
    CommandName(CommandNameError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(field) => write!(f, "{field} is empty"),
            Self::TooLong(field, max) => write!(f, "{field} is longer than {max} bytes"),
            Self::InvalidCharacter(field) => {
                write!(f, "{field} contains '/', '+', '#', '\"', '\\' or a control character")
            }
            Self::InvalidDuration(field) => write!(f, "{field} is zero or out of range"),
            Self::BackoffRange => f.write_str("reconnect_min is greater than reconnect_max"),
            Self::BufferTooSmall(which) => write!(f, "{which} buffer is too small"),
            Self::CommandName(e) => write!(f, "command name: {e}"),
        }
    }
}

/// Why an application command name cannot be declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandNameError {
    /// The name is empty.
    Empty,
    /// A built-in command has this name; the core answers it before any handler could.
    BuiltIn,
    /// Longer than the 32 bytes the node keeps of a command name.
    TooLong,
    /// Not printable ASCII, or one of `" \ / < > &`: some JSON encoder would escape it, and the
    /// escaped name would never match.
    InvalidCharacter,
}

impl CommandNameError {
    /// The reason, as a sentence fragment.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Empty => "the name is empty",
            Self::BuiltIn => "a built-in command has this name",
            Self::TooLong => "command names are at most 32 bytes",
            Self::InvalidCharacter => "command names are printable ASCII without \" \\ / < > &",
        }
    }
}

impl fmt::Display for CommandNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The text is not valid JSON (RFC 8259); the number is the byte offset of the problem.
    Syntax(usize),
    /// Objects and arrays are nested deeper than the parser's fixed limit.
    TooDeep,
    /// A valid JSON value that is not the expected type (an object was needed).
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(at) => write!(f, "invalid json at byte {at}"),
            Self::TooDeep => f.write_str("json nested too deeply"),
            Self::NotAnObject => f.write_str("json value is not an object"),
        }
    }
}

/// Why a node payload (register, heartbeat, status or result) could not be read by an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is not one valid JSON object.
    Malformed(JsonError),
    /// A field the wire contract requires is absent.
    MissingField(&'static str),
    /// A field has a JSON type (or, for numbers, a range) the wire contract does not allow.
    WrongType(&'static str),
    /// A field the wire contract names appears twice (also when one is spelled with escapes):
    /// readers that keep the first and readers that keep the last would see different messages.
    DuplicateField(&'static str),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed payload: {e}"),
            Self::MissingField(field) => write!(f, "malformed payload: missing field `{field}`"),
            Self::WrongType(field) => write!(f, "malformed payload: field `{field}` has the wrong type"),
            Self::DuplicateField(field) => write!(f, "malformed payload: field `{field}` appears twice"),
        }
    }
}

/// Why a control message could not be run as a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The payload is not a JSON object.
    Malformed(JsonError),
    /// A required field (`command` or `request_id`) is absent.
    MissingField(&'static str),
    /// A field has the wrong JSON type (`command`, `request_id` and `timestamp` are strings,
    /// `parameters` is an object).
    WrongType(&'static str),
    /// A field is longer than the node keeps (`command` 32 bytes, `request_id` 64 bytes).
    TooLong(&'static str),
    /// No built-in handles this command and the application was not told about it.
    Unknown,
    /// A parameter is missing or out of range; the name says which.
    InvalidParameter(&'static str),
    /// The command table is full: too many commands are running at once.
    Busy,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed command: {e}"),
            Self::MissingField(field) => write!(f, "malformed command: missing field `{field}`"),
            Self::WrongType(field) => write!(f, "malformed command: field `{field}` has the wrong type"),
            Self::TooLong(field) => write!(f, "malformed command: field `{field}` is too long"),
            Self::Unknown => f.write_str("unknown command"),
            Self::InvalidParameter(p) => write!(f, "invalid or missing parameter `{p}`"),
            Self::Busy => f.write_str("too many commands running"),
        }
    }
}

/// Why a desired document (PROTOCOL.md §15.1) was refused whole; the node keeps what it had from
/// that topic and reports this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DesiredError {
    /// The payload is not one JSON object.
    Malformed(JsonError),
    /// `version` or `settings` is absent.
    MissingField(&'static str),
    /// A field has the wrong type or range (`version` an integer 1 to 2^53, `settings` an
    /// object, `timestamp` a string).
    WrongType(&'static str),
    /// A field appears twice (also when one copy is spelled with escapes).
    DuplicateField(&'static str),
    /// A setting key is empty, longer than 32 bytes, or not printable ASCII without `" \ / < > &`.
    InvalidKey,
    /// A setting appears twice.
    DuplicateKey,
    /// A setting's value is an object or an array; settings are flat.
    NestedValue,
    /// A setting's value is longer than 128 bytes as sent.
    ValueTooLong,
    /// More than 32 settings, counting those of the other document it merges with.
    TooManySettings,
    /// Together with the other document, larger than the node's desired buffer.
    TooLarge,
}

impl fmt::Display for DesiredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid desired document: ")?;
        match self {
            Self::Malformed(e) => write!(f, "{e}"),
            Self::MissingField(field) => write!(f, "missing field `{field}`"),
            Self::WrongType(field) => write!(f, "field `{field}` has the wrong type or range"),
            Self::DuplicateField(field) => write!(f, "field `{field}` appears twice"),
            Self::InvalidKey => f.write_str("a setting key is empty, too long or has a character keys may not"),
            Self::DuplicateKey => f.write_str("a setting appears twice"),
            Self::NestedValue => f.write_str("a setting value is an object or an array"),
            Self::ValueTooLong => f.write_str("a setting value is longer than 128 bytes"),
            Self::TooManySettings => f.write_str("more than 32 settings"),
            Self::TooLarge => f.write_str("larger than the node's desired buffer"),
        }
    }
}

/// Why a call from the application was refused; the node's state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// No running command has this request_id (it finished, timed out, or never existed).
    UnknownRequest,
    /// The message does not fit in the outbox even after dropping everything droppable.
    OutboxFull,
    /// A payload or packet did not fit the caller's buffer.
    Encode(EncodeError),
    /// Result `data` is not valid JSON.
    InvalidData(JsonError),
    /// The node has stopped; build a new one to rejoin.
    Stopped,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRequest => f.write_str("no running command has this request_id"),
            Self::OutboxFull => f.write_str("message does not fit in the outbox"),
            Self::Encode(e) => write!(f, "encode: {e}"),
            Self::InvalidData(e) => write!(f, "result data: {e}"),
            Self::Stopped => f.write_str("node is stopped"),
        }
    }
}

impl From<EncodeError> for NodeError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// How the broker refused a CONNECT (MQTT 3.1.1 §3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectRefused {
    /// 1: the broker does not speak MQTT 3.1.1.
    ProtocolVersion,
    /// 2: the client identifier (our instance_id) is not allowed.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: the username or password is wrong.
    BadUsernamePassword,
    /// 5: the client is not authorized to connect.
    NotAuthorized,
}

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ProtocolVersion => "unacceptable protocol version",
            Self::IdentifierRejected => "identifier rejected",
            Self::ServerUnavailable => "server unavailable",
            Self::BadUsernamePassword => "bad username or password",
            Self::NotAuthorized => "not authorized",
        })
    }
}
