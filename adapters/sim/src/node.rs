//! The node driver: what an application around each real `subnodesync_core::Node` does (feed
//! it time and bytes, open and close its transport, run its commands, send its heartbeats), and
//! the invariants about what the node does in return: a `register` after every CONNACK,
//! heartbeats on time, backoff inside its bounds, and every request run at most once.

use std::collections::BTreeMap;

use mqttrs::Packet;
use subnodesync_core::{
    Buffers, Command, CommandId, Config, ConfigError, DisconnectReason, Duration, Event, Instant, Metrics, Node,
    NodeError, Outcome, Output,
};

use crate::network::{describe, ConnId, Connection, Direction};
use crate::world::{micros, secs, Micros, SimEvent, World, START};
use crate::{Reply, SimConfig};

/// 2024-01-01T12:00:00Z, the wall clock every node starts with.
const WALL: u64 = 1_704_110_400_000_000;

/// One node and what its driver knows about it.
pub(crate) struct SimNode<'a> {
    pub(crate) node: Node<'a>,
    pub(crate) instance: String,
    pub(crate) register_topic: String,
    pub(crate) control_topic: String,
    /// How far the node's clock runs ahead of virtual time: clock jumps add to it.
    pub(crate) clock_offset: Micros,
    /// The connection that is the node's transport, while it has one.
    pub(crate) conn: Option<ConnId>,
    /// The attempt whose transport is being opened: an `OpenDone` for any other is stale.
    opening: Option<u64>,
    open_attempts: u64,
    /// Between the node's `Connected` and `Disconnected` events.
    connected: bool,
    /// The latest the next heartbeat may go out while connected (node time): one interval
    /// after the last one or after `set_heartbeat_interval`, at once when overdue at CONNACK.
    pub(crate) heartbeat_due_by: Option<Micros>,
    /// After a disconnect: when the node must ask for a transport again, in its own time and
    /// in virtual time (a clock jump may bring it earlier in virtual time, never later).
    reconnect_at: Option<(Micros, Micros)>,
    /// A CONNACK was accepted and the node has not yet published its `register`.
    awaiting_register: bool,
    /// How often each request id reached the handler: twice is a failure.
    runs: BTreeMap<String, u32>,
    /// Requests the engine addressed to this node.
    pub(crate) requests: u32,
    /// `set_heartbeat_interval` requests so far, so each one asks for a value never used before.
    pub(crate) intervals_set: u32,
    /// The outbox overflowed and lost results: the final result check leaves this node out.
    pub(crate) results_dropped: bool,
}

impl<'a> SimNode<'a> {
    /// Node `index` of `config`, with its own pid (1000 + index) and jitter seed.
    pub(crate) fn new(index: usize, config: &SimConfig, buffers: Buffers<'a>, seed: u64) -> Result<Self, ConfigError> {
        let node_config = Config { pid: 1000 + index as u32, ..config.node };
        let now = Instant::from_micros(START);
        let mut node = Node::new(node_config, buffers, seed, now)?;
        node.set_wall_clock(now, WALL);
        let instance = node.instance_id().to_string();
        let base = format!("{}/{}/{}", node_config.topic_prefix, node_config.node_name, instance);
        Ok(Self {
            node,
            register_topic: format!("{base}/register"),
            control_topic: format!("{base}/control"),
            instance,
            clock_offset: 0,
            conn: None,
            opening: None,
            open_attempts: 0,
            connected: false,
            heartbeat_due_by: None,
            reconnect_at: None,
            awaiting_register: false,
            runs: BTreeMap::new(),
            requests: 0,
            intervals_set: 0,
            results_dropped: false,
        })
    }

    /// Virtual time `now` on this node's clock.
    fn local(&self, now: Micros) -> Micros {
        now + self.clock_offset
    }
}

