//! The `tokio_node` example as an async-std application, on the smol adapter: the same
//! environment variables, the same `echo` and `count` commands, the same exits (0 after `stop`
//! or SIGTERM / Ctrl-C, a fresh run after `restart`). async-std never has to drive the node: the
//! smol adapter brings its own executor and shares async-std's reactor.
//!
//! `SUBNODE_BROKER_URL=mqtt://localhost:1883 cargo run --release --bin async_std_node`

use std::process::ExitCode;

use futures_lite::future;
use subnodesync_examples::{exit, start_from_env};
use subnodesync_smol::{shutdown_signal, Smol, StopReason};

#[async_std::main]
async fn main() -> ExitCode {
    let node = match start_from_env::<Smol>("async_std_node").await {
        Ok(node) => node,
        Err(code) => return code,
    };
    let stopped_by_signal = async {
        shutdown_signal().await;
        node.stop().await;
        StopReason::Application
    };
    exit(future::or(node.stopped(), stopped_by_signal).await)
}
