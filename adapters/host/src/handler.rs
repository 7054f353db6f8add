//! Application commands: the [`CommandHandler`] trait, what a handler is given and what it
//! returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use subnodesync_core::CommandId;
use tokio::sync::watch;

use std::time::Instant;

use crate::command::{Command, CommandResult};
use crate::inbox::{Inbox, Msg};

/// A boxed, sendable future, as [`CommandHandler::handle`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Any error a handler returns; its `Display` becomes the failed result's `message`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a handler returns.
pub type HandlerResult = Result<CommandResult, HandlerError>;

/// An application command: the Rust rendering of the original design's handler interface.
///
/// Each command runs as its own task, concurrently with other commands and with the
/// node. A handler that returns `Err(e)` produces a failed result whose message is `e`; one that
/// panics produces a failed result `handler panicked: ...` and the node carries on; one that
/// runs past its deadline is aborted and the result says it timed out.
///
/// ```
/// use std::sync::Arc;
/// use subnodesync_host::{BoxFuture, Command, CommandContext, CommandHandler, CommandResult, HandlerResult};
///
/// struct Greet;
///
/// impl CommandHandler for Greet {
///     fn name(&self) -> &str {
///         "greet"
///     }
///
///     fn handle(self: Arc<Self>, _ctx: CommandContext, cmd: Command) -> BoxFuture<HandlerResult> {
///         Box::pin(async move {
///             let who = cmd.parameters.get("name").and_then(|v| v.as_str()).unwrap_or("world");
///             Ok(CommandResult::ok(format!("hello, {who}")))
///         })
///     }
/// }
/// ```
pub trait CommandHandler: Send + Sync + 'static {
    /// The command name the engine sends (at most 32 bytes, not a built-in name).
    fn name(&self) -> &str;

    /// Runs one command. `self` is shared by every concurrent run.
    fn handle(self: Arc<Self>, ctx: CommandContext, command: Command) -> BoxFuture<HandlerResult>;

    /// How long one run may take before it is aborted with a failed result; `None` (the
    /// default) falls back to the builder's `handler_timeout`. The engine's `timeout_ms`
    /// applies too, whichever comes first.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// A handler made of a name and an async closure; see [`handler_fn`].
pub struct FnHandler<F> {
    name: String,
    timeout: Option<Duration>,
    f: F,
}

impl<F> FnHandler<F> {
    /// Aborts a run after `timeout` with a failed result.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnHandler").field("name", &self.name).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// A handler from a closure: `handler_fn("echo", |ctx, cmd| async move { ... })`.
///
/// ```
/// use subnodesync_host::{handler_fn, CommandResult};
///
/// let echo = handler_fn("echo", |_ctx, cmd| async move {
///     Ok(CommandResult::ok("echoed").with_data(cmd.parameters))
/// });
/// ```
pub fn handler_fn<F, Fut>(name: impl Into<String>, f: F) -> FnHandler<F>
where
    F: Fn(CommandContext, Command) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    FnHandler { name: name.into(), timeout: None, f }
}

impl<F, Fut> CommandHandler for FnHandler<F>
where
    F: Fn(CommandContext, Command) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn handle(self: Arc<Self>, ctx: CommandContext, command: Command) -> BoxFuture<HandlerResult> {
        Box::pin((self.f)(ctx, command))
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// What a running handler can do besides return: report progress, see its deadline, notice
/// cancellation. Cheap to clone; clones may move into tasks the handler spawns.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub(crate) id: CommandId,
    pub(crate) request_id: Arc<str>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) node: Arc<Inbox>,
}

impl CommandContext {
    /// The engine's request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// When the run will be cut off, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Publishes a progress update (`"state":"in_progress"`) with `message` and optional `data`.
    /// Updates sent after the command finished or timed out are dropped.
    pub fn progress(&self, message: impl Into<String>, data: Option<Value>) {
        self.node.send(Msg::Progress { id: self.id, update: Box::new((message.into(), data)) });
    }

    /// Sets a custom heartbeat metric, as [`NodeHandle::set_metric`](crate::NodeHandle::set_metric)
    /// does: a handler can keep its own counters in the heartbeat.
    pub fn set_metric(&self, name: impl Into<String>, value: impl Into<crate::MetricValue>) {
        self.node.send(Msg::SetMetric(Box::new((name.into(), value.into()))));
    }

    /// Whether the run was cancelled: it timed out, the engine cancelled it (the built-in
    /// `cancel`), or the node is stopping.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow() || self.cancel.has_changed().is_err()
    }

    /// Resolves once the run is cancelled. A timed-out handler's own future is aborted right
    /// after; this is for work it handed elsewhere (spawned tasks, blocking threads).
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // An error means the sender is gone: the command is over, which is cancellation too.
        let _ = cancel.wait_for(|c| *c).await;
    }
}

/// Applies the application's desired settings (PROTOCOL.md §15), those the engine sets with
/// `subnode config set`. Any `FnMut(&str, &Value) -> Result<(), String>` is one.
///
/// It runs on the node's task, once for every setting in effect (the built-in
/// `heartbeat_interval` excepted) each time the desired state changes: the whole set, not what
/// changed. Return quickly; `Err` says why a value is refused (at most 64 bytes are reported),
/// and a refused setting is reported as not in effect.
pub trait SettingsHandler: Send + 'static {
    /// Applies `value` to the setting `key`, or says why not.
    fn apply(&mut self, key: &str, value: &Value) -> Result<(), String>;
}

impl<F: FnMut(&str, &Value) -> Result<(), String> + Send + 'static> SettingsHandler for F {
    fn apply(&mut self, key: &str, value: &Value) -> Result<(), String> {
        self(key, value)
    }
}
