//! A command as the engine sends it: the request, what came of it, and what goes on the wire
//! besides the caller's parameters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use subnodesync_core::{Object, REQUEST_ID_MAX};

use crate::engine::now_ms;
use crate::error::Error;
use crate::record::ResultRecord;
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
}

impl SendRequest {
    /// `command` to `target`, no parameters, 10 s timeout, 2 retries.
    pub fn new(target: Target, command: impl Into<String>) -> Self {
        Self { target, command: command.into(), parameters: "{}".into(), timeout: Duration::from_secs(10), retries: 2 }
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
        self.timed_out.is_empty() && !self.results.is_empty() && self.results.values().all(|r| r.success)
    }
}

/// The parameters with `timeout_ms` set a little short of how long the engine waits (a tenth, at
/// most a second, less), unless the caller set it: the node gives up on the command just before
/// the engine does, and its "timed out" result still reaches the engine. The caller's members stay
/// as they were, in their order.
pub(crate) fn with_timeout_ms(parameters: &str, timeout: Duration) -> Result<String, Error> {
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
}
