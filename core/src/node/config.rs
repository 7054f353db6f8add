//! What a node is told at construction, and the checks that keep every topic well-formed.

use core::fmt::Write as _;

use super::command::check_command_name;
use crate::codec::message::NodeVersion;
use crate::error::ConfigError;
use crate::time::Duration;

/// Longest accepted `node_name`, in bytes.
pub const NODE_NAME_MAX: usize = 48;
/// Longest accepted `hostname`, in bytes.
pub const HOSTNAME_MAX: usize = 64;
/// Longest accepted topic prefix, in bytes.
pub const PREFIX_MAX: usize = 64;
/// Longest instance id: `{node_name}-{hostname}-{pid}` with a 10-digit pid.
pub const INSTANCE_ID_MAX: usize = NODE_NAME_MAX + HOSTNAME_MAX + 12;
/// Longest topic the node ever builds: prefix, name, instance id and the longest suffix.
pub const TOPIC_MAX: usize = PREFIX_MAX + NODE_NAME_MAX + INSTANCE_ID_MAX + 3 + "heartbeat".len();

/// Everything a node needs to know before it connects. Start from [`Config::new`] and override
/// fields with struct update syntax.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Application name; the first part of the instance id and a topic level.
    pub node_name: &'a str,
    /// Host name; the second part of the instance id.
    pub hostname: &'a str,
    /// Process id (or any per-host instance number); the last part of the instance id.
    pub pid: u32,
    /// Application version, reported in register and heartbeat.
    pub version: &'a str,
    /// First topic level(s) of every topic; may contain `/` between levels. Default `subnodesync`.
    pub topic_prefix: &'a str,
    /// MQTT username.
    pub username: Option<&'a str>,
    /// MQTT password.
    pub password: Option<&'a [u8]>,
    /// MQTT keep-alive; whole seconds, 1 to 65535. Default 60 s.
    pub keep_alive: Duration,
    /// Time between heartbeats. Default 30 s.
    pub heartbeat_interval: Duration,
    /// First reconnect delay. Default 1 s.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Default 15 min, as the original design says.
    pub reconnect_max: Duration,
    /// How long a connection must stay up before the reconnect delay starts over. Default 60 s.
    pub stable_after: Duration,
    /// How long opening a transport plus CONNECT/CONNACK may take. Default 30 s.
    pub connect_timeout: Duration,
    /// How long to wait for a PUBACK before resending with DUP. Default 20 s.
    pub retransmit_after: Duration,
    /// How long a clean stop waits for its last messages to be acknowledged. Default 5 s.
    pub stop_timeout: Duration,
    /// Commands the application handles; any other non-built-in command fails as unknown.
    pub commands: &'a [&'a str],
    /// Extra capabilities to announce after the built-in `mqtt_control` and `heartbeat`.
    pub capabilities: &'a [&'a str],
    /// Extra `metadata` pairs besides `hostname`.
    pub metadata: &'a [(&'a str, &'a str)],
    /// Build information for `node_version`.
    pub node_version: NodeVersion<'a>,
}

impl<'a> Config<'a> {
    /// A configuration with every default, for this name, host and process id.
    pub const fn new(node_name: &'a str, hostname: &'a str, pid: u32) -> Self {
        Self {
            node_name,
            hostname,
            pid,
            version: "0.0.0",
            topic_prefix: "subnodesync",
            username: None,
            password: None,
            keep_alive: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(15 * 60),
            stable_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            retransmit_after: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(5),
            commands: &[],
            capabilities: &[],
            metadata: &[],
            node_version: NodeVersion::UNKNOWN,
        }
    }

