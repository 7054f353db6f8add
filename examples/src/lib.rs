//! What the example nodes share: their two application commands and how they exit.

use std::process::ExitCode;
use std::time::Duration;

use subnodesync_host::serde_json::Value;
use subnodesync_host::{init_logging, set_log_filter, BufferSizes, NodeBuilder, NodeHandle, Runtime, StopReason};

/// The example nodes' two commands, `echo` and `count`: written once in the test kit, whose
/// broker scenarios check them on every runtime adapter.
pub use subnodesync_testkit::scenarios::echo_and_count;

/// The node name of every benchmark fleet node (instance ids differ by host name).
pub const FLEET_NODE_NAME: &str = "fleet";

/// Node `i` of a benchmark fleet on the broker at `url`: named [`FLEET_NODE_NAME`], host `h{i}`, version
/// `1.0.0`, one heartbeat a second, a 60 s keep-alive, `sizes` for its buffers, its own seed,
/// and no process environment. `fleet_bench` and the engine's end-to-end bench both run these.
pub fn fleet_node<R>(url: &str, i: usize, sizes: BufferSizes) -> NodeBuilder<R> {
    NodeBuilder::new(FLEET_NODE_NAME)
        .env(|_| None)
        .broker_url(url)
        .hostname(format!("h{i}"))
        .version("1.0.0")
        .heartbeat_interval(Duration::from_secs(1))
        .keep_alive(Duration::from_secs(60))
        .buffer_sizes(sizes)
        .seed(i as u64 + 1)
}

/// Starts an example node on runtime `R`, configured only by the environment, with `echo` and
/// `count` ([`echo_and_count`]); logging as `SUBNODE_LOG` and `SUBNODE_LOG_FORMAT` say. A bad
/// setting is logged and becomes exit code 2.
pub async fn start_from_env<R: Runtime>(example: &str) -> Result<NodeHandle, ExitCode> {
    if let Err(e) = init_logging() {
        eprintln!("{example}: {e}");
        return Err(ExitCode::from(2));
    }
    let builder = NodeBuilder::<R>::from_env()
        .version(env!("CARGO_PKG_VERSION"))
        .node_version(subnodesync_sysinfo::node_version!())
        .settings(log_level);
    echo_and_count(builder).start().await.map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        ExitCode::from(2)
    })
}

/// The example nodes' one application setting (desired state, `subnode config set`):
/// `log_level`, a `SUBNODE_LOG` filter such as `debug` or `info,subnodesync_host=trace`, applied
/// at once.
pub fn log_level(key: &str, value: &Value) -> Result<(), String> {
    match (key, value) {
        ("log_level", Value::String(filter)) => set_log_filter(filter),
        ("log_level", _) => Err("a log filter, as a string".to_owned()),
        _ => Err("unknown setting".to_owned()),
    }
}

/// How a node process ends: 0 after a stop, a fresh run of itself after the engine's `restart`,
/// failure if the node task failed.
pub fn exit(reason: StopReason) -> ExitCode {
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
