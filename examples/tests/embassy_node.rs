//! The `embassy_node` example as a process, against a real mosquitto: a device's node on
//! embassy's executor and timers, seen from the engine.

mod common;

use common::NodeProcess;
use serde_json::json;
use subnodesync_testkit::{is_timestamp, Broker, Engine};

const EMBASSY_NODE: &str = env!("CARGO_BIN_EXE_embassy_node");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_uptime_the_led_command_answers_and_stop_exits_0() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(EMBASSY_NODE, &broker, &mut engine, "board").await;
    let base = node.base.clone();

    let heartbeat = engine.expect_on(&format!("{base}/heartbeat")).await.json();
    assert!(heartbeat["metrics"]["uptime_s"].is_i64(), "no uptime metric in {heartbeat}");
    // The wall clock was set before the first message, not only at the first heartbeat.
    assert!(is_timestamp(heartbeat["timestamp"].as_str().unwrap_or_default()), "{heartbeat}");

    assert_eq!(engine.ask(&base, "r-on", "led", json!({ "on": true })).await["data"], json!({ "on": true }));
    assert_eq!(engine.ask(&base, "r-query", "led", json!({})).await["data"], json!({ "on": true }));
    let bad = engine.ask(&base, "r-bad", "led", json!({ "on": "yes" })).await;
    assert_eq!(
        (bad["success"].clone(), bad["message"].clone()),
        (json!(false), json!("parameter `on` must be true or false"))
    );

    assert_eq!(engine.ask(&base, "r-stop", "stop", json!({})).await["message"], "stopping");
    engine.expect_status(&base, "offline").await;
    assert!(node.exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_gives_status_lost_through_the_will() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(EMBASSY_NODE, &broker, &mut engine, "yanked").await;
    node.signal("KILL");
    node.exit().await;
    let lost = engine.expect_status(&node.base, "lost").await.json();
    assert_eq!(lost["instance_id"].as_str(), node.base.rsplit('/').next());
}
