//! [`Engine`]: one MQTT connection that ingests the fleet's messages into the registry, sends
//! commands and collects their results.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, MqttOptions, Proxy, ProxyAuth, ProxyType, QoS, TlsConfiguration, Transport};
use subnodesync_core::MAX_REMAINING_LEN;
use subnodesync_core::{to_json, ControlMessage};
use subnodesync_core::{Object, Timestamp};
use subnodesync_host::config::{uses_proxy, Scheme, Secret};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::desired::Desired;
use crate::error::{Error, IngestError};
use crate::event::FleetEvent;
use crate::persist::Backlog;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::{Ingested, Instance, Limits, Registry};
use crate::send::{self, Route, SendOutcome, SendRequest, Verdict};
use crate::stats::{Counters, IngestStats};
use crate::store::{Database, HistoryQuery};
use crate::tasks;

/// The largest message the engine reads: far above any register, heartbeat, status or result a
/// node sends (a node's own buffers are smaller). Larger ones are counted and skipped.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// How long `shutdown` keeps trying to write what is queued when the database refuses.
pub const SHUTDOWN_FLUSH_FOR: Duration = Duration::from_secs(30);

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks a mutex, carrying on after a panic elsewhere: every critical section leaves its data
/// consistent, so a poisoned lock holds nothing half-done.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the engine's handle and its background tasks share.
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) store: Mutex<Database>,
    /// Rows accepted and not yet written.
    pub(crate) backlog: Mutex<Backlog>,
    /// Requests being waited for, by request id.
    waiters: Mutex<HashMap<String, mpsc::UnboundedSender<ResultRecord>>>,
    pub(crate) events: broadcast::Sender<FleetEvent>,
    counters: Counters,
    /// When the last retained message or SUBACK arrived, and whether every SUBACK has.
    pub(crate) synced: watch::Sender<(bool, Instant)>,
    pub(crate) connected: AtomicBool,
    /// The last flush failed: the ticker retries on its back-off, and reads do not flush.
    pub(crate) database_failing: AtomicBool,
    /// Another writer has changed instances in the database: this engine's own ingest is not
    /// the whole fleet's.
    pub(crate) shared_database: AtomicBool,
    /// When other writers' changes were last read, Unix milliseconds.
    pub(crate) refreshed_ms: AtomicI64,
    /// Why the broker could not be reached, until the first connection succeeds.
    pub(crate) problem: watch::Sender<Option<String>>,
    /// `shutdown` began: the connection's end is ours, not news.
    pub(crate) stopping: AtomicBool,
    /// Desired documents and reports, as the broker holds them.
    pub(crate) desired: Desired,
}

impl Shared {
    /// Sends `events` to whoever listens.
    pub(crate) fn publish_events(&self, events: Vec<FleetEvent>) {
        for e in events {
            // Nobody listening is fine.
            let _ = self.events.send(e);
        }
    }

