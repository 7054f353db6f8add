//! The smol adapter against a real mosquitto, started by each test on its own loopback port: the
//! same broker scenarios the tokio adapter passes, with the node on smol's executor and reactor
//! (the test's engine, a plain MQTT client, runs on tokio).

use serde_json::json;
use subnodesync_smol::{Error, NodeBuilder, Smol};
use subnodesync_testkit::{scenarios, Broker, Engine};

/// A node on `broker` with the suites' short intervals, ignoring the process environment.
fn node(broker: &Broker, name: &str) -> NodeBuilder {
    scenarios::suite_node(&broker.url(), name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_status_and_heartbeat_carry_every_field() {
    let broker = Broker::start();
    scenarios::register_status_and_heartbeat_carry_every_field(broker.port(), |name| node(&broker, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_an_application_command_are_answered() {
    let broker = Broker::start();
    scenarios::ping_and_an_application_command_are_answered(broker.port(), |name| node(&broker, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_fails() {
    let broker = Broker::start();
    scenarios::an_unknown_command_fails(broker.port(), |name| node(&broker, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_request_id_is_not_run_again() {
    let broker = Broker::start();
    scenarios::a_duplicate_request_id_is_not_run_again(broker.port(), |name| node(&broker, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_command_reaches_every_instance() {
    let broker = Broker::start();
    scenarios::a_broadcast_command_reaches_every_instance(broker.port(), |name| node(&broker, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_command_and_the_node_carries_on() {
    let broker = Broker::start();
    scenarios::a_panicking_handler_fails_its_command_and_the_node_carries_on(broker.port(), |name| node(&broker, name))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_node_registers_again_and_heartbeats_resume() {
    let mut broker = Broker::start();
    let url = broker.url();
    scenarios::after_a_broker_restart_the_node_registers_again_and_heartbeats_resume(&mut broker, |name| {
        scenarios::suite_node::<Smol>(&url, name)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_status_offline_retained_and_no_register() {
    let broker = Broker::start();
    scenarios::a_clean_stop_leaves_status_offline_retained_and_no_register(broker.port(), |name| node(&broker, name))
        .await;
}

/// The engine's `timeout_ms` cuts a handler off on smol's timers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_engines_deadline_gets_a_failed_result() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let forever = subnodesync_smol::handler_fn("forever", |_ctx, _cmd| async move {
        std::future::pending::<()>().await;
        Ok(subnodesync_smol::CommandResult::ok("unreachable"))
    });
    let (handle, base) = scenarios::online(node(&broker, "patient").handler(forever), &mut engine).await;
    engine.command(&base, "r-forever", "forever", json!({ "timeout_ms": 200 })).await;
    let result = engine.result(&base, "r-forever").await;
    assert_eq!(
        (result["success"].as_bool(), result["message"].as_str()),
        (Some(false), Some("timed out after 200 ms"))
    );
    engine.command(&base, "r-ping", "ping", json!({})).await;
    assert_eq!(engine.result(&base, "r-ping").await["message"], "pong");
    handle.stop().await;
}

#[test]
fn invalid_settings_fail_before_any_connection_is_tried() {
    let started = smol::block_on(
        NodeBuilder::new("bad")
            .env(|key| (key == "SUBNODE_HEARTBEAT_INTERVAL").then(|| "soon".to_owned()))
            .broker_url("mqtt://127.0.0.1:1")
            .start(),
    );
    match started {
        Err(Error::Env(e)) => assert_eq!((e.name, e.value.as_str()), ("SUBNODE_HEARTBEAT_INTERVAL", "soon")),
        other => panic!("expected an environment error, got {other:?}"),
    }
}
