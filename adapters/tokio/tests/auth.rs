//! Username, password and ACLs against a real mosquitto: a wrong password is a clear error that
//! is retried with a growing backoff (never a tight loop), and an ACL that lets a node touch only
//! its own topics leaves it fully working.

mod common;

use std::time::Duration;

use common::scenarios::{self, next_event};
use common::{password_file, Broker, Engine, WAIT};
use serde_json::json;
use subnodesync_tokio::{ConnectRefused, DisconnectReason, LifecycleEvent, NodeBuilder};

/// The ACL documented in the README: the engine reads everything and writes control and desired
/// topics; a node (username = node name, client id = instance id) writes only below its own
/// instance and reads only its own control and desired topics.
const ACL: &str = "\
user engine
topic read subnodesync/#
topic write subnodesync/+/+/control
topic write subnodesync/+/control
topic write subnodesync/+/+/desired
topic write subnodesync/+/desired

pattern write subnodesync/%u/%c/#
pattern read subnodesync/%u/%c/control
pattern read subnodesync/%u/control
pattern read subnodesync/%u/%c/desired
pattern read subnodesync/%u/desired
";

/// A broker that lets in only `engine` and `app` (passwords `engine-pw` and `app-pw`), with
/// [`ACL`] if `acl`.
fn secured_broker(acl: bool) -> Broker {
    Broker::start_with(|dir| {
        let passwords = password_file(dir, &[("engine", "engine-pw"), ("app", "app-pw")]);
        let mut config = format!("allow_anonymous false\npassword_file {}\n", passwords.display());
        if acl {
            let path = dir.join("acl");
            std::fs::write(&path, ACL).expect("write the ACL file");
            config.push_str(&format!("acl_file {}\n", path.display()));
        }
        config
    })
}

/// Node `app` on `broker` with `password`, short intervals, no process environment.
fn node(broker: &Broker, password: &str, hostname: &str) -> NodeBuilder {
    scenarios::suite_node(&broker.url(), "app")
        .username("app")
        .password(password)
        .hostname(hostname)
        .reconnect_min(Duration::from_millis(200))
}

async fn engine(broker: &Broker) -> Engine {
    Engine::connect_as(broker.port(), None, Some(("engine", "engine-pw")), &["subnodesync/#"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_refusal_retried_with_backoff_not_in_a_tight_loop() {
    let broker = secured_broker(false);
    let handle = node(&broker, "wrong", "host-a").start().await.expect("node starts");
    let mut events = handle.events();

    // Count the refusals over a fixed window. With a 200 ms floor and a 1 s cap the delays are
    // at least 200 ms each, and grow: a tight loop would show hundreds.
    let window = Duration::from_secs(4);
    let end = tokio::time::Instant::now() + window;
    let mut refusals = Vec::new();
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Err(_) => break,
            Ok(Ok(event @ LifecycleEvent::Disconnected { reason, retry_in, .. })) => {
                // What an operator reads in the log and in the event.
                let text = event.to_string();
                assert!(text.starts_with("disconnected: connection refused: "), "{text}");
                assert!(
                    matches!(
                        reason,
                        DisconnectReason::Refused(ConnectRefused::BadUsernamePassword | ConnectRefused::NotAuthorized)
                    ),
                    "not a refusal: {reason:?}"
                );
                assert!(retry_in >= Duration::from_millis(200) && retry_in <= Duration::from_secs(1), "{retry_in:?}");
                refusals.push(retry_in);
            }
            Ok(Ok(other)) => panic!("unexpected event with a wrong password: {other}"),
            Ok(Err(e)) => panic!("event stream: {e}"),
        }
    }
    let attempts = refusals.len();
    assert!((2..=window.as_millis() as usize / 200 + 1).contains(&attempts), "{attempts} attempts in {window:?}");
    assert!(!handle.is_connected());
    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");

    // The right password gets in.
    let mut engine = engine(&broker).await;
    let handle = node(&broker, "app-pw", "host-b").start().await.expect("node starts");
    let base = format!("subnodesync/app/{}", handle.instance_id());
    engine.expect_status(&base, "online").await;
    assert!(handle.is_connected());
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_an_acl_for_its_own_topics_a_node_registers_heartbeats_and_runs_commands() {
    let broker = secured_broker(true);
    let mut engine = engine(&broker).await;
    let handle = node(&broker, "app-pw", "host-a").start().await.expect("node starts");
    let mut events = handle.events();
    let base = format!("subnodesync/app/{}", handle.instance_id());

    let register = engine.expect_on(&format!("{base}/register")).await;
    assert_eq!(register.json()["instance_id"], handle.instance_id());
    engine.expect_status(&base, "online").await;
    engine.expect_on(&format!("{base}/heartbeat")).await;
    // Its own control topic and the one for every instance of the name both reach it.
    assert_eq!(engine.ask(&base, "r-own", "ping", json!({})).await["message"], "pong");
    engine.command("subnodesync/app", "r-all", "ping", json!({})).await;
    assert_eq!(engine.result(&base, "r-all").await["message"], "pong");
    // Desired state through the ACL: the name's document in, the instance's report out.
    let desired = json!({"version": 1, "settings": {"heartbeat_interval": 3}});
    engine.publish_retained("subnodesync/app/desired", desired.to_string()).await;
    let report = engine.expect_on(&format!("{base}/reported")).await.json();
    assert_eq!(report["settings"], json!({"heartbeat_interval": 3}), "{report}");

    // A client holding the node's credentials cannot read another instance's control topic:
    // mosquitto grants the SUBSCRIBE but delivers nothing, so that command is never seen.
    let other = "subnodesync/app/app-host-b-1";
    let impostor_id = handle.instance_id().to_owned() + "-x";
    let own = format!("subnodesync/app/{impostor_id}/control");
    let mut impostor = Engine::connect_as(
        broker.port(),
        Some(&impostor_id),
        Some(("app", "app-pw")),
        &[&format!("{other}/control"), &own],
    )
    .await;
    engine.command(other, "r-other", "ping", json!({})).await;
    engine.publish(&own, "marker").await;
    let first = impostor.expect("a control message", |_| true).await;
    assert_eq!((first.topic.as_str(), first.text()), (own.as_str(), "marker"), "another instance's control leaked");
    // Nor write below another instance: mosquitto drops that PUBLISH, and the next one from the
    // same client (below its own instance) is the first the engine sees of either.
    let forged = format!("{other}/result");
    impostor.publish(&forged, "forged").await;
    let allowed = format!("subnodesync/app/{impostor_id}/result");
    impostor.publish(&allowed, "mine").await;
    let seen = engine.expect("the impostor's messages", |m| m.topic == forged || m.topic == allowed).await;
    assert_eq!(seen.topic, allowed, "a node wrote below another instance");

    // A clean stop still leaves status offline and clears the register: both its own topics.
    handle.stop().await;
    engine.expect_status(&base, "offline").await;
    let cleared = engine.expect_on(&format!("{base}/register")).await;
    assert!(cleared.payload.is_empty());
    next_event(&mut events, "Stopped", |e| *e == LifecycleEvent::Stopped).await;
}
