//! The node task: owns nothing, borrows the node, a connection at a time, and the application's
//! handlers, and moves bytes and time between them. Protocol decisions stay in the core.
//!
//! Each turn drains `poll_output` completely (writing bytes as they come, running commands,
//! sampling heartbeats), then waits for exactly one thing: bytes or the core's deadline. A
//! connection lives for one [`session`](Driver::session); when the core asks for a new one,
//! the session ends, the old connection is dropped and the connector is asked again.

use embassy_futures::select::{select, Either};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::{Error as _, Read, Write};
use subnodesync_core::{CommandId, Event, Node, NodeError, Outcome, Output};

use crate::app::{Connector, Handlers, Sampler};
use crate::error::{Notice, TransportError};

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// The engine sent `stop`: the node answered it, published status `offline`, cleared its
    /// retained register message and disconnected.
    StopRequested,
    /// The engine sent `restart`: the node stopped as for `stop`; reset the device now.
    RestartRequested,
}

/// Drives `node` until the engine stops or restarts it; returns which.
///
/// Opens connections through `connector` whenever the core asks (at start and after its
/// backoff), runs application commands through `handlers` (result `data` is written into
/// `scratch`), fills heartbeats from `sampler`, and hands everything else to `notify`: core
/// events and transport errors, for logging. Transport errors never end it: the core reconnects
/// forever.
///
/// Reads are dropped half-way when a deadline comes first, so the connection's `read` must be
/// cancel-safe, as embassy-net's `TcpSocket` is.
pub async fn run<C, S, N, const H: usize, const K: usize, const CMDS: usize, const MSGS: usize>(
    node: &mut Node<'_, CMDS, MSGS>,
    connector: &mut C,
    handlers: &mut Handlers<'_, H, K>,
    sampler: &mut S,
    scratch: &mut [u8],
    notify: N,
) -> Stopped
where
    C: Connector,
    S: Sampler,
    N: FnMut(Notice<'_, C::Error>),
{
    anchor_wall_clock(node, sampler, Instant::now());
    let mut driver = Driver {
        handlers,
        sampler,
        scratch,
        notify,
        write_timeout: node.write_timeout(),
        open: false,
        stop: Stop::Running,
    };
    loop {
        let connection = if core::mem::take(&mut driver.open) { driver.connect(node, connector).await } else { None };
        if let Some(stopped) = driver.session(node, connection).await {
            return stopped;
        }
    }
}

/// How far a stop the engine asked for has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// `Node::stop` called; waiting for `Event::Stopped`.
    Stopping(Stopped),
    /// The node has stopped.
    Done(Stopped),
}

struct Driver<'r, 'h, S, N, const H: usize, const K: usize> {
    handlers: &'r mut Handlers<'h, H, K>,
    sampler: &'r mut S,
    scratch: &'r mut [u8],
    notify: N,
    write_timeout: Duration,
    /// The core asked for a connection (`Output::Open`).
    open: bool,
    stop: Stop,
}

