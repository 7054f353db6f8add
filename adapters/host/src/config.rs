//! Settings from the environment, parsed by pure functions over a key → value lookup.
//!
//! The constants below name every variable; the crate documentation has the table of formats
//! and defaults.
//!
//! Priority is always: set in code > environment > default. This module only reads the
//! environment half and checks it; [`NodeBuilder`](crate::NodeBuilder) merges. Tests pass their
//! own lookup, so nothing here needs to touch the process environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::InvalidValue;

/// `mqtt://host:port`, `mqtts://host:port` for TLS, `ws://host:port/path` for MQTT over
/// WebSocket, `wss://host:port/path` for MQTT over WebSocket over TLS.
pub const BROKER_URL: &str = "SUBNODE_BROKER_URL";
/// Application name: the first part of the instance id and a topic level.
pub const NODE_NAME: &str = "SUBNODE_NODE_NAME";
/// MQTT username.
pub const USERNAME: &str = "SUBNODE_USERNAME";
/// MQTT password.
pub const PASSWORD: &str = "SUBNODE_PASSWORD";
/// A file holding the MQTT password (its first line), so the password is in no environment or
/// command line.
pub const PASSWORD_FILE: &str = "SUBNODE_PASSWORD_FILE";
/// First topic level(s), default `subnodesync`.
pub const TOPIC_PREFIX: &str = "SUBNODE_TOPIC_PREFIX";
/// Time between heartbeats, default 30 s.
pub const HEARTBEAT_INTERVAL: &str = "SUBNODE_HEARTBEAT_INTERVAL";
/// MQTT keep-alive in whole seconds, default 60 s.
pub const KEEPALIVE: &str = "SUBNODE_KEEPALIVE";
/// First reconnect delay, default 1 s.
pub const RECONNECT_MIN: &str = "SUBNODE_RECONNECT_MIN";
/// Longest reconnect delay, default 15 min.
pub const RECONNECT_MAX: &str = "SUBNODE_RECONNECT_MAX";
/// Application version, default `0.0.0`.
pub const VERSION: &str = "SUBNODE_VERSION";
/// PEM file with the CA certificate(s) to trust for `mqtts://`, instead of the system's store.
pub const TLS_CA: &str = "SUBNODE_TLS_CA";
/// PEM file with the client certificate (chain) for `mqtts://`; needs [`TLS_KEY`].
pub const TLS_CERT: &str = "SUBNODE_TLS_CERT";
/// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
pub const TLS_KEY: &str = "SUBNODE_TLS_KEY";
/// Comma-separated ALPN protocol names offered in the TLS handshake (`mqtts://`, `wss://`), such
/// as `x-amzn-mqtt-ca` for MQTT on port 443 of AWS IoT Core; none by default.
pub const TLS_ALPN: &str = "SUBNODE_TLS_ALPN";
/// `http://[user:password@]host[:port]`: an HTTP proxy that `ws://` and `wss://` connections
/// tunnel through with `CONNECT`; else `HTTPS_PROXY` (or `https_proxy`), with `NO_PROXY`.
pub const PROXY: &str = "SUBNODE_PROXY";
/// The usual proxy variable, used for `ws://` and `wss://` when [`PROXY`] is unset.
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
/// Comma-separated hosts (or `.domain` suffixes, or `*`) reached without the `HTTPS_PROXY`.
pub const NO_PROXY: &str = "NO_PROXY";
/// `http://host[:port]/path`: the register message is also POSTed there (optional).
pub const HTTP_REGISTER_URL: &str = "SUBNODE_HTTP_REGISTER_URL";
/// How long an application command handler may run when neither it nor the engine says.
pub const HANDLER_TIMEOUT: &str = "SUBNODE_HANDLER_TIMEOUT";
/// Log filter in `tracing-subscriber`'s `EnvFilter` syntax, default `info`.
pub const LOG: &str = "SUBNODE_LOG";
/// Log output: `json` or `pretty` (default).
pub const LOG_FORMAT: &str = "SUBNODE_LOG_FORMAT";

const EXPECT_URL: &str = "mqtt://host:port, mqtts://host:port, ws://host:port/path or wss://host:port/path (port \
                          optional; a path only for ws and wss; no credentials)";
