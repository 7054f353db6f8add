//! What can go wrong, one enum per kind of caller.

use std::fmt;

use rumqttc::{ConnectReturnCode, ConnectionError};
use subnodesync_core::ConnectRefused;

use subnodesync_core::PayloadError;

/// Why the engine could not start or do what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting (flag or `SUBNODE_*` variable) cannot be used.
    Setting(subnodesync_host::InvalidValue),
    /// A TLS file cannot be used (unreadable, no certificate, a certificate without its key).
    Tls(String),
    /// The database cannot be opened, read or written.
    Database(String),
    /// The file is not a SQLite database, or is another program's.
    NotADatabase(std::path::PathBuf),
    /// Rows the engine accepted could not be written before it stopped (the database stayed
    /// unwritable); they are lost.
    Unsaved {
        /// How many rows.
        rows: usize,
        /// The database's last error.
        error: String,
    },
    /// No command with this request id is in the history.
    UnknownRequest(String),
    /// The database was written by a newer engine whose schema this one does not know.
    SchemaTooNew {
        /// The file's schema version.
        found: usize,
        /// The newest version this engine knows.
        known: usize,
    },
    /// The engine's connection task has ended (the engine was shut down).
    Stopped,
    /// No instance in the registry has this id, so its control topic is unknown.
    UnknownInstance(String),
    /// The target selects no instance.
    NoTargets,
    /// The target names a node or an instance no topic can carry.
    InvalidTarget(String),
    /// The parameters are not a JSON object.
    InvalidParameters(String),
    /// The command name or a request id is empty, too long or not representable.
    InvalidCommand(&'static str),
    /// The MQTT client refused the request (its queue is closed).
    Mqtt(String),
    /// The console cannot listen (the address is taken, or not this machine's).
    Http(String),
    /// A desired setting or document the engine will not publish (PROTOCOL.md §15.1).
    InvalidSetting(crate::desired::DesiredError),
    /// The broker's retained messages did not arrive in time: the current desired state is unknown.
    Unsynced,
    /// The broker did not hand a published desired document back in time (the topic): not
    /// connected, or an ACL dropped it.
    Unconfirmed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setting(v) => write!(f, "invalid setting {v}"),
            Self::Tls(e) => f.write_str(e),
            Self::Database(e) => write!(f, "database: {e}"),
            Self::NotADatabase(path) => {
                write!(f, "{} is not a SubNodeSync database (give --db or SUBNODE_DB another file)", path.display())
            }
            Self::Unsaved { rows, error } => write!(f, "{rows} row(s) could not be written to the database: {error}"),
            Self::UnknownRequest(id) => write!(f, "no command {id:?} in the history"),
            Self::SchemaTooNew { found, known } => {
                write!(f, "database schema version {found} is newer than this engine's ({known}); use a newer subnode")
            }
            Self::Stopped => f.write_str("the engine has stopped"),
            Self::UnknownInstance(id) => {
                write!(f, "no instance {id:?} in the registry (give it as node_name/instance_id to send anyway)")
            }
            Self::NoTargets => f.write_str("the target selects no instance"),
            Self::InvalidTarget(why) => write!(f, "invalid target: {why}"),
            Self::InvalidParameters(e) => write!(f, "parameters must be a JSON object: {e}"),
            Self::InvalidCommand(why) => write!(f, "invalid command: {why}"),
            Self::Mqtt(e) => write!(f, "mqtt: {e}"),
            Self::Http(e) => write!(f, "console: {e}"),
            Self::InvalidSetting(e) => write!(f, "desired state: {e}"),
            Self::Unsynced => f.write_str("the broker's retained messages did not arrive in time; nothing published"),
            Self::Unconfirmed(topic) => write!(f, "the broker did not confirm the document on {topic} in time"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// Why a message from the broker was not ingested. Each is counted and logged, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestError {
    /// The topic is not `{prefix}/{node_name}/{instance_id}/{register|heartbeat|status|result}`.
    Topic,
    /// The payload breaks the wire contract.
    Payload(PayloadError),
    /// The payload's `node_name` or `instance_id` differs from the topic's.
    TopicMismatch,
    /// A status other than `online`, `offline` or `lost`.
    UnknownStatus,
    /// The instance id does not start with the topic's node name, or another node name has it.
    ForeignInstance,
    /// A new instance, and the registry already holds its maximum number of instances.
    RegistryFull,
    /// A node name, instance id or request id longer than PROTOCOL.md §3 allows.
    TooLong,
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Topic => f.write_str("not a node topic"),
            Self::Payload(e) => write!(f, "{e}"),
            Self::TopicMismatch => f.write_str("node_name or instance_id differs from the topic's"),
            Self::UnknownStatus => f.write_str("status is not online, offline or lost"),
            Self::ForeignInstance => f.write_str("the instance id belongs to another node name"),
            Self::RegistryFull => f.write_str("a new instance, and the registry is full (max_instances)"),
            Self::TooLong => f.write_str("a node name, instance id or request id longer than the protocol allows"),
        }
    }
}

impl std::error::Error for IngestError {}

impl From<PayloadError> for IngestError {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e)
    }
}

/// Why a `KEY=VALUE` filter (`subnode send --where`, `subnode nodes --where`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterError {
    /// The filter, which has no `=`.
    NotKeyValue(String),
    /// The key, which is not `node`, `version`, `host`, `hostname` or `status`.
    UnknownKey(String),
    /// The value of `status=`, which names no status.
    UnknownStatus(String),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(filter) => write!(f, "{filter:?}: expected KEY=VALUE"),
            Self::UnknownKey(key) => write!(f, "{key}: expected node, version, host or status"),
            Self::UnknownStatus(status) => write!(f, "status={status}: unknown status"),
        }
    }
}

impl std::error::Error for FilterError {}

/// What went wrong with the broker connection, in the words the nodes use for a refused CONNECT.
pub(crate) fn describe_connection_error(e: &ConnectionError) -> String {
    let refused = match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::RefusedProtocolVersion => ConnectRefused::ProtocolVersion,
            ConnectReturnCode::BadClientId => ConnectRefused::IdentifierRejected,
            ConnectReturnCode::ServiceUnavailable => ConnectRefused::ServerUnavailable,
            ConnectReturnCode::BadUserNamePassword => ConnectRefused::BadUsernamePassword,
            ConnectReturnCode::NotAuthorized => ConnectRefused::NotAuthorized,
            ConnectReturnCode::Success => return e.to_string(),
        },
        _ => return e.to_string(),
    };
    format!("the broker refused the connection: {refused}")
}
