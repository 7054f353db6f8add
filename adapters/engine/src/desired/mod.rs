//! Desired state (PROTOCOL.md §15) as the engine reads and writes it: the desired documents
//! (engine → node, per node name and per instance), the reported documents (node → engine), how
//! they merge, and when an instance is in sync. Pure functions; the store of what the broker
//! holds is in `store`, the engine's calls in `engine`.

mod engine;
mod store;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use subnodesync_core::{JsonError, Object, RawJson, Unescaped};

use crate::text::Printable;

pub(crate) use engine::Desired;
pub use engine::{Published, DESIRED_CONFIRM_WITHIN};
pub use store::{DesiredSync, InstanceState};
use store::{DocTopic, Store};

/// Most settings in a desired document, and in the merge of an instance's two documents.
pub const MAX_SETTINGS: usize = subnodesync_core::SETTINGS_MAX;
/// Longest key, in bytes: what nodes take.
pub const KEY_MAX: usize = subnodesync_core::SETTING_KEY_MAX;
/// Longest value, in bytes of its JSON text as sent: what nodes take.
pub const VALUE_MAX: usize = subnodesync_core::SETTING_VALUE_MAX;
/// Highest version (2^53: every JSON reader holds it exactly).
pub const VERSION_MAX: u64 = 1 << 53;
/// Most bytes of an instance's two desired documents together that the engine publishes: what
/// the std adapters' nodes hold (embassy nodes hold 1 KiB).
pub const DOCUMENTS_MAX: usize = 2048;

/// Why a desired or reported document, or a setting to publish, was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DesiredError {
    /// The payload is not one JSON object.
    Json(JsonError),
    /// A required field is missing.
    Missing(&'static str),
    /// A field has the wrong JSON type.
    WrongType(&'static str),
    /// A field appears twice.
    RepeatedField(&'static str),
    /// `version` is not an integer from 1 (0 in a report) to 2^53.
    Version,
    /// A key is empty, longer than 32 bytes, or not printable ASCII without `" \ / < > &`.
    BadKey(String),
    /// A key appears twice in one object.
    RepeatedKey(String),
    /// A setting's value is an object or an array.
    Nested(String),
    /// A setting's value is longer than 128 bytes as sent.
    ValueTooLong(String),
    /// More settings than a node applies (in one document or merged).
    TooManySettings(usize),
    /// An instance's two documents together are larger than a node holds.
    TooLarge(usize),
    /// The report's `node_name` or `instance_id` differs from its topic's.
    TopicMismatch,
    /// The instance id does not start with the topic's node name, or another name has it.
    ForeignInstance,
    /// A node name or instance id longer than PROTOCOL.md §3 allows.
    TooLong,
    /// A new node name or instance, and the engine already keeps as many documents as it
    /// keeps instances (`max_instances`).
    Full,
    /// The next version would pass 2^53 (someone published a document at the top).
    VersionsExhausted,
}

impl fmt::Display for DesiredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "{e}"),
            Self::Missing(field) => write!(f, "`{field}` is missing"),
            Self::WrongType(field) => write!(f, "`{field}` has the wrong type"),
            Self::RepeatedField(field) => write!(f, "`{field}` appears twice"),
            Self::Version => f.write_str("`version` is not an integer from 1 to 2^53"),
            Self::BadKey(key) => write!(
                f,
                "key \"{}\": keys are 1 to {KEY_MAX} bytes of printable ASCII without \" \\ / < > &",
                Printable(key)
            ),
            Self::RepeatedKey(key) => write!(f, "key \"{}\" appears twice", Printable(key)),
            Self::Nested(key) => write!(f, "{}: values are strings, numbers, true, false or null", Printable(key)),
            Self::ValueTooLong(key) => write!(f, "{}: the value is longer than {VALUE_MAX} bytes", Printable(key)),
            Self::TooManySettings(n) => write!(f, "{n} settings; a node applies at most {MAX_SETTINGS}"),
            Self::TooLarge(n) => {
                write!(f, "the documents are {n} bytes together; a node holds at most {DOCUMENTS_MAX}")
            }
            Self::TopicMismatch => f.write_str("node_name or instance_id differs from the topic's"),
            Self::ForeignInstance => f.write_str("the instance id belongs to another node name"),
            Self::TooLong => f.write_str("a node name or instance id longer than the protocol allows"),
            Self::Full => f.write_str("the engine keeps no more documents (max_instances)"),
            Self::VersionsExhausted => f.write_str("the next version would pass 2^53"),
        }
    }
}