const EXPECT_PROXY: &str = "http://[user:password@]host[:port] (a plain HTTP proxy that accepts CONNECT)";
const EXPECT_ALPN: &str = "comma-separated protocol names such as x-amzn-mqtt-ca or mqtt";
const EXPECT_HTTP_URL: &str = "http://host[:port][/path] (plain HTTP; no credentials, query or https)";
const EXPECT_DURATION: &str = "a positive duration such as 500ms, 30s, 15m, 1h, 7d or a whole number of seconds";
const EXPECT_KEEPALIVE: &str = "whole seconds from 1 to 65535, such as 60, 60s or 2m";
const EXPECT_LOG_FORMAT: &str = "json or pretty";

/// How to reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP, `mqtt://`, default port 1883.
    Mqtt,
    /// TLS, `mqtts://`, default port 8883.
    Mqtts,
    /// MQTT over WebSocket, `ws://`, default port 80.
    Ws,
    /// MQTT over WebSocket over TLS, `wss://`, default port 443.
    Wss,
}

impl Scheme {
    /// Whether the connection is TLS (`mqtts://`, `wss://`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Mqtts | Self::Wss)
    }

    /// Whether MQTT goes over WebSocket (`ws://`, `wss://`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The URL scheme, as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Mqtts => "mqtts",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Plain or TLS.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The WebSocket request target (path and query, starting with `/`); `None` for `mqtt://`
    /// and `mqtts://`.
    pub path: Option<String>,
}

impl BrokerUrl {
    /// `mqtt://localhost:1883`, the broker when none is configured.
    pub fn localhost() -> Self {
        Self { scheme: Scheme::Mqtt, host: "localhost".into(), port: 1883, path: None }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)?;
        }
        f.write_str(self.path.as_deref().unwrap_or_default())
    }
}

/// An HTTP proxy to tunnel through with `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 80).
    pub port: u16,
    /// `user:password` for `Proxy-Authorization: Basic`, if the URL has them.
    pub credentials: Option<Secret>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxyUrl {
    /// Without the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `http://` URL for the HTTP registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The request target, starting with `/`.
    pub(crate) path: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Log output format for [`init_logging`](crate::init_logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, with the span fields (node_name, instance_id, request_id).
    Json,
    /// Human-readable lines.
    #[default]
    Pretty,
}

/// Everything the environment says, each `None` when the variable is unset or empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EnvSettings {
    pub(crate) broker_url: Option<BrokerUrl>,
    pub(crate) node_name: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) topic_prefix: Option<String>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) reconnect_min: Option<Duration>,
    pub(crate) reconnect_max: Option<Duration>,
    pub(crate) version: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) http_register_url: Option<HttpUrl>,
    pub(crate) handler_timeout: Option<Duration>,
    pub(crate) tls_alpn: Option<Vec<String>>,
    /// `SUBNODE_PROXY`, else `HTTPS_PROXY`; with the variable it came from.
    /// Checked only when a connection would use it: `HTTPS_PROXY` is every program's, and a
    /// value this crate cannot use must not stop a node that never needs it.
    pub(crate) proxy: Option<Result<ProxyUrl, InvalidValue>>,
    pub(crate) no_proxy: Option<String>,
}

