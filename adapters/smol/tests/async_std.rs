//! A smol-adapter node inside an async-std application: the application's own executor never
//! drives the node (smol's global executor and the shared `async-io` reactor do), so it joins
//! the fleet, answers commands and stops cleanly from async-std code.

use serde_json::json;
use subnodesync_smol::{handler_fn, CommandResult, NodeBuilder, StopReason};
use subnodesync_testkit::{base, scenarios, Broker, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_from_async_std_registers_answers_and_stops() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let url = broker.url();
    // The application: async-std's `block_on` on a thread of its own, as its `main` would be.
    let app = std::thread::spawn(move || {
        async_std::task::block_on(async move {
            let greet = handler_fn("greet", |_ctx, cmd| async move {
                // Handlers may use async-std's own timers and tasks.
                async_std::task::sleep(std::time::Duration::from_millis(10)).await;
                let who = cmd.parameters.get("name").and_then(|v| v.as_str()).unwrap_or("world").to_owned();
                Ok(CommandResult::ok(format!("hello, {who}")))
            });
            let node: NodeBuilder = scenarios::suite_node(&url, "std-app");
            let handle = node.handler(greet).start().await.expect("node starts");
            handle.stopped().await
        })
    });

    let base = base("std-app", &format!("std-app-test-host-{}", std::process::id()));
    engine.expect_status(&base, "online").await;
    engine.expect_on(&format!("{base}/heartbeat")).await;
    assert_eq!(
        engine.ask(&base, "r-greet", "greet", json!({ "name": "async-std" })).await["message"],
        "hello, async-std"
    );
    assert_eq!(engine.ask(&base, "r-stop", "stop", json!({})).await["success"], true);
    engine.expect_status(&base, "offline").await;
    let reason =
        tokio::task::spawn_blocking(move || app.join().expect("the application thread ends")).await.expect("joined");
    assert_eq!(reason, StopReason::StopRequested);
}