impl std::error::Error for DesiredError {}

impl From<JsonError> for DesiredError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

/// One setting's value: a JSON scalar (string, number, `true`, `false` or `null`), kept as the
/// text it was sent as, so republishing a document never rewrites someone else's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SettingValue(String);

impl SettingValue {
    /// A value from JSON text: a scalar of at most [`VALUE_MAX`] bytes; `key` names it in errors.
    pub fn parse(key: &str, json: &str) -> Result<Self, DesiredError> {
        let raw = RawJson::parse(json.as_bytes())?;
        Self::from_raw(key, raw)
    }

    /// What the CLI's `KEY=VALUE` means: a JSON scalar if `text` is one (`42`, `true`, `null`,
    /// `"quoted"`), else the text as a string; an object or an array is refused.
    pub fn from_cli(key: &str, text: &str) -> Result<Self, DesiredError> {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_) | Value::Array(_)) => return Err(DesiredError::Nested(key.to_owned())),
            Ok(scalar) => scalar,
            Err(_) => Value::String(text.to_owned()),
        };
        Self::parse(key, &value.to_string())
    }

    /// A value read off the wire by the core's scanner (valid JSON already).
    fn from_raw(key: &str, raw: RawJson<'_>) -> Result<Self, DesiredError> {
        let text = raw.as_str();
        if text.starts_with(['{', '[']) {
            return Err(DesiredError::Nested(key.to_owned()));
        }
        if text.len() > VALUE_MAX {
            return Err(DesiredError::ValueTooLong(key.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The JSON text, as sent.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The value as a `serde_json` value (a number beyond `f64` stays its text).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or_else(|_| Value::String(self.0.clone()))
    }
}

impl fmt::Display for SettingValue {
    /// A string without its quotes, anything else as its JSON, printable on a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RawJson::parse(self.0.as_bytes()).ok().and_then(|r| r.as_escaped_str()) {
            Some(escaped) => write!(f, "{}", Printable(&Unescaped(escaped).to_string())),
            None => write!(f, "{}", Printable(&self.0)),
        }
    }
}

/// Settings by key, in key order.
pub type Settings = BTreeMap<String, SettingValue>;

/// Refuses a key a node would refuse: empty, longer than [`KEY_MAX`], or anything but printable
/// ASCII without `" \ / < > &` (nodes match keys as they arrive, escapes and all).
pub fn check_key(key: &str) -> Result<(), DesiredError> {
    subnodesync_core::check_setting_key(key).map_err(|_| DesiredError::BadKey(key.to_owned()))
}

/// A desired document (PROTOCOL.md §15.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDocument {
    /// Greater for every new document on the same topic.
    pub version: u64,
    /// When it was written, as given; not interpreted.
    pub timestamp: Option<String>,
    /// The settings.
    pub settings: Settings,
}

impl DesiredDocument {
    /// Reads and validates a desired document as a node would.
    pub fn parse(payload: &[u8]) -> Result<Self, DesiredError> {
        let mut fields = Fields::default();
        Object::parse_with(payload, |k, v| fields.take(k, v))?;
        let version = fields.get("version")?.ok_or(DesiredError::Missing("version"))?;
        let version = integer(version).filter(|v| (1..=VERSION_MAX).contains(v)).ok_or(DesiredError::Version)?;
        let settings = fields.get("settings")?.ok_or(DesiredError::Missing("settings"))?;
        let settings = settings_of(settings, "settings")?;
        if settings.len() > MAX_SETTINGS {
            return Err(DesiredError::TooManySettings(settings.len()));
        }
        let timestamp = match fields.get("timestamp")? {
            None => None,
            Some(t) => Some(Unescaped(t.as_escaped_str().ok_or(DesiredError::WrongType("timestamp"))?).to_string()),
        };
        Ok(Self { version, timestamp, settings })
    }

