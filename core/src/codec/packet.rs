//! The MQTT 3.1.1 packets a node receives and sends, encoded and decoded by `mqttrs`.
//!
//! `mqttrs` assumes well-formed input (it indexes past short packets), so [`decode`] first checks
//! every length and flag a broker-to-client packet can carry and only then hands the exact
//! packet bytes over. PUBLISH and PUBACK, the two packets of every exchange, are split here once
//! checked; the rest go through `mqttrs`. Packet types a broker never sends to a client are
//! refused before they reach `mqttrs` at all.
// `fuzzing` re-exports the decoder and two encoders for the property tests; in other builds
// they are the crate's own.
#![cfg_attr(not(any(test, feature = "_fuzzing")), allow(unreachable_pub))]

use core::convert::TryFrom;

use mqttrs::{Connack, Connect, ConnectReturnCode, LastWill, Packet, Pid, Protocol, QoS};

use super::frame::{FixedHeader, MAX_REMAINING_LEN};
use crate::error::{ConnectRefused, DecodeError, EncodeError, Unfit};

/// PINGREQ: the whole packet.
pub(crate) const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DISCONNECT: the whole packet.
pub(crate) const DISCONNECT: [u8; 2] = [0xE0, 0x00];
/// The most topic filters one SUBSCRIBE or SUBACK of ours carries (the `mqttrs` no_std limit).
pub(crate) const MAX_SUBSCRIPTIONS: usize = 5;

/// A PUBLISH received from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPublish<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Application payload.
    pub payload: &'a [u8],
    /// Packet identifier for QoS 1 and 2, which must be acknowledged.
    pub pid: Option<u16>,
    /// The broker says this may be a redelivery.
    pub dup: bool,
    /// A retained message, delivered because we subscribed.
    pub retain: bool,
}

/// A packet a broker sends to a client, borrowed from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// CONNACK: `Ok(session_present)`, or why the connection was refused.
    Connack(Result<bool, ConnectRefused>),
    /// PUBLISH.
    Publish(InPublish<'a>),
    /// PUBACK for one of our QoS 1 publishes.
    Puback(u16),
    /// SUBACK: the packet id and, per topic filter in order, whether it was granted.
    Suback(u16, heapless::Vec<bool, MAX_SUBSCRIPTIONS>),
    /// UNSUBACK.
    Unsuback(u16),
    /// PINGRESP.
    Pingresp,
}

/// Decodes one whole packet, exactly as framed by [`FixedHeader`].
pub fn decode(packet: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    let header = FixedHeader::parse(packet)?.ok_or(DecodeError::InvalidLength)?;
    if header.packet_len() != packet.len() {
        return Err(DecodeError::InvalidLength);
    }
    let body = packet.get(header.header_len..).unwrap_or_default();
    let flags = header.first_byte & 0x0F;
    let kind = header.packet_type();
    let fixed_len = |len: usize| {
        if flags != 0 {
            Err(DecodeError::InvalidFlags(header.first_byte))
        } else if body.len() != len {
            Err(DecodeError::InvalidLength)
        } else {
            Ok(())
        }
    };
    match kind {
        2 => fixed_len(2)?,
        4 => {
            // PUBACK arrives for every message we send: answered here, without `mqttrs`.
            fixed_len(2)?;
            return match body {
                [0, 0] => Err(DecodeError::InvalidPid),
                [hi, lo] => Ok(Inbound::Puback(u16::from_be_bytes([*hi, *lo]))),
                _ => Err(DecodeError::InvalidLength),
            };
        }
        11 => fixed_len(2)?,
        13 => fixed_len(0)?,
        9 => {
            if flags != 0 {
                return Err(DecodeError::InvalidFlags(header.first_byte));
            }
            let codes = body.get(2..).unwrap_or_default();
            if codes.is_empty() || codes.len() > MAX_SUBSCRIPTIONS {
                return Err(DecodeError::InvalidLength);
            }
            if let Some(&bad) = codes.iter().find(|&&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
                return Err(DecodeError::InvalidReturnCode(bad));
            }
        }
        3 => {
            let qos = (flags >> 1) & 0b11;
            match qos {
                3 => return Err(DecodeError::InvalidQos),
                // We subscribe with QoS 1, so a compliant broker never sends QoS 2.
                2 => return Err(DecodeError::UnexpectedPacket(3)),
                _ => {}
            }
            let topic_len = match body {
                [hi, lo, ..] => usize::from(*hi) << 8 | usize::from(*lo),
                _ => return Err(DecodeError::InvalidLength),
            };
            let pid_len = if qos == 0 { 0 } else { 2 };
            if 2 + topic_len + pid_len > body.len() {
                return Err(DecodeError::InvalidLength);
            }
            // Every command arrives as a PUBLISH, and its fields are checked above: split it here
            // rather than through `mqttrs` (tests/properties.rs checks both agree).
            let topic = body.get(2..2 + topic_len).ok_or(DecodeError::InvalidLength)?;
            let topic = core::str::from_utf8(topic).map_err(|_| DecodeError::InvalidUtf8)?;
            let pid = match body.get(2 + topic_len..2 + topic_len + pid_len) {
                Some([0, 0]) => return Err(DecodeError::InvalidPid),
                Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
                _ => None,
            };
            return Ok(Inbound::Publish(InPublish {
                topic,
                payload: body.get(2 + topic_len + pid_len..).unwrap_or_default(),
                pid,
                dup: flags & 0b1000 != 0,
                retain: flags & 0b0001 != 0,
            }));
        }
        other => return Err(DecodeError::UnexpectedPacket(other)),
    }
    // Every length `mqttrs` reads from is checked above, so it stays inside `packet`.
    let decoded = mqttrs::decode_slice(packet).map_err(|e| from_mqttrs(e, header.first_byte))?;
    Ok(match decoded.ok_or(DecodeError::InvalidLength)? {
        Packet::Connack(Connack { session_present, code }) => Inbound::Connack(match code {
            ConnectReturnCode::Accepted => Ok(session_present),
            ConnectReturnCode::RefusedProtocolVersion => Err(ConnectRefused::ProtocolVersion),
            ConnectReturnCode::RefusedIdentifierRejected => Err(ConnectRefused::IdentifierRejected),
            ConnectReturnCode::ServerUnavailable => Err(ConnectRefused::ServerUnavailable),
            ConnectReturnCode::BadUsernamePassword => Err(ConnectRefused::BadUsernamePassword),
            ConnectReturnCode::NotAuthorized => Err(ConnectRefused::NotAuthorized),
        }),
        Packet::Unsuback(pid) => Inbound::Unsuback(pid.get()),
        Packet::Pingresp => Inbound::Pingresp,
        Packet::Suback(s) => Inbound::Suback(
            s.pid.get(),
            s.return_codes.iter().map(|c| matches!(c, mqttrs::SubscribeReturnCodes::Success(_))).collect(),
        ),
        _ => return Err(DecodeError::UnexpectedPacket(header.packet_type())),
    })
}

