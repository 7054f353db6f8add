//! The tokio adapter over MQTT over WebSocket against a real broker with WebSocket listeners
//! (amqtt, started by each test on its own loopback ports): the shared broker scenarios with
//! the node on `ws://` and the engine on plain MQTT through the same broker, a broker restart,
//! `wss://` with a CA made by the test, an HTTP proxy's `CONNECT` tunnel, and a connector of
//! the application's own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use subnodesync_testkit::amqtt::Amqtt;
use subnodesync_testkit::proxy::ConnectProxy;
use subnodesync_testkit::scenarios::{echo_and_count, next_event, online, suite_node};
use subnodesync_testkit::{Engine, WAIT};
use subnodesync_tokio::{BrokerUrl, DisconnectReason, LifecycleEvent, NodeBuilder, Tokio};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt as _;

// The scenarios every runtime adapter passes on mosquitto over TCP, with the node on ws://.
subnodesync_testkit::broker_scenarios!(@every Tokio, Amqtt);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_wss_with_a_ca_made_in_the_test_the_node_registers_and_answers_commands() {
    let broker = Amqtt::start_with_wss();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let builder = echo_and_count(suite_node::<Tokio>(&broker.wss_url(), "secure-ws")).tls_ca(&broker.pki().ca);
    let (handle, base) = online(builder, &mut engine).await;
    engine.expect_on(&format!("{base}/heartbeat")).await;
    let result = engine.ask(&base, "r-wss", "echo", json!({ "over": "wss" })).await;
    assert_eq!(result["data"], json!({ "over": "wss" }));
    handle.stop().await;
    engine.expect_status(&base, "offline").await;
}

