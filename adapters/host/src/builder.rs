//! [`NodeBuilder`]: every setting, merged as code > environment > default, then the node task.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable};
use futures_util::FutureExt as _;
use subnodesync_core::{check_command_name, Config};
use tokio::sync::{oneshot, Notify};
use tracing::Instrument as _;

use crate::config::{self, BrokerUrl, Secret};
use crate::driver;
use crate::error::{Error, InvalidValue};
use crate::handle::{NodeHandle, Shared};
use crate::handler::{CommandHandler, SettingsHandler};
use crate::inbox::Inbox;
use crate::metrics::{CustomMetrics, MetricValue, Sampler};
use crate::runtime::{Runtime, Timer};
use crate::settings::{BufferSizes, Identity, OwnedNodeVersion, SampleSource, Settings, Timing};
use crate::time::to_std;
use crate::tls::{self, FileSetting, TlsFiles};
use crate::transport::{Connector, Endpoint};

/// How long a handler may run when neither it, the application nor the engine says: long
/// enough for real work, short enough that a hung handler frees its command slot.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where environment variables come from: the process environment unless a test says otherwise.
type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Configures and starts a node. Each setting is taken from code if set here, else from its
/// environment variable, else from the default.
///
/// Applications use their runtime adapter's alias (`subnodesync_tokio::NodeBuilder`,
/// `subnodesync_smol::NodeBuilder`); here the runtime is left generic:
///
/// ```no_run
/// # async fn run<R: subnodesync_host::Runtime>() -> Result<(), subnodesync_host::Error> {
/// use std::time::Duration;
/// use subnodesync_host::{handler_fn, CommandResult, NodeBuilder};
///
/// let node = NodeBuilder::<R>::new("my-app")
///     .broker_url("mqtt://broker.local:1883")
///     .heartbeat_interval(Duration::from_secs(10))
///     .handler(handler_fn("echo", |_ctx, cmd| async move {
///         Ok(CommandResult::ok("echoed").with_data(cmd.parameters))
///     }))
///     .start()
///     .await?;
/// node.set_metric("queue_depth", 7);
/// # Ok(()) }
/// ```
#[must_use]
pub struct NodeBuilder<R> {
    node_name: Option<String>,
    broker_url: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_alpn: Option<Vec<String>>,
    proxy: Option<String>,
    connector: Option<Arc<dyn Connector>>,
    http_register_url: Option<String>,
    topic_prefix: Option<String>,
    heartbeat_interval: Option<Duration>,
    keep_alive: Option<Duration>,
    reconnect_min: Option<Duration>,
    reconnect_max: Option<Duration>,
    version: Option<String>,
    hostname: Option<String>,
    connect_timeout: Option<Duration>,
    stop_timeout: Option<Duration>,
    metadata: Vec<(String, String)>,
    capabilities: Vec<String>,
    node_version: OwnedNodeVersion,
    handlers: Vec<Arc<dyn CommandHandler>>,
    handler_timeout: Option<Duration>,
    sampler: Option<Box<dyn Sampler>>,
    metrics: CustomMetrics,
    stop_on_request: bool,
    settings: Option<Box<dyn SettingsHandler>>,
    buffers: BufferSizes,
    seed: Option<u64>,
    env: Lookup,
    runtime: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for NodeBuilder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("node_name", &self.node_name)
            .field("broker_url", &self.broker_url)
            .field("handlers", &self.handlers.iter().map(|h| h.name().to_owned()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<R> NodeBuilder<R> {
    /// A node named `node_name` (set in code, so `SUBNODE_NODE_NAME` is not consulted).
    pub fn new(node_name: impl Into<String>) -> Self {
        Self { node_name: Some(node_name.into()), ..Self::from_env() }
    }

    /// A node configured by the environment alone, unless setters say otherwise. Without
    /// `SUBNODE_NODE_NAME` the node is named after the executable.
    pub fn from_env() -> Self {
        Self {
            node_name: None,
            broker_url: None,
            username: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_alpn: None,
            proxy: None,
            connector: None,
            http_register_url: None,
            topic_prefix: None,
            heartbeat_interval: None,
            keep_alive: None,
            reconnect_min: None,
            reconnect_max: None,
            version: None,
            hostname: None,
            connect_timeout: None,
            stop_timeout: None,
            metadata: Vec::new(),
            capabilities: Vec::new(),
            node_version: OwnedNodeVersion::default(),
            handlers: Vec::new(),
            handler_timeout: None,
            sampler: None,
            metrics: CustomMetrics::default(),
            stop_on_request: true,
            settings: None,
            buffers: BufferSizes::default(),
            seed: None,
            env: Arc::new(|key| std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())),
            runtime: PhantomData,
        }
    }

    /// The broker: `mqtt://host:port`, `mqtts://host:port` for TLS, `ws://host:port/path` for
    /// MQTT over WebSocket, `wss://host:port/path` for MQTT over WebSocket over TLS (default
    /// `mqtt://localhost:1883`); `SUBNODE_BROKER_URL`.
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.broker_url = Some(url.into());
        self
    }

    /// MQTT username; `SUBNODE_USERNAME`.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// MQTT password; `SUBNODE_PASSWORD`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    /// For `mqtts://`: a PEM file with the CA certificate(s) to trust instead of the system's
    /// store; `SUBNODE_TLS_CA`.
    pub fn tls_ca(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(pem_file.into());
        self
    }

    /// For `mqtts://`: a PEM file with the client certificate (chain) to present; needs
    /// [`tls_key`](Self::tls_key); `SUBNODE_TLS_CERT`.
    pub fn tls_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(pem_file.into());
        self
    }

