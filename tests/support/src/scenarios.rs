//! Scenarios every broker and every runtime adapter must pass, written once and run against
//! each broker implementation (mosquitto, rumqttd) and each adapter (tokio, smol). Each takes the
//! broker's port and a function that makes a bare node builder for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use subnodesync_host::{
    handler_fn, CommandResult, DisconnectReason, LifecycleEvent, NodeBuilder, NodeHandle, OwnedNodeVersion, Runtime,
    StopReason,
};

use crate::{assert_key_order, assert_no_retained, base, is_timestamp, outcome, Engine, RestartableBroker, WAIT};

mod desired;
mod trickle;
pub use desired::{
    cancel_ends_a_running_command_through_its_context, desired_state_is_applied_reported_and_cleared_by_a_clean_stop,
};
pub use trickle::a_transport_that_takes_a_few_bytes_at_a_time_carries_every_packet_whole;

/// A node on the broker at `url` with the suites' short intervals, ignoring the process
/// environment.
pub fn suite_node<R: Runtime>(url: &str, name: &str) -> NodeBuilder<R> {
    NodeBuilder::new(name)
        .env(|_| None)
        .broker_url(url)
        .hostname("test-host")
        .heartbeat_interval(Duration::from_secs(1))
        .keep_alive(Duration::from_secs(2))
        .reconnect_min(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(2))
}

/// Adds the example nodes' two commands to `builder` (`examples/` starts its nodes with them,
/// and the scenarios below exercise them):
///
/// * `echo` returns its parameters as `data`;
/// * `count` returns `{"count": n}`, n being how many times it has run in this process.
pub fn echo_and_count<R>(builder: NodeBuilder<R>) -> NodeBuilder<R> {
    let runs = Arc::new(AtomicU64::new(0));
    builder
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
        .handler(handler_fn("count", move |_ctx, _cmd| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(CommandResult::ok("counted").with_data(json!({ "count": n }))) }
        }))
}

/// Starts `builder`'s node and waits until the engine sees it online.
pub async fn online<R: Runtime>(builder: NodeBuilder<R>, engine: &mut Engine) -> (NodeHandle, String) {
    let handle = builder.start().await.expect("node starts");
    let base = base(handle.node_name(), handle.instance_id());
    engine.expect_status(&base, "online").await;
    (handle, base)
}

