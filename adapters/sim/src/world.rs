//! The simulated world: event queue, byte streams, broker, engine and node drivers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use mqttrs::Packet;
use subnodesync_core::codec::frame::FixedHeader;
use subnodesync_core::{
    Buffers, CommandId, DisconnectReason, Duration, Event, Instant, Metrics, Node, NodeError, Outcome, Output,
};
use subnodesync_fixtures::wire;

use crate::{Failure, Faults, Handler, Reply, Report, Rng, SimConfig, Stats, FAULT_KINDS};

/// Virtual time, microseconds.
type T = u64;
/// 2024-01-01T12:00:00Z, the wall clock every node starts with.
const WALL: u64 = 1_704_110_400_000_000;
/// Virtual time starts here, so no deadline is ever at zero.
const START: T = 1_000_000_000;
const TO_NODE: usize = 0;
const TO_BROKER: usize = 1;
/// Consecutive `handle_timeout` calls at one instant that are tolerated before it is a busy loop.
const BUSY_LIMIT: u32 = 64;

fn us(d: Duration) -> T {
    d.as_micros()
}

fn secs(t: T) -> f64 {
    t.saturating_sub(START) as f64 / 1e6
}

#[derive(Debug)]
enum Ev {
    /// Bytes on `conn` heading in direction `dir` may have arrived.
    Arrive(u64, usize),
    /// The close of `conn` reaches the side `dir` points at.
    Fin(u64, usize),
    /// The transport node `.0` asked for (attempt `.1`) is up or refused.
    OpenDone(usize, u64),
    /// The handler completes a command.
    Complete(usize, CommandId, Reply),
    EngineNew,
    EngineRetry,
    Fault(Fault),
    BrokerUp(u64),
    FaultsOff,
}

/// A kind of fault, in the order of [`FAULT_KINDS`] and `Stats::faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Reset,
    HalfOpen,
    BrokerRestart,
    SessionsLost,
    ClockJump,
    RefusedConnack,
    Duplicate,
}

impl Fault {
    /// The faults with a clock of their own, in the order their first draws are made: changing
    /// it changes every seed's run.
    const TIMED: [Self; 4] = [Self::Reset, Self::HalfOpen, Self::BrokerRestart, Self::ClockJump];

    /// Occurrences per hour of simulated time for the whole world; zero for the faults that
    /// ride on an occasion (a restart, a CONNECT, a command publish), which are never scheduled.
    fn rate(self, faults: &Faults, nodes: usize) -> f64 {
        let n = nodes as f64;
        match self {
            Self::Reset => faults.resets_per_hour * n,
            Self::HalfOpen => faults.half_opens_per_hour * n,
            Self::BrokerRestart => faults.broker_restarts_per_hour,
            Self::ClockJump => faults.clock_jumps_per_hour * n,
            Self::SessionsLost | Self::RefusedConnack | Self::Duplicate => 0.0,
        }
    }
}

// `Stats::faults` is indexed by `Fault as usize`: one name per kind.
const _: () = assert!(FAULT_KINDS.len() == Fault::Duplicate as usize + 1);

