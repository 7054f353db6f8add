//! The node task: one future owns the `Node`, its buffers and its transport, and moves bytes
//! and time between them. Protocol decisions stay in the core.
//!
//! Each turn of the loop drains `poll_output` completely (handing bytes to the transport as they
//! come, starting commands, forwarding events), performs the I/O that must wait (what a full
//! socket did not take, a flush, close, open), then waits for exactly one thing: bytes, a
//! finished connect, the core's deadline, or a message from the handle, a handler or the
//! sampler. Nothing but the node and its sleep lives in the task between wake-ups: a process may
//! run tens of thousands of these.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable};
use futures_util::FutureExt as _;
use serde_json::Value;
use subnodesync_core::{Buffers, Event, Node, Output, Rejection};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::error::Error;
use crate::handle::{LifecycleEvent, Shared, StopReason};
use crate::handler::SettingsHandler;
use crate::http::Registration;
use crate::inbox::{Inbox, Msg};
use crate::metrics::CustomMetrics;
use crate::runtime::Runtime;
use crate::settings::{variable_for, SampleSource, Settings};
use crate::supervisor::{Incoming, Supervisor};
use crate::time::{to_std, unix_micros, Clock};
use crate::transport::{Endpoint, Transport};
use subnodesync_sysinfo::Sample;

mod sample;
mod write;

pub(crate) use sample::prime_shared_sample;

/// Messages handled per wake-up before the node is drained again.
const MESSAGE_BATCH: usize = 64;

/// The node task's connections to the outside.
pub(crate) struct Io {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ready: oneshot::Sender<Result<(), Error>>,
}

/// Runs one node until it stops. The settings come boxed: a future keeps an argument it moves
/// into a local twice, and a process may run a hundred thousand of these.
pub(crate) async fn run<R: Runtime>(mut settings: Box<Settings>, io: Io) {
    let Io { inbox, shared, ready } = io;
    // However the task ends (a panic included), whoever waits in `stopped()` hears of it.
    let _failed = StopGuard(shared.clone(), inbox.clone());

    // Everything the node borrows lives in this future, declared before the node.
    let commands: Vec<&str> = settings.handlers.keys().map(String::as_str).collect();
    let identity = &settings.identity;
    let capabilities: Vec<&str> = identity.capabilities.iter().map(String::as_str).collect();
    let metadata: Vec<(&str, &str)> = identity.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = identity.config(settings.timing, &commands, &capabilities, &metadata);
    let sizes = settings.buffers;
    // One allocation for the four: a process may hold a hundred thousand nodes.
    let mut arena = vec![0; sizes.rx + sizes.tx + sizes.outbox + sizes.desired];
    let (rx_buf, rest) = arena.split_at_mut(sizes.rx);
    let (tx_buf, rest) = rest.split_at_mut(sizes.tx);
    let (outbox, desired) = rest.split_at_mut(sizes.outbox);
    let clock = Clock::<R>::start();
    let buffers = Buffers::new(rx_buf, tx_buf, outbox).with_desired(desired);
    let mut node: Node<'_> = match Node::new(config, buffers, settings.seed, clock.now()) {
        Ok(node) => node,
        Err(error) => {
            let _ = ready.send(Err(Error::Config { error, variable: variable_for(&error, &settings.sources) }));
            return;
        }
    };
    node.set_wall_clock(clock.now(), unix_micros());
    tracing::info!(broker = %settings.endpoint.url, "node starting");
    let _ = ready.send(Ok(()));
    // Its own task: a slow or absent HTTP server never holds MQTT up.
    let http_registration = settings.http_register_url.take().and_then(|url| {
        // The same bytes the core publishes on `.../register`, built once at start. The core
        // already proved at construction that the register message fits the outbox.
        let mut body = vec![0; sizes.outbox];
        match node.register_json(&mut body) {
            Ok(len) => body.truncate(len),
            Err(error) => {
                tracing::error!(%error, "register message too large for HTTP registration");
                return None;
            }
        }
        let registration = Registration {
            url,
            body,
            attempt_timeout: settings.timing.connect_timeout,
            reconnect_min: settings.timing.reconnect_min,
            reconnect_max: settings.timing.reconnect_max,
            seed: settings.seed,
        };
        let (abort, registration_handle) = AbortHandle::new_pair();
        let task = Abortable::new(registration.run::<R>(), registration_handle);
        R::spawn(task.map(drop).instrument(tracing::Span::current()));
        Some(abort)
    });

    let mut driver = Driver {
        clock,
        endpoint: &settings.endpoint,
        write_timeout: to_std(node.write_timeout()),
        transport: None,
        connecting: None,
        turn: 0,
        open: false,
        close: false,
        wbuf: Vec::new(),
        unflushed: false,
        write_failed: None,
        last_error: None,
        inbox,
        shared,
        commands: Supervisor::new(&settings.handlers, settings.handler_timeout),
        sampler: &mut settings.sampler,
        metrics: &mut settings.metrics,
        stop_on_request: settings.stop_on_request,
        settings: &mut settings.settings,
        stop_reason: None,
        stopped: false,
    };
    driver.run(&mut node).await;
    if let Some(registration) = http_registration {
        registration.abort();
    }
    driver.finish();
}

