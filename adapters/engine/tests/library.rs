//! The engine as a library against rumqttd embedded in the test process (its own loopback port)
//! and tokio-adapter nodes in the same process.

mod common;

mod config;

use config::engine_config;
use std::time::{Duration, Instant};

use common::Rumqttd;
use subnodesync_engine::{Engine, FleetEvent, Selector, SendRequest, Status, Target};
use subnodesync_testkit::WAIT;
use subnodesync_tokio::{handler_fn, CommandResult, NodeBuilder, NodeHandle};

async fn node(url: &str, host: &str, version: &str) -> NodeHandle {
    NodeBuilder::new("shop")
        .env(|_| None)
        .broker_url(url)
        .hostname(host)
        .version(version)
        .heartbeat_interval(Duration::from_secs(1))
        .reconnect_min(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_and_filtered_commands_collect_one_result_per_instance() {
    let url = Rumqttd::start().url();
    let engine = Engine::start(engine_config(&url, "broadcast")).await.expect("engine starts");
    let mut events = engine.events();
    let nodes = [node(&url, "h1", "1.0.0").await, node(&url, "h2", "1.0.0").await, node(&url, "h3", "2.0.0").await];
    let mut registered = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while registered.len() < nodes.len() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(FleetEvent::Registered { instance_id, .. })) => registered.push(instance_id),
            Ok(Ok(_)) => {}
            other => panic!("registrations: {registered:?}, then {other:?}"),
        }
    }

    let mut ping = SendRequest::new(Target::Node("shop".into()), "ping");
    ping.timeout = Duration::from_secs(5);
    let outcome = engine.send(&ping).await.expect("send");
    assert!(outcome.all_succeeded(), "{outcome:?}");
    assert_eq!(outcome.results.len(), 3);
    assert!(outcome.results.values().all(|r| r.message == "pong"));

    // Only the 2.0.0 instance, on its own control topic, with parameters.
    let selector = Selector { version: Some("2.0.0".into()), ..Selector::default() };
    let mut echo = SendRequest::new(Target::Select(selector), "echo");
    echo.parameters = r#"{"text":"hi"}"#.into();
    let outcome = engine.send(&echo).await.expect("send");
    assert_eq!(outcome.expected, vec![nodes[2].instance_id().to_owned()]);
    let result = &outcome.results[nodes[2].instance_id()];
    // The node was told to give up just before the engine does (SendRequest's default 10 s).
    let data: serde_json::Value = serde_json::from_str(result.data.as_deref().expect("echo has data")).expect("JSON");
    assert_eq!(data, serde_json::json!({"timeout_ms": 9000, "text": "hi"}));

    // The history has both, with their results.
    let history = engine.history(10, None).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].0.command.as_str(), history[0].1.len()), ("echo", 1));
    assert_eq!((history[1].0.command.as_str(), history[1].1.len()), ("ping", 3));

    for n in &nodes {
        n.stop().await;
    }
    let deadline = Instant::now() + WAIT;
    while engine.instances().iter().any(|i| i.status != Status::Offline) {
        assert!(Instant::now() < deadline, "not all offline: {:?}", engine.instances());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(engine.stats().rejected, 0);
    engine.shutdown().await.expect("everything written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_targets_get_resends_under_the_same_request_id_until_the_timeout() {
    let url = Rumqttd::start().url();
    let engine = Engine::start(engine_config(&url, "retry")).await.expect("engine starts");
    let node = node(&url, "h1", "1.0.0").await;
    let deadline = Instant::now() + WAIT;
    while engine.instances().is_empty() {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A target nobody answers is resent twice (the default retries) within the timeout; a live
    // one answers the first attempt.
    let ghost = Target::Instance { node_name: Some("shop".into()), instance_id: "shop-ghost-1".into() };
    let mut request = SendRequest::new(ghost, "ping");
    request.timeout = Duration::from_millis(900);
    let outcome = engine.send(&request).await.expect("send");
    assert_eq!((outcome.attempts, outcome.timed_out.len(), outcome.all_succeeded()), (3, 1, false));
    let history = engine.history(1, None).await.expect("history");
    assert_eq!((history[0].0.request_id.as_str(), history[0].0.attempts), (outcome.request_id.as_str(), 3));

    let live = Target::Instance { node_name: None, instance_id: node.instance_id().to_owned() };
    let outcome = engine.send(&SendRequest::new(live, "status")).await.expect("send");
    assert_eq!((outcome.attempts, outcome.results.len()), (1, 1));
    node.stop().await;
    engine.shutdown().await.expect("everything written");
}
