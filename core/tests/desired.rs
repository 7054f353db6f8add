//! Desired state (PROTOCOL.md §15) as the engine sees it: retained documents in, one retained
//! report out after every change, nothing on a replay, and the report cleared by a clean stop.

mod common;

use common::*;
use serde_json::json;
use subnodesync_core::{NodeError, Rejection};
use subnodesync_fixtures::wire::Publish;

const INSTANCE_DESIRED: &str = "subnodesync/app/app-host-42/desired";

/// A retained desired document, delivered as a broker hands it to a new subscription.
fn desired(topic: &str, version: u64, settings: &str, pid: u16) -> Vec<u8> {
    let payload = format!(r#"{{"version":{version},"timestamp":"2026-12-02T12:00:00Z","settings":{settings}}}"#);
    Publish { retain: true, ..Publish::new(topic, payload.as_bytes(), Some(pid)) }.encode()
}

/// Applies with an application that knows `log_level` (one of debug, info) and nothing else.
fn apply(t: &mut Script) -> Pub {
    let applied = t.node.apply_desired(t.now, |key, value| match (key, value.as_escaped_str()) {
        ("log_level", Some("debug" | "info")) => Ok(()),
        ("log_level", _) => Err(Rejection::new("one of \"debug\", \"info\"")),
        _ => Err("unknown setting".into()),
    });
    assert_eq!(applied, Ok(()));
    t.drain();
    let report = t.expect_publish("reported");
    assert!(report.retain, "the report is state: retained");
    report
}

#[test]
fn a_name_document_is_applied_and_reported_and_its_replay_changes_nothing() {
    let mut t = Script::connected(config());
    t.broker_sends(&desired(NAME_DESIRED, 7, r#"{"heartbeat_interval":10,"log_level":"debug","color":"red"}"#, 3));
    t.expect_packet(Sent::Puback(3));
    t.expect_event(Out::DesiredChanged(7));
    t.expect_nothing();
    let report = apply(&mut t);
    assert_eq!(
        report.payload,
        r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-host-42","version":7,"settings":{"heartbeat_interval":10,"log_level":"debug"},"rejected":{"color":"unknown setting"},"error":null}"#
    );
    t.ack(&report);
    assert_eq!(t.node.heartbeat_interval(), secs(10));
    // The next heartbeat is one new interval away, as after `set_heartbeat_interval`.
    t.advance(secs(10));
    t.expect_event(Out::HeartbeatDue);
    let hb = t.heartbeat();
    t.ack(&hb);
    // After a reconnect the broker replays the retained document: nothing to do.
    t.node.handle_disconnected(t.now);
    t.drain();
    t.out.clear();
    t.advance(secs(2));
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(true, 0));
    t.expect_event(Out::Connected(true));
    let pid = t.expect_subscribe();
    t.broker_sends(&broker::suback(pid, &[1, 1, 1, 1]));
    for kind in ["register", "status"] {
        let p = t.expect_publish(kind);
        t.ack(&p);
    }
    t.broker_sends(&desired(NAME_DESIRED, 7, r#"{"heartbeat_interval":10}"#, 4));
    t.expect_packet(Sent::Puback(4));
    t.expect_nothing();
}

#[test]
fn the_instance_document_overrides_the_name_key_by_key_and_the_greater_version_wins() {
    let mut t = Script::connected(config());
    t.broker_sends(&desired(NAME_DESIRED, 5, r#"{"log_level":"info","heartbeat_interval":20}"#, 3));
    t.broker_sends(&desired(INSTANCE_DESIRED, 6, r#"{"log_level":"debug"}"#, 4));
    t.expect_packet(Sent::Puback(3));
    t.expect_packet(Sent::Puback(4));
    // One event for both: the application applies the latest merge once.
    t.expect_event(Out::DesiredChanged(5));
    t.expect_nothing();
    let v = apply(&mut t).json();
    assert_eq!(v["version"], 6);
    assert_eq!(v["settings"], json!({"log_level": "debug", "heartbeat_interval": 20}));
    // A newer name document changes what the instance does not override.
    t.broker_sends(&desired(NAME_DESIRED, 8, r#"{"log_level":"info"}"#, 5));
    t.expect_packet(Sent::Puback(5));
    t.expect_event(Out::DesiredChanged(8));
    let v = apply(&mut t).json();
    assert_eq!((v["version"].clone(), v["settings"].clone()), (json!(8), json!({"log_level": "debug"})));
    assert_eq!(t.node.heartbeat_interval(), secs(30), "no document names it: the configured interval again");
}

#[test]
fn a_bad_document_is_refused_whole_and_the_report_says_why() {
    let mut t = Script::connected(config());
    t.broker_sends(&desired(NAME_DESIRED, 1, r#"{"log_level":"info"}"#, 3));
    t.expect_packet(Sent::Puback(3));
    t.expect_event(Out::DesiredChanged(1));
    let report = apply(&mut t);
    t.ack(&report);
    t.broker_sends(&desired(INSTANCE_DESIRED, 2, r#"{"log_level":{"nested":true}}"#, 4));
    t.expect_packet(Sent::Puback(4));
    t.expect_event(Out::DesiredChanged(1));
    let v = apply(&mut t).json();
    assert_eq!(v["version"], 1, "what it had is kept");
    assert_eq!(v["settings"], json!({"log_level": "info"}));
    assert_eq!(v["error"], "instance: invalid desired document: a setting value is an object or an array");
    // A value the application refuses is a rejection, not an error.
    t.broker_sends(&desired(INSTANCE_DESIRED, 3, r#"{"log_level":"loud"}"#, 5));
    t.expect_packet(Sent::Puback(5));
    t.expect_event(Out::DesiredChanged(3));
    let v = apply(&mut t).json();
    assert_eq!(v["settings"], json!({}));
    assert_eq!(v["rejected"], json!({"log_level": "one of \"debug\", \"info\""}));
    assert_eq!(v["error"], json!(null));
}

#[test]
fn a_clean_stop_deletes_the_report_after_the_register() {
    let mut t = Script::connected(config());
    t.broker_sends(&desired(NAME_DESIRED, 1, r#"{}"#, 3));
    t.expect_packet(Sent::Puback(3));
    t.expect_event(Out::DesiredChanged(1));
    let report = apply(&mut t);
    t.ack(&report);
    t.node.stop(t.now);
    t.drain();
    let offline = t.expect_publish("status");
    let register = t.expect_publish("register");
    let cleared = t.expect_publish("reported");
    assert!(cleared.retain && cleared.payload.is_empty(), "an empty retained message deletes the report");
    for p in [&offline, &register, &cleared] {
        t.ack(p);
    }
    t.expect_packet(Sent::Disconnect);
    assert_eq!(t.node.apply_desired(t.now, |_, _| Ok(())), Err(NodeError::Stopped));
}

#[test]
fn a_node_that_never_reported_leaves_no_report_to_delete() {
    let mut t = Script::connected(config());
    t.node.stop(t.now);
    t.drain();
    t.expect_publish("status");
    t.expect_publish("register");
    t.expect_nothing();
}

#[test]
fn desired_documents_for_other_instances_are_not_ours() {
    let mut t = Script::connected(config());
    // Same name, an instance id that starts with ours: not our topic, never subscribed to.
    t.broker_sends(&desired("subnodesync/app/app-host-421/desired", 1, "{}", 3));
    t.expect_packet(Sent::Puback(3));
    t.expect_nothing();
}