    /// The document as published: compact JSON, `version`, `timestamp`, `settings` in order.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"version\":{}", self.version);
        if let Some(t) = &self.timestamp {
            out.push_str(",\"timestamp\":");
            out.push_str(&Value::from(t.as_str()).to_string());
        }
        out.push_str(",\"settings\":{");
        for (i, (key, value)) in self.settings.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Keys passed `check_key`: nothing in them needs escaping.
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            out.push_str(value.as_json());
        }
        out.push_str("}}");
        out
    }
}

/// A reported document (PROTOCOL.md §15.3): what an instance applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedDocument {
    /// When the node wrote it, as sent.
    pub timestamp: String,
    /// The merged version applied (0: no document).
    pub version: u64,
    /// The settings in effect.
    pub settings: Settings,
    /// The settings not applied, with the node's reason.
    pub rejected: BTreeMap<String, String>,
    /// Why the last document refused whole was refused, if one was.
    pub error: Option<String>,
}

impl ReportedDocument {
    /// Reads a report published on the topic of `node_name`'s `instance_id`.
    pub fn parse(payload: &[u8], node_name: &str, instance_id: &str) -> Result<Self, DesiredError> {
        let mut fields = Fields::default();
        Object::parse_with(payload, |k, v| fields.take(k, v))?;
        for (field, topic_level) in [("node_name", node_name), ("instance_id", instance_id)] {
            let said = fields.get(field)?.ok_or(DesiredError::Missing(field))?;
            let said = said.as_escaped_str().ok_or(DesiredError::WrongType(field))?;
            if !Unescaped(said).means(topic_level) {
                return Err(DesiredError::TopicMismatch);
            }
        }
        let version = fields.get("version")?.ok_or(DesiredError::Missing("version"))?;
        let version = integer(version).filter(|v| *v <= VERSION_MAX).ok_or(DesiredError::Version)?;
        let settings = fields.get("settings")?.ok_or(DesiredError::Missing("settings"))?;
        let settings = settings_of(settings, "settings")?;
        let mut rejected = BTreeMap::new();
        if let Some(object) = fields.get("rejected")?.filter(|r| r.as_str() != "null") {
            let object = object.as_object().ok_or(DesiredError::WrongType("rejected"))?;
            for (key, reason) in object.members() {
                let reason = reason.as_escaped_str().ok_or(DesiredError::WrongType("rejected"))?;
                if rejected.insert(Unescaped(key).to_string(), Unescaped(reason).to_string()).is_some() {
                    return Err(DesiredError::RepeatedKey(Unescaped(key).to_string()));
                }
            }
        }
        let error = match fields.get("error")? {
            None => None,
            Some(e) if e.as_str() == "null" => None,
            Some(e) => Some(Unescaped(e.as_escaped_str().ok_or(DesiredError::WrongType("error"))?).to_string()),
        };
        let timestamp = fields
            .get("timestamp")?
            .and_then(|t| t.as_escaped_str())
            .map(|t| Unescaped(t).to_string())
            .unwrap_or_default();
        Ok(Self { timestamp, version, settings, rejected, error })
    }
}

/// The top-level members of a document that the engine reads, each at most once.
#[derive(Default)]
struct Fields<'a> {
    seen: Vec<(&'a str, Result<RawJson<'a>, ()>)>,
}

/// The fields any document here has; others are ignored (PROTOCOL.md §5).
const KNOWN: [&str; 7] = ["version", "timestamp", "settings", "node_name", "instance_id", "rejected", "error"];

