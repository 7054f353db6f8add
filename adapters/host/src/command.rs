//! What a handler is given and what it gives back: the command as received and its result.

use std::time::Instant;

use serde_json::{Map, Value};

/// A command as the handler receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Command {
    /// The command name.
    pub name: String,
    /// The engine's request id.
    pub request_id: String,
    /// The `parameters` object (empty when the engine sent none).
    pub parameters: Map<String, Value>,
    /// When the run will be cut off: the engine's `timeout_ms` or the handler timeout.
    pub deadline: Option<Instant>,
}

/// How a command ended: the final result's `success`, `message` and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    /// Whether the command succeeded.
    pub success: bool,
    /// What happened, for a person.
    pub message: String,
    /// Output for the engine, embedded as JSON (`null` when `None`).
    pub data: Option<Value>,
}

impl CommandResult {
    /// A success.
    pub fn ok(message: impl Into<String>) -> Self {
        Self { success: true, message: message.into(), data: None }
    }

    /// A failure; `message` says what went wrong.
    pub fn fail(message: impl Into<String>) -> Self {
        Self { success: false, message: message.into(), data: None }
    }

    /// The same result carrying `data`.
    pub fn with_data(mut self, data: impl Into<Value>) -> Self {
        self.data = Some(data.into());
        self
    }
}
