//! Why a node could not start.

use std::fmt;

/// A setting whose value cannot be used, named as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// The environment variable (`SUBNODE_KEEPALIVE`) or builder setting (`broker_url`).
    pub name: &'static str,
    /// The value as given (never the password).
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: expected {}", self.name, self.value, self.expected)
    }
}

/// Why [`NodeBuilder::start`](crate::NodeBuilder::start) or
/// [`init_logging`](crate::init_logging) refused to go on. Every variant is reported before
/// any connection is tried.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds a value that cannot be used.
    Env(InvalidValue),
    /// A value set in code cannot be used.
    Setting(InvalidValue),
    /// The core refused the configuration (a name that would break a topic, a keep-alive MQTT
    /// cannot express, ...). `variable` names the environment variable the value came from, if
    /// it came from one.
    Config {
        /// What the core found wrong.
        error: subnodesync_core::ConfigError,
        /// The environment variable that supplied the offending value, if any.
        variable: Option<&'static str>,
    },
    /// A TLS setting cannot be used: a PEM file that cannot be read or holds nothing usable, a
    /// client certificate without its key, TLS files or ALPN names for an `mqtt://` or `ws://`
    /// broker, a host name that cannot be checked against a certificate.
    Tls {
        /// The environment variable (`SUBNODE_TLS_CA`) or builder setting (`tls_ca`) at fault.
        name: &'static str,
        /// What is wrong, with the file's path when there is one.
        reason: String,
    },
    /// A handler cannot be registered under this name.
    HandlerName {
        /// The name the handler gave.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A global `tracing` subscriber was already installed.
    LoggingAlreadyInitialized,
    /// The node task ended before reporting whether it started (a bug).
    TaskEnded,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(v) => write!(f, "invalid environment variable {v}"),
            Self::Setting(v) => write!(f, "invalid setting {v}"),
            Self::Config { error, variable: Some(var) } => write!(f, "invalid configuration from {var}: {error}"),
            Self::Config { error, variable: None } => write!(f, "invalid configuration: {error}"),
            Self::Tls { name, reason } => write!(f, "invalid TLS setting {name}: {reason}"),
            Self::HandlerName { name, reason } => write!(f, "cannot register handler {name:?}: {reason}"),
            Self::LoggingAlreadyInitialized => f.write_str("a global tracing subscriber is already installed"),
            Self::TaskEnded => f.write_str("the node task ended before it started"),
        }
    }
}

impl std::error::Error for Error {}
