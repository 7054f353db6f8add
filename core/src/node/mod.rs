//! The node: one MQTT connection's worth of protocol, driven by bytes and instants.
//!
//! Lifecycle, as a caller sees it:
//!
//! 1. [`Node::new`] queues [`Output::Open`]: open a transport (TCP, TLS, ...) to the broker and
//!    call [`Node::handle_connected`], or [`Node::handle_disconnected`] if that failed.
//! 2. The node sends CONNECT (clean session off, keep-alive, credentials, last will `lost`),
//!    and after CONNACK subscribes to both control topics, publishes its register message and
//!    status `online`, and resends anything still unacknowledged from an earlier connection.
//! 3. Every heartbeat interval it raises [`Event::HeartbeatDue`]; answer with
//!    [`Node::send_heartbeat`] and freshly sampled [`Metrics`].
//! 4. Control messages become built-in actions or [`Event::Command`]; answer with
//!    [`Node::progress`] and [`Node::complete`].
//! 5. When the transport fails, or the node closes it ([`Output::Close`]) after a keep-alive
//!    timeout, a refused CONNACK or a protocol violation, it waits a jittered, growing delay and
//!    asks for a new transport with [`Output::Open`].
//! 6. [`Node::stop`] publishes status `offline`, clears the retained register message, waits for
//!    their PUBACKs, sends DISCONNECT and ends with [`Event::Stopped`].

mod builtin;
pub(crate) mod command;
mod config;
mod control;
pub(crate) mod desired;
mod link;
mod output;
mod publish;

use core::fmt::Write as _;

pub use builtin::BUILT_INS;
pub use command::{check_command_name, Command, CommandId, Outcome, COMMAND_MAX, RECENT_IDS, REQUEST_ID_MAX};
pub use config::{Config, HOSTNAME_MAX, INSTANCE_ID_MAX, NODE_NAME_MAX, PREFIX_MAX, TOPIC_MAX};
pub use desired::{
    check_setting_key, DesiredScope, Rejection, REASON_MAX, SETTINGS_MAX, SETTING_KEY_MAX, SETTING_VALUE_MAX,
};
pub use output::{ControlTopic, DisconnectReason, Event, NodeStats, Output};

use self::command::{parse_data, Commands, ReplyTo};
use self::desired::Desired;
use self::link::{Ctrl, Link};
use self::output::Pending;
use self::publish::{push_json, register_message, Nothing, Topics};
use crate::codec::frame::Reassembly;
use crate::codec::message::{self, Metrics};
use crate::error::{ConfigError, NodeError};
use crate::rng::Rng;
use crate::session::outbox::Outbox;
use crate::session::{Backoff, MessageKind};
use crate::time::{later, Duration, Instant, WallClock};

/// Capabilities every node announces.
const FIXED_CAPABILITIES: [&str; 2] = ["mqtt_control", "heartbeat"];
/// Room for a will or status payload built on the stack (names are bounded by the config).
const STATUS_JSON_MAX: usize = 640;
/// Smallest receive buffer: a CONNACK, SUBACK and a modest command must fit.
const RX_MIN: usize = 64;
/// Free room kept in the control and event queues before framing another packet, so that one
/// packet's worth of output always fits.
const QUEUE_HEADROOM: usize = 4;

/// The caller's memory for one node.
#[derive(Debug)]
pub struct Buffers<'b> {
    /// Reassembles inbound packets; an inbound packet larger than this is skipped and reported.
    pub rx: &'b mut [u8],
    /// Scratch for control packets and JSON payloads: fits the largest register message.
    pub tx: &'b mut [u8],
    /// Holds every QoS 1 message from enqueue to PUBACK, plus acknowledged results for replay.
    pub outbox: &'b mut [u8],
    /// Holds the two desired documents (PROTOCOL.md §15) and the reasons for rejected settings;
    /// empty by default, which refuses every document that has a setting.
    pub desired: &'b mut [u8],
}

