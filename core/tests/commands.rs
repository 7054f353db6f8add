//! Control commands as the engine sees them: every command gets exactly one final result.

mod common;

use common::*;
use serde_json::json;
use subnodesync_core::{CommandError, JsonError, NodeError, Outcome};
use subnodesync_fixtures::wire::Publish;

#[test]
fn ping_is_answered_by_the_core_with_a_full_result() {
    let mut t = Script::connected(config());
    let r = t.command_result("ping", "req-123", "{}");
    assert!(!r.retain);
    assert_eq!(
        r.payload,
        r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-host-42","request_id":"req-123","command":"ping","success":true,"message":"pong","data":null,"state":"done"}"#
    );
}

#[test]
fn status_reports_uptime_and_the_heartbeat_interval() {
    let mut t = Script::connected(config());
    t.advance(secs(5));
    let v = t.command_result("status", "s1", "{}").json();
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["status"], "running");
    assert_eq!(v["data"]["uptime"], 5);
    assert_eq!(v["data"]["heartbeat_interval"], 30);
}

#[test]
fn reregister_publishes_the_register_message_again() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("reregister", "rr", "{}"));
    t.expect_packet(Sent::Puback(7));
    let reg = t.expect_publish("register");
    assert!(reg.retain);
    assert_eq!(t.expect_publish("result").json()["success"], true);
}