struct Sched {
    t: T,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sched {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// One TCP-like connection: two byte streams, plus the broker's view of its client.
struct Conn {
    node: usize,
    queue: [VecDeque<(T, Vec<u8>)>; 2],
    last: [T; 2],
    silent: [bool; 2],
    node_open: bool,
    broker_open: bool,
    /// Reset: nothing more gets through either way; both sides are about to hear of it.
    reset: bool,
    rx: Vec<u8>,
    client: Option<String>,
    keep_alive: T,
    will: Option<(String, Vec<u8>, bool)>,
    last_rx: T,
    clean: bool,
}

struct Queued {
    topic: String,
    payload: Vec<u8>,
    sent: bool,
}

#[derive(Default)]
struct Session {
    subs: Vec<String>,
    inflight: BTreeMap<u16, Queued>,
    next_pid: u16,
    conn: Option<u64>,
}

#[derive(Default)]
struct Broker {
    up: bool,
    generation: u64,
    sessions: BTreeMap<String, Session>,
    retained: BTreeMap<String, Vec<u8>>,
    clients: BTreeMap<String, u64>,
}

struct Request {
    node: usize,
    request_id: String,
    payload: Vec<u8>,
    last_sent: T,
    attempts: u32,
    result: Option<Vec<u8>>,
}

/// One node and what its driver knows about it.
struct Slot<'a> {
    node: Node<'a>,
    instance: String,
    register_topic: String,
    control_topic: String,
    offset: T,
    conn: Option<u64>,
    opening: Option<u64>,
    open_seq: u64,
    connected: bool,
    /// The latest the next heartbeat may go out while connected (node time): one interval
    /// after the last one or after `set_heartbeat_interval`, at once when overdue at CONNACK.
    heartbeat_due_by: Option<T>,
    /// After a disconnect: when the node must ask for a transport again, in its own time and
    /// in virtual time (a clock jump may bring it earlier in virtual time, never later).
    reconnect_at: Option<(T, T)>,
    awaiting_register: bool,
    executed: BTreeMap<String, u32>,
    requests: u32,
    intervals_set: u32,
    results_dropped: bool,
}

enum Act {
    Open,
    Close,
    Transmit(Vec<u8>),
    Connected(bool),
    Disconnected(DisconnectReason, Duration),
    HeartbeatDue,
    Command(CommandId, String, String, String),
    Note(String),
    Dropped,
}

struct World<'a, 'h> {
    cfg: &'h SimConfig,
    now: T,
    fault_end: T,
    end: T,
    rng: Rng,
    heap: BinaryHeap<Reverse<Sched>>,
    seq: u64,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    broker: Broker,
    nodes: Vec<Slot<'a>>,
    /// Every node's next deadline (world time) with its index, so the earliest is found without
    /// asking every node: kept in step by `refresh_timer` after anything that can move one.
    timers: BTreeSet<(T, usize)>,
    timer_of: Vec<Option<T>>,
    requests: Vec<Request>,
    /// (request_id, node) to the request; a broadcast is one request per node.
    by_request_id: BTreeMap<(String, usize), usize>,
    broadcast_topic: String,
    handler: &'h mut dyn Handler,
    trace: Option<Vec<String>>,
    stats: Stats,
    digest: u64,
    failure: Option<String>,
}

pub(crate) fn simulate(seed: u64, cfg: &SimConfig, handler: &mut dyn Handler) -> Result<Report, Failure> {
    let mut rng = Rng::new(seed);
    let mut buffers: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        (0..cfg.nodes).map(|_| (vec![0; 2048], vec![0; 1024], vec![0; 8192])).collect();
    let mut nodes = Vec::with_capacity(cfg.nodes);
    for (i, (rx, tx, outbox)) in buffers.iter_mut().enumerate() {
        let config = subnodesync_core::Config { pid: 1000 + i as u32, ..cfg.node };
        let now = Instant::from_micros(START);
        let mut node = Node::new(config, Buffers::new(rx, tx, outbox), rng.next_u64(), now).map_err(|e| Failure {
            seed,
            at_secs: 0.0,
            message: format!("node {i}: bad config: {e}"),
            trace: vec![],
        })?;
        node.set_wall_clock(now, WALL);
        let instance = node.instance_id().to_string();
        let base = format!("{}/{}/{}", config.topic_prefix, config.node_name, instance);
        nodes.push(Slot {
            node,
            register_topic: format!("{base}/register"),
            control_topic: format!("{base}/control"),
            instance,
            offset: 0,
            conn: None,
            opening: None,
            open_seq: 0,
            connected: false,
            heartbeat_due_by: None,
            reconnect_at: None,
            awaiting_register: false,
            executed: BTreeMap::new(),
            requests: 0,
            intervals_set: 0,
            results_dropped: false,
        });
    }
    let fault_end = START + us(cfg.duration);
    let mut w = World {
        cfg,
        now: START,
        fault_end,
        end: fault_end + us(cfg.quiet_tail),
        rng,
        heap: BinaryHeap::new(),
        seq: 0,
        conns: BTreeMap::new(),
        next_conn: 1,
        broker: Broker { up: true, ..Broker::default() },
        timer_of: vec![None; nodes.len()],
        nodes,
        timers: BTreeSet::new(),
        requests: Vec::new(),
        by_request_id: BTreeMap::new(),
        broadcast_topic: format!("{}/{}/control", cfg.node.topic_prefix, cfg.node.node_name),
        handler,
        trace: cfg.trace.then(Vec::new),
        stats: Stats::default(),
        digest: 0xCBF2_9CE4_8422_2325,
        failure: None,
    };
    w.start();
    w.run_loop();
    if w.failure.is_none() {
        w.final_checks();
    }
    match w.failure.take() {
        Some(message) => Err(Failure { seed, at_secs: secs(w.now), message, trace: w.trace.unwrap_or_default() }),
        None => Ok(Report { seed, stats: w.stats, digest: w.digest, trace: w.trace.unwrap_or_default() }),
    }
}

impl<'a, 'h> World<'a, 'h> {
    // ----- bookkeeping -----

