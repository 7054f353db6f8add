//! The simulated MQTT 3.1.1 broker: it keeps sessions for clean-session-off clients
//! (subscriptions and unacknowledged QoS 1 messages, resent with DUP on resume), publishes the
//! will on an unclean end (a crash publishes none), takes over a client id from an older
//! connection, stores retained messages, answers PINGREQ and drops a client silent for 1.5 × its
//! keep-alive. Every packet it sends comes from `subnodesync_fixtures::wire`, encoded by hand
//! with no code shared with the core's decoder, so the two cannot agree on a mistake.

use std::collections::{BTreeMap, BTreeSet};

use mqttrs::{Connect, Packet, Subscribe};
use subnodesync_core::FixedHeader;
use subnodesync_fixtures::wire;

use crate::faults::Fault;
use crate::network::{describe, ConnId, Direction};
use crate::world::{Deadlines, Micros, World};

/// The broker: its sessions and retained messages outlive connections, and lost sessions
/// outlive nothing but a restart.
#[derive(Default)]
pub(crate) struct Broker {
    pub(crate) up: bool,
    /// Counts restarts, so a `BrokerUp` from an earlier one is ignored.
    pub(crate) generation: u64,
    sessions: BTreeMap<String, Session>,
    pub(crate) retained: BTreeMap<String, Vec<u8>>,
    /// Which connection holds each client id now.
    clients: BTreeMap<String, ConnId>,
    /// The client ids whose sessions subscribe to each topic, so a publish finds its
    /// subscribers without reading every session.
    subscribers: BTreeMap<String, BTreeSet<String>>,
    /// When each open connection's client expires (`ClientState::expires`).
    expiries: Deadlines<ConnId>,
}

impl Broker {
    /// A broker that is up, with no session and no retained message.
    pub(crate) fn new() -> Self {
        Self { up: true, ..Self::default() }
    }
}

/// A client's session.
#[derive(Default)]
struct Session {
    subscriptions: Vec<String>,
    /// QoS 1 messages not acknowledged yet, by packet id.
    inflight: BTreeMap<u16, Queued>,
    next_pid: u16,
    conn: Option<ConnId>,
}

/// An unacknowledged message in a session.
struct Queued {
    topic: String,
    payload: Vec<u8>,
    /// It went out at least once, so a resend carries DUP.
    sent: bool,
}

/// The last will from a CONNECT.
struct Will {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// The broker's view of the client on one connection.
pub(crate) struct ClientState {
    /// Bytes received that do not make a whole packet yet.
    unparsed: Vec<u8>,
    /// The client id, from CONNECT.
    id: Option<String>,
    keep_alive: Micros,
    will: Option<Will>,
    last_heard: Micros,
    /// It sent DISCONNECT, so no will.
    disconnected: bool,
}

impl ClientState {
    pub(crate) fn new(now: Micros) -> Self {
        Self { unparsed: Vec::new(), id: None, keep_alive: 0, will: None, last_heard: now, disconnected: false }
    }

    /// When the broker gives up on a silent client: 1.5 × its keep-alive after it last spoke.
    fn expires(&self) -> Option<Micros> {
        (self.id.is_some() && self.keep_alive > 0).then(|| self.last_heard + self.keep_alive + self.keep_alive / 2)
    }
}

impl World<'_, '_> {
    /// The earliest keep-alive expiry among the broker's clients.
    pub(crate) fn broker_deadline(&self) -> Option<Micros> {
        self.broker.expiries.first().map(|(t, _)| t)
    }

    /// Re-files connection `id`'s keep-alive expiry after something may have moved it.
    fn refile_expiry(&mut self, id: ConnId) {
        let expires = self.conns.get(&id).filter(|c| c.broker_open).and_then(|c| c.client.expires());
        self.broker.expiries.set(id, expires);
    }

    pub(crate) fn broker_keepalive(&mut self) {
        let dead = self.broker.expiries.due(self.now);
        for id in dead {
            self.log("broker", || format!("conn {id}: keep-alive expired"));
            self.broker_close(id, true);
        }
    }

    /// The broker comes back up (after a restart, or at the start of the quiet tail).
    pub(crate) fn broker_up(&mut self) {
        if !self.broker.up {
            self.broker.up = true;
            self.log("broker", || "up again".into());
        }
    }

    /// The broker crashes: every connection drops without a will, and it stays down until a
    /// `BrokerUp` for the generation this returns.
    pub(crate) fn broker_crash(&mut self, lose_sessions: bool) -> u64 {
        let open: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.broker_open).map(|(&id, _)| id).collect();
        for id in open {
            self.broker_close(id, false);
        }
        self.broker.up = false;
        self.broker.generation += 1;
        if lose_sessions {
            self.broker.sessions.clear();
            self.broker.subscribers.clear();
        }
        self.broker.generation
    }

