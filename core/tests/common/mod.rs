//! A scripted broker on one side, the node on the other, bytes and timestamps in between.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::enum_variant_names)]

use std::collections::VecDeque;
use std::string::String;
use std::vec::Vec;

use subnodesync_core::FixedHeader;
use subnodesync_core::{
    Buffers, CommandError, CommandId, Config, ControlTopic, DisconnectReason, Duration, Event, Instant, Metrics, Node,
    Output,
};

pub const NODE: &str = "app";
pub const HOST: &str = "host";
pub const PID: u32 = 42;
pub const BASE: &str = "subnodesync/app/app-host-42";
pub const BROADCAST: &str = "subnodesync/app/control";
/// Desired state for every instance of the name.
pub const NAME_DESIRED: &str = "subnodesync/app/desired";
/// 2024-01-01T12:00:00Z.
pub const WALL: u64 = 1_704_110_400_000_000;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(s: u64) -> Duration {
    Duration::from_millis(s)
}

pub fn config() -> Config<'static> {
    Config { version: "1.0.0", commands: &["echo", "slow"], ..Config::new(NODE, HOST, PID) }
}

/// A packet the node sent, decoded for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Connect {
        client_id: String,
        keep_alive: u16,
        clean_session: bool,
        username: Option<String>,
        password: Option<Vec<u8>>,
        will_topic: String,
        will_payload: String,
        will_retain: bool,
    },
    Subscribe {
        pid: u16,
        topics: Vec<String>,
    },
    Publish(Pub),
    Puback(u16),
    Pingreq,
    Disconnect,
}

/// A PUBLISH the node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pub {
    pub topic: String,
    pub payload: String,
    pub pid: Option<u16>,
    pub dup: bool,
    pub retain: bool,
}

impl Pub {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| panic!("{e}: {}", self.payload))
    }
}

/// What the node told the caller to do, owned so it outlives the borrow of the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Open,
    Close,
    Packet(Sent),
    Connected(bool),
    Disconnected(DisconnectReason, Duration),
    SubscribeRefused(ControlTopic),
    HeartbeatDue,
    Command { id: CommandId, name: String, request_id: String, parameters: String, deadline: Option<Instant> },
    CommandTimedOut(CommandId),
    CommandCancelled(CommandId),
    DesiredChanged(u64),
    CommandRejected(CommandError),
    RetainedCommandIgnored,
    DuplicateCommand(bool),
    PacketTooLarge(usize, bool),
    MessagesDropped(u32, u32),
    StopRequested,
    RestartRequested,
    Stopped,
}

pub fn decode_sent(bytes: &[u8]) -> Sent {
    match mqttrs::decode_slice(bytes).expect("node sent a malformed packet").expect("node sent a partial packet") {
        mqttrs::Packet::Connect(c) => {
            let will = c.last_will.expect("node connects with a will");
            assert_eq!(will.qos, mqttrs::QoS::AtLeastOnce);
            Sent::Connect {
                client_id: c.client_id.into(),
                keep_alive: c.keep_alive,
                clean_session: c.clean_session,
                username: c.username.map(Into::into),
                password: c.password.map(Into::into),
                will_topic: will.topic.into(),
                will_payload: String::from_utf8(will.message.to_vec()).unwrap(),
                will_retain: will.retain,
            }
        }
        mqttrs::Packet::Subscribe(s) => {
            assert!(s.topics.iter().all(|t| t.qos == mqttrs::QoS::AtLeastOnce));
            Sent::Subscribe {
                pid: s.pid.get(),
                topics: s.topics.iter().map(|t| t.topic_path.as_str().into()).collect(),
            }
        }
        mqttrs::Packet::Publish(p) => Sent::Publish(Pub {
            topic: p.topic_name.into(),
            payload: String::from_utf8(p.payload.to_vec()).unwrap(),
            pid: p.qospid.pid().map(|p| p.get()),
            dup: p.dup,
            retain: p.retain,
        }),
        mqttrs::Packet::Puback(pid) => Sent::Puback(pid.get()),
        mqttrs::Packet::Pingreq => Sent::Pingreq,
        mqttrs::Packet::Disconnect => Sent::Disconnect,
        other => panic!("a node never sends {other:?}"),
    }
}

/// Splits a transmit into packets: one `Transmit` is always exactly one packet.
fn one_packet(bytes: &[u8]) -> Sent {
    let header = FixedHeader::parse(bytes).unwrap().expect("whole fixed header");
    assert_eq!(header.packet_len(), bytes.len(), "a transmit is exactly one packet");
    decode_sent(bytes)
}