#[test]
fn set_heartbeat_interval_reschedules_heartbeats_and_rejects_bad_values() {
    let mut t = Script::connected(config());
    let v = t.command_result("set_heartbeat_interval", "h1", r#"{"seconds": 5}"#).json();
    assert_eq!((v["success"].clone(), v["data"].clone()), (json!(true), json!({"seconds": 5})));
    assert_eq!(t.node.heartbeat_interval(), secs(5));
    t.advance(secs(5));
    t.expect_event(Out::HeartbeatDue);
    for (i, bad) in [r#"{"seconds": 0}"#, r#"{"seconds": "5"}"#, "{}", r#"{"seconds": 86401}"#].iter().enumerate() {
        let v = t.command_result("set_heartbeat_interval", &format!("bad{i}"), bad).json();
        assert_eq!(v["success"], false, "{bad}");
        assert_eq!(v["message"], "invalid or missing parameter `seconds`");
    }
    assert_eq!(t.node.heartbeat_interval(), secs(5));
}

#[test]
fn stop_and_restart_are_answered_then_handed_to_the_adapter() {
    let mut t = Script::connected(config());
    assert_eq!(t.command_result("restart", "x1", "{}").json()["message"], "restarting");
    t.expect_event(Out::RestartRequested);
    assert_eq!(t.command_result("stop", "x2", "{}").json()["message"], "stopping");
    t.expect_event(Out::StopRequested);
}

#[test]
fn unknown_commands_fail_with_success_false() {
    let mut t = Script::connected(config());
    let v = t.command_result("format_disk", "u1", "{}").json();
    assert_eq!((v["success"].clone(), v["message"].clone()), (json!(false), json!("unknown command")));
    assert_eq!(v["command"], "format_disk");
}

#[test]
fn a_malformed_command_with_a_readable_request_id_gets_a_failed_result_naming_the_problem() {
    let mut t = Script::connected(config());
    for (payload, message) in [
        (r#"{"request_id":"m1"}"#, "malformed command: missing field `command`"),
        (r#"{"request_id":"m2","command":["x"]}"#, "malformed command: field `command` has the wrong type"),
        (
            r#"{"request_id":"m3","command":"ping","parameters":"x"}"#,
            "malformed command: field `parameters` has the wrong type",
        ),
        (
            r#"{"request_id":"m4","command":"slow","parameters":{"timeout_ms":0}}"#,
            "invalid or missing parameter `timeout_ms`",
        ),
    ] {
        t.broker_sends(&broker::publish(&format!("{BASE}/control"), payload.as_bytes(), Some(9)));
        t.expect_packet(Sent::Puback(9));
        let v = t.expect_publish("result").json();
        assert_eq!(v["success"], false);
        assert_eq!(v["message"], message, "{payload}");
        // The command name is echoed whenever it could be read.
        let readable =
            serde_json::from_str::<serde_json::Value>(payload).unwrap()["command"].as_str().map(String::from);
        assert_eq!(v["command"], readable.unwrap_or_default(), "{payload}");
    }
    assert!(t.node.is_connected());
}

#[test]
fn a_command_without_a_readable_request_id_is_acked_and_reported_to_the_application() {
    let mut t = Script::connected(config());
    for (payload, error) in [
        (&b"not json"[..], CommandError::Malformed(JsonError::Syntax(0))),
        (br#"{"command":"ping"}"#, CommandError::MissingField("request_id")),
        (br#"{"command":"ping","request_id":7}"#, CommandError::WrongType("request_id")),
        (b"\xff\xfe", CommandError::Malformed(JsonError::Syntax(0))),
    ] {
        t.broker_sends(&broker::publish(&format!("{BASE}/control"), payload, Some(3)));
        t.expect_packet(Sent::Puback(3));
        t.expect_event(Out::CommandRejected(error));
        t.expect_nothing();
    }
    assert_eq!(t.node.stats().commands_rejected, 4);
    // The connection is still good.
    assert_eq!(t.command_result("ping", "after", "{}").json()["success"], true);
}

#[test]
fn application_commands_run_with_progress_and_one_final_result() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("echo", "e1", r#"{"text": "hi", "n": [1, 2]}"#));
    t.expect_packet(Sent::Puback(7));
    let Out::Command { id, name, request_id, parameters, deadline } = t.next() else { panic!() };
    assert_eq!((name.as_str(), request_id.as_str()), ("echo", "e1"));
    assert_eq!(parameters, r#"{"text": "hi", "n": [1, 2]}"#);
    assert_eq!(deadline, None);
    t.node.progress(t.now, id, "half way", Some(br#"{"pct": 50}"#)).unwrap();
    t.drain();
    let p = t.expect_publish("result").json();
    assert_eq!((p["state"].clone(), p["data"].clone()), (json!("in_progress"), json!({"pct": 50})));
    t.node.complete(t.now, id, Outcome::ok("echoed").with_data(parameters.as_bytes())).unwrap();
    t.drain();
    let r = t.expect_publish("result").json();
    assert_eq!(r["state"], "done");
    assert_eq!(r["data"], json!({"text": "hi", "n": [1, 2]}));
    assert_eq!(t.node.complete(t.now, id, Outcome::ok("again")), Err(NodeError::UnknownRequest));
}

#[test]
fn a_result_that_cannot_be_sent_is_refused_and_replaced_by_a_failure_naming_why() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("echo", "e1", "{}"));
    t.expect_packet(Sent::Puback(7));
    let Out::Command { id, .. } = t.next() else { panic!() };
    assert_eq!(
        t.node.complete(t.now, id, Outcome::ok("echoed").with_data(b"{not json")),
        Err(NodeError::InvalidData(JsonError::Syntax(1))),
    );
    t.drain();
    let r = t.expect_publish("result").json();
    assert_eq!((r["success"].clone(), r["state"].clone()), (json!(false), json!("done")));
    assert_eq!(r["message"], "result could not be sent: result data: invalid json at byte 1");
    assert_eq!(t.node.complete(t.now, id, Outcome::ok("again")), Err(NodeError::UnknownRequest));
}

#[test]
fn a_command_past_its_deadline_gets_a_timed_out_result_and_the_late_completion_is_ignored() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("slow", "t1", r#"{"timeout_ms": 1500}"#));
    t.expect_packet(Sent::Puback(7));
    let Out::Command { id, deadline, .. } = t.next() else { panic!() };
    assert_eq!(deadline, Some(t.now + ms(1500)));
    t.advance(ms(1499));
    t.expect_nothing();
    t.advance(ms(1));
    let v = t.expect_publish("result").json();
    assert_eq!((v["success"].clone(), v["message"].clone()), (json!(false), json!("timed out after 1500 ms")));
    t.expect_event(Out::CommandTimedOut(id));
    assert_eq!(t.node.complete(t.now, id, Outcome::ok("late")), Err(NodeError::UnknownRequest));
    t.drain();
    t.expect_nothing();
}

#[test]
fn a_redelivered_command_runs_once_and_its_result_is_published_again() {
    let mut t = Script::connected(config());
    let first = t.command_result("ping", "dup-1", "{}");
    t.ack(&first);
    t.broker_sends(&broker::command("ping", "dup-1", "{}"));
    t.expect_packet(Sent::Puback(7));
    let again = t.expect_publish("result");
    assert_eq!(again.payload, first.payload, "the original result, byte for byte");
    assert_ne!(again.pid, first.pid);
    t.expect_event(Out::DuplicateCommand(true));
    // While an application command runs, a redelivery is acknowledged and nothing else.
    t.broker_sends(&broker::command("echo", "dup-2", "{}"));
    t.expect_packet(Sent::Puback(7));
    let Out::Command { .. } = t.next() else { panic!() };
    t.broker_sends(&broker::command("echo", "dup-2", "{}"));
    t.expect_packet(Sent::Puback(7));
    t.expect_event(Out::DuplicateCommand(false));
    t.expect_nothing();
    assert_eq!(t.node.stats().duplicate_commands, 2);
}

#[test]
fn the_last_32_request_ids_are_remembered() {
    let mut t = Script::connected(config());
    for i in 0..33 {
        let r = t.command_result("ping", &format!("id-{i}"), "{}");
        t.ack(&r);
    }
    // id-0 was forgotten (33 ids later): it runs again.
    assert_eq!(t.command_result("ping", "id-0", "{}").json()["request_id"], "id-0");
    // id-2 is still known but its result has left the outbox: acknowledged, not run again.
    t.broker_sends(&broker::command("ping", "id-2", "{}"));
    t.expect_packet(Sent::Puback(7));
    t.expect_event(Out::DuplicateCommand(false));
    t.expect_nothing();
    // id-32 is known and its result is still held: published again.
    t.broker_sends(&broker::command("ping", "id-32", "{}"));
    t.expect_packet(Sent::Puback(7));
    assert_eq!(t.expect_publish("result").json()["request_id"], "id-32");
    t.expect_event(Out::DuplicateCommand(true));
}

#[test]
fn broadcast_commands_reach_every_instance_of_the_name() {
    let mut t = Script::connected(config());
    let payload = br#"{"command":"ping","timestamp":"2024-01-01T12:00:00Z","request_id":"b1","parameters":{}}"#;
    t.broker_sends(&broker::publish(BROADCAST, payload, Some(11)));
    t.expect_packet(Sent::Puback(11));
    assert_eq!(t.expect_publish("result").json()["request_id"], "b1");
    // Another node's topic is acknowledged and ignored.
    t.broker_sends(&broker::publish("subnodesync/other/control", payload, Some(12)));
    t.expect_packet(Sent::Puback(12));
    t.expect_nothing();
}

#[test]
fn a_command_larger_than_the_receive_buffer_is_skipped_acked_and_reported() {
    let mut t = Script::with_buffers(config(), 256, 1024, 4096);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.settle_connection();
    let big = format!(r#"{{"command":"echo","request_id":"big","parameters":{{"x":"{}"}}}}"#, "y".repeat(1000));
    let mut stream = broker::publish(&format!("{BASE}/control"), big.as_bytes(), Some(21));
    let size = stream.len();
    stream.extend(broker::command("ping", "small", "{}"));
    // Arrives in awkward pieces, the big packet's end and the next packet sharing a read.
    for chunk in stream.chunks(97) {
        t.broker_sends(chunk);
    }
    t.expect_packet(Sent::Puback(21));
    t.expect_event(Out::PacketTooLarge(size, true));
    t.expect_packet(Sent::Puback(7));
    assert_eq!(t.expect_publish("result").json()["request_id"], "small");
    assert_eq!(t.node.stats().packets_too_large, 1);
}

#[test]
fn many_commands_in_one_read_are_all_answered() {
    let mut t = Script::connected(config());
    let mut stream = Vec::new();
    // As many as the outbox holds unacknowledged (4 KiB / ~270 bytes a result).
    for i in 0..12 {
        stream.extend(broker::command("ping", &format!("burst-{i}"), "{}"));
    }
    t.broker_sends(&stream);
    let mut ids = Vec::new();
    while let Some(out) = t.out.pop_front() {
        match out {
            Out::Packet(Sent::Puback(7)) => {}
            Out::Packet(Sent::Publish(p)) => {
                ids.push(p.json()["request_id"].as_str().unwrap().to_string());
                t.ack(&p);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids, (0..12).map(|i| format!("burst-{i}")).collect::<Vec<_>>());
}

#[test]
fn commands_that_find_the_queues_full_are_answered_without_waiting_for_more_input() {
    let mut t = Script::connected(config());
    let burst: Vec<u8> = (0..12).flat_map(|i| broker::command("ping", &format!("b{i}"), "{}")).collect();
    // One read holds twelve QoS 1 commands: more PUBACKs than the node queues at once.
    let taken = t.node.handle_input(t.now, &burst);
    assert_eq!(taken, burst.len(), "the bytes fit the receive buffer");
    t.drain();
    assert_eq!(t.node.poll_timeout(), Some(t.now), "packets are left in the buffer: the node asks to go on now");
    // As an adapter's loop does: drain, and go on while the node says "now".
    let mut turns = 0;
    while t.node.poll_timeout() <= Some(t.now) {
        t.tick();
        turns += 1;
        assert!(turns < 10, "the node keeps asking for now");
    }
    let answered =
        t.out.iter().filter(|o| matches!(o, Out::Packet(Sent::Publish(p)) if p.topic.ends_with("/result"))).count();
    assert_eq!(answered, 12, "every command answered, with no further input");
}

#[test]
fn a_retained_control_message_is_acknowledged_but_neither_run_nor_answered() {
    let mut t = Script::connected(config());
    let topic = format!("{BASE}/control");
    for name in ["restart", "stop", "echo", "ping"] {
        let payload = subnodesync_fixtures::wire::command_json(name, &format!("old-{name}"), "{}");
        let retained = Publish { retain: true, ..Publish::new(&topic, payload.as_bytes(), Some(9)) };
        t.broker_sends(&retained.encode());
        t.expect_packet(Sent::Puback(9));
        t.expect_event(Out::RetainedCommandIgnored);
        t.expect_nothing();
    }
    assert_eq!(t.node.stats().retained_commands_ignored, 4);
    // The same order delivered live (RETAIN 0) runs, once.
    let r = t.command_result("ping", "old-ping", "{}");
    assert_eq!(r.json()["message"], "pong");
}

#[test]
fn cancel_ends_a_running_command_with_a_failed_result_then_answers() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("slow", "long-1", "{}"));
    t.expect_packet(Sent::Puback(7));
    let Out::Command { id, .. } = t.next() else { panic!() };
    // The cancelled command's own result goes first.
    let cancelled = t.command_result("cancel", "c-1", r#"{"request_id":"long-1"}"#).json();
    assert_eq!(cancelled["request_id"], "long-1");
    assert_eq!(
        (cancelled["success"].clone(), cancelled["message"].clone()),
        (json!(false), json!("cancelled by request `c-1`"))
    );
    let answer = t.expect_publish("result").json();
    assert_eq!(answer["request_id"], "c-1");
    assert_eq!((answer["success"].clone(), answer["message"].clone()), (json!(true), json!("cancelled")));
    assert_eq!(answer["data"], json!({"request_id": "long-1"}));
    t.expect_event(Out::CommandCancelled(id));
    assert_eq!(t.node.complete(t.now, id, Outcome::ok("late")), Err(NodeError::UnknownRequest));
    // Nothing left to cancel, and a cancel without its parameter, fail with the reason.
    let again = t.command_result("cancel", "c-2", r#"{"request_id":"long-1"}"#).json();
    assert_eq!(
        (again["success"].clone(), again["message"].clone()),
        (json!(false), json!("no running command has request_id `long-1`"))
    );
    let bad = t.command_result("cancel", "c-3", r#"{"request_id":5}"#).json();
    assert_eq!(bad["message"], "invalid or missing parameter `request_id`");
    t.drain();
    t.expect_nothing();
}
