//! Engine settings: set in code (or by a flag), else the node's `SUBNODE_*` variable, else the
//! default. Variable names and value parsers are the nodes' own (`subnodesync-host`), so both
//! ends read the same environment the same way.

use std::path::PathBuf;
use std::time::Duration;

use subnodesync_host::config::{self as env, BrokerUrl, ProxyUrl, Secret};
use subnodesync_host::InvalidValue;

use crate::error::Error;
use crate::registry::Limits;
use crate::store::{Location, Retention};

/// `SUBNODE_DB`: the engine's SQLite file or `postgres://` URL (engine only; nodes do not read
/// it).
pub const DB: &str = "SUBNODE_DB";

/// An engine limit: its variable, the values it takes and what a value outside them is told.
/// The CLI's flags parse with the same ranges.
#[derive(Debug)]
pub struct Limit<T: 'static> {
    /// The `SUBNODE_*` variable that sets it.
    pub variable: &'static str,
    /// The values it takes.
    pub range: std::ops::RangeInclusive<T>,
    /// What a value outside the range is told.
    pub expected: &'static str,
}

impl Limit<usize> {
    /// `text` as a count within range.
    pub fn parse(&self, text: &str) -> Result<usize, &'static str> {
        text.trim().parse().ok().filter(|n| self.range.contains(n)).ok_or(self.expected)
    }
}

impl Limit<Duration> {
    /// `text` as a duration within range.
    pub fn parse(&self, text: &str) -> Result<Duration, &'static str> {
        env::parse_duration(text).ok().filter(|d| self.range.contains(d)).ok_or(self.expected)
    }
}

/// `SUBNODE_MAX_INSTANCES`: the most instances the registry holds.
pub const MAX_INSTANCES: Limit<usize> =
    Limit { variable: "SUBNODE_MAX_INSTANCES", range: 1..=100_000_000, expected: "a number from 1 to 100000000" };
/// `SUBNODE_MAX_STORED_JSON`: the most bytes of register or metrics JSON kept per instance, up
/// to the largest message the engine reads.
pub const MAX_STORED_JSON: Limit<usize> = Limit {
    variable: "SUBNODE_MAX_STORED_JSON",
    range: 0..=crate::engine::MAX_PAYLOAD,
    expected: "a number of bytes from 0 to 65536",
};
/// `SUBNODE_HISTORY_MAX_AGE`: commands older than this leave the history.
pub const HISTORY_MAX_AGE: Limit<Duration> = Limit {
    variable: "SUBNODE_HISTORY_MAX_AGE",
    range: Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400),
    expected: "a duration from 1m to 3650d",
};
/// `SUBNODE_HISTORY_MAX_COMMANDS`: the most commands the history keeps.
pub const HISTORY_MAX_COMMANDS: Limit<usize> = Limit {
    variable: "SUBNODE_HISTORY_MAX_COMMANDS",
    range: 1..=100_000_000,
    expected: "a number from 1 to 100000000",
};

