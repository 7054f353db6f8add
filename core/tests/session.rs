//! The MQTT session as the broker sees it: connect, subscribe, keep-alive, QoS 1, reconnect, stop.

mod common;

use common::*;
use serde_json::json;
use subnodesync_core::{
    ConnectRefused, ControlTopic, DecodeError, DisconnectReason, Event, MessageKind, Metrics, NodeError, Output,
};

#[test]
fn connect_carries_instance_id_credentials_and_a_retained_lost_will() {
    let mut t = Script::new(Config { username: Some("fleet"), password: Some(b"s3cret"), ..config() });
    t.expect(Out::Open);
    let connect = t.open();
    let Sent::Connect {
        client_id,
        keep_alive,
        clean_session,
        username,
        password,
        will_topic,
        will_payload,
        will_retain,
    } = connect
    else {
        unreachable!()
    };
    assert_eq!(client_id, "app-host-42");
    assert_eq!(keep_alive, 60);
    assert!(!clean_session, "the broker must keep our session and queued commands");
    assert_eq!(username.as_deref(), Some("fleet"));
    assert_eq!(password.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(will_topic, format!("{BASE}/status"));
    assert!(will_retain);
    assert_eq!(
        will_payload,
        r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-host-42","status":"lost"}"#
    );
}

use subnodesync_core::Config;

#[test]
fn after_connack_the_node_subscribes_registers_and_goes_online_in_that_order() {
    let mut t = Script::new(config());
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.expect_event(Out::Connected(false));
    t.expect_subscribe();
    let register = t.expect_publish("register");
    assert!(register.retain);
    let r = register.json();
    assert_eq!(r["node_name"], "app");
    assert_eq!(r["instance_id"], "app-host-42");
    let status = t.expect_publish("status");
    assert!(status.retain);
    assert_eq!(status.json()["status"], "online");
    t.expect_nothing();
}

#[test]
fn register_message_has_every_field_of_the_design_with_its_json_type() {
    let cfg = Config {
        capabilities: &["echo"],
        metadata: &[("region", "eu")],
        node_version: subnodesync_core::NodeVersion {
            git_version: "v1.0.0",
            git_commit: "abc123",
            build_date: "2024-01-01",
            go_version: "rustc 1.95.0",
            platform: "linux/amd64",
        },
        ..config()
    };
    let mut t = Script::new(cfg);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.expect_event(Out::Connected(false));
    t.expect_subscribe();
    let register = t.expect_publish("register").payload;
    // The same bytes are available for registering out of band (HTTP).
    let mut buf = [0u8; 1024];
    let n = t.node.register_json(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), register);
    assert_eq!(
        register,
        concat!(
            r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-host-42","version":"1.0.0","#,
            r#""pid":42,"start_time":"2024-01-01T12:00:00Z","capabilities":["mqtt_control","heartbeat","echo"],"#,
            r#""metadata":{"hostname":"host","region":"eu"},"node_version":{"git_version":"v1.0.0","git_commit":"abc123","#,
            r#""build_date":"2024-01-01","go_version":"rustc 1.95.0","platform":"linux/amd64"}}"#
        )
    );
}

#[test]
fn connack_refusal_closes_the_transport_and_backs_off() {
    let mut t = Script::new(config());
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 4));
    t.expect(Out::Close);
    let Out::Disconnected(reason, retry_in) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::Refused(ConnectRefused::BadUsernamePassword));
    assert!(retry_in >= secs(1) && retry_in <= secs(2), "first delay within [min, 2·min]: {retry_in:?}");
    t.expect_nothing();
    t.advance(retry_in - ms(1));
    t.expect_nothing();
    t.advance(ms(1));
    t.expect(Out::Open);
}

#[test]
fn a_refused_subscription_is_an_event_not_silence() {
    let mut t = Script::new(config());
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.expect_event(Out::Connected(false));
    let pid = t.expect_subscribe();
    t.broker_sends(&broker::suback(pid, &[1, 0x80, 1, 0x80]));
    t.expect_event(Out::SubscribeRefused(ControlTopic::Broadcast));
    t.expect_event(Out::SubscribeRefused(ControlTopic::NameDesired));
    assert!(t.node.is_connected(), "heartbeats still flow without the broadcast topic");
}