pub fn drain(node: &mut Node<'static>, out: &mut VecDeque<Out>) {
    while let Some(o) = node.poll_output() {
        out.push_back(match o {
            Output::Open => Out::Open,
            Output::Close => Out::Close,
            Output::Transmit(bytes) => Out::Packet(one_packet(bytes)),
            Output::Event(e) => match e {
                Event::Connected { session_present } => Out::Connected(session_present),
                Event::Disconnected { reason, retry_in } => Out::Disconnected(reason, retry_in),
                Event::SubscribeRefused(t) => Out::SubscribeRefused(t),
                Event::HeartbeatDue => Out::HeartbeatDue,
                Event::Command(c) => Out::Command {
                    id: c.id,
                    name: c.name.into(),
                    request_id: c.request_id.into(),
                    parameters: c.parameters.as_raw().as_str().into(),
                    deadline: c.deadline,
                },
                Event::CommandTimedOut(id) => Out::CommandTimedOut(id),
                Event::CommandCancelled(id) => Out::CommandCancelled(id),
                Event::DesiredChanged { version } => Out::DesiredChanged(version),
                Event::CommandRejected(e) => Out::CommandRejected(e),
                Event::RetainedCommandIgnored => Out::RetainedCommandIgnored,
                Event::DuplicateCommand { replayed } => Out::DuplicateCommand(replayed),
                Event::PacketTooLarge { size, acked } => Out::PacketTooLarge(size, acked),
                Event::MessagesDropped { heartbeats, results } => Out::MessagesDropped(heartbeats, results),
                Event::StopRequested => Out::StopRequested,
                Event::RestartRequested => Out::RestartRequested,
                Event::Stopped => Out::Stopped,
                other => panic!("unexpected event {other:?}"),
            },
        });
    }
}

/// Broker-side packets: the shared fixtures (`subnodesync-fixtures`), and a command as the
/// engine sends it to this node.
pub mod broker {
    // Each test file uses some of them.
    #[allow(unused_imports)]
    pub use subnodesync_fixtures::wire::{connack, pingresp, puback, publish, suback};

    /// A control message on the node's own control topic, QoS 1 with packet id 7.
    pub fn command(name: &str, request_id: &str, parameters: &str) -> Vec<u8> {
        let payload = subnodesync_fixtures::wire::command_json(name, request_id, parameters);
        publish(&format!("{}/control", super::BASE), payload.as_bytes(), Some(7))
    }
}

/// One node and its scripted broker on a virtual clock.
pub struct Script {
    pub node: Node<'static>,
    pub now: Instant,
    pub out: VecDeque<Out>,
}

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

impl Script {
    /// A node just constructed at t = 0 (it has asked for a transport).
    pub fn new(config: Config<'static>) -> Self {
        Self::with_buffers(config, 2048, 1024, 4096)
    }

    pub fn with_buffers(config: Config<'static>, rx: usize, tx: usize, outbox: usize) -> Self {
        let now = Instant::from_secs(1_000);
        let buffers = Buffers::new(leak(rx), leak(tx), leak(outbox)).with_desired(leak(1024));
        let mut node = Node::new(config, buffers, 0x5EED, now).expect("valid config");
        node.set_wall_clock(now, WALL);
        let mut s = Self { node, now, out: VecDeque::new() };
        s.drain();
        s
    }

    /// A node through CONNECT, CONNACK, SUBSCRIBE, SUBACK, register, status: all acknowledged,
    /// and its first heartbeat taken care of.
    pub fn connected(config: Config<'static>) -> Self {
        let mut s = Self::new(config);
        s.expect(Out::Open);
        s.open();
        s.broker_sends(&broker::connack(false, 0));
        s.settle_connection();
        s
    }

    /// After an accepted CONNACK: checks and acknowledges the subscription, register and status,
    /// and answers the immediate first heartbeat.
    pub fn settle_connection(&mut self) {
        self.expect_event(Out::Connected(false));
        let pid = self.expect_subscribe();
        self.broker_sends(&broker::suback(pid, &[1, 1, 1, 1]));
        let reg = self.expect_publish("register");
        self.ack(&reg);
        let status = self.expect_publish("status");
        self.ack(&status);
        self.tick();
        self.expect_event(Out::HeartbeatDue);
        let hb = self.heartbeat();
        self.ack(&hb);
        self.expect_nothing();
    }

    pub fn drain(&mut self) {
        drain(&mut self.node, &mut self.out);
    }

    /// The transport the node asked for is up; CONNECT must follow.
    pub fn open(&mut self) -> Sent {
        self.node.handle_connected(self.now);
        self.drain();
        let connect = self.next_packet();
        assert!(matches!(connect, Sent::Connect { .. }), "expected CONNECT, got {connect:?}");
        connect
    }