    fn at(&mut self, t: T, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Sched { t, seq: self.seq, ev }));
    }

    fn log(&mut self, who: &str, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>10.3} {who:<6} {}", secs(self.now), what()));
        }
    }

    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.log("FAIL", || message.clone());
            self.failure = Some(message);
        }
    }

    fn mix(&mut self, a: u64, b: u64) {
        for v in [a, b] {
            self.digest = (self.digest ^ v).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn faulty(&self) -> bool {
        self.now < self.fault_end
    }

    fn node_now(&self, i: usize) -> Instant {
        Instant::from_micros(self.now + self.nodes[i].offset)
    }

    fn node_deadline(&self, i: usize) -> Option<T> {
        let slot = &self.nodes[i];
        slot.node.poll_timeout().map(|d| d.as_micros().saturating_sub(slot.offset))
    }

    // ----- the loop -----

    fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.drive(i, |_, _| {});
        }
        for fault in Fault::TIMED {
            self.schedule_fault(fault);
        }
        if let Some(at) = self.cfg.broker_restart_at {
            self.at(START + us(at), Ev::Fault(Fault::BrokerRestart));
        }
        self.at(self.fault_end, Ev::FaultsOff);
        self.schedule_engine_new();
        self.at(self.now + us(self.cfg.engine_retry), Ev::EngineRetry);
    }

    fn run_loop(&mut self) {
        let mut busy = 0u32;
        let mut last_busy_t = 0;
        while self.failure.is_none() {
            let heap_t = self.heap.peek().map(|Reverse(s)| s.t);
            let broker_t = self.broker_deadline();
            // The earliest deadline, the lowest index first among equals.
            let node_t = self.timers.first().copied();
            let t = [heap_t, broker_t, node_t.map(|(t, _)| t)].into_iter().flatten().min();
            let Some(t) = t.filter(|&t| t <= self.end) else { break };
            self.now = self.now.max(t);
            if heap_t == Some(t) {
                let Some(Reverse(s)) = self.heap.pop() else { break };
                self.mix(s.t, 1);
                self.event(s.ev);
            } else if broker_t == Some(t) {
                self.mix(t, 2);
                self.broker_keepalive();
            } else if let Some((_, i)) = node_t {
                self.mix(t, 3 + i as u64);
                self.log(&format!("n{i}"), || "timer".into());
                let produced = self.drive(i, |node, now| node.handle_timeout(now));
                let still = self.node_deadline(i).is_some_and(|d| d <= self.now);
                if still && produced == 0 {
                    self.fail(format!(
                        "node {i}: busy loop: after handle_timeout(now) its deadline is still due and it did nothing"
                    ));
                } else if still {
                    busy = if last_busy_t == self.now { busy + 1 } else { 1 };
                    last_busy_t = self.now;
                    if busy > BUSY_LIMIT {
                        self.fail(format!("node {i}: busy loop: deadline stays due after {busy} handle_timeout calls"));
                    }
                }
            }
        }
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(conn, dir) => self.arrive(conn, dir),
            Ev::Fin(conn, dir) => self.fin(conn, dir),
            Ev::OpenDone(i, attempt) => self.open_done(i, attempt),
            Ev::Complete(i, id, reply) => {
                let (ok, msg, data) = (reply.success, reply.message, reply.data);
                self.log(&format!("n{i}"), || format!("handler completes: {msg}"));
                self.drive(i, |node, now| {
                    let outcome = Outcome { success: ok, message: &msg, data: data.as_deref().map(str::as_bytes) };
                    match node.complete(now, id, outcome) {
                        Ok(()) | Err(NodeError::UnknownRequest) => {}
                        Err(e) => panic!("complete failed: {e}"),
                    }
                });
            }
            Ev::EngineNew => self.engine_new(),
            Ev::EngineRetry => self.engine_retry(),
            Ev::Fault(fault) => self.fault(fault),
            Ev::BrokerUp(generation) => {
                if !self.broker.up && self.broker.generation == generation {
                    self.broker.up = true;
                    self.log("broker", || "up again".into());
                }
            }
            Ev::FaultsOff => {
                self.log("fault", || "faults off: quiet tail".into());
                if !self.broker.up {
                    self.broker.up = true;
                    self.log("broker", || "up again".into());
                }
                // A half-open stream cannot heal mid-packet: reset it so both sides start over.
                let half: Vec<u64> =
                    self.conns.iter().filter(|(_, c)| c.silent.iter().any(|&s| s)).map(|(&id, _)| id).collect();
                for id in half {
                    self.reset(id);
                }
            }
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
        for r in 0..self.requests.len() {
            let req = &self.requests[r];
            if req.result.is_none() && !self.nodes[req.node].results_dropped {
                let msg = format!(
                    "request {} to node {} never got its final result ({} attempts, last at t={:.3}s)",
                    req.request_id,
                    req.node,
                    req.attempts,
                    secs(req.last_sent)
                );
                return self.fail(msg);
            }
        }
    }

    // ----- node driver -----

    /// Calls `f` on node `i`, then drains it and acts on every output until it is idle.
    /// Returns how many outputs it produced.
    fn drive(&mut self, i: usize, f: impl FnOnce(&mut Node<'a>, Instant)) -> usize {
        let now = self.node_now(i);
        let interval = self.nodes[i].node.heartbeat_interval();
        f(&mut self.nodes[i].node, now);
        let slot = &mut self.nodes[i];
        if slot.node.heartbeat_interval() != interval {
            // `set_heartbeat_interval`: the next heartbeat is due one new interval from now.
            let next = now.as_micros() + us(slot.node.heartbeat_interval());
            slot.heartbeat_due_by = Some(next);
            self.log(&format!("n{i}"), || "heartbeat interval changed".into());
        }
        let mut produced = 0;
        loop {
            let acts = self.drain(i);
            if acts.is_empty() {
                break;
            }
            produced += acts.len();
            for act in acts {
                self.act(i, act);
            }
        }
        self.after_step(i);
        self.refresh_timer(i);
        produced
    }

    /// Re-files node `i`'s deadline after something may have moved it.
    fn refresh_timer(&mut self, i: usize) {
        let deadline = self.node_deadline(i);
        let Some(filed) = self.timer_of.get_mut(i) else { return };
        if *filed != deadline {
            if let Some(old) = filed.take() {
                self.timers.remove(&(old, i));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, i));
            }
            *filed = deadline;
        }
    }

    fn drain(&mut self, i: usize) -> Vec<Act> {
        let mut acts = Vec::new();
        while let Some(out) = self.nodes[i].node.poll_output() {
            acts.push(match out {
                Output::Open => Act::Open,
                Output::Close => Act::Close,
                Output::Transmit(bytes) => Act::Transmit(bytes.to_vec()),
                Output::Event(e) => match e {
                    Event::Connected { session_present } => Act::Connected(session_present),
                    Event::Disconnected { reason, retry_in } => Act::Disconnected(reason, retry_in),
                    Event::HeartbeatDue => Act::HeartbeatDue,
                    Event::Command(c) => Act::Command(
                        c.id,
                        c.name.to_string(),
                        c.request_id.to_string(),
                        c.parameters.as_raw().as_str().to_string(),
                    ),
                    Event::MessagesDropped { heartbeats, results } => {
                        if results > 0 {
                            Act::Dropped
                        } else {
                            Act::Note(format!("dropped {heartbeats} heartbeats"))
                        }
                    }
                    other => Act::Note(format!("{other:?}")),
                },
            });
        }
        acts
    }

    fn act(&mut self, i: usize, act: Act) {
        let who = format!("n{i}");
        match act {
            Act::Open => {
                let slot = &mut self.nodes[i];
                if slot.conn.is_some() || slot.opening.is_some() {
                    return self.fail(format!("node {i} asked for a transport while one is up or opening"));
                }
                let node_now = self.now + slot.offset;
                if let Some((node_due, due)) = slot.reconnect_at.take() {
                    if node_now < node_due || self.now > due {
                        let msg = format!(
                            "node {i} reconnected at t={:.3}s, not after its announced backoff (due t={:.3}s)",
                            secs(self.now),
                            secs(due)
                        );
                        return self.fail(msg);
                    }
                }
                slot.open_seq += 1;
                slot.opening = Some(slot.open_seq);
                let attempt = slot.open_seq;
                self.log(&who, || "open transport".into());
                let t = self.now + self.rng.range(1_000, 30_000);
                self.at(t, Ev::OpenDone(i, attempt));
            }
            Act::Close => {
                let slot = &mut self.nodes[i];
                slot.opening = None;
                self.log(&who, || "close transport".into());
                if let Some(c) = self.nodes[i].conn.take() {
                    self.close_from_node(c);
                }
            }
            Act::Transmit(bytes) => {
                let Some(c) = self.nodes[i].conn else {
                    return self.fail(format!("node {i} transmitted {} bytes with no transport", bytes.len()));
                };
                if self.nodes[i].awaiting_register {
                    if let Ok(Some(Packet::Publish(p))) = mqttrs::decode_slice(&bytes) {
                        if p.topic_name == self.nodes[i].register_topic && !p.payload.is_empty() {
                            self.nodes[i].awaiting_register = false;
                        }
                    }
                }
                self.log(&who, || format!("-> {}", describe(&bytes)));
                self.send(c, TO_BROKER, bytes);
            }
            Act::Connected(session_present) => {
                self.stats.connects += 1;
                let now = self.now + self.nodes[i].offset;
                let slot = &mut self.nodes[i];
                slot.connected = true;
                slot.awaiting_register = true;
                slot.heartbeat_due_by = Some(slot.heartbeat_due_by.map_or(now, |due| due.max(now)));
                self.log(&who, || format!("connected, session present {session_present}"));
            }
            Act::Disconnected(reason, retry_in) => {
                self.stats.disconnects += 1;
                let slot = &mut self.nodes[i];
                slot.connected = false;
                slot.reconnect_at = Some((self.now + slot.offset + us(retry_in), self.now + us(retry_in)));
                self.log(&who, || {
                    format!("disconnected ({reason}), retry in {:.3}s", retry_in.as_micros() as f64 / 1e6)
                });
                let (min, max) = (self.cfg.node.reconnect_min, self.cfg.node.reconnect_max);
                if retry_in < min || retry_in > max {
                    let [d, lo, hi] = [retry_in, min, max].map(|d| d.as_micros() as f64 / 1e6);
                    self.fail(format!("node {i}: backoff {d:.6}s outside [{lo}s, {hi}s]"));
                }
            }
            Act::HeartbeatDue => {
                let now = self.node_now(i);
                let metrics = Metrics { cpu_centipercent: 250, memory_mb: 64, threads: 4, custom: &[] };
                match self.nodes[i].node.send_heartbeat(now, &metrics) {
                    Ok(true) => {
                        self.stats.heartbeats += 1;
                        let t = now.as_micros();
                        let slot = &mut self.nodes[i];
                        if let Some(due) = slot.heartbeat_due_by.filter(|&d| slot.connected && t > d) {
                            let late = (t - due) as f64 / 1e6;
                            return self.fail(format!("node {i}: heartbeat {late:.3}s late"));
                        }
                        slot.heartbeat_due_by = Some(t + us(slot.node.heartbeat_interval()));
                    }
                    Ok(false) => {}
                    Err(e) => self.fail(format!("node {i}: send_heartbeat failed: {e}")),
                }
            }
            Act::Command(id, name, request_id, parameters) => {
                self.stats.executed += 1;
                let runs = self.nodes[i].executed.entry(request_id.clone()).or_insert(0);
                *runs += 1;
                if *runs > 1 {
                    return self
                        .fail(format!("node {i}: command {name} request_id {request_id} handed to the handler twice"));
                }
                self.log(&who, || format!("command {name} {request_id} {parameters}"));
                if let Some(reply) = self.handler.on_command(i, &name, &request_id, &parameters, &mut self.rng) {
                    let t = self.now + us(reply.after);
                    self.at(t, Ev::Complete(i, id, reply));
                }
            }
            Act::Note(note) => self.log(&who, || note),
            Act::Dropped => {
                self.nodes[i].results_dropped = true;
                self.log(&who, || "outbox full: results dropped (exempt from the result check)".into());
            }
        }
    }

    fn after_step(&mut self, i: usize) {
        let now = self.now + self.nodes[i].offset;
        let slot = &self.nodes[i];
        if slot.awaiting_register {
            return self.fail(format!("node {i}: CONNACK accepted but no register publish followed"));
        }
        if slot.connected && slot.node.is_connected() {
            if let Some(due) = slot.heartbeat_due_by.filter(|&d| now > d) {
                self.fail(format!(
                    "node {i}: connected but no heartbeat for {:.3}s past due",
                    (now - due) as f64 / 1e6
                ));
            }
        }
    }

    fn open_done(&mut self, i: usize, attempt: u64) {
        if self.nodes[i].opening != Some(attempt) {
            return;
        }
        self.nodes[i].opening = None;
        if !self.broker.up {
            self.log(&format!("n{i}"), || "transport refused: broker down".into());
            self.drive(i, |node, now| node.handle_disconnected(now));
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let conn = Conn {
            node: i,
            queue: [VecDeque::new(), VecDeque::new()],
            last: [self.now; 2],
            silent: [false; 2],
            node_open: true,
            broker_open: true,
            reset: false,
            rx: Vec::new(),
            client: None,
            keep_alive: 0,
            will: None,
            last_rx: self.now,
            clean: false,
        };
        self.conns.insert(id, conn);
        self.nodes[i].conn = Some(id);
        self.log(&format!("n{i}"), || format!("transport up (conn {id})"));
        self.drive(i, |node, now| node.handle_connected(now));
    }

    fn node_input(&mut self, i: usize, bytes: Vec<u8>) {
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() && self.failure.is_none() {
            let mut taken = 0;
            // Odd nodes read straight into the core's buffer, even ones hand it a slice: both
            // input paths face the same chaos.
            let in_place = i % 2 == 1;
            let produced = self.drive(i, |node, now| {
                taken = if in_place {
                    let room = node.receive_buffer();
                    let n = room.len().min(rest.len());
                    room[..n].copy_from_slice(&rest[..n]);
                    node.handle_received(now, n);
                    n
                } else {
                    node.handle_input(now, rest)
                };
            });
            if taken == 0 && produced == 0 {
                return self.fail(format!("node {i}: took no bytes and produced nothing"));
            }
            rest = &rest[taken..];
        }
    }

    // ----- network -----

    fn latency(&mut self) -> T {
        self.rng.range(1_000, 20_000)
    }

    fn send(&mut self, id: u64, dir: usize, bytes: Vec<u8>) {
        self.stats.bytes += bytes.len() as u64;
        let faulty = self.faulty();
        let f = self.cfg.faults;
        let Some(conn) = self.conns.get(&id) else { return };
        let sender_open = if dir == TO_BROKER { conn.node_open } else { conn.broker_open };
        if !sender_open || conn.silent[dir] || conn.reset {
            return;
        }
        let mut pieces = vec![bytes];
        if faulty && self.rng.chance(f.split) && pieces[0].len() > 1 {
            let whole = pieces.pop().unwrap_or_default();
            let cuts = self.rng.range(1, 3);
            let mut at: Vec<usize> = (0..cuts).map(|_| 1 + self.rng.below(whole.len() as u64 - 1) as usize).collect();
            at.sort_unstable();
            at.dedup();
            let mut from = 0;
            for cut in at.into_iter().chain([whole.len()]) {
                pieces.push(whole[from..cut].to_vec());
                from = cut;
            }
        }
        for piece in pieces {
            let mut t = self.now + self.latency();
            if faulty && self.rng.chance(f.delay) {
                t += self.rng.below(us(f.max_delay) + 1);
            }
            let Some(conn) = self.conns.get_mut(&id) else { return };
            t = t.max(conn.last[dir]);
            conn.last[dir] = t;
            conn.queue[dir].push_back((t, piece));
            self.at(t, Ev::Arrive(id, dir));
        }
    }

    fn arrive(&mut self, id: u64, dir: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let mut bytes = Vec::new();
        while conn.queue[dir].front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, piece)) = conn.queue[dir].pop_front() {
                bytes.extend_from_slice(&piece);
            }
        }
        if bytes.is_empty() {
            return;
        }
        let node = conn.node;
        if dir == TO_NODE {
            if self.nodes[node].conn == Some(id) {
                self.node_input(node, bytes);
            }
        } else if conn.broker_open {
            self.broker_input(id, bytes);
        }
    }

    /// Schedules the close of `id` to reach the side `dir` points at, after the bytes in flight.
    fn fin_after_data(&mut self, id: u64, dir: usize) {
        let lat = self.latency();
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if conn.silent[dir] {
            return;
        }
        let t = (now + lat).max(conn.last[dir]);
        self.at(t, Ev::Fin(id, dir));
    }

    fn fin(&mut self, id: u64, dir: usize) {
        let Some(conn) = self.conns.get(&id) else { return };
        let node = conn.node;
        if dir == TO_NODE {
            if self.nodes[node].conn == Some(id) {
                self.nodes[node].conn = None;
                self.log(&format!("n{node}"), || format!("transport closed (conn {id})"));
                self.drive(node, |n, now| n.handle_disconnected(now));
            }
        } else if conn.broker_open {
            self.log("broker", || format!("conn {id} closed by peer"));
            self.broker_close(id, true);
        }
        self.gc(id);
    }

    fn close_from_node(&mut self, id: u64) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.node_open = false;
            conn.queue[TO_NODE].clear();
        }
        self.fin_after_data(id, TO_BROKER);
        self.gc(id);
    }

    /// A connection reset: in-flight bytes are lost and both sides hear of it.
    fn reset(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.queue = [VecDeque::new(), VecDeque::new()];
        conn.silent = [false; 2];
        conn.reset = true;
        self.log("fault", || format!("conn {id} reset"));
        self.fin_after_data(id, TO_NODE);
        self.fin_after_data(id, TO_BROKER);
    }

    fn gc(&mut self, id: u64) {
        let node_gone = |w: &Self, c: &Conn| w.nodes[c.node].conn != Some(id);
        if let Some(c) = self.conns.get(&id) {
            if !c.broker_open && (!c.node_open || node_gone(self, c)) && c.queue.iter().all(VecDeque::is_empty) {
                // Keep it while a Fin is pending: those look it up and simply find nothing.
                self.conns.remove(&id);
            }
        }
    }

    // ----- faults -----

    fn count(&mut self, fault: Fault) {
        self.stats.faults[fault as usize] += 1;
    }

    /// Schedules the next `fault` of its kind, if its rate is not zero.
    fn schedule_fault(&mut self, fault: Fault) {
        let dt = self.rng.exp_micros(fault.rate(&self.cfg.faults, self.nodes.len()));
        if dt != u64::MAX {
            self.at(self.now + dt, Ev::Fault(fault));
        }
    }

    /// A timed fault strikes (if faults are still on), and the next of its kind is scheduled.
    fn fault(&mut self, fault: Fault) {
        if !self.faulty() {
            return;
        }
        self.schedule_fault(fault);
        let f = self.cfg.faults;
        let live: Vec<u64> =
            self.conns.iter().filter(|(_, c)| c.node_open && c.broker_open).map(|(&id, _)| id).collect();
        match fault {
            Fault::Reset | Fault::HalfOpen if !live.is_empty() => {
                let id = live[self.rng.below(live.len() as u64) as usize];
                self.count(fault);
                if fault == Fault::Reset {
                    self.reset(id);
                } else {
                    let dir = self.rng.below(2) as usize;
                    self.log("fault", || {
                        format!("conn {id} half-open: {} silent", ["broker->node", "node->broker"][dir])
                    });
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.silent[dir] = true;
                        c.queue[dir].clear();
                    }
                }
            }
            Fault::BrokerRestart if self.broker.up => {
                self.count(Fault::BrokerRestart);
                let lose = self.rng.chance(f.lose_sessions);
                let down = self.rng.range(1_000_000, 20_000_000);
                self.log("fault", || {
                    format!(
                        "broker restarts, down {:.3}s, sessions {}",
                        down as f64 / 1e6,
                        if lose { "lost" } else { "kept" }
                    )
                });
                let open: Vec<u64> = self.conns.iter().filter(|(_, c)| c.broker_open).map(|(&id, _)| id).collect();
                for id in open {
                    // A crash publishes no wills.
                    self.broker_close(id, false);
                }
                self.broker.up = false;
                self.broker.generation += 1;
                if lose {
                    self.count(Fault::SessionsLost);
                    self.broker.sessions.clear();
                }
                let generation = self.broker.generation;
                self.at(self.now + down, Ev::BrokerUp(generation));
            }
            Fault::ClockJump => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                let jump = self.rng.range(1, us(f.max_clock_jump).max(1));
                self.count(Fault::ClockJump);
                self.nodes[i].offset += jump;
                self.refresh_timer(i);
                // The heartbeat promise is about time that passed, not about the clock's jump.
                if let Some(due) = &mut self.nodes[i].heartbeat_due_by {
                    *due += jump;
                }
                self.log("fault", || format!("n{i} clock jumps {:.3}s forward", jump as f64 / 1e6));
                self.drive(i, |node, now| node.handle_timeout(now));
            }
            // No connection to break, the broker already down, or a fault that rides on an
            // occasion and is never scheduled.
            _ => {}
        }
    }

    // ----- broker -----

    fn broker_deadline(&self) -> Option<T> {
        self.conns
            .values()
            .filter(|c| c.broker_open && c.client.is_some() && c.keep_alive > 0)
            .map(|c| c.last_rx + c.keep_alive + c.keep_alive / 2)
            .min()
    }

    fn broker_keepalive(&mut self) {
        let now = self.now;
        let dead: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.broker_open && c.client.is_some() && c.keep_alive > 0)
            .filter(|(_, c)| now >= c.last_rx + c.keep_alive + c.keep_alive / 2)
            .map(|(&id, _)| id)
            .collect();
        for id in dead {
            self.log("broker", || format!("conn {id}: keep-alive expired"));
            self.broker_close(id, true);
        }
    }

    fn broker_send(&mut self, id: u64, bytes: Vec<u8>) {
        self.log("broker", || format!("-> conn {id} {}", describe(&bytes)));
        self.send(id, TO_NODE, bytes);
    }

    /// The broker drops `id`: publishes the will if asked and the client did not DISCONNECT,
    /// and the close reaches the node after the bytes already in flight.
    fn broker_close(&mut self, id: u64, will: bool) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if !conn.broker_open {
            return;
        }
        conn.broker_open = false;
        conn.queue[TO_BROKER].clear();
        let client = conn.client.clone();
        let last_will = if will && !conn.clean { conn.will.take() } else { None };
        let node_open = conn.node_open;
        if let Some(client) = client {
            if self.broker.clients.get(&client) == Some(&id) {
                self.broker.clients.remove(&client);
                if let Some(s) = self.broker.sessions.get_mut(&client) {
                    s.conn = None;
                }
            }
        }
        if let Some((topic, payload, retain)) = last_will {
            self.log("broker", || format!("publishes will on {topic}"));
            self.route(&topic, payload, retain, false);
        }
        if node_open {
            self.fin_after_data(id, TO_NODE);
        }
    }

    fn broker_input(&mut self, id: u64, bytes: Vec<u8>) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.rx.extend_from_slice(&bytes);
        conn.last_rx = now;
        loop {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            if !conn.broker_open {
                return;
            }
            let header = match FixedHeader::parse(&conn.rx) {
                Ok(Some(h)) if h.packet_len() <= conn.rx.len() => h,
                Ok(_) => return,
                Err(e) => {
                    let node = conn.node;
                    return self.fail(format!("node {node} sent a malformed fixed header: {e}"));
                }
            };
            let packet: Vec<u8> = conn.rx.drain(..header.packet_len()).collect();
            self.broker_packet(id, &packet);
            if self.failure.is_some() {
                return;
            }
        }
    }

    fn broker_packet(&mut self, id: u64, bytes: &[u8]) {
        let Some(conn) = self.conns.get(&id) else { return };
        let node = conn.node;
        let packet = match mqttrs::decode_slice(bytes) {
            Ok(Some(p)) => p,
            other => return self.fail(format!("node {node} sent a packet the broker cannot decode: {other:?}")),
        };
        let client = conn.client.clone();
        match (packet, client) {
            (Packet::Connect(c), None) => {
                if self.faulty() && self.rng.chance(self.cfg.faults.refuse_connack) {
                    self.count(Fault::RefusedConnack);
                    self.log("fault", || format!("broker refuses conn {id}"));
                    // Return code 3: server unavailable.
                    self.broker_send(id, wire::connack(false, 3));
                    return self.broker_close(id, false);
                }
                let client = c.client_id.to_string();
                if let Some(&old) = self.broker.clients.get(&client) {
                    self.log("broker", || format!("session takeover: closing conn {old}"));
                    self.broker_close(old, true);
                }
                if c.clean_session {
                    self.broker.sessions.remove(&client);
                }
                let present = !c.clean_session && self.broker.sessions.contains_key(&client);
                let will = c.last_will.map(|w| (w.topic.to_string(), w.message.to_vec(), w.retain));
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.client = Some(client.clone());
                    conn.keep_alive = u64::from(c.keep_alive) * 1_000_000;
                    conn.will = will;
                }
                self.broker.clients.insert(client.clone(), id);
                let session = self.broker.sessions.entry(client.clone()).or_default();
                session.conn = Some(id);
                self.broker_send(id, wire::connack(present, 0));
                // Resume: everything unacknowledged goes out again, DUP if it went out before.
                let resend: Vec<(u16, String, Vec<u8>, bool)> = self
                    .broker
                    .sessions
                    .get_mut(&client)
                    .map(|s| {
                        s.inflight
                            .iter_mut()
                            .map(|(&pid, q)| {
                                let dup = q.sent;
                                q.sent = true;
                                (pid, q.topic.clone(), q.payload.clone(), dup)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (pid, topic, payload, dup) in resend {
                    let publish =
                        wire::Publish { topic: &topic, payload: &payload, pid: Some(pid), dup, retain: false };
                    self.broker_send(id, publish.encode());
                }
            }
            (Packet::Connect(_), Some(_)) => {
                self.fail(format!("node {node} sent a second CONNECT on one connection"));
            }
            (_, None) => self.fail(format!("node {node} sent a packet before CONNECT")),
            (Packet::Subscribe(s), Some(client)) => {
                let topics: Vec<String> = s.topics.iter().map(|t| t.topic_path.as_str().to_string()).collect();
                if let Some(session) = self.broker.sessions.get_mut(&client) {
                    for t in &topics {
                        if !session.subs.contains(t) {
                            session.subs.push(t.clone());
                        }
                    }
                }
                // Every filter granted QoS 1.
                self.broker_send(id, wire::suback(s.pid.get(), &vec![1; topics.len()]));
                let retained: Vec<(String, Vec<u8>)> = self
                    .broker
                    .retained
                    .iter()
                    .filter(|(t, _)| topics.contains(t))
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                for (topic, payload) in retained {
                    self.deliver(&client, &topic, payload, true, true);
                }
            }
            (Packet::Publish(p), Some(_)) => {
                if let Some(pid) = p.qospid.pid() {
                    self.broker_send(id, wire::puback(pid.get()));
                }
                let (topic, payload) = (p.topic_name.to_string(), p.payload.to_vec());
                self.route(&topic, payload, p.retain, false);
            }
            (Packet::Puback(pid), Some(client)) => {
                if let Some(s) = self.broker.sessions.get_mut(&client) {
                    s.inflight.remove(&pid.get());
                }
            }
            (Packet::Pingreq, Some(_)) => self.broker_send(id, wire::pingresp()),
            (Packet::Disconnect, Some(_)) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.clean = true;
                }
                self.broker_close(id, false);
            }
            (other, _) => self.fail(format!("node {node} sent {other:?}, which a node never sends")),
        }
    }

    /// A PUBLISH reaches the broker (from a node, a will or the engine): retained store,
    /// subscribers, and the engine, which sees everything nodes publish.
    fn route(&mut self, topic: &str, payload: Vec<u8>, retain: bool, from_engine: bool) {
        if retain {
            if payload.is_empty() {
                self.broker.retained.remove(topic);
            } else {
                self.broker.retained.insert(topic.to_string(), payload.clone());
            }
        }
        let subscribers: Vec<String> = self
            .broker
            .sessions
            .iter()
            .filter(|(_, s)| s.subs.iter().any(|t| t == topic))
            .map(|(c, _)| c.clone())
            .collect();
        for client in subscribers {
            self.deliver(&client, topic, payload.clone(), true, false);
            if from_engine && self.faulty() && self.rng.chance(self.cfg.faults.duplicate) {
                self.count(Fault::Duplicate);
                self.log("fault", || format!("broker delivers a duplicate to {client}"));
                self.deliver(&client, topic, payload.clone(), true, false);
            }
        }
        if !from_engine {
            self.engine_receive(topic, &payload);
        }
    }

    fn deliver(&mut self, client: &str, topic: &str, payload: Vec<u8>, qos1: bool, retain: bool) {
        let Some(session) = self.broker.sessions.get_mut(client) else { return };
        let conn = session.conn;
        if !qos1 {
            if let Some(id) = conn {
                self.broker_send(
                    id,
                    wire::Publish { topic, payload: &payload, pid: None, dup: false, retain }.encode(),
                );
            }
            return;
        }
        let mut pid = session.next_pid;
        loop {
            pid = pid.checked_add(1).unwrap_or(1);
            if !session.inflight.contains_key(&pid) {
                break;
            }
        }
        session.next_pid = pid;
        let bytes = wire::Publish { topic, payload: &payload, pid: Some(pid), dup: false, retain }.encode();
        session.inflight.insert(pid, Queued { topic: topic.to_string(), payload, sent: conn.is_some() });
        if let Some(id) = conn {
            self.broker_send(id, bytes);
        }
    }

    // ----- engine -----

    fn schedule_engine_new(&mut self) {
        let per_hour = f64::from(self.cfg.commands_per_node) * self.nodes.len() as f64 * 3_600.0
            / (self.cfg.duration.as_micros().max(1) as f64 / 1e6);
        let dt = self.rng.exp_micros(per_hour);
        if dt != u64::MAX && self.now + dt < self.fault_end {
            self.at(self.now + dt, Ev::EngineNew);
        }
    }

    fn engine_new(&mut self) {
        self.schedule_engine_new();
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        if self.nodes[i].requests >= self.cfg.commands_per_node {
            return;
        }
        // One in ten goes to every instance at once, on the broadcast control topic.
        let broadcast = self.rng.below(10) == 0 && self.nodes.iter().all(|s| s.requests < self.cfg.commands_per_node);
        self.stats.broadcasts += u32::from(broadcast);
        let n = self.requests.len();
        let request_id = format!("{}-{n}", if broadcast { "b" } else { "r" });
        let command = match self.rng.below(20) {
            0..=4 => "ping",
            5 | 6 => "status",
            7 if self.cfg.change_heartbeat_interval => "reregister",
            8 if self.cfg.change_heartbeat_interval && !broadcast => "set_heartbeat_interval",
            _ => self.cfg.app_command,
        };
        let parameters = match (command, self.rng.below(5)) {
            ("ping" | "status" | "reregister", _) => "{}".to_string(),
            ("set_heartbeat_interval", _) => {
                // A value this node never had, so the driver sees the change and knows the next
                // heartbeat is due one new interval after it (whatever order retries run in).
                let slot = &mut self.nodes[i];
                slot.intervals_set += 1;
                let mut seconds = 4 + u64::from(slot.intervals_set);
                if seconds >= self.cfg.node.heartbeat_interval.as_secs() {
                    seconds += 1;
                }
                format!("{{\"seconds\":{seconds}}}")
            }
            (_, 0) => format!("{{\"text\":\"t{n}\",\"timeout_ms\":{}}}", self.rng.range(500, 5_000)),
            _ => format!("{{\"text\":\"t{n}\"}}"),
        };
        let payload = wire::command_json(command, &request_id, &parameters);
        let targets: Vec<usize> = if broadcast { (0..self.nodes.len()).collect() } else { vec![i] };
        for node in targets {
            self.stats.requests += 1;
            self.nodes[node].requests += 1;
            self.by_request_id.insert((request_id.clone(), node), self.requests.len());
            self.requests.push(Request {
                node,
                request_id: request_id.clone(),
                payload: payload.clone().into_bytes(),
                last_sent: self.now,
                attempts: 0,
                result: None,
            });
        }
        if broadcast {
            for r in n..self.requests.len() {
                self.requests[r].attempts += 1;
            }
            let topic = self.broadcast_topic.clone();
            self.engine_send(&topic, payload.into_bytes(), "every node");
        } else {
            self.engine_publish(n);
        }
    }

    /// Publishes a control message, or loses it if the broker is down.
    fn engine_send(&mut self, topic: &str, payload: Vec<u8>, to: &str) {
        self.stats.publishes += 1;
        let up = self.broker.up;
        self.log("engine", || {
            format!(
                "publish {} to {to}{}",
                String::from_utf8_lossy(&payload),
                if up { "" } else { " (broker down: lost)" }
            )
        });
        if up {
            self.route(topic, payload, false, true);
        }
    }

    /// Sends request `r` (again) on its node's instance control topic; a broadcast request that
    /// one node did not answer is retried on that node's own topic: the key is the request id.
    fn engine_publish(&mut self, r: usize) {
        let req = &mut self.requests[r];
        req.attempts += 1;
        req.last_sent = self.now;
        let (node, payload) = (req.node, req.payload.clone());
        let topic = self.nodes[node].control_topic.clone();
        self.engine_send(&topic, payload, &format!("n{node}"));
    }

    fn engine_retry(&mut self) {
        let retry = us(self.cfg.engine_retry);
        self.at(self.now + retry, Ev::EngineRetry);
        for r in 0..self.requests.len() {
            if self.requests[r].result.is_none() && self.requests[r].last_sent + retry <= self.now {
                self.engine_publish(r);
            }
        }
    }

    fn engine_receive(&mut self, topic: &str, payload: &[u8]) {
        if topic.ends_with("/status") && payload.windows(15).any(|w| w == b"\"status\":\"lost\"") {
            self.stats.wills += 1;
        }
        if !topic.ends_with("/result") {
            return;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return self.fail(format!("result on {topic} is not JSON: {}", String::from_utf8_lossy(payload)));
        };
        if json["state"] != "done" {
            return;
        }
        self.stats.results += 1;
        let rid = json["request_id"].as_str().unwrap_or_default();
        let from = self.nodes.iter().position(|s| json["instance_id"] == s.instance.as_str());
        let Some(&r) = from.and_then(|node| self.by_request_id.get(&(rid.to_string(), node))) else {
            return self.fail(format!("result for request_id {rid} from {}, which was not asked", json["instance_id"]));
        };
        let req = &self.requests[r];
        let instance = &self.nodes[req.node].instance;
        if !topic.contains(instance.as_str()) {
            return self.fail(format!("result for {rid} from {instance} published on {topic}"));
        }
        match &req.result {
            None => {
                self.log("engine", || format!("result {rid}: {}", json["message"]));
                self.requests[r].result = Some(payload.to_vec());
            }
            Some(first) if first != payload => {
                let msg = format!(
                    "request {rid} got two different final results (run twice?):\n  {}\n  {}",
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(payload)
                );
                self.fail(msg);
            }
            Some(_) => {}
        }
    }
}

