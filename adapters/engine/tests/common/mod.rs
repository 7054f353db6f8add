//! rumqttd embedded in the test process, with the settings of `subnode broker`.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use subnodesync_testkit::{free_port, WAIT};

/// An in-process rumqttd serving MQTT 3.1.1 on 127.0.0.1:`port`, without TLS, authentication,
/// websockets, metrics or console.
///
/// rumqttd 0.20 has no way to stop an embedded broker: each one (a router thread and a server
/// thread) lives until the test binary exits.
pub(crate) struct Rumqttd {
    port: u16,
}

impl Rumqttd {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub(crate) fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            // The same rumqttd settings as `subnode broker`.
            let config = subnodesync_engine::broker_config([127, 0, 0, 1].into(), port);
            // `Broker::start` blocks for as long as the broker runs. It returns early when the
            // listener could not be set up (the port was taken meanwhile, say): the server thread
            // logs the error and ends, and `start` returns `Ok` all the same, so only the thread
            // ending tells.
            let thread = std::thread::Builder::new()
                .name(format!("rumqttd-{port}"))
                .spawn(move || {
                    let _ = rumqttd::Broker::new(config).start();
                })
                .expect("spawn the rumqttd thread");
            let deadline = Instant::now() + WAIT;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { port };
                }
                if thread.is_finished() {
                    break;
                }
                assert!(Instant::now() < deadline, "rumqttd did not listen on port {port} within {WAIT:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("rumqttd did not start on any of 5 free ports");
    }

    /// The loopback port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}
