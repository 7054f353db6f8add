//! The seam between this crate and an async runtime: five things only a runtime can do.

use std::future::Future;
use std::io;
use std::time::Instant;

/// An async runtime, as the node task needs it: spawn, block elsewhere, sleep, tell the time,
/// open a TCP connection. Everything else (the node loop, TLS, configuration, handlers) is
/// runtime-neutral and lives in this crate.
///
/// Implemented by a marker type in each adapter (`subnodesync_tokio::Tokio`,
/// `subnodesync_smol::Smol`).
pub trait Runtime: Send + Sync + 'static {
    /// A TCP connection, read and written through the `futures-io` traits.
    type Tcp: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static;

    /// Runs `future` to completion in the background.
    fn spawn(future: impl Future<Output = ()> + Send + 'static);

    /// Runs the blocking `f` where it cannot stall the runtime; `None` if it panicked.
    fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Option<T>> + Send;

    /// Resolves at `at` (at once if it has passed).
    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send;

    /// The runtime's clock (tokio's may be paused in tests).
    fn now() -> Instant;

    /// Opens a TCP connection to `host:port` with Nagle off (MQTT packets are small and
    /// latency-bound).
    fn connect(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Tcp>> + Send;
}

/// `future`, or `None` if it takes longer than `limit`.
pub(crate) async fn timeout<R: Runtime, T>(limit: std::time::Duration, future: impl Future<Output = T>) -> Option<T> {
    race(future, R::now().checked_add(limit).map(R::sleep_until)).await
}

/// `future`, or `None` if `sleep` ends first; without a `sleep` (a limit beyond the clock's
/// range), just `future`.
async fn race<T>(future: impl Future<Output = T>, sleep: Option<impl Future<Output = ()>>) -> Option<T> {
    use futures_util::future::{select, Either};
    let Some(sleep) = sleep else { return Some(future.await) };
    match select(std::pin::pin!(future), std::pin::pin!(sleep)).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}

/// A runtime's clock and timer behind function pointers, for what is not generic over the
/// runtime (the [`NodeHandle`](crate::NodeHandle)).
#[derive(Clone, Copy)]
pub(crate) struct Timer {
    now: fn() -> Instant,
    sleep_until: fn(Instant) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timer")
    }
}

impl Timer {
    /// `R`'s clock and timer.
    pub(crate) fn of<R: Runtime>() -> Self {
        Self { now: R::now, sleep_until: |at| Box::pin(R::sleep_until(at)) }
    }

    /// `future`, or `None` if it takes longer than `limit`.
    pub(crate) async fn timeout<T>(self, limit: std::time::Duration, future: impl Future<Output = T>) -> Option<T> {
        race(future, (self.now)().checked_add(limit).map(self.sleep_until)).await
    }
}
