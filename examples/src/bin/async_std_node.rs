//! The `tokio_node` example as an async-std application, on the smol adapter: the same
//! environment variables, the same `echo` and `count` commands, the same exits (0 after `stop`
//! or SIGTERM / Ctrl-C, a fresh run after `restart`). async-std never has to drive the node: the
//! smol adapter brings its own executor and shares async-std's reactor.
//!
//! `SUBNODE_BROKER_URL=mqtt://localhost:1883 cargo run --release --bin async_std_node`

use std::process::ExitCode;

use futures_lite::future;
use subnodesync_examples::{echo_and_count, exit};
use subnodesync_smol::{init_logging, shutdown_signal, NodeBuilder, StopReason};

#[async_std::main]
async fn main() -> ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("async_std_node: {e}");
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
    let stopped_by_signal = async {
        shutdown_signal().await;
        node.stop().await;
        StopReason::Application
    };
    exit(future::or(node.stopped(), stopped_by_signal).await)
}
