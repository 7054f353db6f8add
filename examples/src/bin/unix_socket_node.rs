//! A node whose connection to the broker is a Unix socket, opened by a connector of its own
//! (`NodeBuilder::connector`): the seam for any transport the adapter does not open itself, a
//! tunnel, a proxy of another kind, a socket. The broker URL still names the broker and still
//! decides what goes on top of the socket: nothing for `mqtt://`, TLS for `mqtts://`, WebSocket
//! for `ws://`, both for `wss://`.
//!
//! Here the socket is the local end of a tunnel to the broker, such as
//! `socat UNIX-LISTEN:/run/broker.sock,fork TCP:broker.example:1883` or an SSH forward
//! (`ssh -L /run/broker.sock:broker.example:1883 gateway`):
//!
//! `SUBNODE_EXAMPLE_SOCKET=/run/broker.sock SUBNODE_BROKER_URL=mqtt://broker.example cargo run --bin unix_socket_node`

use std::process::ExitCode;

use subnodesync_examples::{echo_and_count, exit};
use subnodesync_tokio::{init_logging, shutdown_signal, BrokerUrl, NodeBuilder, StopReason};

/// The Unix socket to connect through.
const SOCKET: &str = "SUBNODE_EXAMPLE_SOCKET";

#[cfg(unix)]
#[tokio::main]
async fn main() -> ExitCode {
    use tokio_util::compat::TokioAsyncReadCompatExt as _;

    if let Err(e) = init_logging() {
        eprintln!("unix_socket_node: {e}");
        return ExitCode::from(2);
    }
    let Some(socket) = std::env::var_os(SOCKET) else {
        eprintln!("unix_socket_node: set {SOCKET} to the Unix socket that leads to the broker");
        return ExitCode::from(2);
    };
    // Called for every connection attempt; the node's connect timeout and backoff apply to it.
    let connector = move |url: &BrokerUrl| {
        tracing::debug!(broker = %url, socket = ?socket, "connecting through the Unix socket");
        let socket = socket.clone();
        async move { Ok(tokio::net::UnixStream::connect(socket).await?.compat()) }
    };
    let builder = NodeBuilder::from_env().version(env!("CARGO_PKG_VERSION")).connector(connector);
    let node = match echo_and_count(builder).start().await {
        Ok(node) => node,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(2);
        }
    };
    let reason = tokio::select! {
        reason = node.stopped() => reason,
        () = shutdown_signal() => {
            node.stop().await;
            StopReason::Application
        }
    };
    exit(reason)
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("unix_socket_node: Unix sockets only");
    ExitCode::FAILURE
}
