//! Control commands: parsing `{command, timestamp, request_id, parameters}`, the table of
//! running commands, and the memory of recent request ids that makes redelivery harmless.

use core::ops::Range;

use super::builtin::BUILT_INS;
use crate::codec::json::{Object, RawJson};
use crate::error::{CommandError, CommandNameError, JsonError};
use crate::time::{Duration, Instant};

/// Longest `request_id` the node keeps, in bytes as received.
pub const REQUEST_ID_MAX: usize = 64;
/// Longest command name the node keeps, in bytes as received.
pub const COMMAND_MAX: usize = 32;
/// How many finished request ids are remembered to recognise redeliveries.
pub const RECENT_IDS: usize = 32;

/// A request id as a node keeps it; its length fits a byte, which keeps eight command slots
/// 56 bytes smaller than a `usize` length would.
pub(crate) type RequestId = heapless::String<REQUEST_ID_MAX, u8>;
/// A command name as a node keeps it, its length likewise in a byte.
pub(crate) type CommandName = heapless::String<COMMAND_MAX, u8>;

/// A handle to a running command, for [`Node::complete`](crate::Node::complete) and
/// [`Node::progress`](crate::Node::progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandId {
    slot: u8,
    generation: u32,
}

/// A command for the application, valid until the next `handle_*` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    /// Handle for reporting progress and the result.
    pub id: CommandId,
    /// The command name, as received (JSON-escaped form).
    pub name: &'a str,
    /// The engine's request id, as received (JSON-escaped form).
    pub request_id: &'a str,
    /// The `parameters` object (`{}` when absent).
    pub parameters: Object<'a>,
    /// When the core will give up and publish a timed-out result (from `parameters.timeout_ms`).
    pub deadline: Option<Instant>,
}

/// How an application handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    /// Whether the command succeeded.
    pub success: bool,
    /// Human-readable outcome.
    pub message: &'a str,
    /// Handler output as JSON text, if any; validated before it is published.
    pub data: Option<&'a [u8]>,
}

impl<'a> Outcome<'a> {
    /// A success with `message` and no data.
    pub const fn ok(message: &'a str) -> Self {
        Self { success: true, message, data: None }
    }

    /// A failure explained by `message`.
    pub const fn fail(message: &'a str) -> Self {
        Self { success: false, message, data: None }
    }

    /// The answer to a declared command that has no handler: an adapter's table and
    /// `Config::commands` disagree.
    pub const fn no_handler() -> Outcome<'static> {
        Outcome::fail("no handler for this command")
    }

    /// The same outcome carrying `data`, JSON text.
    pub const fn with_data(self, data: &'a [u8]) -> Self {
        Self { data: Some(data), ..self }
    }
}

/// Checks that the engine can reach an application command called `name`: not a built-in,
/// at most [`COMMAND_MAX`] bytes, and nothing a common JSON encoder escapes (the node matches
/// names as they arrive): printable ASCII without `"`, `\`, `/` (PHP), `<`, `>`, `&` (Go).
pub fn check_command_name(name: &str) -> Result<(), CommandNameError> {
    if name.is_empty() {
        Err(CommandNameError::Empty)
    } else if BUILT_INS.contains(&name) {
        Err(CommandNameError::BuiltIn)
    } else if name.len() > COMMAND_MAX {
        Err(CommandNameError::TooLong)
    } else if !never_escaped(name) {
        Err(CommandNameError::InvalidCharacter)
    } else {
        Ok(())
    }
}

/// Whether no common JSON encoder escapes anything in `text`: printable ASCII without `"`, `\`,
/// `/` (PHP), `<`, `>`, `&` (Go). Names the node matches as they arrive must be so.
pub(crate) fn never_escaped(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'/' | b'<' | b'>' | b'&'))
}

/// A control message whose `request_id` could be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Control<'a> {
    pub(crate) request_id: &'a str,
    /// The command name when it is readable, even if the rest is not, for the failed result.
    pub(crate) name: Option<&'a str>,
    /// Everything else, or what is wrong with it.
    pub(crate) body: Result<Body<'a>, CommandError>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Body<'a> {
    pub(crate) name: &'a str,
    pub(crate) parameters: Object<'a>,
    pub(crate) timeout: Option<Duration>,
}

/// Parses a control payload. `Err` means not even a `request_id` could be read, so there is
/// nobody to answer; problems with the other fields come back inside `Ok` to be answered.
pub(crate) fn parse_control(payload: &[u8]) -> Result<Control<'_>, CommandError> {
    // One pass: validation hands us the members; the first occurrence of a key wins, as in
    // `Object::get`.
    let mut fields: [Option<RawJson<'_>>; 4] = [None; 4];
    Object::parse_with(payload, |key, value| {
        let slot = match key {
            "request_id" => 0,
            "command" => 1,
            "timestamp" => 2,
            "parameters" => 3,
            _ => return,
        };
        if let Some(field @ None) = fields.get_mut(slot) {
            *field = Some(value);
        }
    })
    .map_err(CommandError::Malformed)?;
    let [request_id, command, timestamp, parameters] = fields;
    let request_id = string_field(request_id, "request_id")?.ok_or(CommandError::MissingField("request_id"))?;
    if request_id.len() > REQUEST_ID_MAX {
        return Err(CommandError::TooLong("request_id"));
    }
    let name = string_field(command, "command").ok().flatten().filter(|n| n.len() <= COMMAND_MAX);
    Ok(Control { request_id, name, body: parse_body(command, timestamp, parameters) })
}

