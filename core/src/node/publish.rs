//! What the node publishes: topics, the register, status and result messages, all QoS 1
//! through the outbox.

use super::command::ReplyTo;
use super::desired::DesiredScope;
use super::link::Subscribed;
use super::output::Pending;
use super::{Config, Node, FIXED_CAPABILITIES, INSTANCE_ID_MAX, NODE_NAME_MAX, PREFIX_MAX};
use crate::codec::json::{RawJson, Writer};
use crate::codec::message::{self, Capabilities, Metadata, ToJson};
use crate::codec::packet;
use crate::error::NodeError;
use crate::session::outbox::{Dropped, Outbox};
use crate::session::MessageKind;
use crate::time::{Instant, WallClock};

/// Longest topic base: prefix, node name and instance id, each followed by a slash.
const BASE_MAX: usize = PREFIX_MAX + NODE_NAME_MAX + INSTANCE_ID_MAX + 3;

/// The node's instance id and its topics' common start, `{prefix}/{node_name}/{instance_id}/`,
/// built once: every topic the node publishes on or subscribes to is this base, or its
/// `{prefix}/{node_name}/` part, and a suffix, so no message joins its topic from five pieces.
#[derive(Debug)]
pub(super) struct Topics {
    base: heapless::String<BASE_MAX>,
    /// Where the instance id starts in `base`, after `{prefix}/{node_name}/`.
    id_at: usize,
}

impl Topics {
    /// The topics of `instance_id` under `config`'s prefix and name, both already validated.
    pub(super) fn new(config: &Config<'_>, instance_id: &str) -> Self {
        let base: heapless::String<BASE_MAX> =
            join([config.topic_prefix, "/", config.node_name, "/", instance_id, "/"]);
        Self { id_at: base.len() - instance_id.len() - 1, base }
    }

    /// `{node_name}-{hostname}-{pid}`.
    pub(super) fn instance_id(&self) -> &str {
        self.base.get(self.id_at..self.base.len() - 1).unwrap_or_default()
    }

    /// `{prefix}/{node_name}/{instance_id}/{suffix}`, in the parts a PUBLISH is written from.
    pub(super) fn topic<'t>(&'t self, suffix: &'t str) -> [&'t str; 2] {
        [&self.base, suffix]
    }

    /// `{prefix}/{node_name}/{suffix}`: a topic every instance of the name shares.
    pub(super) fn name_topic<'t>(&'t self, suffix: &'t str) -> [&'t str; 2] {
        [self.base.get(..self.id_at).unwrap_or_default(), suffix]
    }

    /// Which of our subscriptions `topic` is, without building any of them.
    pub(super) fn subscribed(&self, topic: &str) -> Option<Subscribed> {
        let (scope, suffix) = match topic.strip_prefix(self.base.as_str()) {
            Some(suffix) => (DesiredScope::Instance, suffix),
            None => (DesiredScope::Name, topic.strip_prefix(self.base.get(..self.id_at)?)?),
        };
        match suffix {
            "control" => Some(Subscribed::Control),
            "desired" => Some(Subscribed::Desired(scope)),
            _ => None,
        }
    }
}

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    /// Accounts for what making room in the outbox dropped.
    pub(super) fn note_dropped(&mut self, pushed: Result<Dropped, NodeError>) -> Result<(), NodeError> {
        let dropped = pushed?;
        if dropped != Dropped::default() {
            self.stats.heartbeats_dropped += dropped.heartbeats;
            self.stats.results_dropped += dropped.results;
            self.push_event(Pending::MessagesDropped(dropped));
        }
        Ok(())
    }

    pub(super) fn enqueue_register(&mut self) -> Result<(), NodeError> {
        let (pid, topic) = (self.alloc_pid(), self.topics.topic("register"));
        let register = register_message(&self.config, self.topics.instance_id(), &self.clock, self.now, self.started);
        let pushed = push_json(&mut self.outbox, MessageKind::Register, pid, 0, topic, true, &register);
        self.note_dropped(pushed)
    }

    pub(super) fn enqueue_status(&mut self, status: &'static str) -> Result<(), NodeError> {
        let (pid, topic) = (self.alloc_pid(), self.topics.topic("status"));
        let message = message::StatusMessage {
            timestamp: self.clock.at(self.now),
            node_name: self.config.node_name,
            instance_id: self.topics.instance_id(),
            status,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Status, pid, 0, topic, true, &message);
        self.note_dropped(pushed)
    }

    /// Publishes a result or progress update; a tag other than 0 lets a redelivery find it.
    pub(super) fn publish_result(
        &mut self,
        request: ReplyTo<'_>,
        success: bool,
        message: &str,
        data: Option<RawJson<'_>>,
        state: &str,
    ) -> Result<(), NodeError> {
        let (pid, topic) = (self.alloc_pid(), self.topics.topic("result"));
        let result = message::ResultMessage {
            timestamp: self.clock.at(self.now),
            node_name: self.config.node_name,
            instance_id: self.topics.instance_id(),
            request_id: request.id,
            command: request.command,
            success,
            message,
            data,
            state,
        };
        let pushed = push_json(&mut self.outbox, MessageKind::Result, pid, request.tag, topic, false, &result);
        self.note_dropped(pushed)
    }

    /// Publishes a final result and remembers the request id so a redelivery is not run again.
    pub(super) fn finish(
        &mut self,
        request: ReplyTo<'_>,
        success: bool,
        message: &str,
        data: Option<RawJson<'_>>,
    ) -> Result<(), NodeError> {
        self.publish_result(request, success, message, data, "done")?;
        // Only a result on its way counts as finished: one that was refused leaves nothing to
        // replay, and must not push another id out of the redelivery memory.
        self.commands.remember(request.tag);
        Ok(())
    }
}

/// Concatenates topic parts; every part is bounded by the config checks, so `M` holds them.
pub(super) fn join<const N: usize, const M: usize>(parts: [&str; N]) -> heapless::String<M> {
    let mut topic = heapless::String::new();
    for part in parts {
        let _ = topic.push_str(part);
    }
    topic
}

/// The register message as of `now`. A free function, so that it may borrow the node's fields
/// while the outbox is borrowed mutably.
pub(super) fn register_message<'n>(
    config: &Config<'n>,
    instance_id: &'n str,
    clock: &WallClock,
    now: Instant,
    started: Instant,
) -> message::RegisterMessage<'n> {
    message::RegisterMessage {
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
pub(super) fn push_json<const M: usize>(
    outbox: &mut Outbox<'_, M>,
    kind: MessageKind,
    pid: u16,
    tag: u64,
    topic: [&str; 2],
    retain: bool,
    json: &dyn ToJson,
) -> Result<Dropped, NodeError> {
    outbox.push(kind, pid, tag, |buf| {
        packet::encode_publish_with(&topic, Some(pid), retain, buf, |payload| message::to_json_sized(json, payload))
    })
}

/// No payload at all: an empty retained PUBLISH deletes the retained message.
pub(super) struct Nothing;

impl ToJson for Nothing {
    fn write_json(&self, _: &mut Writer<'_>) {}
}