#[test]
fn heartbeat_is_published_every_interval_with_the_sampled_metrics() {
    let mut t = Script::connected(config());
    for _ in 0..3 {
        t.advance(secs(29));
        t.expect_nothing();
        t.broker_sends(&broker::pingresp()); // keep the broker side chatty; no effect on heartbeats
        t.advance(secs(1));
        t.expect_event(Out::HeartbeatDue);
        let custom = [("queue_depth", subnodesync_core::Metric::Int(3))];
        let metrics = Metrics { cpu_centipercent: 1234, memory_mb: 64, threads: 9, custom: &custom };
        assert_eq!(t.node.send_heartbeat(t.now, &metrics), Ok(true));
        t.drain();
        let hb = t.expect_publish("heartbeat");
        assert!(!hb.retain);
        let v = hb.json();
        assert_eq!(v["status"], "running");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["hostname"], "host");
        assert_eq!(v["version"], "1.0.0");
        assert!(v["uptime"].is_u64());
        assert_eq!(
            v["metrics"],
            json!({"process_cpu_usage_percent": "12.34", "process_memory_usage_mb": 64, "process_goroutine_count": 9, "queue_depth": 3})
        );
        t.ack(&hb);
    }
}

#[test]
fn an_idle_connection_pings_and_a_silent_broker_is_declared_dead_at_one_and_a_half_keep_alives() {
    let mut t = Script::connected(Config { heartbeat_interval: secs(3600), ..config() });
    let start = t.now;
    t.advance(secs(60));
    t.expect_packet(Sent::Pingreq);
    t.expect_nothing();
    t.broker_sends(&broker::pingresp());
    // Broker answered: the next probe is a full keep-alive later.
    t.advance(secs(60));
    t.expect_packet(Sent::Pingreq);
    // Now the broker goes silent (half-open): dead 90 s after the last byte it sent.
    t.advance(secs(29));
    t.expect_nothing();
    t.advance(secs(1));
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::KeepAliveTimeout);
    assert_eq!(t.now - start, secs(150));
}

#[test]
fn unacknowledged_publishes_are_resent_with_dup_after_the_timeout_and_after_reconnect() {
    let mut t = Script::connected(config());
    let r = t.command_result("ping", "r1", "{}");
    assert!(!r.dup);
    t.advance(secs(19));
    t.expect_nothing();
    t.advance(secs(1));
    let again = t.expect_publish("result");
    assert!(again.dup);
    assert_eq!((again.pid, &again.payload), (r.pid, &r.payload));
    // Lose the connection before the PUBACK: the result survives and is resent after register.
    t.transport_lost();
    let Out::Disconnected(DisconnectReason::Transport, retry_in) = t.next() else { panic!() };
    t.advance(retry_in);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(true, 0));
    t.expect_event(Out::Connected(true));
    t.expect_subscribe();
    t.expect_publish("register");
    t.expect_publish("status");
    let resent = t.expect_publish("result");
    assert!(resent.dup);
    assert_eq!(resent.payload, r.payload);
}

#[test]
fn heartbeats_are_never_queued_while_offline_but_results_are() {
    let mut t = Script::connected(config());
    t.transport_lost();
    t.out.clear();
    let metrics = Metrics::default();
    assert_eq!(t.node.send_heartbeat(t.now, &metrics), Ok(false));
    assert_eq!(t.node.queued(MessageKind::Heartbeat), 0);
    // A heartbeat in flight when the connection drops is dropped too.
    let mut t = Script::connected(config());
    t.advance(secs(30));
    t.expect_event(Out::HeartbeatDue);
    t.heartbeat();
    t.transport_lost();
    assert_eq!(t.node.queued(MessageKind::Heartbeat), 0);
}

#[test]
fn a_result_too_large_for_the_outbox_drops_nothing_and_what_its_failure_displaces_is_counted() {
    // 800 bytes of outbox: three results of about 220 bytes leave too little for the failure
    // (about 275 bytes) that replaces a fourth one, unless one of them goes.
    let mut t = Script::with_buffers(Config { commands: &["echo"], ..config() }, 2048, 1024, 800);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.settle_connection();
    let mut ids = Vec::new();
    for i in 0..4 {
        t.broker_sends(&broker::command("echo", &format!("q{i}"), "{}"));
        t.expect_packet(Sent::Puback(7));
        let Out::Command { id, .. } = t.next() else { panic!() };
        ids.push(id);
    }
    t.transport_lost();
    t.out.clear();
    for &id in &ids[..3] {
        t.node.complete(t.now, id, subnodesync_core::Outcome::ok("done")).unwrap();
    }
    t.drain();
    t.expect_nothing();
    assert_eq!(t.node.queued(MessageKind::Result), 3);
    // Data larger than the whole outbox: refused before anything is dropped for it. The failure
    // sent in its place needs the room of one result, and that one is counted.
    let huge = format!("\"{}\"", "x".repeat(2000));
    let outcome = subnodesync_core::Outcome::ok("done").with_data(huge.as_bytes());
    assert_eq!(t.node.complete(t.now, ids[3], outcome), Err(NodeError::OutboxFull));
    t.drain();
    t.expect_event(Out::MessagesDropped(0, 1));
    t.expect_nothing();
    assert_eq!(t.node.stats().results_dropped, 1);
    assert_eq!(t.node.queued(MessageKind::Result), 3);
}

