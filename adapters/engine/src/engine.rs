//! [`Engine`]: one MQTT connection that ingests the fleet's messages into the registry, sends
//! commands and collects their results.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter, TlsConfiguration, Transport};
use subnodesync_core::{to_json, ControlMessage};
use subnodesync_core::{Object, Timestamp};
use subnodesync_core::{COMMAND_MAX, MAX_REMAINING_LEN};
use subnodesync_host::config::{Scheme, Secret};
use subnodesync_host::RetryDelays;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::error::describe_connection_error;
use crate::error::Error;
use crate::record::{CommandRecord, ResultRecord};
use crate::registry::{FleetEvent, Ingested, Instance, Registry};
use crate::send::{new_request_id, with_timeout_ms, SendOutcome, SendRequest};
use crate::store::Database;
use crate::target::{Selector, Target};

/// The largest message the engine reads: far above any register, heartbeat, status or result a
/// node sends (a node's own buffers are smaller). Larger ones are counted and skipped.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// First reconnect delay after losing the broker.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a connection must hold before the reconnect delays start over.
const RECONNECT_STABLE: Duration = Duration::from_secs(60);

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks a mutex, carrying on after a panic elsewhere: every critical section leaves its data
/// consistent, so a poisoned lock holds nothing half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters since the engine started.
#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    heartbeats: AtomicU64,
    rejected: AtomicU64,
    oversized: AtomicU64,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Messages received from the broker.
    pub messages: u64,
    /// Heartbeats ingested.
    pub heartbeats: u64,
    /// Messages refused (bad topic or payload).
    pub rejected: u64,
    /// Messages larger than [`MAX_PAYLOAD`], skipped unread.
    pub oversized: u64,
}

struct Shared {
    config: EngineConfig,
    registry: Mutex<Registry>,
    store: Mutex<Database>,
    /// Results received and not yet written.
    pending_results: Mutex<Vec<ResultRecord>>,
    /// Requests being waited for, by request id.
    waiters: Mutex<HashMap<String, mpsc::UnboundedSender<ResultRecord>>>,
    events: broadcast::Sender<FleetEvent>,
    counters: Counters,
    /// When the last retained message or SUBACK arrived, and whether every SUBACK has.
    synced: watch::Sender<(bool, Instant)>,
    connected: AtomicBool,
    /// Why the broker could not be reached, until the first connection succeeds.
    problem: watch::Sender<Option<String>>,
}

impl Shared {
    fn publish_events(&self, events: Vec<FleetEvent>) {
        for e in events {
            // Nobody listening is fine.
            let _ = self.events.send(e);
        }
    }