/// The register, status and heartbeat payloads carry every field of the contract, in order.
pub async fn register_status_and_heartbeat_carry_every_field<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let handle = node("fields")
        .version("1.2.3")
        .metadata("region", "eu-1")
        .capability("echo")
        .metric("queue_depth", 7)
        .node_version(OwnedNodeVersion {
            git_version: "v1.2.3".into(),
            git_commit: "abc123".into(),
            build_date: "2024-01-01".into(),
            go_version: "rustc 1.82.0".into(),
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

/// A command redelivered with the same request_id is answered without running again.
pub async fn a_duplicate_request_id_is_not_run_again<R: Runtime>(port: u16, node: impl Fn(&str) -> NodeBuilder<R>) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (handle, base) = online(echo_and_count(node("dup")), &mut engine).await;

    assert_eq!(engine.ask(&base, "r-1", "count", json!({})).await["data"], json!({ "count": 1 }));
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

/// Control messages left retained on the broker are never run from the retained copy: a `stop`
/// for the node name and a `count` for the instance, handed over at every subscribe, are
/// acknowledged and neither run nor answered. A retained publish reaching an instance that is
/// already subscribed is a live delivery (RETAIN 0) and runs, once.
pub async fn retained_orders_are_never_run<R: Runtime>(port: u16, node: impl Fn(&str) -> NodeBuilder<R>) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let stop = json!({ "command": "stop", "request_id": "r-old-stop", "parameters": {} });
    engine.publish_retained("subnodesync/retained/control", stop.to_string()).await;
    let (handle, base) = online(echo_and_count(node("retained")), &mut engine).await;
    let count = json!({ "command": "count", "request_id": "r-old-count", "parameters": {} });
    engine.publish_retained(&format!("{base}/control"), count.to_string()).await;
    assert_eq!(engine.result(&base, "r-old-count").await["data"], json!({ "count": 1 }), "the live delivery runs");
    assert_eq!(handle.stop_reason(), None, "the retained stop stopped the node");
    handle.stop().await;

    // The same instance again (same process, so the same id): a fresh process would have no
    // memory of r-old-count, and both retained copies arrive at its subscribe.
    let (handle, base) = online(echo_and_count(node("retained")), &mut engine).await;
    engine.command(&base, "r-live", "count", json!({})).await;
    let topic = format!("{base}/result");
    let next = engine.expect("the live command's result", |m| m.topic == topic).await.json();
    assert_eq!(next["request_id"], "r-live", "a retained order was answered: {next}");
    assert_eq!(next["data"], json!({ "count": 1 }), "the retained count ran again");
    assert_eq!(handle.stop_reason(), None, "the retained stop stopped the node");
    handle.stop().await;
    engine.publish_retained("subnodesync/retained/control", Vec::new()).await;
    engine.publish_retained(&format!("{base}/control"), Vec::new()).await;
}

/// Hostile control traffic, as any client of the broker could publish it, leaves the node
/// connected and answering: a message far larger than its receive buffer, one nested deeper
/// than its JSON scanner goes, and a flood of garbage.
pub async fn hostile_control_traffic_leaves_the_node_answering<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (handle, base) = online(echo_and_count(node("hostile")), &mut engine).await;
    let control = format!("{base}/control");
    let mut events = handle.events();

    let oversized =
        json!({ "command": "echo", "request_id": "r-big", "parameters": { "pad": "x".repeat(256 * 1024) } });
    engine.publish(&control, oversized.to_string()).await;
    let depth = 10_000;
    let nested = format!(
        r#"{{"command":"echo","request_id":"r-deep","parameters":{{"a":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    engine.publish(&control, nested).await;
    for i in 0..2_000 {
        engine.publish(&control, format!("garbage {i} {}", "\u{1b}[2J".repeat(i % 7))).await;
    }

    let topic = format!("{base}/result");
    engine.command(&base, "r-after", "ping", json!({})).await;
    let next = engine.expect("the ping after the hostile traffic", |m| m.topic == topic).await.json();
    // The oversized echo was skipped unread and the nested one refused unanswered (neither
    // request id could be read), so the next result is the ping's.
    assert_eq!((next["request_id"].as_str(), next["message"].as_str()), (Some("r-after"), Some("pong")));
    assert!(handle.is_connected());
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, LifecycleEvent::Disconnected { .. }), "the node lost the broker: {event}");
    }
    handle.stop().await;
}

/// A command on the broadcast topic reaches every instance of the node name.
pub async fn a_broadcast_command_reaches_every_instance<R: Runtime>(port: u16, node: impl Fn(&str) -> NodeBuilder<R>) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let mut handles = Vec::new();
    for host in ["host-a", "host-b"] {
        let handle = node("fleet").hostname(host).start().await.expect("node starts");
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

/// A clean stop leaves `offline` retained and no retained register.
pub async fn a_clean_stop_leaves_status_offline_retained_and_no_register<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (handle, base) = online(echo_and_count(node("leaver")), &mut engine).await;
    let mut events = handle.events();
    let register = format!("{base}/register");
    let status = format!("{base}/status");

    // Before the stop, a newcomer finds both retained. One engine per topic: `Engine::connect`
    // drops what arrives before the last SUBACK, which includes the retained messages of all but
    // the last filter.
    for (topic, what) in [(&register, "the retained register"), (&status, "the retained status")] {
        let mut before = Engine::connect(port, &[topic]).await;
        let m = before.expect_on(topic).await;
        assert!(m.retain && !m.payload.is_empty(), "{what}: {m:?}");
    }

    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
    assert_eq!(handle.stop_reason(), Some(StopReason::Application));
    // Status first, so an engine never sees an instance vanish while it still reads online.
    engine.expect_status(&base, "offline").await;
    let cleared = engine.expect_on(&register).await;
    assert!(cleared.payload.is_empty(), "register not cleared: {}", cleared.text());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(LifecycleEvent::Stopped)) => break,
            Ok(Ok(_)) => {}
            other => panic!("no Stopped event within {WAIT:?}: {other:?}"),
        }
    }
    assert!(!handle.is_connected());

    // A newcomer sees the retained state: status offline (the will, `lost`, was discarded by the
    // DISCONNECT) and no register.
    let mut newcomer = Engine::connect(port, &[&status]).await;
    let retained = newcomer.expect_on(&status).await;
    assert!(retained.retain, "{retained:?}");
    assert_eq!(retained.json()["status"], "offline");
    assert_no_retained(port, &register).await;

    // Stopping again is harmless and immediate.
    tokio::time::timeout(Duration::from_secs(1), handle.stop()).await.expect("second stop returns at once");
}

