//! Link check: `subnodesync-core` and `subnodesync-embassy` build into a `#![no_std]` static
//! library with no allocator.
//!
//! Linking std would bring a second `panic_impl` lang item; linking alloc would ask for a
//! `#[global_allocator]`. Either makes this crate fail to build, so a dependency that turns on
//! `std` or `alloc` is caught here. [`subnodesync_nostd_check`] drives the core through a real
//! session and [`subnodesync_nostd_embassy_check`] the embassy adapter's `run` over a scripted
//! connection, so that their code is linked in, not optimised away.

#![no_std]
#![deny(unsafe_code)]

use core::convert::Infallible;
use core::future::Future;
use core::mem::{size_of, size_of_val};
use core::panic::PanicInfo;
use core::pin::pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use embedded_io_async::{ErrorType, Read, Write};
use subnodesync_core::{Buffers, Command, Config, Instant, Metric, Metrics, Node, Outcome, Output};
use subnodesync_embassy::{run, Connector, Handler, Handlers, Resources, Sampler, Stopped};

/// CONNACK: session not present, connection accepted.
const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// Runs a node on stack buffers from start through CONNACK to one heartbeat and returns the bytes
/// it transmitted (CONNECT, SUBSCRIBE, register, heartbeat), or 0 if the node could not be built.
#[allow(unsafe_code)] // `no_mangle` is the point: the symbol must survive into the archive.
#[no_mangle]
pub extern "C" fn subnodesync_nostd_check(seed: u64) -> usize {
    let (mut rx, mut tx, mut outbox) = ([0u8; 2048], [0u8; 1024], [0u8; 4096]);
    let now = Instant::from_secs(0);
    let config = Config { version: "1.0.0", ..Config::new("nostd-check", "device-1", 1) };
    let Ok(mut node) = Node::<'_>::new(config, Buffers::new(&mut rx, &mut tx, &mut outbox), seed, now) else {
        return 0;
    };
    let mut sent = drain(&mut node);
    node.handle_connected(now);
    sent += drain(&mut node);
    // An empty receive buffer always takes a whole CONNACK.
    if node.handle_input(now, &CONNACK) != CONNACK.len() {
        return 0;
    }
    sent += drain(&mut node);
    let metrics = Metrics { cpu_centipercent: 250, memory_mb: 1, threads: 1, custom: &[] };
    if node.send_heartbeat(now, &metrics) != Ok(true) {
        return 0;
    }
    sent + drain(&mut node)
}

/// Drains `poll_output`, returning how many bytes it asked to transmit.
fn drain(node: &mut Node<'_>) -> usize {
    let mut sent = 0;
    while let Some(output) = node.poll_output() {
        if let Output::Transmit(bytes) = output {
            sent += bytes.len();
        }
    }
    sent
}

/// The control topic of the node below (`nostd-check` on `device-1`, pid 1).
const TOPIC: &[u8] = b"subnodesync/nostd-check/nostd-check-device-1-1/control";
/// The engine's `stop`, which ends `run`.
const STOP: &[u8] = br#"{"command":"stop","request_id":"r1"}"#;
/// A QoS 0 PUBLISH's fixed header and topic length, for `TOPIC` and `STOP`.
const PUBLISH_HEAD: [u8; 4] = [0x30, (2 + TOPIC.len() + STOP.len()) as u8, 0, TOPIC.len() as u8];
/// What the scripted broker sends, one chunk per read: the PUBLISH arrives split in three.
const SCRIPT: [&[u8]; 4] = [&CONNACK, &PUBLISH_HEAD, TOPIC, STOP];

/// What [`subnodesync_nostd_embassy_check`] measured.
#[repr(C)]
pub struct EmbassyCheck {
    /// Bytes `run` wrote before the engine's `stop` ended it; 0 if it did not end so.
    pub written: usize,
    /// Static RAM of the node as the `embassy_node` example runs it (default capacities): the
    /// [`Node`], its [`Resources`] and the `run` future, which is what an embassy task stores.
    /// The connection's own buffers (an embassy-net socket's) come on top.
    pub ram: usize,
    /// The `run` future alone.
    pub run_future: usize,
}

