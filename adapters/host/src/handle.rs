//! What the application holds on to: [`NodeHandle`], lifecycle events and stop reasons.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use subnodesync_core::DisconnectReason;
use tokio::sync::{broadcast, Notify};

use futures_util::future::AbortHandle;

use crate::inbox::Inbox;
use crate::inbox::Msg;
use crate::metrics::MetricValue;
use crate::runtime::Timer;

/// Something the application may want to know about the node's life.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// The broker accepted the node; it has registered (or is about to).
    Connected {
        /// The broker kept the node's session (commands queued meanwhile will arrive).
        session_present: bool,
    },
    /// The connection ended; the node reconnects by itself after `retry_in`.
    Disconnected {
        /// Why, as the core saw it.
        reason: DisconnectReason,
        /// The transport error behind a `Transport` reason, when there was one.
        error: Option<String>,
        /// The jittered backoff before the next attempt.
        retry_in: Duration,
    },
    /// The engine sent `stop`.
    StopRequested,
    /// The engine sent `restart`.
    RestartRequested,
    /// The node has stopped; nothing more will happen.
    Stopped,
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected { session_present } => write!(f, "connected (session present: {session_present})"),
            Self::Disconnected { reason, error, retry_in } => {
                write!(f, "disconnected: {reason}")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                write!(f, "; retrying in {retry_in:?}")
            }
            Self::StopRequested => f.write_str("stop requested by the engine"),
            Self::RestartRequested => f.write_str("restart requested by the engine"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// Why a node stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The engine sent `stop`: the application should exit.
    StopRequested,
    /// The engine sent `restart`: the application should start its process again.
    RestartRequested,
    /// The application called [`NodeHandle::stop`].
    Application,
    /// The node task ended abnormally (a bug; see the logs).
    Failed,
}

pub(crate) struct Shared {
    pub(crate) node_name: String,
    pub(crate) instance_id: String,
    pub(crate) events: Mutex<Events>,
    pub(crate) connected: AtomicBool,
    pub(crate) stop_timeout: Duration,
    pub(crate) task: Mutex<Option<AbortHandle>>,
    /// The runtime's clock and timer, for [`NodeHandle::stop`]'s bound.
    pub(crate) timer: Timer,
    /// Why the node stopped, once it has.
    pub(crate) stopped: Mutex<Option<StopReason>>,
    /// Wakes everyone in [`NodeHandle::stopped`] when `stopped` is set.
    pub(crate) stopped_notify: Notify,
}

/// Lifecycle events before and after the application first asks for them.
#[derive(Debug)]
pub(crate) enum Events {
    /// Nobody has asked yet: the latest events, kept for the first receiver. Most nodes of a
    /// large fleet process never ask, and a channel preallocates all its slots.
    Early(VecDeque<LifecycleEvent>),
    /// The channel, created on the first [`NodeHandle::events`] call.
    Live(broadcast::Sender<LifecycleEvent>),
}

impl Default for Events {
    fn default() -> Self {
        Self::Early(VecDeque::new())
    }
}

impl Shared {
    /// Tells every receiver about `event`, or keeps it for the first one.
    pub(crate) fn emit(&self, event: LifecycleEvent) {
        match &mut *self.events.lock().unwrap_or_else(PoisonError::into_inner) {
            Events::Early(kept) => {
                if kept.len() == LIFECYCLE_BACKLOG {
                    kept.pop_front();
                }
                kept.push_back(event);
            }
            Events::Live(sender) => {
                let _ = sender.send(event);
            }
        }
    }

    /// Records why the node stopped (the first reason wins) and wakes whoever waits for it.
    /// Returns whether this call set it.
    pub(crate) fn set_stopped(&self, reason: StopReason) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let first = stopped.is_none();
        stopped.get_or_insert(reason);
        drop(stopped);
        self.stopped_notify.notify_waiters();
        first
    }

    fn stop_reason(&self) -> Option<StopReason> {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many lifecycle events a receiver may fall behind. Events are rare (a connect, a
/// disconnect, a stop), and every node preallocates this many slots, so it is kept small.
pub const LIFECYCLE_BACKLOG: usize = 8;

/// The application's handle on a running node. Cheap to clone; dropping every clone leaves the
/// node running (call [`stop`](Self::stop) for a clean exit).
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Arc<Inbox>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("instance_id", &self.shared.instance_id)
            .field("connected", &self.is_connected())
            .field("stopped", &self.shared.stop_reason())
            .finish()
    }
}

impl NodeHandle {
    /// `{node_name}-{hostname}-{pid}`: the MQTT client id and a topic level.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    /// The application name.
    pub fn node_name(&self) -> &str {
        &self.shared.node_name
    }

    /// Whether the broker has accepted the node and the connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Lifecycle events. The first call receives the events since start (the latest
    /// [`LIFECYCLE_BACKLOG`] of them, if more happened before it); later calls receive events
    /// from then on. A receiver that falls more than [`LIFECYCLE_BACKLOG`] events behind
    /// skips the oldest (and is told so with `RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<LifecycleEvent> {
        let mut events = self.shared.events.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *events {
            Events::Live(sender) => sender.subscribe(),
            Events::Early(kept) => {
                let (sender, receiver) = broadcast::channel(LIFECYCLE_BACKLOG);
                for event in kept.drain(..) {
                    let _ = sender.send(event);
                }
                *events = Events::Live(sender);
                receiver
            }
        }
    }

    /// Sets a custom heartbeat metric; it is sent with every heartbeat from now on, after the
    /// fixed three, in the order metrics were first set.
    pub fn set_metric(&self, name: impl Into<String>, value: impl Into<MetricValue>) {
        self.tx.send(Msg::SetMetric(Box::new((name.into(), value.into()))));
    }

    /// Stops sending a custom metric.
    pub fn remove_metric(&self, name: impl Into<String>) {
        self.tx.send(Msg::RemoveMetric(name.into().into_boxed_str()));
    }

    /// Stops the node cleanly: status `offline`, the retained register cleared, DISCONNECT.
    /// Returns once the node has stopped, or after the stop timeout plus a second. Stopping a
    /// stopped node returns at once.
    pub async fn stop(&self) {
        self.tx.send(Msg::Stop);
        let bound = self.shared.stop_timeout + Duration::from_secs(1);
        if self.shared.timer.timeout(bound, self.stopped()).await.is_none() {
            tracing::error!(instance_id = %self.shared.instance_id, "node did not stop in {bound:?}; aborting its task");
            if let Some(task) = self.shared.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }

    /// Resolves when the node has stopped, with the reason.
    pub async fn stopped(&self) -> StopReason {
        loop {
            // Registered before the check, so a stop between the two still wakes this wait.
            let mut notified = std::pin::pin!(self.shared.stopped_notify.notified());
            notified.as_mut().enable();
            if let Some(reason) = self.shared.stop_reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// The stop reason, if the node has stopped.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.shared.stop_reason()
    }
}
