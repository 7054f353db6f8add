//! The engine and nodes on different transports of one broker (amqtt, started by each test on
//! its own loopback ports, with a plain MQTT, a `ws://` and a `wss://` listener): a command's
//! round trip between a node on `ws://` and the engine on `mqtt://`, the other way round, the
//! engine on `wss://` with the test's CA, and the engine through an HTTP proxy.

mod config;

use config::engine_config;
use std::time::Duration;

use subnodesync_engine::{Engine, EngineConfig, FleetEvent, SendRequest, Target};
use subnodesync_testkit::amqtt::Amqtt;
use subnodesync_testkit::proxy::ConnectProxy;
use subnodesync_testkit::WAIT;
use subnodesync_tokio::{handler_fn, CommandResult, NodeBuilder, NodeHandle};

fn node(url: &str, host: &str) -> NodeBuilder {
    NodeBuilder::new("mixed")
        .env(|_| None)
        .broker_url(url)
        .hostname(host)
        .heartbeat_interval(Duration::from_secs(1))
        .reconnect_min(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
}

/// Starts `node`, waits until the engine has seen it register, then has it echo and checks the
/// result.
async fn round_trip(engine: &Engine, node: NodeBuilder) -> NodeHandle {
    let mut events = engine.events();
    let node = node.start().await.expect("node starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(FleetEvent::Registered { instance_id, .. })) if instance_id == node.instance_id() => break,
            Ok(_) => {}
            Err(_) => panic!("the engine never saw {} register", node.instance_id()),
        }
    }
    let target = Target::Instance { node_name: None, instance_id: node.instance_id().to_owned() };
    let mut echo = SendRequest::new(target, "echo");
    echo.parameters = r#"{"across":"transports"}"#.into();
    echo.timeout = Duration::from_secs(5);
    let outcome = engine.send(&echo).await.expect("send");
    assert!(outcome.all_succeeded(), "{outcome:?}");
    let data = outcome.results[node.instance_id()].data.as_deref().expect("echo has data");
    let data: serde_json::Value = serde_json::from_str(data).expect("JSON");
    assert_eq!(data["across"], "transports");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_ws_and_the_engine_on_mqtt_round_trip_a_command_through_one_broker() {
    let broker = Amqtt::start();
    let engine = Engine::start(engine_config(&format!("mqtt://127.0.0.1:{}", broker.port()), "ws-node"))
        .await
        .expect("engine starts");
    let node = round_trip(&engine, node(&broker.url(), "ws-host")).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_on_ws_and_a_node_on_mqtt_round_trip_a_command_through_one_broker() {
    let broker = Amqtt::start();
    let engine = Engine::start(engine_config(&broker.url(), "ws-engine")).await.expect("engine starts");
    let node = round_trip(&engine, node(&format!("mqtt://127.0.0.1:{}", broker.port()), "tcp-host")).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_on_wss_with_the_tests_ca_and_a_node_on_wss_round_trip_a_command() {
    let broker = Amqtt::start_with_wss();
    let config = EngineConfig { tls_ca: Some(broker.pki().ca.clone()), ..engine_config(&broker.wss_url(), "wss") };
    let engine = Engine::start(config).await.expect("engine starts");
    let node = round_trip(&engine, node(&broker.wss_url(), "wss-host").tls_ca(&broker.pki().ca)).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reaches_a_ws_broker_through_an_http_proxy() {
    let broker = Amqtt::start();
    let proxy = ConnectProxy::start(false).await;
    let proxy_url = proxy.url();
    let lookup = move |key: &str| (key == "SUBNODE_PROXY").then(|| proxy_url.clone());
    let config = EngineConfig {
        db: engine_config(&broker.url(), "proxied").db,
        heartbeat_interval: Duration::from_secs(1),
        ..EngineConfig::from_lookup(&lookup).expect("settings")
    }
    .broker_url(&broker.url())
    .expect("a valid url");
    assert!(config.proxy.is_some());
    let engine = Engine::start(config).await.expect("engine starts");
    let node = round_trip(&engine, node(&broker.url(), "direct-host")).await;
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "only the engine went through the proxy: {requests:?}");
    assert!(requests[0].starts_with("CONNECT 127.0.0.1:"), "{requests:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_the_engine_cannot_use_stops_it_only_when_its_broker_needs_the_proxy() {
    // HTTPS_PROXY belongs to every program on the machine; a SOCKS one is of no use here.
    let lookup = |key: &str| (key == "HTTPS_PROXY").then(|| "socks5://proxy:1080".to_owned());
    let config = |url: &str, name: &str| {
        let db = engine_config(url, name).db;
        EngineConfig { db, ..EngineConfig::from_lookup(&lookup).expect("settings are read") }
            .broker_url(url)
            .expect("a valid url")
    };
    let engine = Engine::start(config("mqtt://127.0.0.1:1", "socks-mqtt")).await.expect("mqtt:// needs no proxy");
    drop(engine);
    match Engine::start(config("ws://127.0.0.1:1/mqtt", "socks-ws")).await {
        Err(subnodesync_engine::Error::Setting(invalid)) => assert_eq!(invalid.name, "HTTPS_PROXY"),
        other => panic!("expected a settings error naming HTTPS_PROXY, got {other:?}"),
    }
}