/// Marks the node [`StopReason::Failed`] if its task ends without a reason (it panicked or was
/// aborted); a reason already set wins. However the task ends, the inbox lets go of its waker,
/// which would otherwise keep the finished task's memory for as long as the handle lives.
struct StopGuard(Arc<Shared>, Arc<Inbox>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.1.forget_waker();
        // Ended without `finish` (a panic, or `stop` aborting a stuck task): say so anyway.
        if self.0.set_stopped(StopReason::Failed) {
            self.0.connected.store(false, Ordering::Relaxed);
            self.0.emit(LifecycleEvent::Stopped);
        }
    }
}

/// A connect in progress.
type Connecting = Pin<Box<dyn Future<Output = io::Result<Transport>> + Send>>;

/// What a polled output asks of the node once its borrow has ended.
enum Then {
    Nothing,
    Command(Incoming),
    ApplyDesired(u64),
    Stop(StopReason),
    Heartbeat(Sample),
}

/// What woke the loop.
enum Wake {
    Msg(Msg),
    Read(io::Result<usize>),
    Opened(io::Result<Transport>),
    Timeout,
}

struct Driver<'h, R: Runtime> {
    clock: Clock<R>,
    // Borrowed from the settings the core's configuration borrows too: stored once in the task.
    endpoint: &'h Endpoint,
    write_timeout: Duration,
    transport: Option<Transport>,
    connecting: Option<Connecting>,
    /// Which wake-up source is polled first next time.
    turn: usize,
    /// The core asked for a transport (`Output::Open`).
    open: bool,
    /// The core asked to close the transport (`Output::Close`), after writing what is queued.
    close: bool,
    /// Bytes the transport did not take at once, in order; empty (and unallocated) unless the
    /// socket was full.
    wbuf: Vec<u8>,
    /// The transport was written to since its last flush (TLS and WebSocket hold bytes back).
    unflushed: bool,
    /// A write made during a drain failed; the core hears of it once the drain is over.
    write_failed: Option<io::Error>,
    /// The transport error behind the next `Disconnected` event.
    last_error: Option<String>,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    commands: Supervisor<'h>,
    sampler: &'h mut SampleSource,
    metrics: &'h mut CustomMetrics,
    stop_on_request: bool,
    settings: &'h mut Option<Box<dyn SettingsHandler>>,
    stop_reason: Option<StopReason>,
    stopped: bool,
}

