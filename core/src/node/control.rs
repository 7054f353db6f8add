//! Control messages in: parsed, de-duplicated by request id, then answered by a built-in or
//! handed to the application; and the results that answer them.

use core::fmt::Write as _;
use core::ops::Range;

use super::builtin::BuiltIn;
use super::command::{fingerprint, parse_control, CommandName, ReplyTo, RequestId, Running};
use super::link::offset_in;
use super::output::Pending;
use super::{CommandId, Node};
use crate::codec::json::{Object, RawJson};
use crate::error::CommandError;
use crate::session::outbox::Dropped;
use crate::time::later;

impl<const CMDS: usize, const MSGS: usize> Node<'_, CMDS, MSGS> {
    pub(super) fn on_control(&mut self, payload: Range<usize>) {
        let bytes = self.rx.get(payload).unwrap_or_default();
        let control = match parse_control(bytes) {
            Ok(c) => c,
            Err(e) => {
                self.stats.commands_rejected += 1;
                return self.push_event(Pending::CommandRejected(e));
            }
        };
        let tag = fingerprint(control.request_id);
        if self.commands.is_running(control.request_id) || self.commands.recently_finished(tag) {
            self.stats.duplicate_commands += 1;
            let pid = self.alloc_pid();
            let replayed = self.commands.recently_finished(tag) && self.outbox.replay(tag, pid);
            return self.push_event(Pending::DuplicateCommand(replayed));
        }
        // Copy what outlives this packet; both are bounded by the parser.
        let request_id = RequestId::try_from(control.request_id).unwrap_or_default();
        let body = match control.body {
            Ok(body) => body,
            Err(e) => {
                let name = CommandName::try_from(control.name.unwrap_or_default()).unwrap_or_default();
                return self.fail(ReplyTo { id: &request_id, command: &name, tag }, e);
            }
        };
        let name = CommandName::try_from(body.name).unwrap_or_default();
        let request = ReplyTo { id: &request_id, command: &name, tag };
        // `{}` for absent parameters is a static string outside rx: an empty range stands for it.
        let parameters = offset_in(self.rx, body.parameters.as_raw().as_str().as_bytes());
        let timeout = body.timeout;
        if let Some(built_in) = BuiltIn::named(&name) {
            return self.run_built_in(built_in, request, parameters);
        }
        if self.config.commands.contains(&name.as_str()) {
            let deadline = timeout.map(|t| later(self.now, t));
            let started = Running::new(request, deadline, timeout, parameters).and_then(|r| self.commands.start(r));
            match started {
                Some(id) => self.push_event(Pending::Command(id)),
                None => self.fail(request, CommandError::Busy),
            }
        } else {
            self.fail(request, CommandError::Unknown);
        }
    }

    pub(super) fn answer(&mut self, request: ReplyTo<'_>, message: &str, data: Option<RawJson<'_>>) {
        self.finish_or_count(request, true, message, data);
    }

    pub(super) fn fail(&mut self, request: ReplyTo<'_>, error: CommandError) {
        let mut message = heapless::String::<96>::new();
        let _ = write!(message, "{error}");
        self.finish_or_count(request, false, &message, None);
    }

    /// Publishes a final result the node makes itself (a built-in's answer, a refusal, a
    /// timeout, a fallback failure). Nobody could act on an error, so one that cannot be queued
    /// is counted as a dropped result ([`Event::MessagesDropped`]).
    pub(super) fn finish_or_count(
        &mut self,
        request: ReplyTo<'_>,
        success: bool,
        message: &str,
        data: Option<RawJson<'_>>,
    ) {
        if self.finish(request, success, message, data).is_err() {
            self.stats.results_dropped += 1;
            self.push_event(Pending::MessagesDropped(Dropped { heartbeats: 0, results: 1 }));
        }
    }

    pub(super) fn time_out(&mut self, id: CommandId) {
        let Some(running) = self.commands.take(id) else { return };
        let mut message = heapless::String::<64>::new();
        let ms = running.timeout.map_or(0, |t| t.as_millis());
        let _ = write!(message, "timed out after {ms} ms");
        self.finish_or_count(running.request(), false, &message, None);
        self.push_event(Pending::CommandTimedOut(id));
    }

    /// The `parameters` object at `range` of the receive buffer (`{}` for an empty range).
    /// `None` if the buffer no longer holds it, which a caller treats as nothing to show.
    pub(super) fn parameters_at(&self, range: Range<usize>) -> Option<Object<'_>> {
        match self.rx.get(range) {
            Some(text) if !text.is_empty() => Some(Object::validated(core::str::from_utf8(text).ok()?)),
            _ => Some(Object::EMPTY),
        }
    }
}