#[test]
fn a_built_in_answer_with_no_room_in_the_outbox_is_counted_as_dropped() {
    // Room for the register and the status while both wait for their PUBACKs, and no more:
    // neither may be dropped, so `ping`'s answer has nowhere to go. Their size, measured first:
    // a packet takes its payload, its topic and at most 9 bytes of framing.
    let mut probe = Script::new(config());
    probe.expect(Out::Open);
    probe.open();
    probe.broker_sends(&broker::connack(false, 0));
    probe.expect_event(Out::Connected(false));
    let pid = probe.expect_subscribe();
    probe.broker_sends(&broker::suback(pid, &[1, 1, 1, 1]));
    let room = |p: Pub| p.payload.len() + p.topic.len() + 9;
    let outbox = room(probe.expect_publish("register")) + room(probe.expect_publish("status"));

    let mut t = Script::with_buffers(config(), 2048, 1024, outbox);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.expect_event(Out::Connected(false));
    let pid = t.expect_subscribe();
    t.broker_sends(&broker::suback(pid, &[1, 1, 1, 1]));
    t.expect_publish("register");
    t.expect_publish("status");
    t.broker_sends(&broker::command("ping", "q1", "{}"));
    t.expect_packet(Sent::Puback(7));
    t.expect_event(Out::MessagesDropped(0, 1));
    assert_eq!(t.node.stats().results_dropped, 1);
    assert_eq!(t.node.queued(MessageKind::Result), 0);
}

#[test]
fn offline_outbox_overflow_drops_the_oldest_droppable_message_and_counts_it() {
    // 1100 bytes of outbox: four results (about 275 bytes each), or register, status and two.
    let mut t = Script::with_buffers(Config { commands: &["echo"], ..config() }, 2048, 1024, 1100);
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.settle_connection();
    // The app's commands run while the link is up, then the link drops and they finish offline.
    let mut ids = Vec::new();
    for i in 0..6 {
        t.broker_sends(&broker::command("echo", &format!("q{i}"), "{}"));
        t.expect_packet(Sent::Puback(7));
        let Out::Command { id, .. } = t.next() else { panic!() };
        ids.push(id);
    }
    t.transport_lost();
    let retry = t.out.iter().find_map(|o| if let Out::Disconnected(_, d) = o { Some(*d) } else { None });
    t.out.clear();
    for id in ids {
        t.node.complete(t.now, id, subnodesync_core::Outcome::ok("done")).unwrap();
    }
    t.drain();
    let dropped: u32 = t.out.iter().map(|o| if let Out::MessagesDropped(0, r) = o { *r } else { 0 }).sum();
    assert!(dropped > 0, "the outbox is too small for six results: {:?}", t.out);
    assert_eq!(t.node.stats().results_dropped, dropped);
    assert_eq!(t.node.queued(MessageKind::Result) as u32 + dropped, 6);
    // Once the broker is back, register and status come first (they may displace more results),
    // then the newest results that survived, oldest of them first.
    t.out.clear();
    t.advance(retry.expect("a Disconnected event"));
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(true, 0));
    let more: u32 = t.out.iter().map(|o| if let Out::MessagesDropped(0, r) = o { *r } else { 0 }).sum();
    t.out.retain(|o| !matches!(o, Out::MessagesDropped(..)));
    t.expect_event(Out::Connected(true));
    let kept = 6 - dropped - more;
    assert!(kept > 0);
    assert_eq!(t.node.stats().results_dropped, dropped + more);
    t.expect_subscribe();
    t.expect_publish("register");
    t.expect_publish("status");
    let first_kept = t.expect_publish("result");
    assert_eq!(first_kept.json()["request_id"], format!("q{}", 6 - kept));
}

