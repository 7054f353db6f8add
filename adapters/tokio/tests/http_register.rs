//! `SUBNODE_HTTP_REGISTER_URL`: the register message is POSTed to a tiny HTTP server run by the
//! test, retried with backoff through a silent server and a 503, while MQTT goes on regardless.

mod common;

use std::time::Duration;

use common::{base, Broker, Engine, WAIT};
use serde_json::Value;
use subnodesync_tokio::NodeBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A request the server read: its head (request line and headers) and its body.
#[derive(Debug)]
struct Request {
    head: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request with a `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> Request {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.expect("read the request");
        assert!(n > 0, "the client closed before the end of the head");
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(data[..end].to_vec()).expect("the head is text");
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length")))
        .expect("a Content-Length header");
    let mut body = data[end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.expect("read the body");
        assert!(n > 0, "the client closed before the end of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Request { head, body }
}

/// A server that keeps the first connection open without answering, answers the second with
/// 503 and every later one with 201; every request read is sent to the returned channel with
/// the status it got (0 for none).
async fn flaky_server() -> (u16, mpsc::UnboundedReceiver<(u16, Request)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut silent = Vec::new();
        for n in 0.. {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let request = read_request(&mut socket).await;
            let status = match n {
                0 => 0,
                1 => 503,
                _ => 201,
            };
            if status == 0 {
                silent.push(socket);
            } else {
                let reason = if status == 503 { "Service Unavailable" } else { "Created" };
                let response = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            }
            let _ = tx.send((status, request));
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_message_is_posted_over_http_with_retries_while_mqtt_goes_on() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let (http_port, mut requests) = flaky_server().await;
    let url = format!("http://127.0.0.1:{http_port}/api/register");
    let handle = NodeBuilder::new("web")
        .env(move |key| (key == "SUBNODE_HTTP_REGISTER_URL").then(|| url.clone()))
        .broker_url(broker.url())
        .hostname("http-host")
        .metadata("region", "eu-1")
        .heartbeat_interval(Duration::from_secs(1))
        .reconnect_min(Duration::from_millis(100))
        .reconnect_max(Duration::from_millis(500))
        // Also the bound on one HTTP attempt: the silent server holds the first one this long.
        .connect_timeout(Duration::from_secs(2))
        .start()
        .await
        .expect("node starts");
    let base = base("web", handle.instance_id());

    // MQTT does not wait for HTTP: the node is online while the first POST hangs.
    let register = engine.expect_on(&format!("{base}/register")).await.json();
    engine.expect_status(&base, "online").await;
    let (status, first) = tokio::time::timeout(WAIT, requests.recv()).await.expect("a first POST").expect("server");
    assert_eq!(status, 0);
    assert!(first.head.starts_with("POST /api/register HTTP/1.1\r\n"), "{}", first.head);
    let head = first.head.to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{}", first.head);
    assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{http_port}\r\n")), "{}", first.head);
    assert!(handle.is_connected(), "MQTT waited for the HTTP registration");

    // After the silent server's timeout, a 503, then success: three POSTs in all.
    let (status, _) = tokio::time::timeout(WAIT, requests.recv()).await.expect("a second POST").expect("server");
    assert_eq!(status, 503);
    let (status, last) = tokio::time::timeout(WAIT, requests.recv()).await.expect("a third POST").expect("server");
    assert_eq!(status, 201);
    // Registered: no fourth POST.
    assert!(tokio::time::timeout(Duration::from_millis(1500), requests.recv()).await.is_err(), "POSTed again");

    // The body is the register message the engine got over MQTT (timestamps aside).
    let mut body: Value = serde_json::from_slice(&last.body).expect("the body is JSON");
    assert!(common::is_timestamp(body["timestamp"].as_str().unwrap_or_default()), "{body}");
    let mut mqtt = register;
    for json in [&mut body, &mut mqtt] {
        let object = json.as_object_mut().expect("an object");
        object.remove("timestamp");
        object.remove("start_time");
    }
    assert_eq!(body, mqtt);
    assert_eq!(body["metadata"]["region"], "eu-1");
    assert!(handle.is_connected());
    handle.stop().await;
}