/// How to reach the broker and what to do there.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The broker, parsed.
    pub broker: BrokerUrl,
    /// MQTT username.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<Secret>,
    /// For `mqtts://` and `wss://`: PEM file of the CA(s) to trust instead of the system's store.
    pub tls_ca: Option<PathBuf>,
    /// For `mqtts://` and `wss://`: PEM file of a client certificate (chain); needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// For `mqtts://` and `wss://`: PEM file of the client certificate's private key.
    pub tls_key: Option<PathBuf>,
    /// For `mqtts://` and `wss://`: ALPN protocol names to offer (`SUBNODE_TLS_ALPN`).
    pub tls_alpn: Vec<String>,
    /// For `ws://` and `wss://`: the HTTP proxy to tunnel through with `CONNECT`
    /// (`SUBNODE_PROXY`, else `HTTPS_PROXY`), unless `no_proxy` names the broker's host. A value
    /// that cannot be used is an error from `Engine::start` only if the broker needs the proxy.
    pub proxy: Option<Result<ProxyUrl, InvalidValue>>,
    /// Hosts reached without the proxy (`NO_PROXY`).
    pub no_proxy: Option<String>,
    /// First topic level(s), default `subnodesync`.
    pub topic_prefix: String,
    /// The registry and history database.
    pub db: Location,
    /// MQTT client id; default `subnode-<host>-<pid>-<n>`.
    pub client_id: String,
    /// Share heartbeat ingest with other engines in this `$share/<group>/` group.
    pub share_group: Option<String>,
    /// The fleet's heartbeat interval: an online instance silent for three of them is `missing`.
    pub heartbeat_interval: Duration,
    /// Prune `lost`, `offline` and `missing` instances this long after their last status change.
    pub prune_after: Option<Duration>,
    /// How often the registry is written to the database.
    pub flush_interval: Duration,
    /// Subscribe to heartbeats (a one-shot `send` needs only register, status and result).
    pub heartbeats: bool,
    /// Emit an event for every heartbeat (for exactly-once checks; costly on big fleets).
    pub heartbeat_events: bool,
    /// The most instances the registry holds; messages about new ones beyond it are refused
    /// and counted (default 100,000).
    pub max_instances: usize,
    /// The most bytes of an instance's register payload or heartbeat `metrics` kept as JSON;
    /// larger ones are ingested for their fields only, and counted (default 16 KiB).
    pub max_stored_json: usize,
    /// How much command history the database keeps (default 30 days, 10,000 commands).
    pub retention: Retention,
}

/// The heartbeat intervals a node accepts (`set_heartbeat_interval`'s range), so three of them
/// (the engine's `missing` threshold) always fit.
pub const HEARTBEAT_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);
/// What an out-of-range heartbeat interval is told.
pub const HEARTBEAT_INTERVAL_EXPECTED: &str = "a duration from 1s to 24h";

impl EngineConfig {
    /// Defaults completed by the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(&|key| std::env::var(key).ok())
    }

    /// Defaults completed by `lookup` (the environment, in tests a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let invalid = |name: &'static str, value: String, expected: &'static str| {
            Error::Setting(InvalidValue { name, value, expected })
        };
        let broker = match get(env::BROKER_URL) {
            Some(url) => env::parse_broker_url(&url).map_err(|e| invalid(env::BROKER_URL, url, e))?,
            None => BrokerUrl::localhost(),
        };
        let heartbeat_interval = match get(env::HEARTBEAT_INTERVAL) {
            Some(v) => match env::parse_duration(&v) {
                Ok(d) if HEARTBEAT_INTERVAL_RANGE.contains(&d) => d,
                _ => return Err(invalid(env::HEARTBEAT_INTERVAL, v, HEARTBEAT_INTERVAL_EXPECTED)),
            },
            None => Duration::from_secs(30),
        };
        let (limits, retention) = (Limits::default(), Retention::default());
        let count = |limit: &Limit<usize>, default| {
            get(limit.variable).map_or(Ok(default), |v| limit.parse(&v).map_err(|e| invalid(limit.variable, v, e)))
        };
        let max_age = match get(HISTORY_MAX_AGE.variable) {
            Some(v) => HISTORY_MAX_AGE.parse(&v).map_err(|e| invalid(HISTORY_MAX_AGE.variable, v, e))?,
            None => retention.max_age,
        };
        Ok(Self {
            max_instances: count(&MAX_INSTANCES, limits.max_instances)?,
            max_stored_json: count(&MAX_STORED_JSON, limits.max_stored_json)?,
            retention: Retention { max_age, max_commands: count(&HISTORY_MAX_COMMANDS, retention.max_commands)? },
            broker,
            username: get(env::USERNAME),
            password: env::password(get(env::PASSWORD), get(env::PASSWORD_FILE)).map_err(Error::Setting)?,
            tls_ca: get(env::TLS_CA).map(PathBuf::from),
            tls_cert: get(env::TLS_CERT).map(PathBuf::from),
            tls_key: get(env::TLS_KEY).map(PathBuf::from),
            tls_alpn: match get(env::TLS_ALPN) {
                Some(v) => env::parse_alpn(&v).map_err(|e| invalid(env::TLS_ALPN, v, e))?,
                None => Vec::new(),
            },
            proxy: env::proxy(lookup),
            no_proxy: get(env::NO_PROXY).or_else(|| get("no_proxy")),
            topic_prefix: get(env::TOPIC_PREFIX).unwrap_or_else(|| "subnodesync".into()),
            db: get(DB).map_or_else(|| Ok(Location::Sqlite(default_db())), |db| Location::parse(&db))?,
            client_id: default_client_id(),
            share_group: None,
            heartbeat_interval,
            prune_after: None,
            flush_interval: Duration::from_millis(500),
            heartbeats: true,
            heartbeat_events: false,
        })
    }

    /// Sets the broker from a URL as `SUBNODE_BROKER_URL` takes it.
    pub fn broker_url(mut self, url: &str) -> Result<Self, Error> {
        self.broker = env::parse_broker_url(url)
            .map_err(|expected| Error::Setting(InvalidValue { name: "--broker", value: url.into(), expected }))?;
        Ok(self)
    }
}

