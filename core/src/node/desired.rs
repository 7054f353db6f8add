//! Desired state (PROTOCOL.md §15): the engine's retained documents for the node's name and for
//! this instance, merged key by key (instance over name), applied (the built-ins here, the rest by
//! the application) and reported back. Both documents live in the caller's `desired` buffer, and
//! the reasons for rejected settings in what is left of it.

use core::fmt::{self, Write as _};

use super::command::never_escaped;
use super::link::Link;
use super::publish::push_json;
use super::Node;
use crate::codec::json::{Object, RawJson, Writer};
use crate::codec::message::{key, members, open, ToJson};
use crate::error::{DesiredError, NodeError, PayloadError};
use crate::session::MessageKind;
use crate::time::{Duration, Instant, Timestamp};

/// Most settings in a merged desired document.
pub const SETTINGS_MAX: usize = 32;
/// Longest setting key, in bytes.
pub const SETTING_KEY_MAX: usize = 32;
/// Longest setting value, in bytes of JSON as sent.
pub const SETTING_VALUE_MAX: usize = 128;
/// Longest reason for a rejected setting, in bytes.
pub const REASON_MAX: usize = 64;
/// Versions stay integers every JSON reader holds exactly.
const VERSION_MAX: u64 = 1 << 53;
/// The built-in setting: seconds between heartbeats.
const HEARTBEAT_INTERVAL: &str = "heartbeat_interval";

/// Which of the two desired documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredScope {
    /// `{prefix}/{node_name}/desired`: every instance of the name.
    Name,
    /// `{prefix}/{node_name}/{instance_id}/desired`: this instance, over the name's.
    Instance,
}

impl DesiredScope {
    /// `name` or `instance`, as reports name it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Instance => "instance",
        }
    }
}

/// Why the application refused a setting, as the report shows it: at most [`REASON_MAX`] bytes,
/// longer text cut at a character boundary. Write into it with `write!` or build it from a `&str`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejection(heapless::String<REASON_MAX>);

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: &str) -> Self {
        let mut r = Self::default();
        let _ = r.write_str(reason);
        r
    }

    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Write for Rejection {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Cut, never fail: a long reason is still a reason.
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

impl From<&str> for Rejection {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

/// One stored document: its version (0: none) and the length of its `settings` text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Doc {
    version: u64,
    len: usize,
}

/// The desired documents a node holds and what it last made of them.
#[derive(Debug)]
pub(crate) struct Desired<'b> {
    /// The name's `settings` text, then the instance's, then free room.
    buf: &'b mut [u8],
    name: Doc,
    instance: Doc,
    /// The last document refused whole, until one from the same topic is taken.
    error: Option<(DesiredScope, DesiredError)>,
    /// Something changed since the last [`apply`](Self::apply).
    pub(crate) changed: bool,
    /// A report was published since start, so a clean stop deletes it.
    pub(crate) reported: bool,
    /// The heartbeat interval in effect comes from a desired document.
    managed_heartbeat: bool,
}

/// What one application of the merged settings decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    /// Bit `i`: the `i`-th merged setting is in effect.
    accepted: u32,
    /// Bytes of rejected members (`"key":"reason",...`) written whole after the documents.
    rejected_len: usize,
    /// Some rejected members did not fit there.
    truncated: bool,
    /// What the heartbeat interval becomes: `Some(None)` back to the configured one.
    pub(crate) heartbeat: Option<Option<Duration>>,
}