fn from_mqttrs(e: mqttrs::Error, first_byte: u8) -> DecodeError {
    match e {
        mqttrs::Error::InvalidPid => DecodeError::InvalidPid,
        mqttrs::Error::InvalidQos(_) => DecodeError::InvalidQos,
        mqttrs::Error::InvalidConnectReturnCode(c) => DecodeError::InvalidReturnCode(c),
        mqttrs::Error::InvalidString(_) => DecodeError::InvalidUtf8,
        mqttrs::Error::InvalidHeader => DecodeError::InvalidFlags(first_byte),
        _ => DecodeError::InvalidLength,
    }
}

fn encode(packet: &Packet<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    mqttrs::encode_slice(packet, buf).map_err(|_| EncodeError::BufferTooSmall)
}

fn pid(id: u16) -> Result<Pid, EncodeError> {
    // Packet ids come from our own allocator, which never hands out 0; refusing here keeps even a
    // bug from producing a malformed packet.
    Pid::try_from(id).map_err(|_| EncodeError::BufferTooSmall)
}

/// The last will a CONNECT registers with the broker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Will<'a> {
    /// Topic the broker publishes the will on.
    pub topic: &'a str,
    /// Will payload.
    pub payload: &'a [u8],
}

/// The fields of our CONNECT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectOptions<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// Keep-alive in seconds.
    pub keep_alive_secs: u16,
    /// Start a fresh session instead of resuming the broker's stored one.
    pub clean_session: bool,
    /// Username, if any.
    pub username: Option<&'a str>,
    /// Password, if any.
    pub password: Option<&'a [u8]>,
    /// Last will, published QoS 1 and retained.
    pub will: Option<Will<'a>>,
}

