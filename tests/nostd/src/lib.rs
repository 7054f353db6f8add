//! Link check: `subnodesync-core` builds into a `#![no_std]` static library with no allocator.
//!
//! Linking std would bring a second `panic_impl` lang item; linking alloc would ask for a
//! `#[global_allocator]`. Either makes this crate fail to build, so a dependency that turns on
//! `std` or `alloc` is caught here. [`subnodesync_nostd_check`] drives a real session so that the
//! node's code is linked in, not optimised away.

#![no_std]
#![deny(unsafe_code)]

use core::panic::PanicInfo;

use subnodesync_core::{Buffers, Config, Instant, Metrics, Node, Output};

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

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}
