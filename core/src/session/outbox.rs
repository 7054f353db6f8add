//! The outbox: every QoS 1 PUBLISH we send, from enqueue until PUBACK, in a caller-owned arena.
//!
//! Messages are stored fully encoded, so a resend is the same bytes with the DUP bit set, and
//! nothing is encoded twice. The arena is a byte slice with the messages packed from the front
//! in enqueue order; removing one slides the later ones down, which for the few kilobytes an
//! outbox holds costs less than any free-list would.

use core::ops::Range;

use crate::codec::frame::FixedHeader;
use crate::error::{EncodeError, NodeError};
use crate::time::{later, Duration, Instant};

/// What a message is, which decides its fate on reconnect and overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// The retained register message, or the empty one that clears it; a newer one replaces it.
    Register,
    /// The retained status; a newer one replaces it.
    Status,
    /// A heartbeat: dropped on disconnect (it would be stale) and dropped first on overflow.
    Heartbeat,
    /// A command result or progress update: kept across reconnects, and kept after its PUBACK
    /// while room allows, so a redelivered command gets the same result again.
    Result,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a connection (or for its turn); `dup` when it was sent before.
    Queued { dup: bool },
    /// Sent at this instant, waiting for PUBACK.
    InFlight { sent_at: Instant },
    /// A result the broker acknowledged, kept only to answer a redelivered command.
    Acked,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: MessageKind,
    state: State,
    pid: u16,
    /// For results, the hash of the request_id, so a redelivered command finds its result.
    tag: u64,
    /// Sent ahead of older queued messages (the register and status that open a connection).
    first: bool,
    start: usize,
    len: usize,
}

/// A bounded store of outgoing QoS 1 messages: `N` entries in the caller's byte arena.
#[derive(Debug)]
pub(crate) struct Outbox<'b, const N: usize> {
    arena: &'b mut [u8],
    entries: heapless::Vec<Entry, N>,
}

/// What [`Outbox::push`] had to drop to make room; each one is lost for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) heartbeats: u32,
    pub(crate) results: u32,
}

impl<'b, const N: usize> Outbox<'b, N> {
    pub(crate) fn new(arena: &'b mut [u8]) -> Self {
        Self { arena, entries: heapless::Vec::new() }
    }

    fn used(&self) -> usize {
        self.entries.last().map_or(0, |e| e.start + e.len)
    }

    /// Adds a message that `encode` writes into the free end of the arena, returning where in it
    /// the packet is (it may be called more than once, as room is made). A newer register or
    /// status replaces the queued one.
    pub(crate) fn push(
        &mut self,
        kind: MessageKind,
        pid: u16,
        tag: u64,
        mut encode: impl FnMut(&mut [u8]) -> Result<Range<usize>, EncodeError>,
    ) -> Result<Dropped, NodeError> {
        if matches!(kind, MessageKind::Register | MessageKind::Status) {
            while let Some(i) = self.entries.iter().position(|e| e.kind == kind) {
                self.remove(i);
            }
        }
        let mut dropped = Dropped::default();
        loop {
            let start = self.used();
            if !self.entries.is_full() {
                match encode(self.arena.get_mut(start..).unwrap_or_default()) {
                    Ok(at) => {
                        let (start, len) = (start + at.start, at.len());
                        let entry =
                            Entry { kind, state: State::Queued { dup: false }, pid, tag, first: false, start, len };
                        // Not full: checked just above.
                        let _ = self.entries.push(entry);
                        return Ok(dropped);
                    }
                    Err(EncodeError::BufferTooSmall) if start == 0 => return Err(NodeError::OutboxFull),
                    Err(EncodeError::BufferTooSmall) => {}
                    Err(e) => return Err(NodeError::Encode(e)),
                }
            }
            let Some(i) = self.victim() else { return Err(NodeError::OutboxFull) };
            match self.entries.get(i).map(|e| (e.kind, e.state)) {
                Some((_, State::Acked)) => {
                    // Cached results go in runs, up to a quarter of the arena at a time, so a
                    // busy node slides the arena down once per several results, not every time.
                    let run = self.entries.iter().skip(i).take_while(|e| e.state == State::Acked);
                    let mut freed = 0;
                    let count = run.take_while(|e| {
                        let more = freed < self.arena.len() / 4;
                        freed += e.len;
                        more
                    });
                    let end = i + count.count().max(1);
                    self.remove_range(i..end);
                    continue;
                }
                Some((MessageKind::Heartbeat, _)) => dropped.heartbeats += 1,
                Some(_) => dropped.results += 1,
                None => {}
            }
            self.remove(i);
        }
    }

