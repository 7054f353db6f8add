//! The tokio adapter against a real mosquitto, started by each test on its own loopback port,
//! with a plain MQTT client (rumqttc) as the engine.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::scenarios;
use common::scenarios::next_event;
use common::{base, outcome, Broker, Engine, WAIT};
use serde_json::{json, Value};
use subnodesync_tokio::{handler_fn, CommandResult, Error, LifecycleEvent, NodeBuilder, NodeHandle, StopReason};

// The scenarios every runtime adapter passes (the test kit's), on tokio.
subnodesync_testkit::broker_scenarios!(subnodesync_tokio::Tokio);

/// A node on `broker` with the suite's short intervals, ignoring the process environment.
fn node(broker: &Broker, name: &str) -> NodeBuilder {
    scenarios::suite_node(&broker.url(), name)
}

/// What a `sleep` run saw of its end.
#[derive(Default)]
struct Ended {
    /// Its future was dropped (the task aborted).
    dropped: AtomicBool,
    /// A task it spawned saw `CommandContext::cancelled` resolve.
    cancelled: AtomicBool,
    /// It was given a deadline.
    had_deadline: AtomicBool,
}

/// The shared `echo` and `count`, plus `progress`, `sleep` (until cancelled), `fail` and
/// `slow` (a 200 ms handler timeout), on top of `builder`.
fn with_handlers(builder: NodeBuilder, ended: Arc<Ended>) -> NodeBuilder {
    scenarios::echo_and_count(builder)
        .handler(handler_fn("progress", |ctx, _cmd| async move {
            ctx.progress("half way", Some(json!({ "percent": 50 })));
            Ok(CommandResult::ok("done"))
        }))
        .handler(handler_fn("sleep", move |ctx, _cmd| {
            let guard = SetOnDrop(ended.clone());
            ended.had_deadline.store(ctx.deadline().is_some(), Ordering::SeqCst);
            let watcher = ended.clone();
            tokio::spawn(async move {
                ctx.cancelled().await;
                watcher.cancelled.store(true, Ordering::SeqCst);
            });
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(CommandResult::ok("woke up"))
            }
        }))
        .handler(
            handler_fn("slow", |_ctx, _cmd| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(CommandResult::ok("woke up"))
            })
            .with_timeout(Duration::from_millis(200)),
        )
        .handler(handler_fn("fail", |_ctx, _cmd| async move { Err("disk on fire".into()) }))
}

