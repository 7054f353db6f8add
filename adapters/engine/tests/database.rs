//! Bounded state and database faults, against a real mosquitto and real SQLite files: nothing the
//! engine accepted is lost while the database is locked, and nothing a publisher sends grows the
//! engine's memory or its database without bound.

mod config;

use config::engine_config;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use subnodesync_engine::{
    Database, Engine, EngineConfig, FleetEvent, Location, SendRequest, Status, Target, MAX_ORPHAN_RESULTS,
    MAX_PROGRESS_PER_RESULT,
};
use subnodesync_testkit::{Broker, WAIT};
use subnodesync_tokio::{handler_fn, CommandResult, NodeBuilder, NodeHandle};
use tokio::sync::broadcast;

async fn node(url: &str, host: &str) -> NodeHandle {
    NodeBuilder::new("shop")
        .env(|_| None)
        .broker_url(url)
        .hostname(host)
        .heartbeat_interval(Duration::from_secs(1))
        .handler(handler_fn(
            "echo",
            |_ctx, cmd| async move { Ok(CommandResult::ok("echoed").with_data(cmd.parameters)) },
        ))
        .start()
        .await
        .expect("node starts")
}

/// Waits until `check` holds, failing after `bound`.
async fn eventually(bound: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event for which `pred` holds, within `bound`.
async fn next_event(
    events: &mut broadcast::Receiver<FleetEvent>,
    bound: Duration,
    what: &str,
    pred: impl Fn(&FleetEvent) -> bool,
) -> FleetEvent {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no {what} within {bound:?}: {other:?}"),
        }
    }
}

/// Whether a new subscriber to `topic` gets no retained message: a probe published after the
/// subscription comes first.
async fn retained_gone(port: u16, topic: &str) -> bool {
    let mut newcomer = subnodesync_testkit::Engine::connect(port, &[topic]).await;
    newcomer.publish(topic, "probe").await;
    let first = newcomer.expect_on(topic).await;
    (first.text(), first.retain) == ("probe", false)
}

/// Waits until the future `check` makes yields true, failing after [`WAIT`].
async fn eventually_async<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Another connection takes the database's write lock for `hold`; returns once it has it.
/// The SQLite file of an [`engine_config`].
fn sqlite_file(config: &EngineConfig) -> PathBuf {
    match &config.db {
        Location::Sqlite(path) => path.clone(),
        other => panic!("not a SQLite file: {other}"),
    }
}

fn hold_write_lock(db: &Path, hold: Duration) -> std::thread::JoinHandle<()> {
    let (locked, is_locked) = std::sync::mpsc::channel();
    let db = db.to_owned();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).expect("open the engine's database");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");
        locked.send(()).expect("the test waits");
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").expect("release the lock");
    });
    is_locked.recv().expect("the lock taken");
    holder
}

fn echo(instance_id: &str, n: u32) -> SendRequest {
    let mut request = SendRequest::new(Target::Instance { node_name: None, instance_id: instance_id.into() }, "echo");
    request.parameters = json!({ "n": n }).to_string();
    request.timeout = Duration::from_secs(5);
    request
}

