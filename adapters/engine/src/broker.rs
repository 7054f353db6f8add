//! The embedded broker's settings, for `subnode broker`, the demo and tests (the
//! `embedded-broker` feature, on by default).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

/// rumqttd serving MQTT 3.1.1 on `bind:port`, without TLS, websockets or a console, sized for a
/// demo or a bench fleet. Run it with `rumqttd::Broker::new(config).start()`, which blocks.
///
/// Needs the `embedded-broker` feature (a default one).
pub fn broker_config(bind: IpAddr, port: u16) -> Config {
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
