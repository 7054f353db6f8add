//! The smol adapter over MQTT over WebSocket against amqtt (a real broker with WebSocket
//! listeners, started by each test on its own loopback ports): the broker scenarios the tokio
//! adapter passes over `ws://`, a broker restart and `wss://`, with the node on smol's executor
//! and reactor (the test's engine, a plain MQTT client on the broker's TCP listener, runs on
//! tokio).

use serde_json::json;
use subnodesync_smol::Smol;
use subnodesync_testkit::amqtt::Amqtt;
use subnodesync_testkit::scenarios::{echo_and_count, online, suite_node};
use subnodesync_testkit::Engine;

subnodesync_testkit::broker_scenarios!(@every Smol, Amqtt);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_wss_with_a_ca_made_in_the_test_the_node_registers_and_answers_commands() {
    let broker = Amqtt::start_with_wss();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let builder = echo_and_count(suite_node::<Smol>(&broker.wss_url(), "secure-ws")).tls_ca(&broker.pki().ca);
    let (handle, base) = online(builder, &mut engine).await;
    let result = engine.ask(&base, "r-wss", "echo", json!({ "over": "wss" })).await;
    assert_eq!(result["data"], json!({ "over": "wss" }));
    handle.stop().await;
    engine.expect_status(&base, "offline").await;
}