    fn broker_send(&mut self, id: ConnId, bytes: Vec<u8>) {
        self.log("broker", || format!("-> conn {id} {}", describe(&bytes)));
        self.send(id, Direction::ToNode, bytes);
    }

    /// The broker drops `id`: publishes the will if asked and the client did not DISCONNECT,
    /// and the close reaches the node after the bytes already in flight.
    pub(crate) fn broker_close(&mut self, id: ConnId, will: bool) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if !conn.broker_open {
            return;
        }
        conn.broker_open = false;
        conn.stream_mut(Direction::ToBroker).in_flight.clear();
        self.broker.expiries.set(id, None);
        let client = conn.client.id.clone();
        let last_will = if will && !conn.client.disconnected { conn.client.will.take() } else { None };
        let node_open = conn.node_open;
        if let Some(client) = client {
            if self.broker.clients.get(&client) == Some(&id) {
                self.broker.clients.remove(&client);
                if let Some(session) = self.broker.sessions.get_mut(&client) {
                    session.conn = None;
                }
            }
        }
        if let Some(Will { topic, payload, retain }) = last_will {
            self.log("broker", || format!("publishes will on {topic}"));
            self.route(&topic, &payload, retain, false);
        }
        if node_open {
            self.fin_after_data(id, Direction::ToNode);
        }
    }

    /// Bytes reach the broker on `id`: every whole packet in them is handled in order, and the
    /// client's keep-alive expiry moves on.
    pub(crate) fn broker_input(&mut self, id: ConnId, bytes: &[u8]) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.client.last_heard = now;
        // Packets are read where they lie: straight from `bytes` when nothing was left over
        // (the usual case), else from the leftover with `bytes` after it. The leftover is lent
        // out meanwhile; nothing else reads it.
        let mut unparsed = std::mem::take(&mut conn.client.unparsed);
        if unparsed.is_empty() {
            let whole = self.broker_packets(id, bytes);
            unparsed.extend_from_slice(&bytes[whole..]);
        } else {
            unparsed.extend_from_slice(bytes);
            let whole = self.broker_packets(id, &unparsed);
            unparsed.drain(..whole);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.client.unparsed = unparsed;
        }
        self.refile_expiry(id);
    }

    /// Handles every whole packet at the start of `bytes`, until the rest is partial or `id`
    /// closes; returns how many bytes it handled.
    fn broker_packets(&mut self, id: ConnId, bytes: &[u8]) -> usize {
        let mut whole = 0;
        loop {
            let Some(conn) = self.conns.get(&id) else { return whole };
            if !conn.broker_open {
                return whole;
            }
            let rest = &bytes[whole..];
            let header = match FixedHeader::parse(rest) {
                Ok(Some(h)) if h.packet_len() <= rest.len() => h,
                Ok(_) => return whole,
                Err(e) => {
                    let node = conn.node;
                    self.fail(format!("node {node} sent a malformed fixed header: {e}"));
                    return whole;
                }
            };
            self.broker_packet(id, &rest[..header.packet_len()]);
            whole += header.packet_len();
            if self.failure.is_some() {
                return whole;
            }
        }
    }

    fn broker_packet(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = self.conns.get(&id) else { return };
        let node = conn.node;
        // Read where it was decoded: the packet is large, and moving it out costs a copy.
        let decoded = mqttrs::decode_slice(bytes);
        let packet = match &decoded {
            Ok(Some(p)) => p,
            other => return self.fail(format!("node {node} sent a packet the broker cannot decode: {other:?}")),
        };
        // The client id is looked up only where it is needed, not copied for every packet.
        if conn.client.id.is_none() {
            return match packet {
                Packet::Connect(c) => self.broker_connect(id, c),
                _ => self.fail(format!("node {node} sent a packet before CONNECT")),
            };
        }
        match packet {
            Packet::Connect(_) => {
                self.fail(format!("node {node} sent a second CONNECT on one connection"));
            }
            Packet::Subscribe(s) => {
                let client = conn.client.id.clone().unwrap_or_default();
                self.broker_subscribe(id, &client, s);
            }
            Packet::Publish(p) => {
                if let Some(pid) = p.qospid.pid() {
                    self.broker_send(id, wire::puback(pid.get()));
                }
                self.route(p.topic_name, p.payload, p.retain, false);
            }
            Packet::Puback(pid) => {
                let client = conn.client.id.as_deref().unwrap_or_default();
                if let Some(session) = self.broker.sessions.get_mut(client) {
                    session.inflight.remove(&pid.get());
                }
            }
            Packet::Pingreq => self.broker_send(id, wire::pingresp()),
            Packet::Disconnect => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.client.disconnected = true;
                }
                self.broker_close(id, false);
            }
            other => self.fail(format!("node {node} sent {other:?}, which a node never sends")),
        }
    }

    fn broker_connect(&mut self, id: ConnId, connect: &Connect<'_>) {
        if self.faulty() && self.rng.chance(self.config.faults.refuse_connack) {
            self.count(Fault::RefusedConnack);
            self.log("fault", || format!("broker refuses conn {id}"));
            // Return code 3: server unavailable.
            self.broker_send(id, wire::connack(false, 3));
            return self.broker_close(id, false);
        }
        let client = connect.client_id.to_string();
        if let Some(&old) = self.broker.clients.get(&client) {
            self.log("broker", || format!("session takeover: closing conn {old}"));
            self.broker_close(old, true);
        }
        if connect.clean_session {
            if let Some(session) = self.broker.sessions.remove(&client) {
                for topic in &session.subscriptions {
                    if let Some(clients) = self.broker.subscribers.get_mut(topic) {
                        clients.remove(&client);
                    }
                }
            }
        }
        let present = !connect.clean_session && self.broker.sessions.contains_key(&client);
        let will = connect.last_will.as_ref().map(|w| Will {
            topic: w.topic.to_string(),
            payload: w.message.to_vec(),
            retain: w.retain,
        });
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.client.id = Some(client.clone());
            conn.client.keep_alive = u64::from(connect.keep_alive) * 1_000_000;
            conn.client.will = will;
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
            let publish = wire::Publish { topic: &topic, payload: &payload, pid: Some(pid), dup, retain: false };
            self.broker_send(id, publish.encode());
        }
    }

    fn broker_subscribe(&mut self, id: ConnId, client: &str, subscribe: &Subscribe) {
        let topics: Vec<String> = subscribe.topics.iter().map(|t| t.topic_path.as_str().to_string()).collect();
        if let Some(session) = self.broker.sessions.get_mut(client) {
            for topic in &topics {
                if !session.subscriptions.contains(topic) {
                    session.subscriptions.push(topic.clone());
                    self.broker.subscribers.entry(topic.clone()).or_default().insert(client.to_string());
                }
            }
        }
        // Every filter granted QoS 1.
        self.broker_send(id, wire::suback(subscribe.pid.get(), &vec![1; topics.len()]));
        // In topic order, each once: the order a walk over the whole retained store would find them.
        let wanted: BTreeSet<&String> = topics.iter().collect();
        let retained: Vec<(String, Vec<u8>)> =
            wanted.into_iter().filter_map(|t| Some((t.clone(), self.broker.retained.get(t)?.clone()))).collect();
        for (topic, payload) in retained {
            self.deliver(client, &topic, &payload, true);
        }
    }

    /// A PUBLISH reaches the broker (from a node, a will or the engine): retained store,
    /// subscribers, and the engine, which sees everything nodes publish.
    pub(crate) fn route(&mut self, topic: &str, payload: &[u8], retain: bool, from_engine: bool) {
        if retain {
            if payload.is_empty() {
                self.broker.retained.remove(topic);
            } else {
                self.broker.retained.insert(topic.to_string(), payload.to_vec());
            }
        }
        // In client id order, as a walk over the sessions met them: each delivery may draw from the rng.
        let subscribers: Vec<String> =
            self.broker.subscribers.get(topic).map(|clients| clients.iter().cloned().collect()).unwrap_or_default();
        for client in subscribers {
            self.deliver(&client, topic, payload, false);
            if from_engine && self.faulty() && self.rng.chance(self.config.faults.duplicate) {
                self.count(Fault::Duplicate);
                self.log("fault", || format!("broker delivers a duplicate to {client}"));
                self.deliver(&client, topic, payload, false);
            }
        }
        if !from_engine {
            self.engine_receive(topic, payload);
        }
    }

    /// Queues a QoS 1 message in `client`'s session (every delivery is QoS 1) and sends it if
    /// the client is connected; `retain` marks a retained message handed to a new subscription.
    fn deliver(&mut self, client: &str, topic: &str, payload: &[u8], retain: bool) {
        let Some(session) = self.broker.sessions.get_mut(client) else { return };
        let conn = session.conn;
        let mut pid = session.next_pid;
        loop {
            // Packet id 0 is not allowed: wrap to 1.
            pid = pid.checked_add(1).unwrap_or(1);
            if !session.inflight.contains_key(&pid) {
                break;
            }
        }
        session.next_pid = pid;
        let bytes = wire::Publish { topic, payload, pid: Some(pid), dup: false, retain }.encode();
        session
            .inflight
            .insert(pid, Queued { topic: topic.to_string(), payload: payload.to_vec(), sent: conn.is_some() });
        if let Some(id) = conn {
            self.broker_send(id, bytes);
        }
    }
}