    pub fn broker_sends(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.node.handle_input(self.now, rest);
            let queued = self.out.len();
            self.drain();
            // Taking no bytes is fine only when the node made room by producing output.
            assert!(n > 0 || self.out.len() > queued, "node took no bytes and produced nothing");
            rest = &rest[n..];
        }
        self.frame_leftovers();
    }

    /// Packets that found the output queues full when they arrived wait in the receive buffer
    /// (the node's `poll_timeout` says "now" meanwhile); `handle_received(now, 0)` frames them
    /// without firing any timer.
    fn frame_leftovers(&mut self) {
        loop {
            let before = self.out.len();
            self.node.handle_received(self.now, 0);
            self.drain();
            if self.out.len() == before {
                break;
            }
        }
    }

    /// The broker sends `bytes`, read straight into the node's receive buffer (the zero-copy
    /// path, `receive_buffer` + `handle_received`).
    pub fn broker_sends_in_place(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let buf = self.node.receive_buffer();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.node.handle_received(self.now, n);
            let queued = self.out.len();
            self.drain();
            assert!(n > 0 || self.out.len() > queued, "node offered no room and produced nothing");
            rest = &rest[n..];
        }
        self.frame_leftovers();
    }

    /// The transport dropped.
    pub fn transport_lost(&mut self) {
        self.node.handle_disconnected(self.now);
        self.drain();
    }

    /// Calls handle_timeout now (spurious calls are harmless).
    pub fn tick(&mut self) {
        self.node.handle_timeout(self.now);
        self.drain();
    }

    /// Moves the clock by `d`, firing every deadline on the way in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.node.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            self.tick();
            if self.node.poll_timeout() == Some(t) && t <= self.now {
                panic!("deadline {t:?} did not move after handle_timeout: busy loop");
            }
        }
        self.now = end;
        self.tick();
    }

    pub fn next(&mut self) -> Out {
        self.out.pop_front().expect("expected output, node was silent")
    }

    pub fn expect(&mut self, want: Out) {
        assert_eq!(self.next(), want);
    }

    /// The next packet sent; events queued before it stay in place for `expect_event`.
    pub fn next_packet(&mut self) -> Sent {
        let i = self.out.iter().position(|o| matches!(o, Out::Packet(_) | Out::Open | Out::Close));
        match i.and_then(|i| self.out.remove(i)) {
            Some(Out::Packet(p)) => p,
            other => panic!("expected a packet, got {other:?} in {:?}", self.out),
        }
    }

    pub fn expect_packet(&mut self, want: Sent) {
        assert_eq!(self.next_packet(), want);
    }

    /// Finds the next event (packets are left in place) and checks it.
    pub fn expect_event(&mut self, want: Out) {
        let i = self.out.iter().position(|o| !matches!(o, Out::Packet(_))).unwrap_or_else(|| {
            panic!("expected event {want:?}, outputs were {:?}", self.out);
        });
        assert_eq!(self.out.remove(i).unwrap(), want);
    }

    /// The next PUBLISH must be on `{BASE}/{suffix}`, QoS 1.
    pub fn expect_publish(&mut self, suffix: &str) -> Pub {
        match self.next_packet() {
            Sent::Publish(p) => {
                assert_eq!(p.topic, format!("{BASE}/{suffix}"), "{p:?}");
                assert!(p.pid.is_some(), "every node publish is QoS 1");
                p
            }
            other => panic!("expected PUBLISH on {suffix}, got {other:?}"),
        }
    }

    pub fn expect_subscribe(&mut self) -> u16 {
        match self.next_packet() {
            Sent::Subscribe { pid, topics } => {
                let want =
                    [format!("{BASE}/control"), BROADCAST.into(), format!("{BASE}/desired"), NAME_DESIRED.into()];
                assert_eq!(topics, want);
                pid
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
    }

    pub fn expect_nothing(&mut self) {
        assert!(self.out.is_empty(), "expected silence, got {:?}", self.out);
    }

    pub fn ack(&mut self, p: &Pub) {
        self.broker_sends(&broker::puback(p.pid.unwrap()));
    }

    /// Answers HeartbeatDue with fixed metrics and returns the heartbeat PUBLISH.
    pub fn heartbeat(&mut self) -> Pub {
        let metrics = Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &[] };
        assert_eq!(self.node.send_heartbeat(self.now, &metrics), Ok(true));
        self.drain();
        self.expect_publish("heartbeat")
    }

    /// Sends a command and returns its result PUBLISH (after the PUBACK for the command).
    pub fn command_result(&mut self, name: &str, request_id: &str, parameters: &str) -> Pub {
        self.broker_sends(&broker::command(name, request_id, parameters));
        self.expect_packet(Sent::Puback(7));
        self.expect_publish("result")
    }
}
