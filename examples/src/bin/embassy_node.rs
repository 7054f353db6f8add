//! What a device runs, on the host: a SubNodeSync node on embassy's executor and timers, through
//! the `subnodesync-embassy` adapter, with no heap in the node's path. Two things differ on a
//! board, each marked `BOARD:` below: the network stack (here a host TCP socket through async-io,
//! there an embassy-net `TcpSocket`) and the clock (here embassy-time's `std` driver, enabled in
//! `examples/Cargo.toml`, and the system's wall clock; there the HAL's time driver, and SNTP or
//! an RTC). The executor's entry point differs too, as in every embassy program.
//!
//! Besides the built-in commands it answers `led` (`{"on": true}` switches a pretend LED and
//! reports its state), and every heartbeat carries the uptime as the custom metric `uptime_s`.
//! It exits 0 after the engine's `stop` or `restart` (where a board would reset).
//!
//! `SUBNODE_BROKER_URL=mqtt://localhost:1883 SUBNODE_NODE_NAME=demo cargo run --release --bin embassy_node`
//!
//! `SUBNODE_BROKER_URL` (default `mqtt://localhost:1883`; `mqtts://` is refused, this example has
//! no TLS stack) and `SUBNODE_NODE_NAME` (default `embassy_node`) mean what they mean for
//! `tokio_node`; a device has its settings compiled in.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

use async_io::Async;
use embassy_executor::Executor;
use embassy_time::Instant;
use embedded_io_adapters::futures_03::FromFutures;
use subnodesync_core::Writer;
use subnodesync_core::{Command, Config, Metric, Metrics, Node, Outcome};
use subnodesync_embassy::{run, Handler, Handlers, Notice, Resources, Sampler, Stopped};
use subnodesync_tokio::config::{parse_broker_url, Scheme, BROKER_URL, NODE_NAME};

/// `led`: switches the pretend LED when `on` is given, and reports its state.
struct Led {
    on: bool,
}

impl Handler for Led {
    fn handle<'s>(&'s mut self, command: &Command<'_>, scratch: &'s mut [u8]) -> Outcome<'s> {
        match command.parameters.get("on") {
            None => {}
            Some(raw) => match raw.deserialize::<bool>() {
                Some(on) => self.on = on,
                None => return Outcome::fail("parameter `on` must be true or false"),
            },
        }
        let mut w = Writer::new(scratch);
        w.raw(b"{\"on\":");
        w.bool(self.on);
        w.raw(b"}");
        match w.finish() {
            Ok(len) => Outcome::ok("led set").with_data(scratch.get(..len).unwrap_or_default()),
            Err(_) => Outcome::fail("no room for the result"),
        }
    }
}

/// Heartbeats carry what the device knows; here the uptime.
struct Device {
    started: Instant,
    custom: [(&'static str, Metric<'static>); 1],
}

impl Sampler for Device {
    fn sample(&mut self) -> Metrics<'_> {
        let uptime = i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX);
        self.custom = [("uptime_s", Metric::Int(uptime))];
        Metrics { threads: 1, custom: &self.custom, ..Metrics::default() }
    }

    fn unix_micros(&mut self) -> Option<u64> {
        // BOARD: the clock. A board answers from SNTP or an RTC, or `None` until it knows.
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since_epoch.as_micros()).ok()
    }
}

#[embassy_executor::task]
async fn node_task(broker: SocketAddr, name: &'static str) {
    let mut led = Led { on: false };
    let mut handlers: Handlers<'_, 4> = Handlers::new();
    if let Err(e) = handlers.add("led", &mut led) {
        exit(2, &format!("embassy_node: {e}"));
    }
    let commands = handlers.names();
    let config = Config {
        version: env!("CARGO_PKG_VERSION"),
        commands: &commands,
        node_version: subnodesync_sysinfo::node_version!(),
        // A board names itself by its serial number or MAC address and counts instances from 1.
        ..Config::new(name, "embassy-host", std::process::id())
    };
    // In the task's own storage, like everything below: embassy tasks are statically allocated.
    let mut resources: Resources = Resources::new();
    let (buffers, scratch) = resources.split();
    let now = Instant::now();
    // The seed drives reconnect jitter: a board takes it from its hardware RNG.
    let seed = u64::from(std::process::id()) ^ now.as_ticks();
    let built: Result<Node<'_>, _> = Node::new(config, buffers, seed, now);
    let mut node = match built {
        Ok(node) => node,
        Err(e) => exit(2, &format!("embassy_node: {e}")),
    };
    // BOARD: the network stack. A board opens an embassy-net `TcpSocket` on its own buffers here
    // (a `Connector` that lends it out), or an embedded-tls `TlsConnection` on top of one.
    let mut connect = || async move { Async::<TcpStream>::connect(broker).await.map(FromFutures::new) };
    let mut device = Device { started: now, custom: [("uptime_s", Metric::Int(0))] };
    eprintln!("embassy_node: {} joining {broker}", node.instance_id());
    let stopped = run(&mut node, &mut connect, &mut handlers, &mut device, scratch, log).await;
    match stopped {
        Stopped::RestartRequested => exit(0, "embassy_node: restart requested: a board resets here"),
        _ => exit(0, "embassy_node: stopped"),
    }
}

/// What a board would send to its log (defmt, a UART).
fn log(notice: Notice<'_, std::io::Error>) {
    match notice {
        Notice::Transport(error) => eprintln!("embassy_node: {error}"),
        Notice::Event(event) => eprintln!("embassy_node: {event:?}"),
        other => eprintln!("embassy_node: {other:?}"),
    }
}

fn exit(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code);
}

/// The broker from `SUBNODE_BROKER_URL`, parsed as `tokio_node` parses it, and resolved.
fn broker_address(url: &str) -> Result<SocketAddr, String> {
    let broker = parse_broker_url(url).map_err(|expected| format!("{BROKER_URL}={url:?}: expected {expected}"))?;
    if broker.scheme != Scheme::Mqtt {
        return Err(format!("{BROKER_URL}={url:?}: this example has no TLS or WebSocket stack; use mqtt://"));
    }
    let resolved = (broker.host.as_str(), broker.port).to_socket_addrs();
    resolved.map_err(|e| format!("{BROKER_URL}={url:?}: {e}"))?.next().ok_or_else(|| format!("{url}: no address"))
}

fn main() {
    let url = std::env::var(BROKER_URL).unwrap_or_else(|_| "mqtt://localhost:1883".into());
    let broker = match broker_address(&url) {
        Ok(broker) => broker,
        Err(e) => exit(2, &format!("embassy_node: {e}")),
    };
    // The task takes `'static` arguments; the name lives as long as the process.
    let name: &'static str = std::env::var(NODE_NAME).unwrap_or_else(|_| "embassy_node".into()).leak();
    // A board starts its platform's executor (`#[embassy_executor::main]` on cortex-m), from a
    // `StaticCell` rather than a leaked box.
    let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
    executor.run(|spawner| match node_task(broker, name) {
        Ok(token) => spawner.spawn(token),
        Err(e) => exit(2, &format!("embassy_node: {e:?}")),
    })
}