fn count(db: &PathBuf, sql: &str) -> i64 {
    rusqlite::Connection::open(db).expect("open").query_row(sql, [], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_arriving_while_another_connection_holds_the_database_for_15_s_are_all_recorded() {
    let broker = Broker::start();
    let config = engine_config(&broker.url(), "locked");
    let db = sqlite_file(&config);
    let engine = Engine::start(config).await.expect("engine starts");
    let mut events = engine.events();
    let node = node(&broker.url(), "h1").await;
    eventually(WAIT, "the node registered", || engine.instances().len() == 1).await;
    engine.flush().await.expect("the database takes writes before the lock");

    let holder = hold_write_lock(&db, Duration::from_secs(15));
    let mut sent = Vec::new();
    for n in 0..3 {
        let outcome = engine.send(&echo(node.instance_id(), n)).await.expect("send works on a locked database");
        assert!(outcome.all_succeeded(), "{outcome:?}");
        sent.push(outcome.request_id);
    }
    // Said while it happens: the write failed and its rows are kept.
    let failed = next_event(&mut events, Duration::from_secs(20), "a database failure", |e| {
        matches!(e, FleetEvent::DatabaseFailed { .. })
    })
    .await;
    assert!(!holder.is_finished(), "the failure was reported only after the lock went: {failed:?}");
    let FleetEvent::DatabaseFailed { unsaved_rows, error, .. } = &failed else { unreachable!() };
    assert!(*unsaved_rows >= 1 && error.contains("locked"), "{failed:?}");
    assert!(engine.stats().flush_failures >= 1);

    holder.join().expect("the lock holder");
    next_event(&mut events, Duration::from_secs(60), "the recovery", |e| {
        matches!(e, FleetEvent::DatabaseRecovered { .. })
    })
    .await;
    let history = engine.history(10, None).await.expect("history");
    let recorded: Vec<&str> = history.iter().rev().map(|(c, _)| c.request_id.as_str()).collect();
    assert_eq!(recorded, sent.iter().map(String::as_str).collect::<Vec<_>>());
    for (command, results) in &history {
        assert_eq!(results.len(), 1, "{command:?}: {results:?}");
        assert!(results[0].success && results[0].is_final());
    }
    assert_eq!(engine.stats().unsaved_rows, 0);
    node.stop().await;
    engine.shutdown().await.expect("everything written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_out_a_locked_database_and_writes_what_it_accepted() {
    let broker = Broker::start();
    let config = engine_config(&broker.url(), "shutdown");
    let db = sqlite_file(&config);
    let engine = Engine::start(config).await.expect("engine starts");
    let node = node(&broker.url(), "h1").await;
    eventually(WAIT, "the node registered", || engine.instances().len() == 1).await;

    // Longer than the engine waits for a lock, so the first write at shutdown fails.
    let holder = hold_write_lock(&db, Duration::from_secs(8));
    let outcome = engine.send(&echo(node.instance_id(), 1)).await.expect("send");
    engine.shutdown().await.expect("shutdown writes once the lock goes");
    holder.join().expect("the lock holder");

    let history = Database::open(&db.clone().into()).expect("open").history(10, None).expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].0.request_id.as_str(), history[0].1.len()), (outcome.request_id.as_str(), 1));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_refuses_new_instances_and_keeps_serving_the_ones_it_has() {
    let broker = Broker::start();
    let config = EngineConfig { max_instances: 2, ..engine_config(&broker.url(), "full") };
    let engine = Engine::start(config).await.expect("engine starts");
    let nodes = [node(&broker.url(), "h1").await, node(&broker.url(), "h2").await, node(&broker.url(), "h3").await];
    eventually(WAIT, "the third instance refused", || engine.stats().registry_full > 0).await;
    let known = engine.instances();
    assert_eq!(known.len(), 2, "{known:?}");
    // The two it has are still ingested: their heartbeats keep counting.
    let before: u64 = known.iter().map(|i| i.heartbeats).sum();
    eventually(WAIT, "more heartbeats", || engine.instances().iter().map(|i| i.heartbeats).sum::<u64>() > before + 2)
        .await;
    for n in &nodes {
        n.stop().await;
    }
    engine.shutdown().await.expect("everything written");
}

/// A scripted node on the broker answers one request with a redelivered progress update, a flood
/// of distinct ones and a final result, then publishes more results for request ids nobody sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_flooding_progress_and_unknown_request_ids_are_kept_within_bounds() {
    // Ten thousand QoS 1 messages at once: mosquitto's default queue (1000 per client) would drop
    // some on their way to a busy engine, as the engine README says for large fleets.
    let broker = Broker::start_with(|_| "allow_anonymous true\nmax_queued_messages 0\n".into());
    let config = engine_config(&broker.url(), "bounded-results");
    let db = sqlite_file(&config);
    let engine = Engine::start(config).await.expect("engine starts");
    assert!(engine.wait_synced(WAIT).await);
    let mut scripted = subnodesync_testkit::Engine::connect(broker.port(), &["subnodesync/app/app-h-1/control"]).await;
    let result = |request_id: &str, state: &str, message: &str| {
        json!({
            "timestamp": "2024-01-01T12:00:00Z", "node_name": "app", "instance_id": "app-h-1", "command": "work",
            "request_id": request_id, "success": true, "message": message, "data": null, "state": state,
        })
        .to_string()
    };

    let target = Target::Instance { node_name: Some("app".into()), instance_id: "app-h-1".into() };
    let mut request = SendRequest::new(target, "work");
    request.timeout = Duration::from_secs(8);
    request.retries = 0;
    let sending = tokio::spawn(async move {
        let outcome = engine.send(&request).await;
        (engine, outcome)
    });
    let control = scripted.expect_on("subnodesync/app/app-h-1/control").await;
    let request_id = control.json()["request_id"].as_str().expect("a request id").to_owned();
    let topic = "subnodesync/app/app-h-1/result";
    for _ in 0..3 {
        scripted.publish(topic, result(&request_id, "in_progress", "step 0")).await;
    }
    for step in 1..=MAX_PROGRESS_PER_RESULT + 50 {
        scripted.publish(topic, result(&request_id, "in_progress", &format!("step {step}"))).await;
    }
    scripted.publish(topic, result(&request_id, "done", "worked")).await;
    let strays = MAX_ORPHAN_RESULTS + 20;
    for n in 0..strays {
        scripted.publish(topic, result(&format!("stray-{n}"), "done", "unasked")).await;
    }
    let (engine, outcome) = sending.await.expect("the sending task");
    assert!(outcome.expect("send").all_succeeded());
    let all = u64::try_from(strays + MAX_PROGRESS_PER_RESULT + 50 + 4).expect("fits");
    eventually(WAIT * 3, "every result received", || engine.stats().messages >= all).await;
    engine.shutdown().await.expect("everything written");

    let history = Database::open(&db.clone().into()).expect("open").history(1, None).expect("history");
    let (command, results) = &history[0];
    assert_eq!(command.request_id, request_id);
    assert_eq!(results.len(), MAX_PROGRESS_PER_RESULT + 1, "one copy of step 0, the cap, and the final result");
    assert_eq!(results.iter().filter(|r| r.message == "step 0").count(), 1);
    assert_eq!(results.last().map(|r| r.message.as_str()), Some("worked"));
    let orphans = count(&db, "SELECT COUNT(*) FROM results WHERE request_id LIKE 'stray-%'");
    assert_eq!(usize::try_from(orphans).expect("a count"), MAX_ORPHAN_RESULTS);
    // The newest are the ones kept.
    let newest = format!("SELECT COUNT(*) FROM results WHERE request_id = 'stray-{}'", strays - 1);
    assert_eq!(count(&db, &newest), 1);
}

