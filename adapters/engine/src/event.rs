//! [`FleetEvent`]: what `subnode watch` shows, as text and as JSON.

use std::fmt;

use crate::record::ResultRecord;
use crate::registry::Status;
use crate::text::Printable;

/// What changed in the fleet, for `subnode watch` and the demo.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// A register message arrived (the first for this instance, or after a restart).
    Registered {
        /// Who.
        instance_id: String,
        /// Its application name.
        node_name: String,
        /// Its version.
        version: String,
    },
    /// An empty register message: the instance cleared its registration on a clean stop.
    Deregistered {
        /// Who.
        instance_id: String,
    },
    /// The instance's status changed.
    StatusChanged {
        /// Who.
        instance_id: String,
        /// The previous status.
        from: Status,
        /// The new status.
        to: Status,
    },
    /// A heartbeat was ingested (only sent when the engine is asked for them).
    Heartbeat {
        /// Who.
        instance_id: String,
        /// The node's timestamp, which with the instance id names one heartbeat.
        timestamp: String,
    },
    /// A result or progress update arrived.
    Result(ResultRecord),
    /// Instances were pruned from the registry and their retained messages cleared.
    Pruned {
        /// Who.
        instance_ids: Vec<String>,
    },
    /// The engine connected to the broker (at start, and after every reconnect).
    BrokerConnected,
    /// The engine lost the broker or could not reach it; it tries again after `retry_in_ms`.
    BrokerDisconnected {
        /// What went wrong, as the MQTT client says it.
        error: String,
        /// The jittered delay before the next attempt, in milliseconds.
        retry_in_ms: u64,
    },
    /// A write to the database failed; its rows stay queued and the write is tried again after
    /// `retry_in_ms`.
    DatabaseFailed {
        /// What the database said.
        error: String,
        /// Rows waiting to be written.
        unsaved_rows: usize,
        /// The jittered delay before the next attempt, in milliseconds.
        retry_in_ms: u64,
    },
    /// The database took a write again after failures; nothing queued was lost.
    DatabaseRecovered {
        /// Rows written by this write, the queued ones included.
        rows: usize,
    },
}

impl FleetEvent {
    /// The event as one JSON object with an `event` field naming its kind.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Registered { instance_id, node_name, version } => {
                json!({"event": "registered", "instance_id": instance_id, "node_name": node_name, "version": version})
            }
            Self::Deregistered { instance_id } => json!({"event": "deregistered", "instance_id": instance_id}),
            Self::StatusChanged { instance_id, from, to } => {
                json!({"event": "status", "instance_id": instance_id, "from": from.as_str(), "to": to.as_str()})
            }
            Self::Heartbeat { instance_id, timestamp } => {
                json!({"event": "heartbeat", "instance_id": instance_id, "timestamp": timestamp})
            }
            Self::Result(r) => json!({"event": "result", "result": r.to_json()}),
            Self::Pruned { instance_ids } => json!({"event": "pruned", "instance_ids": instance_ids}),
            Self::BrokerConnected => json!({"event": "broker_connected"}),
            Self::BrokerDisconnected { error, retry_in_ms } => {
                json!({"event": "broker_disconnected", "error": error, "retry_in_ms": retry_in_ms})
            }
            Self::DatabaseFailed { error, unsaved_rows, retry_in_ms } => json!({
                "event": "database_failed", "error": error, "unsaved_rows": unsaved_rows, "retry_in_ms": retry_in_ms
            }),
            Self::DatabaseRecovered { rows } => json!({"event": "database_recovered", "rows": rows}),
        }
    }
}

impl fmt::Display for FleetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered { instance_id, node_name, version } => {
                let (id, node, version) = (Printable(instance_id), Printable(node_name), Printable(version));
                write!(f, "registered    {id} ({node} {version})")
            }
            Self::Deregistered { instance_id } => write!(f, "deregistered  {}", Printable(instance_id)),
            Self::StatusChanged { instance_id, from, to: Status::Missing } => {
                write!(f, "missing       {} (was {from}; no heartbeat for 3 intervals)", Printable(instance_id))
            }
            Self::StatusChanged { instance_id, from, to } => {
                write!(f, "status        {} {from} -> {to}", Printable(instance_id))
            }
            Self::Heartbeat { instance_id, timestamp } => {
                write!(f, "heartbeat     {} {}", Printable(instance_id), Printable(timestamp))
            }
            Self::Result(r) => write!(f, "result        {r}"),
            Self::BrokerConnected => f.write_str("broker        connected"),
            Self::BrokerDisconnected { error, retry_in_ms } => {
                write!(f, "broker        disconnected: {}; retrying in {retry_in_ms} ms", Printable(error))
            }
            Self::DatabaseFailed { error, unsaved_rows, retry_in_ms } => write!(
                f,
                "database      cannot write: {}; {unsaved_rows} row(s) kept, retrying in {retry_in_ms} ms",
                Printable(error)
            ),
            Self::DatabaseRecovered { rows } => write!(f, "database      written again ({rows} row(s))"),
            Self::Pruned { instance_ids } => {
                f.write_str("pruned        ")?;
                for (i, id) in instance_ids.iter().enumerate() {
                    write!(f, "{}{}", if i == 0 { "" } else { ", " }, Printable(id))?;
                }
                Ok(())
            }
        }
    }
}