    /// Ingests one message from the broker.
    pub(crate) fn on_publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        if retain {
            self.synced.send_modify(|(_, at)| *at = Instant::now());
        }
        if payload.len() > MAX_PAYLOAD {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic, bytes = payload.len(), "message larger than the engine reads: skipped");
            return;
        }
        if let Some(ingested) = self.desired.on_publish(&self.config.topic_prefix, topic, payload) {
            if let Err(e) = ingested {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(topic, error = %e, "desired-state message not ingested");
            }
            return;
        }
        let now = now_ms();
        let ingested = lock(&self.registry).ingest(&self.config.topic_prefix, topic, payload, now, retain);
        if topic.ends_with("/heartbeat") && ingested.is_ok() {
            self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
        match ingested {
            Ok(Ingested::Quiet) => {}
            Ok(Ingested::Events(events)) => self.publish_events(events),
            Ok(Ingested::Result(r)) => {
                if let Some(waiter) = lock(&self.waiters).get(&r.request_id) {
                    let _ = waiter.send(r.clone());
                }
                lock(&self.backlog).result(r.clone());
                let _ = self.events.send(FleetEvent::Result(r));
            }
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                // A full registry is an operator's matter: said once, counted always.
                if e == IngestError::RegistryFull && lock(&self.registry).refusals().registry_full == 1 {
                    let max = self.config.max_instances;
                    tracing::warn!(topic, max, "{e}: messages about new instances are refused until some are pruned");
                } else {
                    tracing::debug!(topic, error = %e, "message not ingested");
                }
            }
        }
    }

    /// Writes changed instances and queued rows, keeping them queued if that fails, then takes
    /// in what other writers of the database changed. Copies out under the registry lock and
    /// writes outside it, so ingest never waits for the disk.
    pub(crate) fn flush(&self) -> Result<usize, Error> {
        let rows = match crate::persist::flush(&self.store, &self.registry, &self.backlog) {
            Ok(rows) => rows,
            Err(e) => {
                self.counters.flush_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.counters.rows_written.fetch_add(u64::try_from(rows).unwrap_or(u64::MAX), Ordering::Relaxed);
        match crate::persist::refresh(&self.store, &self.registry) {
            Ok((rows, events)) => {
                self.refreshed_ms.store(now_ms(), Ordering::Relaxed);
                if rows > 0 {
                    self.shared_database.store(true, Ordering::Relaxed);
                }
                self.publish_events(events);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read what other engines wrote; trying again next flush"),
        }
        Ok(rows)
    }
}

/// The management engine: a registry of the fleet kept up to date from MQTT and saved in
/// SQLite, and the way to send commands.
///
/// ```no_run
/// # async fn run() -> Result<(), subnodesync_engine::Error> {
/// use subnodesync_engine::{Engine, EngineConfig, SendRequest, Target};
///
/// let engine = Engine::start(EngineConfig::from_env()?).await?;
/// engine.wait_synced(std::time::Duration::from_secs(2)).await;
/// let outcome = engine.send(&SendRequest::new(Target::Node("my-app".into()), "ping")).await?;
/// println!("{} of {} answered", outcome.results.len(), outcome.expected.len());
/// engine.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: AsyncClient,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("client_id", &self.shared.config.client_id).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the database, loads the registry and connects (in the background: the engine
    /// retries until the broker answers).
    pub async fn start(config: EngineConfig) -> Result<Self, Error> {
        // TLS files are read now, so a bad one is an error from `start`, not a reconnect loop.
        let tls = if config.broker.scheme.is_tls() {
            let tls = subnodesync_host::tls_client_config_with_alpn(
                config.tls_ca.clone(),
                config.tls_cert.clone(),
                config.tls_key.clone(),
                &config.tls_alpn,
                &config.broker.host,
            );
            Some(tls.map_err(|e| Error::Tls(e.to_string()))?)
        } else {
            None
        };
        // A proxy variable is checked only when the broker needs the proxy, and before
        // anything is opened.
        let proxy = match &config.proxy {
            Some(proxy) if uses_proxy(&config.broker, config.no_proxy.as_deref()) => {
                Some(proxy.clone().map_err(Error::Setting)?)
            }
            _ => None,
        };
        let db = config.db.clone();
        let (store, instances) = tokio::task::spawn_blocking(move || {
            let mut store = Database::open(&db)?;
            let instances = store.load_instances()?;
            Ok::<_, Error>((store, instances))
        })
        .await
        .map_err(|_| Error::Stopped)??;
        let mut registry = Registry::from_instances(instances);
        registry.heartbeat_events = config.heartbeat_events;
        registry.limits = Limits { max_instances: config.max_instances, max_stored_json: config.max_stored_json };
        registry.listening_from(now_ms());

        // Over WebSocket rumqttc takes the whole URL as the address (and ignores the port).
        let address =
            if config.broker.scheme.is_websocket() { config.broker.to_string() } else { config.broker.host.clone() };
        let mut options = MqttOptions::new(config.client_id.clone(), address, config.broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        // Any packet MQTT can carry is taken off the connection (and skipped if too large to
        // read): refusing one would drop the connection, and a retained one would come back at
        // every reconnect. The broker's own limit is what bounds memory (see the README).
        options.set_max_packet_size(MAX_REMAINING_LEN, 256 * 1024);
        options.set_inflight(100);
        options.set_transport(match (config.broker.scheme, tls) {
            (Scheme::Mqtts, Some(tls)) => Transport::tls_with_config(TlsConfiguration::Rustls(tls)),
            (Scheme::Wss, Some(tls)) => Transport::wss_with_config(TlsConfiguration::Rustls(tls)),
            (Scheme::Ws, _) => Transport::Ws,
            _ => Transport::Tcp,
        });
        if let Some(proxy) = proxy {
            let auth = match proxy.credentials.as_ref().and_then(|c| c.expose().split_once(':')) {
                Some((user, password)) => ProxyAuth::Basic { username: user.into(), password: password.into() },
                None => ProxyAuth::None,
            };
            options.set_proxy(Proxy { ty: ProxyType::Http, auth, addr: proxy.host.clone(), port: proxy.port });
        }
        if let Some(user) = &config.username {
            options.set_credentials(user.clone(), config.password.as_ref().map(Secret::expose).unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let (events, _) = broadcast::channel(4096);
        let (synced, _) = watch::channel((false, Instant::now()));
        let (problem, _) = watch::channel(None);
        let desired = Desired::new(config.max_instances);
        let shared = Arc::new(Shared {
            desired,
            config,
            registry: Mutex::new(registry),
            store: Mutex::new(store),
            backlog: Mutex::new(Backlog::default()),
            waiters: Mutex::new(HashMap::new()),
            events,
            counters: Counters::default(),
            synced,
            problem,
            connected: AtomicBool::new(false),
            database_failing: AtomicBool::new(false),
            shared_database: AtomicBool::new(false),
            refreshed_ms: AtomicI64::new(now_ms()),
            stopping: AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(tasks::run_connection(shared.clone(), client.clone(), eventloop)),
            tokio::spawn(tasks::run_ticker(shared.clone(), client.clone())),
        ];
        Ok(Self { shared, client, tasks })
    }

    /// The topic filters the engine subscribes to.
    pub fn filters(config: &EngineConfig) -> Vec<String> {
        let p = &config.topic_prefix;
        let mut filters = vec![format!("{p}/+/+/register"), format!("{p}/+/+/status"), format!("{p}/+/+/result")];
        // Desired state (PROTOCOL.md §15): retained, and every engine needs all of it.
        filters.extend([format!("{p}/+/desired"), format!("{p}/+/+/desired"), format!("{p}/+/+/reported")]);
        if config.heartbeats {
            filters.push(match &config.share_group {
                // Only heartbeats are shared: they are the volume. Register and status are
                // retained and few, and results must reach the engine that waits for them.
                Some(group) => format!("$share/{group}/{p}/+/+/heartbeat"),
                None => format!("{p}/+/+/heartbeat"),
            });
        }
        filters
    }

    /// Waits until the subscriptions are in place and the broker's retained register and status
    /// messages have stopped arriving (none for 300 ms), or `max` has passed; true if synced.
    /// Returns false at once when the broker cannot be reached at all (refused the connection,
    /// the credentials or the TLS handshake): [`connection_problem`](Self::connection_problem)
    /// says why.
    pub async fn wait_synced(&self, max: Duration) -> bool {
        let quiet = Duration::from_millis(300);
        let deadline = Instant::now() + max;
        let mut rx = self.shared.synced.subscribe();
        let mut problem = self.shared.problem.subscribe();
        loop {
            if problem.borrow_and_update().is_some() {
                return false;
            }
            let (subscribed, last) = *rx.borrow_and_update();
            if subscribed && last + quiet <= Instant::now() {
                return true;
            }
            let wake = if subscribed { (last + quiet).min(deadline) } else { deadline };
            if Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = problem.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Why the broker could not be reached (the connection refused, bad credentials, not
    /// authorized, a TLS failure), while the engine has never been connected; `None` once it
    /// has been, or while the first attempt is still under way.
    pub fn connection_problem(&self) -> Option<String> {
        self.shared.problem.borrow().clone()
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// A snapshot of the registry.
    pub fn instances(&self) -> Vec<Instance> {
        lock(&self.shared.registry).instances().to_vec()
    }

    /// A copy of one instance.
    pub fn instance(&self, instance_id: &str) -> Option<Instance> {
        lock(&self.shared.registry).get(instance_id).cloned()
    }

    /// Calls `visit` with the registry, held locked meanwhile (ingest waits): for reading many
    /// instances without copying them all. Keep it short.
    pub fn with_registry<T>(&self, visit: impl FnOnce(&Registry) -> T) -> T {
        visit(&lock(&self.shared.registry))
    }

    /// Fleet events from now on. A receiver more than 4096 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<FleetEvent> {
        self.shared.events.subscribe()
    }

    /// Counters since start.
    pub fn stats(&self) -> IngestStats {
        let (refusals, dirty) = {
            let registry = lock(&self.shared.registry);
            (registry.refusals(), registry.dirty_count())
        };
        let backlog = lock(&self.shared.backlog);
        self.shared.counters.snapshot(refusals, backlog.results_not_stored, backlog.rows() + dirty)
    }

    /// Writes the registry and everything queued to the database now; on an error it all stays
    /// queued for the next write.
    pub async fn flush(&self) -> Result<(), Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.flush()).await.map_err(|_| Error::Stopped)?.map(drop)
    }

    /// The latest `limit` commands sent before the request `before` (or the latest of all),
    /// with their results, newest first.
    pub async fn history(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        self.flush().await?;
        self.read_history(HistoryQuery { before: before.map(str::to_owned), ..HistoryQuery::latest(limit) }).await
    }

    /// The commands `query` selects, with their results, after writing what is queued, unless the
    /// database is refusing writes: then the rows still queued are not in the answer, and the
    /// read does not wait on the database or cut short the retries' back-off.
    pub async fn query_history(&self, query: HistoryQuery) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        if !self.shared.database_failing.load(Ordering::Relaxed) {
            if let Err(e) = self.flush().await {
                tracing::debug!(error = %e, "reading the history without the rows still queued");
            }
        }
        self.read_history(query).await
    }

    /// The commands `query` selects, as the database has them.
    async fn read_history(&self, query: HistoryQuery) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || lock(&shared.store).query_history(&query))
            .await
            .map_err(|_| Error::Stopped)?
    }

    /// Removes `lost`, `offline` and `missing` instances whose status is older than `age`,
    /// clearing their retained register, status, report and instance desired document; returns their ids.
    pub async fn prune(&self, age: Duration) -> Result<Vec<String>, Error> {
        Ok(tasks::prune(&self.shared, &self.client, age))
    }

    /// Sends a request and waits for its results.
    pub async fn send(&self, request: &SendRequest) -> Result<SendOutcome, Error> {
        self.send_with_progress(request, |_, _| {}).await
    }

    /// [`send`](Self::send), calling `progress(result, answered)` for every result and
    /// progress update as it arrives.
    pub async fn send_with_progress(
        &self,
        request: &SendRequest,
        progress: impl FnMut(&ResultRecord, usize),
    ) -> Result<SendOutcome, Error> {
        self.send_routed(request, None, progress).await
    }

    /// The topic prefix the engine uses.
    pub(crate) fn topic_prefix(&self) -> &str {
        &self.shared.config.topic_prefix
    }

    /// [`send_with_progress`](Self::send_with_progress) along `route` (a rollout's wave), or
    /// along the route the registry gives the request's target if `None`.
    pub(crate) async fn send_routed(
        &self,
        request: &SendRequest,
        route: Option<Route>,
        mut progress: impl FnMut(&ResultRecord, usize),
    ) -> Result<SendOutcome, Error> {
        let sent_parameters = send::checked_parameters(request)?;
        let parameters =
            Object::parse(sent_parameters.as_bytes()).map_err(|e| Error::InvalidParameters(e.to_string()))?;
        let prefix = &self.shared.config.topic_prefix;
        let route = match route {
            Some(route) => route,
            None => Route::resolve(&request.target, &lock(&self.shared.registry), prefix)?,
        };
        let Route { topics, expected, broadcast, target, wave } = route;
        let request_id = send::request_id(request.request_id.as_deref())?;
        let control = ControlMessage {
            command: &request.command,
            timestamp: Timestamp::from_unix_secs(u64::try_from(now_ms() / 1000).unwrap_or(0)),
            request_id: &request_id,
            parameters: Some(parameters),
        };
        let mut buf = vec![0u8; parameters.as_raw().as_str().len() + request.command.len() * 2 + 256];
        let n = to_json(&control, &mut buf).map_err(|_| Error::InvalidCommand("not representable"))?;
        buf.truncate(n);
        // Larger than any engine reads, and above the MQTT client's own limit, which would drop
        // the connection (and everyone's queued requests) rather than refuse it.
        if n > MAX_PAYLOAD {
            return Err(Error::InvalidParameters(format!("the command is {n} bytes; at most {MAX_PAYLOAD} are sent")));
        }

        let (tx, mut rx) = mpsc::unbounded_channel();
        match lock(&self.shared.waiters).entry(request_id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                return Err(Error::InvalidCommand("the request id is in use by a request still waiting"));
            }
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(tx),
        };
        // Whatever happens below, stop routing results to this request.
        struct Unregister<'a>(&'a Shared, String);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                lock(&self.0.waiters).remove(&self.1);
            }
        }
        let _unregister = Unregister(&self.shared, request_id.clone());

        let mut record = CommandRecord {
            request_id: request_id.clone(),
            command: request.command.clone(),
            parameters: sent_parameters.clone(),
            target,
            expected: expected.join(","),
            sent_ms: now_ms(),
            attempts: 1,
            wave,
        };
        lock(&self.shared.backlog).command(record.clone());
        for topic in &topics {
            self.publish(topic, &buf).await?;
        }

        let start = Instant::now();
        let deadline = start + request.timeout;
        let step = request.timeout / (request.retries + 1);
        let mut next_retry = (request.retries > 0).then(|| start + step);
        let mut results = BTreeMap::new();
        let everyone_answered = |results: &BTreeMap<String, ResultRecord>| {
            !expected.is_empty() && expected.iter().all(|e| results.contains_key(e))
        };
        while !everyone_answered(&results) {
            let wake = next_retry.unwrap_or(deadline).min(deadline);
            tokio::select! {
                r = rx.recv() => {
                    let Some(r) = r else { return Err(Error::Stopped) };
                    if r.is_final() {
                        results.entry(r.instance_id.clone()).or_insert_with(|| r.clone());
                    }
                    progress(&r, results.len());
                }
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    // Resend to whoever has not answered; nodes de-duplicate by request id.
                    let silent: Vec<&String> = if broadcast {
                        topics.iter().collect()
                    } else {
                        topics.iter().zip(&expected).filter(|(_, id)| !results.contains_key(*id)).map(|(t, _)| t).collect()
                    };
                    for topic in silent {
                        self.publish(topic, &buf).await?;
                    }
                    record.attempts += 1;
                    lock(&self.shared.backlog).command(record.clone());
                    next_retry = Some(Instant::now() + step).filter(|_| record.attempts <= request.retries);
                }
            }
        }
        let timed_out: Vec<String> = expected.iter().filter(|e| !results.contains_key(*e)).cloned().collect();
        let outcome = SendOutcome { request_id, expected, results, timed_out, attempts: record.attempts };
        let counter = match outcome.verdict() {
            Verdict::Succeeded => &self.shared.counters.commands_succeeded,
            Verdict::Failed => &self.shared.counters.commands_failed,
            Verdict::TimedOut => &self.shared.counters.commands_timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .map_err(|e| Error::Mqtt(e.to_string()))
    }

    /// Disconnects, stops the background tasks and writes everything queued to the database,
    /// trying for up to [`SHUTDOWN_FLUSH_FOR`] while the database refuses (another process
    /// holding it locked, say). The error says how many rows could not be written.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        // Give the DISCONNECT a moment to leave before the connection task goes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in &self.tasks {
            task.abort();
        }
        let deadline = Instant::now() + SHUTDOWN_FLUSH_FOR;
        loop {
            match self.flush().await {
                Ok(()) => {
                    // A short-lived engine (`subnode send`) trims the history too.
                    let shared = self.shared.clone();
                    let trimmed = tokio::task::spawn_blocking(move || {
                        lock(&shared.store).apply_retention(&shared.config.retention, now_ms())
                    })
                    .await;
                    if let Ok(Err(e)) = trimmed {
                        tracing::warn!(error = %e, "cannot delete old history");
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, "cannot write the database; trying again before stopping");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(Error::Unsaved { rows: self.stats().unsaved_rows, error: e.to_string() });
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
