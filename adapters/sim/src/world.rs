//! The world's core: virtual time, the event queue and the loop that pops it, and the checks at
//! the end of a run. What each event does lives beside it, as more `impl World` blocks: `node`
//! drives the real nodes, `network` carries their bytes, `broker` and `engine` answer them and
//! `faults` breaks things. Everything runs on one thread and draws from one [`Rng`], so the order
//! of draws is the run: moving code between modules must never reorder them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use subnodesync_core::{Buffers, CommandId, Duration};

use crate::broker::Broker;
use crate::engine::Engine;
use crate::faults::Fault;
use crate::network::{BufferPool, ConnId, Connection, Direction};
use crate::node::{Action, SimNode};
use crate::{Failure, Handler, Reply, Report, Rng, SimConfig, SimStats};

/// Virtual time, or a span of it, in microseconds.
pub(crate) type Micros = u64;
/// Virtual time starts here, so no deadline is ever at zero.
pub(crate) const START: Micros = 1_000_000_000;
/// Consecutive `handle_timeout` calls at one instant that are tolerated before it is a busy loop.
const BUSY_LIMIT: u32 = 64;

pub(crate) fn micros(d: Duration) -> Micros {
    d.as_micros()
}

/// Seconds since the start, for the trace and for [`Failure::at_secs`].
pub(crate) fn secs(t: Micros) -> f64 {
    t.saturating_sub(START) as f64 / 1e6
}

/// Something that happens at a scheduled instant. Node deadlines and the broker's keep-alive
/// checks are not events: they live in [`Deadlines`], re-filed whenever they move, so they never
/// go stale in the queue.
#[derive(Debug)]
pub(crate) enum SimEvent {
    /// Bytes on a connection heading in one direction may have arrived.
    Arrive(ConnId, Direction),
    /// The close of a connection reaches the side the direction points at.
    Fin(ConnId, Direction),
    /// The transport a node asked for is up or refused; stale unless `attempt` is still pending.
    OpenDone { node: usize, attempt: u64 },
    /// The handler completes a command. The reply is boxed: this rare, large event would
    /// otherwise make every queued event as large, and the heap moves events on every push and
    /// pop.
    Complete { node: usize, id: CommandId, reply: Box<Reply> },
    /// The engine sends a new request.
    EngineNew,
    /// The engine resends requests that have waited too long for a result.
    EngineRetry,
    /// The engine changes a desired document.
    DesiredChange,
    /// A fault with a clock of its own strikes.
    Fault(Fault),
    /// The broker comes back after a restart, unless another restart has begun since.
    BrokerUp { generation: u64 },
    /// The quiet tail begins.
    FaultsOff,
}

/// An event in the queue. `seq` breaks ties in scheduling order, so equal times never depend on
/// the heap's layout.
struct Scheduled {
    at: Micros,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The event queue, earliest `(at, seq)` first. `(at, seq)` is unique, so the order is the
/// same whatever holds it. A small world keeps a handful of events queued: there a list sorted
/// latest first is cheapest (a pop takes the last entry, a push lands near the end, since most
/// events fall due soon). Past [`SORTED_MAX`] events it becomes a binary heap for good, where
/// inserting into a long list would move too much.
enum EventQueue {
    Sorted(Vec<Scheduled>),
    Heap(BinaryHeap<Reverse<Scheduled>>),
}

/// The longest sorted list an [`EventQueue`] keeps before it turns into a heap.
const SORTED_MAX: usize = 64;

impl EventQueue {
    fn push(&mut self, scheduled: Scheduled) {
        match self {
            Self::Sorted(list) if list.len() < SORTED_MAX => {
                // Latest first: the new event goes ahead of every earlier one, and a walk from
                // the end finds few of those, as most events fall due soon.
                let mut i = list.len();
                while i > 0 && list[i - 1] < scheduled {
                    i -= 1;
                }
                list.insert(i, scheduled);
            }
            Self::Sorted(list) => {
                let mut heap: BinaryHeap<_> = list.drain(..).map(Reverse).collect();
                heap.push(Reverse(scheduled));
                *self = Self::Heap(heap);
            }
            Self::Heap(heap) => heap.push(Reverse(scheduled)),
        }
    }