/// Reads and checks every `SUBNODE_*` variable the node uses. An empty value counts as unset.
pub(crate) fn read_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<EnvSettings, InvalidValue> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let parsed = |name: &'static str, parse: fn(&str) -> Result<Duration, &'static str>| {
        get(name).map(|v| parse(&v).map_err(|expected| InvalidValue { name, value: v.clone(), expected })).transpose()
    };
    Ok(EnvSettings {
        broker_url: get(BROKER_URL)
            .map(|v| parse_broker_url(&v).map_err(|expected| InvalidValue { name: BROKER_URL, value: v, expected }))
            .transpose()?,
        node_name: get(NODE_NAME),
        username: get(USERNAME),
        password: password(get(PASSWORD), get(PASSWORD_FILE))?,
        topic_prefix: get(TOPIC_PREFIX),
        heartbeat_interval: parsed(HEARTBEAT_INTERVAL, parse_duration)?,
        keep_alive: parsed(KEEPALIVE, parse_keepalive)?,
        reconnect_min: parsed(RECONNECT_MIN, parse_duration)?,
        reconnect_max: parsed(RECONNECT_MAX, parse_duration)?,
        version: get(VERSION),
        log_format: get(LOG_FORMAT)
            .map(|v| parse_log_format(&v).map_err(|expected| InvalidValue { name: LOG_FORMAT, value: v, expected }))
            .transpose()?,
        // Paths are taken as given; the files are read (and their errors named) when the node
        // starts, in one place for code and environment alike.
        tls_ca: get(TLS_CA).map(PathBuf::from),
        tls_cert: get(TLS_CERT).map(PathBuf::from),
        tls_key: get(TLS_KEY).map(PathBuf::from),
        http_register_url: get(HTTP_REGISTER_URL)
            .map(|v| {
                parse_http_url(&v).map_err(|expected| InvalidValue { name: HTTP_REGISTER_URL, value: v, expected })
            })
            .transpose()?,
        handler_timeout: parsed(HANDLER_TIMEOUT, parse_duration)?,
        tls_alpn: get(TLS_ALPN)
            .map(|v| parse_alpn(&v).map_err(|expected| InvalidValue { name: TLS_ALPN, value: v, expected }))
            .transpose()?,
        proxy: proxy(lookup),
        no_proxy: get(NO_PROXY).or_else(|| get("no_proxy")),
    })
}

/// The proxy from `SUBNODE_PROXY`, else `HTTPS_PROXY` or `https_proxy`; `None` if none is set.
/// An error names the variable; a caller reports it only for a connection that would use the
/// proxy ([`uses_proxy`]).
pub fn proxy(lookup: &dyn Fn(&str) -> Option<String>) -> Option<Result<ProxyUrl, InvalidValue>> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let (value, name) = match (get(PROXY), get(HTTPS_PROXY), get("https_proxy")) {
        (Some(v), _, _) => (v, PROXY),
        (None, Some(v), _) => (v, HTTPS_PROXY),
        (None, None, Some(v)) => (v, "https_proxy"),
        (None, None, None) => return None,
    };
    Some(parse_proxy_url(&value).map_err(|expected| InvalidValue { name, value: redact(&value), expected }))
}

/// `value` with any `user:password@` hidden, to quote in an error.
fn redact(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((_, host)) => format!("http://***@{host}"),
        None => value.to_owned(),
    }
}

/// Whether a connection to `url` goes through the environment's proxy: it serves `ws://` and
/// `wss://` brokers only (`HTTPS_PROXY` is for every program on the machine), and not the hosts
/// `no_proxy` names.
pub fn uses_proxy(url: &BrokerUrl, no_proxy: Option<&str>) -> bool {
    url.scheme.is_websocket() && !bypasses_proxy(&url.host, no_proxy)
}

/// Whether `host` is reached without the proxy under `no_proxy` (comma-separated host names,
/// `.domain` or `domain` suffixes, `*` for all; ports are ignored).
pub fn bypasses_proxy(host: &str, no_proxy: Option<&str>) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.unwrap_or_default().split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches("*.").trim_start_matches('.');
        // `host:port` entries name the host; bracketed IPv6 loses its brackets.
        let entry = match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or_default(),
            None => entry,
        };
        let entry = entry.to_ascii_lowercase();
        host == entry || host.strip_suffix(&entry).is_some_and(|rest| rest.ends_with('.'))
    })
}

/// `http://[user:password@]host[:port][/]`.
pub fn parse_proxy_url(url: &str) -> Result<ProxyUrl, &'static str> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(EXPECT_PROXY),
        // `host:port` alone, as many tools accept.
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (credentials, authority) = match rest.rsplit_once('@') {
        Some((userinfo, authority)) => {
            if !userinfo.contains(':') {
                return Err(EXPECT_PROXY);
            }
            (Some(Secret(userinfo.to_owned())), authority)
        }
        None => (None, rest),
    };
    let broker = parse_broker_url(&format!("mqtt://{authority}")).map_err(|_| EXPECT_PROXY)?;
    let port = if authority.ends_with(']') || !authority.contains(':') { 80 } else { broker.port };
    Ok(ProxyUrl { host: broker.host, port, credentials })
}