/// `ping` and an application command get their final results.
pub async fn ping_and_an_application_command_are_answered<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (handle, base) = online(echo_and_count(node("cmds")), &mut engine).await;

    let pong = engine.ask(&base, "r-ping", "ping", json!({})).await;
    assert_eq!(outcome(&pong), (Some(true), Some("pong")));
    assert_eq!(pong["command"], "ping");
    assert_eq!(pong["instance_id"], handle.instance_id());
    assert!(pong["data"].is_null());

    let parameters = json!({ "text": "hello", "n": [1, 2.5, null], "nested": { "ok": true } });
    let echo = engine.ask(&base, "r-echo", "echo", parameters.clone()).await;
    assert_eq!(outcome(&echo), (Some(true), Some("echoed")));
    assert_eq!(echo["command"], "echo");
    assert_eq!(echo["data"], parameters);
    handle.stop().await;
}

/// An unknown command gets a failed result naming it.
pub async fn an_unknown_command_fails<R: Runtime>(port: u16, node: impl Fn(&str) -> NodeBuilder<R>) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (handle, base) = online(echo_and_count(node("bad")), &mut engine).await;

    let unknown = engine.ask(&base, "r-unknown", "reboot", json!({})).await;
    assert_eq!(outcome(&unknown), (Some(false), Some("unknown command")));
    assert_eq!(unknown["command"], "reboot");

    // The node carries on.
    assert_eq!(engine.ask(&base, "r-ping", "ping", Value::Null).await["message"], "pong");
    assert!(handle.is_connected());
    handle.stop().await;
}

/// A handler that panics fails its command with the panic's message; the node carries on.
pub async fn a_panicking_handler_fails_its_command_and_the_node_carries_on<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let panicky = handler_fn("panic", |_ctx, _cmd| async move {
        if true {
            panic!("boom");
        }
        Ok(CommandResult::ok("unreachable"))
    });
    // Panics in the call itself, before it has a future to return.
    let at_once = handler_fn("panic-now", |_ctx, _cmd| -> std::future::Ready<subnodesync_host::HandlerResult> {
        panic!("boom at once")
    });
    let builder = echo_and_count(node("panicky")).handler(panicky).handler(at_once);
    let (handle, base) = online(builder, &mut engine).await;

    for (request_id, command, message) in
        [("r-panic", "panic", "handler panicked: boom"), ("r-now", "panic-now", "handler panicked: boom at once")]
    {
        engine.command(&base, request_id, command, json!({})).await;
        let panicked = engine.result(&base, request_id).await;
        assert_eq!(outcome(&panicked), (Some(false), Some(message)));
    }
    assert_eq!(
        engine.ask(&base, "r-echo", "echo", json!({ "still": "here" })).await["data"],
        json!({ "still": "here" })
    );
    assert!(handle.is_connected());
    handle.stop().await;
}

/// After the broker is killed and restarted (losing every session and retained message), the
/// node reconnects, registers again, and its heartbeats resume.
pub async fn after_a_broker_restart_the_node_registers_again_and_heartbeats_resume<R: Runtime>(
    broker: &mut impl RestartableBroker,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let handle = node("phoenix").start().await.expect("node starts");
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

/// The next lifecycle event matching `pred`, within [`WAIT`].
pub async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<LifecycleEvent>,
    what: &str,
    pred: impl Fn(&LifecycleEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} event within {WAIT:?}"),
        }
    }
}