impl<'b> Buffers<'b> {
    /// Groups the three buffers every node needs.
    pub fn new(rx: &'b mut [u8], tx: &'b mut [u8], outbox: &'b mut [u8]) -> Self {
        Self { rx, tx, outbox, desired: &mut [] }
    }

    /// Adds room for desired state: the settings of both documents and the reasons for
    /// rejections (2 KiB holds a few dozen settings).
    pub fn with_desired(self, desired: &'b mut [u8]) -> Self {
        Self { desired, ..self }
    }
}

/// A SubNodeSync node: the whole protocol, no I/O.
///
/// `CMDS` bounds the application commands running at once, `MSGS` the messages in the outbox.
///
/// Drive it with the three `handle_*` calls, and after every one of them drain
/// [`poll_output`](Self::poll_output) until it returns `None`, then sleep until
/// [`poll_timeout`](Self::poll_timeout) or until bytes arrive.
#[derive(Debug)]
pub struct Node<'a, const CMDS: usize = 8, const MSGS: usize = 16> {
    config: Config<'a>,
    topics: Topics,
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    outbox: Outbox<'a, MSGS>,
    reassembly: Reassembly,
    link: Link,
    backoff: Backoff,
    rng: Rng,
    clock: WallClock,
    now: Instant,
    started: Instant,
    heartbeat_interval: Duration,
    next_heartbeat: Option<Instant>,
    last_rx: Instant,
    last_tx: Instant,
    ping_outstanding: bool,
    next_pid: u16,
    subscribe_pid: Option<u16>,
    stop_deadline: Option<Instant>,
    /// `stop` was called; the stop begins once everything queued before it has been sent.
    stop_requested: bool,
    commands: Commands<CMDS>,
    desired: Desired<'a>,
    ctrl: heapless::Deque<Ctrl, 8>,
    events: heapless::Deque<Pending, 16>,
    stats: NodeStats,
}

impl<'a, const CMDS: usize, const MSGS: usize> Node<'a, CMDS, MSGS> {
    /// Validates `config`, checks that the buffers hold what the node must send, and queues
    /// [`Output::Open`]. `seed` drives reconnect jitter; give each node its own (e.g. from the
    /// OS RNG, or a hardware RNG on a device). `now` is the node's start time.
    pub fn new(config: Config<'a>, buffers: Buffers<'a>, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        let instance_id = config.validate()?;
        if buffers.rx.len() < RX_MIN {
            return Err(ConfigError::BufferTooSmall("rx"));
        }
        let mut node = Self {
            config,
            topics: Topics::new(&config, &instance_id),
            rx: buffers.rx,
            tx: buffers.tx,
            outbox: Outbox::new(buffers.outbox),
            reassembly: Reassembly::default(),
            link: Link::Opening(now),
            backoff: Backoff::new(config.reconnect_min, config.reconnect_max),
            rng: Rng::new(seed),
            clock: WallClock::default(),
            now,
            started: now,
            heartbeat_interval: config.heartbeat_interval,
            next_heartbeat: None,
            last_rx: now,
            last_tx: now,
            ping_outstanding: false,
            next_pid: 0,
            subscribe_pid: None,
            stop_deadline: None,
            stop_requested: false,
            commands: Commands::new(),
            desired: Desired::new(buffers.desired),
            ctrl: heapless::Deque::new(),
            events: heapless::Deque::new(),
            stats: NodeStats::default(),
        };
        // Prove now, not at the first connect, that the largest packets fit the caller's buffers.
        node.encode_ctrl(Ctrl::Connect).ok_or(ConfigError::BufferTooSmall("tx"))?;
        node.encode_ctrl(Ctrl::Subscribe(1)).ok_or(ConfigError::BufferTooSmall("tx"))?;
        node.enqueue_register().map_err(|e| match e {
            NodeError::OutboxFull => ConfigError::BufferTooSmall("outbox"),
            _ => ConfigError::BufferTooSmall("tx"),
        })?;
        node.push_ctrl(Ctrl::Open);
        Ok(node)
    }

