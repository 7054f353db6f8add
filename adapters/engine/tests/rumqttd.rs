//! The tokio adapter against rumqttd, a second, independent MQTT broker implementation, embedded
//! in the test process on its own loopback port with the settings of `subnode broker`, with the
//! same plain-MQTT engine (rumqttc) as the tokio adapter's `tests/mosquitto.rs`. It lives here,
//! with the embedded broker, so that the tokio adapter does not depend on the engine.
//!
//! rumqttd 0.20 has no way to stop an embedded broker: each test's broker (a router thread and a
//! server thread) lives until the test binary exits. Nothing here restarts a broker for the
//! same reason.
//!
//! Where rumqttd 0.20 departs from MQTT 3.1.1 (seen in its source, `router/routing.rs` and
//! `router/logs.rs`):
//! * any PUBLISH with an empty payload deletes the topic's retained message, with or without the
//!   RETAIN flag (3.1.1 §3.3.1.3: only a retained zero-byte PUBLISH does);
//! * a new subscription gets at most as many retained messages as it has free inflight slots
//!   (`max_inflight_count`); the rest are silently dropped, not sent later.
//!
//! Neither changes what a node does, so the tests below hold as written. The first is pinned by
//! `an_empty_publish_without_retain_also_clears_a_retained_message`; the second is known from the
//! source only.

mod common;

use common::Rumqttd;
use subnodesync_testkit::{assert_no_retained, Engine};

// The broker scenarios the tokio adapter passes on mosquitto, on rumqttd (the restart and TLS
// ones need mosquitto's process and TLS listener).
subnodesync_testkit::broker_scenarios!(subnodesync_tokio::Tokio, Rumqttd;
    register_status_and_heartbeat_carry_every_field,
    ping_and_an_application_command_are_answered,
    an_unknown_command_fails,
    a_duplicate_request_id_is_not_run_again,
    a_broadcast_command_reaches_every_instance,
    a_clean_stop_leaves_status_offline_retained_and_no_register,
);

/// rumqttd deviation: under MQTT 3.1.1 an empty PUBLISH without the RETAIN flag is an ordinary
/// message and leaves the retained one alone; rumqttd 0.20 deletes it. If this starts failing
/// after a rumqttd upgrade, the deviation is gone: drop this test and the note at the top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_publish_without_retain_also_clears_a_retained_message() {
    let broker = Rumqttd::start();
    let mut publisher = Engine::connect(broker.port(), &["deviation/#"]).await;
    publisher.publish_retained("deviation/a", "kept?").await;
    publisher.publish("deviation/a", "").await;
    // Seeing both come back means the broker has handled both.
    publisher.expect("the retained publish", |m| m.text() == "kept?").await;
    publisher.expect("the empty publish", |m| m.payload.is_empty()).await;
    assert_no_retained(broker.port(), "deviation/a").await;

    // The control: a retained message that nothing cleared is delivered.
    publisher.publish_retained("deviation/b", "kept").await;
    publisher.expect("the second retained publish", |m| m.text() == "kept").await;
    let mut newcomer = Engine::connect(broker.port(), &["deviation/b"]).await;
    let kept = newcomer.expect_on("deviation/b").await;
    assert_eq!((kept.text(), kept.retain), ("kept", true));
}
