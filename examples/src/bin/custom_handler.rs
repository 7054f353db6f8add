//! A command handler and a custom metric: `greet` counts its greetings in every heartbeat.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use subnodesync_tokio::{BoxFuture, Command, CommandContext, CommandHandler, CommandResult, HandlerResult};

struct Greet {
    greeted: AtomicU64,
}

impl CommandHandler for Greet {
    fn name(&self) -> &str {
        "greet"
    }

    fn handle(self: Arc<Self>, ctx: CommandContext, cmd: Command) -> BoxFuture<HandlerResult> {
        Box::pin(async move {
            let who = cmd.parameters.get("name").and_then(|v| v.as_str()).ok_or("parameter `name` is missing")?;
            ctx.progress(format!("looking up {who}"), None);
            ctx.set_metric("greetings", self.greeted.fetch_add(1, Ordering::Relaxed) + 1);
            Ok(CommandResult::ok(format!("hello, {who}")))
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    subnodesync_tokio::init_logging()?;
    let node = subnodesync_tokio::NodeBuilder::new("custom-handler")
        .handler(Greet { greeted: AtomicU64::new(0) })
        .metric("greetings", 0)
        .start()
        .await?;
    tokio::select! {
        _ = node.stopped() => {}
        () = subnodesync_tokio::shutdown_signal() => node.stop().await,
    }
    Ok(())
}
