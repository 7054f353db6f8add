//! The outbox: every QoS 1 PUBLISH we send, from enqueue until PUBACK, in a caller-owned arena.
//!
//! Messages are stored fully encoded, so a resend is the same bytes with the DUP bit set, and
//! nothing is encoded twice. The arena is a byte slice with the messages packed from the front
//! in enqueue order; removing one slides the later ones down, which for the few kilobytes an
//! outbox holds costs less than any free-list would.

use core::ops::Range;

use crate::codec::frame::FixedHeader;
use crate::error::{NodeError, Unfit};
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
    /// The retained desired-state report, or the empty one that clears it; a newer one
    /// replaces it.
    Reported,
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
    /// Where its bytes are in the arena: 32 bits, as `Outbox::new` caps the arena at 4 GiB,
    /// which keeps sixteen entries 128 bytes smaller than `usize` offsets would.
    start: u32,
    len: u32,
}

impl Entry {
    fn len(&self) -> usize {
        self.len as usize
    }

    /// Where its bytes end in the arena.
    fn end(&self) -> usize {
        self.start as usize + self.len()
    }

    fn bytes(&self) -> Range<usize> {
        self.start as usize..self.end()
    }

    /// Whether a newer message of `kind` makes this one obsolete: there is one register, one
    /// status and one report at most.
    fn replaced_by(&self, kind: MessageKind) -> bool {
        matches!(kind, MessageKind::Register | MessageKind::Status | MessageKind::Reported) && self.kind == kind
    }

