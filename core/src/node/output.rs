//! What the node asks of its caller: outputs, events, and the counters it keeps.

use super::{CommandId, Node};
use crate::error::{CommandError, ConnectRefused, DecodeError};
use crate::node::command::Command;
use crate::session::outbox::Dropped;
use crate::time::Duration;

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

/// Which of the node's subscriptions the broker refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlTopic {
    /// `{prefix}/{node_name}/{instance_id}/control`.
    Instance,
    /// `{prefix}/{node_name}/control`.
    Broadcast,
    /// `{prefix}/{node_name}/{instance_id}/desired`.
    InstanceDesired,
    /// `{prefix}/{node_name}/desired`.
    NameDesired,
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
    /// The receive buffer had no room even after every event was polled (a bug in the core);
    /// a new connection starts over with an empty buffer.
    InputStalled,
}

impl core::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport => f.write_str("transport closed or could not be opened"),
            Self::Refused(code) => write!(f, "connection refused: {code}"),
            Self::ConnectTimeout => f.write_str("no connack within the connect timeout"),
            Self::KeepAliveTimeout => f.write_str("nothing received for 1.5 keep-alive intervals"),
            Self::Protocol(e) => write!(f, "protocol violation: {e}"),
            Self::InputStalled => f.write_str("receive buffer stalled"),
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
    /// The engine cancelled a command (the built-in `cancel`): a failed result saying so was
    /// published, and a late [`Node::complete`] is refused. Cancel the handler.
    CommandCancelled(CommandId),
    /// A desired document changed, or one was refused: call [`Node::apply_desired`], which
    /// applies the merged settings and reports them. Raised once until then.
    DesiredChanged {
        /// The merged version to apply.
        version: u64,
    },
    /// A control message without a readable `request_id`: nobody can be answered.
    CommandRejected(CommandError),
    /// A control message arrived retained (left on the broker with the RETAIN flag): it was
    /// acknowledged and neither run nor answered, since it would run again on every reconnect.
    RetainedCommandIgnored,
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
pub struct NodeStats {
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
    /// Retained control messages, acknowledged and neither run nor answered.
    pub retained_commands_ignored: u32,
}

/// An event waiting in the node's queue until it is polled; borrowed data is looked up then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Connected(bool),
    Disconnected(DisconnectReason, Duration),
    SubscribeRefused(ControlTopic),
    HeartbeatDue,
    Command(CommandId),
    CommandTimedOut(CommandId),
    CommandCancelled(CommandId),
    DesiredChanged,
    CommandRejected(CommandError),
    RetainedCommandIgnored,
    DuplicateCommand(bool),
    PacketTooLarge(usize, bool),
    MessagesDropped(Dropped),
    StopRequested,
    RestartRequested,
    Stopped,
}

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    pub(super) fn event(&self, pending: Pending) -> Option<Event<'_>> {
        Some(match pending {
            Pending::Connected(session_present) => Event::Connected { session_present },
            Pending::Disconnected(reason, retry_in) => Event::Disconnected { reason, retry_in },
            Pending::SubscribeRefused(topic) => Event::SubscribeRefused(topic),
            Pending::HeartbeatDue => Event::HeartbeatDue,
            Pending::Command(id) => {
                let running = self.commands.get(id)?;
                let parameters = self.parameters_at(running.parameters.clone())?;
                Event::Command(Command {
                    id,
                    name: &running.name,
                    request_id: &running.request_id,
                    parameters,
                    deadline: running.deadline,
                })
            }
            Pending::CommandTimedOut(id) => Event::CommandTimedOut(id),
            Pending::CommandCancelled(id) => Event::CommandCancelled(id),
            Pending::DesiredChanged => Event::DesiredChanged { version: self.desired.version() },
            Pending::CommandRejected(e) => Event::CommandRejected(e),
            Pending::RetainedCommandIgnored => Event::RetainedCommandIgnored,
            Pending::DuplicateCommand(replayed) => Event::DuplicateCommand { replayed },
            Pending::PacketTooLarge(size, acked) => Event::PacketTooLarge { size, acked },
            Pending::MessagesDropped(d) => Event::MessagesDropped { heartbeats: d.heartbeats, results: d.results },
            Pending::StopRequested => Event::StopRequested,
            Pending::RestartRequested => Event::RestartRequested,
            Pending::Stopped => Event::Stopped,
        })
    }
}
