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

pub(crate) mod command;
mod config;

use core::fmt::Write as _;
use core::ops::Range;

pub use command::{Command, CommandId, Outcome, BUILT_INS, COMMAND_MAX, RECENT_IDS, REQUEST_ID_MAX};
pub use config::{Config, HOSTNAME_MAX, INSTANCE_ID_MAX, NODE_NAME_MAX, PREFIX_MAX, TOPIC_MAX};

use self::command::{fingerprint, parse_control, parse_data, Commands, Request, Running};
use crate::codec::frame::{Frame, Reassembly};
use crate::codec::json::{Object, RawJson, Writer};
use crate::codec::message::{self, Capabilities, Metadata, Metrics, ToJson};
use crate::codec::packet::{self, ConnectOptions, Inbound, Will, DISCONNECT, PINGREQ};
use crate::error::{CommandError, ConfigError, ConnectRefused, DecodeError, NodeError};
use crate::rng::Rng;
use crate::session::outbox::{Dropped, Outbox};
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
}

impl<'b> Buffers<'b> {
    /// Groups the three buffers.
    pub fn new(rx: &'b mut [u8], tx: &'b mut [u8], outbox: &'b mut [u8]) -> Self {
        Self { rx, tx, outbox }
    }
}

/// Something the caller must do, from [`Node::poll_output`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output<'a> {
    /// Open a transport to the broker, then call `handle_connected` or `handle_disconnected`.
    Open,
    /// Write all of these bytes to the transport, in order.
    Transmit(&'a [u8]),
    /// Close the transport; the node has already moved on (no `handle_disconnected` needed).
    Close,
    /// Something happened that the application may act on.
    Event(Event<'a>),
}

/// Which control topic a subscription was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlTopic {
    /// `{prefix}/{node_name}/{instance_id}/control`.
    Instance,
    /// `{prefix}/{node_name}/control`.
    Broadcast,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The caller reported the transport closed or failed to open.
    Transport,
    /// The broker refused the CONNECT.
    Refused(ConnectRefused),
    /// No CONNACK within `connect_timeout` of asking for a transport.
    ConnectTimeout,
    /// Nothing received for 1.5 × keep-alive: the connection is half-open or dead.
    KeepAliveTimeout,
    /// The broker broke the protocol; the stream could not be trusted any further.
    Protocol(DecodeError),
}

impl core::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport => f.write_str("transport closed or could not be opened"),
            Self::Refused(code) => write!(f, "connection refused: {code}"),
            Self::ConnectTimeout => f.write_str("no connack within the connect timeout"),
            Self::KeepAliveTimeout => f.write_str("nothing received for 1.5 keep-alive intervals"),
            Self::Protocol(e) => write!(f, "protocol violation: {e}"),
        }
    }
}

/// Something the application may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The broker accepted us; `session_present` says whether it kept our session.
    Connected {
        /// The broker resumed our earlier session (queued commands will arrive).
        session_present: bool,
    },
    /// The connection ended; the node asks for a new one after `retry_in`.
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
        /// The jittered backoff delay before the next [`Output::Open`].
        retry_in: Duration,
    },
    /// The broker refused a control subscription: commands on that topic will not arrive.
    SubscribeRefused(ControlTopic),
    /// Time to sample metrics and call [`Node::send_heartbeat`].
    HeartbeatDue,
    /// A command for the application; answer with [`Node::complete`]. Its name and request id
    /// are as received, still JSON-escaped (`Config::commands` is matched against that form).
    Command(Command<'a>),
    /// A command passed its deadline: a failed result was published, and a late
    /// [`Node::complete`] is refused. Cancel the handler.
    CommandTimedOut(CommandId),
    /// A control message without a readable `request_id`: nobody can be answered.
    CommandRejected(CommandError),
    /// A redelivered command was not run again; `replayed` says whether its result was published
    /// again (false while the command still runs, while its result is still on its way, and once
    /// the result has left the outbox).
    DuplicateCommand {
        /// Whether the original result was published again.
        replayed: bool,
    },
    /// A packet larger than the receive buffer was skipped without losing the stream.
    PacketTooLarge {
        /// Its size in bytes.
        size: usize,
        /// Whether it was a QoS 1 PUBLISH that we acknowledged (so it is not redelivered).
        acked: bool,
    },
    /// The outbox was full and dropped these messages for good.
    MessagesDropped {
        /// Heartbeats dropped.
        heartbeats: u32,
        /// Command results dropped.
        results: u32,
    },
    /// The engine sent `stop`: its result is queued ahead of anything `stop` sends; call
    /// [`Node::stop`] when ready.
    StopRequested,
    /// The engine sent `restart`: the result is published; stop and start the process again.
    RestartRequested,
    /// A stop finished: nothing more will happen.
    Stopped,
}