/// One output of a node, copied out so the node can be borrowed again while acting on it.
pub(crate) enum Action {
    Open,
    Close,
    Transmit(Vec<u8>),
    Connected {
        session_present: bool,
    },
    Disconnected {
        reason: DisconnectReason,
        retry_in: Duration,
    },
    HeartbeatDue,
    /// Boxed: rare and large, it would make every action as large.
    Command(Box<OwnedCommand>),
    DesiredChanged,
    Note(String),
    ResultsDropped,
}

/// A command event's fields, out of the node's borrowed buffers.
pub(crate) struct OwnedCommand {
    id: CommandId,
    name: String,
    request_id: String,
    /// The JSON object text.
    parameters: String,
}

impl From<Command<'_>> for OwnedCommand {
    fn from(command: Command<'_>) -> Self {
        Self {
            id: command.id,
            name: command.name.to_string(),
            request_id: command.request_id.to_string(),
            parameters: command.parameters.as_raw().as_str().to_string(),
        }
    }
}

impl<'a> World<'a, '_> {
    pub(crate) fn node_now(&self, i: usize) -> Instant {
        Instant::from_micros(self.nodes[i].local(self.now))
    }

    /// Node `i`'s next deadline in virtual time.
    pub(crate) fn node_deadline(&self, i: usize) -> Option<Micros> {
        let sim_node = &self.nodes[i];
        sim_node.node.poll_timeout().map(|d| d.as_micros().saturating_sub(sim_node.clock_offset))
    }

    /// Calls `f` on node `i`, then drains it and acts on every output until it is idle.
    /// Returns how many outputs it produced.
    pub(crate) fn drive(&mut self, i: usize, f: impl FnOnce(&mut Node<'a>, Instant)) -> usize {
        let now = self.node_now(i);
        let interval = self.nodes[i].node.heartbeat_interval();
        f(&mut self.nodes[i].node, now);
        self.note_interval(i, interval, now);
        let mut produced = 0;
        // The list is lent out while its actions run; a drive nested in one of them starts a
        // list of its own.
        let mut actions = std::mem::take(&mut self.actions);
        loop {
            self.drain(i, &mut actions);
            if actions.is_empty() {
                break;
            }
            produced += actions.len();
            for action in actions.drain(..) {
                self.act(i, action);
            }
        }
        self.actions = actions;
        self.after_step(i);
        self.refresh_deadline(i);
        produced
    }

    /// After `set_heartbeat_interval` or desired state changed the interval from `before`, the
    /// next heartbeat is due one new interval from `now`.
    fn note_interval(&mut self, i: usize, before: Duration, now: Instant) {
        let sim_node = &mut self.nodes[i];
        if sim_node.node.heartbeat_interval() != before {
            let next = now.as_micros() + micros(sim_node.node.heartbeat_interval());
            sim_node.heartbeat_due_by = Some(next);
            self.log_node(i, || "heartbeat interval changed".into());
        }
    }

    /// Re-files node `i`'s deadline after something may have moved it.
    pub(crate) fn refresh_deadline(&mut self, i: usize) {
        let deadline = self.node_deadline(i);
        self.deadlines.set(i, deadline);
    }

    /// Copies node `i`'s outputs into `actions` (empty on entry) until it has none left.
    fn drain(&mut self, i: usize, actions: &mut Vec<Action>) {
        while let Some(output) = self.nodes[i].node.poll_output() {
            actions.push(match output {
                Output::Open => Action::Open,
                Output::Close => Action::Close,
                Output::Transmit(bytes) => Action::Transmit(self.pool.copy(bytes)),
                Output::Event(event) => match event {
                    Event::Connected { session_present } => Action::Connected { session_present },
                    Event::Disconnected { reason, retry_in } => Action::Disconnected { reason, retry_in },
                    Event::HeartbeatDue => Action::HeartbeatDue,
                    Event::Command(command) => Action::Command(Box::new(command.into())),
                    Event::DesiredChanged { .. } => Action::DesiredChanged,
                    Event::MessagesDropped { heartbeats, results } => {
                        if results > 0 {
                            Action::ResultsDropped
                        } else {
                            Action::Note(format!("dropped {heartbeats} heartbeats"))
                        }
                    }
                    other => Action::Note(format!("{other:?}")),
                },
            });
        }
    }

    fn act(&mut self, i: usize, action: Action) {
        match action {
            Action::Open => self.open_transport(i),
            Action::Close => {
                self.nodes[i].opening = None;
                self.log_node(i, || "close transport".into());
                if let Some(conn) = self.nodes[i].conn.take() {
                    self.close_from_node(conn);
                }
            }
            Action::Transmit(bytes) => self.transmit(i, bytes),
            Action::Connected { session_present } => {
                self.stats.connects += 1;
                let now = self.nodes[i].local(self.now);
                let sim_node = &mut self.nodes[i];
                sim_node.connected = true;
                sim_node.awaiting_register = true;
                sim_node.heartbeat_due_by = Some(sim_node.heartbeat_due_by.map_or(now, |due| due.max(now)));
                self.log_node(i, || format!("connected, session present {session_present}"));
            }
            Action::Disconnected { reason, retry_in } => self.disconnected(i, reason, retry_in),
            Action::HeartbeatDue => self.heartbeat(i),
            Action::Command(command) => self.command(i, *command),
            Action::DesiredChanged => {
                let (interval, now) = (self.nodes[i].node.heartbeat_interval(), self.node_now(i));
                self.apply_desired(i);
                self.note_interval(i, interval, now);
            }
            Action::Note(note) => self.log_node(i, || note),
            Action::ResultsDropped => {
                self.nodes[i].results_dropped = true;
                self.log_node(i, || "outbox full: results dropped (exempt from the result check)".into());
            }
        }
    }

    fn open_transport(&mut self, i: usize) {
        let sim_node = &mut self.nodes[i];
        if sim_node.conn.is_some() || sim_node.opening.is_some() {
            return self.fail(format!("node {i} asked for a transport while one is up or opening"));
        }
        let node_now = sim_node.local(self.now);
        if let Some((node_due, due)) = sim_node.reconnect_at.take() {
            if node_now < node_due || self.now > due {
                let message = format!(
                    "node {i} reconnected at t={:.3}s, not after its announced backoff (due t={:.3}s)",
                    secs(self.now),
                    secs(due)
                );
                return self.fail(message);
            }
        }
        sim_node.open_attempts += 1;
        sim_node.opening = Some(sim_node.open_attempts);
        let attempt = sim_node.open_attempts;
        self.log_node(i, || "open transport".into());
        let at = self.now + self.rng.range(1_000, 30_000);
        self.at(at, SimEvent::OpenDone { node: i, attempt });
    }

    fn transmit(&mut self, i: usize, bytes: Vec<u8>) {
        let Some(conn) = self.nodes[i].conn else {
            let message = format!("node {i} transmitted {} bytes with no transport", bytes.len());
            self.pool.give(bytes);
            return self.fail(message);
        };
        if self.nodes[i].awaiting_register {
            if let Ok(Some(Packet::Publish(p))) = mqttrs::decode_slice(&bytes) {
                if p.topic_name == self.nodes[i].register_topic && !p.payload.is_empty() {
                    self.nodes[i].awaiting_register = false;
                }
            }
        }
        self.log_node(i, || format!("-> {}", describe(&bytes)));
        self.send(conn, Direction::ToBroker, bytes);
    }

    fn disconnected(&mut self, i: usize, reason: DisconnectReason, retry_in: Duration) {
        self.stats.disconnects += 1;
        let now = self.now;
        let sim_node = &mut self.nodes[i];
        sim_node.connected = false;
        sim_node.reconnect_at = Some((sim_node.local(now) + micros(retry_in), now + micros(retry_in)));
        self.log_node(i, || format!("disconnected ({reason}), retry in {:.3}s", retry_in.as_micros() as f64 / 1e6));
        let (min, max) = (self.config.node.reconnect_min, self.config.node.reconnect_max);
        if retry_in < min || retry_in > max {
            let [d, lo, hi] = [retry_in, min, max].map(|d| d.as_micros() as f64 / 1e6);
            self.fail(format!("node {i}: backoff {d:.6}s outside [{lo}s, {hi}s]"));
        }
    }

    fn heartbeat(&mut self, i: usize) {
        let now = self.node_now(i);
        let metrics = Metrics { cpu_centipercent: 250, memory_mb: 64, threads: 4, custom: &[] };
        match self.nodes[i].node.send_heartbeat(now, &metrics) {
            Ok(true) => {
                self.stats.heartbeats += 1;
                let t = now.as_micros();
                let sim_node = &mut self.nodes[i];
                if let Some(due) = sim_node.heartbeat_due_by.filter(|&d| sim_node.connected && t > d) {
                    let late = (t - due) as f64 / 1e6;
                    return self.fail(format!("node {i}: heartbeat {late:.3}s late"));
                }
                sim_node.heartbeat_due_by = Some(t + micros(sim_node.node.heartbeat_interval()));
            }
            Ok(false) => {}
            Err(e) => self.fail(format!("node {i}: send_heartbeat failed: {e}")),
        }
    }

    /// Hands a command to the handler, the first time its request id reaches node `i`.
    fn command(&mut self, i: usize, command: OwnedCommand) {
        let OwnedCommand { id, name, request_id, parameters } = command;
        self.stats.executed += 1;
        let runs = self.nodes[i].runs.entry(request_id.clone()).or_insert(0);
        *runs += 1;
        if *runs > 1 {
            return self.fail(format!("node {i}: command {name} request_id {request_id} handed to the handler twice"));
        }
        self.log_node(i, || format!("command {name} {request_id} {parameters}"));
        if let Some(reply) = self.handler.on_command(i, &name, &request_id, &parameters, &mut self.rng) {
            let at = self.now + micros(reply.after);
            self.at(at, SimEvent::Complete { node: i, id, reply: Box::new(reply) });
        }
    }

    /// The invariants that must hold whenever node `i` is idle again.
    fn after_step(&mut self, i: usize) {
        let sim_node = &self.nodes[i];
        let now = sim_node.local(self.now);
        if sim_node.awaiting_register {
            return self.fail(format!("node {i}: CONNACK accepted but no register publish followed"));
        }
        if sim_node.connected && sim_node.node.is_connected() {
            if let Some(due) = sim_node.heartbeat_due_by.filter(|&d| now > d) {
                self.fail(format!(
                    "node {i}: connected but no heartbeat for {:.3}s past due",
                    (now - due) as f64 / 1e6
                ));
            }
        }
    }

    pub(crate) fn open_done(&mut self, i: usize, attempt: u64) {
        if self.nodes[i].opening != Some(attempt) {
            return;
        }
        self.nodes[i].opening = None;
        if !self.broker.up {
            self.log_node(i, || "transport refused: broker down".into());
            self.drive(i, |node, now| node.handle_disconnected(now));
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Connection::new(i, self.now));
        self.nodes[i].conn = Some(id);
        self.log_node(i, || format!("transport up (conn {id})"));
        self.drive(i, |node, now| node.handle_connected(now));
    }

    /// Bytes reach node `i`, fed until it has taken them all.
    pub(crate) fn node_input(&mut self, i: usize, bytes: &[u8]) {
        let mut rest = bytes;
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

    /// The handler's reply to a command is due.
    pub(crate) fn complete(&mut self, i: usize, id: CommandId, reply: Reply) {
        let Reply { success, message, data, .. } = reply;
        self.log_node(i, || format!("handler completes: {message}"));
        self.drive(i, |node, now| {
            let outcome = Outcome { success, message: &message, data: data.as_deref().map(str::as_bytes) };
            match node.complete(now, id, outcome) {
                Ok(()) | Err(NodeError::UnknownRequest) => {}
                Err(e) => panic!("complete failed: {e}"),
            }
        });
    }
}
