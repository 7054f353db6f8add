//! Framing: finding whole MQTT packets in a byte stream that arrives in arbitrary pieces.
//!
//! [`FixedHeader::parse`] reads the type byte and the remaining-length varint.
//! `Reassembly` keeps a partial packet in the caller's receive buffer until the rest arrives,
//! and streams past a packet too large for that buffer without losing sync, remembering just
//! enough of it (a PUBLISH's packet identifier) to acknowledge it.

use core::ops::Range;

use crate::error::DecodeError;

/// The largest remaining length MQTT 3.1.1 can express (four varint bytes).
pub const MAX_REMAINING_LEN: usize = 268_435_455;

/// The fixed header at the start of every MQTT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub first_byte: u8,
    /// Length of the variable header plus payload.
    pub remaining_len: usize,
    /// Length of the fixed header itself: 2 to 5 bytes.
    pub header_len: usize,
}

impl FixedHeader {
    /// Parses the fixed header at the start of `bytes`; `Ok(None)` means more bytes are needed.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, DecodeError> {
        let Some(&first_byte) = bytes.first() else {
            return Ok(None);
        };
        let kind = first_byte >> 4;
        if kind == 0 || kind == 15 {
            return Err(DecodeError::UnknownPacketType(kind));
        }
        let mut remaining_len = 0usize;
        for (i, &byte) in bytes.iter().skip(1).take(4).enumerate() {
            remaining_len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(Self { first_byte, remaining_len, header_len: i + 2 }));
            }
        }
        if bytes.len() >= 5 {
            // Four continuation bits in a row: the spec allows at most four length bytes.
            Err(DecodeError::MalformedRemainingLength)
        } else {
            Ok(None)
        }
    }

    /// The packet type, 1 (CONNECT) to 14 (DISCONNECT).
    pub const fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }

    /// Length of the whole packet, fixed header included.
    pub const fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// What [`Reassembly::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole packet at this range of the receive buffer.
    Packet(Range<usize>),
    /// A packet too large for the receive buffer was streamed past.
    Skipped(Skipped),
    /// No whole packet yet.
    NeedMore,
}

/// A packet that was too large for the receive buffer and was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// The packet's type and flags byte.
    pub(crate) first_byte: u8,
    /// Total packet size in bytes.
    pub(crate) size: usize,
    /// The packet identifier of a QoS 1 PUBLISH, so it can still be acknowledged.
    pub(crate) pid: Option<u16>,
}

/// State of a packet being streamed past.
#[derive(Debug, Clone, Copy)]
struct Skip {
    first_byte: u8,
    size: usize,
    body_len: usize,
    body_seen: usize,
    topic_len: usize,
    pid: u16,
}

impl Skip {
    /// A QoS 1 PUBLISH, the only kind we acknowledge (a QoS 2 one is a protocol error anyway).
    fn wants_pid(&self) -> bool {
        self.first_byte >> 4 == 3 && self.first_byte & 0b0110 == 0b0010
    }

    /// Consumes up to the rest of the body from `bytes`, capturing the PUBLISH packet id.
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let take = bytes.len().min(self.body_len - self.body_seen);
        if self.wants_pid() {
            for (pos, &b) in (self.body_seen..).zip(bytes.iter().take(take)) {
                match pos {
                    0 => self.topic_len = usize::from(b) << 8,
                    1 => self.topic_len |= usize::from(b),
                    p if p == self.topic_len + 2 => self.pid = u16::from(b) << 8,
                    p if p == self.topic_len + 3 => self.pid |= u16::from(b),
                    p if p > self.topic_len + 3 => break,
                    _ => {}
                }
            }
        }
        self.body_seen += take;
        take
    }

    fn finished(&self) -> Option<Skipped> {
        (self.body_seen == self.body_len).then(|| Skipped {
            first_byte: self.first_byte,
            size: self.size,
            pid: (self.wants_pid() && self.pid != 0).then_some(self.pid),
        })
    }
}

/// Reassembles packets in the caller's receive buffer.
///
/// `rx[..start]` holds packets already handed out (their events may still borrow them),
/// `rx[start..len]` bytes not yet framed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reassembly {
    start: usize,
    len: usize,
    skip: Option<Skip>,
}

impl Reassembly {
    /// Forgets the packets already handed out, moving any partial packet to the front.
    pub(crate) fn compact(&mut self, rx: &mut [u8]) {
        if self.start > 0 && self.start < self.len {
            rx.copy_within(self.start..self.len, 0);
        }
        self.len -= self.start;
        self.start = 0;
    }