/// Counters for monitoring; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CONNACKs accepted.
    pub connects: u32,
    /// Connections lost or closed, for any reason.
    pub disconnects: u32,
    /// Heartbeats dropped because the outbox was full.
    pub heartbeats_dropped: u32,
    /// Results dropped because the outbox was full.
    pub results_dropped: u32,
    /// Packets skipped for being larger than the receive buffer.
    pub packets_too_large: u32,
    /// Control messages that could not be answered at all.
    pub commands_rejected: u32,
    /// Redelivered commands that were not run again.
    pub duplicate_commands: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Waiting until this instant before asking for a transport.
    Backoff(Instant),
    /// Asked for a transport at this instant.
    Opening(Instant),
    /// Transport up and CONNECT queued; waiting for CONNACK. The instant is still when the
    /// transport was asked for.
    Connecting(Instant),
    /// CONNACK accepted at this instant.
    Up(Instant),
    /// Stopped for good.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctrl {
    Open,
    Connect,
    Subscribe(u16),
    Puback(u16),
    Pingreq,
    Disconnect,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Connected(bool),
    Disconnected(DisconnectReason, Duration),
    SubscribeRefused(ControlTopic),
    HeartbeatDue,
    Command(CommandId),
    CommandTimedOut(CommandId),
    CommandRejected(CommandError),
    DuplicateCommand(bool),
    PacketTooLarge(usize, bool),
    MessagesDropped(Dropped),
    StopRequested,
    RestartRequested,
    Stopped,
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
    instance_id: heapless::String<INSTANCE_ID_MAX>,
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
    commands: Commands<CMDS>,
    ctrl: heapless::Deque<Ctrl, 8>,
    events: heapless::Deque<Pending, 16>,
    stats: Stats,
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
            instance_id,
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
            commands: Commands::new(),
            ctrl: heapless::Deque::new(),
            events: heapless::Deque::new(),
            stats: Stats::default(),
        };
        // Prove now, not at the first connect, that the largest packets fit the caller's buffers.
        node.encode_ctrl(Ctrl::Connect).ok_or(ConfigError::BufferTooSmall("tx"))?;
        node.enqueue_register().map_err(|e| match e {
            NodeError::OutboxFull => ConfigError::BufferTooSmall("outbox"),
            _ => ConfigError::BufferTooSmall("tx"),
        })?;
        node.push_ctrl(Ctrl::Open);
        Ok(node)
    }

    /// `{node_name}-{hostname}-{pid}`: the MQTT client id and a topic level.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config<'a> {
        &self.config
    }

    /// Counters since construction.
    pub fn stats(&self) -> Stats {
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
        let register = register_message(&self.config, &self.instance_id, &self.clock, self.now, self.started);
        message::to_json(&register, buf)
    }

    /// Messages of `kind` queued or waiting for their PUBACK (acknowledged results kept for
    /// replay are not counted).
    pub fn queued(&self, kind: MessageKind) -> usize {
        self.outbox.pending(kind)
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
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if !self.events_borrow_rx() {
            self.reassembly.compact(self.rx);
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
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
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
        [link, self.commands.next_deadline(), self.stop_deadline, unframed].into_iter().flatten().min()
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
        let (topic, pid) = (self.topic("heartbeat"), self.alloc_pid());
        let heartbeat = message::Heartbeat {
            timestamp: self.clock.at(now),
            node_name: self.config.node_name,
            instance_id: &self.instance_id,
            status: "running",
            pid: self.config.pid,
            uptime: now.saturating_duration_since(self.started).as_secs(),
            version: self.config.version,
            hostname: self.config.hostname,
            metrics: *metrics,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Heartbeat, pid, 0, &topic, false, &heartbeat);
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
        let request = Request { tag: 0, ..running.request() };
        self.publish_result(request, true, message, data, "in_progress")
    }

    /// Publishes the final result of a running command and forgets it. A command that timed
    /// out already has its result: completing it then is refused with `UnknownRequest`.
    pub fn complete(&mut self, now: Instant, id: CommandId, outcome: Outcome<'_>) -> Result<(), NodeError> {
        self.advance(now);
        if self.link == Link::Stopped {
            return Err(NodeError::Stopped);
        }
        let data = parse_data(outcome.data).map_err(NodeError::InvalidData)?;
        let running = self.commands.get(id).ok_or(NodeError::UnknownRequest)?.clone();
        self.finish(running.request(), outcome.success, outcome.message, data)?;
        self.commands.take(id);
        Ok(())
    }

    /// Starts a clean stop: status `offline`, the retained register message cleared, DISCONNECT
    /// once both are acknowledged (or after `stop_timeout`), then [`Event::Stopped`].
    pub fn stop(&mut self, now: Instant) {
        self.advance(now);
        if self.link == Link::Stopped || self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(later(now, self.config.stop_timeout));
        match self.link {
            Link::Up(_) => {
                let offline = self.enqueue_status("offline");
                // An empty retained message deletes the retained register message.
                let (topic, pid) = (self.topic("register"), self.alloc_pid());
                let pushed = push_json(&mut self.outbox, MessageKind::Register, pid, 0, &topic, true, &Nothing);
                let cleared = self.note_dropped(pushed);
                if offline.is_err() || cleared.is_err() {
                    self.finish_stop();
                }
            }
            _ => self.finish_stop(),
        }
    }

    // ----- internals -----

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

    /// Frames and acts on the packets the receive buffer holds, while the output queues have
    /// room. Returns false if the connection is no longer usable.
    fn frame_input(&mut self) -> bool {
        if !matches!(self.link, Link::Connecting(_) | Link::Up(_)) {
            return false;
        }
        while self.has_headroom() {
            match self.reassembly.next(self.rx) {
                Ok(Frame::NeedMore) => break,
                Ok(Frame::Packet(range)) => self.on_packet(range),
                Ok(Frame::Skipped(skipped)) => self.on_skipped(skipped),
                Err(e) => self.connection_lost(DisconnectReason::Protocol(e), true),
            }
            if !matches!(self.link, Link::Connecting(_) | Link::Up(_)) {
                return false;
            }
        }
        true
    }

    fn has_headroom(&self) -> bool {
        self.ctrl.capacity() - self.ctrl.len() >= QUEUE_HEADROOM
            && self.events.capacity() - self.events.len() >= QUEUE_HEADROOM
    }

    fn events_borrow_rx(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Pending::Command(_)))
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.outbox.pid_in_use(self.next_pid) && self.subscribe_pid != Some(self.next_pid) {
                return self.next_pid;
            }
        }
    }

    fn topic(&self, suffix: &str) -> heapless::String<TOPIC_MAX> {
        let c = &self.config;
        join([c.topic_prefix, "/", c.node_name, "/", &self.instance_id, "/", suffix])
    }

    fn broadcast_topic(&self) -> heapless::String<TOPIC_MAX> {
        join([self.config.topic_prefix, "/", self.config.node_name, "/control"])
    }

    /// Whether `topic` is our own or our name's broadcast control topic, without building either.
    fn is_control_topic(&self, topic: &str) -> bool {
        let rest = topic
            .strip_prefix(self.config.topic_prefix)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(self.config.node_name))
            .and_then(|r| r.strip_prefix('/'));
        match rest {
            Some("control") => true,
            Some(r) => r.strip_prefix(self.instance_id.as_str()) == Some("/control"),
            None => false,
        }
    }

    /// Encodes a control packet into `tx`, returning its length.
    fn encode_ctrl(&mut self, ctrl: Ctrl) -> Option<usize> {
        match ctrl {
            Ctrl::Connect => {
                let mut will = [0u8; STATUS_JSON_MAX];
                let lost = message::Status {
                    timestamp: self.clock.at(self.now),
                    node_name: self.config.node_name,
                    instance_id: &self.instance_id,
                    status: "lost",
                };
                let will_len = message::to_json(&lost, &mut will).ok()?;
                let will_topic = self.topic("status");
                let keep_alive_secs = u16::try_from(self.config.keep_alive.as_secs()).ok()?;
                let opts = ConnectOptions {
                    client_id: &self.instance_id,
                    keep_alive_secs,
                    clean_session: false,
                    username: self.config.username,
                    password: self.config.password,
                    will: Some(Will { topic: &will_topic, payload: will.get(..will_len)? }),
                };
                packet::encode_connect(&opts, self.tx).ok()
            }
            Ctrl::Subscribe(pid) => {
                let own = self.topic("control");
                let broadcast = self.broadcast_topic();
                packet::encode_subscribe(pid, &[&own, &broadcast], self.tx).ok()
            }
            Ctrl::Puback(pid) => packet::encode_puback(pid, self.tx).ok(),
            Ctrl::Pingreq => packet::copy_packet(&PINGREQ, self.tx).ok(),
            Ctrl::Disconnect => packet::copy_packet(&DISCONNECT, self.tx).ok(),
            Ctrl::Open | Ctrl::Close => None,
        }
    }

    /// Accounts for what making room in the outbox dropped.
    fn note_dropped(&mut self, pushed: Result<Dropped, NodeError>) -> Result<(), NodeError> {
        let dropped = pushed?;
        if dropped != Dropped::default() {
            self.stats.heartbeats_dropped += dropped.heartbeats;
            self.stats.results_dropped += dropped.results;
            self.push_event(Pending::MessagesDropped(dropped));
        }
        Ok(())
    }

    fn enqueue_register(&mut self) -> Result<(), NodeError> {
        let (topic, pid) = (self.topic("register"), self.alloc_pid());
        let register = register_message(&self.config, &self.instance_id, &self.clock, self.now, self.started);
        let pushed = push_json(&mut self.outbox, MessageKind::Register, pid, 0, &topic, true, &register);
        self.note_dropped(pushed)
    }

    fn enqueue_status(&mut self, status: &'static str) -> Result<(), NodeError> {
        let (topic, pid) = (self.topic("status"), self.alloc_pid());
        let message = message::Status {
            timestamp: self.clock.at(self.now),
            node_name: self.config.node_name,
            instance_id: &self.instance_id,
            status,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Status, pid, 0, &topic, true, &message);
        self.note_dropped(pushed)
    }

    /// Publishes a result or progress update; a tag other than 0 lets a redelivery find it.
    fn publish_result(
        &mut self,
        request: Request<'_>,
        success: bool,
        message: &str,
        data: Option<RawJson<'_>>,
        state: &str,
    ) -> Result<(), NodeError> {
        let (topic, pid) = (self.topic("result"), self.alloc_pid());
        let result = message::CommandResult {
            timestamp: self.clock.at(self.now),
            node_name: self.config.node_name,
            instance_id: &self.instance_id,
            request_id: request.id,
            command: request.command,
            success,
            message,
            data,
            state,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Result, pid, request.tag, &topic, false, &result);
        self.note_dropped(pushed)
    }

    /// Publishes a final result and remembers the request id so a redelivery is not run again.
    fn finish(
        &mut self,
        request: Request<'_>,
        success: bool,
        message: &str,
        data: Option<RawJson<'_>>,
    ) -> Result<(), NodeError> {
        self.commands.remember(request.tag);
        self.publish_result(request, success, message, data, "done")
    }

    fn connection_lost(&mut self, reason: DisconnectReason, close: bool) {
        if let Link::Up(since) = self.link {
            if self.now.saturating_duration_since(since) >= self.config.stable_after {
                self.backoff.reset();
            }
        }
        self.stats.disconnects += 1;
        self.ctrl.clear();
        if close {
            self.push_ctrl(Ctrl::Close);
        }
        self.outbox.disconnected();
        self.reassembly.reset();
        self.ping_outstanding = false;
        self.subscribe_pid = None;
        if self.stop_deadline.is_some() {
            self.link = Link::Stopped;
            self.push_event(Pending::Stopped);
            return;
        }
        let delay = self.backoff.next_delay(&mut self.rng);
        self.link = Link::Backoff(later(self.now, delay));
        self.push_event(Pending::Disconnected(reason, delay));
    }

    fn finish_stop(&mut self) {
        match self.link {
            Link::Up(_) => {
                self.push_ctrl(Ctrl::Disconnect);
                self.push_ctrl(Ctrl::Close);
            }
            Link::Opening(_) | Link::Connecting(_) => self.push_ctrl(Ctrl::Close),
            Link::Backoff(_) | Link::Stopped => {}
        }
        if self.link != Link::Stopped {
            self.link = Link::Stopped;
            self.push_event(Pending::Stopped);
        }
        self.stop_deadline = None;
    }

    fn dead_at(&self) -> Instant {
        let ka = self.config.keep_alive;
        later(self.last_rx, ka.checked_add(ka / 2).unwrap_or(Duration::MAX))
    }

    fn up_timers(&mut self, now: Instant) {
        if now >= self.dead_at() {
            self.connection_lost(DisconnectReason::KeepAliveTimeout, true);
            return;
        }
        let ka = self.config.keep_alive;
        let idle_since = if self.ping_outstanding { self.last_tx } else { self.last_tx.min(self.last_rx) };
        if now >= later(idle_since, ka) {
            // MQTT needs a packet from us every keep-alive; and silence from the broker for as
            // long is worth a probe, so a half-open connection is found within 1.5 keep-alives.
            self.ping_outstanding = true;
            self.last_tx = now;
            self.push_ctrl(Ctrl::Pingreq);
        }
        if let Some(due) = self.next_heartbeat.filter(|&due| now >= due && self.stop_deadline.is_none()) {
            let next = later(due, self.heartbeat_interval);
            self.next_heartbeat = Some(if next <= now { later(now, self.heartbeat_interval) } else { next });
            self.push_event(Pending::HeartbeatDue);
        }
        self.outbox.retransmit_due(now, self.config.retransmit_after);
    }

    fn on_packet(&mut self, range: Range<usize>) {
        let rx = &*self.rx;
        let decoded = match packet::decode(rx.get(range).unwrap_or_default()) {
            Ok(p) => p,
            Err(e) => return self.connection_lost(DisconnectReason::Protocol(e), true),
        };
        // Reduce a PUBLISH to offsets, so handling it may borrow the node mutably.
        let publish = match &decoded {
            Inbound::Publish(p) => Some(Received {
                pid: p.pid,
                control: self.is_control_topic(p.topic),
                payload: offset_in(rx, p.payload),
            }),
            _ => None,
        };
        self.last_rx = self.now;
        self.ping_outstanding = false;
        match (self.link, decoded, publish) {
            (Link::Connecting(_), Inbound::Connack(Ok(session_present)), _) => self.on_connack(session_present),
            (Link::Connecting(_), Inbound::Connack(Err(code)), _) => {
                self.connection_lost(DisconnectReason::Refused(code), true);
            }
            (Link::Up(_), Inbound::Publish(_), Some(received)) => self.on_publish(received),
            (Link::Up(_), Inbound::Puback(pid), _) => {
                self.outbox.ack(pid);
                if self.stop_deadline.is_some() && !self.outbox.has_unacked() {
                    self.finish_stop();
                }
            }
            (Link::Up(_), Inbound::Suback(pid, granted), _) if self.subscribe_pid == Some(pid) => {
                self.subscribe_pid = None;
                for (ok, topic) in granted.iter().zip([ControlTopic::Instance, ControlTopic::Broadcast]) {
                    if !ok {
                        self.push_event(Pending::SubscribeRefused(topic));
                    }
                }
            }
            (Link::Up(_), Inbound::Suback(..) | Inbound::Unsuback(_) | Inbound::Pingresp, _) => {}
            (_, other, _) => {
                // Anything before CONNACK, or a second CONNACK, breaks MQTT's ordering rules.
                let kind = match other {
                    Inbound::Connack(_) => 2,
                    Inbound::Publish(_) => 3,
                    Inbound::Puback(_) => 4,
                    Inbound::Suback(..) => 9,
                    Inbound::Unsuback(_) => 11,
                    Inbound::Pingresp => 13,
                };
                self.connection_lost(DisconnectReason::Protocol(DecodeError::UnexpectedPacket(kind)), true);
            }
        }
    }

    fn on_connack(&mut self, session_present: bool) {
        self.link = Link::Up(self.now);
        self.stats.connects += 1;
        let pid = self.alloc_pid();
        self.subscribe_pid = Some(pid);
        self.push_ctrl(Ctrl::Subscribe(pid));
        // Both fit: the outbox replaces the queued register and status rather than growing.
        let _ = self.enqueue_register();
        let _ = self.enqueue_status("online");
        self.outbox.send_first(MessageKind::Register);
        self.outbox.send_first(MessageKind::Status);
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(self.now);
        }
        self.push_event(Pending::Connected(session_present));
    }

    fn on_skipped(&mut self, skipped: crate::codec::frame::Skipped) {
        self.stats.packets_too_large += 1;
        if let Some(pid) = skipped.pid {
            self.push_ctrl(Ctrl::Puback(pid));
        }
        self.last_rx = self.now;
        self.push_event(Pending::PacketTooLarge(skipped.size, skipped.pid.is_some()));
    }

    fn on_publish(&mut self, publish: Received) {
        if let Some(pid) = publish.pid {
            // We hold the message now, and redelivery is handled by request_id, so ack at once.
            self.push_ctrl(Ctrl::Puback(pid));
        }
        if publish.control {
            self.on_control(publish.payload);
        }
    }

    fn on_control(&mut self, payload: Range<usize>) {
        let bytes = self.rx.get(payload).unwrap_or_default();
        let control = match parse_control(bytes) {
            Ok(c) => c,
            Err(e) => {
                self.stats.commands_rejected += 1;
                return self.push_event(Pending::CommandRejected(e));
            }
        };
        let tag = fingerprint(control.request_id);
        if self.commands.is_running(control.request_id) || self.commands.recently_finished(tag) {
            self.stats.duplicate_commands += 1;
            let pid = self.alloc_pid();
            let replayed = self.commands.recently_finished(tag) && self.outbox.replay(tag, pid);
            return self.push_event(Pending::DuplicateCommand(replayed));
        }
        // Copy what outlives this packet; both are bounded by the parser.
        let request_id: heapless::String<REQUEST_ID_MAX> =
            heapless::String::try_from(control.request_id).unwrap_or_default();
        let body = match control.body {
            Ok(body) => body,
            Err(e) => {
                let name: heapless::String<COMMAND_MAX> =
                    heapless::String::try_from(control.name.unwrap_or_default()).unwrap_or_default();
                return self.fail(Request { id: &request_id, command: &name, tag }, e);
            }
        };
        let name: heapless::String<COMMAND_MAX> = heapless::String::try_from(body.name).unwrap_or_default();
        let request = Request { id: &request_id, command: &name, tag };
        // `{}` for absent parameters is a static string outside rx: an empty range stands for it.
        let parameters = offset_in(self.rx, body.parameters.as_raw().as_str().as_bytes());
        let params = body.parameters;
        let timeout = body.timeout;
        match name.as_str() {
            "ping" => self.answer(request, "pong", None),
            "status" => {
                let mut data = [0u8; 256];
                let status = StatusData {
                    uptime: self.now.saturating_duration_since(self.started).as_secs(),
                    heartbeat_interval: self.heartbeat_interval.as_secs(),
                    connects: self.stats.connects,
                    results_dropped: self.stats.results_dropped,
                };
                let raw = json_data(&status, &mut data);
                self.answer(request, "running", raw)
            }
            "reregister" => {
                let _ = self.enqueue_register();
                self.answer(request, "registered", None)
            }
            "set_heartbeat_interval" => {
                match params.get("seconds").and_then(|v| v.deserialize::<u64>()).filter(|s| (1..=86_400).contains(s)) {
                    Some(s) => {
                        self.heartbeat_interval = Duration::from_secs(s);
                        self.next_heartbeat = self.next_heartbeat.map(|_| later(self.now, self.heartbeat_interval));
                        let mut data = [0u8; 32];
                        let raw = json_data(&SecondsData { seconds: s }, &mut data);
                        self.answer(request, "heartbeat interval set", raw)
                    }
                    None => self.fail(request, CommandError::InvalidParameter("seconds")),
                }
            }
            "stop" => {
                self.answer(request, "stopping", None);
                self.push_event(Pending::StopRequested);
            }
            "restart" => {
                self.answer(request, "restarting", None);
                self.push_event(Pending::RestartRequested);
            }
            app if self.config.commands.contains(&app) => {
                let deadline = timeout.map(|t| later(self.now, t));
                let started = Running::new(request, deadline, timeout, parameters).and_then(|r| self.commands.start(r));
                match started {
                    Some(id) => self.push_event(Pending::Command(id)),
                    None => self.fail(request, CommandError::Busy),
                }
            }
            _ => self.fail(request, CommandError::Unknown),
        }
    }

    fn answer(&mut self, request: Request<'_>, message: &str, data: Option<RawJson<'_>>) {
        // A full outbox is reported through MessagesDropped by `enqueue`; nothing else to do.
        let _ = self.finish(request, true, message, data);
    }

    fn fail(&mut self, request: Request<'_>, error: CommandError) {
        let mut message = heapless::String::<96>::new();
        let _ = write!(message, "{error}");
        let _ = self.finish(request, false, &message, None);
    }

    fn time_out(&mut self, id: CommandId) {
        let Some(running) = self.commands.take(id) else { return };
        let mut message = heapless::String::<64>::new();
        let ms = running.timeout.map_or(0, |t| t.as_millis());
        let _ = write!(message, "timed out after {ms} ms");
        let _ = self.finish(running.request(), false, &message, None);
        self.push_event(Pending::CommandTimedOut(id));
    }

    fn event(&self, pending: Pending) -> Option<Event<'_>> {
        Some(match pending {
            Pending::Connected(session_present) => Event::Connected { session_present },
            Pending::Disconnected(reason, retry_in) => Event::Disconnected { reason, retry_in },
            Pending::SubscribeRefused(topic) => Event::SubscribeRefused(topic),
            Pending::HeartbeatDue => Event::HeartbeatDue,
            Pending::Command(id) => {
                let running = self.commands.get(id)?;
                let parameters = match self.rx.get(running.parameters.clone()) {
                    Some(text) if !text.is_empty() => Object::validated(core::str::from_utf8(text).ok()?),
                    _ => Object::EMPTY,
                };
                Event::Command(Command {
                    id,
                    name: &running.name,
                    request_id: &running.request_id,
                    parameters,
                    deadline: running.deadline,
                })
            }
            Pending::CommandTimedOut(id) => Event::CommandTimedOut(id),
            Pending::CommandRejected(e) => Event::CommandRejected(e),
            Pending::DuplicateCommand(replayed) => Event::DuplicateCommand { replayed },
            Pending::PacketTooLarge(size, acked) => Event::PacketTooLarge { size, acked },
            Pending::MessagesDropped(d) => Event::MessagesDropped { heartbeats: d.heartbeats, results: d.results },
            Pending::StopRequested => Event::StopRequested,
            Pending::RestartRequested => Event::RestartRequested,
            Pending::Stopped => Event::Stopped,
        })
    }
}

