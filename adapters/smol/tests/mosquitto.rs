//! The smol adapter against a real mosquitto, started by each test on its own loopback port: the
//! same broker scenarios the tokio adapter passes, with the node on smol's executor and reactor
//! (the test's engine, a plain MQTT client, runs on tokio).

use subnodesync_smol::{Error, NodeBuilder};

// The scenarios every runtime adapter passes (the test kit's), on smol.
subnodesync_testkit::broker_scenarios!(subnodesync_smol::Smol);

/// A bad setting is an error from `start`, naming the variable, on smol as on tokio.
#[test]
fn invalid_settings_fail_before_any_connection_is_tried() {
    let started = smol::block_on(
        NodeBuilder::new("bad")
            .env(|key| (key == "SUBNODE_HEARTBEAT_INTERVAL").then(|| "soon".to_owned()))
            .broker_url("mqtt://127.0.0.1:1")
            .start(),
    );
    match started {
        Err(Error::Env(e)) => assert_eq!((e.name, e.value.as_str()), ("SUBNODE_HEARTBEAT_INTERVAL", "soon")),
        other => panic!("expected an environment error, got {other:?}"),
    }
}