    /// For `mqtts://`: a PEM file with the client certificate's private key;
    /// `SUBNODE_TLS_KEY`.
    pub fn tls_key(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_key = Some(pem_file.into());
        self
    }

    /// ALPN protocol names to offer in the TLS handshake, such as `x-amzn-mqtt-ca` for MQTT on
    /// port 443 of AWS IoT Core (default: none); `SUBNODE_TLS_ALPN`. Needs `mqtts://` or `wss://`.
    pub fn tls_alpn<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.tls_alpn = Some(protocols.into_iter().map(Into::into).collect());
        self
    }

    /// An HTTP proxy, `http://[user:password@]host[:port]`, that `ws://` and `wss://`
    /// connections tunnel through with `CONNECT`; `SUBNODE_PROXY`, else `HTTPS_PROXY` (hosts in
    /// `NO_PROXY` go direct). Needs `ws://` or `wss://`.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Opens the node's connections with `connector` instead of TCP to the broker URL's host
    /// (and instead of any proxy): a tunnel, a Unix socket, a transport of the application's
    /// own. TLS and WebSocket still go on top as the URL's scheme says.
    pub fn connector(mut self, connector: impl Connector) -> Self {
        self.connector = Some(Arc::new(connector));
        self
    }

    /// Also POST the register message to this `http://host[:port]/path` when the node starts,
    /// retried with the reconnect backoff until the server answers 2xx (or refuses with 4xx),
    /// by a task of its own, so MQTT never waits for it; `SUBNODE_HTTP_REGISTER_URL`.
    pub fn http_register_url(mut self, url: impl Into<String>) -> Self {
        self.http_register_url = Some(url.into());
        self
    }

    /// First topic level(s), default `subnodesync`; `SUBNODE_TOPIC_PREFIX`.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = Some(prefix.into());
        self
    }

    /// Time between heartbeats, default 30 s; `SUBNODE_HEARTBEAT_INTERVAL`.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// MQTT keep-alive, whole seconds from 1 to 65535, default 60 s; `SUBNODE_KEEPALIVE`.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = Some(keep_alive);
        self
    }

    /// First reconnect delay, default 1 s; `SUBNODE_RECONNECT_MIN`.
    pub fn reconnect_min(mut self, delay: Duration) -> Self {
        self.reconnect_min = Some(delay);
        self
    }

    /// Longest reconnect delay, default 15 min; `SUBNODE_RECONNECT_MAX`.
    pub fn reconnect_max(mut self, delay: Duration) -> Self {
        self.reconnect_max = Some(delay);
        self
    }

    /// Application version, default `0.0.0`; `SUBNODE_VERSION`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Host name in the instance id, default this machine's (sanitized to a valid topic level).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// How long opening the transport plus CONNECT/CONNACK may take, default 30 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a clean stop waits for its last PUBACKs, default 5 s.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// Adds a `metadata` pair to the register message.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Adds a capability to announce after `mqtt_control` and `heartbeat`.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Build information for `node_version` (accepts the core's `NodeVersion` too).
    pub fn node_version(mut self, info: impl Into<OwnedNodeVersion>) -> Self {
        self.node_version = info.into();
        self
    }

    /// Registers a command handler under [`CommandHandler::name`].
    pub fn handler(mut self, handler: impl CommandHandler) -> Self {
        self.handlers.push(Arc::new(handler));
        self
    }

    /// The timeout for handlers that do not set their own (default: `SUBNODE_HANDLER_TIMEOUT`,
    /// else 5 minutes). A command's `timeout_ms` from the engine cuts it shorter; a hung handler
    /// never holds a command slot for longer than this.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = Some(timeout);
        self
    }

    /// The process metrics sampler. It runs on the blocking pool, once per heartbeat of this
    /// node. The default is one `subnodesync_sysinfo::SharedSampler` for the whole process:
    /// every node of the process reports the same process, sampled at most once a second.
    pub fn sampler(mut self, sampler: impl Sampler) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// A custom heartbeat metric from the start (update it with
    /// [`NodeHandle::set_metric`](crate::NodeHandle::set_metric)).
    pub fn metric(mut self, name: impl Into<String>, value: impl Into<MetricValue>) -> Self {
        self.metrics.set(name.into(), value.into());
        self
    }

    /// Whether the node stops cleanly by itself when the engine sends `stop` or `restart`
    /// (default `true`). Either way the application sees the request as a
    /// [`LifecycleEvent`](crate::LifecycleEvent); with `false` it calls
    /// [`NodeHandle::stop`](crate::NodeHandle::stop) when it is ready.
    pub fn stop_on_request(mut self, stop: bool) -> Self {
        self.stop_on_request = stop;
        self
    }

    /// Applies the application's desired settings (`subnode config set`): a closure
    /// `|key: &str, value: &Value| -> Result<(), String>` or a [`SettingsHandler`]. Without
    /// one, the node applies only the built-in `heartbeat_interval` and reports every other
    /// setting as rejected.
    pub fn settings(mut self, handler: impl SettingsHandler) -> Self {
        self.settings = Some(Box::new(handler));
        self
    }

    /// Buffer sizes; see [`BufferSizes`].
    pub fn buffer_sizes(mut self, sizes: BufferSizes) -> Self {
        self.buffers = sizes;
        self
    }

    /// The seed for reconnect jitter, default one from the OS. One seed replays one run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reads `SUBNODE_*` settings from `lookup` instead of the process environment (for tests,
    /// or configuration kept elsewhere). `|_| None` ignores the environment entirely.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// Merges code, environment and defaults, and checks what the core does not.
    fn resolve(self) -> Result<Settings, Error> {
        let env = config::read_env(&*self.env).map_err(Error::Env)?;
        // The core's defaults, so that every adapter and the core agree on them.
        let defaults = Config::new("", "", 0);
        let mut src = Sources::default();
        let node_name = src
            .pick(self.node_name, env.node_name, "node_name", config::NODE_NAME)
            .unwrap_or_else(config::default_node_name);
        let version =
            src.pick(self.version, env.version, "version", config::VERSION).unwrap_or_else(|| defaults.version.into());
        let topic_prefix = src
            .pick(self.topic_prefix, env.topic_prefix, "topic_prefix", config::TOPIC_PREFIX)
            .unwrap_or_else(|| defaults.topic_prefix.into());
        let username = src.pick(self.username, env.username, "username", config::USERNAME);
        let password = src.pick(self.password, env.password, "password", config::PASSWORD);
        let heartbeat_interval = src
            .pick(self.heartbeat_interval, env.heartbeat_interval, "heartbeat_interval", config::HEARTBEAT_INTERVAL)
            .unwrap_or(to_std(defaults.heartbeat_interval));
        let keep_alive = src
            .pick(self.keep_alive, env.keep_alive, "keep_alive", config::KEEPALIVE)
            .unwrap_or(to_std(defaults.keep_alive));
        let reconnect_min = src
            .pick(self.reconnect_min, env.reconnect_min, "reconnect_min", config::RECONNECT_MIN)
            .unwrap_or(to_std(defaults.reconnect_min));
        let reconnect_max = src
            .pick(self.reconnect_max, env.reconnect_max, "reconnect_max", config::RECONNECT_MAX)
            .unwrap_or(to_std(defaults.reconnect_max));

        let broker = match (self.broker_url, env.broker_url) {
            (Some(url), _) => {
                let parsed = config::parse_broker_url(&url)
                    .map_err(|expected| Error::Setting(InvalidValue { name: "broker_url", value: url, expected }))?;
                (parsed, "broker_url")
            }
            (None, Some(url)) => (url, config::BROKER_URL),
            (None, None) => (BrokerUrl::localhost(), "broker_url"),
        };
        let file =
            |code: Option<PathBuf>, env: Option<PathBuf>, field: &'static str, var: &'static str| match (code, env) {
                (Some(path), _) => Some(FileSetting { path, name: field }),
                (None, Some(path)) => Some(FileSetting { path, name: var }),
                (None, None) => None,
            };
        let files = TlsFiles {
            ca: file(self.tls_ca, env.tls_ca, "tls_ca", config::TLS_CA),
            cert: file(self.tls_cert, env.tls_cert, "tls_cert", config::TLS_CERT),
            key: file(self.tls_key, env.tls_key, "tls_key", config::TLS_KEY),
        };
        let (broker, url_name) = broker;
        let alpn = match (self.tls_alpn, env.tls_alpn) {
            (Some(alpn), _) => {
                let text = alpn.join(",");
                let checked = config::parse_alpn(&text)
                    .map_err(|expected| Error::Setting(InvalidValue { name: "tls_alpn", value: text, expected }))?;
                Some((checked, "tls_alpn"))
            }
            (None, env) => env.map(|alpn| (alpn, config::TLS_ALPN)),
        };
        let tls = if broker.scheme.is_tls() {
            Some(tls::client(&files, &broker.host, url_name, alpn.as_ref().map_or(&[], |(a, _)| a))?)
        } else {
            match files.first_name().or(alpn.map(|(_, name)| name)) {
                // Certificates for a plain connection: the URL or the files are a mistake.
                Some(name) => {
                    let secure = if broker.scheme.is_websocket() { "wss://" } else { "mqtts://" };
                    let reason = format!("TLS settings are set but the broker URL is {broker}; use {secure}");
                    return Err(Error::Tls { name, reason });
                }
                None => None,
            }
        };
        let proxy = match (self.proxy, env.proxy) {
            (Some(url), _) => {
                let parsed = config::parse_proxy_url(&url).map_err(|expected| {
                    let value = if url.contains('@') { "http://***@...".to_owned() } else { url.clone() };
                    Error::Setting(InvalidValue { name: "proxy", value, expected })
                })?;
                if !broker.scheme.is_websocket() {
                    let expected = "a proxy only with a ws:// or wss:// broker URL";
                    return Err(Error::Setting(InvalidValue { name: "proxy", value: broker.to_string(), expected }));
                }
                Some(parsed)
            }
            // Checked only now that it would be used.
            (None, Some(env_proxy)) if config::uses_proxy(&broker, env.no_proxy.as_deref()) => {
                Some(env_proxy.map_err(Error::Env)?)
            }
            (None, _) => None,
        };
        let endpoint = Endpoint { url: broker, tls, proxy, connector: self.connector };

        let http_register_url = match (self.http_register_url, env.http_register_url) {
            (Some(url), _) => Some(config::parse_http_url(&url).map_err(|expected| {
                Error::Setting(InvalidValue { name: "http_register_url", value: url, expected })
            })?),
            (None, env) => env,
        };

        let mut handlers = HashMap::new();
        for handler in self.handlers {
            let name = handler.name().to_owned();
            check_command_name(&name).map_err(|e| Error::HandlerName { name: name.clone(), reason: e.as_str() })?;
            if handlers.insert(name.clone(), handler).is_some() {
                return Err(Error::HandlerName { name, reason: "another handler has this name" });
            }
        }
        let hostname = match self.hostname {
            Some(h) => h,
            None => config::system_hostname(&*self.env),
        };
        Ok(Settings {
            identity: Identity {
                node_name,
                hostname,
                pid: std::process::id(),
                version,
                topic_prefix,
                username,
                password,
                metadata: self.metadata,
                capabilities: self.capabilities,
                node_version: self.node_version,
            },
            timing: Timing {
                keep_alive,
                heartbeat_interval,
                reconnect_min,
                reconnect_max,
                connect_timeout: self.connect_timeout.unwrap_or(to_std(defaults.connect_timeout)),
                stop_timeout: self.stop_timeout.unwrap_or(to_std(defaults.stop_timeout)),
            },
            endpoint,
            http_register_url,
            handlers,
            handler_timeout: src
                .pick(self.handler_timeout, env.handler_timeout, "handler_timeout", config::HANDLER_TIMEOUT)
                .unwrap_or(DEFAULT_HANDLER_TIMEOUT),
            sampler: self.sampler.map_or(SampleSource::Shared, |own| SampleSource::Own(Some(own))),
            settings: self.settings,
            metrics: self.metrics,
            stop_on_request: self.stop_on_request,
            buffers: self.buffers,
            seed: self.seed.unwrap_or_else(os_seed),
            sources: src.0,
        })
    }
}

