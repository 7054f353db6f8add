//! The adapter against a "broker" that accepts TCP connections and never answers: the core's
//! connect timeout closes each attempt and the node backs off and tries again.

use std::time::Duration;

use subnodesync_tokio::{DisconnectReason, LifecycleEvent, NodeBuilder};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_hits_the_connect_timeout_and_the_node_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let node = NodeBuilder::new("silent")
        .env(|_| None)
        .broker_url(format!("mqtt://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(300))
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(100))
        .start()
        .await
        .expect("node starts");
    let mut events = node.events();

    for attempt in 1..=2 {
        let (mut socket, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .unwrap_or_else(|_| panic!("connect attempt {attempt} never came"))
            .expect("accept");
        // The node speaks first: a CONNECT packet (type 1).
        let mut first = [0u8; 1];
        tokio::time::timeout(WAIT, socket.read_exact(&mut first)).await.expect("CONNECT in time").expect("read");
        assert_eq!(first[0], 0x10, "the first byte is not a CONNECT");
        let event = tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("event");
        assert!(
            matches!(event, LifecycleEvent::Disconnected { reason: DisconnectReason::ConnectTimeout, .. }),
            "{event:?}"
        );
        // The node closed its side: reading now ends (or fails) instead of blocking.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WAIT, socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the node never closed the timed-out connection");
    }
    assert!(!node.is_connected());
    tokio::time::timeout(WAIT, node.stop()).await.expect("stop returns");
}