fn parse_body<'a>(
    command: Option<RawJson<'a>>,
    timestamp: Option<RawJson<'a>>,
    parameters: Option<RawJson<'a>>,
) -> Result<Body<'a>, CommandError> {
    let name = string_field(command, "command")?.ok_or(CommandError::MissingField("command"))?;
    if name.len() > COMMAND_MAX {
        return Err(CommandError::TooLong("command"));
    }
    string_field(timestamp, "timestamp")?;
    let parameters = match parameters {
        None => Object::EMPTY,
        Some(raw) if raw.as_str() == "null" => Object::EMPTY,
        Some(raw) => raw.as_object().ok_or(CommandError::WrongType("parameters"))?,
    };
    let timeout = match parameters.get("timeout_ms") {
        None => None,
        Some(raw) => match raw.deserialize::<u64>() {
            // `try_`: a deadline too far away for the tick counter is refused, not a panic.
            Some(ms) if ms > 0 => match Duration::try_from_millis(ms) {
                Some(timeout) => Some(timeout),
                None => return Err(CommandError::InvalidParameter("timeout_ms")),
            },
            _ => return Err(CommandError::InvalidParameter("timeout_ms")),
        },
    };
    Ok(Body { name, parameters, timeout })
}

fn string_field<'a>(value: Option<RawJson<'a>>, name: &'static str) -> Result<Option<&'a str>, CommandError> {
    match value {
        None => Ok(None),
        Some(raw) => raw.as_escaped_str().map(Some).ok_or(CommandError::WrongType(name)),
    }
}

/// A 64-bit fingerprint of a request id for the redelivery memory (FxHash's mixing step, eight
/// bytes at a time). It only has to be stable within one process.
pub(crate) fn fingerprint(request_id: &str) -> u64 {
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    let bytes = request_id.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut hash = (&mut chunks).fold(bytes.len() as u64, |h, chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        mix(h, u64::from_le_bytes(word))
    });
    let mut tail = [0u8; 8];
    tail.get_mut(..chunks.remainder().len()).unwrap_or_default().copy_from_slice(chunks.remainder());
    hash = mix(hash, u64::from_le_bytes(tail));
    // 0 marks an empty slot in the memory below.
    hash | 1
}

/// Who a result answers: the request id and command name as received, and the id's fingerprint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyTo<'r> {
    pub(crate) id: &'r str,
    pub(crate) command: &'r str,
    pub(crate) tag: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Running {
    generation: u32,
    pub(crate) request_id: RequestId,
    pub(crate) name: CommandName,
    pub(crate) tag: u64,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout: Option<Duration>,
    /// Where `parameters` sits in the receive buffer, until the next `handle_*` call.
    pub(crate) parameters: Range<usize>,
}

/// Running commands (at most `N`) and recently finished request ids.
#[derive(Debug)]
pub(crate) struct Commands<const N: usize> {
    slots: [Option<Running>; N],
    generation: u32,
    recent: [u64; RECENT_IDS],
    recent_next: usize,
}

impl<const N: usize> Commands<N> {
    pub(crate) fn new() -> Self {
        Self { slots: [const { None }; N], generation: 0, recent: [0; RECENT_IDS], recent_next: 0 }
    }

    pub(crate) fn is_running(&self, request_id: &str) -> bool {
        self.find(request_id).is_some()
    }

    /// The running command answering `request_id`.
    pub(crate) fn find(&self, request_id: &str) -> Option<CommandId> {
        self.slots.iter().enumerate().find_map(|(slot, r)| {
            let r = r.as_ref().filter(|r| r.request_id == request_id)?;
            Some(CommandId { slot: u8::try_from(slot).ok()?, generation: r.generation })
        })
    }

    pub(crate) fn recently_finished(&self, fingerprint: u64) -> bool {
        self.recent.contains(&fingerprint)
    }

    pub(crate) fn remember(&mut self, fingerprint: u64) {
        if let Some(slot) = self.recent.get_mut(self.recent_next) {
            *slot = fingerprint;
        }
        self.recent_next = (self.recent_next + 1) % RECENT_IDS;
    }

    /// Starts tracking a command; `None` when every slot is busy.
    pub(crate) fn start(&mut self, mut running: Running) -> Option<CommandId> {
        let (slot, free) = self.slots.iter_mut().enumerate().find(|(_, s)| s.is_none())?;
        self.generation = self.generation.wrapping_add(1);
        running.generation = self.generation;
        *free = Some(running);
        Some(CommandId { slot: u8::try_from(slot).ok()?, generation: self.generation })
    }