/// Comma-separated ALPN protocol names; none empty.
pub fn parse_alpn(text: &str) -> Result<Vec<String>, &'static str> {
    let names: Vec<String> = text.split(',').map(|n| n.trim().to_owned()).collect();
    if names.iter().any(|n| n.is_empty() || n.len() > 255 || !n.is_ascii() || n.contains(char::is_whitespace)) {
        return Err(EXPECT_ALPN);
    }
    Ok(names)
}

/// A password: `Debug` shows `***`, so no log line, panic message or `{:?}` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The password from `SUBNODE_PASSWORD` or from the file `SUBNODE_PASSWORD_FILE` names; setting
/// both is a mistake worth saying.
pub fn password(value: Option<String>, file: Option<String>) -> Result<Option<Secret>, InvalidValue> {
    match (value, file) {
        (Some(_), Some(file)) => Err(InvalidValue {
            name: PASSWORD_FILE,
            value: file,
            expected: "either SUBNODE_PASSWORD or SUBNODE_PASSWORD_FILE, not both",
        }),
        (Some(value), None) => Ok(Some(Secret(value))),
        (None, Some(file)) => read_password_file(&file, PASSWORD_FILE).map(Some),
        (None, None) => Ok(None),
    }
}

/// The first line of the file at `path` (a trailing newline is not part of the password).
pub fn read_password_file(path: &str, name: &'static str) -> Result<Secret, InvalidValue> {
    let invalid = |expected| InvalidValue { name, value: path.to_owned(), expected };
    let text = std::fs::read_to_string(path).map_err(|_| invalid("a readable UTF-8 file holding the password"))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(invalid("a file whose first line is the password"));
    }
    Ok(Secret(line.to_owned()))
}

/// `mqtt://host[:port][/]`, `mqtts://...`, `ws://host[:port][/path]` or `wss://...`; IPv6
/// hosts in brackets. The error says what would have been accepted.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or(EXPECT_URL)?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => (Scheme::Mqtt, 1883),
        "mqtts" | "ssl" | "tls" => (Scheme::Mqtts, 8883),
        "ws" => (Scheme::Ws, 80),
        "wss" => (Scheme::Wss, 443),
        _ => return Err(EXPECT_URL),
    };
    let (authority, path) = match (scheme.is_websocket(), rest.find(['/', '?'])) {
        (true, Some(i)) => {
            let (authority, target) = rest.split_at(i);
            let target = if target.starts_with('?') { format!("/{target}") } else { target.to_owned() };
            // The target goes into the request line as given.
            if target.contains('#') || target.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(EXPECT_URL);
            }
            (authority, Some(target))
        }
        (true, None) => (rest, Some("/".to_owned())),
        (false, _) => (rest.strip_suffix('/').unwrap_or(rest), None),
    };
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) || authority.chars().any(char::is_whitespace) {
        return Err(EXPECT_URL);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(EXPECT_URL)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or(EXPECT_URL)?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or(EXPECT_URL)?,
    };
    if host.is_empty() {
        return Err(EXPECT_URL);
    }
    Ok(BrokerUrl { scheme, host: host.to_owned(), port, path })
}

/// `http://host[:port][/path]`; IPv6 hosts in brackets. The path is sent as given (it must
/// already be valid in a request line: no spaces or control characters).
pub(crate) fn parse_http_url(url: &str) -> Result<HttpUrl, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or(EXPECT_HTTP_URL)?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(EXPECT_HTTP_URL);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EXPECT_HTTP_URL);
    }
    // The authority has the broker URL's rules; borrow its parser.
    let broker = parse_broker_url(&format!("mqtt://{authority}")).map_err(|_| EXPECT_HTTP_URL)?;
    let port = if authority.ends_with(']') || !authority.contains(':') { 80 } else { broker.port };
    Ok(HttpUrl { host: broker.host, port, path: path.to_owned() })
}