    /// The entry to give up for room: a cached result, else the oldest heartbeat, else the
    /// oldest result. Register and status are never dropped: there is only one of each.
    fn victim(&self) -> Option<usize> {
        let oldest = |pred: &dyn Fn(&Entry) -> bool| self.entries.iter().position(pred);
        oldest(&|e| e.state == State::Acked)
            .or_else(|| oldest(&|e| e.kind == MessageKind::Heartbeat))
            .or_else(|| oldest(&|e| e.kind == MessageKind::Result))
    }

    fn remove(&mut self, i: usize) {
        self.remove_range(i..i + 1);
    }

    /// Removes entries `range` with one slide of the bytes after them.
    fn remove_range(&mut self, range: Range<usize>) {
        let (Some(first), Some(last)) = (self.entries.get(range.start), self.entries.get(range.end.wrapping_sub(1)))
        else {
            return;
        };
        let (from, to) = (first.start, last.start + last.len);
        let end = self.used();
        self.arena.copy_within(to..end, from);
        for _ in range.clone() {
            self.entries.remove(range.start);
        }
        for e in self.entries.iter_mut().skip(range.start) {
            e.start -= to - from;
        }
    }

    /// Puts the queued message of `kind` ahead of older queued ones: after a CONNACK the engine
    /// should hear the register and status before results left over from the last connection.
    pub(crate) fn send_first(&mut self, kind: MessageKind) {
        for e in self.entries.iter_mut().filter(|e| e.kind == kind && matches!(e.state, State::Queued { .. })) {
            e.first = true;
        }
    }

    /// The next message to transmit: those marked `send_first`, then the rest, each in order.
    pub(crate) fn next_queued(&self) -> Option<usize> {
        let queued = |e: &&Entry| matches!(e.state, State::Queued { .. });
        let first = self.entries.iter().position(|e| queued(&e) && e.first);
        first.or_else(|| self.entries.iter().position(|e| queued(&e)))
    }

    /// Marks entry `i` sent at `now` and returns its bytes, DUP flag set if it is a resend.
    pub(crate) fn transmit(&mut self, i: usize, now: Instant) -> &[u8] {
        let Some(e) = self.entries.get_mut(i) else { return &[] };
        let dup = matches!(e.state, State::Queued { dup: true });
        e.state = State::InFlight { sent_at: now };
        let bytes = self.arena.get_mut(e.start..e.start + e.len).unwrap_or_default();
        if let Some(first) = bytes.first_mut() {
            if dup {
                *first |= 0x08;
            } else {
                *first &= !0x08;
            }
        }
        bytes
    }

    /// Handles a PUBACK: the message is delivered. Returns its kind, or `None` for a PUBACK
    /// that matches nothing in flight (a duplicate, or for a message dropped since).
    pub(crate) fn ack(&mut self, pid: u16) -> Option<MessageKind> {
        let i = self.entries.iter().position(|e| e.pid == pid && matches!(e.state, State::InFlight { .. }))?;
        let kind = self.entries.get(i)?.kind;
        if kind == MessageKind::Result {
            if let Some(e) = self.entries.get_mut(i) {
                e.state = State::Acked;
            }
        } else {
            self.remove(i);
        }
        Some(kind)
    }

    /// The connection is gone: heartbeats are dropped (stale by the time we are back), every
    /// other message in flight goes back to the queue, to be resent with DUP.
    pub(crate) fn disconnected(&mut self) {
        while let Some(i) = self.entries.iter().position(|e| e.kind == MessageKind::Heartbeat) {
            self.remove(i);
        }
        for e in self.entries.iter_mut() {
            if let State::InFlight { .. } = e.state {
                e.state = State::Queued { dup: true };
            }
        }
    }

    /// Requeues, with DUP, every message whose PUBACK is overdue at `now`.
    pub(crate) fn retransmit_due(&mut self, now: Instant, after: Duration) {
        for e in self.entries.iter_mut() {
            if let State::InFlight { sent_at } = e.state {
                if later(sent_at, after) <= now {
                    e.state = State::Queued { dup: true };
                }
            }
        }
    }