    /// When the earliest event is due.
    fn next_at(&self) -> Option<Micros> {
        match self {
            Self::Sorted(list) => list.last().map(|s| s.at),
            Self::Heap(heap) => heap.peek().map(|Reverse(s)| s.at),
        }
    }

    fn pop(&mut self) -> Option<Scheduled> {
        match self {
            Self::Sorted(list) => list.pop(),
            Self::Heap(heap) => heap.pop().map(|Reverse(s)| s),
        }
    }
}

/// At most one deadline per key, earliest first. Whoever moves a key's deadline re-files it, so
/// the loop finds the next one due without scanning every node or connection. A small world has
/// a deadline or two (one node, one connection): one short sorted list, searched end to end,
/// costs less than two B-trees that free and allocate a node whenever they empty and fill again.
/// Past [`FEW_MAX`] keys it turns into the B-trees for good; the order is the same either way.
pub(crate) enum Deadlines<K> {
    /// Every `(deadline, key)`, sorted.
    Few(Vec<(Micros, K)>),
    /// Ordered by time, and each key's deadline to find its entry again.
    Many { by_time: BTreeSet<(Micros, K)>, filed: BTreeMap<K, Micros> },
}

/// The most keys a [`Deadlines`] keeps in its list before it turns into B-trees.
const FEW_MAX: usize = 16;

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Ord + Copy> Deadlines<K> {
    /// Files `key`'s deadline in place of the one it had; `None` takes it out.
    pub(crate) fn set(&mut self, key: K, at: Option<Micros>) {
        match self {
            Self::Few(list) => {
                if let Some(p) = list.iter().position(|&(_, k)| k == key) {
                    match at {
                        Some(t) if t == list[p].0 => {}
                        // A deadline that moves is re-sorted where it is, without shifting the list.
                        Some(t) => resort(list, p, (t, key)),
                        None => {
                            list.remove(p);
                        }
                    }
                    return;
                }
                let Some(t) = at else { return };
                if list.len() < FEW_MAX {
                    let i = list.partition_point(|&entry| entry < (t, key));
                    list.insert(i, (t, key));
                } else {
                    let by_time: BTreeSet<_> = list.drain(..).collect();
                    let filed = by_time.iter().map(|&(t, k)| (k, t)).collect();
                    *self = Self::Many { by_time, filed };
                    self.set(key, at);
                }
            }
            Self::Many { by_time, filed } => {
                let old = match at {
                    Some(t) => filed.insert(key, t),
                    None => filed.remove(&key),
                };
                if old != at {
                    if let Some(old) = old {
                        by_time.remove(&(old, key));
                    }
                    if let Some(t) = at {
                        by_time.insert((t, key));
                    }
                }
            }
        }
    }

    /// The deadline filed for `key`.
    pub(crate) fn get(&self, key: K) -> Option<Micros> {
        match self {
            Self::Few(list) => list.iter().find(|&&(_, k)| k == key).map(|&(t, _)| t),
            Self::Many { filed, .. } => filed.get(&key).copied(),
        }
    }

    /// The earliest deadline, the lowest key first among equals.
    pub(crate) fn first(&self) -> Option<(Micros, K)> {
        match self {
            Self::Few(list) => list.first().copied(),
            Self::Many { by_time, .. } => by_time.first().copied(),
        }
    }

    /// Every key due by `now`, in key order (the order a scan of all keys would meet them).
    pub(crate) fn due(&self, now: Micros) -> Vec<K> {
        let due = |&&(t, _): &&(Micros, K)| t <= now;
        let mut due: Vec<K> = match self {
            Self::Few(list) => list.iter().take_while(due).map(|&(_, key)| key).collect(),
            Self::Many { by_time, .. } => by_time.iter().take_while(due).map(|&(_, key)| key).collect(),
        };
        due.sort_unstable();
        due
    }
}

/// Puts `entry` at `p` in the sorted `list` and swaps it into its place.
fn resort<T: Ord + Copy>(list: &mut [T], mut p: usize, entry: T) {
    list[p] = entry;
    while p > 0 && list[p - 1] > entry {
        list.swap(p - 1, p);
        p -= 1;
    }
    while p + 1 < list.len() && list[p + 1] < entry {
        list.swap(p, p + 1);
        p += 1;
    }
}

/// The earlier of two instants, either of which may be absent.
fn earlier(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The whole simulation. `'a` is the nodes' buffers, `'h` the caller's configuration and handler.
pub(crate) struct World<'a, 'h> {
    pub(crate) config: &'h SimConfig,
    pub(crate) now: Micros,
    pub(crate) fault_end: Micros,
    end: Micros,
    pub(crate) rng: Rng,
    queue: EventQueue,
    seq: u64,
    pub(crate) conns: BTreeMap<ConnId, Connection>,
    pub(crate) next_conn: ConnId,
    pub(crate) broker: Broker,
    pub(crate) engine: Engine,
    pub(crate) nodes: Vec<SimNode<'a>>,
    /// Every node's next deadline (world time) by index: kept in step by `refresh_deadline`
    /// after anything that can move one.
    pub(crate) deadlines: Deadlines<usize>,
    pub(crate) handler: &'h mut dyn Handler,
    /// Spare packet buffers, so bytes on the wire are not a fresh allocation each.
    pub(crate) pool: BufferPool,
    /// The list `drive` drains a node's outputs into, kept for its capacity.
    pub(crate) actions: Vec<Action>,
    trace: Option<Vec<String>>,
    pub(crate) stats: SimStats,
    digest: u64,
    pub(crate) failure: Option<String>,
}

pub(crate) fn simulate(seed: u64, config: &SimConfig, handler: &mut dyn Handler) -> Result<Report, Failure> {
    let mut rng = Rng::new(seed);
    let mut buffers: Vec<[Vec<u8>; 4]> =
        (0..config.nodes).map(|_| [vec![0; 2048], vec![0; 1024], vec![0; 8192], vec![0; 1024]]).collect();
    let mut nodes = Vec::with_capacity(config.nodes);
    for (i, [rx, tx, outbox, desired]) in buffers.iter_mut().enumerate() {
        let buffers = Buffers::new(rx, tx, outbox).with_desired(desired);
        let node = SimNode::new(i, config, buffers, rng.next_u64()).map_err(|e| Failure {
            seed,
            at_secs: 0.0,
            message: format!("node {i}: bad config: {e}"),
            trace: vec![],
        })?;
        nodes.push(node);
    }
    let fault_end = START + micros(config.duration);
    let mut world = World {
        config,
        now: START,
        fault_end,
        end: fault_end + micros(config.quiet_tail),
        rng,
        queue: EventQueue::Sorted(Vec::new()),
        seq: 0,
        conns: BTreeMap::new(),
        next_conn: 1,
        broker: Broker::new(),
        engine: Engine::new(config, &nodes),
        nodes,
        deadlines: Deadlines::default(),
        handler,
        pool: BufferPool::default(),
        actions: Vec::new(),
        trace: config.trace.then(Vec::new),
        stats: SimStats::default(),
        digest: 0xCBF2_9CE4_8422_2325,
        failure: None,
    };
    world.start();
    world.run_loop();
    if world.failure.is_none() {
        world.final_checks();
    }
    let trace = world.trace.unwrap_or_default();
    match world.failure {
        Some(message) => Err(Failure { seed, at_secs: secs(world.now), message, trace }),
        None => Ok(Report { seed, stats: world.stats, digest: world.digest, trace }),
    }
}

impl World<'_, '_> {
    // ----- bookkeeping -----

    pub(crate) fn at(&mut self, at: Micros, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Scheduled { at, seq: self.seq, event });
    }

    /// Appends a trace line; `what` runs only when tracing, so untraced runs build no strings.
    pub(crate) fn log(&mut self, who: &str, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>10.3} {who:<6} {}", secs(self.now), what()));
        }
    }

    /// [`log`](Self::log) for node `i`, labelled `n{i}`: the label is only formatted when tracing
    /// is on, since most runs never read it.
    pub(crate) fn log_node(&mut self, i: usize, what: impl FnOnce() -> String) {
        if self.trace.is_some() {
            self.log(&format!("n{i}"), what);
        }
    }

    /// Records the first broken invariant; the loop stops at the next step.
    pub(crate) fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.log("FAIL", || message.clone());
            self.failure = Some(message);
        }
    }

    /// Folds one step into the digest (FNV-1a over 64-bit words).
    fn mix(&mut self, a: u64, b: u64) {
        for v in [a, b] {
            self.digest = (self.digest ^ v).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Whether faults are still on (the quiet tail has not begun).
    pub(crate) fn faulty(&self) -> bool {
        self.now < self.fault_end
    }

    // ----- the loop -----

    fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.drive(i, |_, _| {});
        }
        self.schedule_first_faults();
        self.at(self.fault_end, SimEvent::FaultsOff);
        self.schedule_engine_new();
        self.schedule_desired_change();
        self.at(self.now + micros(self.config.engine_retry), SimEvent::EngineRetry);
    }

    fn run_loop(&mut self) {
        let mut busy = 0u32;
        let mut last_busy_at = 0;
        while self.failure.is_none() {
            let event_at = self.queue.next_at();
            let broker_at = self.broker_deadline();
            // The earliest deadline, the lowest index first among equals.
            let node_deadline = self.deadlines.first();
            let next = earlier(earlier(event_at, broker_at), node_deadline.map(|(t, _)| t));
            let Some(t) = next.filter(|&t| t <= self.end) else { break };
            self.now = self.now.max(t);
            if event_at == Some(t) {
                let Some(scheduled) = self.queue.pop() else { break };
                self.mix(scheduled.at, 1);
                self.event(scheduled.event);
            } else if broker_at == Some(t) {
                self.mix(t, 2);
                self.broker_keepalive();
            } else if let Some((_, i)) = node_deadline {
                self.mix(t, 3 + i as u64);
                self.log_node(i, || "timer".into());
                let produced = self.drive(i, |node, now| node.handle_timeout(now));
                // `drive` has just filed the node's deadline: no need to ask the node again.
                let still_due = self.deadlines.get(i).is_some_and(|d| d <= self.now);
                if still_due && produced == 0 {
                    self.fail(format!(
                        "node {i}: busy loop: after handle_timeout(now) its deadline is still due and it did nothing"
                    ));
                } else if still_due {
                    busy = if last_busy_at == self.now { busy + 1 } else { 1 };
                    last_busy_at = self.now;
                    if busy > BUSY_LIMIT {
                        self.fail(format!("node {i}: busy loop: deadline stays due after {busy} handle_timeout calls"));
                    }
                }
            }
        }
    }

    fn event(&mut self, event: SimEvent) {
        match event {
            SimEvent::Arrive(conn, dir) => self.arrive(conn, dir),
            SimEvent::Fin(conn, dir) => self.fin(conn, dir),
            SimEvent::OpenDone { node, attempt } => self.open_done(node, attempt),
            SimEvent::Complete { node, id, reply } => self.complete(node, id, *reply),
            SimEvent::EngineNew => self.engine_new(),
            SimEvent::EngineRetry => self.engine_retry(),
            SimEvent::DesiredChange => self.desired_change(),
            SimEvent::Fault(fault) => self.fault(fault),
            SimEvent::BrokerUp { generation } => {
                if self.broker.generation == generation {
                    self.broker_up();
                }
            }
            SimEvent::FaultsOff => self.faults_off(),
        }
    }

    fn final_checks(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].node.is_connected() {
                return self.fail(format!("node {i} is not connected at the end of the quiet tail"));
            }
        }
        for i in 0..self.nodes.len() {
            // Takeover publishes an old connection's will before the new CONNACK, and a crash
            // publishes none, so the last word on a connected node is its own `online`.
            let status_topic = self.nodes[i].register_topic.replace("/register", "/status");
            let status = self
                .broker
                .retained
                .get(&status_topic)
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
            let status = status.as_ref().and_then(|j| j["status"].as_str()).unwrap_or("none").to_string();
            if status != "online" {
                return self.fail(format!("node {i} is connected but its retained status is {status}"));
            }
            if !self.broker.retained.contains_key(&self.nodes[i].register_topic) {
                return self.fail(format!("node {i} is connected but has no retained register message"));
            }
        }
        self.check_desired_converged();
        let unanswered =
            self.engine.requests.iter().find(|r| r.result.is_none() && !self.nodes[r.node].results_dropped);
        if let Some(request) = unanswered {
            let message = format!(
                "request {} to node {} never got its final result ({} attempts, last at t={:.3}s)",
                request.request_id,
                request.node,
                request.attempts,
                secs(request.last_sent)
            );
            self.fail(message);
        }
    }
}