impl<R: Runtime> Driver<'_, R> {
    async fn run(&mut self, node: &mut Node<'_>) {
        loop {
            // Drain, then do the I/O the drain asked for; a failed write is news for the core.
            loop {
                self.drain(node);
                if !self.perform_io(node).await {
                    break;
                }
            }
            if self.stopped {
                return;
            }
            let deadline = node.poll_timeout();
            if let Some(at) = deadline {
                // Due already (say, packets waiting for queue room): no timer, no grid.
                let now = self.clock.now();
                if at <= now {
                    node.handle_timeout(now);
                    continue;
                }
            }
            let wake_at = deadline.map(|at| self.clock.wake_at(at));
            // Bytes are read straight into the core's receive buffer. Empty, it asks for a drain
            // first (the core may have framed what waited, or given up on a stuck connection).
            let room = node.receive_buffer();
            if room.is_empty() {
                continue;
            }
            // Wait for the first of four; whoever was polled first last time goes last this time,
            // so a busy source cannot starve the others.
            self.turn = self.turn.wrapping_add(1);
            let first = self.turn;
            let wake = {
                let (inbox, transport) = (&self.inbox, &mut self.transport);
                let mut opened = std::pin::pin!(connect_some(&mut self.connecting));
                let mut sleep = std::pin::pin!(sleep_until::<R>(wake_at));
                std::future::poll_fn(|cx| {
                    for source in (0..4).map(|i| (first + i) % 4) {
                        let polled = match source {
                            0 => inbox.poll_recv(cx).map(Wake::Msg),
                            1 => match transport.as_mut() {
                                Some(t) => t.poll_read(cx, room).map(Wake::Read),
                                None => Poll::Pending,
                            },
                            2 => opened.as_mut().poll(cx).map(Wake::Opened),
                            _ => sleep.as_mut().poll(cx).map(|()| Wake::Timeout),
                        };
                        if polled.is_ready() {
                            return polled;
                        }
                    }
                    Poll::Pending
                })
                .await
            };
            let now = self.clock.now();
            match wake {
                Wake::Timeout => node.handle_timeout(now),
                Wake::Read(Ok(0)) => self.lost(node, "broker closed the connection".into()),
                Wake::Read(Ok(n)) => node.handle_received(now, n),
                Wake::Read(Err(e)) => self.lost(node, e.to_string()),
                Wake::Opened(Ok(transport)) => {
                    self.connecting = None;
                    self.transport = Some(transport);
                    node.handle_connected(now);
                }
                Wake::Opened(Err(e)) => {
                    self.connecting = None;
                    self.last_error = Some(format!("connecting to {}: {e}", self.endpoint.url));
                    node.handle_disconnected(now);
                }
                Wake::Msg(msg) => {
                    self.on_msg(node, msg);
                    for _ in 1..MESSAGE_BATCH {
                        match self.inbox.try_recv() {
                            Some(msg) => self.on_msg(node, msg),
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Polls every output, acting on each at once where no I/O is needed.
    fn drain(&mut self, node: &mut Node<'_>) {
        loop {
            let then = match node.poll_output() {
                None => return,
                Some(Output::Open) => {
                    self.open = true;
                    Then::Nothing
                }
                Some(Output::Transmit(bytes)) => {
                    self.transmit(bytes);
                    Then::Nothing
                }
                Some(Output::Close) => {
                    self.close = true;
                    Then::Nothing
                }
                Some(Output::Event(event)) => self.on_event(event),
            };
            match then {
                Then::Nothing => {}
                Then::Command(incoming) => self.commands.start(node, &self.clock, &self.inbox, incoming),
                Then::Stop(reason) => {
                    // The core begins the stop once the `stop` command's result is sent.
                    self.stop_reason.get_or_insert(reason);
                    node.stop(self.clock.now());
                }
                Then::Heartbeat(sample) => self.heartbeat(node, sample),
                Then::ApplyDesired(version) => self.apply_desired(node, version),
            }
        }
    }

    /// Acts on an event; what needs the node again is returned for after the borrow.
    fn on_event(&mut self, event: Event<'_>) -> Then {
        let lifecycle = match event {
            Event::Connected { session_present } => {
                tracing::info!(session_present, "connected");
                self.shared.connected.store(true, Ordering::Relaxed);
                LifecycleEvent::Connected { session_present }
            }
            Event::Disconnected { reason, retry_in } => {
                self.shared.connected.store(false, Ordering::Relaxed);
                let error = self.last_error.take();
                let retry_in = to_std(retry_in);
                let why = reason.to_string();
                match &error {
                    Some(e) => tracing::warn!(reason = %why, error = %e, ?retry_in, "disconnected"),
                    None => tracing::warn!(reason = %why, ?retry_in, "disconnected"),
                }
                LifecycleEvent::Disconnected { reason, error, retry_in }
            }
            Event::HeartbeatDue => return self.start_sample(),
            Event::Command(cmd) => {
                return Then::Command(Incoming {
                    id: cmd.id,
                    name: cmd.name.to_owned(),
                    request_id: cmd.request_id.to_owned(),
                    parameters: cmd.parameters.as_raw().as_str().to_owned(),
                    deadline: cmd.deadline,
                });
            }
            Event::CommandTimedOut(id) | Event::CommandCancelled(id) => {
                // The core has published the timed-out or cancelled result; the handler's work
                // is moot.
                self.commands.abandoned(id);
                return Then::Nothing;
            }
            Event::DesiredChanged { version } => return Then::ApplyDesired(version),
            Event::StopRequested => return self.requested(LifecycleEvent::StopRequested, StopReason::StopRequested),
            Event::RestartRequested => {
                return self.requested(LifecycleEvent::RestartRequested, StopReason::RestartRequested);
            }
            Event::Stopped => {
                self.stopped = true;
                return Then::Nothing;
            }
            Event::RetainedCommandIgnored => {
                tracing::warn!("a retained control message was ignored: commands are never retained");
                return Then::Nothing;
            }
            Event::CommandRejected(e) => {
                tracing::warn!(error = %e, "control message without a readable request_id ignored");
                return Then::Nothing;
            }
            Event::SubscribeRefused(topic) => {
                tracing::warn!(?topic, "broker refused a control subscription: commands there will not arrive");
                return Then::Nothing;
            }
            Event::MessagesDropped { heartbeats, results } => {
                tracing::warn!(heartbeats, results, "outbox full: messages dropped");
                return Then::Nothing;
            }
            other => {
                tracing::debug!(event = ?other, "node event");
                return Then::Nothing;
            }
        };
        self.shared.emit(lifecycle);
        Then::Nothing
    }

    /// The engine asked the node to stop or restart: tell the application, and stop if told to.
    fn requested(&mut self, event: LifecycleEvent, reason: StopReason) -> Then {
        tracing::info!(request = %event, stopping = self.stop_on_request, "engine request");
        self.shared.emit(event);
        if self.stop_on_request {
            Then::Stop(reason)
        } else {
            Then::Nothing
        }
    }

    fn on_msg(&mut self, node: &mut Node<'_>, msg: Msg) {
        let now = self.clock.now();
        match msg {
            Msg::Stop => {
                tracing::info!("stopping");
                self.stop_reason.get_or_insert(StopReason::Application);
                node.stop(now);
            }
            Msg::SetMetric(metric) => {
                let (name, value) = *metric;
                self.metrics.set(name, value);
            }
            Msg::RemoveMetric(name) => self.metrics.remove(&name),
            Msg::Progress { id, update } => {
                if !self.commands.is_running(id) {
                    return;
                }
                let (message, data) = &*update;
                let data = data.as_ref().map(Value::to_string);
                if let Err(e) = node.progress(now, id, message, data.as_deref().map(str::as_bytes)) {
                    tracing::warn!(error = %e, "progress update not sent");
                }
            }
            Msg::Finished { id, result } => {
                self.commands.finished(node, now, id, &result);
            }
            Msg::Sampled(sample) => self.heartbeat(node, sample),
            Msg::SamplerBack(sampler) => {
                *self.sampler = SampleSource::Own(Some(sampler.unwrap_or_else(|| {
                    tracing::error!("the metrics sampler panicked; heartbeats carry zeros from now on");
                    Box::new(Sample::default)
                })));
            }
        }
    }

    /// Applies the merged desired settings: the application's through its handler.
    fn apply_desired(&mut self, node: &mut Node<'_>, version: u64) {
        let handler = &mut *self.settings;
        let applied = node.apply_desired(self.clock.now(), |key, value| {
            let Some(handler) = handler.as_mut() else { return Err(Rejection::new("unknown setting")) };
            // The core validated it as a JSON scalar, which serde_json reads.
            let value: Value = serde_json::from_str(value.as_str()).unwrap_or(Value::Null);
            handler.apply(key, &value).map_err(|reason: String| Rejection::new(&reason))
        });
        match applied {
            Ok(()) => tracing::info!(version, "desired state applied"),
            Err(error) => tracing::warn!(version, %error, "desired state applied, but its report cannot be sent"),
        }
    }

    /// Cancels what still runs, records why the node stopped and says goodbye.
    fn finish(mut self) {
        self.commands.abort_all();
        self.transport = None;
        self.shared.connected.store(false, Ordering::Relaxed);
        let reason = self.stop_reason.unwrap_or(StopReason::Application);
        tracing::info!(?reason, "node stopped");
        // The reason first: whoever hears `Stopped` can read it.
        self.shared.set_stopped(reason);
        self.shared.emit(LifecycleEvent::Stopped);
    }
}

/// Sleeps until `at` (rounded to the wake-up grid already), or forever without a deadline.
async fn sleep_until<R: Runtime>(at: Option<std::time::Instant>) {
    match at {
        Some(at) => R::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Finishes the connect in progress, or waits forever without one.
async fn connect_some(connecting: &mut Option<Connecting>) -> io::Result<Transport> {
    match connecting {
        Some(c) => c.await,
        None => std::future::pending().await,
    }
}
