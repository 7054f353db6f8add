//! What the adapter tells the application while it runs.

use core::fmt;

use embedded_io_async::ErrorKind;
use subnodesync_core::{Event, NodeError};

/// Why a connection failed, as the adapter saw it. The core then backs off and reconnects;
/// [`Notice::Event`] with `Event::Disconnected` follows with the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError<E> {
    /// The connector could not open a connection.
    Connect(E),
    /// The connector did not finish within the core's connect timeout.
    ConnectTimeout,
    /// Reading from the connection failed.
    Read(ErrorKind),
    /// The broker closed the connection (a read returned 0 bytes).
    Closed,
    /// Writing to or flushing the connection failed.
    Write(ErrorKind),
    /// A write did not finish within 1.5 keep-alive intervals: the broker is not reading.
    WriteTimeout,
}

impl<E: fmt::Debug> fmt::Display for TransportError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e:?}"),
            Self::ConnectTimeout => f.write_str("connect did not finish within the connect timeout"),
            Self::Read(kind) => write!(f, "read failed: {kind:?}"),
            Self::Closed => f.write_str("broker closed the connection"),
            Self::Write(kind) => write!(f, "write failed: {kind:?}"),
            Self::WriteTimeout => f.write_str("write blocked for 1.5 keep-alive intervals"),
        }
    }
}

/// Something the application may log or act on, handed to [`run`](crate::run)'s `notify`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Notice<'a, E> {
    /// An event from the core (connected, disconnected with the backoff delay, a refused
    /// subscription, dropped messages, ...). Commands and heartbeats are already handled.
    Event(Event<'a>),
    /// The connection failed; the core reconnects on its own.
    Transport(TransportError<E>),
    /// A handler's result could not be published as it was (data not JSON, too large for the
    /// outbox): a failed result saying so was sent instead.
    ResultRefused(NodeError),
    /// A heartbeat could not be queued (it does not fit the outbox).
    HeartbeatRefused(NodeError),
    /// The desired state was applied but its report could not be queued (it does not fit the
    /// outbox).
    ReportRefused(NodeError),
}