    /// `{node_name}-{hostname}-{pid}`: the MQTT client id and a topic level.
    pub fn instance_id(&self) -> &str {
        self.topics.instance_id()
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config<'a> {
        &self.config
    }

    /// Counters since construction.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Whether a CONNACK was accepted and the connection has not been lost since.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Writes the register message, exactly as the next one published on `.../register` would be
    /// (timestamped at the latest `handle_*` call), into `buf`; returns its length. For
    /// registering out of band as well, e.g. the tokio adapter's HTTP registration.
    pub fn register_json(&self, buf: &mut [u8]) -> Result<usize, crate::EncodeError> {
        let register = register_message(&self.config, self.topics.instance_id(), &self.clock, self.now, self.started);
        message::to_json(&register, buf)
    }

    /// Messages of `kind` queued or waiting for their PUBACK (acknowledged results kept for
    /// replay are not counted).
    pub fn queued(&self, kind: MessageKind) -> usize {
        self.outbox.pending(kind)
    }

    /// How long one write to the transport may block before the connection counts as dead:
    /// the 1.5 × keep-alive after which silence from the broker does too.
    pub fn write_timeout(&self) -> Duration {
        let ka = self.config.keep_alive;
        ka.checked_add(ka / 2).unwrap_or(Duration::MAX)
    }

    /// The current heartbeat interval (the `set_heartbeat_interval` command changes it).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Anchors message timestamps: `now` is `unix_micros` after 1970-01-01T00:00:00Z. Call it
    /// at start where a wall clock exists, or whenever one becomes known (e.g. after SNTP).
    pub fn set_wall_clock(&mut self, now: Instant, unix_micros: u64) {
        self.advance(now);
        self.clock.set(now, unix_micros);
    }

    /// Call when the transport asked for by [`Output::Open`] is up. Queues CONNECT.
    pub fn handle_connected(&mut self, now: Instant) {
        self.advance(now);
        if let Link::Opening(since) = self.link {
            // The connect timeout runs from asking for the transport, not from getting it.
            self.link = Link::Connecting(since);
            self.reassembly.reset();
            self.last_rx = now;
            self.last_tx = now;
            self.push_ctrl(Ctrl::Connect);
        }
    }

    /// Call when the transport closed, failed, or could not be opened. The node backs off and
    /// asks again with [`Output::Open`]. Harmless when there is no transport.
    pub fn handle_disconnected(&mut self, now: Instant) {
        self.advance(now);
        if matches!(self.link, Link::Opening(_) | Link::Connecting(_) | Link::Up(_)) {
            self.connection_lost(DisconnectReason::Transport, false);
        }
    }

    /// Feeds bytes read from the transport; returns how many were taken.
    ///
    /// All are taken unless the receive buffer is full of packets whose events have not been
    /// polled yet: then drain [`poll_output`](Self::poll_output) and call again with the rest.
    /// Packets may be split anywhere and several may arrive at once. Events from an earlier
    /// call that were not polled become invalid.
    #[must_use]
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> usize {
        self.advance(now);
        if !matches!(self.link, Link::Connecting(_) | Link::Up(_)) {
            // Bytes from a connection the node has already given up on.
            return bytes.len();
        }
        if !self.events_borrow_rx() {
            self.reassembly.compact(self.rx);
        }
        let mut consumed = 0;
        loop {
            if !self.frame_input() {
                return bytes.len();
            }
            let rest = bytes.get(consumed..).unwrap_or_default();
            if rest.is_empty() || !self.has_headroom() {
                return consumed;
            }
            if self.reassembly.is_full(self.rx) {
                if self.events_borrow_rx() {
                    return consumed;
                }
                self.reassembly.compact(self.rx);
            }
            consumed += self.reassembly.fill(self.rx, rest);
        }
    }

