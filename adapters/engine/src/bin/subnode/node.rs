//! `subnode node`: a sample node to try the other commands on, with an application command that
//! answers at once (`echo`), one that takes its time (`sleep`), a way to make either fail, and
//! every desired setting (`subnode config set`) accepted.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use subnodesync_engine::Printable;
use subnodesync_tokio::{handler_fn, CommandResult, NodeBuilder};

use crate::{Connection, Failure};

/// The longest `sleep`: an hour.
const MAX_SLEEP_MS: u64 = 3_600_000;

/// Options of `subnode node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Application name.
    name: String,
    /// Host name in the instance id (default: this machine's).
    #[arg(long)]
    hostname: Option<String>,
    /// Answer COMMAND with a failure once it has done its work, as a broken instance would (to
    /// try `send --rollout --max-failures` on); repeatable.
    #[arg(long, value_name = "COMMAND", value_parser = ["echo", "sleep"])]
    fail: Vec<String>,
}

/// `result`, or a failure saying why when this instance was started with `--fail COMMAND`.
fn unless_failing(fails: bool, command: &str, result: CommandResult) -> CommandResult {
    if fails {
        CommandResult::fail(format!("{command} failed: this instance runs with --fail {command}"))
    } else {
        result
    }
}

/// Runs the node until it is stopped (Ctrl-C, SIGTERM, or the `stop` command).
pub(crate) async fn run(conn: &Connection, args: NodeArgs) -> Result<u8, Failure> {
    let fails = |command: &str| args.fail.iter().any(|c| c == command);
    let (fail_echo, fail_sleep) = (fails("echo"), fails("sleep"));
    let echo = handler_fn("echo", move |_ctx, cmd| async move {
        Ok(unless_failing(fail_echo, "echo", CommandResult::ok("echoed").with_data(cmd.parameters)))
    });
    let sleep = handler_fn("sleep", move |ctx, cmd| async move {
        let Some(ms) = cmd.parameters.get("ms").and_then(|ms| ms.as_u64()).filter(|ms| *ms <= MAX_SLEEP_MS) else {
            return Ok(CommandResult::fail("invalid or missing parameter `ms` (0 to 3600000)"));
        };
        // Said at once, so whoever waits (or wants to cancel it) knows it is under way.
        ctx.progress("sleeping", Some(serde_json::json!({ "ms": ms })));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(unless_failing(fail_sleep, "sleep", CommandResult::ok("slept").with_data(serde_json::json!({ "ms": ms }))))
    });
    let mut builder = NodeBuilder::new(args.name).handler(echo).handler(sleep).settings(|key: &str, value: &Value| {
        // A sample node takes every desired setting and says so.
        eprintln!("setting {} = {value}", Printable(key));
        Ok(())
    });
    if let Some(url) = &conn.broker {
        builder = builder.broker_url(url);
    }
    if let Some(prefix) = &conn.prefix {
        builder = builder.topic_prefix(prefix);
    }
    if let Some(ca) = &conn.tls_ca {
        builder = builder.tls_ca(ca);
    }
    if let Some(cert) = &conn.tls_cert {
        builder = builder.tls_cert(cert);
    }
    if let Some(key) = &conn.tls_key {
        builder = builder.tls_key(key);
    }
    if let Some(h) = args.hostname {
        builder = builder.hostname(h);
    }
    let node = builder.start().await.map_err(|e| Failure(2, e.to_string()))?;
    eprintln!("node {} running; Ctrl-C to stop", node.instance_id());
    tokio::select! {
        _ = node.stopped() => {}
        () = subnodesync_tokio::shutdown_signal() => node.stop().await,
    }
    Ok(0)
}