#[test]
fn reconnect_delays_grow_with_jitter_within_bounds_while_the_broker_keeps_dropping_us() {
    let mut t = Script::new(config());
    let mut delays = Vec::new();
    for _ in 0..14 {
        t.expect(Out::Open);
        t.open();
        // The broker accepts, then drops us at once (duplicate client id, ACL kick).
        t.broker_sends(&broker::connack(false, 0));
        t.transport_lost();
        let retry = t.out.iter().find_map(|o| if let Out::Disconnected(_, d) = o { Some(*d) } else { None });
        let retry = retry.expect("a Disconnected event");
        delays.push(retry);
        t.out.clear();
        t.advance(retry);
    }
    for (n, d) in delays.iter().enumerate() {
        let ceiling = secs(2u64 << n.min(10)).min(secs(900));
        assert!(*d >= secs(1) && *d <= ceiling, "attempt {n}: {d:?} outside [1 s, {ceiling:?}]");
    }
    assert!(delays[10..].iter().any(|d| *d > secs(64)), "delays must grow: {delays:?}");
    // A connection that stays up past stable_after resets the delay to the minimum.
    t.expect(Out::Open);
    t.open();
    t.broker_sends(&broker::connack(false, 0));
    t.advance(secs(61));
    t.out.clear();
    t.transport_lost();
    let retry = t.out.iter().find_map(|o| if let Out::Disconnected(_, d) = o { Some(*d) } else { None });
    assert!(retry.is_some_and(|d| d <= secs(2)), "back to the first ceiling: {retry:?}");
}

#[test]
fn jitter_spreads_a_fleet_that_loses_its_broker_at_the_same_instant() {
    // 1000 nodes, one seed each, all dropped at once: their first retries must not coincide.
    let mut first_retry_ms: Vec<u64> = (0..1000u64)
        .map(|seed| {
            let (rx, tx, outbox) = (vec![0u8; 512], vec![0u8; 1024], vec![0u8; 2048]);
            let (rx, tx, outbox) = (rx.leak(), tx.leak(), outbox.leak());
            let now = subnodesync_core::Instant::from_secs(0);
            let buffers = subnodesync_core::Buffers::new(rx, tx, outbox);
            let mut node: subnodesync_core::Node = subnodesync_core::Node::new(config(), buffers, seed, now).unwrap();
            node.handle_connected(now);
            node.handle_disconnected(now);
            let mut retry = None;
            while let Some(out) = node.poll_output() {
                if let subnodesync_core::Output::Event(subnodesync_core::Event::Disconnected { retry_in, .. }) = out {
                    retry = Some(retry_in.as_millis());
                }
            }
            retry.unwrap()
        })
        .collect();
    first_retry_ms.sort_unstable();
    assert!(first_retry_ms[0] >= 1000 && first_retry_ms[999] <= 2000);
    // Spread over the whole second: every 100 ms bucket gets roughly its tenth (60..140 of 1000).
    for bucket in 0..10 {
        let n = first_retry_ms.iter().filter(|&&ms| (ms - 1000) / 100 == bucket || (bucket == 9 && ms == 2000)).count();
        assert!((60..=140).contains(&n), "bucket {bucket}: {n} of 1000 nodes");
    }
}

#[test]
fn a_broker_that_never_answers_connect_times_out() {
    let mut t = Script::new(config());
    t.expect(Out::Open);
    t.open();
    t.advance(secs(30));
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::ConnectTimeout);
}

#[test]
fn the_connect_timeout_runs_from_asking_for_the_transport_not_from_getting_it() {
    let mut t = Script::new(config());
    t.expect(Out::Open);
    t.advance(secs(20));
    t.open();
    t.advance(secs(9));
    t.expect_nothing();
    t.advance(secs(1));
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::ConnectTimeout);
}

#[test]
fn a_qos_2_publish_is_a_protocol_violation_since_we_only_subscribe_with_qos_1() {
    let mut t = Script::connected(config());
    let mut qos2 = broker::command("ping", "q2", "{}");
    qos2[0] = 0x34;
    t.broker_sends(&qos2);
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::Protocol(DecodeError::UnexpectedPacket(3)));
    t.expect_nothing();
}

#[test]
fn garbage_from_the_broker_closes_the_connection_with_a_typed_reason() {
    let mut t = Script::connected(config());
    t.broker_sends(&[0x00, 0x00]);
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::Protocol(DecodeError::UnknownPacketType(0)));
    // A CONNECT from the "broker" is a protocol violation too.
    let mut t = Script::connected(config());
    t.broker_sends(&[0x10, 0x00]);
    t.expect(Out::Close);
    let Out::Disconnected(reason, _) = t.next() else { panic!() };
    assert_eq!(reason, DisconnectReason::Protocol(DecodeError::UnexpectedPacket(1)));
}

