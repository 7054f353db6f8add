//! The core against the usual std way, on the two hot paths of a node.
//!
//! * `heartbeat`: sample metrics, build the heartbeat JSON, frame it as a QoS 1 PUBLISH, then
//!   take the broker's PUBACK for it.
//! * `command_round_trip`: a control PUBLISH (`ping`) comes in; the node acknowledges it, answers
//!   with a result PUBLISH, then takes the broker's PUBACK for the result.
//! * `heartbeat_json_only`: not a target, a diagnostic: only the heartbeat's JSON serialization.
//!
//! The std side is what a straightforward std port does: owned `String`s, a `HashMap` of metrics,
//! `serde_json` for the payloads, and rumqttc's MQTT 3.1.1 codec (`mqttbytes::v4`) with a
//! `HashMap` of in-flight publishes. Both sides produce the same JSON (checked before measuring)
//! and the same packets. Run with `cargo bench -p subnodesync-core --bench core_vs_std`.
#![allow(missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::time::Duration as StdDuration;

use bytes::BytesMut;
use criterion::{criterion_group, Criterion};
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish};
use rumqttc::mqttbytes::QoS;
use serde::{Deserialize, Serialize};
use subnodesync_core::FixedHeader;
use subnodesync_core::{to_json, HeartbeatMessage};
use subnodesync_core::{Buffers, Config, Instant, Metric, Metrics, Node, Output, Timestamp};

const NODE_NAME: &str = "sensor-gateway";
const HOSTNAME: &str = "edge-node-01";
const PID: u32 = 4242;
const VERSION: &str = "1.4.2";
const INSTANCE_ID: &str = "sensor-gateway-edge-node-01-4242";
const BASE: &str = "subnodesync/sensor-gateway/sensor-gateway-edge-node-01-4242";
/// 2024-01-01T12:00:00Z, the wall clock at `START`.
const WALL_SECS: u64 = 1_704_110_400;
const START_SECS: u64 = 10;
/// Every sample is taken 3600 s after start, so both sides report `uptime` 3600.
const NOW_SECS: u64 = START_SECS + 3600;
/// The request id's counter: fixed width so the packet length never changes.
const COUNTER_PLACEHOLDER: &str = "0000000000";
const CONTROL_JSON: &str =
    r#"{"command":"ping","timestamp":"2024-01-01T12:00:00Z","request_id":"req-0000000000","parameters":{}}"#;
/// rumqttc's `max_size` argument: larger than anything here.
const MAX_PACKET: usize = 64 * 1024;
const CPU_CENTIPERCENT: u32 = 250;
const MEMORY_MB: u64 = 128;
const THREADS: u64 = 42;
const QUEUE_DEPTH: i64 = 7;

fn config() -> Config<'static> {
    Config { version: VERSION, ..Config::new(NODE_NAME, HOSTNAME, PID) }
}

/// The packet id of a PUBLISH with QoS 1 the node transmitted.
fn publish_pid(bytes: &[u8]) -> u16 {
    let header = FixedHeader::parse(bytes).expect("valid header").expect("whole header");
    assert_eq!(header.packet_type(), 3, "expected a PUBLISH");
    let at = header.header_len;
    let topic_len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    let pid_at = at + 2 + topic_len;
    u16::from_be_bytes([bytes[pid_at], bytes[pid_at + 1]])
}

/// The JSON payload of a QoS 1 PUBLISH.
fn publish_payload(bytes: &[u8]) -> &[u8] {
    let header = FixedHeader::parse(bytes).expect("valid header").expect("whole header");
    let at = header.header_len;
    let topic_len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    &bytes[at + 2 + topic_len + 2..]
}