    pub(crate) fn get(&self, id: CommandId) -> Option<&Running> {
        self.slots.get(usize::from(id.slot))?.as_ref().filter(|r| r.generation == id.generation)
    }

    pub(crate) fn take(&mut self, id: CommandId) -> Option<Running> {
        self.get(id)?;
        self.slots.get_mut(usize::from(id.slot))?.take()
    }

    /// The earliest deadline of any running command.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().filter_map(|r| r.deadline).min()
    }

    /// A command whose deadline has passed at `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<CommandId> {
        self.slots.iter().enumerate().find_map(|(slot, r)| {
            let r = r.as_ref()?;
            (r.deadline? <= now).then_some(CommandId { slot: u8::try_from(slot).ok()?, generation: r.generation })
        })
    }
}

impl Running {
    /// The request this command answers.
    pub(crate) fn request(&self) -> ReplyTo<'_> {
        ReplyTo { id: &self.request_id, command: &self.name, tag: self.tag }
    }

    pub(crate) fn new(
        request: ReplyTo<'_>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        parameters: Range<usize>,
    ) -> Option<Self> {
        Some(Self {
            generation: 0,
            request_id: RequestId::try_from(request.id).ok()?,
            name: heapless::String::try_from(request.command).ok()?,
            tag: request.tag,
            deadline,
            timeout,
            parameters,
        })
    }
}

/// Validates handler output before it is embedded in a result.
pub(crate) fn parse_data(data: Option<&[u8]>) -> Result<Option<RawJson<'_>>, JsonError> {
    data.map(RawJson::parse).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_control_message_parses() {
        let c = parse_control(br#"{"command":"stop","timestamp":"2024-01-01T12:00:00Z","request_id":"req-123","parameters":{"timeout_ms":1500}}"#).unwrap();
        assert_eq!(c.request_id, "req-123");
        let body = c.body.unwrap();
        assert_eq!(body.name, "stop");
        assert_eq!(body.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn problems_are_named_and_answered_when_the_request_id_is_readable() {
        let body_err = |p: &[u8]| parse_control(p).unwrap().body.unwrap_err();
        assert_eq!(body_err(br#"{"request_id":"r"}"#), CommandError::MissingField("command"));
        assert_eq!(body_err(br#"{"request_id":"r","command":5}"#), CommandError::WrongType("command"));
        assert_eq!(
            body_err(br#"{"request_id":"r","command":"x","parameters":[]}"#),
            CommandError::WrongType("parameters")
        );
        assert_eq!(
            body_err(br#"{"request_id":"r","command":"x","timestamp":1}"#),
            CommandError::WrongType("timestamp")
        );
        assert_eq!(
            body_err(br#"{"request_id":"r","command":"x","parameters":{"timeout_ms":-1}}"#),
            CommandError::InvalidParameter("timeout_ms")
        );
        // Found by the control_command fuzz target: milliseconds beyond the tick counter.
        assert_eq!(
            body_err(br#"{"request_id":"r","command":"x","parameters":{"timeout_ms":18446744073709551615}}"#),
            CommandError::InvalidParameter("timeout_ms")
        );
        assert_eq!(parse_control(b"{").unwrap_err(), CommandError::Malformed(JsonError::Syntax(1)));
        assert_eq!(parse_control(br#"{"command":"x"}"#).unwrap_err(), CommandError::MissingField("request_id"));
        assert_eq!(parse_control(br#"{"request_id":1}"#).unwrap_err(), CommandError::WrongType("request_id"));
    }

    #[test]
    fn command_names_must_be_reachable() {
        assert_eq!(check_command_name("deploy"), Ok(()));
        assert_eq!(check_command_name(""), Err(CommandNameError::Empty));
        assert_eq!(check_command_name("ping"), Err(CommandNameError::BuiltIn));
        assert_eq!(check_command_name(&"x".repeat(COMMAND_MAX + 1)), Err(CommandNameError::TooLong));
        assert_eq!(check_command_name("a\"b"), Err(CommandNameError::InvalidCharacter));
        assert_eq!(check_command_name("a\nb"), Err(CommandNameError::InvalidCharacter));
        for escaped_by_someone in ["a/b", "a<b", "a>b", "a&b", "café", "a\u{2028}b"] {
            assert_eq!(check_command_name(escaped_by_someone), Err(CommandNameError::InvalidCharacter));
        }
        assert_eq!(check_command_name("run job-1.2_x:y"), Ok(()));
    }

    #[test]
    fn slots_are_reused_without_confusing_old_handles() {
        let mut c = Commands::<1>::new();
        let r = || Running::new(ReplyTo { id: "a", command: "x", tag: 3 }, None, None, 0..0).unwrap();
        let first = c.start(r()).unwrap();
        assert!(c.start(r()).is_none());
        assert!(c.take(first).is_some());
        let second = c.start(r()).unwrap();
        assert!(c.get(first).is_none());
        assert!(c.get(second).is_some());
    }
}
