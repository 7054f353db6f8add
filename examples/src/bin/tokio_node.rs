//! A SubNodeSync node on tokio, configured only by the environment (`SUBNODE_BROKER_URL`,
//! `SUBNODE_NODE_NAME`, ...; see `subnodesync_tokio::config`), with the built-in commands plus
//! two of its own:
//!
//! * `echo` returns its parameters as `data`;
//! * `count` returns `{"count": n}`, n being how many times it has run in this process.
//!
//! It exits 0 after the engine's `stop` or on SIGTERM / Ctrl-C (both stop cleanly: status
//! `offline`, register cleared), and re-executes itself after `restart`.
//!
//! `SUBNODE_BROKER_URL=mqtt://localhost:1883 cargo run --release --bin tokio_node`

use std::process::ExitCode;

use subnodesync_examples::{echo_and_count, exit};
use subnodesync_tokio::{init_logging, shutdown_signal, NodeBuilder, StopReason};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("tokio_node: {e}");
        return ExitCode::from(2);
    }
    let builder =
        NodeBuilder::from_env().version(env!("CARGO_PKG_VERSION")).node_version(subnodesync_sysinfo::node_version!());
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
