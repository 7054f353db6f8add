//! What any client of the broker can publish must not knock the engine off it: hostile and
//! stale input against a real mosquitto, read back through the engine's own API.

use std::time::Duration;

use subnodesync_engine::{Engine, EngineConfig, MAX_PAYLOAD};
use subnodesync_testkit::{Broker, WAIT};

fn engine_config(url: &str, name: &str) -> EngineConfig {
    let db = std::env::temp_dir().join(format!("subnode-hostile-{}-{name}", std::process::id())).join("engine.db");
    let _ = std::fs::remove_dir_all(db.parent().expect("a parent"));
    EngineConfig { db: db.into(), ..EngineConfig::from_lookup(&|_| None).expect("defaults") }
        .broker_url(url)
        .expect("a valid url")
}

const REGISTER: &str = r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-h-1","version":"1.0","pid":1,"start_time":"2024-01-01T12:00:00Z","capabilities":["mqtt_control","heartbeat"],"metadata":{"hostname":"h"},"node_version":{"git_version":"v","git_commit":"c","build_date":"d","go_version":"g","platform":"p"}}"#;

/// Waits until `check` holds, failing after [`WAIT`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_larger_than_the_engine_reads_is_skipped_and_the_engine_stays_connected() {
    let broker = Broker::start();
    let client = subnodesync_testkit::Engine::connect(broker.port(), &[]).await;
    // 300 KiB, above rumqttc's default packet limit (which used to drop the connection every
    // time the broker handed it over) and above what the engine reads.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300 * 1024));
    assert!(huge.len() > MAX_PAYLOAD);
    client.publish_retained("subnodesync/app/app-h-0/register", huge.clone()).await;

    let engine = Engine::start(engine_config(&broker.url(), "oversized")).await.expect("engine starts");
    eventually("the oversized retained message counted", || engine.stats().oversized == 1).await;
    // Had the engine been dropped and come back, its new subscription would have been handed
    // the retained message again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(engine.stats().oversized, 1, "the engine reconnected over one message");
    assert!(engine.is_connected(), "the engine lost the broker over one message");
    // Still reading: a normal register after the huge one is ingested.
    client.publish_retained("subnodesync/app/app-h-1/register", REGISTER).await;
    eventually("the normal register ingested", || engine.instances().iter().any(|i| i.instance_id == "app-h-1")).await;
    // And a live oversized message (not retained) is skipped the same way.
    client.publish("subnodesync/app/app-h-1/heartbeat", huge).await;
    eventually("the live oversized message counted", || engine.stats().oversized == 2).await;
    assert!(engine.is_connected());
    engine.shutdown().await.expect("everything written");
}

/// One node name's publisher cannot speak for another name's instances: an instance id must
/// start with the topic's node name, and one already registered under a name stays that name's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_another_names_instance_are_dropped_and_counted() {
    let broker = Broker::start();
    let client = subnodesync_testkit::Engine::connect(broker.port(), &[]).await;
    let engine = Engine::start(engine_config(&broker.url(), "identity")).await.expect("engine starts");
    assert!(engine.wait_synced(WAIT).await);
    client.publish_retained("subnodesync/app/app-h-1/register", REGISTER).await;
    eventually("the register ingested", || engine.instances().iter().any(|i| i.instance_id == "app-h-1")).await;

    // `evil` claims app's instance id outright, and `app-h` (whose ids do start `app-h-`) claims
    // an id `app` registered first; both payloads match their topics.
    let as_evil = REGISTER
        .replace(r#""node_name":"app""#, r#""node_name":"evil""#)
        .replace(r#""version":"1.0""#, r#""version":"6.6.6""#);
    client.publish("subnodesync/evil/app-h-1/register", as_evil).await;
    let as_app_h = REGISTER
        .replace(r#""node_name":"app""#, r#""node_name":"app-h""#)
        .replace(r#""version":"1.0""#, r#""version":"6.6.6""#);
    client.publish("subnodesync/app-h/app-h-1/register", as_app_h).await;
    eventually("both claims rejected", || engine.stats().rejected == 2).await;

    let instances = engine.instances();
    let owned: Vec<_> = instances.iter().filter(|i| i.instance_id == "app-h-1").collect();
    assert_eq!(owned.len(), 1, "{owned:?}");
    assert_eq!((owned[0].node_name.as_str(), owned[0].version.as_str()), ("app", "1.0"));
    engine.shutdown().await.expect("everything written");
}

/// Anyone may publish on the desired-state topics: a document that breaks PROTOCOL.md §15.1 is
/// counted and changes nothing, and the engine's next document builds on the last valid one,
/// under a version above every one it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_desired_document_is_counted_and_the_next_one_builds_on_the_last_valid() {
    use subnodesync_engine::{SettingValue, Target};

    let broker = Broker::start();
    let client = subnodesync_testkit::Engine::connect(broker.port(), &[]).await;
    let engine = Engine::start(engine_config(&broker.url(), "desired")).await.expect("engine starts");
    assert!(engine.wait_synced(WAIT).await);
    let topic = "subnodesync/app/desired";
    client.publish_retained(topic, r#"{"version":9000000000000,"settings":{"a":1}}"#).await;
    let version = |engine: &Engine| engine.desired_state(&Target::parse("app-h-1")).first().map(|s| s.desired.version);
    client.publish_retained("subnodesync/app/app-h-1/register", REGISTER).await;
    eventually("the document ingested", || version(&engine) == Some(9_000_000_000_000)).await;
    for bad in [&b"{"[..], br#"{"version":9000000000001,"settings":{"a":{"nested":1}}}"#, br#"{"settings":{}}"#] {
        client.publish_retained(topic, bad.to_vec()).await;
    }
    eventually("three bad documents counted", || engine.stats().rejected == 3).await;
    assert_eq!(version(&engine), Some(9_000_000_000_000));

    let b = SettingValue::from_cli("b", "two").expect("a value");
    let published = engine.set_desired(&Target::Node("app".into()), &[("b".into(), b)]).await.expect("published");
    assert_eq!(published.document.version, 9_000_000_000_001);
    assert_eq!(published.document.settings.keys().collect::<Vec<_>>(), ["a", "b"]);
    engine.shutdown().await.expect("everything written");
}