impl<R: Runtime> NodeBuilder<R> {
    /// Checks every setting, then starts the node task: it connects, registers, heartbeats,
    /// runs commands and reconnects until stopped. Returns as soon as the configuration is
    /// accepted, without waiting for the broker. Must be called within the runtime `R`.
    pub async fn start(self) -> Result<NodeHandle, Error> {
        let settings = self.resolve()?;
        if matches!(settings.sampler, SampleSource::Shared) {
            driver::prime_shared_sample::<R>().await;
        }
        let instance_id =
            format!("{}-{}-{}", settings.identity.node_name, settings.identity.hostname, settings.identity.pid);
        let tx = Arc::new(Inbox::default());
        let shared = Arc::new(Shared {
            node_name: settings.identity.node_name.clone(),
            instance_id: instance_id.clone(),
            events: Mutex::default(),
            connected: AtomicBool::new(false),
            stop_timeout: settings.timing.stop_timeout,
            task: Mutex::new(None),
            timer: Timer::of::<R>(),
            stopped: Mutex::new(None),
            stopped_notify: Notify::new(),
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let span = tracing::info_span!("node", node_name = %settings.identity.node_name, instance_id = %instance_id);
        let io = driver::Io { inbox: tx.clone(), shared: shared.clone(), ready: ready_tx };
        let (abort, registration) = AbortHandle::new_pair();
        *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(abort);
        R::spawn(Abortable::new(driver::run::<R>(Box::new(settings), io), registration).map(drop).instrument(span));
        ready_rx.await.map_err(|_| Error::TaskEnded)??;
        Ok(NodeHandle { shared, tx })
    }
}

/// Which core fields took their value from which environment variable.
#[derive(Debug, Default)]
struct Sources(Vec<(&'static str, &'static str)>);

impl Sources {
    /// Code if set, else the environment (remembering that it did), else `None`.
    fn pick<T>(&mut self, code: Option<T>, env: Option<T>, field: &'static str, var: &'static str) -> Option<T> {
        match (code, env) {
            (Some(v), _) => Some(v),
            (None, Some(v)) => {
                self.0.push((field, var));
                Some(v)
            }
            (None, None) => None,
        }
    }
}

/// A seed from the OS without a crate: std's hash keys are random per process.
fn os_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandResult;
    use crate::handler::handler_fn;
    use crate::settings::variable_for;
    use subnodesync_core::ConfigError;

    fn builder(env: &'static [(&'static str, &'static str)]) -> NodeBuilder<()> {
        NodeBuilder::new("app")
            .env(move |key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
            .hostname("host")
    }

    fn noop(name: &str) -> impl CommandHandler {
        handler_fn(name.to_owned(), |_, _| async { Ok(CommandResult::ok("")) })
    }

    #[test]
    fn code_beats_environment_beats_default() {
        let s =
            builder(&[("SUBNODE_KEEPALIVE", "5"), ("SUBNODE_HEARTBEAT_INTERVAL", "2s"), ("SUBNODE_NODE_NAME", "env")])
                .heartbeat_interval(Duration::from_secs(7))
                .resolve()
                .unwrap();
        assert_eq!(s.identity.node_name, "app");
        assert_eq!(s.timing.heartbeat_interval, Duration::from_secs(7));
        assert_eq!(s.timing.keep_alive, Duration::from_secs(5));
        assert_eq!(s.timing.reconnect_max, Duration::from_secs(900));
        assert_eq!(s.handler_timeout, DEFAULT_HANDLER_TIMEOUT, "a hung handler is never left running forever");
        assert_eq!(s.endpoint.url.to_string(), "mqtt://localhost:1883");
        assert_eq!(s.sources, [("keep_alive", "SUBNODE_KEEPALIVE")]);
        let from_env = NodeBuilder::<()>::from_env().env(|k| (k == "SUBNODE_NODE_NAME").then(|| "env".into()));
        assert_eq!(from_env.resolve().unwrap().identity.node_name, "env");
    }

    #[test]
    fn an_invalid_environment_value_is_an_error_naming_the_variable() {
        let err = builder(&[("SUBNODE_RECONNECT_MAX", "forever")]).resolve().unwrap_err();
        assert!(matches!(&err, Error::Env(v) if v.name == "SUBNODE_RECONNECT_MAX"), "{err}");
        assert!(err
            .to_string()
            .starts_with("invalid environment variable SUBNODE_RECONNECT_MAX=\"forever\": expected"));
    }

    fn tls_error(err: Error) -> (&'static str, String) {
        match err {
            Error::Tls { name, reason } => (name, reason),
            other => panic!("not a TLS error: {other}"),
        }
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_errors_naming_the_setting_and_the_file() {
        let (name, reason) = tls_error(
            builder(&[("SUBNODE_TLS_CA", "/nonexistent/ca.pem")]).broker_url("mqtts://b").resolve().unwrap_err(),
        );
        assert_eq!(name, "SUBNODE_TLS_CA");
        assert!(reason.starts_with("/nonexistent/ca.pem: "), "{reason}");
        let (name, _) = tls_error(builder(&[]).broker_url("mqtts://b").tls_ca("/nonexistent").resolve().unwrap_err());
        assert_eq!(name, "tls_ca");

        // A file with no certificate in it.
        let empty = std::env::temp_dir().join(format!("subnodesync-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let (name, reason) = tls_error(builder(&[]).broker_url("mqtts://b").tls_ca(&empty).resolve().unwrap_err());
        let _ = std::fs::remove_file(&empty);
        assert_eq!(name, "tls_ca");
        assert!(reason.ends_with("no CERTIFICATE block in this PEM file"), "{reason}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_tls_files_need_mqtts() {
        let (name, reason) =
            tls_error(builder(&[("SUBNODE_TLS_CERT", "c.pem")]).broker_url("mqtts://b").resolve().unwrap_err());
        assert_eq!((name, reason.as_str()), ("SUBNODE_TLS_CERT", "a client certificate needs its private key too"));
        let (name, _) = tls_error(builder(&[]).broker_url("mqtts://b").tls_key("k.pem").resolve().unwrap_err());
        assert_eq!(name, "tls_key");
        let (name, reason) = tls_error(builder(&[("SUBNODE_TLS_CA", "ca.pem")]).resolve().unwrap_err());
        assert_eq!(name, "SUBNODE_TLS_CA");
        assert_eq!(reason, "TLS settings are set but the broker URL is mqtt://localhost:1883; use mqtts://");
        let (name, reason) =
            tls_error(builder(&[("SUBNODE_TLS_ALPN", "mqtt")]).broker_url("ws://b/").resolve().unwrap_err());
        assert_eq!(name, "SUBNODE_TLS_ALPN");
        assert_eq!(reason, "TLS settings are set but the broker URL is ws://b:80/; use wss://");
        let err = builder(&[]).broker_url("b:1883").resolve().unwrap_err();
        assert!(matches!(&err, Error::Setting(v) if v.name == "broker_url"), "{err}");
    }

    #[test]
    fn alpn_is_offered_on_tls_connections_from_code_or_environment() {
        let alpn = |s: Settings| s.endpoint.tls.map(|t| t.config.alpn_protocols.clone());
        let s = builder(&[("SUBNODE_TLS_ALPN", "x-amzn-mqtt-ca")]).broker_url("mqtts://b:443").resolve().unwrap();
        assert_eq!(alpn(s), Some(vec![b"x-amzn-mqtt-ca".to_vec()]));
        let s = builder(&[("SUBNODE_TLS_ALPN", "a")]).broker_url("wss://b/mqtt").tls_alpn(["mqtt", "b"]).resolve();
        assert_eq!(alpn(s.unwrap()), Some(vec![b"mqtt".to_vec(), b"b".to_vec()]));
        assert_eq!(alpn(builder(&[]).broker_url("wss://b").resolve().unwrap()), Some(vec![]));
        let err = builder(&[]).broker_url("mqtts://b").tls_alpn([""]).resolve().unwrap_err();
        assert!(matches!(&err, Error::Setting(v) if v.name == "tls_alpn"), "{err}");
    }

    #[test]
    fn the_proxy_serves_websocket_brokers_not_in_no_proxy() {
        let proxy = |s: Settings| s.endpoint.proxy.map(|p| p.to_string());
        let env = &[("HTTPS_PROXY", "http://corp:3128"), ("NO_PROXY", "localhost,.internal")];
        assert_eq!(
            proxy(builder(env).broker_url("wss://cloud.example/mqtt").resolve().unwrap()).as_deref(),
            Some("http://corp:3128")
        );
        assert_eq!(proxy(builder(env).broker_url("ws://b.internal/").resolve().unwrap()), None);
        assert_eq!(proxy(builder(env).broker_url("mqtts://cloud.example").resolve().unwrap()), None);
        let s = builder(env).broker_url("ws://b.internal/").proxy("http://u:p@mine:8080").resolve().unwrap();
        assert_eq!(proxy(s).as_deref(), Some("http://mine:8080"), "set in code, the proxy is always used");
        let env = &[("SUBNODE_PROXY", "http://own:1"), ("HTTPS_PROXY", "http://corp:3128")];
        assert_eq!(proxy(builder(env).broker_url("ws://b/").resolve().unwrap()).as_deref(), Some("http://own:1"));
        let err = builder(&[]).broker_url("mqtt://b").proxy("http://p:1").resolve().unwrap_err();
        assert!(matches!(&err, Error::Setting(v) if v.name == "proxy"), "{err}");
        // A proxy variable the node cannot use stops it only if it would use it.
        let env = &[("HTTPS_PROXY", "socks5://p:1")];
        let err = builder(env).broker_url("wss://b/").resolve().unwrap_err();
        assert!(matches!(&err, Error::Env(v) if v.name == "HTTPS_PROXY"), "{err}");
        assert!(builder(env).broker_url("mqtts://b").resolve().is_ok());
        assert!(builder(&[("SUBNODE_PROXY", "socks5://p:1")]).resolve().is_ok(), "the default broker is mqtt://");
    }

    #[test]
    fn the_http_register_url_comes_from_code_or_environment_and_is_checked() {
        let s = builder(&[("SUBNODE_HTTP_REGISTER_URL", "http://engine:8080/r")]).resolve().unwrap();
        assert_eq!(s.http_register_url.map(|u| u.to_string()).as_deref(), Some("http://engine:8080/r"));
        let s = builder(&[("SUBNODE_HTTP_REGISTER_URL", "http://env/r")]).http_register_url("http://code/r").resolve();
        assert_eq!(s.unwrap().http_register_url.map(|u| u.host).as_deref(), Some("code"));
        assert!(builder(&[]).resolve().unwrap().http_register_url.is_none());
        let err = builder(&[]).http_register_url("https://engine/r").resolve().unwrap_err();
        assert!(matches!(&err, Error::Setting(v) if v.name == "http_register_url"), "{err}");
        let err = builder(&[("SUBNODE_HTTP_REGISTER_URL", "engine/r")]).resolve().unwrap_err();
        assert!(matches!(&err, Error::Env(v) if v.name == "SUBNODE_HTTP_REGISTER_URL"), "{err}");
    }

    #[test]
    fn handler_names_the_engine_cannot_reach_are_refused() {
        for (name, reason) in [
            ("ping", "a built-in command has this name"),
            ("", "the name is empty"),
            ("a\"b", "command names are printable ASCII without \" \\ / < > &"),
            ("abcdefghijklmnopqrstuvwxyz0123456", "command names are at most 32 bytes"),
        ] {
            let err = builder(&[]).handler(noop(name)).resolve().unwrap_err();
            assert!(matches!(&err, Error::HandlerName { reason: r, .. } if *r == reason), "{name}: {err}");
        }
        let err = builder(&[]).handler(noop("echo")).handler(noop("echo")).resolve().unwrap_err();
        assert!(matches!(err, Error::HandlerName { .. }));
    }

    #[test]
    fn a_core_refusal_names_the_variable_the_value_came_from() {
        let sources = [("node_name", "SUBNODE_NODE_NAME"), ("reconnect_max", "SUBNODE_RECONNECT_MAX")];
        assert_eq!(variable_for(&ConfigError::InvalidCharacter("node_name"), &sources), Some("SUBNODE_NODE_NAME"));
        assert_eq!(variable_for(&ConfigError::BackoffRange, &sources), Some("SUBNODE_RECONNECT_MAX"));
        assert_eq!(variable_for(&ConfigError::Empty("hostname"), &sources), None);
    }

    #[test]
    fn the_default_platform_uses_go_spelling() {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(OwnedNodeVersion::default().platform, "linux/amd64");
        }
    }
}