/// `<data dir>/subnodesync/engine.db`: `$XDG_DATA_HOME` or `~/.local/share` on Linux,
/// `~/Library/Application Support` on macOS, `%APPDATA%` on Windows; else the working directory.
pub fn default_db() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    let data = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else if cfg!(windows) {
        var("APPDATA")
    } else {
        var("XDG_DATA_HOME").or_else(|| home.map(|h| h.join(".local/share")))
    };
    data.unwrap_or_default().join("subnodesync").join("engine.db")
}

fn default_client_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    // The operating system's host name (portable), so engines on two machines never share an id.
    let host = subnodesync_sysinfo::host_name().unwrap_or_default();
    let host: String = host.trim().chars().filter(char::is_ascii_alphanumeric).take(16).collect();
    format!("subnode-{host}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_variables_configure_the_engine() {
        let vars = [
            (env::BROKER_URL, "mqtt://b:1884"),
            (env::TOPIC_PREFIX, "corp/fleet"),
            (env::USERNAME, "u"),
            (env::HEARTBEAT_INTERVAL, "5s"),
            (DB, "/tmp/x.db"),
        ];
        let c =
            EngineConfig::from_lookup(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())).unwrap();
        assert_eq!((c.broker.host.as_str(), c.broker.port), ("b", 1884));
        assert_eq!((c.topic_prefix.as_str(), c.username.as_deref()), ("corp/fleet", Some("u")));
        assert_eq!((c.heartbeat_interval, c.db), (Duration::from_secs(5), PathBuf::from("/tmp/x.db").into()));
        let bad = EngineConfig::from_lookup(&|k| (k == env::BROKER_URL).then(|| "nope".to_owned()));
        assert!(matches!(bad, Err(Error::Setting(v)) if v.name == env::BROKER_URL));
    }

    #[test]
    fn the_limits_take_their_variables_within_range_and_name_the_one_that_is_not() {
        let vars = [
            (MAX_INSTANCES.variable, "500"),
            (MAX_STORED_JSON.variable, "0"),
            (HISTORY_MAX_AGE.variable, "7d"),
            (HISTORY_MAX_COMMANDS.variable, "9"),
        ];
        let c =
            EngineConfig::from_lookup(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())).unwrap();
        assert_eq!((c.max_instances, c.max_stored_json), (500, 0));
        assert_eq!(c.retention, Retention { max_age: Duration::from_secs(7 * 86_400), max_commands: 9 });
        for (name, value) in [
            (MAX_INSTANCES.variable, "0"),
            (MAX_INSTANCES.variable, "18446744073709551616"),
            (MAX_STORED_JSON.variable, "65537"),
            (HISTORY_MAX_AGE.variable, "59s"),
            (HISTORY_MAX_COMMANDS.variable, "-1"),
        ] {
            let bad = EngineConfig::from_lookup(&|k| (k == name).then(|| value.to_owned()));
            assert!(matches!(&bad, Err(Error::Setting(v)) if v.name == name), "{name}={value}: {bad:?}");
        }
    }
}