fn puback(pid: u16) -> [u8; 4] {
    let [hi, lo] = pid.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// A control PUBLISH (QoS 1) carrying `CONTROL_JSON`, and where its request id counter sits.
fn control_packet() -> (Vec<u8>, usize) {
    let topic = format!("{BASE}/control");
    let remaining = 2 + topic.len() + 2 + CONTROL_JSON.len();
    assert!((128..16_384).contains(&remaining), "two-byte remaining length");
    let mut packet = vec![0x32, (remaining % 128) as u8 | 0x80, (remaining / 128) as u8];
    packet.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    packet.extend_from_slice(topic.as_bytes());
    packet.extend_from_slice(&[0x00, 0x01]);
    packet.extend_from_slice(CONTROL_JSON.as_bytes());
    let counter = packet.windows(COUNTER_PLACEHOLDER.len()).position(|w| w == COUNTER_PLACEHOLDER.as_bytes());
    (packet, counter.expect("placeholder present"))
}

/// Makes the control packet unique: a new request id (the node ignores the last 32 it answered)
/// and a new packet id.
fn stamp(packet: &mut [u8], counter_at: usize, n: u64) {
    let mut v = n;
    for digit in packet[counter_at..counter_at + COUNTER_PLACEHOLDER.len()].iter_mut().rev() {
        *digit = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let pid_at = packet.len() - CONTROL_JSON.len() - 2;
    let pid = (n % 65_535) as u16 + 1;
    packet[pid_at..pid_at + 2].copy_from_slice(&pid.to_be_bytes());
}

// ----- the core -----

const CUSTOM: [(&str, Metric<'static>); 1] = [("queue_depth", Metric::Int(QUEUE_DEPTH))];

fn core_metrics() -> Metrics<'static> {
    Metrics { cpu_centipercent: CPU_CENTIPERCENT, memory_mb: MEMORY_MB, threads: THREADS, custom: &CUSTOM }
}

/// Buffers as in the crate docs.
struct Memory {
    rx: [u8; 2048],
    tx: [u8; 1024],
    outbox: [u8; 4096],
}

impl Memory {
    fn new() -> Box<Self> {
        Box::new(Self { rx: [0; 2048], tx: [0; 1024], outbox: [0; 4096] })
    }
}

/// A node that is connected, subscribed, and has its register and status acknowledged.
fn connected_node(memory: &mut Memory) -> Node<'_> {
    let start = Instant::from_secs(START_SECS);
    let buffers = Buffers::new(&mut memory.rx, &mut memory.tx, &mut memory.outbox);
    let mut node: Node<'_> = Node::new(config(), buffers, 7, start).expect("valid config");
    node.set_wall_clock(start, WALL_SECS * 1_000_000);
    assert_eq!(node.poll_output(), Some(Output::Open));
    assert_eq!(node.poll_output(), None);
    node.handle_connected(start);
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let drain = |node: &mut Node<'_>, replies: &mut Vec<Vec<u8>>| {
        while let Some(out) = node.poll_output() {
            if let Output::Transmit(bytes) = out {
                let header = FixedHeader::parse(bytes).unwrap().unwrap();
                match header.packet_type() {
                    3 => replies.push(puback(publish_pid(bytes)).to_vec()),
                    8 => {
                        let at = header.header_len;
                        replies.push(vec![0x90, 0x04, bytes[at], bytes[at + 1], 0x01, 0x01]);
                    }
                    _ => {}
                }
            }
        }
    };
    drain(&mut node, &mut replies);
    assert_eq!(node.handle_input(start, &[0x20, 0x02, 0x00, 0x00]), 4);
    drain(&mut node, &mut replies);
    assert!(node.is_connected());
    assert_eq!(replies.len(), 3, "SUBACK, PUBACK for register and for status");
    for reply in replies.drain(..) {
        assert_eq!(node.handle_input(start, &reply), reply.len());
        drain(&mut node, &mut Vec::new());
    }
    node
}

/// One heartbeat through the core: build, transmit, PUBACK. Returns the transmitted length.
fn core_heartbeat(node: &mut Node<'_>, now: Instant, metrics: &Metrics<'_>) -> usize {
    assert!(node.send_heartbeat(now, metrics).expect("room in the outbox"));
    let (pid, len) = match node.poll_output() {
        Some(Output::Transmit(bytes)) => (publish_pid(black_box(bytes)), bytes.len()),
        other => panic!("expected the heartbeat, got {other:?}"),
    };
    assert!(node.poll_output().is_none());
    let ack = puback(pid);
    assert_eq!(node.handle_input(now, &ack), ack.len());
    assert!(node.poll_output().is_none());
    len
}

/// One command through the core: control PUBLISH in, PUBACK and result out, result PUBACK in.
fn core_command(node: &mut Node<'_>, now: Instant, control: &[u8]) -> usize {
    assert_eq!(node.handle_input(now, control), control.len());
    let mut sent = 0;
    let mut result_pid = None;
    while let Some(out) = node.poll_output() {
        match out {
            Output::Transmit(bytes) => {
                sent += black_box(bytes).len();
                if bytes[0] & 0xF0 == 0x30 {
                    result_pid = Some(publish_pid(bytes));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ack = puback(result_pid.expect("a result was published"));
    assert_eq!(node.handle_input(now, &ack), ack.len());
    assert!(node.poll_output().is_none());
    sent
}

// ----- the usual std way -----

#[derive(Serialize)]
struct StdHeartbeat<'a> {
    timestamp: String,
    node_name: &'a str,
    instance_id: &'a str,
    status: &'a str,
    pid: u32,
    uptime: u64,
    version: &'a str,
    hostname: &'a str,
    metrics: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct StdControl {
    command: String,
    #[allow(dead_code)]
    timestamp: Option<String>,
    request_id: String,
    #[serde(default)]
    parameters: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct StdResult<'a> {
    timestamp: String,
    node_name: &'a str,
    instance_id: &'a str,
    request_id: String,
    command: String,
    success: bool,
    message: String,
    data: Option<serde_json::Value>,
    state: &'a str,
}

/// RFC 3339 with second precision, as a std port without chrono would write it.
fn rfc3339(unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The state a std node keeps: its names and topics as `String`s, the codec's buffers, and the
/// publishes awaiting PUBACK (as rumqttc's `MqttState` keeps them, for resending).
struct StdNode {
    node_name: String,
    instance_id: String,
    hostname: String,
    version: String,
    heartbeat_topic: String,
    result_topic: String,
    control_topic: String,
    broadcast_topic: String,
    started_secs: u64,
    next_pkid: u16,
    inflight: HashMap<u16, Publish>,
    recent_requests: VecDeque<String>,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl StdNode {
    fn new() -> Self {
        let instance_id = format!("{NODE_NAME}-{HOSTNAME}-{PID}");
        let base = format!("subnodesync/{NODE_NAME}/{instance_id}");
        Self {
            node_name: NODE_NAME.to_owned(),
            hostname: HOSTNAME.to_owned(),
            version: VERSION.to_owned(),
            heartbeat_topic: format!("{base}/heartbeat"),
            result_topic: format!("{base}/result"),
            control_topic: format!("{base}/control"),
            broadcast_topic: format!("subnodesync/{NODE_NAME}/control"),
            instance_id,
            started_secs: START_SECS,
            next_pkid: 0,
            inflight: HashMap::new(),
            recent_requests: VecDeque::new(),
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(4096),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    fn sample_metrics() -> HashMap<String, serde_json::Value> {
        let mut metrics = HashMap::new();
        let cpu = f64::from(CPU_CENTIPERCENT) / 100.0;
        metrics.insert("process_cpu_usage_percent".to_owned(), format!("{cpu:.2}").into());
        metrics.insert("process_memory_usage_mb".to_owned(), MEMORY_MB.into());
        metrics.insert("process_goroutine_count".to_owned(), THREADS.into());
        metrics.insert("queue_depth".to_owned(), QUEUE_DEPTH.into());
        metrics
    }

    /// Encodes `payload` as a QoS 1 PUBLISH into `write_buf` and remembers it until its PUBACK.
    fn publish(&mut self, topic: String, payload: Vec<u8>) -> u16 {
        let pkid = self.pkid();
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        publish.write(&mut self.write_buf).expect("encodes");
        self.inflight.insert(pkid, publish);
        pkid
    }

    /// Reads whatever the "socket" delivered and handles the packets in it.
    fn handle_input(&mut self, now_secs: u64, bytes: &[u8]) {
        self.read_buf.extend_from_slice(bytes);
        while !self.read_buf.is_empty() {
            match Packet::read(&mut self.read_buf, MAX_PACKET).expect("well-formed input") {
                Packet::PubAck(ack) => {
                    self.inflight.remove(&ack.pkid);
                }
                Packet::Publish(publish) => self.on_publish(now_secs, publish),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn on_publish(&mut self, now_secs: u64, publish: Publish) {
        PubAck::new(publish.pkid).write(&mut self.write_buf).expect("encodes");
        if publish.topic != self.control_topic && publish.topic != self.broadcast_topic {
            return;
        }
        let control: StdControl = serde_json::from_slice(&publish.payload).expect("valid control message");
        if self.recent_requests.contains(&control.request_id) {
            return;
        }
        let (success, message, data) = match control.command.as_str() {
            "ping" => (true, "pong".to_owned(), None),
            other => (false, format!("unknown command: {other}"), Some(control.parameters.into())),
        };
        if self.recent_requests.len() == 32 {
            self.recent_requests.pop_front();
        }
        self.recent_requests.push_back(control.request_id.clone());
        let result = StdResult {
            timestamp: rfc3339(WALL_SECS + now_secs - START_SECS),
            node_name: &self.node_name,
            instance_id: &self.instance_id,
            request_id: control.request_id,
            command: control.command,
            success,
            message,
            data,
            state: "done",
        };
        let payload = serde_json::to_vec(&result).expect("serializes");
        self.publish(self.result_topic.clone(), payload);
    }

    /// Builds and frames a heartbeat into `write_buf`; returns its packet id.
    fn send_heartbeat(&mut self, now_secs: u64) -> u16 {
        let heartbeat = StdHeartbeat {
            timestamp: rfc3339(WALL_SECS + now_secs - START_SECS),
            node_name: &self.node_name,
            instance_id: &self.instance_id,
            status: "running",
            pid: PID,
            uptime: now_secs - self.started_secs,
            version: &self.version,
            hostname: &self.hostname,
            metrics: Self::sample_metrics(),
        };
        let payload = serde_json::to_vec(&heartbeat).expect("serializes");
        self.publish(self.heartbeat_topic.clone(), payload)
    }

    /// What would go to the socket; the caller has written it.
    fn take_written(&mut self) -> usize {
        let len = black_box(&self.write_buf[..]).len();
        self.write_buf.clear();
        len
    }
}

fn std_heartbeat(node: &mut StdNode) -> usize {
    let pkid = node.send_heartbeat(NOW_SECS);
    let len = node.take_written();
    node.handle_input(NOW_SECS, &puback(pkid));
    len
}

fn std_command(node: &mut StdNode, control: &[u8]) -> usize {
    node.handle_input(NOW_SECS, control);
    let pkid = node.next_pkid;
    let len = node.take_written();
    node.handle_input(NOW_SECS, &puback(pkid));
    len
}

// ----- checks and benches -----

/// Both sides must send the same JSON and comparable packets, or the comparison means nothing.
fn check_equivalence() {
    let now = Instant::from_secs(NOW_SECS);
    let mut memory = Memory::new();
    let mut core = connected_node(&mut memory);
    let mut std_node = StdNode::new();
    assert_eq!(core.instance_id(), INSTANCE_ID);
    assert_eq!(std_node.instance_id, INSTANCE_ID);

    assert!(core.send_heartbeat(now, &core_metrics()).unwrap());
    let Some(Output::Transmit(core_hb)) = core.poll_output() else { panic!("no heartbeat") };
    let core_json: serde_json::Value = serde_json::from_slice(publish_payload(core_hb)).unwrap();
    let core_hb_len = core_hb.len();
    std_node.send_heartbeat(NOW_SECS);
    let Packet::Publish(std_hb) = Packet::read(&mut std_node.write_buf.split(), MAX_PACKET).unwrap() else {
        panic!("no std heartbeat")
    };
    let std_json: serde_json::Value = serde_json::from_slice(&std_hb.payload).unwrap();
    assert_eq!(core_json, std_json, "heartbeat payloads differ");
    assert_eq!(std_hb.topic, format!("{BASE}/heartbeat"));
    eprintln!("heartbeat PUBLISH: core {core_hb_len} bytes, std {} bytes", std_hb.size());

    let (mut control, at) = control_packet();
    stamp(&mut control, at, 1);
    assert!(core.handle_input(now, &control) == control.len());
    let mut core_result = None;
    let mut core_puback = None;
    while let Some(out) = core.poll_output() {
        match out {
            Output::Transmit(b) if b[0] == 0x40 => core_puback = Some(b.to_vec()),
            Output::Transmit(b) => core_result = Some(b.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let core_result = core_result.expect("core published a result");
    std_node.write_buf.clear();
    std_node.handle_input(NOW_SECS, &control);
    let mut written = std_node.write_buf.split();
    let Packet::PubAck(std_puback) = Packet::read(&mut written, MAX_PACKET).unwrap() else { panic!("no std PUBACK") };
    let Packet::Publish(std_result) = Packet::read(&mut written, MAX_PACKET).unwrap() else { panic!("no std result") };
    assert_eq!(core_puback.as_deref(), Some(&puback(std_puback.pkid)[..]), "PUBACKs differ");
    let core_json: serde_json::Value = serde_json::from_slice(publish_payload(&core_result)).unwrap();
    let std_json: serde_json::Value = serde_json::from_slice(&std_result.payload).unwrap();
    assert_eq!(core_json, std_json, "result payloads differ");
    assert_eq!(core_json["request_id"], "req-0000000001");
    assert_eq!(std_result.topic, format!("{BASE}/result"));
}

fn heartbeat(c: &mut Criterion) {
    let mut group = c.benchmark_group("heartbeat");
    let now = Instant::from_secs(NOW_SECS);
    let metrics = core_metrics();
    let mut memory = Memory::new();
    let mut core = connected_node(&mut memory);
    group.bench_function("core", |b| b.iter(|| core_heartbeat(&mut core, now, black_box(&metrics))));
    let mut std_node = StdNode::new();
    group.bench_function("std", |b| b.iter(|| std_heartbeat(&mut std_node)));
    group.finish();
}

/// Not a target: only the heartbeat JSON, to show how much of `heartbeat` the serializer is.
fn heartbeat_json_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("heartbeat_json_only");
    let heartbeat = HeartbeatMessage {
        timestamp: Timestamp::from_unix_secs(WALL_SECS + NOW_SECS - START_SECS),
        node_name: NODE_NAME,
        instance_id: INSTANCE_ID,
        status: "running",
        pid: PID,
        uptime: NOW_SECS - START_SECS,
        version: VERSION,
        hostname: HOSTNAME,
        metrics: core_metrics(),
    };
    let mut buf = [0u8; 1024];
    group.bench_function("core", |b| b.iter(|| to_json(black_box(&heartbeat), &mut buf).expect("fits")));
    let std_heartbeat = StdHeartbeat {
        timestamp: rfc3339(WALL_SECS + NOW_SECS - START_SECS),
        node_name: NODE_NAME,
        instance_id: INSTANCE_ID,
        status: "running",
        pid: PID,
        uptime: NOW_SECS - START_SECS,
        version: VERSION,
        hostname: HOSTNAME,
        metrics: StdNode::sample_metrics(),
    };
    group.bench_function("std", |b| b.iter(|| serde_json::to_vec(black_box(&std_heartbeat)).expect("serializes")));
    group.finish();
}

fn command_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("command_round_trip");
    let now = Instant::from_secs(NOW_SECS);
    let (mut control, at) = control_packet();
    let mut memory = Memory::new();
    let mut core = connected_node(&mut memory);
    let mut n = 0u64;
    group.bench_function("core", |b| {
        b.iter(|| {
            n += 1;
            stamp(&mut control, at, n);
            core_command(&mut core, now, black_box(&control))
        })
    });
    assert_eq!(core.stats().duplicate_commands, 0, "every request id was new");
    let mut std_node = StdNode::new();
    let mut n = 0u64;
    group.bench_function("std", |b| {
        b.iter(|| {
            n += 1;
            stamp(&mut control, at, n);
            std_command(&mut std_node, black_box(&control))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(StdDuration::from_secs(1))
        .measurement_time(StdDuration::from_secs(3));
    targets = heartbeat, command_round_trip, heartbeat_json_only
}

fn main() {
    eprintln!(
        "size_of::<Node>() = {} bytes (CMDS = 8, MSGS = 16; the rx/tx/outbox buffers are borrowed, not included)",
        std::mem::size_of::<Node<'static>>()
    );
    check_equivalence();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
