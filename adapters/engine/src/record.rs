//! The command history's records: a command as it was sent and a result as it came back.
//!
//! Plain data: the registry makes results from what nodes publish, the engine makes commands,
//! and the store writes and reads both, so this module depends on neither.

use crate::text::Printable;
use crate::timestamp::rfc3339;

/// A command as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// The request id sent (every retry reuses it).
    pub request_id: String,
    /// Command name.
    pub command: String,
    /// The `parameters` object, as JSON text.
    pub parameters: String,
    /// The target as the user gave it, e.g. `my-app/*`.
    pub target: String,
    /// Instances expected to answer, comma-separated.
    pub expected: String,
    /// When it was first sent, Unix milliseconds.
    pub sent_ms: i64,
    /// How many times it was published.
    pub attempts: u32,
    /// The rollout this command is a wave of, if it is one.
    pub wave: Option<Wave>,
}

/// Which wave of which rollout a command is (`subnode send --rollout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    /// The rollout's id, shared by its waves (each wave has a request id of its own).
    pub rollout_id: String,
    /// The wave's number, from 1.
    pub number: u32,
}

/// A result (or progress update) as the history records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    /// The request it answers.
    pub request_id: String,
    /// The instance that answered.
    pub instance_id: String,
    /// Its application name.
    pub node_name: String,
    /// Command name as the node echoed it.
    pub command: String,
    /// Whether the command succeeded.
    pub success: bool,
    /// Human-readable outcome, unescaped.
    pub message: String,
    /// Command output as JSON text; `None` for `null`.
    pub data: Option<String>,
    /// `in_progress` or `done`.
    pub state: String,
    /// The node's timestamp.
    pub timestamp: String,
    /// When the engine received it, Unix milliseconds.
    pub received_ms: i64,
}

impl ResultRecord {
    /// Whether this is the final result rather than a progress update.
    pub fn is_final(&self) -> bool {
        self.state == "done"
    }

    /// The result as JSON, `data` embedded as a value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.request_id,
            "instance_id": self.instance_id,
            "node_name": self.node_name,
            "command": self.command,
            "success": self.success,
            "message": self.message,
            "data": self.data.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
            "state": self.state,
            "timestamp": self.timestamp,
            "received_ms": self.received_ms,
            "received_at": rfc3339(self.received_ms),
        })
    }
}

impl std::fmt::Display for ResultRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match (self.is_final(), self.success) {
            (false, _) => "progress",
            (true, true) => "ok",
            (true, false) => "FAILED",
        };
        let (id, command, message) = (Printable(&self.instance_id), Printable(&self.command), Printable(&self.message));
        write!(f, "{id} {command} {verdict}: {message}")?;
        if let Some(data) = &self.data {
            write!(f, " {}", Printable(data))?;
        }
        Ok(())
    }
}

impl CommandRecord {
    /// The command as JSON with its `results`: what `history --json` and the console's API give.
    pub fn to_json_with(&self, results: &[ResultRecord]) -> serde_json::Value {
        let mut value = self.to_json();
        value["results"] = results.iter().map(ResultRecord::to_json).collect();
        value
    }

    /// The command as JSON, `parameters` embedded as a value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.request_id,
            "command": self.command,
            "parameters": serde_json::from_str::<serde_json::Value>(&self.parameters).unwrap_or_default(),
            "target": self.target,
            "expected": self.expected.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            "sent_ms": self.sent_ms,
            "sent_at": rfc3339(self.sent_ms),
            "attempts": self.attempts,
            "rollout": self.wave.as_ref().map(|w| serde_json::json!({"id": w.rollout_id, "wave": w.number})),
        })
    }
}
