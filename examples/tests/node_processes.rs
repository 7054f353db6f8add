//! The `tokio_node` and `async_std_node` examples (the tokio and the smol adapter) as
//! processes, against a real mosquitto: what an operator sees when one is killed, terminated,
//! stopped or restarted. Each scenario runs against both.

mod common;

use common::NodeProcess;
use serde_json::json;
use subnodesync_testkit::{Broker, Engine};

/// The two example nodes configured only by the environment, with `echo` and `count`.
const NODES: [&str; 2] = [env!("CARGO_BIN_EXE_tokio_node"), env!("CARGO_BIN_EXE_async_std_node")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_gives_status_lost_through_the_will() {
    for bin in NODES {
        let broker = Broker::start();
        let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
        let mut node = NodeProcess::start(bin, &broker, &mut engine, "kill9").await;
        node.signal("KILL");
        node.exit().await;
        let lost = engine.expect_status(&node.base, "lost").await.json();
        assert_eq!(lost["instance_id"].as_str(), node.base.rsplit('/').next());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_status_offline_and_exit_0() {
    for bin in NODES {
        let broker = Broker::start();
        let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
        let mut node = NodeProcess::start(bin, &broker, &mut engine, "term").await;
        node.signal("TERM");
        engine.expect_status(&node.base, "offline").await;
        let register = format!("{}/register", node.base);
        engine.expect("the cleared register", |m| m.topic == register && m.payload.is_empty()).await;
        assert!(node.exit().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_command_exits_0_and_custom_commands_work_until_then() {
    for bin in NODES {
        let broker = Broker::start();
        let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
        let mut node = NodeProcess::start(bin, &broker, &mut engine, "stopper").await;
        let base = node.base.clone();

        assert_eq!(engine.ask(&base, "r-echo", "echo", json!({ "text": "hi" })).await["data"], json!({ "text": "hi" }));
        for n in 1..=2 {
            let id = format!("r-count-{n}");
            engine.command(&base, &id, "count", json!({})).await;
            assert_eq!(engine.result(&base, &id).await["data"], json!({ "count": n }));
        }

        assert_eq!(engine.ask(&base, "r-stop", "stop", json!({})).await["message"], "stopping");
        engine.expect_status(&base, "offline").await;
        assert!(node.exit().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_command_re_executes_the_process() {
    for bin in NODES {
        let broker = Broker::start();
        let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
        let mut node = NodeProcess::start(bin, &broker, &mut engine, "phoenix").await;
        let base = node.base.clone();

        assert_eq!(engine.ask(&base, "r-count", "count", json!({})).await["data"], json!({ "count": 1 }));
        assert_eq!(engine.ask(&base, "r-restart", "restart", json!({})).await["message"], "restarting");
        engine.expect_status(&base, "offline").await;
        // exec keeps the pid, so the instance id and topics are the same; the process is new.
        engine.expect_status(&base, "online").await;
        assert!(node.child.try_wait().expect("wait").is_none(), "the process exited instead of re-executing");
        assert_eq!(
            engine.ask(&base, "r-count-again", "count", json!({})).await["data"],
            json!({ "count": 1 }),
            "state survived"
        );

        node.signal("TERM");
        engine.expect_status(&base, "offline").await;
        assert!(node.exit().await.success());
    }
}