    /// Checks every field and builds the instance id.
    pub(crate) fn validate(&self) -> Result<heapless::String<INSTANCE_ID_MAX>, ConfigError> {
        topic_level("node_name", self.node_name, NODE_NAME_MAX)?;
        topic_level("hostname", self.hostname, HOSTNAME_MAX)?;
        if self.topic_prefix.starts_with('/') || self.topic_prefix.ends_with('/') || self.topic_prefix.contains("//") {
            return Err(ConfigError::InvalidCharacter("topic_prefix"));
        }
        for level in self.topic_prefix.split('/') {
            topic_level("topic_prefix", level, PREFIX_MAX)?;
        }
        if self.topic_prefix.len() > PREFIX_MAX {
            return Err(ConfigError::TooLong("topic_prefix", PREFIX_MAX));
        }
        for (name, field, max) in [("version", self.version, 64), ("username", self.username.unwrap_or(""), 1024)] {
            if field.len() > max {
                return Err(ConfigError::TooLong(name, max));
            }
        }
        if self.password.is_some_and(|p| p.len() > usize::from(u16::MAX)) {
            return Err(ConfigError::TooLong("password", usize::from(u16::MAX)));
        }
        let ka = self.keep_alive;
        if ka.as_secs() == 0 || ka.as_secs() > u64::from(u16::MAX) || ka != Duration::from_secs(ka.as_secs()) {
            return Err(ConfigError::InvalidDuration("keep_alive"));
        }
        for (name, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("reconnect_min", self.reconnect_min),
            ("reconnect_max", self.reconnect_max),
            ("connect_timeout", self.connect_timeout),
            ("retransmit_after", self.retransmit_after),
            ("stop_timeout", self.stop_timeout),
        ] {
            if d.as_ticks() == 0 {
                return Err(ConfigError::InvalidDuration(name));
            }
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(ConfigError::BackoffRange);
        }
        for name in self.commands {
            check_command_name(name).map_err(ConfigError::CommandName)?;
        }
        let mut id = heapless::String::new();
        write!(id, "{}-{}-{}", self.node_name, self.hostname, self.pid)
            .map_err(|_| ConfigError::TooLong("instance_id", INSTANCE_ID_MAX))?;
        Ok(id)
    }
}

/// One topic level: non-empty, bounded, and free of characters that would split or widen it.
fn topic_level(field: &'static str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::Empty(field));
    }
    if value.len() > max {
        return Err(ConfigError::TooLong(field, max));
    }
    // Besides what would split or widen a topic, quotes and backslashes are refused too: names
    // then never need JSON escaping, and every message writes them as they are.
    if value.chars().any(|c| matches!(c, '/' | '+' | '#' | '"' | '\\') || c.is_control()) {
        return Err(ConfigError::InvalidCharacter(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_joins_name_host_and_pid() {
        assert_eq!(Config::new("my-app", "server01", 12345).validate().unwrap(), "my-app-server01-12345");
    }

    #[test]
    fn names_that_would_break_a_topic_are_refused() {
        let bad = |name, host, prefix| Config { topic_prefix: prefix, ..Config::new(name, host, 1) }.validate();
        assert_eq!(bad("a/b", "h", "p"), Err(ConfigError::InvalidCharacter("node_name")));
        assert_eq!(bad("a", "h+", "p"), Err(ConfigError::InvalidCharacter("hostname")));
        assert_eq!(bad("a", "h", "p/#"), Err(ConfigError::InvalidCharacter("topic_prefix")));
        assert_eq!(bad("a\0", "h", "p"), Err(ConfigError::InvalidCharacter("node_name")));
        assert_eq!(bad("a\"b", "h", "p"), Err(ConfigError::InvalidCharacter("node_name")));
        assert_eq!(bad("a", "h\\", "p"), Err(ConfigError::InvalidCharacter("hostname")));
        assert_eq!(bad("", "h", "p"), Err(ConfigError::Empty("node_name")));
        assert_eq!(bad("a", "h", "p//q"), Err(ConfigError::InvalidCharacter("topic_prefix")));
        let long = "x".repeat(49);
        assert_eq!(bad(&long, "h", "p"), Err(ConfigError::TooLong("node_name", 48)));
        assert!(bad("a", "h", "corp/fleet").is_ok());
    }

    #[test]
    fn declared_commands_must_be_reachable_names() {
        let with = |commands| Config { commands, ..Config::new("a", "h", 1) }.validate();
        assert!(with(&["deploy", "echo"]).is_ok());
        assert_eq!(with(&["stop"]), Err(ConfigError::CommandName(crate::error::CommandNameError::BuiltIn)));
        assert_eq!(with(&[""]), Err(ConfigError::CommandName(crate::error::CommandNameError::Empty)));
    }

    #[test]
    fn durations_are_checked() {
        let cfg = Config::new("a", "h", 1);
        assert_eq!(
            Config { keep_alive: Duration::from_millis(1500), ..cfg }.validate(),
            Err(ConfigError::InvalidDuration("keep_alive"))
        );
        assert_eq!(
            Config { keep_alive: Duration::from_secs(70_000), ..cfg }.validate(),
            Err(ConfigError::InvalidDuration("keep_alive"))
        );
        assert_eq!(
            Config { heartbeat_interval: Duration::from_secs(0), ..cfg }.validate(),
            Err(ConfigError::InvalidDuration("heartbeat_interval"))
        );
        assert_eq!(
            Config { reconnect_min: Duration::from_secs(10), reconnect_max: Duration::from_secs(5), ..cfg }.validate(),
            Err(ConfigError::BackoffRange)
        );
    }
}