#[test]
fn clean_stop_publishes_offline_clears_register_then_disconnects() {
    let mut t = Script::connected(config());
    t.node.stop(t.now);
    t.drain();
    let offline = t.expect_publish("status");
    assert!(offline.retain);
    assert_eq!(offline.json()["status"], "offline");
    let clear = t.expect_publish("register");
    assert!(clear.retain);
    assert_eq!(clear.payload, "", "an empty retained message deletes the retained register");
    t.expect_nothing();
    t.ack(&offline);
    t.expect_nothing();
    t.ack(&clear);
    t.expect_packet(Sent::Disconnect);
    t.expect(Out::Close);
    t.expect(Out::Stopped);
    assert_eq!(t.node.poll_timeout(), None);
    assert_eq!(t.node.send_heartbeat(t.now, &Metrics::default()), Err(NodeError::Stopped));
}

#[test]
fn a_result_queued_before_stop_goes_out_before_offline() {
    let mut t = Script::connected(config());
    t.broker_sends(&broker::command("stop", "s1", "{}"));
    t.expect_event(Out::StopRequested);
    // The application stops at once, before draining the result to the transport.
    t.node.stop(t.now);
    t.drain();
    t.expect_packet(Sent::Puback(7));
    assert_eq!(t.expect_publish("result").json()["message"], "stopping");
    assert_eq!(t.expect_publish("status").json()["status"], "offline");
    assert_eq!(t.expect_publish("register").payload, "");
}

/// The engine sends `stop`; the node is stopped the moment the event is polled, in the middle
/// of the drain, as the adapters do. Returns the last topic level of every PUBLISH, in order.
fn stop_on_request(t: &mut Script) -> Vec<String> {
    let stop = broker::command("stop", "s1", "{}");
    assert_eq!(t.node.handle_input(t.now, &stop), stop.len());
    let mut topics = Vec::new();
    while let Some(output) = t.node.poll_output() {
        match output {
            Output::Event(Event::StopRequested) => t.node.stop(t.now),
            Output::Transmit(bytes) => {
                if let Sent::Publish(p) = decode_sent(bytes) {
                    topics.push(p.topic.rsplit('/').next().unwrap_or_default().to_owned());
                }
            }
            Output::Event(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    topics
}

#[test]
fn stop_called_mid_drain_begins_once_everything_before_it_was_polled() {
    let mut t = Script::connected(config());
    let topics = stop_on_request(&mut t);
    assert_eq!(topics, ["result", "status", "register"]);
}

#[test]
fn in_a_full_outbox_the_stop_result_is_sent_before_offline_could_push_it_out() {
    // Room for about two messages: the stop's result, and a heartbeat still in flight, fill it.
    for outbox in [400, 410, 450] {
        let mut t = Script::with_buffers(config(), 2048, 1024, outbox);
        t.expect(Out::Open);
        t.open();
        t.broker_sends(&broker::connack(false, 0));
        // Acknowledge whatever the node sends until it is quiet (in a small outbox, register and
        // status may go one after the other).
        loop {
            let acks: Vec<Vec<u8>> = t
                .out
                .drain(..)
                .filter_map(|o| match o {
                    Out::Packet(Sent::Subscribe { pid, .. }) => Some(broker::suback(pid, &[1, 1, 1, 1])),
                    Out::Packet(Sent::Publish(p)) => p.pid.map(broker::puback),
                    _ => None,
                })
                .collect();
            if acks.is_empty() {
                break;
            }
            for ack in acks {
                t.broker_sends(&ack);
            }
        }
        t.advance(secs(30));
        t.drain();
        t.out.clear();
        let _in_flight = t.heartbeat();
        let topics = stop_on_request(&mut t);
        assert_eq!(topics.first().map(String::as_str), Some("result"), "outbox {outbox}: {topics:?}");
        assert!(topics.contains(&"status".to_owned()), "outbox {outbox}: {topics:?}");
    }
}

#[test]
fn stop_gives_up_waiting_for_acks_after_stop_timeout() {
    let mut t = Script::connected(config());
    t.node.stop(t.now);
    t.drain();
    t.out.clear();
    t.advance(secs(5));
    t.expect_packet(Sent::Disconnect);
    t.expect(Out::Close);
    t.expect(Out::Stopped);
}

#[test]
fn stop_while_offline_ends_at_once() {
    let mut t = Script::connected(config());
    t.transport_lost();
    t.out.clear();
    t.node.stop(t.now);
    t.drain();
    t.expect(Out::Stopped);
    t.expect_nothing();
}