impl<'b> Desired<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            name: Doc::default(),
            instance: Doc::default(),
            error: None,
            changed: false,
            reported: false,
            managed_heartbeat: false,
        }
    }

    /// The merged version: the greater of the two documents' (0 when there are none).
    pub(crate) fn version(&self) -> u64 {
        self.name.version.max(self.instance.version)
    }

    /// Takes a document that arrived on `scope`'s topic (empty: deleted). Returns whether
    /// anything changed: a new document, a deletion, or a refusal to report.
    pub(crate) fn receive(&mut self, scope: DesiredScope, payload: &[u8]) -> bool {
        let held = self.doc(scope);
        if payload.is_empty() {
            let had_error = self.error.is_some_and(|(s, _)| s == scope);
            if held.version == 0 && !had_error {
                return false;
            }
            self.store(scope, 0, b"");
            return self.mark_changed(scope, None);
        }
        let (version, settings) = match parse_document(payload) {
            Ok(doc) => doc,
            Err(e) => return self.refuse(scope, e),
        };
        if version <= held.version {
            // The broker's replay of what we hold, after a reconnect.
            return false;
        }
        let (other_scope, other) = match scope {
            DesiredScope::Name => (DesiredScope::Instance, self.instance),
            DesiredScope::Instance => (DesiredScope::Name, self.name),
        };
        let text = settings.as_raw().as_str().as_bytes();
        if other.len + text.len() > self.buf.len() {
            return self.refuse(scope, DesiredError::TooLarge);
        }
        let other_settings = self.settings(other_scope);
        let added = settings.members().filter(|(k, _)| other_settings.get(k).is_none()).count();
        if other_settings.members().count() + added > SETTINGS_MAX {
            return self.refuse(scope, DesiredError::TooManySettings);
        }
        self.store(scope, version, text);
        self.mark_changed(scope, None)
    }

    /// Applies the merged settings: `heartbeat_interval` checked here, every other one given to
    /// `apply`. Reasons for rejections are written into the free end of the buffer.
    pub(crate) fn apply(&mut self, mut apply: impl FnMut(&str, RawJson<'_>) -> Result<(), Rejection>) -> Applied {
        self.changed = false;
        let docs_end = self.name.len + self.instance.len;
        let (docs, free) = self.buf.split_at_mut(docs_end.min(self.buf.len()));
        let (name, instance) = docs.split_at(self.name.len.min(docs.len()));
        let (name, instance) = (settings_in(name), settings_in(instance));
        let room = free.len();
        let mut rejected = Writer::new(free);
        let (mut accepted, mut heartbeat, mut rejected_len, mut truncated) = (0u32, None, 0, false);
        for (i, (k, v)) in merged(name, instance).enumerate() {
            let verdict = if k == HEARTBEAT_INTERVAL {
                match v.deserialize::<u64>().filter(|s| (1..=86_400).contains(s)) {
                    Some(s) => {
                        heartbeat = Some(Some(Duration::from_secs(s)));
                        Ok(())
                    }
                    None => Err(Rejection::new("must be whole seconds, 1 to 86400")),
                }
            } else {
                apply(k, v)
            };
            match verdict {
                Ok(()) => accepted |= bit(i),
                Err(reason) => {
                    if rejected.len() > 0 {
                        rejected.raw(b",");
                    }
                    rejected.escaped_str(k);
                    rejected.raw(b":");
                    rejected.str(reason.as_str());
                    // Only whole members count: the report must stay JSON.
                    if rejected.len() <= room {
                        rejected_len = rejected.len();
                    } else {
                        truncated = true;
                    }
                }
            }
        }
        if heartbeat.is_none() && self.managed_heartbeat {
            heartbeat = Some(None);
        }
        self.managed_heartbeat = matches!(heartbeat, Some(Some(_)));
        Applied { accepted, rejected_len, truncated, heartbeat }
    }

    /// The report of `applied`, ready to encode.
    pub(crate) fn report<'r>(
        &'r self,
        applied: Applied,
        timestamp: Timestamp,
        node_name: &'r str,
        instance_id: &'r str,
    ) -> Report<'r> {
        let docs_end = self.name.len + self.instance.len;
        let rejected = self.buf.get(docs_end..docs_end + applied.rejected_len).unwrap_or_default();
        Report {
            timestamp,
            node_name,
            instance_id,
            version: self.version(),
            name: self.settings(DesiredScope::Name),
            instance: self.settings(DesiredScope::Instance),
            accepted: applied.accepted,
            rejected: core::str::from_utf8(rejected).unwrap_or_default(),
            truncated: applied.truncated,
            error: self.error,
        }
    }

    fn doc(&self, scope: DesiredScope) -> Doc {
        match scope {
            DesiredScope::Name => self.name,
            DesiredScope::Instance => self.instance,
        }
    }

    fn settings(&self, scope: DesiredScope) -> Object<'_> {
        let range = match scope {
            DesiredScope::Name => 0..self.name.len,
            DesiredScope::Instance => self.name.len..self.name.len + self.instance.len,
        };
        settings_in(self.buf.get(range).unwrap_or_default())
    }

    /// Replaces `scope`'s document with `text` (checked to fit), keeping the other in place
    /// after the name's.
    fn store(&mut self, scope: DesiredScope, version: u64, text: &[u8]) {
        let (start, old_len) = match scope {
            DesiredScope::Name => (0, self.name.len),
            DesiredScope::Instance => (self.name.len, self.instance.len),
        };
        let tail = start + old_len..self.name.len + self.instance.len;
        let tail_len = tail.len();
        let new_tail = start + text.len();
        if new_tail + tail_len > self.buf.len() {
            return;
        }
        self.buf.copy_within(tail, new_tail);
        if let Some(dst) = self.buf.get_mut(start..new_tail) {
            dst.copy_from_slice(text);
        }
        let doc = Doc { version, len: text.len() };
        match scope {
            DesiredScope::Name => self.name = doc,
            DesiredScope::Instance => self.instance = doc,
        }
    }

    fn refuse(&mut self, scope: DesiredScope, error: DesiredError) -> bool {
        if self.error == Some((scope, error)) {
            // The same bad document again (a replay after a reconnect): reported already.
            return false;
        }
        self.mark_changed(scope, Some(error))
    }

    fn mark_changed(&mut self, scope: DesiredScope, error: Option<DesiredError>) -> bool {
        match error {
            Some(e) => self.error = Some((scope, e)),
            None if self.error.is_some_and(|(s, _)| s == scope) => self.error = None,
            None => {}
        }
        self.changed = true;
        true
    }
}