/// `500ms`, `30s`, `15m`, `1h`, or a plain number of seconds; never zero. The error says what
/// would have been accepted.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| EXPECT_DURATION)?;
    let d = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    };
    d.filter(|d| !d.is_zero()).ok_or(EXPECT_DURATION)
}

/// A keep-alive: a duration of whole seconds that MQTT can carry (1 to 65535).
pub(crate) fn parse_keepalive(text: &str) -> Result<Duration, &'static str> {
    let d = parse_duration(text).map_err(|_| EXPECT_KEEPALIVE)?;
    if d.subsec_nanos() != 0 || d.as_secs() > u64::from(u16::MAX) {
        return Err(EXPECT_KEEPALIVE);
    }
    Ok(d)
}

/// `json` or `pretty`, in any case.
pub(crate) fn parse_log_format(text: &str) -> Result<LogFormat, &'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "pretty" | "text" => Ok(LogFormat::Pretty),
        _ => Err(EXPECT_LOG_FORMAT),
    }
}

/// Makes `raw` a valid topic level of at most `max` bytes: characters that would break or widen
/// a topic (`/`, `+`, `#`, control characters) and whitespace become `-`; `fallback` if empty.
pub(crate) fn sanitize_level(raw: &str, max: usize, fallback: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(max));
    for c in raw.trim().chars() {
        // What the core refuses in a name: topic separators and wildcards, quotes, backslashes.
        let c = if matches!(c, '/' | '+' | '#' | '"' | '\\') || c.is_control() || c.is_whitespace() { '-' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// This machine's host name: the operating system's (portable, through sysinfo), else
/// `$HOSTNAME`, else `localhost`; sanitized so the core accepts it.
pub(crate) fn system_hostname(lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let raw = subnodesync_sysinfo::host_name()
        .or_else(|| lookup("HOSTNAME").filter(|h| !h.trim().is_empty()))
        .unwrap_or_default();
    sanitize_level(&raw, subnodesync_core::HOSTNAME_MAX, "localhost")
}

/// The node name when neither code nor `SUBNODE_NODE_NAME` gives one: the executable's name.
pub(crate) fn default_node_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or_default();
    sanitize_level(stem, subnodesync_core::NODE_NAME_MAX, "subnode")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
    }

    fn url(host: &str, port: u16) -> BrokerUrl {
        BrokerUrl { scheme: Scheme::Mqtt, host: host.into(), port, path: None }
    }

    #[test]
    fn broker_urls_take_a_host_and_an_optional_port() {
        assert_eq!(parse_broker_url("mqtt://broker.local:1884"), Ok(url("broker.local", 1884)));
        assert_eq!(parse_broker_url("mqtt://broker.local"), Ok(url("broker.local", 1883)));
        assert_eq!(parse_broker_url("mqtt://127.0.0.1:1883/"), Ok(url("127.0.0.1", 1883)));
        assert_eq!(parse_broker_url("mqtt://[::1]:1999"), Ok(url("::1", 1999)));
        assert_eq!(
            parse_broker_url("mqtts://b:8884"),
            Ok(BrokerUrl { scheme: Scheme::Mqtts, host: "b".into(), port: 8884, path: None })
        );
        assert_eq!(parse_broker_url("mqtts://b").map(|u| u.port), Ok(8883));
        assert_eq!(url("::1", 1).to_string(), "mqtt://[::1]:1");
    }

    #[test]
    fn websocket_urls_take_a_path_and_default_to_ports_80_and_443() {
        let ws = |scheme, host: &str, port, path: &str| BrokerUrl {
            scheme,
            host: host.into(),
            port,
            path: Some(path.into()),
        };
        assert_eq!(parse_broker_url("ws://b:8080/mqtt"), Ok(ws(Scheme::Ws, "b", 8080, "/mqtt")));
        assert_eq!(parse_broker_url("ws://b"), Ok(ws(Scheme::Ws, "b", 80, "/")));
        assert_eq!(parse_broker_url("WSS://b/"), Ok(ws(Scheme::Wss, "b", 443, "/")));
        assert_eq!(parse_broker_url("wss://[::1]:8443/a/b?x=1"), Ok(ws(Scheme::Wss, "::1", 8443, "/a/b?x=1")));
        assert_eq!(parse_broker_url("wss://b?x=1"), Ok(ws(Scheme::Wss, "b", 443, "/?x=1")));
        assert_eq!(ws(Scheme::Wss, "::1", 1, "/mqtt").to_string(), "wss://[::1]:1/mqtt");
        for bad in ["ws://", "ws:///mqtt", "ws://u:p@b/mqtt", "ws://b:0/", "ws://b/a b", "ws://b/a#frag", "wss://b:x/"]
        {
            assert_eq!(parse_broker_url(bad), Err(EXPECT_URL), "{bad}");
        }
    }

    #[test]
    fn proxies_come_from_subnode_proxy_else_https_proxy_and_never_show_their_password() {
        let proxy = |host: &str, port, credentials: Option<&str>| ProxyUrl {
            host: host.into(),
            port,
            credentials: credentials.map(Secret::new),
        };
        assert_eq!(parse_proxy_url("http://proxy:3128"), Ok(proxy("proxy", 3128, None)));
        assert_eq!(parse_proxy_url("http://proxy/"), Ok(proxy("proxy", 80, None)));
        assert_eq!(parse_proxy_url("proxy:8080"), Ok(proxy("proxy", 8080, None)));
        assert_eq!(parse_proxy_url("http://u:p@[::1]:81"), Ok(proxy("::1", 81, Some("u:p"))));
        for bad in ["https://proxy:443", "socks5://p:1080", "http://u@p:1", "http://", "http://p:0"] {
            assert_eq!(parse_proxy_url(bad), Err(EXPECT_PROXY), "{bad}");
        }
        let from = |pairs: &[(&str, &str)]| proxy_from(pairs);
        assert_eq!(from(&[]), None);
        assert_eq!(from(&[(HTTPS_PROXY, "http://a:1")]), Some(Ok(proxy("a", 1, None))));
        assert_eq!(from(&[("https_proxy", "http://a:1")]), Some(Ok(proxy("a", 1, None))));
        assert_eq!(from(&[(PROXY, "http://b:2"), (HTTPS_PROXY, "http://a:1")]), Some(Ok(proxy("b", 2, None))));
        let err = from(&[(PROXY, "https://user:hunter2@p:1")]).and_then(Result::err).expect("an error");
        assert_eq!((err.name, err.value.as_str()), (PROXY, "http://***@p:1"));
        let with_password = parse_proxy_url("http://user:hunter2@p:1").unwrap();
        assert!(!format!("{with_password:?} {with_password}").contains("hunter2"));
    }

    fn proxy_from(pairs: &[(&str, &str)]) -> Option<Result<ProxyUrl, InvalidValue>> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        proxy(&move |key: &str| owned.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn no_proxy_names_hosts_domains_or_everything() {
        let list = Some("localhost, .corp.example,10.0.0.1:8080,[::1],iot.example.com");
        for bypassed in ["localhost", "a.corp.example", "corp.example", "10.0.0.1", "::1", "IOT.example.com"] {
            assert!(bypasses_proxy(bypassed, list), "{bypassed}");
        }
        for proxied in ["example.com", "xcorp.example", "10.0.0.10", "other.iot.example.co"] {
            assert!(!bypasses_proxy(proxied, list), "{proxied}");
        }
        assert!(bypasses_proxy("anything", Some("*")));
        assert!(!bypasses_proxy("anything", None));
    }

    #[test]
    fn alpn_is_a_comma_separated_list_of_protocol_names() {
        assert_eq!(parse_alpn("x-amzn-mqtt-ca"), Ok(vec!["x-amzn-mqtt-ca".to_owned()]));
        assert_eq!(parse_alpn("mqtt, http/1.1"), Ok(vec!["mqtt".to_owned(), "http/1.1".to_owned()]));
        for bad in ["", "mqtt,", "a b", ",mqtt"] {
            assert_eq!(parse_alpn(bad), Err(EXPECT_ALPN), "{bad}");
        }
    }

    #[test]
    fn broker_urls_that_say_something_else_are_refused() {
        for bad in [
            "broker:1883",
            "http://b:80",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://b:0",
            "mqtt://b:70000",
            "mqtt://b:x",
            "mqtt://user:pw@b:1883",
            "mqtt://b:1883/path",
            "mqtt://[::1",
            "mqtt://b c",
        ] {
            assert_eq!(parse_broker_url(bad), Err(EXPECT_URL), "{bad}");
        }
    }

    #[test]
    fn http_register_urls_are_plain_http_with_an_optional_port_and_path() {
        let http = |host: &str, port, path: &str| Ok(HttpUrl { host: host.into(), port, path: path.into() });
        assert_eq!(parse_http_url("http://engine:8080/api/register"), http("engine", 8080, "/api/register"));
        assert_eq!(parse_http_url("http://engine"), http("engine", 80, "/"));
        assert_eq!(parse_http_url("HTTP://10.0.0.1/r"), http("10.0.0.1", 80, "/r"));
        assert_eq!(parse_http_url("http://[::1]:81/"), http("::1", 81, "/"));
        assert_eq!(parse_http_url("http://[::1]/x"), http("::1", 80, "/x"));
        assert_eq!(parse_http_url("http://[::1]:81/x").unwrap().to_string(), "http://[::1]:81/x");
        for bad in [
            "https://engine/r",
            "engine/r",
            "http://",
            "http:///r",
            "http://u:p@engine/r",
            "http://engine:0/r",
            "http://engine/r?x=1",
            "http://engine/a b",
        ] {
            assert_eq!(parse_http_url(bad), Err(EXPECT_HTTP_URL), "{bad}");
        }
        let err = read_env(&env(&[(HTTP_REGISTER_URL, "https://e/r")])).unwrap_err();
        assert_eq!((err.name, err.expected), (HTTP_REGISTER_URL, EXPECT_HTTP_URL));
    }

    #[test]
    fn durations_take_ms_s_m_h_d_or_plain_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("999999999999999999d").is_err(), "an overflow is an error, not a wrap");
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 45 "), Ok(Duration::from_secs(45)));
        for bad in ["", "0", "0s", "-1", "1.5s", "10w", "s", "ms5", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), Err(EXPECT_DURATION), "{bad}");
        }
    }

    #[test]
    fn keepalive_is_whole_seconds_that_mqtt_can_carry() {
        assert_eq!(parse_keepalive("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_keepalive("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_keepalive("2000ms"), Ok(Duration::from_secs(2)));
        for bad in ["1500ms", "65536", "0", "x"] {
            assert_eq!(parse_keepalive(bad), Err(EXPECT_KEEPALIVE), "{bad}");
        }
    }

    #[test]
    fn an_empty_environment_leaves_everything_to_code_and_defaults() {
        assert_eq!(read_env(&env(&[])), Ok(EnvSettings::default()));
        assert_eq!(read_env(&env(&[(KEEPALIVE, ""), (NODE_NAME, "")])), Ok(EnvSettings::default()));
    }

    #[test]
    fn every_variable_is_read() {
        let settings = read_env(&env(&[
            (BROKER_URL, "mqtt://b:1"),
            (NODE_NAME, "app"),
            (USERNAME, "u"),
            (PASSWORD, "p"),
            (TOPIC_PREFIX, "corp/fleet"),
            (HEARTBEAT_INTERVAL, "1s"),
            (KEEPALIVE, "2"),
            (RECONNECT_MIN, "100ms"),
            (RECONNECT_MAX, "1m"),
            (VERSION, "1.2.3"),
            (LOG_FORMAT, "JSON"),
            (TLS_CA, "/etc/ca.pem"),
            (TLS_CERT, "client.pem"),
            (TLS_KEY, "client.key"),
            (HTTP_REGISTER_URL, "http://engine:8080/register"),
            (HANDLER_TIMEOUT, "2m"),
            (TLS_ALPN, "x-amzn-mqtt-ca"),
            (PROXY, "http://proxy:3128"),
            (NO_PROXY, "localhost"),
        ]))
        .unwrap();
        assert_eq!(
            settings,
            EnvSettings {
                broker_url: Some(url("b", 1)),
                node_name: Some("app".into()),
                username: Some("u".into()),
                password: Some(Secret::new("p")),
                topic_prefix: Some("corp/fleet".into()),
                heartbeat_interval: Some(Duration::from_secs(1)),
                keep_alive: Some(Duration::from_secs(2)),
                reconnect_min: Some(Duration::from_millis(100)),
                reconnect_max: Some(Duration::from_secs(60)),
                version: Some("1.2.3".into()),
                log_format: Some(LogFormat::Json),
                tls_ca: Some("/etc/ca.pem".into()),
                tls_cert: Some("client.pem".into()),
                tls_key: Some("client.key".into()),
                http_register_url: Some(HttpUrl { host: "engine".into(), port: 8080, path: "/register".into() }),
                handler_timeout: Some(Duration::from_secs(120)),
                tls_alpn: Some(vec!["x-amzn-mqtt-ca".into()]),
                proxy: Some(Ok(ProxyUrl { host: "proxy".into(), port: 3128, credentials: None })),
                no_proxy: Some("localhost".into()),
            }
        );
    }

    #[test]
    fn an_invalid_value_names_the_variable_the_value_and_what_was_expected() {
        let err = read_env(&env(&[(HEARTBEAT_INTERVAL, "soon")])).unwrap_err();
        assert_eq!(err, InvalidValue { name: HEARTBEAT_INTERVAL, value: "soon".into(), expected: EXPECT_DURATION });
        assert_eq!(
            err.to_string(),
            "SUBNODE_HEARTBEAT_INTERVAL=\"soon\": expected a positive duration such as 500ms, 30s, 15m, 1h, 7d or a \
             whole number of seconds"
        );
        assert_eq!(read_env(&env(&[(KEEPALIVE, "1.5")])).unwrap_err().name, KEEPALIVE);
        assert_eq!(read_env(&env(&[(RECONNECT_MIN, "0")])).unwrap_err().name, RECONNECT_MIN);
        assert_eq!(read_env(&env(&[(RECONNECT_MAX, "x")])).unwrap_err().name, RECONNECT_MAX);
        assert_eq!(read_env(&env(&[(BROKER_URL, "localhost")])).unwrap_err().name, BROKER_URL);
        assert_eq!(read_env(&env(&[(LOG_FORMAT, "xml")])).unwrap_err().expected, EXPECT_LOG_FORMAT);
    }

    #[test]
    fn host_names_are_made_into_valid_topic_levels() {
        assert_eq!(sanitize_level("server01\n", 64, "localhost"), "server01");
        assert_eq!(sanitize_level("a/b+c#d e", 64, "localhost"), "a-b-c-d-e");
        assert_eq!(sanitize_level("  ", 64, "localhost"), "localhost");
        assert_eq!(sanitize_level(&"h".repeat(100), 64, "localhost").len(), 64);
        // Truncation never splits a character.
        assert_eq!(sanitize_level("ééé", 5, "x"), "éé");
        assert!(!system_hostname(&|_| None).is_empty());
    }

    #[test]
    fn no_debug_output_prints_a_password() {
        let settings = read_env(&env(&[(PASSWORD, "hunter2")])).unwrap();
        assert_eq!(settings.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"), "{settings:?}");
        let dir = std::env::temp_dir().join(format!("subnodesync-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let path = file.display().to_string();
        let settings = read_env(&env(&[(PASSWORD_FILE, &path)])).unwrap();
        assert_eq!(settings.password.as_ref().map(Secret::expose), Some("from-file"));
        let both = read_env(&env(&[(PASSWORD, "x"), (PASSWORD_FILE, &path)])).unwrap_err();
        assert_eq!(both.name, PASSWORD_FILE);
        let missing = read_env(&env(&[(PASSWORD_FILE, "/nonexistent/pw")])).unwrap_err();
        assert_eq!(missing.expected, "a readable UTF-8 file holding the password");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_host_name_is_the_kernels_not_a_fallback() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let want = sanitize_level(kernel.trim(), subnodesync_core::HOSTNAME_MAX, "localhost");
        assert_eq!(system_hostname(&|_| Some("from-env".into())), want);
    }
}