    /// Drops everything: the connection the bytes came from is gone.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Takes bytes from `input` into `rx` (or past a packet being skipped); returns how many.
    pub(crate) fn fill(&mut self, rx: &mut [u8], input: &[u8]) -> usize {
        if let Some(skip) = &mut self.skip {
            return skip.feed(input);
        }
        let free = rx.get_mut(self.len..).unwrap_or_default();
        let n = free.len().min(input.len());
        if let (Some(dst), Some(src)) = (free.get_mut(..n), input.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len += n;
        n
    }

    /// Where bytes may be written in place (then [`commit`](Self::commit)): the free end of `rx`.
    pub(crate) fn spare<'r>(&self, rx: &'r mut [u8]) -> &'r mut [u8] {
        rx.get_mut(self.len..).unwrap_or_default()
    }

    /// Takes `n` bytes written in place at the start of [`spare`](Self::spare): keeps them, or
    /// feeds them to the packet being skipped and keeps what follows it.
    pub(crate) fn commit(&mut self, rx: &mut [u8], n: usize) {
        let end = self.len.saturating_add(n).min(rx.len());
        let Some(skip) = &mut self.skip else {
            self.len = end;
            return;
        };
        let used = skip.feed(rx.get(self.len..end).unwrap_or_default());
        let after = self.len + used;
        if after < end {
            rx.copy_within(after..end, self.len);
        }
        self.len += end - after;
    }

    /// Whether [`next`](Self::next) would hand out a packet (or a skip, or an error) rather
    /// than ask for more bytes.
    pub(crate) fn has_frame(&self, rx: &[u8]) -> bool {
        if let Some(skip) = &self.skip {
            return skip.finished().is_some();
        }
        let pending = rx.get(self.start..self.len).unwrap_or_default();
        match FixedHeader::parse(pending) {
            Ok(Some(header)) => header.packet_len() <= pending.len() || header.packet_len() > rx.len(),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Whether the buffer is full of handed-out packets, so `fill` can take nothing until
    /// [`compact`](Self::compact).
    pub(crate) fn is_full(&self, rx: &[u8]) -> bool {
        self.skip.is_none() && self.len == rx.len()
    }

    /// Frames the next packet, starting a skip when one cannot fit in `rx` at all.
    pub(crate) fn next(&mut self, rx: &[u8]) -> Result<Frame, DecodeError> {
        if let Some(skip) = &self.skip {
            return Ok(match skip.finished() {
                Some(done) => {
                    self.skip = None;
                    Frame::Skipped(done)
                }
                None => Frame::NeedMore,
            });
        }
        let pending = rx.get(self.start..self.len).unwrap_or_default();
        let Some(header) = FixedHeader::parse(pending)? else {
            return Ok(Frame::NeedMore);
        };
        if header.packet_len() <= pending.len() {
            let range = self.start..self.start + header.packet_len();
            self.start = range.end;
            return Ok(Frame::Packet(range));
        }
        if header.packet_len() <= rx.len() {
            // It fits once the rest arrives (after a compaction, if need be).
            return Ok(Frame::NeedMore);
        }
        let mut skip = Skip {
            first_byte: header.first_byte,
            size: header.packet_len(),
            body_len: header.remaining_len,
            body_seen: 0,
            topic_len: 0,
            pid: 0,
        };
        skip.feed(pending.get(header.header_len..).unwrap_or_default());
        self.len = self.start;
        self.skip = Some(skip);
        self.next(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_to_four_length_bytes_and_rejects_five() {
        let h = |b: &[u8]| FixedHeader::parse(b);
        assert_eq!(h(&[0xD0, 0x00]), Ok(Some(FixedHeader { first_byte: 0xD0, remaining_len: 0, header_len: 2 })));
        assert_eq!(h(&[0x30, 0xC1, 0x02]).map(|o| o.map(|f| f.remaining_len)), Ok(Some(321)));
        assert_eq!(h(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).map(|o| o.map(|f| f.remaining_len)), Ok(Some(MAX_REMAINING_LEN)));
        assert_eq!(h(&[0x30, 0xFF, 0xFF]), Ok(None));
        assert_eq!(h(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::MalformedRemainingLength));
        assert_eq!(h(&[0xF0, 0x00]), Err(DecodeError::UnknownPacketType(15)));
        assert_eq!(h(&[]), Ok(None));
    }

    #[test]
    fn a_publish_larger_than_the_buffer_is_skipped_and_its_pid_kept() {
        // QoS 1 PUBLISH, topic "a/b", pid 0x0102, 20-byte payload: 27 bytes in all.
        let mut packet = [0u8; 31];
        packet[..9].copy_from_slice(&[0x32, 27, 0, 3, b'a', b'/', b'b', 0x01, 0x02]);
        packet[29..].copy_from_slice(&[0xD0, 0x00]); // a PINGRESP right behind it
        let mut rx = [0u8; 8];
        let mut r = Reassembly::default();
        let mut input: &[u8] = &packet;
        let mut frames = std::vec::Vec::new();
        while !input.is_empty() {
            let n = r.fill(&mut rx, &input[..input.len().min(3)]);
            input = &input[n..];
            loop {
                match r.next(&rx).unwrap() {
                    Frame::NeedMore => break,
                    f => frames.push(f),
                }
            }
            r.compact(&mut rx);
        }
        assert_eq!(
            frames,
            [Frame::Skipped(Skipped { first_byte: 0x32, size: 29, pid: Some(0x0102) }), Frame::Packet(0..2)]
        );
    }
}
