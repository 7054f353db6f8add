//! A command as the engine sends it: the request, what came of it, and what goes on the wire
//! besides the caller's parameters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use subnodesync_core::{Object, COMMAND_MAX, REQUEST_ID_MAX};

use crate::engine::now_ms;
use crate::error::Error;
use crate::record::{ResultRecord, Wave};
use crate::registry::Registry;
use crate::target::Target;

/// A command to send.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Who gets it.
    pub target: Target,
    /// Command name.
    pub command: String,
    /// The `parameters` object as JSON text (`{}` for none).
    pub parameters: String,
    /// How long to wait for every final result.
    pub timeout: Duration,
    /// How many times to resend, with the same request id, to instances that have not answered
    /// yet; the resends are spread evenly over the timeout.
    pub retries: u32,
    /// The request id to use, so a caller can follow the results as they arrive
    /// ([`FleetEvent::Result`](crate::FleetEvent::Result)) before `send` returns; `None` for a
    /// fresh one. It must be 1 to 64 printable ASCII characters, none of `"` and `\`.
    pub request_id: Option<String>,
}

impl SendRequest {
    /// `command` to `target`, no parameters, 10 s timeout, 2 retries.
    pub fn new(target: Target, command: impl Into<String>) -> Self {
        Self {
            target,
            command: command.into(),
            parameters: "{}".into(),
            timeout: Duration::from_secs(10),
            retries: 2,
            request_id: None,
        }
    }
}

/// What came of a request.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    /// The request id used for every attempt.
    pub request_id: String,
    /// The instances that were expected to answer.
    pub expected: Vec<String>,
    /// Final results by instance (an instance that answered a broadcast unexpectedly is here too).
    pub results: BTreeMap<String, ResultRecord>,
    /// Expected instances with no final result before the timeout.
    pub timed_out: Vec<String>,
    /// How many times the command was published.
    pub attempts: u32,
}

impl SendOutcome {
    /// Whether something answered, nothing timed out and every result is a success.
    pub fn all_succeeded(&self) -> bool {
        self.verdict() == Verdict::Succeeded
    }

    /// The request's outcome in one word.
    pub fn verdict(&self) -> Verdict {
        if !self.timed_out.is_empty() || self.results.is_empty() {
            Verdict::TimedOut
        } else if self.results.values().all(|r| r.success) {
            Verdict::Succeeded
        } else {
            Verdict::Failed
        }
    }
}

/// A request's outcome in one word, as `subnode_commands_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every target answered with success.
    Succeeded,
    /// Every target answered, and at least one with failure.
    Failed,
    /// Some target did not answer in time, or there was nobody to answer.
    TimedOut,
}

impl Verdict {
    /// The lowercase word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Where a request goes and how the history records it: its target resolved against the
/// registry, or one wave of a rollout.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The control topics to publish on.
    pub(crate) topics: Vec<String>,
    /// The instances expected to answer.
    pub(crate) expected: Vec<String>,
    /// `topics` is a name's broadcast topic: a resend goes there, whoever is silent, since
    /// instances the registry does not know may be listening too.
    pub(crate) broadcast: bool,
    /// The target as the history shows it.
    pub(crate) target: String,
    /// The rollout wave the request is, if it is one.
    pub(crate) wave: Option<Wave>,
}

impl Route {
    /// `target` as the registry resolves it now.
    pub(crate) fn resolve(target: &Target, registry: &Registry, prefix: &str) -> Result<Self, Error> {
        let (topics, expected) = target.resolve(registry, prefix)?;
        let broadcast = matches!(target, Target::Node(_));
        Ok(Self { topics, expected, broadcast, target: target.describe(prefix), wave: None })
    }
}

/// The parameters to send, after checking the command name: `request`'s with `timeout_ms`
/// (see [`with_timeout_ms`]).
pub(crate) fn checked_parameters(request: &SendRequest) -> Result<String, Error> {
    if request.command.is_empty() || request.command.len() > COMMAND_MAX {
        return Err(Error::InvalidCommand("the name must be 1 to 32 bytes"));
    }
    with_timeout_ms(&request.parameters, request.timeout)
}

/// The parameters with `timeout_ms` set a little short of how long the engine waits (a tenth, at
/// most a second, less), unless the caller set it: the node gives up on the command just before
/// the engine does, and its "timed out" result still reaches the engine. The caller's members stay
/// as they were, in their order.
fn with_timeout_ms(parameters: &str, timeout: Duration) -> Result<String, Error> {
    let object = Object::parse(parameters.as_bytes()).map_err(|e| Error::InvalidParameters(e.to_string()))?;
    if object.get("timeout_ms").is_some() {
        return Ok(parameters.to_owned());
    }
    let margin = (timeout / 10).min(Duration::from_secs(1));
    let ms = u64::try_from(timeout.saturating_sub(margin).as_millis()).unwrap_or(u64::MAX).max(1);
    if object.members().next().is_none() {
        return Ok(format!("{{\"timeout_ms\":{ms}}}"));
    }
    let rest = object.as_raw().as_str().strip_prefix('{').unwrap_or_default();
    Ok(format!("{{\"timeout_ms\":{ms},{rest}"))
}

/// The caller's request id if it is one the wire carries unescaped, else a fresh one.
pub(crate) fn request_id(chosen: Option<&str>) -> Result<String, Error> {
    match chosen {
        None => Ok(new_request_id()),
        Some(id)
            if (1..=REQUEST_ID_MAX).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
        {
            Ok(id.to_owned())
        }
        Some(_) => {
            Err(Error::InvalidCommand("a request id must be 1 to 64 printable ASCII characters, no quote or backslash"))
        }
    }
}

/// A request id nobody else uses: time, process and a counter, well under the 64-byte limit.
pub(crate) fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    let id = format!("r-{:x}-{:x}-{:08x}", now_ms(), std::process::id(), h.finish() as u32);
    debug_assert!(id.len() <= REQUEST_ID_MAX);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_told_the_engines_timeout_unless_the_caller_chose_one() {
        let ten = Duration::from_secs(10);
        assert_eq!(with_timeout_ms("{}", ten).unwrap(), r#"{"timeout_ms":9000}"#);
        assert_eq!(with_timeout_ms(r#" { } "#, ten).unwrap(), r#"{"timeout_ms":9000}"#);
        assert_eq!(with_timeout_ms(r#"{"z":1,"a":[2]}"#, ten).unwrap(), r#"{"timeout_ms":9000,"z":1,"a":[2]}"#);
        assert_eq!(with_timeout_ms("{}", Duration::from_millis(500)).unwrap(), r#"{"timeout_ms":450}"#);
        assert_eq!(with_timeout_ms(r#"{"timeout_ms":5,"x":1}"#, ten).unwrap(), r#"{"timeout_ms":5,"x":1}"#);
        assert!(matches!(with_timeout_ms("[1]", ten), Err(Error::InvalidParameters(_))));
    }

    #[test]
    fn a_chosen_request_id_is_used_if_the_wire_carries_it_as_it_is() {
        assert_eq!(request_id(Some("ui-42")).unwrap(), "ui-42");
        assert!(request_id(None).unwrap().starts_with("r-"));
        for bad in ["", "has space", "quote\"", "back\\slash", "é", &"x".repeat(65)] {
            assert!(matches!(request_id(Some(bad)), Err(Error::InvalidCommand(_))), "{bad:?}");
        }
    }
}