/// The engine's `timeout_ms` cuts a handler off, on the adapter's own timers, with a failed
/// result; the node answers the next command.
pub async fn a_handler_past_the_engines_deadline_gets_a_failed_result<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let forever = handler_fn("forever", |_ctx, _cmd| async move {
        std::future::pending::<()>().await;
        Ok(CommandResult::ok("unreachable"))
    });
    let (handle, base) = online(node("patient").handler(forever), &mut engine).await;
    let result = engine.ask(&base, "r-forever", "forever", json!({ "timeout_ms": 200 })).await;
    assert_eq!(outcome(&result), (Some(false), Some("timed out after 200 ms")));
    assert_eq!(engine.ask(&base, "r-ping", "ping", json!({})).await["message"], "pong");
    handle.stop().await;
}

/// Defines one `#[tokio::test]` per scenario, with the nodes of the runtime adapter `$runtime`
/// built by [`suite_node`]:
///
/// * `broker_scenarios!(Runtime)`: every scenario above and every [`crate::tls`] scenario, each
///   against a fresh mosquitto: a runtime adapter's whole shared suite in one line;
/// * `broker_scenarios!(@every Runtime, BrokerType)`: every scenario of this module and the
///   broker restart against another broker (one that can restart, as amqtt can);
/// * `broker_scenarios!(Runtime, BrokerType; scenario, ...)`: the named scenarios of this module
///   against another broker, any type with `start()`, `port()` and `url()` as [`crate::Broker`] has.
#[macro_export]
macro_rules! broker_scenarios {
    ($runtime:ty) => {
        $crate::broker_scenarios!(@every $runtime, $crate::Broker);
        $crate::broker_scenarios!(@tls $runtime;
            over_tls_with_a_ca_made_in_the_test_the_node_registers_and_answers_commands,
            a_server_certificate_for_another_name_or_from_an_unknown_ca_is_refused_with_a_clear_error,
            a_broker_that_requires_a_client_certificate_accepts_the_node_that_presents_one,
        );
    };
    // Every scenario and the broker restart, on a broker of type `$broker` (mosquitto over TCP,
    // amqtt with the node on WebSocket).
    (@every $runtime:ty, $broker:ty) => {
        $crate::broker_scenarios!($runtime, $broker;
            register_status_and_heartbeat_carry_every_field,
            ping_and_an_application_command_are_answered,
            an_unknown_command_fails,
            a_duplicate_request_id_is_not_run_again,
            retained_orders_are_never_run,
            hostile_control_traffic_leaves_the_node_answering,
            a_broadcast_command_reaches_every_instance,
            a_panicking_handler_fails_its_command_and_the_node_carries_on,
            a_handler_past_the_engines_deadline_gets_a_failed_result,
            a_clean_stop_leaves_status_offline_retained_and_no_register,
            desired_state_is_applied_reported_and_cleared_by_a_clean_stop,
            cancel_ends_a_running_command_through_its_context,
            a_transport_that_takes_a_few_bytes_at_a_time_carries_every_packet_whole,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn after_a_broker_restart_the_node_registers_again_and_heartbeats_resume() {
            let mut broker = <$broker>::start();
            let url = broker.url();
            $crate::scenarios::after_a_broker_restart_the_node_registers_again_and_heartbeats_resume(
                &mut broker,
                |name| $crate::scenarios::suite_node::<$runtime>(&url, name),
            )
            .await;
        }
    };
    (@tls $runtime:ty; $($scenario:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            $crate::tls::$scenario::<$runtime>().await;
        }
    )*};
    ($runtime:ty, $broker:ty; $($scenario:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            let broker = <$broker>::start();
            let url = broker.url();
            $crate::scenarios::$scenario(broker.port(), |name| $crate::scenarios::suite_node::<$runtime>(&url, name))
                .await;
        }
    )*};
}