/// Encodes a CONNECT into `buf`, returning its length.
pub(crate) fn encode_connect(opts: &ConnectOptions<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let packet = Packet::Connect(Connect {
        protocol: Protocol::MQTT311,
        keep_alive: opts.keep_alive_secs,
        client_id: opts.client_id,
        clean_session: opts.clean_session,
        last_will: opts.will.map(|w| LastWill {
            topic: w.topic,
            message: w.payload,
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: opts.username,
        password: opts.password,
    });
    encode(&packet, buf)
}

/// Encodes a SUBSCRIBE for `topics`, each at QoS 1, into `buf`, returning its length.
pub(crate) fn encode_subscribe(pid_: u16, topics: &[&str], buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut list = heapless07::Vec::<mqttrs::SubscribeTopic, MAX_SUBSCRIPTIONS>::new();
    for topic in topics {
        let topic_path = heapless07_string(topic).ok_or(EncodeError::BufferTooSmall)?;
        list.push(mqttrs::SubscribeTopic { topic_path, qos: QoS::AtLeastOnce })
            .map_err(|_| EncodeError::BufferTooSmall)?;
    }
    encode(&Packet::Subscribe(mqttrs::Subscribe::new(pid(pid_)?, list)), buf)
}

/// `mqttrs` stores subscription topics in heapless 0.7's fixed 256-byte string.
fn heapless07_string(s: &str) -> Option<heapless07::String<256>> {
    let mut out = heapless07::String::new();
    out.push_str(s).ok()?;
    Some(out)
}

/// The fixed header of a PUBLISH with `remaining` bytes after it: the bytes and their count.
fn publish_header(pid: Option<u16>, retain: bool, remaining: usize) -> Result<([u8; 5], usize), EncodeError> {
    if remaining > MAX_REMAINING_LEN {
        return Err(EncodeError::TooLarge);
    }
    let mut header = [0u8; 5];
    header[0] = 0x30 | if pid.is_some() { 0b0010 } else { 0 } | u8::from(retain);
    let mut len = 1;
    let mut x = remaining;
    for slot in header.iter_mut().skip(1) {
        // The low seven bits, with the continuation bit when more follow.
        *slot = (x % 128) as u8 | if x >= 128 { 0x80 } else { 0 };
        len += 1;
        x /= 128;
        if x == 0 {
            break;
        }
    }
    Ok((header, len))
}

/// The length of a topic given in parts, checked to fit MQTT's 16-bit length field.
fn topic_len(topic: &[&str]) -> Result<u16, EncodeError> {
    let len = topic.iter().map(|part| part.len()).sum::<usize>();
    u16::try_from(len).map_err(|_| EncodeError::TooLarge)
}

/// Writes a PUBLISH's fixed and variable header (topic, packet id) with `w`.
fn put_publish_head(w: &mut Cursor<'_>, header: &[u8], topic: &[&str], topic_len: u16, pid: Option<u16>) {
    w.put(header);
    w.put(&topic_len.to_be_bytes());
    for part in topic {
        w.put(part.as_bytes());
    }
    if let Some(id) = pid {
        w.put(&id.to_be_bytes());
    }
}

/// Encodes a PUBLISH into `buf`; `pid` is `Some` for QoS 1. Returns the packet length.
///
/// Every heartbeat and result is a PUBLISH, so it is written here rather than through `mqttrs`,
/// which copies the payload a byte at a time; `tests/properties.rs` checks both write the same
/// bytes.
#[cfg(any(test, feature = "_fuzzing"))]
pub fn encode_publish(
    topic: &str,
    payload: &[u8],
    pid: Option<u16>,
    retain: bool,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let topic_len = self::topic_len(&[topic])?;
    let remaining = 2 + topic.len() + if pid.is_some() { 2 } else { 0 } + payload.len();
    let (header, header_len) = publish_header(pid, retain, remaining)?;
    let out = buf.get_mut(..header_len + remaining).ok_or(EncodeError::BufferTooSmall)?;
    let mut w = Cursor { out, at: 0 };
    put_publish_head(&mut w, header.get(..header_len).unwrap_or_default(), &[topic], topic_len, pid);
    w.put(payload);
    Ok(w.at)
}

/// Encodes a PUBLISH whose payload `write_payload` writes in place, so the payload is never
/// copied. The topic comes in parts, written one after the other, so that callers need not join
/// them first. Returns where in `buf` the packet ended up: it starts up to three bytes in, because
/// room for the longest length field is kept until the payload's length is known. When `buf`
/// is too small, says how large a `buf` would do, which `write_payload` must say of its own.
pub(crate) fn encode_publish_with(
    topic: &[&str],
    pid: Option<u16>,
    retain: bool,
    buf: &mut [u8],
    write_payload: impl FnOnce(&mut [u8]) -> Result<usize, Unfit>,
) -> Result<core::ops::Range<usize>, Unfit> {
    let topic_len = self::topic_len(topic)?;
    let variable = 2 + usize::from(topic_len) + if pid.is_some() { 2 } else { 0 };
    let reserved = 5 + variable;
    // Without room even for the headers the payload is still measured, in an empty slice.
    let payload_len = match write_payload(buf.get_mut(reserved..).unwrap_or_default()) {
        Ok(n) => n,
        Err(Unfit::Needs(n)) => {
            // A packet MQTT cannot express is refused as such, not as a lack of room.
            publish_header(pid, retain, variable + n)?;
            return Err(Unfit::Needs(reserved + n));
        }
        Err(e) => return Err(e),
    };
    let (header, header_len) = publish_header(pid, retain, variable + payload_len)?;
    let start = reserved - variable - header_len;
    let out = buf.get_mut(start..reserved).ok_or(Unfit::Needs(reserved + payload_len))?;
    let header = header.get(..header_len).unwrap_or_default();
    put_publish_head(&mut Cursor { out, at: 0 }, header, topic, topic_len, pid);
    Ok(start..reserved + payload_len)
}

/// Writes into a slice already checked to be exactly large enough.
struct Cursor<'b> {
    out: &'b mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.at += bytes.len();
        }
    }
}

/// Encodes a PUBACK into `buf`, returning its length (4).
pub fn encode_puback(pid: u16, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let [hi, lo] = pid.to_be_bytes();
    copy_packet(&[0x40, 0x02, hi, lo], buf)
}

/// Copies a whole, fixed packet into `buf`, returning its length.
pub(crate) fn copy_packet(packet: &[u8], buf: &mut [u8]) -> Result<usize, EncodeError> {
    buf.get_mut(..packet.len()).ok_or(EncodeError::BufferTooSmall)?.copy_from_slice(packet);
    Ok(packet.len())
}
