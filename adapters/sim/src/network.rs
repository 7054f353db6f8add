//! The network between each node and the broker: one connection per transport, each a pair of
//! ordered byte streams with latency, delays and splits, closes that arrive after the bytes in
//! flight, resets and half-open streams. A dropped segment shows up as a delay (TCP retransmits
//! it) and later bytes wait behind it.

use std::collections::VecDeque;

use mqttrs::Packet;

use crate::broker::ClientState;
use crate::world::{micros, Micros, SimEvent, World};

/// How many spare packet buffers the pool keeps: enough for the bytes in flight at once in a
/// small world; a bigger one allocates past it, as before.
const POOL_SIZE: usize = 64;
/// The capacity of a pooled buffer: room for the usual packet, so a copy into it need not grow
/// it. Smaller buffers (the broker's 4-byte PUBACKs) are not kept.
const POOL_CAPACITY: usize = 1024;

/// Spare byte buffers for packets: a write takes one and its arrival gives it back, so the
/// steady packet path allocates nothing.
#[derive(Default)]
pub(crate) struct BufferPool {
    spare: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer, with the capacity of one that carried a packet before if there is one.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(POOL_CAPACITY))
    }

    /// A copy of `bytes` in a spare buffer.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = self.take();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// Takes `buffer` back for a later packet.
    pub(crate) fn give(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < POOL_SIZE && buffer.capacity() >= POOL_CAPACITY {
            buffer.clear();
            self.spare.push(buffer);
        }
    }
}

/// A connection's number; numbers are never reused.
pub(crate) type ConnId = u64;

/// Which way bytes travel on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToNode,
    ToBroker,
}

impl Direction {
    fn index(self) -> usize {
        self as usize
    }
}

/// One direction of a connection.
#[derive(Default)]
pub(crate) struct Stream {
    /// Pieces in flight with their arrival times, in order.
    pub(crate) in_flight: VecDeque<(Micros, Vec<u8>)>,
    /// The latest arrival scheduled so far: nothing may overtake it.
    last_arrival: Micros,
    /// Half-open: bytes and the close sent this way are lost.
    pub(crate) silent: bool,
}

/// One TCP-like connection: two byte streams, plus the broker's view of its client.
pub(crate) struct Connection {
    pub(crate) node: usize,
    streams: [Stream; 2],
    pub(crate) node_open: bool,
    pub(crate) broker_open: bool,
    /// Reset: nothing more gets through either way; both sides are about to hear of it.
    reset: bool,
    pub(crate) client: ClientState,
}

impl Connection {
    /// A connection node `node` opens at `now`.
    pub(crate) fn new(node: usize, now: Micros) -> Self {
        let stream = || Stream { last_arrival: now, ..Stream::default() };
        Self {
            node,
            streams: [stream(), stream()],
            node_open: true,
            broker_open: true,
            reset: false,
            client: ClientState::new(now),
        }
    }

    pub(crate) fn stream(&self, dir: Direction) -> &Stream {
        &self.streams[dir.index()]
    }

    pub(crate) fn stream_mut(&mut self, dir: Direction) -> &mut Stream {
        &mut self.streams[dir.index()]
    }

    /// Whether either direction is half-open.
    pub(crate) fn half_open(&self) -> bool {
        self.streams.iter().any(|s| s.silent)
    }
}

impl World<'_, '_> {
    fn latency(&mut self) -> Micros {
        self.rng.range(1_000, 20_000)
    }

    /// Writes `bytes` on connection `id` in direction `dir`, split and delayed as the faults say.
    pub(crate) fn send(&mut self, id: ConnId, dir: Direction, bytes: Vec<u8>) {
        self.stats.bytes += bytes.len() as u64;
        let faulty = self.faulty();
        let faults = self.config.faults;
        let Some(conn) = self.conns.get(&id) else { return self.pool.give(bytes) };
        let sender_open = match dir {
            Direction::ToBroker => conn.node_open,
            Direction::ToNode => conn.broker_open,
        };
        if !sender_open || conn.stream(dir).silent || conn.reset {
            return self.pool.give(bytes);
        }
        if !(faulty && self.rng.chance(faults.split) && bytes.len() > 1) {
            // Most writes arrive whole: no list of pieces, no copy.
            return self.carry(id, dir, bytes);
        }
        // One to three cuts, each inside the write.
        let cuts = self.rng.range(1, 3) as usize;
        let mut at = [0; 3];
        for cut in &mut at[..cuts] {
            *cut = 1 + self.rng.below(bytes.len() as u64 - 1) as usize;
        }
        at[..cuts].sort_unstable();
        let mut from = 0;
        for cut in at[..cuts].iter().copied().chain([bytes.len()]) {
            if cut == from {
                // The same cut twice makes one piece, not an empty one.
                continue;
            }
            let piece = self.pool.copy(&bytes[from..cut]);
            self.carry(id, dir, piece);
            from = cut;
        }
        self.pool.give(bytes);
    }