/// Runs the embassy adapter on [`Resources`] from connect through CONNACK, register and heartbeat
/// to the engine's `stop`, and measures its RAM.
#[allow(unsafe_code)] // `no_mangle`, as above.
#[no_mangle]
pub extern "C" fn subnodesync_nostd_embassy_check(seed: u64) -> EmbassyCheck {
    let mut check = EmbassyCheck { written: 0, ram: 0, run_future: 0 };
    let mut resources: Resources = Resources::new();
    let (buffers, scratch) = resources.split();
    let mut echo = Echo;
    let mut handlers: Handlers<'_, 1> = Handlers::new();
    if handlers.add("echo", &mut echo).is_err() {
        return check;
    }
    let commands = handlers.names();
    let config = Config { commands: &commands, ..Config::new("nostd-check", "device-1", 1) };
    let built: Result<Node<'_>, _> = Node::new(config, buffers, seed, Instant::from_ticks(0));
    let Ok(mut node) = built else {
        return check;
    };
    let mut connector = ScriptedBroker { connection: Scripted { chunk: 0, written: 0 } };
    let mut sampler = Uptime { custom: [("uptime_s", Metric::Int(0))] };
    let running = run(&mut node, &mut connector, &mut handlers, &mut sampler, scratch, |_| {});
    check.run_future = size_of_val(&running);
    check.ram = size_of::<Node<'static>>() + size_of::<Resources>() + check.run_future;
    if block_on(running) == Some(Stopped::StopRequested) {
        check.written = connector.connection.written;
    }
    check
}

/// A connection that plays [`SCRIPT`], then waits forever, and counts what it is sent.
struct Scripted {
    chunk: usize,
    written: usize,
}

impl ErrorType for Scripted {
    type Error = Infallible;
}

impl Read for Scripted {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let Some(chunk) = SCRIPT.get(self.chunk) else { return core::future::pending().await };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.chunk += 1;
        Ok(n)
    }
}

impl Write for Scripted {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.written += buf.len();
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Lends out its one connection, as a board's connector lends out a socket on its buffers.
struct ScriptedBroker {
    connection: Scripted,
}

impl Connector for ScriptedBroker {
    type Connection<'c> = &'c mut Scripted;
    type Error = Infallible;

    async fn connect(&mut self) -> Result<&mut Scripted, Infallible> {
        Ok(&mut self.connection)
    }
}

/// `echo`: answers with its parameters.
struct Echo;

impl Handler for Echo {
    fn handle<'s>(&'s mut self, command: &Command<'_>, scratch: &'s mut [u8]) -> Outcome<'s> {
        let params = command.parameters.as_raw().as_str().as_bytes();
        match scratch.get_mut(..params.len()) {
            Some(data) => {
                data.copy_from_slice(params);
                Outcome::ok("echoed").with_data(data)
            }
            None => Outcome::fail("parameters too large"),
        }
    }
}

/// Heartbeats carry a custom metric, as a device's would.
struct Uptime {
    custom: [(&'static str, Metric<'static>); 1],
}

impl Sampler for Uptime {
    fn sample(&mut self) -> Metrics<'_> {
        self.custom = [("uptime_s", Metric::Int(embassy_now_secs()))];
        Metrics { custom: &self.custom, ..Metrics::default() }
    }
}

fn embassy_now_secs() -> i64 {
    i64::try_from(Instant::now().as_secs()).unwrap_or(i64::MAX)
}

/// Polls `future` to completion without an executor: the clock below moves on every reading,
/// so every timer expires after a bounded number of polls. `None` if it never finishes.
fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    // The longest wait is the clean stop's 5 s timeout: 500 readings of the clock.
    for _ in 0..100_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
    }
    None
}

/// A stand-in embassy time driver (a board links its own): each reading of the clock moves it
/// 10 ms on, and wake-ups are not needed since `block_on` polls continuously.
struct SteppingClock;

/// Ticks per reading of [`SteppingClock`]: 10 ms at the default 1 MHz tick rate.
const STEP: u64 = 10_000;

static NOW: AtomicU64 = AtomicU64::new(0);

impl embassy_time_driver::Driver for SteppingClock {
    fn now(&self) -> u64 {
        NOW.fetch_add(STEP, Ordering::Relaxed)
    }

    fn schedule_wake(&self, _at: u64, _waker: &Waker) {}
}

#[allow(unsafe_code)] // The driver macro exports `no_mangle` symbols, as any time driver does.
mod driver {
    embassy_time_driver::time_driver_impl!(static DRIVER: super::SteppingClock = super::SteppingClock);
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}