/// `data` of the built-in `status` command.
struct StatusData {
    uptime: u64,
    heartbeat_interval: u64,
    connects: u32,
    results_dropped: u32,
}

impl ToJson for StatusData {
    fn write_json(&self, w: &mut Writer<'_>) {
        w.raw(b"{\"status\":\"running\",\"uptime\":");
        w.u64(self.uptime);
        w.raw(b",\"heartbeat_interval\":");
        w.u64(self.heartbeat_interval);
        w.raw(b",\"connects\":");
        w.u64(u64::from(self.connects));
        w.raw(b",\"results_dropped\":");
        w.u64(u64::from(self.results_dropped));
        w.raw(b"}");
    }
}

/// `data` of the built-in `set_heartbeat_interval` command.
struct SecondsData {
    seconds: u64,
}

impl ToJson for SecondsData {
    fn write_json(&self, w: &mut Writer<'_>) {
        w.raw(b"{\"seconds\":");
        w.u64(self.seconds);
        w.raw(b"}");
    }
}

/// Writes built-in result data into `buf`; it is our own JSON, so it parses.
fn json_data<'b>(data: &impl ToJson, buf: &'b mut [u8]) -> Option<RawJson<'b>> {
    let len = message::to_json(data, buf).ok()?;
    RawJson::parse(buf.get(..len)?).ok()
}