    /// Puts one piece of a write in flight: latency, maybe a delay, never before the piece
    /// ahead of it.
    fn carry(&mut self, id: ConnId, dir: Direction, piece: Vec<u8>) {
        let mut t = self.now + self.latency();
        if self.faulty() && self.rng.chance(self.config.faults.delay) {
            t += self.rng.below(micros(self.config.faults.max_delay) + 1);
        }
        let Some(conn) = self.conns.get_mut(&id) else { return self.pool.give(piece) };
        let stream = conn.stream_mut(dir);
        t = t.max(stream.last_arrival);
        stream.last_arrival = t;
        stream.in_flight.push_back((t, piece));
        self.at(t, SimEvent::Arrive(id, dir));
    }

    /// Hands everything due on connection `id` in direction `dir` to the side it points at.
    pub(crate) fn arrive(&mut self, id: ConnId, dir: Direction) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let in_flight = &mut conn.stream_mut(dir).in_flight;
        let mut bytes: Vec<u8> = Vec::new();
        while in_flight.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, piece)) = in_flight.pop_front() {
                // One piece due, the usual case, is handed over as it is.
                if bytes.is_empty() {
                    bytes = piece;
                } else {
                    bytes.extend_from_slice(&piece);
                    self.pool.give(piece);
                }
            }
        }
        if bytes.is_empty() {
            return;
        }
        let node = conn.node;
        match dir {
            Direction::ToNode => {
                if self.nodes[node].conn == Some(id) {
                    self.node_input(node, &bytes);
                }
            }
            Direction::ToBroker => {
                if conn.broker_open {
                    self.broker_input(id, &bytes);
                }
            }
        }
        self.pool.give(bytes);
    }

    /// Schedules the close of `id` to reach the side `dir` points at, after the bytes in flight.
    pub(crate) fn fin_after_data(&mut self, id: ConnId, dir: Direction) {
        let latency = self.latency();
        let now = self.now;
        let Some(conn) = self.conns.get(&id) else { return };
        let stream = conn.stream(dir);
        if stream.silent {
            return;
        }
        let t = (now + latency).max(stream.last_arrival);
        self.at(t, SimEvent::Fin(id, dir));
    }

    /// The close of connection `id` reaches the side `dir` points at.
    pub(crate) fn fin(&mut self, id: ConnId, dir: Direction) {
        let Some(conn) = self.conns.get(&id) else { return };
        let node = conn.node;
        match dir {
            Direction::ToNode => {
                if self.nodes[node].conn == Some(id) {
                    self.nodes[node].conn = None;
                    self.log_node(node, || format!("transport closed (conn {id})"));
                    self.drive(node, |n, now| n.handle_disconnected(now));
                }
            }
            Direction::ToBroker => {
                if conn.broker_open {
                    self.log("broker", || format!("conn {id} closed by peer"));
                    self.broker_close(id, true);
                }
            }
        }
        self.gc(id);
    }

    /// The node closes its transport: what the broker had not yet sent it is dropped.
    pub(crate) fn close_from_node(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.node_open = false;
            conn.stream_mut(Direction::ToNode).in_flight.clear();
        }
        self.fin_after_data(id, Direction::ToBroker);
        self.gc(id);
    }

    /// A connection reset: in-flight bytes are lost and both sides hear of it.
    pub(crate) fn reset(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        for stream in &mut conn.streams {
            stream.in_flight = VecDeque::new();
            stream.silent = false;
        }
        conn.reset = true;
        self.log("fault", || format!("conn {id} reset"));
        self.fin_after_data(id, Direction::ToNode);
        self.fin_after_data(id, Direction::ToBroker);
    }

    /// Forgets connection `id` once neither side can hear of it again.
    fn gc(&mut self, id: ConnId) {
        let node_gone = |world: &Self, c: &Connection| world.nodes[c.node].conn != Some(id);
        if let Some(c) = self.conns.get(&id) {
            let drained = c.streams.iter().all(|s| s.in_flight.is_empty());
            if !c.broker_open && (!c.node_open || node_gone(self, c)) && drained {
                // Keep it while a Fin is pending: those look it up and simply find nothing.
                self.conns.remove(&id);
            }
        }
    }
}

/// One line per packet for the trace.
pub(crate) fn describe(bytes: &[u8]) -> String {
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