/// The verdict bit of the `i`-th merged setting (there are at most [`SETTINGS_MAX`]).
fn bit(i: usize) -> u32 {
    u32::try_from(i).ok().and_then(|i| 1u32.checked_shl(i)).unwrap_or(0)
}

/// Stored settings text as an object (`{}` for none). It was validated when it arrived.
fn settings_in(text: &[u8]) -> Object<'_> {
    match core::str::from_utf8(text) {
        Ok(s) if !s.is_empty() => Object::validated(s),
        _ => Object::EMPTY,
    }
}

/// The merged settings in report order: the instance's, then the name's it does not override.
fn merged<'a>(name: Object<'a>, instance: Object<'a>) -> impl Iterator<Item = (&'a str, RawJson<'a>)> {
    instance.members().chain(name.members().filter(move |(k, _)| instance.get(k).is_none()))
}

/// Reads a desired document: its version and its `settings`, every rule of §15.1 checked.
pub(crate) fn parse_document(payload: &[u8]) -> Result<(u64, Object<'_>), DesiredError> {
    let [version, settings, timestamp] =
        members(payload, ["version", "settings", "timestamp"]).map_err(|e| match e {
            PayloadError::Malformed(e) => DesiredError::Malformed(e),
            PayloadError::DuplicateField(f) => DesiredError::DuplicateField(f),
            PayloadError::MissingField(f) => DesiredError::MissingField(f),
            _ => DesiredError::WrongType("version"),
        })?;
    let version = version.ok_or(DesiredError::MissingField("version"))?;
    let version = version
        .deserialize::<u64>()
        .filter(|v| (1..=VERSION_MAX).contains(v))
        .ok_or(DesiredError::WrongType("version"))?;
    let settings = settings.ok_or(DesiredError::MissingField("settings"))?;
    let settings = settings.as_object().ok_or(DesiredError::WrongType("settings"))?;
    if timestamp.is_some_and(|t| t.as_escaped_str().is_none()) {
        return Err(DesiredError::WrongType("timestamp"));
    }
    for (n, (k, v)) in settings.members().enumerate() {
        if n >= SETTINGS_MAX {
            return Err(DesiredError::TooManySettings);
        }
        check_setting_key(k)?;
        if settings.members().take(n).any(|(earlier, _)| earlier == k) {
            return Err(DesiredError::DuplicateKey);
        }
        let v = v.as_str();
        if v.starts_with('{') || v.starts_with('[') {
            return Err(DesiredError::NestedValue);
        }
        if v.len() > SETTING_VALUE_MAX {
            return Err(DesiredError::ValueTooLong);
        }
    }
    Ok((version, settings))
}

