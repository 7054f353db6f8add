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

use subnodesync_examples::{exit, start_from_env};
use subnodesync_tokio::{shutdown_signal, StopReason, Tokio};

#[tokio::main]
async fn main() -> ExitCode {
    let node = match start_from_env::<Tokio>("tokio_node").await {
        Ok(node) => node,
        Err(code) => return code,
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