/// A scripted instance registers, says it is online and beats once, then falls silent with
/// its connection open (no will): missing after three intervals, then pruned like a lost one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_missing_for_the_prune_age_is_pruned_and_its_retained_messages_cleared() {
    let broker = Broker::start();
    let config = EngineConfig { prune_after: Some(Duration::from_secs(1)), ..engine_config(&broker.url(), "missing") };
    let engine = Engine::start(config).await.expect("engine starts");
    assert!(engine.wait_synced(WAIT).await);
    let mut events = engine.events();
    let scripted = subnodesync_testkit::Engine::connect(broker.port(), &[]).await;
    let base = "subnodesync/app/app-h-1";
    let common = json!({"timestamp": "2024-01-01T12:00:00Z", "node_name": "app", "instance_id": "app-h-1"});
    let with = |extra: serde_json::Value| {
        let mut message = common.clone();
        message.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        message.to_string()
    };
    scripted
        .publish_retained(
            &format!("{base}/register"),
            with(json!({
                "version": "1.0", "pid": 1, "start_time": "2024-01-01T12:00:00Z",
                "capabilities": ["mqtt_control", "heartbeat"], "metadata": {"hostname": "h"},
                "node_version": {"git_version": "v", "git_commit": "c", "build_date": "d", "go_version": "g", "platform": "p"}
            })),
        )
        .await;
    scripted.publish_retained(&format!("{base}/status"), with(json!({"status": "online"}))).await;
    let metrics =
        json!({"process_cpu_usage_percent": "1.00", "process_memory_usage_mb": 1, "process_goroutine_count": 1});
    let heartbeat = with(json!({
        "status": "running", "pid": 1, "uptime": 1, "version": "1.0", "hostname": "h", "metrics": metrics
    }));
    scripted.publish(&format!("{base}/heartbeat"), heartbeat).await;

    next_event(
        &mut events,
        WAIT,
        "missing",
        |e| matches!(e, FleetEvent::StatusChanged { to: Status::Missing, instance_id, .. } if instance_id == "app-h-1"),
    )
    .await;
    let pruned = next_event(&mut events, WAIT, "pruned", |e| matches!(e, FleetEvent::Pruned { .. })).await;
    assert_eq!(pruned, FleetEvent::Pruned { instance_ids: vec!["app-h-1".into()] });
    assert!(engine.instances().is_empty());
    // The clearing publishes leave the engine's queue after the event: give them a moment.
    for kind in ["register", "status"] {
        let topic = format!("{base}/{kind}");
        eventually_async(&format!("{topic} cleared"), || retained_gone(broker.port(), &topic)).await;
    }
    engine.shutdown().await.expect("everything written");
}
