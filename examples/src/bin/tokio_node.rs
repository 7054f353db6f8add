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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use subnodesync_tokio::serde_json::json;
use subnodesync_tokio::{handler_fn, init_logging, shutdown_signal, CommandResult, NodeBuilder, StopReason};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("tokio_node: {e}");
        return ExitCode::from(2);
    }
    let runs = Arc::new(AtomicU64::new(0));
    let started = NodeBuilder::from_env()
        .version(env!("CARGO_PKG_VERSION"))
        .node_version(subnodesync_sysinfo::node_version!())
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
        .handler(handler_fn("count", move |_ctx, _cmd| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(CommandResult::ok("counted").with_data(json!({ "count": n }))) }
        }))
        .start()
        .await;
    let node = match started {
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
    match reason {
        StopReason::RestartRequested => restart(),
        StopReason::Failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Replaces this process with a fresh run of the same executable, arguments and environment.
#[cfg(unix)]
fn restart() -> ExitCode {
    use std::os::unix::process::CommandExt as _;

    let mut args = std::env::args_os();
    let program = std::env::current_exe().ok().or_else(|| args.next().map(Into::into));
    let Some(program) = program else {
        tracing::error!("restart: cannot tell which executable this is");
        return ExitCode::FAILURE;
    };
    tracing::info!(program = %program.display(), "restarting");
    // `exec` only returns on failure.
    let error = std::process::Command::new(&program).args(std::env::args_os().skip(1)).exec();
    tracing::error!(%error, "restart failed");
    ExitCode::FAILURE
}

#[cfg(not(unix))]
fn restart() -> ExitCode {
    tracing::warn!("restart requested: re-executing is only supported on unix; exiting");
    ExitCode::SUCCESS
}
