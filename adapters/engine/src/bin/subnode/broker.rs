//! `subnode broker`: the embedded broker, run until the process ends.

use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use subnodesync_engine::broker_config;

/// Runs the broker until the process ends. rumqttd reports a listener it could not open only
/// in its logs and then returns, so the port is probed to tell.
pub(crate) fn run(bind: IpAddr, port: u16) -> Result<(), String> {
    let config = broker_config(bind, port);
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
