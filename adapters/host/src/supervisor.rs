//! Application commands: each handler runs in its own task, caught if it panics, bounded by
//! its timeout and the core's deadline, and cancelled when the core answers for it or the node
//! stops. However it ends, the result goes back to the node task as a message.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable, Aborted};
use futures_util::FutureExt as _;
use serde_json::{Map, Value};
use subnodesync_core::{CommandId, Instant, Node, NodeError, Outcome, Unescaped};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::command::{Command, CommandResult};
use crate::handler::{CommandContext, CommandHandler, HandlerResult};
use crate::inbox::{Inbox, Msg};
use crate::runtime::{self, Runtime};
use crate::time::Clock;

/// The running handlers of one node.
pub(crate) struct Supervisor<'h> {
    handlers: &'h HashMap<String, Arc<dyn CommandHandler>>,
    /// For handlers that set no timeout of their own.
    handler_timeout: Duration,
    running: HashMap<CommandId, Running>,
}

/// A running handler, as the node task tracks it.
pub(crate) struct Running {
    abort: AbortHandle,
    /// Dropped (which cancels the context) when the command ends for any reason.
    _cancel: watch::Sender<bool>,
}

/// A command copied out of the core's receive buffer, so the node can be called again.
pub(crate) struct Incoming {
    pub(crate) id: CommandId,
    pub(crate) name: String,
    pub(crate) request_id: String,
    pub(crate) parameters: String,
    pub(crate) deadline: Option<Instant>,
}

impl<'h> Supervisor<'h> {
    /// No command running yet; `handlers` by name.
    pub(crate) fn new(handlers: &'h HashMap<String, Arc<dyn CommandHandler>>, handler_timeout: Duration) -> Self {
        Self { handlers, handler_timeout, running: HashMap::new() }
    }

    /// Starts a handler task for a command, or answers it at once if it cannot run.
    pub(crate) fn start<R: Runtime>(
        &mut self,
        node: &mut Node<'_>,
        clock: &Clock<R>,
        inbox: &Arc<Inbox>,
        incoming: Incoming,
    ) {
        let Incoming { id, name, request_id, parameters, deadline } = incoming;
        let now = clock.now();
        let Some(handler) = self.handlers.get(&name).cloned() else {
            // The core only hands over commands we declared, so this is a bug; answer anyway.
            return report(node.complete(now, id, Outcome::no_handler()));
        };
        let parameters: Map<String, Value> = match serde_json::from_str(&parameters) {
            Ok(Value::Object(map)) => map,
            _ => return complete(node, now, id, &CommandResult::fail("parameters could not be read")),
        };
        let (name, request_id) = (Unescaped(&name).to_string(), Unescaped(&request_id).to_string());
        // The handler's own timeout, else the engine's deadline alone, else the default: a hung
        // handler never holds its slot forever, and the engine's longer deadline is honoured.
        let limit = handler.timeout().or_else(|| deadline.is_none().then_some(self.handler_timeout));
        let started = R::now();
        let deadline = [deadline.map(|d| clock.to_runtime(d)), limit.and_then(|l| started.checked_add(l))]
            .into_iter()
            .flatten()
            .min();
        let (cancel, cancelled) = watch::channel(false);
        let span = tracing::info_span!("command", request_id = %request_id, command = %name);
        tracing::debug!(parent: &span, ?deadline, "command started");
        let ctx = CommandContext {
            id,
            request_id: Arc::from(request_id.as_str()),
            deadline,
            cancel: cancelled,
            node: inbox.clone(),
        };
        let command = Command { name, request_id, parameters, deadline };
        // Its own task, caught if it panics, and abortable when the core times the command out.
        let (abort, registration) = AbortHandle::new_pair();
        // The call itself happens inside the guarded future, so a handler that panics before it
        // returns its future is caught too.
        let call = async move { handler.handle(ctx, command).await };
        let run = Abortable::new(AssertUnwindSafe(call).catch_unwind(), registration);
        self.running.insert(id, Running { abort, _cancel: cancel });
        R::spawn(supervise::<R>(run, id, limit, inbox.clone()).instrument(span));
    }

    /// Whether the handler for `id` still runs (its progress is still news).
    pub(crate) fn is_running(&self, id: CommandId) -> bool {
        self.running.contains_key(&id)
    }

    /// A handler's final result: published, unless the core already answered (timed out).
    pub(crate) fn finished(&mut self, node: &mut Node<'_>, now: Instant, id: CommandId, result: &CommandResult) {
        if self.running.remove(&id).is_some() {
            complete(node, now, id, result);
        }
    }

    /// The core published a timed-out or cancelled result: the handler's work is moot.
    pub(crate) fn abandoned(&mut self, id: CommandId) {
        if let Some(running) = self.running.remove(&id) {
            running.abort.abort();
        }
    }

    /// The node stopped: cancels every handler.
    pub(crate) fn abort_all(&mut self) {
        for (_, running) in self.running.drain() {
            running.abort.abort();
        }
    }
}

/// Publishes a handler's final result. One the core cannot send as it is (data too large or
/// too deep) it replaces with a failed result saying why; this only reports that.
fn complete(node: &mut Node<'_>, now: Instant, id: CommandId, result: &CommandResult) {
    let data = result.data.as_ref().map(Value::to_string);
    let outcome = if result.success { Outcome::ok(&result.message) } else { Outcome::fail(&result.message) };
    let outcome = match &data {
        Some(d) => outcome.with_data(d.as_bytes()),
        None => outcome,
    };
    report(node.complete(now, id, outcome));
}

/// Logs how publishing a result went.
fn report(completed: Result<(), NodeError>) {
    match completed {
        Ok(()) => tracing::debug!("result queued"),
        Err(NodeError::UnknownRequest | NodeError::Stopped) => {}
        Err(e) => tracing::warn!(error = %e, "result could not be sent as it is; the engine gets a failure instead"),
    }
}

/// A handler's run: its result, unless it panicked, unless it was aborted.
type Run = Result<std::thread::Result<HandlerResult>, Aborted>;

/// Waits for a handler and turns however it ended into a result.
async fn supervise<R: Runtime>(run: impl Future<Output = Run>, id: CommandId, limit: Option<Duration>, tx: Arc<Inbox>) {
    let joined = match limit {
        Some(limit) => match runtime::timeout::<R, _>(limit, run).await {
            Some(joined) => joined,
            // The run was dropped with the timeout: it is cancelled.
            None => {
                tracing::warn!(?limit, "handler timed out; aborted");
                let message = format!("timed out after {} ms (handler timeout)", limit.as_millis());
                tx.send(Msg::finished(id, CommandResult::fail(message)));
                return;
            }
        },
        None => run.await,
    };
    let result = match joined {
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(e))) => CommandResult::fail(e.to_string()),
        Ok(Err(payload)) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            tracing::error!(panic = %what, "handler panicked");
            CommandResult::fail(format!("handler panicked: {what}"))
        }
        // Aborted: the core's deadline passed (it has answered) or the node stopped.
        Err(Aborted) => return,
    };
    tx.send(Msg::finished(id, result));
}
