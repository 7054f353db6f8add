//! The commands the core answers itself, without the application: one table, [`BUILT_INS`],
//! names them, and one `match` runs them.

use core::fmt::Write as _;
use core::ops::Range;

use super::command::{ReplyTo, REQUEST_ID_MAX};
use super::output::Pending;
use super::Node;
use crate::codec::json::{RawJson, Writer};
use crate::codec::message::{self, field, key, open, ToJson};
use crate::error::CommandError;
use crate::time::{later, Duration};

/// A command the core answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuiltIn {
    /// Answers `pong`: the node is alive and reading its control topic.
    Ping,
    /// Answers with uptime, heartbeat interval and connection counters.
    Status,
    /// Publishes the register message again.
    Reregister,
    /// Changes the heartbeat interval (`parameters.seconds`, 1 to 86,400).
    SetHeartbeatInterval,
    /// Answers, then asks the application to stop the node.
    Stop,
    /// Answers, then asks the application to stop and start its process again.
    Restart,
    /// Ends a running application command (`parameters.request_id`) with a failed result.
    Cancel,
}

impl BuiltIn {
    /// Every built-in, in the order [`BUILT_INS`] lists their names.
    const ALL: [Self; 7] = [
        Self::Ping,
        Self::Status,
        Self::Reregister,
        Self::SetHeartbeatInterval,
        Self::Stop,
        Self::Restart,
        Self::Cancel,
    ];

    /// Its name on the wire.
    const fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Status => "status",
            Self::Reregister => "reregister",
            Self::SetHeartbeatInterval => "set_heartbeat_interval",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Cancel => "cancel",
        }
    }

    /// The built-in called `name`, if any.
    pub(super) fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Commands the core answers itself; application commands cannot take these names.
// Evaluated at compile time, where an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
pub const BUILT_INS: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < names.len() {
        names[i] = BuiltIn::ALL[i].name();
        i += 1;
    }
    names
};

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    /// Runs a built-in and publishes its result.
    pub(super) fn run_built_in(&mut self, built_in: BuiltIn, request: ReplyTo<'_>, parameters: Range<usize>) {
        match built_in {
            BuiltIn::Ping => self.answer(request, "pong", None),
            BuiltIn::Status => {
                let mut data = [0u8; 256];
                let status = StatusData {
                    uptime: self.now.saturating_duration_since(self.started).as_secs(),
                    heartbeat_interval: self.heartbeat_interval.as_secs(),
                    connects: self.stats.connects,
                    results_dropped: self.stats.results_dropped,
                };
                let raw = json_data(&status, &mut data);
                self.answer(request, "running", raw)
            }
            BuiltIn::Reregister => {
                let _ = self.enqueue_register();
                self.answer(request, "registered", None)
            }
            BuiltIn::SetHeartbeatInterval => {
                let seconds = self.parameters_at(parameters).and_then(|p| p.get(field::SECONDS)?.deserialize::<u64>());
                match seconds.filter(|s| (1..=86_400).contains(s)) {
                    Some(s) => {
                        self.heartbeat_interval = Duration::from_secs(s);
                        self.next_heartbeat = self.next_heartbeat.map(|_| later(self.now, self.heartbeat_interval));
                        let mut data = [0u8; 32];
                        let raw = json_data(&SecondsData { seconds: s }, &mut data);
                        self.answer(request, "heartbeat interval set", raw)
                    }
                    None => self.fail(request, CommandError::InvalidParameter(field::SECONDS)),
                }
            }
            BuiltIn::Stop => {
                self.answer(request, "stopping", None);
                self.push_event(Pending::StopRequested);
            }
            BuiltIn::Restart => {
                self.answer(request, "restarting", None);
                self.push_event(Pending::RestartRequested);
            }
            BuiltIn::Cancel => self.cancel(request, parameters),
        }
    }

    /// Ends the running command named by `parameters.request_id`: its failed result first, then
    /// the answer to `cancel`.
    fn cancel(&mut self, request: ReplyTo<'_>, parameters: Range<usize>) {
        // Copied out: `parameters` borrows the receive buffer, and publishing borrows the node.
        let target = self
            .parameters_at(parameters)
            .and_then(|p| p.get(field::REQUEST_ID)?.as_escaped_str())
            .and_then(|t| heapless::String::<REQUEST_ID_MAX>::try_from(t).ok());
        let Some(target) = target else {
            return self.fail(request, CommandError::InvalidParameter(field::REQUEST_ID));
        };
        let mut message = heapless::String::<128>::new();
        let Some(running) = self.commands.find(&target).and_then(|id| Some((id, self.commands.take(id)?))) else {
            let _ = write!(message, "no running command has request_id `{target}`");
            return self.finish_or_count(request, false, &message, None);
        };
        let (id, running) = running;
        let _ = write!(message, "cancelled by request `{}`", request.id);
        self.finish_or_count(running.request(), false, &message, None);
        self.push_event(Pending::CommandCancelled(id));
        let mut data = [0u8; REQUEST_ID_MAX + 20];
        let raw = json_data(&RequestIdData { request_id: &target }, &mut data);
        self.answer(request, "cancelled", raw)
    }
}

/// `data` of the built-in `cancel` command.
struct RequestIdData<'a> {
    /// As received, still escaped.
    request_id: &'a str,
}

impl ToJson for RequestIdData<'_> {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::REQUEST_ID);
        w.escaped_str(self.request_id);
        w.raw(b"}");
    }
}

/// `data` of the built-in `status` command.
struct StatusData {
    uptime: u64,
    heartbeat_interval: u64,
    connects: u32,
    results_dropped: u32,
}

impl ToJson for StatusData {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::STATUS);
        w.raw(b"\"running\"");
        w.raw(key::UPTIME);
        w.u64(self.uptime);
        w.raw(key::HEARTBEAT_INTERVAL);
        w.u64(self.heartbeat_interval);
        w.raw(key::CONNECTS);
        w.u64(u64::from(self.connects));
        w.raw(key::RESULTS_DROPPED);
        w.u64(u64::from(self.results_dropped));
        w.raw(b"}");
    }
}

/// `data` of the built-in `set_heartbeat_interval` command.
struct SecondsData {
    seconds: u64,
}

impl ToJson for SecondsData {
    fn write_json(&self, w: &mut Writer<'_>) {
        open(w, key::SECONDS);
        w.u64(self.seconds);
        w.raw(b"}");
    }
}

/// Writes built-in result data into `buf`; it is our own JSON, so it parses.
fn json_data<'b>(data: &impl ToJson, buf: &'b mut [u8]) -> Option<RawJson<'b>> {
    let len = message::to_json(data, buf).ok()?;
    RawJson::parse(buf.get(..len)?).ok()
}
