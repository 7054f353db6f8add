//! The embedded broker: rumqttd serving MQTT 3.1.1, without TLS, websockets or a console.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

/// One MQTT 3.1.1 listener on `bind:port`, sized for a demo or a bench fleet.
fn config(bind: IpAddr, port: u16) -> Config {
    let server = ServerSettings {
        name: format!("v4-{port}"),
        listen: SocketAddr::new(bind, port),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            // Without this a PUBLISH to a topic nobody subscribed to yet is refused.
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}

/// Runs the broker until the process ends. rumqttd reports a listener it could not open only
/// in its logs and then returns, so the port is probed to tell.
pub(crate) fn run(bind: IpAddr, port: u16) -> Result<(), String> {
    let config = config(bind, port);
    let thread = std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || rumqttd::Broker::new(config).start().map_err(|e| e.to_string()))
        .map_err(|e| e.to_string())?;
    let probe = if bind.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { bind };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((probe, port)).is_err() {
        if thread.is_finished() || Instant::now() > deadline {
            return Err(format!("the broker could not listen on {bind}:{port} (port in use?)"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("subnode broker: MQTT 3.1.1 on mqtt://{bind}:{port}; Ctrl-C to stop");
    match thread.join() {
        Ok(result) => result,
        Err(_) => Err("the broker thread panicked".into()),
    }
}
