#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::io;
use std::time::Instant;

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

// The whole surface but the runtime (the builder below is this runtime's).
pub use subnodesync_host::*;

/// The tokio runtime, as the node loop of `subnodesync-host` needs it.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// Configures and starts a node on tokio; see [`subnodesync_host::NodeBuilder`].
pub type NodeBuilder = subnodesync_host::NodeBuilder<Tokio>;

impl subnodesync_host::Runtime for Tokio {
    type Tcp = Compat<tokio::net::TcpStream>;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(future);
    }

    async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        tokio::task::spawn_blocking(f).await.ok()
    }

    async fn sleep_until(at: Instant) {
        tokio::time::sleep_until(at.into()).await;
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn connect(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream.compat())
    }
}

/// Starts a node named `node_name`, configured otherwise by `SUBNODE_*` environment variables
/// and defaults. Shorthand for `NodeBuilder::new(node_name).start()`.
pub async fn start(node_name: impl Into<String>) -> Result<NodeHandle, Error> {
    NodeBuilder::new(node_name).start().await
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT): the signals that should trigger
/// [`NodeHandle::stop`] in a service.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