/// Concatenates topic parts; every part is bounded by the config checks, so TOPIC_MAX holds them.
fn join<const N: usize>(parts: [&str; N]) -> heapless::String<TOPIC_MAX> {
    let mut topic = heapless::String::new();
    for part in parts {
        let _ = topic.push_str(part);
    }
    topic
}

/// A received PUBLISH, reduced to what outlives the borrow of the receive buffer.
#[derive(Debug, Clone)]
struct Received {
    pid: Option<u16>,
    control: bool,
    payload: Range<usize>,
}

/// Where `part` sits inside `whole`, or an empty range if it is not a part of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let at = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if at <= whole.len() && part.len() <= whole.len() - at {
        at..at + part.len()
    } else {
        0..0
    }
}

/// The register message as of `now`. A free function, so that it may borrow the node's fields
/// while the outbox is borrowed mutably.
fn register_message<'n>(
    config: &Config<'n>,
    instance_id: &'n str,
    clock: &WallClock,
    now: Instant,
    started: Instant,
) -> message::Register<'n> {
    message::Register {
        timestamp: clock.at(now),
        node_name: config.node_name,
        instance_id,
        version: config.version,
        pid: config.pid,
        start_time: clock.at(started),
        capabilities: Capabilities { fixed: &FIXED_CAPABILITIES, extra: config.capabilities },
        metadata: Metadata { hostname: config.hostname, extra: config.metadata },
        node_version: config.node_version,
    }
}

/// Publishes `json` (QoS 1) on `topic` through the outbox, written in place. A free function, so
/// that `json` may borrow the node's other fields.
fn push_json<const M: usize>(
    outbox: &mut Outbox<'_, M>,
    kind: MessageKind,
    pid: u16,
    tag: u64,
    topic: &str,
    retain: bool,
    json: &dyn ToJson,
) -> Result<Dropped, NodeError> {
    outbox.push(kind, pid, tag, |buf| {
        packet::encode_publish_with(topic, Some(pid), retain, buf, |payload| message::to_json(json, payload))
    })
}

/// No payload at all: an empty retained PUBLISH deletes the retained message.
struct Nothing;

impl ToJson for Nothing {
    fn write_json(&self, _: &mut Writer<'_>) {}
}