    fn on_publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        if retain {
            self.synced.send_modify(|(_, at)| *at = Instant::now());
        }
        if payload.len() > MAX_PAYLOAD {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic, bytes = payload.len(), "message larger than the engine reads: skipped");
            return;
        }
        let now = now_ms();
        let ingested = lock(&self.registry).ingest(&self.config.topic_prefix, topic, payload, now);
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
                lock(&self.pending_results).push(r.clone());
                let _ = self.events.send(FleetEvent::Result(r));
            }
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(topic, error = %e, "message not ingested");
            }
        }
    }

    /// Writes changed instances and new results. Copies out under the registry lock, writes
    /// outside it, so ingest never waits for the disk.
    fn flush(&self) -> Result<(), Error> {
        let changed: Vec<Instance> = lock(&self.registry).take_dirty().into_iter().cloned().collect();
        let results = std::mem::take(&mut *lock(&self.pending_results));
        let mut store = lock(&self.store);
        if !changed.is_empty() {
            store.save_instances(changed.iter())?;
        }
        if !results.is_empty() {
            store.save_results(&results)?;
        }
        Ok(())
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
/// engine.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Engine {
    shared: Arc<Shared>,
    client: AsyncClient,
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
        let tls = match config.broker.scheme {
            Scheme::Mqtts => Some(
                subnodesync_host::tls_client_config(
                    config.tls_ca.clone(),
                    config.tls_cert.clone(),
                    config.tls_key.clone(),
                    &config.broker.host,
                )
                .map_err(|e| Error::Tls(e.to_string()))?,
            ),
            Scheme::Mqtt => None,
        };
        let db = config.db.clone();
        let (store, instances) = tokio::task::spawn_blocking(move || {
            let store = Database::open(&db)?;
            let instances = store.load_instances()?;
            Ok::<_, Error>((store, instances))
        })
        .await
        .map_err(|_| Error::Stopped)??;
        let mut registry = Registry::from_instances(instances);
        registry.heartbeat_events = config.heartbeat_events;
        registry.listening_from(now_ms());

        let mut options = MqttOptions::new(config.client_id.clone(), config.broker.host.clone(), config.broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        // Any packet MQTT can carry is taken off the connection (and skipped if too large to
        // read): refusing one would drop the connection, and a retained one would come back at
        // every reconnect. The broker's own limit is what bounds memory (see the README).
        options.set_max_packet_size(MAX_REMAINING_LEN, 256 * 1024);
        options.set_inflight(100);
        if let Some(tls) = tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        if let Some(user) = &config.username {
            options.set_credentials(user.clone(), config.password.as_ref().map(Secret::expose).unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let (events, _) = broadcast::channel(4096);
        let (synced, _) = watch::channel((false, Instant::now()));
        let (problem, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            config,
            registry: Mutex::new(registry),
            store: Mutex::new(store),
            pending_results: Mutex::new(Vec::new()),
            waiters: Mutex::new(HashMap::new()),
            events,
            counters: Counters::default(),
            synced,
            problem,
            connected: AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(run_connection(shared.clone(), client.clone(), eventloop)),
            tokio::spawn(run_ticker(shared.clone(), client.clone())),
        ];
        Ok(Self { shared, client, tasks })
    }

    /// The topic filters the engine subscribes to.
    pub fn filters(config: &EngineConfig) -> Vec<String> {
        let p = &config.topic_prefix;
        let mut filters = vec![format!("{p}/+/+/register"), format!("{p}/+/+/status"), format!("{p}/+/+/result")];
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

    /// Fleet events from now on. A receiver more than 4096 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<FleetEvent> {
        self.shared.events.subscribe()
    }

    /// Counters since start.
    pub fn stats(&self) -> IngestStats {
        let c = &self.shared.counters;
        IngestStats {
            messages: c.messages.load(Ordering::Relaxed),
            heartbeats: c.heartbeats.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            oversized: c.oversized.load(Ordering::Relaxed),
        }
    }

    /// Writes the registry and new results to the database now.
    pub async fn flush(&self) -> Result<(), Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.flush()).await.map_err(|_| Error::Stopped)?
    }

    /// The latest `limit` commands with their results, newest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<(CommandRecord, Vec<ResultRecord>)>, Error> {
        self.flush().await?;
        lock(&self.shared.store).history(limit)
    }

    /// Removes `lost` and `offline` instances whose status is older than `age`, clearing their
    /// retained register and status messages; returns their ids.
    pub async fn prune(&self, age: Duration) -> Result<Vec<String>, Error> {
        prune(&self.shared, &self.client, age).await
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
        mut progress: impl FnMut(&ResultRecord, usize),
    ) -> Result<SendOutcome, Error> {
        if request.command.is_empty() || request.command.len() > COMMAND_MAX {
            return Err(Error::InvalidCommand("the name must be 1 to 32 bytes"));
        }
        let sent_parameters = with_timeout_ms(&request.parameters, request.timeout)?;
        let parameters =
            Object::parse(sent_parameters.as_bytes()).map_err(|e| Error::InvalidParameters(e.to_string()))?;
        let prefix = &self.shared.config.topic_prefix;
        let (topics, expected) = self.resolve(&request.target)?;
        let request_id = new_request_id();
        let control = ControlMessage {
            command: &request.command,
            timestamp: Timestamp::from_unix_secs(u64::try_from(now_ms() / 1000).unwrap_or(0)),
            request_id: &request_id,
            parameters: Some(parameters),
        };
        let mut buf = vec![0u8; parameters.as_raw().as_str().len() + request.command.len() * 2 + 256];
        let n = to_json(&control, &mut buf).map_err(|_| Error::InvalidCommand("not representable"))?;
        buf.truncate(n);

        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.shared.waiters).insert(request_id.clone(), tx);
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
            target: request.target.describe(prefix),
            expected: expected.join(","),
            sent_ms: now_ms(),
            attempts: 1,
        };
        lock(&self.shared.store).save_command(&record)?;
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
                    let silent: Vec<&String> = match &request.target {
                        Target::Node(_) => topics.iter().collect(),
                        _ => topics.iter().zip(&expected).filter(|(_, id)| !results.contains_key(*id)).map(|(t, _)| t).collect(),
                    };
                    for topic in silent {
                        self.publish(topic, &buf).await?;
                    }
                    record.attempts += 1;
                    lock(&self.shared.store).save_command(&record)?;
                    next_retry = Some(Instant::now() + step).filter(|_| record.attempts <= request.retries);
                }
            }
        }
        let timed_out = expected.iter().filter(|e| !results.contains_key(*e)).cloned().collect();
        Ok(SendOutcome { request_id, expected, results, timed_out, attempts: record.attempts })
    }

    /// The control topics to publish on and the instances expected to answer.
    fn resolve(&self, target: &Target) -> Result<(Vec<String>, Vec<String>), Error> {
        let prefix = &self.shared.config.topic_prefix;
        let registry = lock(&self.shared.registry);
        match target {
            Target::Instance { node_name, instance_id } => {
                let node = match node_name {
                    Some(n) => n.clone(),
                    None => registry
                        .get(instance_id)
                        .map(|i| i.node_name.clone())
                        .ok_or_else(|| Error::UnknownInstance(instance_id.clone()))?,
                };
                Ok((vec![format!("{prefix}/{node}/{instance_id}/control")], vec![instance_id.clone()]))
            }
            Target::Node(node) => {
                let selector = Selector { node_name: Some(node.clone()), ..Selector::default() };
                let expected =
                    registry.instances().iter().filter(|i| selector.matches(i)).map(|i| i.instance_id.clone());
                Ok((vec![format!("{prefix}/{node}/control")], expected.collect()))
            }
            Target::Select(selector) => {
                let chosen: Vec<&Instance> = registry.instances().iter().filter(|i| selector.matches(i)).collect();
                if chosen.is_empty() {
                    return Err(Error::NoTargets);
                }
                Ok((
                    chosen.iter().map(|i| format!("{prefix}/{}/{}/control", i.node_name, i.instance_id)).collect(),
                    chosen.iter().map(|i| i.instance_id.clone()).collect(),
                ))
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .map_err(|e| Error::Mqtt(e.to_string()))
    }

    /// Writes everything to the database, disconnects and stops the background tasks.
    pub async fn shutdown(&self) {
        let _ = self.client.disconnect().await;
        // Give the DISCONNECT a moment to leave before the connection task goes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "final flush failed");
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

async fn prune(shared: &Shared, client: &AsyncClient, age: Duration) -> Result<Vec<String>, Error> {
    let before = now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let gone = lock(&shared.registry).prune(before);
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    let prefix = &shared.config.topic_prefix;
    for i in &gone {
        // An empty retained publish deletes the retained message (MQTT 3.1.1 §3.3.1.3).
        for kind in ["register", "status"] {
            let topic = format!("{prefix}/{}/{}/{kind}", i.node_name, i.instance_id);
            client.publish(topic, QoS::AtLeastOnce, true, Vec::new()).await.map_err(|e| Error::Mqtt(e.to_string()))?;
        }
    }
    let ids: Vec<String> = gone.into_iter().map(|i| i.instance_id).collect();
    lock(&shared.store).delete_instances(&ids)?;
    let _ = shared.events.send(FleetEvent::Pruned { instance_ids: ids.clone() });
    Ok(ids)
}

/// Drives the MQTT connection: subscribe after every CONNACK, ingest every PUBLISH, and after a
/// failure wait a jittered, growing delay (the nodes' backoff) before rumqttc reconnects.
async fn run_connection(shared: Arc<Shared>, client: AsyncClient, mut eventloop: EventLoop) {
    let filters = Engine::filters(&shared.config);
    let mut acks_due = 0;
    let mut delays =
        RetryDelays::new(RECONNECT_MIN, RECONNECT_MAX, u64::from(std::process::id()) ^ now_ms().unsigned_abs());
    let mut up_since = None;
    let mut connected_once = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up_since = Some(Instant::now());
                connected_once = true;
                shared.problem.send_if_modified(|p| p.take().is_some());
                if !shared.connected.swap(true, Ordering::Relaxed) {
                    tracing::info!("connected to the broker");
                    let _ = shared.events.send(FleetEvent::BrokerConnected);
                }
                let subs = filters.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                // `try_`: awaiting here would wait on the very loop that drains the queue.
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::warn!(error = %e, "cannot subscribe");
                }
                acks_due = 1;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if acks_due > 0 {
                    acks_due -= 1;
                    shared.synced.send_modify(|s| *s = (true, Instant::now()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => shared.on_publish(&p.topic, &p.payload, p.retain),
            Ok(_) => {}
            Err(e) => {
                // A connection that held for a while starts the delays over.
                if up_since.take().is_some_and(|at| at.elapsed() >= RECONNECT_STABLE) {
                    delays.reset();
                }
                let delay = delays.next_delay();
                let error = describe_connection_error(&e);
                if shared.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, retry_in = ?delay, "broker connection lost; reconnecting");
                } else {
                    tracing::warn!(%error, retry_in = ?delay, "cannot connect to the broker");
                }
                if !connected_once {
                    shared.problem.send_replace(Some(error.clone()));
                }
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let _ = shared.events.send(FleetEvent::BrokerDisconnected { error, retry_in_ms });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Flushes, detects missing instances and prunes, on a timer.
async fn run_ticker(shared: Arc<Shared>, client: AsyncClient) {
    let mut tick = tokio::time::interval(shared.config.flush_interval.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = i64::try_from((shared.config.heartbeat_interval * 3).as_millis()).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        let now = now_ms();
        let events = lock(&shared.registry).mark_missing(now.saturating_sub(silence), now);
        shared.publish_events(events);
        if let Some(age) = shared.config.prune_after {
            if let Err(e) = prune(&shared, &client, age).await {
                tracing::warn!(error = %e, "prune failed");
            }
        }
        let s = shared.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.flush()).await {
            tracing::warn!(error = %e, "cannot write the registry");
        }
    }
}