    /// Whether it may be dropped to make room. The register, status and report may not: there
    /// is only one of each.
    fn droppable(&self) -> bool {
        matches!(self.kind, MessageKind::Heartbeat | MessageKind::Result)
    }
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
        // Offsets are 32 bits: an arena past 4 GiB is used up to there.
        let usable = arena.len().min(u32::MAX as usize);
        let arena = arena.get_mut(..usable).unwrap_or_default();
        Self { arena, entries: heapless::Vec::new() }
    }

    fn used(&self) -> usize {
        self.entries.last().map_or(0, Entry::end)
    }

    /// Adds a message that `encode` writes into the room it is given, returning where in it the
    /// packet is, or how much room it needs (it may be called twice). A newer register or
    /// status replaces the queued one.
    ///
    /// Room is made by dropping what [`victim`](Self::victim) picks, and the returned
    /// [`Dropped`] counts exactly what was lost. A message that would not fit even with every
    /// droppable entry gone is refused with nothing dropped: the outbox is left as it was.
    pub(crate) fn push(
        &mut self,
        kind: MessageKind,
        pid: u16,
        tag: u64,
        mut encode: impl FnMut(&mut [u8]) -> Result<Range<usize>, Unfit>,
    ) -> Result<Dropped, NodeError> {
        // Usually it fits as things are; when it does not, this first try measures it.
        let needed = match encode(self.free_end()) {
            Ok(at) if !self.entries.is_full() => {
                self.insert(kind, pid, tag, at);
                return Ok(Dropped::default());
            }
            Ok(at) => at.end,
            Err(Unfit::Needs(n)) => n,
            Err(Unfit::Encode(e)) => return Err(NodeError::Encode(e)),
        };
        if !self.could_fit(kind, needed) {
            return Err(NodeError::OutboxFull);
        }
        let dropped = self.make_room(kind, needed);
        match encode(self.free_end()) {
            Ok(at) => {
                self.insert(kind, pid, tag, at);
                Ok(dropped)
            }
            // Only if `encode` misjudged its own size: `make_room` made the room it asked for.
            Err(Unfit::Needs(_)) => Err(NodeError::OutboxFull),
            Err(Unfit::Encode(e)) => Err(NodeError::Encode(e)),
        }
    }

    /// The unused end of the arena, where a new message is written.
    fn free_end(&mut self) -> &mut [u8] {
        let start = self.used();
        self.arena.get_mut(start..).unwrap_or_default()
    }

    /// Files the message just written at `at` in the free end, then lets go of the register or
    /// status it replaces. There must be a free slot.
    fn insert(&mut self, kind: MessageKind, pid: u16, tag: u64, at: Range<usize>) {
        // Within the arena, which fits 32 bits.
        let (start, len) = ((self.used() + at.start) as u32, at.len() as u32);
        let entry = Entry { kind, state: State::Queued { dup: false }, pid, tag, first: false, start, len };
        // The callers checked that there is a free slot.
        let _ = self.entries.push(entry);
        if !entry.replaced_by(kind) {
            // Heartbeats and results replace nothing: no need to look.
            return;
        }
        // The first of its kind, until that is the one just filed.
        let older = |o: &Self| o.entries.iter().position(|e| e.replaced_by(kind)).filter(|&i| i + 1 < o.entries.len());
        while let Some(i) = older(self) {
            self.remove(i);
        }
    }

    /// Whether `needed` bytes and a slot would be free for a message of `kind` once every entry
    /// it replaces and every droppable one were gone.
    fn could_fit(&self, kind: MessageKind, needed: usize) -> bool {
        let (mut kept, mut kept_bytes, mut end) = (0, 0, 0);
        for e in self.entries.iter() {
            if !e.droppable() && !e.replaced_by(kind) {
                kept += 1;
                // An entry's bytes include the gap before it, which goes with it (`remove_range`).
                kept_bytes += e.end() - end;
            }
            end = e.end();
        }
        kept < N && needed <= self.arena.len().saturating_sub(kept_bytes)
    }

    /// Drops the entries a message of `kind` replaces, then victims until `needed` bytes and a
    /// slot are free, and says which of them were lost for good.
    fn make_room(&mut self, kind: MessageKind, needed: usize) -> Dropped {
        while let Some(i) = self.entries.iter().position(|e| e.replaced_by(kind)) {
            self.remove(i);
        }
        let mut dropped = Dropped::default();
        while self.entries.is_full() || self.arena.len().saturating_sub(self.used()) < needed {
            let Some(i) = self.victim() else { break };
            match self.entries.get(i).map(|e| (e.kind, e.state)) {
                Some((_, State::Acked)) => {
                    // Cached results go in runs, up to a quarter of the arena at a time, so a
                    // busy node slides the arena down once per several results, not every time.
                    let run = self.entries.iter().skip(i).take_while(|e| e.state == State::Acked);
                    let mut freed = 0;
                    let count = run.take_while(|e| {
                        let more = freed < self.arena.len() / 4;
                        freed += e.len();
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
        dropped
    }

    /// The entry to give up for room: a cached result, else the oldest heartbeat, else the
    /// oldest result; every droppable entry in turn, so `could_fit` may count them all.
    fn victim(&self) -> Option<usize> {
        let oldest = |pred: &dyn Fn(&Entry) -> bool| self.entries.iter().position(pred);
        oldest(&|e| e.state == State::Acked)
            .or_else(|| oldest(&|e| e.kind == MessageKind::Heartbeat))
            .or_else(|| oldest(&Entry::droppable))
    }

    fn remove(&mut self, i: usize) {
        self.remove_range(i..i + 1);
    }

    /// Removes entries `range` with one slide of the bytes after them. Each entry owns the gap
    /// that `encode` may leave before it, so the bytes from the end of the entry before the
    /// range go too; otherwise every removal would leak those few bytes until the outbox empties.
    fn remove_range(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        let Some(last) = self.entries.get(range.end - 1) else { return };
        let to = last.end();
        let from = range.start.checked_sub(1).and_then(|i| self.entries.get(i)).map_or(0, Entry::end);
        let end = self.used();
        self.arena.copy_within(to..end, from);
        // The later entries move down in one go, not once per removed entry.
        let kept = self.entries.len() - range.len();
        self.entries.copy_within(range.end.., range.start);
        self.entries.truncate(kept);
        for e in self.entries.iter_mut().skip(range.start) {
            // Both within the arena, which fits 32 bits.
            e.start -= (to - from) as u32;
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
        // One pass: every `poll_output` asks, and the outbox is usually full of cached results.
        let mut oldest = None;
        for (i, e) in self.entries.iter().enumerate() {
            if let State::Queued { .. } = e.state {
                if e.first {
                    return Some(i);
                }
                oldest = oldest.or(Some(i));
            }
        }
        oldest
    }

    /// Marks entry `i` sent at `now` and returns its bytes, DUP flag set if it is a resend.
    pub(crate) fn transmit(&mut self, i: usize, now: Instant) -> &[u8] {
        let Some(e) = self.entries.get_mut(i) else { return &[] };
        let dup = matches!(e.state, State::Queued { dup: true });
        e.state = State::InFlight { sent_at: now };
        let bytes = self.arena.get_mut(e.bytes()).unwrap_or_default();
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
        let Some(bytes) = self.arena.get_mut(e.bytes()) else { return false };
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
    use std::string::String;
    use std::vec::Vec;

    use super::*;
    use crate::codec::packet::encode_publish_with;

    /// A QoS 1 PUBLISH on topic `t`, written as the node writes its own: it takes 10 bytes of
    /// room more than its payload, 3 of them the gap left before the packet.
    fn publish(pid: u16, payload: &[u8]) -> impl FnMut(&mut [u8]) -> Result<Range<usize>, Unfit> + '_ {
        move |buf| {
            encode_publish_with(&["t"], Some(pid), false, buf, |room| {
                let dst = room.get_mut(..payload.len()).ok_or(Unfit::Needs(payload.len()))?;
                dst.copy_from_slice(payload);
                Ok(payload.len())
            })
        }
    }

    /// Everything the outbox holds: the entries and the bytes they are in.
    fn snapshot<const N: usize>(o: &Outbox<'_, N>) -> (String, Vec<u8>) {
        (std::format!("{:?}", o.entries), o.arena.get(..o.used()).unwrap().to_vec())
    }

    /// Sends the next queued message and has the broker acknowledge it.
    fn deliver<const N: usize>(o: &mut Outbox<'_, N>, pid: u16) {
        let i = o.next_queued().unwrap();
        o.transmit(i, Instant::from_secs(1));
        assert!(o.ack(pid).is_some());
    }

    #[test]
    fn overflow_drops_heartbeats_before_results_and_never_register() {
        let mut arena = [0u8; 48];
        let mut o = Outbox::<'_, 8>::new(&mut arena);
        // Each message takes 16 bytes of room (6 of payload); three fit in 48.
        assert_eq!(o.push(MessageKind::Register, 1, 0, publish(1, b"regist")), Ok(Dropped::default()));
        o.push(MessageKind::Result, 2, 9, publish(2, b"result")).unwrap();
        o.push(MessageKind::Heartbeat, 3, 0, publish(3, b"heartb")).unwrap();
        let d = o.push(MessageKind::Result, 4, 8, publish(4, b"result")).unwrap();
        assert_eq!(d, Dropped { heartbeats: 1, results: 0 });
        let d = o.push(MessageKind::Result, 5, 7, publish(5, b"result")).unwrap();
        assert_eq!(d, Dropped { heartbeats: 0, results: 1 });
        assert_eq!(o.pending(MessageKind::Register), 1);
        assert_eq!(o.pending(MessageKind::Result), 2);
        assert_eq!(o.push(MessageKind::Result, 6, 0, publish(6, &[0; 64])), Err(NodeError::OutboxFull));
    }

    #[test]
    fn a_message_that_would_not_fit_even_with_everything_droppable_gone_drops_nothing() {
        let mut arena = [0u8; 64];
        let mut o = Outbox::<'_, 8>::new(&mut arena);
        o.push(MessageKind::Register, 1, 0, publish(1, b"regist")).unwrap();
        o.push(MessageKind::Result, 2, 9, publish(2, b"cached")).unwrap();
        o.push(MessageKind::Heartbeat, 3, 0, publish(3, b"heartb")).unwrap();
        o.push(MessageKind::Result, 4, 8, publish(4, b"result")).unwrap();
        deliver(&mut o, 1);
        o.push(MessageKind::Register, 5, 0, publish(5, b"regist")).unwrap();
        deliver(&mut o, 2);
        let before = snapshot(&o);
        // 50 bytes of room: the register's 16 leave 48 at most.
        assert_eq!(o.push(MessageKind::Result, 6, 0, publish(6, &[b'x'; 40])), Err(NodeError::OutboxFull));
        assert_eq!(snapshot(&o), before);
        assert_eq!((o.pending(MessageKind::Heartbeat), o.pending(MessageKind::Result)), (1, 1));
        assert!(o.replay(9, 7), "the cached result is still there to replay");
    }

    #[test]
    fn a_register_that_would_not_fit_leaves_the_queued_one_and_one_that_fits_replaces_it() {
        let mut arena = [0u8; 48];
        let mut o = Outbox::<'_, 4>::new(&mut arena);
        o.push(MessageKind::Register, 1, 0, publish(1, b"regist")).unwrap();
        o.push(MessageKind::Status, 2, 0, publish(2, b"online")).unwrap();
        assert_eq!(o.push(MessageKind::Register, 3, 0, publish(3, b"regist")), Ok(Dropped::default()));
        assert_eq!((o.pending(MessageKind::Register), o.pending(MessageKind::Status)), (1, 1));
        let before = snapshot(&o);
        // 33 bytes of room; the status keeps 16 of the 48.
        assert_eq!(o.push(MessageKind::Register, 4, 0, publish(4, &[b'r'; 23])), Err(NodeError::OutboxFull));
        assert_eq!(snapshot(&o), before);
        // 32 bytes: only with the queued register gone.
        assert_eq!(o.push(MessageKind::Register, 5, 0, publish(5, &[b'r'; 22])), Ok(Dropped::default()));
        assert_eq!((o.pending(MessageKind::Register), o.pending(MessageKind::Status)), (1, 1));
        let i = o.next_queued().unwrap();
        assert_eq!(o.transmit(i, Instant::from_secs(1))[5..7], 2u16.to_be_bytes(), "the status, now first");
        let i = o.next_queued().unwrap();
        assert_eq!(o.transmit(i, Instant::from_secs(1))[5..7], 5u16.to_be_bytes(), "then the newest register");
        assert_eq!(o.next_queued(), None);
    }

    #[test]
    fn making_room_reports_exactly_what_it_dropped_even_after_a_refused_message() {
        let mut arena = [0u8; 80];
        let mut o = Outbox::<'_, 8>::new(&mut arena);
        o.push(MessageKind::Result, 1, 9, publish(1, b"cached")).unwrap();
        deliver(&mut o, 1);
        o.push(MessageKind::Register, 2, 0, publish(2, b"regist")).unwrap();
        o.push(MessageKind::Heartbeat, 3, 0, publish(3, b"heartb")).unwrap();
        o.push(MessageKind::Result, 4, 8, publish(4, b"result")).unwrap();
        assert_eq!(o.push(MessageKind::Result, 5, 0, publish(5, &[b'x'; 80])), Err(NodeError::OutboxFull));
        // 48 bytes of room, 16 free: the cached result and the heartbeat make the rest.
        let d = o.push(MessageKind::Result, 6, 7, publish(6, &[b'x'; 38]));
        assert_eq!(d, Ok(Dropped { heartbeats: 1, results: 0 }));
        assert_eq!((o.pending(MessageKind::Register), o.pending(MessageKind::Heartbeat)), (1, 0));
        assert_eq!(o.pending(MessageKind::Result), 2);
        assert!(!o.replay(9, 10), "the cached result went first, uncounted");
    }

    #[test]
    fn a_message_leaving_frees_the_gap_before_it_too() {
        let mut arena = [0u8; 48];
        let mut o = Outbox::<'_, 4>::new(&mut arena);
        o.push(MessageKind::Register, 1, 0, publish(1, b"regist")).unwrap();
        o.push(MessageKind::Heartbeat, 2, 0, publish(2, b"heartb")).unwrap();
        o.push(MessageKind::Result, 3, 9, publish(3, b"result")).unwrap();
        deliver(&mut o, 1);
        // All 16 bytes the register took are free again, so nothing has to go.
        assert_eq!(o.push(MessageKind::Result, 4, 8, publish(4, b"result")), Ok(Dropped::default()));
        assert_eq!((o.pending(MessageKind::Heartbeat), o.pending(MessageKind::Result)), (1, 2));
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
