//! Desired state and cancellation, as every runtime adapter must run them (PROTOCOL.md §15, §7.1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use subnodesync_host::{handler_fn, CommandResult, NodeBuilder, Runtime};

use super::online;
use crate::{assert_key_order, outcome, Engine, WAIT};

/// A desired document for the name, set before the instance exists, reaches it at its first
/// connect; an instance document overrides it key by key; every change is reported, retained,
/// and a clean stop deletes the report.
pub async fn desired_state_is_applied_reported_and_cleared_by_a_clean_stop<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let name_doc = json!({"version": 10, "settings": {"heartbeat_interval": 2, "log_level": "debug", "color": "red"}});
    engine.publish_retained("subnodesync/tuned/desired", name_doc.to_string()).await;
    let level = Arc::new(Mutex::new(String::new()));
    let applied = level.clone();
    let builder = node("tuned").settings(move |key: &str, value: &Value| match (key, value.as_str()) {
        ("log_level", Some(l @ ("debug" | "info"))) => {
            *applied.lock().unwrap() = l.to_owned();
            Ok(())
        }
        ("log_level", _) => Err("one of debug, info".to_owned()),
        _ => Err("unknown setting".to_owned()),
    });
    let (handle, base) = online(builder, &mut engine).await;
    let reported = format!("{base}/reported");

    let report = engine.expect_on(&reported).await;
    assert_key_order(
        report.text(),
        &["timestamp", "node_name", "instance_id", "version", "settings", "rejected", "error"],
    );
    let r = report.json();
    assert_eq!(r["instance_id"], handle.instance_id());
    assert_eq!(r["version"], 10);
    assert_eq!(r["settings"], json!({"heartbeat_interval": 2, "log_level": "debug"}));
    assert_eq!(r["rejected"], json!({"color": "unknown setting"}));
    assert_eq!(r["error"], Value::Null);
    assert_eq!(*level.lock().unwrap(), "debug");
    let status = engine.ask(&base, "r-status", "status", json!({})).await;
    assert_eq!(status["data"]["heartbeat_interval"], 2, "{status}");

    let instance_doc = json!({"version": 11, "settings": {"log_level": "info", "color": "blue"}});
    engine.publish_retained(&format!("{base}/desired"), instance_doc.to_string()).await;
    let r = engine.expect_on(&reported).await.json();
    assert_eq!(r["version"], 11);
    assert_eq!(r["settings"], json!({"log_level": "info", "heartbeat_interval": 2}));
    assert_eq!(*level.lock().unwrap(), "info");

    // A document no node can take is refused whole, and said so.
    engine.publish_retained(&format!("{base}/desired"), r#"{"version":12,"settings":{"x":[1]}}"#).await;
    let r = engine.expect_on(&reported).await.json();
    assert_eq!(r["version"], 11, "{r}");
    assert_eq!(r["error"], "instance: invalid desired document: a setting value is an object or an array");

    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
    let cleared = engine.expect_on(&reported).await;
    assert!(cleared.payload.is_empty(), "the report was not deleted: {}", cleared.text());
    crate::assert_no_retained(port, &reported).await;
}

/// The built-in `cancel` ends a running handler's command with a failed result, answers, and
/// the handler's context says it was cancelled to work the handler handed elsewhere.
pub async fn cancel_ends_a_running_command_through_its_context<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let (started, noticed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (start_flag, notice_flag) = (started.clone(), noticed.clone());
    let slow = handler_fn("slow", move |ctx, _cmd| {
        start_flag.store(true, Ordering::SeqCst);
        let notice_flag = notice_flag.clone();
        // Work handed to a thread, which only the context can tell to give up.
        std::thread::spawn(move || {
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(10));
            }
            notice_flag.store(true, Ordering::SeqCst);
        });
        async move {
            std::future::pending::<()>().await;
            Ok(CommandResult::ok("unreachable"))
        }
    });
    let (handle, base) = online(node("cancellable").handler(slow), &mut engine).await;
    engine.command(&base, "r-slow", "slow", json!({})).await;
    wait_for(&started, "the handler to start").await;

    engine.command(&base, "r-cancel", "cancel", json!({"request_id": "r-slow"})).await;
    let cancelled = engine.result(&base, "r-slow").await;
    assert_eq!(outcome(&cancelled), (Some(false), Some("cancelled by request `r-cancel`")));
    let answer = engine.result(&base, "r-cancel").await;
    assert_eq!(outcome(&answer), (Some(true), Some("cancelled")));
    assert_eq!(answer["data"], json!({"request_id": "r-slow"}));
    wait_for(&noticed, "the handler's context to say it was cancelled").await;

    let again = engine.ask(&base, "r-cancel-2", "cancel", json!({"request_id": "r-slow"})).await;
    assert_eq!(outcome(&again), (Some(false), Some("no running command has request_id `r-slow`")));
    handle.stop().await;
}

async fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !flag.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