/// One line per packet for the trace.
fn describe(bytes: &[u8]) -> String {
    match mqttrs::decode_slice(bytes) {
        Ok(Some(p)) => match p {
            Packet::Connect(c) => {
                format!("CONNECT {} clean={} ka={}", c.client_id, u8::from(c.clean_session), c.keep_alive)
            }
            Packet::Connack(c) => format!("CONNACK sp={} {:?}", u8::from(c.session_present), c.code),
            Packet::Publish(p) => format!(
                "PUBLISH {}{}{} {} ({} B){}",
                p.qospid.pid().map_or("q0".to_string(), |pid| format!("q1 pid={}", pid.get())),
                if p.dup { " dup" } else { "" },
                if p.retain { " retain" } else { "" },
                p.topic_name,
                p.payload.len(),
                if p.topic_name.ends_with("/control") {
                    format!(" {}", String::from_utf8_lossy(p.payload))
                } else {
                    String::new()
                }
            ),
            Packet::Puback(pid) => format!("PUBACK {}", pid.get()),
            Packet::Subscribe(s) => format!("SUBSCRIBE pid={} ({} filters)", s.pid.get(), s.topics.len()),
            Packet::Suback(s) => format!("SUBACK pid={}", s.pid.get()),
            other => format!("{other:?}"),
        },
        other => format!("undecodable {other:?} ({} B)", bytes.len()),
    }
}