impl<'a> Fields<'a> {
    /// Notes one member; a second copy of a known field (escapes included) spoils it.
    fn take(&mut self, key: &'a str, value: RawJson<'a>) {
        let Some(name) = KNOWN.iter().copied().find(|k| Unescaped(key).means(k)) else {
            return;
        };
        match self.seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = Err(()),
            None => self.seen.push((name, Ok(value))),
        }
    }

    /// The field's value, `None` if absent.
    fn get(&self, name: &'static str) -> Result<Option<RawJson<'a>>, DesiredError> {
        match self.seen.iter().find(|(n, _)| *n == name) {
            None => Ok(None),
            Some((_, Ok(v))) => Ok(Some(*v)),
            Some((_, Err(()))) => Err(DesiredError::RepeatedField(name)),
        }
    }
}

/// An unsigned JSON integer: digits only (no sign, fraction or exponent).
fn integer(raw: RawJson<'_>) -> Option<u64> {
    let text = raw.as_str();
    (text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// A settings object: valid keys, each once, scalar values of at most [`VALUE_MAX`] bytes.
fn settings_of(raw: RawJson<'_>, field: &'static str) -> Result<Settings, DesiredError> {
    let object = raw.as_object().ok_or(DesiredError::WrongType(field))?;
    let mut settings = Settings::new();
    for (key, value) in object.members() {
        // A key with an escape in it holds a `\`, which `check_key` refuses: raw is meant.
        check_key(key)?;
        let value = SettingValue::from_raw(key, value)?;
        if settings.insert(key.to_owned(), value).is_some() {
            return Err(DesiredError::RepeatedKey(key.to_owned()));
        }
    }
    Ok(settings)
}

/// An instance's desired state: its two documents merged (PROTOCOL.md §15.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The greater of the two versions (0 without any document).
    pub version: u64,
    /// The instance document's settings, plus the name document's it does not name.
    pub settings: Settings,
}

/// Merges an instance's documents: the instance's overrides the name's key by key.
pub fn merge(name: Option<&DesiredDocument>, instance: Option<&DesiredDocument>) -> Merged {
    let mut settings = name.map(|d| d.settings.clone()).unwrap_or_default();
    if let Some(instance) = instance {
        settings.extend(instance.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let version = name.map_or(0, |d| d.version).max(instance.map_or(0, |d| d.version));
    Merged { version, settings }
}

/// Whether an instance applied what is desired: its report has the merged version, rejects
/// nothing and carries no error. No report counts as version 0, so an instance nothing is
/// desired of is in sync without one.
pub fn in_sync(desired_version: u64, reported: Option<&ReportedDocument>) -> bool {
    match reported {
        Some(r) => r.version == desired_version && r.rejected.is_empty() && r.error.is_none(),
        None => desired_version == 0,
    }
}

/// The version of the next document for a node name: the time in Unix milliseconds, or one
/// more than the highest version known for the name if that is later (PROTOCOL.md §15.1).
pub fn next_version(now_ms: i64, highest_known: u64) -> Result<u64, DesiredError> {
    let next = u64::try_from(now_ms).unwrap_or(0).max(highest_known.saturating_add(1));
    if next > VERSION_MAX {
        return Err(DesiredError::VersionsExhausted);
    }
    Ok(next)
}

/// Refuses a pair of documents no node would take: over [`MAX_SETTINGS`] merged, or over
/// [`DOCUMENTS_MAX`] bytes together.
pub(crate) fn check_fits(
    name: Option<&DesiredDocument>,
    instance: Option<&DesiredDocument>,
) -> Result<(), DesiredError> {
    let merged = merge(name, instance).settings.len();
    if merged > MAX_SETTINGS {
        return Err(DesiredError::TooManySettings(merged));
    }
    let bytes = name.map_or(0, |d| d.to_json().len()) + instance.map_or(0, |d| d.to_json().len());
    if bytes > DOCUMENTS_MAX {
        return Err(DesiredError::TooLarge(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