/// The first transport error `builder`'s node reports; fails the test if it connects instead.
async fn first_transport_error(builder: NodeBuilder) -> String {
    let handle = builder.start().await.expect("node starts");
    let mut events = handle.events();
    let deadline = tokio::time::Instant::now() + WAIT;
    let error = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await.expect("an outcome within WAIT") {
            Ok(LifecycleEvent::Disconnected { reason: DisconnectReason::Transport, error: Some(error), .. }) => {
                break error;
            }
            Ok(LifecycleEvent::Connected { .. }) => panic!("connected to a broker it must not trust"),
            _ => {}
        }
    };
    handle.stop().await;
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_wss_a_certificate_from_an_unknown_ca_or_for_another_name_is_refused_with_a_clear_error() {
    let broker = Amqtt::start_with_wss();
    // The node trusts only a CA the broker's certificate does not come from.
    let dir = broker.dir().join("other");
    std::fs::create_dir_all(&dir).expect("a directory for the other CA");
    let other = subnodesync_testkit::tls::make_pki(&dir);
    let error = first_transport_error(suite_node(&broker.wss_url(), "wary").tls_ca(&other.ca)).await;
    // The test CAs share a name: rustls finds the issuer, and its signature wrong.
    assert!(error.contains("invalid peer certificate"), "{error}");

    // The right CA, but the certificate is for `localhost` and the URL says 127.0.0.1.
    let by_address = broker.wss_url().replace("localhost", "127.0.0.1");
    let error = first_transport_error(suite_node(&by_address, "wary").tls_ca(&broker.pki().ca)).await;
    assert!(error.contains("certificate not valid for name"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_wss_the_node_presents_its_client_certificate() {
    // amqtt checks a client certificate against its CA when one is presented (it requires none),
    // so a certificate the broker cannot verify would fail the handshake.
    let broker = Amqtt::start_with_wss();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let pki = broker.pki();
    let builder = suite_node::<Tokio>(&broker.wss_url(), "certified")
        .tls_ca(&pki.ca)
        .tls_cert(&pki.client_cert)
        .tls_key(&pki.client_key);
    let (handle, _base) = online(builder, &mut engine).await;
    handle.stop().await;

    // The control: a client certificate from a CA the broker does not know is refused.
    let dir = broker.dir().join("stranger");
    std::fs::create_dir_all(&dir).expect("a directory for the other CA");
    let stranger = subnodesync_testkit::tls::make_pki(&dir);
    let builder = suite_node::<Tokio>(&broker.wss_url(), "stranger")
        .tls_ca(&pki.ca)
        .tls_cert(&stranger.client_cert)
        .tls_key(&stranger.client_key);
    // Under TLS 1.3 the broker checks it after the client's side of the handshake is done: the
    // connection then dies during the WebSocket upgrade.
    let error = first_transport_error(builder).await;
    assert!(error.starts_with("connecting to wss://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_http_proxy_the_node_tunnels_ws_and_wss_with_connect() {
    let broker = Amqtt::start_with_wss();
    let proxy = ConnectProxy::start(false).await;
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;

    // SUBNODE_PROXY, as a node in a locked-down network would have it.
    let proxy_url = proxy.url();
    let ws = suite_node::<Tokio>(&broker.url(), "proxied-ws")
        .env(move |key| (key == "SUBNODE_PROXY").then(|| proxy_url.clone()));
    let (ws, ws_base) = online(echo_and_count(ws), &mut engine).await;
    assert_eq!(engine.ask(&ws_base, "r-1", "echo", json!({ "n": 1 })).await["data"], json!({ "n": 1 }));

    // HTTPS_PROXY, set in code here, carrying TLS end to end: the proxy sees only the tunnel.
    let wss = suite_node::<Tokio>(&broker.wss_url(), "proxied-wss").tls_ca(&broker.pki().ca).proxy(proxy.url());
    let (wss, wss_base) = online(echo_and_count(wss), &mut engine).await;
    assert_eq!(engine.ask(&wss_base, "r-2", "echo", json!({ "n": 2 })).await["data"], json!({ "n": 2 }));

    let ws_port = broker.url().split(':').nth(2).and_then(|p| p.split('/').next()).unwrap_or_default().to_owned();
    let requests = proxy.requests();
    assert!(requests.contains(&format!("CONNECT 127.0.0.1:{ws_port} HTTP/1.1")), "{requests:?}");
    assert!(requests.iter().any(|r| r.starts_with("CONNECT localhost:")), "{requests:?}");
    ws.stop().await;
    wss.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_the_tunnel_is_a_transport_error_naming_its_answer() {
    let broker = Amqtt::start();
    let proxy = ConnectProxy::start(true).await;
    let handle = suite_node::<Tokio>(&broker.url(), "refused").proxy(proxy.url()).start().await.expect("starts");
    let mut events = handle.events();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await.expect("an outcome within WAIT") {
            Ok(LifecycleEvent::Disconnected { error: Some(error), .. }) => {
                assert!(error.contains("with 403 Forbidden"), "{error}");
                break;
            }
            Ok(LifecycleEvent::Connected { .. }) => panic!("connected past a refusing proxy"),
            _ => {}
        }
    }
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_of_the_applications_own_carries_the_websocket() {
    let broker = Amqtt::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    // The URL names a host that does not resolve; the connector knows where the broker is.
    let real = broker.url().replace("ws://127.0.0.1:", "").replace("/mqtt", "");
    let dialed = Arc::new(Mutex::new(Vec::new()));
    let seen = dialed.clone();
    let builder = suite_node::<Tokio>("ws://broker.invalid:9/mqtt", "tunnelled").connector(move |url: &BrokerUrl| {
        seen.lock().unwrap().push(url.to_string());
        let target = format!("127.0.0.1:{real}");
        async move { Ok(TcpStream::connect(target).await?.compat()) }
    });
    let (handle, base) = online(echo_and_count(builder), &mut engine).await;
    assert_eq!(engine.ask(&base, "r-c", "count", json!({})).await["data"], json!({ "count": 1 }));
    assert_eq!(dialed.lock().unwrap().first().map(String::as_str), Some("ws://broker.invalid:9/mqtt"));
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_websocket_is_found_by_keep_alive_and_the_node_reconnects() {
    let broker = Amqtt::start();
    let proxy = ConnectProxy::start(false).await;
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (handle, base) = online(suite_node::<Tokio>(&broker.url(), "half-open").proxy(proxy.url()), &mut engine).await;
    let mut events = handle.events();
    proxy.freeze();
    // Keep-alive 2 s: nothing received for 1.5 × keep-alive ends the connection.
    next_event(&mut events, "Disconnected by keep-alive", |e| {
        matches!(e, LifecycleEvent::Disconnected { reason: DisconnectReason::KeepAliveTimeout, .. })
    })
    .await;
    next_event(&mut events, "Connected through a new tunnel", |e| matches!(e, LifecycleEvent::Connected { .. })).await;
    engine.expect_on(&format!("{base}/heartbeat")).await;
    assert_eq!(proxy.requests().len(), 2, "one tunnel, then another after the half-open one");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_that_never_completes_is_given_up_by_the_connect_timeout() {
    // A "broker" that completes the TCP handshake and then never answers the upgrade: the
    // node's connect timeout gives up on it as on a CONNACK, and backs off.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let handle = NodeBuilder::new("patient")
        .env(|_| None)
        .broker_url(format!("ws://127.0.0.1:{port}/mqtt"))
        .connect_timeout(Duration::from_millis(500))
        .reconnect_min(Duration::from_millis(100))
        .start()
        .await
        .expect("starts");
    let mut events = handle.events();
    next_event(&mut events, "Disconnected by the connect timeout", |e| {
        matches!(e, LifecycleEvent::Disconnected { reason: DisconnectReason::ConnectTimeout, .. })
    })
    .await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connack_split_across_websocket_messages_connects_and_a_text_message_ends_the_connection() {
    use async_tungstenite::tungstenite::handshake::server::{Request, Response};
    use async_tungstenite::tungstenite::Message;
    use futures_util::StreamExt as _;

    // A scripted WebSocket broker: it frames MQTT bytes as it likes, as MQTT 3.1.1 §6 allows.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let broker = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        // The callback's error type is tungstenite's (an HTTP response), large or not.
        #[allow(clippy::result_large_err)]
        let choose_mqtt = |request: &Request, mut response: Response| {
            let offered = request.headers().get("Sec-WebSocket-Protocol").cloned();
            assert_eq!(offered.as_ref().and_then(|v| v.to_str().ok()), Some("mqtt"));
            response.headers_mut().insert("Sec-WebSocket-Protocol", offered.expect("offered"));
            Ok(response)
        };
        let mut ws = async_tungstenite::accept_hdr_async(tcp.compat(), choose_mqtt).await.expect("upgrade");
        let connect = match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            other => panic!("expected CONNECT in a binary message, got {other:?}"),
        };
        assert_eq!(connect[0], 0x10, "CONNECT");
        // CONNACK (accepted) in two messages, split inside its fixed header.
        ws.send(Message::Binary(vec![0x20].into())).await.expect("send");
        ws.send(Message::Binary(vec![0x02, 0x00, 0x00].into())).await.expect("send");
        // Wait for what the node sends after CONNACK, then break the rules.
        let _ = ws.next().await;
        ws.send(Message::Text("not MQTT".into())).await.expect("send");
        // Hold the connection until the node closes it.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let handle = suite_node::<Tokio>(&format!("ws://127.0.0.1:{port}/mqtt"), "framed").start().await.expect("starts");
    let mut events = handle.events();
    next_event(&mut events, "Connected after a split CONNACK", |e| matches!(e, LifecycleEvent::Connected { .. })).await;
    next_event(
        &mut events,
        "Disconnected by a text message",
        |e| matches!(e, LifecycleEvent::Disconnected { error: Some(error), .. } if error.contains("text message")),
    )
    .await;
    handle.stop().await;
    broker.abort();
}