    /// The free end of the receive buffer: read from the transport straight into it, then call
    /// [`handle_received`](Self::handle_received) with how many bytes were written. This saves
    /// the adapter a read buffer of its own and a copy; [`handle_input`](Self::handle_input) is
    /// the same with a copy.
    ///
    /// Empty while the buffer is full of packets whose events have not been polled: drain
    /// [`poll_output`](Self::poll_output), then ask again. Events not yet polled become invalid.
    /// Whenever it is empty, drain and ask again: the node frames packets that waited for
    /// queue room, or, should the buffer be stuck, gives up on the connection
    /// ([`DisconnectReason::InputStalled`]) and the drain closes it.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if !self.events_borrow_rx() {
            self.reassembly.compact(self.rx);
            let connected = matches!(self.link, Link::Connecting(_) | Link::Up(_));
            if connected && self.reassembly.spare(self.rx).is_empty() {
                if self.reassembly.has_frame(self.rx) {
                    // Packets that waited for queue room: frame what fits; drain, then ask again.
                    self.frame_input();
                } else {
                    // Drained, the buffer always has room (packets it cannot hold are streamed
                    // past), so this is a bug; reconnecting beats spinning on a read of nothing.
                    self.connection_lost(DisconnectReason::InputStalled, true);
                }
                if !matches!(self.link, Link::Connecting(_) | Link::Up(_)) {
                    // Given up on (stalled, or a protocol error while framing): nothing more is
                    // read from that transport, which the drain closes.
                    return &mut [];
                }
            }
        }
        self.reassembly.spare(self.rx)
    }

    /// Takes the `n` bytes just read into [`receive_buffer`](Self::receive_buffer). All are
    /// taken; packets that find the output queues full wait in the buffer, and
    /// [`poll_timeout`](Self::poll_timeout) says "now" until they are framed: by the next
    /// `handle_*` call after the drain (`handle_timeout`, or `handle_received` with `n` = 0).
    pub fn handle_received(&mut self, now: Instant, n: usize) {
        self.advance(now);
        if !matches!(self.link, Link::Connecting(_) | Link::Up(_)) {
            // Bytes from a connection the node has already given up on.
            return;
        }
        self.reassembly.commit(self.rx, n);
        self.frame_input();
    }

    /// Call when [`poll_timeout`](Self::poll_timeout) passes. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        match self.link {
            Link::Backoff(until) if now >= until => {
                self.link = Link::Opening(now);
                self.push_ctrl(Ctrl::Open);
            }
            Link::Opening(since) | Link::Connecting(since) if now >= later(since, self.config.connect_timeout) => {
                self.connection_lost(DisconnectReason::ConnectTimeout, true);
            }
            Link::Up(_) => self.up_timers(now),
            _ => {}
        }
        // Packets received while the output queues were full.
        self.frame_input();
        while let Some(id) = self.commands.expired(now) {
            self.time_out(id);
        }
        if self.stop_deadline.is_some_and(|d| now >= d) {
            self.finish_stop();
        }
    }

    /// The next output to act on; call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        self.begin_requested_stop();
        if let Some(ctrl) = self.ctrl.pop_front() {
            return match ctrl {
                Ctrl::Open => Some(Output::Open),
                Ctrl::Close => Some(Output::Close),
                _ => {
                    self.last_tx = self.now;
                    let len = self.encode_ctrl(ctrl)?;
                    Some(Output::Transmit(self.tx.get(..len).unwrap_or_default()))
                }
            };
        }
        while let Some(pending) = self.events.pop_front() {
            // A command event whose command already timed out has nothing left to show.
            if let Pending::Command(id) = pending {
                if self.commands.get(id).is_none() {
                    continue;
                }
            }
            return self.event(pending).map(Output::Event);
        }
        if let Link::Up(_) = self.link {
            let i = self.outbox.next_queued()?;
            self.last_tx = self.now;
            return Some(Output::Transmit(self.outbox.transmit(i, self.now)));
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None` when the node
    /// waits only for input (or has stopped). Waking late delays pings and heartbeats by as
    /// much; waking early is harmless.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let link = match self.link {
            Link::Backoff(until) => Some(until),
            Link::Opening(since) | Link::Connecting(since) => Some(later(since, self.config.connect_timeout)),
            Link::Up(_) => {
                let ka = self.config.keep_alive;
                let idle_since = if self.ping_outstanding { self.last_tx } else { self.last_tx.min(self.last_rx) };
                [
                    Some(later(idle_since, ka)),
                    Some(self.dead_at()),
                    self.next_heartbeat.filter(|_| self.stop_deadline.is_none()),
                    self.outbox.next_retransmit(self.config.retransmit_after),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Link::Stopped => return None,
        };
        let unframed = (matches!(self.link, Link::Connecting(_) | Link::Up(_)) && self.reassembly.has_frame(self.rx))
            .then_some(self.now);
        let stop = self.stop_requested.then_some(self.now);
        [link, self.commands.next_deadline(), self.stop_deadline, unframed, stop].into_iter().flatten().min()
    }

    /// Publishes a heartbeat with `metrics` sampled now. Returns `Ok(false)` when offline:
    /// heartbeats are never queued, since they would be stale on arrival.
    pub fn send_heartbeat(&mut self, now: Instant, metrics: &Metrics<'_>) -> Result<bool, NodeError> {
        self.advance(now);
        if self.link == Link::Stopped {
            return Err(NodeError::Stopped);
        }
        if !self.is_connected() || self.stop_deadline.is_some() {
            return Ok(false);
        }
        let (pid, topic) = (self.alloc_pid(), self.topics.topic("heartbeat"));
        let heartbeat = message::HeartbeatMessage {
            timestamp: self.clock.at(now),
            node_name: self.config.node_name,
            instance_id: self.topics.instance_id(),
            status: "running",
            pid: self.config.pid,
            uptime: now.saturating_duration_since(self.started).as_secs(),
            version: self.config.version,
            hostname: self.config.hostname,
            metrics: *metrics,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Heartbeat, pid, 0, topic, false, &heartbeat);
        self.note_dropped(pushed)?;
        Ok(true)
    }

    /// Publishes a progress update (`"state": "in_progress"`) for a running command.
    pub fn progress(
        &mut self,
        now: Instant,
        id: CommandId,
        message: &str,
        data: Option<&[u8]>,
    ) -> Result<(), NodeError> {
        self.advance(now);
        let data = parse_data(data).map_err(NodeError::InvalidData)?;
        let running = self.commands.get(id).ok_or(NodeError::UnknownRequest)?.clone();
        // Tag 0: a redelivered command is answered with the final result, never a progress update.
        let request = ReplyTo { tag: 0, ..running.request() };
        self.publish_result(request, true, message, data, "in_progress")
    }

    /// Publishes the final result of a running command and forgets it. A command that timed
    /// out already has its result: completing it then is refused with `UnknownRequest`.
    ///
    /// An outcome that cannot be sent as it is (data that is not JSON, or too large for the
    /// buffers) is refused with its error, and the engine gets a failed result naming that
    /// error instead. Should even that not fit, the command ends unanswered and counts as a
    /// dropped result ([`Event::MessagesDropped`]).
    pub fn complete(&mut self, now: Instant, id: CommandId, outcome: Outcome<'_>) -> Result<(), NodeError> {
        self.advance(now);
        if self.link == Link::Stopped {
            return Err(NodeError::Stopped);
        }
        let running = self.commands.get(id).ok_or(NodeError::UnknownRequest)?.clone();
        let sent = parse_data(outcome.data)
            .map_err(NodeError::InvalidData)
            .and_then(|data| self.finish(running.request(), outcome.success, outcome.message, data));
        let Err(refused) = sent else {
            self.commands.take(id);
            return Ok(());
        };
        let mut message = heapless::String::<96>::new();
        let _ = write!(message, "result could not be sent: {refused}");
        // Should not even a failure fit, the command is over all the same (its handler has
        // returned), and the lost answer is counted.
        self.finish_or_count(running.request(), false, &message, None);
        self.commands.take(id);
        Err(refused)
    }

    /// Starts a clean stop: status `offline`, the retained register message cleared, DISCONNECT
    /// once both are acknowledged (or after `stop_timeout`), then [`Event::Stopped`].
    ///
    /// It may be called at any time, also while draining [`poll_output`](Self::poll_output)
    /// (say, on [`Event::StopRequested`]): the stop begins once everything queued before it has
    /// been handed out, so the `stop` command's own result is on the wire before status
    /// `offline` could push it out of a full outbox.
    pub fn stop(&mut self, now: Instant) {
        self.advance(now);
        if self.link != Link::Stopped && self.stop_deadline.is_none() {
            self.stop_requested = true;
            self.begin_requested_stop();
        }
    }

    // ----- internals -----

    /// Begins a requested stop once nothing queued before it is left to hand out.
    fn begin_requested_stop(&mut self) {
        // The flag first: every `poll_output` comes here, and the outbox scan is the costly part.
        if !self.stop_requested || !self.ctrl.is_empty() || !self.events.is_empty() {
            return;
        }
        if !(self.is_connected() && self.outbox.next_queued().is_some()) {
            self.stop_requested = false;
            self.begin_stop();
        }
    }

    fn begin_stop(&mut self) {
        if self.link == Link::Stopped || self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(later(self.now, self.config.stop_timeout));
        match self.link {
            Link::Up(_) => {
                let offline = self.enqueue_status("offline");
                // An empty retained message deletes the retained register message, and the report.
                let mut cleared = self.clear_retained("register", MessageKind::Register);
                if self.desired.reported {
                    cleared = cleared.and(self.clear_retained("reported", MessageKind::Reported));
                }
                if offline.is_err() || cleared.is_err() {
                    self.finish_stop();
                }
            }
            _ => self.finish_stop(),
        }
    }

    fn clear_retained(&mut self, suffix: &str, kind: MessageKind) -> Result<(), NodeError> {
        let (pid, topic) = (self.alloc_pid(), self.topics.topic(suffix));
        let pushed = push_json(&mut self.outbox, kind, pid, 0, topic, true, &Nothing);
        self.note_dropped(pushed)
    }

    /// Changes the heartbeat interval if it differs (desired state applies the whole set on
    /// every change, and an unchanged interval keeps its schedule).
    fn set_interval(&mut self, interval: Duration) {
        if interval != self.heartbeat_interval {
            self.reschedule_heartbeats(interval);
        }
    }

    /// Sets the heartbeat interval; the next heartbeat is due one new interval from now.
    fn reschedule_heartbeats(&mut self, interval: Duration) {
        self.heartbeat_interval = interval;
        self.next_heartbeat = self.next_heartbeat.map(|_| later(self.now, interval));
    }

    fn advance(&mut self, now: Instant) {
        // A caller clock that steps back must not make deadlines fire twice or never.
        self.now = self.now.max(now);
    }

    fn push_ctrl(&mut self, ctrl: Ctrl) {
        // The queue holds a whole connection setup and `has_headroom` stops framing before it
        // fills, so this cannot fail; if it ever did, keep-alive and retransmit recover.
        let _ = self.ctrl.push_back(ctrl);
    }

    fn push_event(&mut self, event: Pending) {
        // Same headroom argument as `push_ctrl`.
        let _ = self.events.push_back(event);
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.outbox.pid_in_use(self.next_pid) && self.subscribe_pid != Some(self.next_pid) {
                return self.next_pid;
            }
        }
    }
}
