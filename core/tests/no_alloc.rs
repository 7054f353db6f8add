//! The core never touches the heap: a connected node goes through heartbeats, application
//! commands and built-in commands while a counting global allocator watches this thread.
//!
//! The allocator is `allocation-counter`'s: it wraps `System` and counts per thread, only inside
//! `measure`, so the test harness and other threads cannot disturb the count. (The workspace
//! forbids `unsafe`, which a hand-written `GlobalAlloc` needs, in every target.)
#![allow(missing_docs)]

use subnodesync_core::FixedHeader;
use subnodesync_core::{Buffers, CommandId, Config, Event, Instant, Metric, Metrics, Node, Outcome, Output};

const BASE: &str = "subnodesync/app/app-host-42";
/// Where the request id's counter starts in every control payload below.
const COUNTER: &str = "000000";
/// Cycles measured: more than the outbox holds (16) and than the request ids remembered (32), so
/// cached results are evicted and the memory of request ids wraps while the counter watches.
const CYCLES: u32 = 40;

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn puback(pid: u16) -> [u8; 4] {
    let [hi, lo] = pid.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// A control PUBLISH (QoS 1), built before the counter is armed; `stamp` makes it unique.
fn control(command: &str, parameters: &str) -> Vec<u8> {
    let topic = format!("{BASE}/control");
    let payload = format!(
        r#"{{"command":"{command}","timestamp":"2024-01-01T12:00:00Z","request_id":"{command}-{COUNTER}","parameters":{parameters}}}"#
    );
    let mut remaining = 2 + topic.len() + 2 + payload.len();
    let mut packet = vec![0x32];
    while remaining >= 128 {
        packet.push((remaining % 128) as u8 | 0x80);
        remaining /= 128;
    }
    packet.push(remaining as u8);
    packet.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    packet.extend_from_slice(topic.as_bytes());
    packet.extend_from_slice(&[0x00, 0x01]);
    packet.extend_from_slice(payload.as_bytes());
    packet
}

/// Writes `n` into the request id's counter and uses it as the packet id; allocates nothing.
fn stamp(packet: &mut [u8], n: u32) {
    let at = packet.windows(COUNTER.len()).rposition(|w| w.iter().all(u8::is_ascii_digit)).expect("counter");
    let mut v = n;
    for digit in packet[at..at + COUNTER.len()].iter_mut().rev() {
        *digit = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let at = FixedHeader::parse(packet).unwrap().unwrap().header_len;
    let topic_len = usize::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
    packet[at + 2 + topic_len..at + 4 + topic_len].copy_from_slice(&(n as u16).max(1).to_be_bytes());
}

/// What one drain saw, in fixed-size storage.
struct Seen {
    /// Packets the simulated broker answers next: PUBACKs, SUBACK, PINGRESP.
    replies: [[u8; 6]; 8],
    reply_lens: [usize; 8],
    replies_len: usize,
    heartbeats: u32,
    results: u32,
    pubacks_sent: u32,
    command: Option<CommandId>,
    heartbeat_due: bool,
    /// The most recent result payload, copied for checking after the count.
    last_result: [u8; 512],
    last_result_len: usize,
    unexpected: u32,
}

impl Seen {
    fn new() -> Self {
        Self {
            replies: [[0; 6]; 8],
            reply_lens: [0; 8],
            replies_len: 0,
            heartbeats: 0,
            results: 0,
            pubacks_sent: 0,
            command: None,
            heartbeat_due: false,
            last_result: [0; 512],
            last_result_len: 0,
            unexpected: 0,
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        let i = self.replies_len;
        self.replies[i][..bytes.len()].copy_from_slice(bytes);
        self.reply_lens[i] = bytes.len();
        self.replies_len += 1;
    }
}

/// Drains the node and plays a broker that acknowledges everything.
fn drain(node: &mut Node<'_>, seen: &mut Seen) {
    while let Some(out) = node.poll_output() {
        match out {
            Output::Transmit(bytes) => {
                let header = FixedHeader::parse(bytes).unwrap().unwrap();
                let at = header.header_len;
                match header.packet_type() {
                    3 => {
                        let topic_len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
                        let topic = &bytes[at + 2..at + 2 + topic_len];
                        let pid = u16::from_be_bytes([bytes[at + 2 + topic_len], bytes[at + 3 + topic_len]]);
                        let payload = &bytes[at + 4 + topic_len..];
                        if topic.ends_with(b"/heartbeat") {
                            seen.heartbeats += 1;
                        } else if topic.ends_with(b"/result") {
                            seen.results += 1;
                            seen.last_result[..payload.len()].copy_from_slice(payload);
                            seen.last_result_len = payload.len();
                        }
                        seen.reply(&puback(pid));
                    }
                    4 => seen.pubacks_sent += 1,
                    8 => seen.reply(&[0x90, 0x04, bytes[at], bytes[at + 1], 0x01, 0x01]),
                    12 => seen.reply(&[0xD0, 0x00]),
                    _ => {}
                }
            }
            Output::Event(Event::Command(cmd)) => {
                if cmd.name == "echo" && cmd.parameters.get("value").is_some() {
                    seen.command = Some(cmd.id);
                } else {
                    seen.unexpected += 1;
                }
            }
            Output::Event(Event::HeartbeatDue) => seen.heartbeat_due = true,
            Output::Event(Event::Connected { .. }) => {}
            _ => seen.unexpected += 1,
        }
    }
}

/// Feeds the broker's answers back until the node has nothing more to say.
fn settle(node: &mut Node<'_>, now: Instant, seen: &mut Seen) {
    drain(node, seen);
    while seen.replies_len > 0 {
        let (replies, lens, n) = (seen.replies, seen.reply_lens, seen.replies_len);
        seen.replies_len = 0;
        for (reply, len) in replies.iter().zip(lens).take(n) {
            assert_eq!(node.handle_input(now, &reply[..len]), len);
            drain(node, seen);
        }
    }
}

/// One steady-state cycle: a heartbeat, an application command, two built-in commands.
fn cycle(node: &mut Node<'_>, now: Instant, n: u32, packets: &mut [Vec<u8>; 3], seen: &mut Seen) {
    let custom = [("queue_depth", Metric::Int(i64::from(n))), ("healthy", Metric::Bool(true))];
    let metrics = Metrics { cpu_centipercent: 250 + n, memory_mb: 128, threads: 42, custom: &custom };

    node.handle_timeout(now);
    settle(node, now, seen);
    if std::mem::take(&mut seen.heartbeat_due) {
        assert!(node.send_heartbeat(now, &metrics).unwrap());
        settle(node, now, seen);
    }

    let [echo, ping, status] = packets;
    stamp(echo, n);
    assert_eq!(node.handle_input(now, echo), echo.len());
    settle(node, now, seen);
    if let Some(id) = seen.command.take() {
        node.complete(now, id, Outcome::ok("echoed").with_data(br#"{"value":[1,"two",3.0]}"#)).unwrap();
        settle(node, now, seen);
    }

    for packet in [ping, status] {
        stamp(packet, n);
        assert_eq!(node.handle_input(now, packet), packet.len());
        settle(node, now, seen);
    }
}

#[test]
fn a_connected_node_heartbeats_and_answers_commands_without_allocating() {
    // Without the counting allocator in place every count would be zero and prove nothing.
    let probe = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(probe.count_total, 1, "the counting allocator is installed");

    let (mut rx, mut tx, mut outbox) = ([0u8; 2048], [0u8; 1024], [0u8; 4096]);
    let config = Config { version: "1.0.0", commands: &["echo"], ..Config::new("app", "host", 42) };
    let mut node: Node<'_> = Node::new(config, Buffers::new(&mut rx, &mut tx, &mut outbox), 7, secs(0)).unwrap();
    node.set_wall_clock(secs(0), 1_704_110_400_000_000);
    assert_eq!(node.poll_output(), Some(Output::Open));
    node.handle_connected(secs(0));
    let mut seen = Seen::new();
    drain(&mut node, &mut seen);
    assert_eq!(node.handle_input(secs(0), &[0x20, 0x02, 0x00, 0x00]), 4);
    settle(&mut node, secs(0), &mut seen);
    assert!(node.is_connected());

    let mut packets = [control("echo", r#"{"value":[1,"two",3.0]}"#), control("ping", "{}"), control("status", "{}")];
    // Warm up, then count: every cycle a heartbeat interval (30 s) later than the one before.
    for n in 1..=3 {
        cycle(&mut node, secs(u64::from(n) * 30), n, &mut packets, &mut seen);
    }
    let before = (seen.heartbeats, seen.results, seen.pubacks_sent);
    let counted = allocation_counter::measure(|| {
        for n in 4..4 + CYCLES {
            cycle(&mut node, secs(u64::from(n) * 30), n, &mut packets, &mut seen);
        }
    });

    assert_eq!(counted.count_total, 0, "heap allocations in steady state: {counted:?}");
    assert_eq!(counted.bytes_total, 0);
    // The loop did the work it claims: one heartbeat and three results per cycle, and a PUBACK
    // for each of the three control messages.
    assert_eq!(seen.heartbeats - before.0, CYCLES);
    assert_eq!(seen.results - before.1, 3 * CYCLES);
    assert_eq!(seen.pubacks_sent - before.2, 3 * CYCLES);
    assert_eq!(seen.unexpected, 0);
    let stats = node.stats();
    assert_eq!((stats.connects, stats.disconnects), (1, 0));
    assert_eq!((stats.duplicate_commands, stats.commands_rejected), (0, 0));
    assert_eq!((stats.heartbeats_dropped, stats.results_dropped), (0, 0));
    assert!(node.is_connected());

    let last: serde_json::Value = serde_json::from_slice(&seen.last_result[..seen.last_result_len]).unwrap();
    let n = 3 + CYCLES;
    assert_eq!(last["request_id"], format!("status-{n:06}"));
    assert_eq!(last["command"], "status");
    assert_eq!(last["success"], true);
    assert_eq!(last["data"]["status"], "running");
    assert_eq!(last["timestamp"], "2024-01-01T12:21:30Z");
}
