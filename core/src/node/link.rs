//! The connection link: asking for a transport, CONNECT and CONNACK, keep-alive and
//! half-open detection, framing what arrives, and losing the connection cleanly.

use core::ops::Range;

use super::desired::DesiredScope;
use super::output::{ControlTopic, DisconnectReason, Pending};
use super::publish::join;
use super::{Node, QUEUE_HEADROOM, STATUS_JSON_MAX, TOPIC_MAX};
use crate::codec::frame::{Frame, Skipped};
use crate::codec::message;
use crate::codec::packet::{self, ConnectOptions, Inbound, Will, DISCONNECT, PINGREQ};
use crate::error::DecodeError;
use crate::session::MessageKind;
use crate::time::{later, Instant};

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
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

/// A control packet or transport request waiting to be polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctrl {
    Open,
    Connect,
    Subscribe(u16),
    Puback(u16),
    Pingreq,
    Disconnect,
    Close,
}

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    /// Frames and acts on the packets the receive buffer holds, while the output queues have
    /// room. Returns false if the connection is no longer usable.
    pub(super) fn frame_input(&mut self) -> bool {
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

    pub(super) fn has_headroom(&self) -> bool {
        self.ctrl.capacity() - self.ctrl.len() >= QUEUE_HEADROOM
            && self.events.capacity() - self.events.len() >= QUEUE_HEADROOM
    }

    pub(super) fn events_borrow_rx(&self) -> bool {
        // Usually nothing is pending (the caller drains after every call): no walk then.
        !self.events.is_empty() && self.events.iter().any(|e| matches!(e, Pending::Command(_)))
    }

    /// Encodes a control packet into `tx`, returning its length.
    pub(super) fn encode_ctrl(&mut self, ctrl: Ctrl) -> Option<usize> {
        match ctrl {
            Ctrl::Connect => {
                let mut will = [0u8; STATUS_JSON_MAX];
                let lost = message::StatusMessage {
                    timestamp: self.clock.at(self.now),
                    node_name: self.config.node_name,
                    instance_id: self.topics.instance_id(),
                    status: "lost",
                };
                let will_len = message::to_json(&lost, &mut will).ok()?;
                let will_topic: heapless::String<TOPIC_MAX> = join(self.topics.topic("status"));
                let keep_alive_secs = u16::try_from(self.config.keep_alive.as_secs()).ok()?;
                let opts = ConnectOptions {
                    client_id: self.topics.instance_id(),
                    keep_alive_secs,
                    clean_session: false,
                    username: self.config.username,
                    password: self.config.password,
                    will: Some(Will { topic: &will_topic, payload: will.get(..will_len)? }),
                };
                packet::encode_connect(&opts, self.tx).ok()
            }
            Ctrl::Subscribe(pid) => {
                let t = &self.topics;
                let topics: [heapless::String<TOPIC_MAX>; 4] = [
                    join(t.topic("control")),
                    join(t.name_topic("control")),
                    join(t.topic("desired")),
                    join(t.name_topic("desired")),
                ];
                let topics = topics.each_ref().map(|t| t.as_str());
                packet::encode_subscribe(pid, &topics, self.tx).ok()
            }
            Ctrl::Puback(pid) => packet::encode_puback(pid, self.tx).ok(),
            Ctrl::Pingreq => packet::copy_packet(&PINGREQ, self.tx).ok(),
            Ctrl::Disconnect => packet::copy_packet(&DISCONNECT, self.tx).ok(),
            Ctrl::Open | Ctrl::Close => None,
        }
    }

    pub(super) fn connection_lost(&mut self, reason: DisconnectReason, close: bool) {
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

    pub(super) fn finish_stop(&mut self) {
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

    pub(super) fn dead_at(&self) -> Instant {
        later(self.last_rx, self.write_timeout())
    }

    pub(super) fn up_timers(&mut self, now: Instant) {
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

    pub(super) fn on_packet(&mut self, range: Range<usize>) {
        let rx = &*self.rx;
        let decoded = match packet::decode(rx.get(range).unwrap_or_default()) {
            Ok(p) => p,
            Err(e) => return self.connection_lost(DisconnectReason::Protocol(e), true),
        };
        // Reduce a PUBLISH to offsets, so handling it may borrow the node mutably.
        let publish = match &decoded {
            Inbound::Publish(p) => Some(Received {
                pid: p.pid,
                topic: self.topics.subscribed(p.topic),
                retained: p.retain,
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
                let topics = [
                    ControlTopic::Instance,
                    ControlTopic::Broadcast,
                    ControlTopic::InstanceDesired,
                    ControlTopic::NameDesired,
                ];
                for (ok, topic) in granted.iter().zip(topics) {
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

    pub(super) fn on_connack(&mut self, session_present: bool) {
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

    pub(super) fn on_skipped(&mut self, skipped: Skipped) {
        self.stats.packets_too_large += 1;
        if let Some(pid) = skipped.pid {
            self.push_ctrl(Ctrl::Puback(pid));
        }
        self.last_rx = self.now;
        self.push_event(Pending::PacketTooLarge(skipped.size, skipped.pid.is_some()));
    }

    pub(super) fn on_publish(&mut self, publish: Received) {
        if let Some(pid) = publish.pid {
            // We hold the message now, and redelivery is handled by request_id, so ack at once.
            self.push_ctrl(Ctrl::Puback(pid));
        }
        match (publish.topic, publish.retained) {
            // Commands are orders, never state: a retained one (handed to every new
            // subscription) would run again on every reconnect of every instance.
            (Some(Subscribed::Control), true) => {
                self.stats.retained_commands_ignored += 1;
                self.push_event(Pending::RetainedCommandIgnored);
            }
            (Some(Subscribed::Control), false) => self.on_control(publish.payload),
            // Desired state is state: retained, and replayed after every connect.
            (Some(Subscribed::Desired(scope)), _) => {
                let payload = self.rx.get(publish.payload).unwrap_or_default();
                let pending = self.desired.changed;
                if self.desired.receive(scope, payload) && !pending {
                    self.push_event(Pending::DesiredChanged);
                }
            }
            (None, _) => {}
        }
    }
}

/// A received PUBLISH, reduced to what outlives the borrow of the receive buffer.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pid: Option<u16>,
    topic: Option<Subscribed>,
    /// The broker delivered a retained message to our new subscription.
    retained: bool,
    payload: Range<usize>,
}

/// Which of the node's subscriptions a PUBLISH came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subscribed {
    /// Either control topic.
    Control,
    /// A desired-state topic.
    Desired(DesiredScope),
}

/// Where `part` sits inside `whole`, or an empty range if it is not a part of it.
pub(super) fn offset_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let at = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if at <= whole.len() && part.len() <= whole.len() - at {
        at..at + part.len()
    } else {
        0..0
    }
}
