#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

// The whole surface but the runtime (the builder below is this runtime's).
pub use subnodesync_host::*;

/// smol, as the node loop of `subnodesync-host` needs it: its global executor, the `async-io`
/// reactor and the `blocking` pool. None of them needs the application to run an executor, so
/// a node also runs inside async-std or any other runtime's application.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// Configures and starts a node on smol; see [`subnodesync_host::NodeBuilder`].
pub type NodeBuilder = subnodesync_host::NodeBuilder<Smol>;

impl subnodesync_host::Runtime for Smol {
    type Tcp = smol::net::TcpStream;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }

    async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        // A panic on the pool is reported as `None`, as tokio's `spawn_blocking` would.
        smol::unblock(move || std::panic::catch_unwind(AssertUnwindSafe(f)).ok()).await
    }

    async fn sleep_until(at: Instant) {
        smol::Timer::at(at).await;
    }

    fn now() -> Instant {
        Instant::now()
    }

    async fn connect(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let stream = smol::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Starts a node named `node_name`, configured otherwise by `SUBNODE_*` environment variables
/// and defaults. Shorthand for `NodeBuilder::new(node_name).start()`.
pub async fn start(node_name: impl Into<String>) -> Result<NodeHandle, Error> {
    NodeBuilder::new(node_name).start().await
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT): the signals that should trigger
/// [`NodeHandle::stop`] in a service. Resolves at once if they cannot be watched.
pub async fn shutdown_signal() {
    use smol::stream::StreamExt as _;
    match async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]) {
        Ok(mut signals) => {
            let _ = signals.next().await;
        }
        Err(error) => tracing::error!(%error, "cannot watch SIGTERM and SIGINT"),
    }
}
