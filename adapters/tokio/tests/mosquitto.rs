//! The tokio adapter against a real mosquitto, started by each test on its own loopback port,
//! with a plain MQTT client (rumqttc) as the engine.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_key_order, assert_no_retained, base, is_timestamp, Broker, Engine, WAIT};
use serde_json::{json, Value};
use subnodesync_tokio::{
    handler_fn, BuildInfo, CommandResult, DisconnectReason, Error, LifecycleEvent, NodeBuilder, NodeHandle, StopReason,
};
use tokio::sync::broadcast;

/// A node on `broker` with the suite's short intervals, ignoring the process environment.
fn node(broker: &Broker, name: &str) -> NodeBuilder {
    NodeBuilder::new(name)
        .env(|_| None)
        .broker_url(broker.url())
        .hostname("test-host")
        .heartbeat_interval(Duration::from_secs(1))
        .keepalive(Duration::from_secs(2))
        .reconnect_min(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(2))
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

/// `echo`, `count`, `progress`, `sleep` (until cancelled), `panic`, `fail` and `slow` (a
/// 200 ms handler timeout) on top of `builder`.
fn with_handlers(builder: NodeBuilder, ended: Arc<Ended>) -> NodeBuilder {
    let count = Arc::new(AtomicU64::new(0));
    builder
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
        .handler(handler_fn("count", move |_ctx, _cmd| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(CommandResult::ok("counted").with_data(json!({ "count": n }))) }
        }))
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
        .handler(handler_fn("panic", |_ctx, _cmd| async move {
            if true {
                panic!("boom");
            }
            Ok(CommandResult::ok("unreachable"))
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

/// The next lifecycle event matching `pred`, within [`WAIT`].
async fn next_event(
    events: &mut broadcast::Receiver<LifecycleEvent>,
    what: &str,
    pred: impl Fn(&LifecycleEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => return,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} event within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_status_and_heartbeat_carry_every_field() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let handle = node(&broker, "fields")
        .version("1.2.3")
        .metadata("region", "eu-1")
        .capability("echo")
        .metric("queue_depth", 7)
        .node_version(BuildInfo {
            git_version: "v1.2.3".into(),
            git_commit: "abc123".into(),
            build_date: "2024-01-01".into(),
            compiler: "rustc 1.82.0".into(),
            platform: "linux/amd64".into(),
        })
        .start()
        .await
        .expect("node starts");
    let pid = std::process::id();
    let instance_id = format!("fields-test-host-{pid}");
    assert_eq!(handle.instance_id(), instance_id);
    let base = base("fields", &instance_id);

    let register = engine.expect_on(&format!("{base}/register")).await;
    assert_key_order(
        register.text(),
        &[
            "timestamp",
            "node_name",
            "instance_id",
            "version",
            "pid",
            "start_time",
            "capabilities",
            "metadata",
            "node_version",
        ],
    );
    let r = register.json();
    assert!(is_timestamp(r["timestamp"].as_str().unwrap()), "{r}");
    assert!(is_timestamp(r["start_time"].as_str().unwrap()), "{r}");
    assert_eq!(r["node_name"], "fields");
    assert_eq!(r["instance_id"], instance_id.as_str());
    assert_eq!(r["version"], "1.2.3");
    assert_eq!(r["pid"], pid);
    assert_eq!(r["capabilities"], json!(["mqtt_control", "heartbeat", "echo"]));
    assert_eq!(r["metadata"], json!({ "hostname": "test-host", "region": "eu-1" }));
    assert_eq!(
        r["node_version"],
        json!({
            "git_version": "v1.2.3",
            "git_commit": "abc123",
            "build_date": "2024-01-01",
            "go_version": "rustc 1.82.0",
            "platform": "linux/amd64",
        })
    );

    let status = engine.expect_status(&base, "online").await;
    assert_key_order(status.text(), &["timestamp", "node_name", "instance_id", "status"]);
    let s = status.json();
    assert!(is_timestamp(s["timestamp"].as_str().unwrap()), "{s}");
    assert_eq!((s["node_name"].as_str(), s["instance_id"].as_str()), (Some("fields"), Some(instance_id.as_str())));

    let heartbeat_topic = format!("{base}/heartbeat");
    let first = engine.expect_on(&heartbeat_topic).await;
    assert_key_order(
        first.text(),
        &["timestamp", "node_name", "instance_id", "status", "pid", "uptime", "version", "hostname", "metrics"],
    );
    assert_key_order(
        first.text(),
        &["process_cpu_usage_percent", "process_memory_usage_mb", "process_goroutine_count", "queue_depth"],
    );
    let h = first.json();
    assert!(is_timestamp(h["timestamp"].as_str().unwrap()), "{h}");
    assert_eq!(h["node_name"], "fields");
    assert_eq!(h["instance_id"], instance_id.as_str());
    assert_eq!(h["status"], "running");
    assert_eq!(h["pid"], pid);
    assert!(h["uptime"].is_u64(), "{h}");
    assert_eq!(h["version"], "1.2.3");
    assert_eq!(h["hostname"], "test-host");
    let metrics = &h["metrics"];
    let cpu = metrics["process_cpu_usage_percent"].as_str().expect("cpu percent is a string");
    let (whole, hundredths) = cpu.split_once('.').expect("two decimals");
    assert!(whole.parse::<u64>().is_ok() && hundredths.len() == 2 && hundredths.parse::<u8>().is_ok(), "{cpu}");
    assert!(metrics["process_memory_usage_mb"].as_u64().is_some_and(|mb| mb >= 1), "{metrics}");
    assert!(metrics["process_goroutine_count"].as_u64().is_some_and(|t| t >= 2), "{metrics}");
    assert_eq!(metrics["queue_depth"], 7);

    // Custom metrics change between heartbeats; new ones follow in the order they were set.
    handle.set_metric("queue_depth", 9);
    handle.set_metric("healthy", true);
    let next = engine
        .expect("a heartbeat with the updated metrics", |m| {
            m.topic == heartbeat_topic && m.json()["metrics"]["healthy"] == true
        })
        .await;
    assert_eq!(next.json()["metrics"]["queue_depth"], 9);
    assert_key_order(next.text(), &["process_goroutine_count", "queue_depth", "healthy"]);
    let interval = next.at.duration_since(first.at);
    assert!(interval >= Duration::from_millis(700) && interval <= Duration::from_secs(4), "{interval:?}");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_and_application_commands_are_answered() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "cmds").await;

    engine.command(&base, "r-ping", "ping", json!({})).await;
    let pong = engine.result(&base, "r-ping").await;
    assert_eq!((pong["success"].as_bool(), pong["message"].as_str()), (Some(true), Some("pong")));
    assert_eq!(pong["command"], "ping");
    assert_eq!(pong["instance_id"], handle.instance_id());
    assert!(pong["data"].is_null());

    let parameters = json!({ "text": "hello", "n": [1, 2.5, null], "nested": { "ok": true } });
    engine.command(&base, "r-echo", "echo", parameters.clone()).await;
    let echo = engine.result(&base, "r-echo").await;
    assert_eq!((echo["success"].as_bool(), echo["message"].as_str()), (Some(true), Some("echoed")));
    assert_eq!(echo["data"], parameters);

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

    engine.command(&base, "r-fail", "fail", json!({})).await;
    let failed = engine.result(&base, "r-fail").await;
    assert_eq!((failed["success"].as_bool(), failed["message"].as_str()), (Some(false), Some("disk on fire")));
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_commands_are_answered_or_ignored() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "bad").await;
    let control = format!("{base}/control");

    engine.command(&base, "r-unknown", "reboot", json!({})).await;
    let unknown = engine.result(&base, "r-unknown").await;
    assert_eq!((unknown["success"].as_bool(), unknown["message"].as_str()), (Some(false), Some("unknown command")));
    assert_eq!(unknown["command"], "reboot");

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
async fn a_duplicate_request_id_is_not_run_again() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "dup").await;

    engine.command(&base, "r-1", "count", json!({})).await;
    assert_eq!(engine.result(&base, "r-1").await["data"], json!({ "count": 1 }));
    // The redelivery may be answered by a byte-for-byte replay of the first result, never by a
    // second run: the next fresh request counts 2.
    engine.command(&base, "r-1", "count", json!({})).await;
    engine.command(&base, "r-2", "count", json!({})).await;
    let topic = format!("{base}/result");
    loop {
        let msg = engine.expect("a count result", |m| m.topic == topic).await.json();
        match msg["request_id"].as_str() {
            Some("r-1") => assert_eq!(msg["data"], json!({ "count": 1 }), "the duplicate ran again"),
            Some("r-2") => {
                assert_eq!(msg["data"], json!({ "count": 2 }), "the duplicate ran again");
                break;
            }
            other => panic!("unexpected result for {other:?}"),
        }
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_command_reaches_every_instance() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut handles = Vec::new();
    for host in ["host-a", "host-b"] {
        let handle = node(&broker, "fleet").hostname(host).start().await.expect("node starts");
        engine.expect_status(&base("fleet", handle.instance_id()), "online").await;
        handles.push(handle);
    }
    let payload = json!({ "command": "ping", "request_id": "r-all", "parameters": {} });
    engine.publish("subnodesync/fleet/control", payload.to_string()).await;
    let mut answered = Vec::new();
    for _ in 0..2 {
        let result = engine
            .expect("a result for the broadcast", |m| m.topic.ends_with("/result") && m.json()["request_id"] == "r-all")
            .await
            .json();
        assert_eq!(result["message"], "pong");
        answered.push(result["instance_id"].as_str().unwrap().to_owned());
    }
    answered.sort();
    let mut expected: Vec<String> = handles.iter().map(|h| h.instance_id().to_owned()).collect();
    expected.sort();
    assert_eq!(answered, expected);
    for handle in &handles {
        handle.stop().await;
    }
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
    engine.command(&base, "r-deadline", "sleep", json!({ "timeout_ms": 300 })).await;
    let timed_out = engine.result(&base, "r-deadline").await;
    assert_eq!(
        (timed_out["success"].as_bool(), timed_out["message"].as_str()),
        (Some(false), Some("timed out after 300 ms"))
    );
    assert!(ended.had_deadline.load(Ordering::SeqCst), "the handler did not see its deadline");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(ended.dropped.load(Ordering::SeqCst) && ended.cancelled.load(Ordering::SeqCst)) {
        assert!(tokio::time::Instant::now() < deadline, "the timed-out handler was never aborted and cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The handler's own timeout.
    engine.command(&base, "r-slow", "slow", json!({})).await;
    let slow = engine.result(&base, "r-slow").await;
    assert_eq!(
        (slow["success"].as_bool(), slow["message"].as_str()),
        (Some(false), Some("timed out after 200 ms (handler timeout)"))
    );

    engine.command(&base, "r-ping", "ping", json!({})).await;
    assert_eq!(engine.result(&base, "r-ping").await["message"], "pong");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_command_and_the_node_carries_on() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "panicky").await;

    engine.command(&base, "r-panic", "panic", json!({})).await;
    let panicked = engine.result(&base, "r-panic").await;
    assert_eq!(
        (panicked["success"].as_bool(), panicked["message"].as_str()),
        (Some(false), Some("handler panicked: boom"))
    );
    engine.command(&base, "r-echo", "echo", json!({ "still": "here" })).await;
    assert_eq!(engine.result(&base, "r-echo").await["data"], json!({ "still": "here" }));
    assert!(handle.is_connected());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_node_registers_again_and_heartbeats_resume() {
    let mut broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let handle = node(&broker, "phoenix").start().await.expect("node starts");
    let mut events = handle.events();
    let base = base("phoenix", handle.instance_id());
    next_event(&mut events, "Connected", |e| matches!(e, LifecycleEvent::Connected { .. })).await;
    engine.expect_on(&format!("{base}/heartbeat")).await;

    broker.kill();
    next_event(&mut events, "Disconnected", |e| {
        matches!(e, LifecycleEvent::Disconnected { reason: DisconnectReason::Transport, error: Some(_), .. })
    })
    .await;
    assert!(!handle.is_connected());

    broker.restart();
    next_event(&mut events, "Connected again", |e| matches!(e, LifecycleEvent::Connected { .. })).await;
    let register = format!("{base}/register");
    engine.expect("the register message again", |m| m.topic == register && !m.payload.is_empty()).await;
    engine.expect_status(&base, "online").await;
    let heartbeat = format!("{base}/heartbeat");
    let first = engine.expect_on(&heartbeat).await;
    let second = engine.expect_on(&heartbeat).await;
    assert!(second.json()["uptime"].as_u64() >= first.json()["uptime"].as_u64());
    assert!(handle.is_connected());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_status_offline_retained_and_no_register() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(&broker, &mut engine, "leaver").await;
    let mut events = handle.events();

    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
    assert_eq!(handle.stop_reason(), Some(StopReason::Application));
    // Status first, so an engine never sees an instance vanish while it still reads online.
    engine.expect_status(&base, "offline").await;
    let register = format!("{base}/register");
    let cleared = engine.expect_on(&register).await;
    assert!(cleared.payload.is_empty(), "register not cleared: {}", cleared.text());
    next_event(&mut events, "Stopped", |e| *e == LifecycleEvent::Stopped).await;
    assert!(!handle.is_connected());

    // A newcomer sees the retained state: status offline, and no register left.
    let mut newcomer = Engine::connect(broker.port(), &[&format!("{base}/status")]).await;
    let status = newcomer.expect("the retained status", |_| true).await;
    assert!(status.retain);
    assert_eq!(status.json()["status"], "offline");
    assert_no_retained(broker.port(), &register).await;

    // Stopping again is harmless and immediate.
    tokio::time::timeout(Duration::from_secs(1), handle.stop()).await.expect("second stop returns at once");
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

    let err = NodeBuilder::new("app").env(|_| None).keepalive(Duration::from_millis(1500)).start().await.unwrap_err();
    assert!(matches!(err, Error::Config { variable: None, .. }), "{err}");
}