struct SetOnDrop(Arc<Ended>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// Starts a node with every test handler, and waits until the engine sees it online.
async fn online(broker: &Broker, engine: &mut Engine, name: &str) -> (NodeHandle, String) {
    let handle = with_handlers(node(broker, name), Arc::default()).start().await.expect("node starts");
    let base = base(handle.node_name(), handle.instance_id());
    engine.expect_status(&base, "online").await;
    (handle, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_commands_count_report_progress_and_fail() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "cmds").await;

    for n in 1..=2 {
        let id = format!("r-count-{n}");
        engine.command(&base, &id, "count", json!({})).await;
        assert_eq!(engine.result(&base, &id).await["data"], json!({ "count": n }));
    }

    engine.command(&base, "r-progress", "progress", Value::Null).await;
    let topic = format!("{base}/result");
    let update =
        engine.expect("a progress update", |m| m.topic == topic && m.json()["request_id"] == "r-progress").await;
    let update = update.json();
    assert_eq!(update["state"], "in_progress");
    assert_eq!((update["message"].as_str(), &update["data"]), (Some("half way"), &json!({ "percent": 50 })));
    assert_eq!(engine.result(&base, "r-progress").await["message"], "done");

    let failed = engine.ask(&base, "r-fail", "fail", json!({})).await;
    assert_eq!(outcome(&failed), (Some(false), Some("disk on fire")));
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_are_answered_or_ignored() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "bad").await;
    let control = format!("{base}/control");

    engine.publish(&control, r#"{"request_id":"r-nocmd"}"#).await;
    let nocmd = engine.result(&base, "r-nocmd").await;
    assert_eq!(nocmd["message"], "malformed command: missing field `command`");
    assert_eq!((nocmd["success"].as_bool(), nocmd["command"].as_str()), (Some(false), Some("")));

    engine.publish(&control, r#"{"request_id":"r-params","command":"echo","parameters":[1]}"#).await;
    let params = engine.result(&base, "r-params").await;
    assert_eq!(params["message"], "malformed command: field `parameters` has the wrong type");
    assert_eq!(params["command"], "echo");

    engine.publish(&control, r#"{"request_id":"r-timeout","command":"echo","parameters":{"timeout_ms":-5}}"#).await;
    assert_eq!(engine.result(&base, "r-timeout").await["message"], "invalid or missing parameter `timeout_ms`");

    // Nobody can be answered without a request_id: nothing is published for these.
    engine.publish(&control, "not json at all").await;
    engine.publish(&control, r#"{"command":"ping"}"#).await;
    engine.command(&base, "r-after", "ping", json!({})).await;
    let topic = format!("{base}/result");
    let first = engine.expect("the next result", |m| m.topic == topic).await;
    assert_eq!(first.json()["request_id"], "r-after", "a message without request_id was answered");
    assert!(handle.is_connected());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_deadline_is_cancelled_with_a_failed_result() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let ended = Arc::new(Ended::default());
    let handle = with_handlers(node(&broker, "slow"), ended.clone()).start().await.expect("node starts");
    let base = base("slow", handle.instance_id());
    engine.expect_status(&base, "online").await;

    // The engine's deadline: the core answers, the adapter aborts the handler.
    let timed_out = engine.ask(&base, "r-deadline", "sleep", json!({ "timeout_ms": 300 })).await;
    assert_eq!(outcome(&timed_out), (Some(false), Some("timed out after 300 ms")));
    assert!(ended.had_deadline.load(Ordering::SeqCst), "the handler did not see its deadline");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(ended.dropped.load(Ordering::SeqCst) && ended.cancelled.load(Ordering::SeqCst)) {
        assert!(tokio::time::Instant::now() < deadline, "the timed-out handler was never aborted and cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The handler's own timeout.
    let slow = engine.ask(&base, "r-slow", "slow", json!({})).await;
    assert_eq!(outcome(&slow), (Some(false), Some("timed out after 200 ms (handler timeout)")));

    assert_eq!(engine.ask(&base, "r-ping", "ping", json!({})).await["message"], "pong");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_without_limits_is_stopped_by_the_handler_timeout_from_the_environment() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let ended = Arc::new(Ended::default());
    let builder = with_handlers(node(&broker, "hung"), ended.clone())
        .env(|name| (name == "SUBNODE_HANDLER_TIMEOUT").then(|| "250ms".to_owned()));
    let (handle, base) = scenarios::online(builder, &mut engine).await;
    // Neither the engine (no timeout_ms) nor the handler sets a limit.
    let hung = engine.ask(&base, "r-hung", "sleep", json!({})).await;
    assert_eq!(outcome(&hung), (Some(false), Some("timed out after 250 ms (handler timeout)")));
    assert_eq!(engine.ask(&base, "r-ping", "ping", json!({})).await["message"], "pong");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_and_restart_commands_stop_the_node_with_their_reason() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    for (command, reason, event) in [
        ("stop", StopReason::StopRequested, LifecycleEvent::StopRequested),
        ("restart", StopReason::RestartRequested, LifecycleEvent::RestartRequested),
    ] {
        let handle = node(&broker, command).start().await.expect("node starts");
        let mut events = handle.events();
        let base = base(command, handle.instance_id());
        engine.expect_status(&base, "online").await;
        engine.command(&base, "r-1", command, json!({})).await;
        let result = engine.result(&base, "r-1").await;
        assert_eq!(result["success"], true);
        engine.expect_status(&base, "offline").await;
        let stopped = tokio::time::timeout(WAIT, handle.stopped()).await.expect("node stops");
        assert_eq!(stopped, reason);
        next_event(&mut events, "the request", |e| *e == event).await;
        next_event(&mut events, "Stopped", |e| *e == LifecycleEvent::Stopped).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_fail_before_any_connection_is_tried() {
    // Nothing listens here: a node that tried to connect would not fail fast, it would retry.
    let start = |env: &'static [(&'static str, &'static str)]| {
        NodeBuilder::new("app")
            .env(move |key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
            .start()
    };
    let err = start(&[("SUBNODE_KEEPALIVE", "1.5s")]).await.unwrap_err();
    assert!(matches!(&err, Error::Env(v) if v.name == "SUBNODE_KEEPALIVE"), "{err}");
    assert!(err.to_string().contains("whole seconds from 1 to 65535"), "{err}");

    let err = start(&[("SUBNODE_BROKER_URL", "mqtts://127.0.0.1:1"), ("SUBNODE_TLS_CA", "/nonexistent.pem")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { name: "SUBNODE_TLS_CA", .. }), "{err}");

    let err = NodeBuilder::from_env()
        .env(|key| (key == "SUBNODE_NODE_NAME").then(|| "a/b".to_owned()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { variable: Some("SUBNODE_NODE_NAME"), .. }), "{err}");

    let err = NodeBuilder::new("app").env(|_| None).keep_alive(Duration::from_millis(1500)).start().await.unwrap_err();
    assert!(matches!(err, Error::Config { variable: None, .. }), "{err}");
}
