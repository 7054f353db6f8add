//! A `CONNECT`-only HTTP proxy on a loopback port, for the tests of nodes and engines that reach
//! a WebSocket broker through one.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A `CONNECT`-only HTTP proxy on a loopback port: it records each request line, then copies
/// bytes both ways; with `refuse` it answers 403 instead. [`ConnectProxy::freeze`] makes the
/// open tunnels half-open: closed towards the broker, held open and silent towards the node.
pub struct ConnectProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    freeze: Arc<Notify>,
}

impl ConnectProxy {
    /// Starts the proxy (answering every `CONNECT` with 403 if `refuse`).
    pub async fn start(refuse: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let freeze = Arc::new(Notify::new());
        let (seen, frozen) = (requests.clone(), freeze.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, frozen) = (seen.clone(), frozen.clone());
                tokio::spawn(async move {
                    let mut client = BufReader::new(client);
                    let mut head = String::new();
                    loop {
                        let before = head.len();
                        if client.read_line(&mut head).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if &head[before..] == "\r\n" {
                            break;
                        }
                    }
                    let request_line = head.lines().next().unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(request_line.clone());
                    let target = request_line.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next());
                    // Loopback only: this proxy refuses to reach anything else.
                    let target = target.filter(|t| t.starts_with("127.0.0.1:") || t.starts_with("localhost:"));
                    let (Some(target), false) = (target, refuse) else {
                        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                            () = frozen.notified() => {
                                // As a NAT that lost the connection's state: the broker's end is
                                // closed, the node's is held open and hears nothing again.
                                drop(upstream);
                                let _held = client;
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
            }
        });
        Self { port, requests, freeze }
    }

    /// Every tunnel open now goes half-open; later ones work.
    pub fn freeze(&self) {
        self.freeze.notify_waiters();
    }

    /// `http://127.0.0.1:<port>`, as `SUBNODE_PROXY` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request line of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
