//! The `unix_socket_node` example as a process: its connector reaches a real mosquitto through
//! a Unix socket (a forwarder in the test, as `socat` would be), while its broker URL names a
//! host that does not resolve.
#![cfg(unix)]

use std::process::{Command, Stdio};

use serde_json::json;
use subnodesync_testkit::{base, Broker, Engine};
use tokio::net::{TcpStream, UnixListener};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_connects_through_its_unix_socket_connector_and_answers() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let socket = broker.dir().join("broker.sock");
    let listener = UnixListener::bind(&socket).expect("bind the Unix socket");
    let port = broker.port();
    tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut remote) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                }
            });
        }
    });

    let mut child = Command::new(env!("CARGO_BIN_EXE_unix_socket_node"))
        .env_clear()
        .env("SUBNODE_EXAMPLE_SOCKET", &socket)
        .env("SUBNODE_BROKER_URL", "mqtt://broker.invalid:1883")
        .env("SUBNODE_NODE_NAME", "socketed")
        .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unix_socket_node");
    let register = engine.expect("its register message", |m| m.topic.ends_with("/register")).await;
    let instance_id = register.json()["instance_id"].as_str().expect("an instance id").to_owned();
    let base = base("socketed", &instance_id);
    engine.expect_status(&base, "online").await;
    let result = engine.ask(&base, "r-sock", "echo", json!({ "via": "unix socket" })).await;
    assert_eq!(result["data"], json!({ "via": "unix socket" }));
    let _ = child.kill();
    let _ = child.wait();
}