/// Checks a desired-state key as nodes do (PROTOCOL.md §15.1): 1 to [`SETTING_KEY_MAX`] bytes of
/// what no JSON encoder escapes, as command names are, so keys compare as sent.
pub fn check_setting_key(key: &str) -> Result<(), DesiredError> {
    if key.is_empty() || key.len() > SETTING_KEY_MAX || !never_escaped(key) {
        return Err(DesiredError::InvalidKey);
    }
    Ok(())
}

/// The reported document (§15.3).
pub(crate) struct Report<'r> {
    timestamp: Timestamp,
    node_name: &'r str,
    instance_id: &'r str,
    version: u64,
    name: Object<'r>,
    instance: Object<'r>,
    accepted: u32,
    /// Rejected members as JSON text, `"key":"reason"` joined by commas.
    rejected: &'r str,
    /// Some reasons did not fit the buffer.
    truncated: bool,
    error: Option<(DesiredScope, DesiredError)>,
}

impl ToJson for Report<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::TIMESTAMP);
        w.timestamp(self.timestamp);
        w.raw(key::NODE_NAME);
        w.escaped_str(self.node_name);
        w.raw(key::INSTANCE_ID);
        w.escaped_str(self.instance_id);
        w.raw(key::VERSION);
        w.u64(self.version);
        w.raw(key::SETTINGS);
        w.raw(b"{");
        let mut first = true;
        for (i, (k, v)) in merged(self.name, self.instance).enumerate() {
            if self.accepted & bit(i) == 0 {
                continue;
            }
            if !first {
                w.raw(b",");
            }
            first = false;
            w.escaped_str(k);
            w.raw(b":");
            w.raw(v.as_str().as_bytes());
        }
        w.raw(b"}");
        w.raw(key::REJECTED);
        w.raw(b"{");
        w.raw(self.rejected.as_bytes());
        w.raw(b"}");
        w.raw(key::ERROR);
        match (self.error, self.truncated) {
            (Some((scope, e)), _) => {
                let mut text = heapless::String::<128>::new();
                let _ = write!(text, "{}: {e}", scope.as_str());
                w.str(&text);
            }
            (None, true) => w.raw(b"\"some rejection reasons did not fit the desired buffer\""),
            (None, false) => w.raw(b"null"),
        }
        w.raw(b"}");
    }
}

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    /// Applies the merged desired settings after
    /// [`Event::DesiredChanged`](crate::Event::DesiredChanged) and publishes the report
    /// (PROTOCOL.md §15). The core applies `heartbeat_interval` itself; `apply` is called
    /// once for every other setting in effect, every time (the whole set, not what changed), and
    /// accepts it or says why not. Harmless when nothing changed: the same report again.
    pub fn apply_desired(
        &mut self,
        now: Instant,
        apply: impl FnMut(&str, RawJson<'_>) -> Result<(), Rejection>,
    ) -> Result<(), NodeError> {
        self.advance(now);
        if self.link == Link::Stopped {
            return Err(NodeError::Stopped);
        }
        let applied = self.desired.apply(apply);
        if let Some(interval) = applied.heartbeat {
            self.set_interval(interval.unwrap_or(self.config.heartbeat_interval));
        }
        let (pid, topic) = (self.alloc_pid(), self.topics.topic("reported"));
        let instance_id = self.topics.instance_id();
        let report = self.desired.report(applied, self.clock.at(self.now), self.config.node_name, instance_id);
        let pushed = push_json(&mut self.outbox, MessageKind::Reported, pid, 0, topic, true, &report);
        self.note_dropped(pushed)?;
        self.desired.reported = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::message::to_json;
    use crate::error::JsonError;

    fn doc(version: u64, settings: &str) -> std::string::String {
        std::format!(r#"{{"version":{version},"settings":{settings}}}"#)
    }

    fn report(
        d: &mut Desired<'_>,
        apply: impl FnMut(&str, RawJson<'_>) -> Result<(), Rejection>,
    ) -> std::string::String {
        let applied = d.apply(apply);
        let mut out = [0u8; 1024];
        let n = to_json(&d.report(applied, Timestamp::default(), "app", "app-h-1"), &mut out).unwrap();
        std::string::String::from_utf8(out[..n].to_vec()).unwrap()
    }

    fn accept(_: &str, _: RawJson<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    #[test]
    fn the_instance_overrides_the_name_key_by_key_and_the_greater_version_is_applied() {
        let mut buf = [0u8; 512];
        let mut d = Desired::new(&mut buf);
        assert!(d.receive(DesiredScope::Name, doc(5, r#"{"a":1,"b":"x"}"#).as_bytes()));
        assert!(d.receive(DesiredScope::Instance, doc(3, r#"{"b":"y","c":true}"#).as_bytes()));
        assert_eq!(d.version(), 5);
        let r = report(&mut d, accept);
        assert!(r.contains(r#""version":5,"settings":{"b":"y","c":true,"a":1},"rejected":{},"error":null}"#), "{r}");
        // A replayed document changes nothing; a newer name document keeps the override.
        assert!(!d.receive(DesiredScope::Name, doc(5, r#"{"a":1}"#).as_bytes()));
        assert!(d.receive(DesiredScope::Name, doc(7, r#"{"b":"z","d":null}"#).as_bytes()));
        let r = report(&mut d, accept);
        assert!(r.contains(r#""version":7,"settings":{"b":"y","c":true,"d":null}"#), "{r}");
        // Deleting the instance document lets the name's through again.
        assert!(d.receive(DesiredScope::Instance, b""));
        let r = report(&mut d, accept);
        assert!(r.contains(r#""version":7,"settings":{"b":"z","d":null}"#), "{r}");
        assert!(!d.receive(DesiredScope::Instance, b""));
    }

    #[test]
    fn rejections_carry_their_reason_and_heartbeat_interval_is_checked_here() {
        let mut buf = [0u8; 512];
        let mut d = Desired::new(&mut buf);
        d.receive(DesiredScope::Name, doc(1, r#"{"heartbeat_interval":0,"log":"debug","mode":"x"}"#).as_bytes());
        let mut seen = std::vec::Vec::new();
        let r = report(&mut d, |k, v| {
            seen.push((std::string::String::from(k), std::string::String::from(v.as_str())));
            if k == "mode" {
                Err(Rejection::new("one of \"a\", \"b\""))
            } else {
                Ok(())
            }
        });
        assert_eq!(seen, [("log".into(), "\"debug\"".into()), ("mode".into(), "\"x\"".into())]);
        assert!(
            r.contains(r#""settings":{"log":"debug"},"rejected":{"heartbeat_interval":"must be whole seconds, 1 to 86400","mode":"one of \"a\", \"b\""}"#),
            "{r}"
        );
        d.receive(DesiredScope::Name, doc(2, r#"{"heartbeat_interval":10}"#).as_bytes());
        assert_eq!(d.apply(accept).heartbeat, Some(Some(Duration::from_secs(10))));
        d.receive(DesiredScope::Name, doc(3, r#"{}"#).as_bytes());
        assert_eq!(d.apply(accept).heartbeat, Some(None), "back to the configured interval");
        d.receive(DesiredScope::Name, doc(4, r#"{"x":1}"#).as_bytes());
        assert_eq!(d.apply(accept).heartbeat, None, "not managed: left alone");
    }

    #[test]
    fn a_bad_document_is_refused_whole_reported_once_and_cleared_by_a_good_one() {
        let mut buf = [0u8; 64];
        let mut d = Desired::new(&mut buf);
        d.receive(DesiredScope::Name, doc(1, r#"{"a":1}"#).as_bytes());
        assert!(d.receive(DesiredScope::Instance, b"{\"version\":2"));
        assert!(!d.receive(DesiredScope::Instance, b"{\"version\":2"), "the same refusal is not news");
        let r = report(&mut d, accept);
        assert!(r.contains(r#""version":1,"settings":{"a":1},"rejected":{},"error":"instance: invalid desired document: invalid json at byte 12"}"#), "{r}");
        let big = doc(3, &std::format!(r#"{{"b":"{}"}}"#, "x".repeat(60)));
        assert!(d.receive(DesiredScope::Instance, big.as_bytes()));
        assert_eq!(d.error, Some((DesiredScope::Instance, DesiredError::TooLarge)));
        assert!(d.receive(DesiredScope::Instance, doc(3, r#"{"b":2}"#).as_bytes()));
        assert_eq!(d.error, None);
        assert_eq!(d.version(), 3);
    }

    #[test]
    fn every_rule_of_the_document_is_checked() {
        let err = |p: &str| parse_document(p.as_bytes()).unwrap_err();
        assert_eq!(err("[]"), DesiredError::Malformed(JsonError::NotAnObject));
        assert_eq!(err(r#"{"settings":{}}"#), DesiredError::MissingField("version"));
        assert_eq!(err(r#"{"version":1}"#), DesiredError::MissingField("settings"));
        assert_eq!(err(r#"{"version":0,"settings":{}}"#), DesiredError::WrongType("version"));
        assert_eq!(err(r#"{"version":9007199254740993,"settings":{}}"#), DesiredError::WrongType("version"));
        assert_eq!(err(r#"{"version":1.5,"settings":{}}"#), DesiredError::WrongType("version"));
        assert_eq!(err(r#"{"version":1,"settings":[]}"#), DesiredError::WrongType("settings"));
        assert_eq!(err(r#"{"version":1,"settings":{},"timestamp":5}"#), DesiredError::WrongType("timestamp"));
        assert_eq!(err(r#"{"version":1,"v\u0065rsion":2,"settings":{}}"#), DesiredError::DuplicateField("version"));
        assert_eq!(err(r#"{"version":1,"settings":{"a":{}}}"#), DesiredError::NestedValue);
        assert_eq!(err(r#"{"version":1,"settings":{"a":[1]}}"#), DesiredError::NestedValue);
        assert_eq!(err(r#"{"version":1,"settings":{"a":1,"a":2}}"#), DesiredError::DuplicateKey);
        assert_eq!(err(r#"{"version":1,"settings":{"a/b":1}}"#), DesiredError::InvalidKey);
        assert_eq!(err(r#"{"version":1,"settings":{"":1}}"#), DesiredError::InvalidKey);
        assert_eq!(err(r#"{"version":1,"settings":{"\u0061":1}}"#), DesiredError::InvalidKey);
        let long = std::format!(r#"{{"version":1,"settings":{{"a":"{}"}}}}"#, "x".repeat(SETTING_VALUE_MAX));
        assert_eq!(err(&long), DesiredError::ValueTooLong);
        let many: std::vec::Vec<_> = (0..=SETTINGS_MAX).map(|i| std::format!(r#""k{i}":1"#)).collect();
        assert_eq!(err(&doc(1, &std::format!("{{{}}}", many.join(",")))), DesiredError::TooManySettings);
        assert!(
            parse_document(br#"{"version":9007199254740992,"settings":{"a":null},"timestamp":"t","x":[1]}"#).is_ok()
        );
    }

    #[test]
    fn the_two_documents_together_stay_within_the_limits() {
        let mut buf = [0u8; 2048];
        let mut d = Desired::new(&mut buf);
        let half = |from: usize| {
            let s: std::vec::Vec<_> = (from..from + 20).map(|i| std::format!(r#""k{i}":1"#)).collect();
            std::format!("{{{}}}", s.join(","))
        };
        assert!(d.receive(DesiredScope::Name, doc(1, &half(0)).as_bytes()));
        assert!(d.receive(DesiredScope::Instance, doc(2, &half(20)).as_bytes()));
        assert_eq!(d.error, Some((DesiredScope::Instance, DesiredError::TooManySettings)));
        // Overriding the same keys adds none.
        assert!(d.receive(DesiredScope::Instance, doc(2, &half(5)).as_bytes()));
        assert_eq!(d.error, None);
        assert_eq!(d.apply(accept).accepted.count_ones(), 25);
    }

    #[test]
    fn reasons_that_do_not_fit_are_said_to_be_missing() {
        let mut buf = [0u8; 40];
        let mut d = Desired::new(&mut buf);
        d.receive(DesiredScope::Name, doc(1, r#"{"a":1,"b":2}"#).as_bytes());
        let r = report(&mut d, |_, _| Err(Rejection::new("a reason long enough to overflow the rest")));
        assert!(r.contains(r#""settings":{},"rejected":{"#), "{r}");
        assert!(r.ends_with(r#""error":"some rejection reasons did not fit the desired buffer"}"#), "{r}");
        assert_eq!(Rejection::new(&"é".repeat(40)).as_str().len(), 64);
    }
}