impl<S: Sampler, N, const H: usize, const K: usize> Driver<'_, '_, S, N, H, K> {
    /// Opens a connection, bounded by the core's connect deadline, and tells the core how it went.
    async fn connect<'c, C, const CMDS: usize, const MSGS: usize>(
        &mut self,
        node: &mut Node<'_, CMDS, MSGS>,
        connector: &'c mut C,
    ) -> Option<C::Connection<'c>>
    where
        C: Connector,
        N: FnMut(Notice<'_, C::Error>),
    {
        // While a transport is being opened the core's only deadline is its connect timeout:
        // handlers finish inside the drain, so no command deadline is pending.
        let connected = select(connector.connect(), sleep_until(node.poll_timeout())).await;
        let now = Instant::now();
        match connected {
            Either::First(Ok(connection)) => {
                node.handle_connected(now);
                Some(connection)
            }
            Either::First(Err(e)) => {
                (self.notify)(Notice::Transport(TransportError::Connect(e)));
                node.handle_disconnected(now);
                None
            }
            Either::Second(()) => {
                (self.notify)(Notice::Transport(TransportError::ConnectTimeout));
                node.handle_timeout(now);
                None
            }
        }
    }

    /// Runs the node on one connection (or none, while backing off) until the core asks for a
    /// new one (`None`) or stops (`Some`).
    async fn session<T, E, const CMDS: usize, const MSGS: usize>(
        &mut self,
        node: &mut Node<'_, CMDS, MSGS>,
        mut connection: Option<T>,
    ) -> Option<Stopped>
    where
        T: Read + Write,
        N: FnMut(Notice<'_, E>),
    {
        loop {
            self.drain(node, &mut connection).await;
            if let Stop::Done(stopped) = self.stop {
                return Some(stopped);
            }
            if self.open {
                return None;
            }
            let deadline = node.poll_timeout();
            let Some(conn) = connection.as_mut() else {
                sleep_until(deadline).await;
                node.handle_timeout(Instant::now());
                continue;
            };
            // Bytes go straight into the core's receive buffer: no second buffer in RAM. Empty, it
            // asks for a drain first (the core may have framed what waited, or given up on a
            // stuck connection).
            let room = node.receive_buffer();
            if room.is_empty() {
                continue;
            }
            let woke = select(conn.read(room), sleep_until(deadline)).await;
            match woke {
                Either::First(Ok(0)) => self.lost(node, &mut connection, TransportError::Closed),
                Either::First(Ok(n)) => node.handle_received(Instant::now(), n),
                Either::First(Err(e)) => self.lost(node, &mut connection, TransportError::Read(e.kind())),
                Either::Second(()) => node.handle_timeout(Instant::now()),
            }
        }
    }

    /// Handles every pending output: writes bytes, runs commands, samples heartbeats, opens
    /// and closes as asked. Loops until the core has nothing more to say.
    async fn drain<T, E, const CMDS: usize, const MSGS: usize>(
        &mut self,
        node: &mut Node<'_, CMDS, MSGS>,
        connection: &mut Option<T>,
    ) where
        T: Read + Write,
        N: FnMut(Notice<'_, E>),
    {
        loop {
            let mut wrote = false;
            loop {
                let now = Instant::now();
                let Some(output) = node.poll_output() else { break };
                match output {
                    Output::Open => self.open = true,
                    Output::Close => *connection = None,
                    Output::Transmit(bytes) => {
                        let Some(conn) = connection.as_mut() else { continue };
                        let error = match with_timeout(self.write_timeout, conn.write_all(bytes)).await {
                            Ok(Ok(())) => {
                                wrote = true;
                                continue;
                            }
                            Ok(Err(e)) => TransportError::Write(e.kind()),
                            Err(_) => TransportError::WriteTimeout,
                        };
                        self.lost(node, connection, error);
                    }
                    Output::Event(Event::Command(command)) => {
                        let id = command.id;
                        let outcome = match self.handlers.get(command.name) {
                            Some(handler) => handler.handle(&command, self.scratch),
                            // The core only hands over declared commands: a name in
                            // `Config::commands` without a handler.
                            None => Outcome::no_handler(),
                        };
                        complete(node, now, id, outcome, &mut self.notify);
                    }
                    Output::Event(Event::DesiredChanged { .. }) => {
                        let handlers = &mut *self.handlers;
                        if let Err(e) = node.apply_desired(now, |key, value| handlers.apply_setting(key, value)) {
                            (self.notify)(Notice::ReportRefused(e));
                        }
                    }
                    Output::Event(Event::HeartbeatDue) => {
                        anchor_wall_clock(node, self.sampler, now);
                        let metrics = self.sampler.sample();
                        match node.send_heartbeat(now, &metrics) {
                            Ok(_) | Err(NodeError::Stopped) => {}
                            Err(e) => (self.notify)(Notice::HeartbeatRefused(e)),
                        }
                    }
                    Output::Event(event) => {
                        let asked = match event {
                            Event::StopRequested => Some(Stopped::StopRequested),
                            Event::RestartRequested => Some(Stopped::RestartRequested),
                            Event::Stopped => {
                                if let Stop::Stopping(stopped) = self.stop {
                                    self.stop = Stop::Done(stopped);
                                }
                                None
                            }
                            _ => None,
                        };
                        (self.notify)(Notice::Event(event));
                        // The core begins the stop once the command's result is sent.
                        if let Some(stopped) = asked.filter(|_| self.stop == Stop::Running) {
                            self.stop = Stop::Stopping(stopped);
                            node.stop(now);
                        }
                    }
                }
            }
            // Hand the bytes over (a TLS connection seals its record here); a failure is news
            // for the core, so drain again.
            let Some(conn) = connection.as_mut().filter(|_| wrote) else { return };
            let error = match with_timeout(self.write_timeout, conn.flush()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => TransportError::Write(e.kind()),
                Err(_) => TransportError::WriteTimeout,
            };
            self.lost(node, connection, error);
        }
    }

    /// The connection failed: drop it and tell the application and the core.
    fn lost<T, E, const CMDS: usize, const MSGS: usize>(
        &mut self,
        node: &mut Node<'_, CMDS, MSGS>,
        connection: &mut Option<T>,
        error: TransportError<E>,
    ) where
        N: FnMut(Notice<'_, E>),
    {
        *connection = None;
        (self.notify)(Notice::Transport(error));
        node.handle_disconnected(Instant::now());
    }
}

/// Publishes a handler's final result. One the core cannot send as it is (data not JSON, too
/// large) it replaces with a failed result saying why; this only reports that.
fn complete<E, const CMDS: usize, const MSGS: usize>(
    node: &mut Node<'_, CMDS, MSGS>,
    now: Instant,
    id: CommandId,
    outcome: Outcome<'_>,
    notify: &mut impl FnMut(Notice<'_, E>),
) {
    match node.complete(now, id, outcome) {
        Ok(()) | Err(NodeError::UnknownRequest | NodeError::Stopped) => {}
        Err(e) => notify(Notice::ResultRefused(e)),
    }
}

/// Anchors message timestamps to UTC, if the device knows the time.
fn anchor_wall_clock<const CMDS: usize, const MSGS: usize>(
    node: &mut Node<'_, CMDS, MSGS>,
    sampler: &mut impl Sampler,
    now: Instant,
) {
    if let Some(unix_micros) = sampler.unix_micros() {
        node.set_wall_clock(now, unix_micros);
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => Timer::at(at).await,
        None => core::future::pending().await,
    }
}