    /// When the oldest message in flight becomes overdue.
    pub(crate) fn next_retransmit(&self, after: Duration) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::InFlight { sent_at } => Some(later(sent_at, after)),
                _ => None,
            })
            .min()
    }

    /// Sends the acknowledged result tagged `tag` again under packet id `pid`; false when there
    /// is none (gone from the outbox, or still unacknowledged and so on its way anyway).
    pub(crate) fn replay(&mut self, tag: u64, pid: u16) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.kind == MessageKind::Result && e.tag == tag) else {
            return false;
        };
        if e.state != State::Acked {
            // Still on its way: it will arrive without our help.
            return false;
        }
        let Some(bytes) = self.arena.get_mut(e.start..e.start + e.len) else { return false };
        // Our own PUBLISH: the packet id sits right after the topic.
        let Ok(Some(h)) = FixedHeader::parse(bytes) else { return false };
        let topic_len = match bytes.get(h.header_len..h.header_len + 2) {
            Some(&[hi, lo]) => usize::from(hi) << 8 | usize::from(lo),
            _ => return false,
        };
        let at = h.header_len + 2 + topic_len;
        let Some(slot) = bytes.get_mut(at..at + 2) else { return false };
        slot.copy_from_slice(&pid.to_be_bytes());
        e.pid = pid;
        e.state = State::Queued { dup: false };
        true
    }

    /// Whether `pid` is taken by a message that may still be acknowledged.
    pub(crate) fn pid_in_use(&self, pid: u16) -> bool {
        self.entries.iter().any(|e| e.pid == pid && e.state != State::Acked)
    }

    /// Whether any message other than a heartbeat still waits for its PUBACK.
    pub(crate) fn has_unacked(&self) -> bool {
        self.entries.iter().any(|e| e.kind != MessageKind::Heartbeat && e.state != State::Acked)
    }

    /// Messages queued or in flight, by kind, for statistics and tests.
    pub(crate) fn pending(&self, kind: MessageKind) -> usize {
        self.entries.iter().filter(|e| e.kind == kind && e.state != State::Acked).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::packet::encode_publish;

    fn publish(pid: u16, payload: &'static [u8]) -> impl FnMut(&mut [u8]) -> Result<Range<usize>, EncodeError> {
        move |buf| encode_publish("t", payload, Some(pid), false, buf).map(|n| 0..n)
    }

    #[test]
    fn overflow_drops_heartbeats_before_results_and_never_register() {
        let mut arena = [0u8; 40];
        let mut o = Outbox::<'_, 8>::new(&mut arena);
        // Each packet: 2 header + 3 topic + 2 pid + 6 payload = 13 bytes; three fit in 40.
        assert_eq!(o.push(MessageKind::Register, 1, 0, publish(1, b"regist")), Ok(Dropped::default()));
        o.push(MessageKind::Result, 2, 9, publish(2, b"result")).unwrap();
        o.push(MessageKind::Heartbeat, 3, 0, publish(3, b"heartb")).unwrap();
        let d = o.push(MessageKind::Result, 4, 8, publish(4, b"result")).unwrap();
        assert_eq!(d, Dropped { heartbeats: 1, results: 0 });
        let d = o.push(MessageKind::Result, 5, 7, publish(5, b"result")).unwrap();
        assert_eq!(d, Dropped { heartbeats: 0, results: 1 });
        assert_eq!(o.pending(MessageKind::Register), 1);
        assert_eq!(o.pending(MessageKind::Result), 2);
        assert_eq!(
            o.push(MessageKind::Result, 6, 0, |b| encode_publish("t", &[0; 64], Some(6), false, b).map(|n| 0..n)),
            Err(NodeError::OutboxFull)
        );
    }

    #[test]
    fn resends_carry_dup_and_acked_results_can_be_replayed_under_a_new_pid() {
        let mut arena = [0u8; 64];
        let mut o = Outbox::<'_, 4>::new(&mut arena);
        o.push(MessageKind::Result, 7, 42, publish(7, b"r")).unwrap();
        let i = o.next_queued().unwrap();
        assert_eq!(o.transmit(i, Instant::from_secs(1))[0] & 0x08, 0);
        o.retransmit_due(Instant::from_secs(30), Duration::from_secs(20));
        let i = o.next_queued().unwrap();
        assert_eq!(o.transmit(i, Instant::from_secs(30)), [0x3A, 6, 0, 1, b't', 0, 7, b'r']);
        assert_eq!(o.ack(7), Some(MessageKind::Result));
        assert_eq!(o.ack(7), None);
        assert!(o.next_queued().is_none());
        assert!(o.replay(42, 9));
        let i = o.next_queued().unwrap();
        assert_eq!(o.transmit(i, Instant::from_secs(31)), [0x32, 6, 0, 1, b't', 0, 9, b'r']);
        assert!(!o.replay(41, 10));
    }
}
