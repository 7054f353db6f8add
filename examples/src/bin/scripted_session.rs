//! The main SubNodeSync demo: one real [`Node`] against a broker scripted in this file, on a
//! virtual clock, printing every packet of a session from CONNECT to a clean stop.
//!
//! Nothing here opens a socket or reads a clock. The broker answers the node's packets after a
//! fixed 10 ms "network latency", the engine's commands and the faults are scripted, and time is
//! an `Instant` this file advances by hand. That is what a sans-IO core buys: the run below
//! prints the same bytes, timestamps and jittered delays every time.
//!
//! `cargo run --release --bin scripted_session` (add `-- --hex` to hex-dump every packet).

use std::collections::VecDeque;

use mqttrs::{Packet, Pid};
use subnodesync_core::{
    Buffers, CommandId, Config, Duration, Event, Instant, Metric, Metrics, Node, NodeVersion, Outcome, Output,
};
use subnodesync_fixtures::wire;

/// 2024-01-01T12:00:00Z in Unix microseconds: the wall clock when the session starts.
const START_UNIX_MICROS: u64 = 1_704_110_400_000_000;
/// Seed for the reconnect jitter; fixed, so every run prints the same delays.
const SEED: u64 = 2024;
/// How long a packet takes between node and broker, each way.
const LATENCY: Duration = Duration::from_millis(10);
/// This instance's own control topic.
const INSTANCE_CONTROL: &str = "subnodesync/my-app/my-app-server01-12345/control";
/// The control topic every `my-app` instance listens on.
const BROADCAST_CONTROL: &str = "subnodesync/my-app/control";
/// Where the columns of a trace line start, for continuation lines (hex dumps, JSON).
const PAD: &str = "                                 ";

/// The node, the virtual clock, and the broker's half of the conversation.
struct Session<'a> {
    node: Node<'a>,
    start: Instant,
    now: Instant,
    /// Hex-dump every packet, not just the first CONNECT.
    hex_all: bool,
    /// Packets the broker has sent that have not arrived yet, with their arrival time.
    wire: VecDeque<(Instant, String, Vec<u8>)>,
    /// Scripted outcomes of the next transport opens: `false` is "connection refused".
    opens: VecDeque<bool>,
    /// The broker keeps our session (clean session is off) once we have connected once.
    session_stored: bool,
    /// The broker's own packet ids for what it delivers to the node.
    broker_pid: Pid,
}

/// What to do with a polled output once its borrow of the node has ended.
enum Then {
    Say(String),
    Sent(Vec<u8>),
    Open,
    Close,
    Heartbeat,
    Echo(String, CommandId, String),
}

impl Session<'_> {
    fn line(&self, who: &str, text: &str) {
        println!("{:<12} {who:<16} {text}", format!("t=+{}", secs(self.now.saturating_duration_since(self.start))));
    }

    fn note(&self, text: &str) {
        println!("\n# {text}");
    }

    /// Drains the node, acting as adapter (transport, broker replies) and application
    /// (heartbeats, commands) would; runs until the node has nothing more to say.
    fn drain(&mut self) {
        loop {
            let then = match self.node.poll_output() {
                None => return,
                Some(Output::Open) => Then::Open,
                Some(Output::Close) => Then::Close,
                Some(Output::Transmit(bytes)) => Then::Sent(bytes.to_vec()),
                Some(Output::Event(Event::HeartbeatDue)) => Then::Heartbeat,
                Some(Output::Event(Event::Command(cmd))) => {
                    let deadline =
                        cmd.deadline.map_or("none".into(), |d| secs(d.saturating_duration_since(self.start)));
                    let text =
                        format!("event Command `{}` request_id={} deadline=t+{deadline}", cmd.name, cmd.request_id);
                    // The parameters live in the node's receive buffer: copy them before the next call.
                    Then::Echo(text, cmd.id, cmd.parameters.as_raw().as_str().to_owned())
                }
                Some(Output::Event(Event::Disconnected { reason, retry_in })) => {
                    Then::Say(format!("event Disconnected ({reason:?}): jittered backoff, retry in {}", secs(retry_in)))
                }
                Some(Output::Event(event)) => Then::Say(format!("event {event:?}")),
            };
            match then {
                Then::Say(text) => self.line("node", &text),
                Then::Sent(bytes) => self.sent(&bytes),
                Then::Open => {
                    self.line("node", "Output::Open: open a transport to the broker");
                    let up = self.opens.pop_front().unwrap_or(true);
                    self.line("transport", if up { "TCP connected" } else { "connection refused" });
                    if up {
                        self.node.handle_connected(self.now)
                    } else {
                        self.node.handle_disconnected(self.now)
                    }
                }
                Then::Close => {
                    self.line("node", "Output::Close: close the transport");
                    // Whatever the broker had in flight dies with the transport.
                    self.wire.clear();
                }
                Then::Heartbeat => self.send_heartbeat(),
                Then::Echo(text, id, parameters) => {
                    self.line("node", &text);
                    self.run_echo(id, &parameters);
                }
            }
        }
    }

    fn send_heartbeat(&mut self) {
        self.line("node", "event HeartbeatDue: the app samples its metrics");
        // What an adapter would read from the OS: 2.50 % CPU, 128 MiB, 42 threads, plus one of
        // the application's own metrics, which travels in the same `metrics` object.
        let custom = [("queue_depth", Metric::Int(7))];
        let metrics = Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &custom };
        if let Err(e) = self.node.send_heartbeat(self.now, &metrics) {
            self.line("app", &format!("send_heartbeat failed: {e}"));
        }
    }

    /// The application's only command: reply with what it was given.
    fn run_echo(&mut self, id: CommandId, parameters: &str) {
        self.line("app", "runs `echo`: one progress update, then the result with its parameters as data");
        let progress = self.node.progress(self.now, id, "echoing", None);
        let done = self.node.complete(self.now, id, Outcome::ok("echoed").with_data(parameters.as_bytes()));
        if let Err(e) = progress.and(done) {
            self.line("app", &format!("reporting failed: {e}"));
        }
    }

    /// Prints a packet the node sent and schedules the broker's answer to it.
    fn sent(&mut self, bytes: &[u8]) {
        let Ok(Some(packet)) = mqttrs::decode_slice(bytes) else {
            return self.line("node -> broker", &format!("undecodable packet {bytes:02x?}"));
        };
        let mut dump = self.hex_all;
        let (text, reply) = match &packet {
            Packet::Connect(c) => {
                // The first CONNECT is always dumped: it is the packet people get wrong.
                dump |= !self.session_stored;
                let will = c.last_will.as_ref().map(|w| (w.topic, String::from_utf8_lossy(w.message)));
                let (topic, payload) = will.unwrap_or_default();
                let present = u8::from(self.session_stored);
                let connack = wire::connack(self.session_stored, 0);
                self.session_stored = true;
                let text = format!(
                    "CONNECT client_id={} keep_alive={}s clean_session={}\n{PAD}will (QoS 1, retained) on {topic}:\n{PAD}{}",
                    c.client_id, c.keep_alive, c.clean_session, pretty(&payload)
                );
                (text, Some((format!("CONNACK session_present={present} (accepted)"), connack)))
            }
            Packet::Subscribe(s) => {
                let topics: Vec<&str> = s.topics.iter().map(|t| t.topic_path.as_str()).collect();
                let granted = vec![1; topics.len()];
                let suback = wire::suback(s.pid.get(), &granted);
                let text =
                    format!("SUBSCRIBE pid={} at QoS 1:\n{PAD}{}", s.pid.get(), topics.join(&format!("\n{PAD}")));
                (text, Some((format!("SUBACK pid={} granted QoS 1 to all {}", s.pid.get(), topics.len()), suback)))
            }
            Packet::Publish(p) => {
                let pid = p.qospid.pid().map_or(0, Pid::get);
                let flags = format!("{}{}", if p.retain { " retain" } else { "" }, if p.dup { " DUP" } else { "" });
                let body = match p.payload {
                    [] => "(empty payload: clears the retained message)".to_owned(),
                    json => pretty(&String::from_utf8_lossy(json)),
                };
                let text = format!("PUBLISH {} pid={pid} QoS 1{flags}\n{PAD}{body}", p.topic_name);
                (text, Some((format!("PUBACK pid={pid}"), wire::puback(pid))))
            }
            Packet::Puback(pid) => (format!("PUBACK pid={}", pid.get()), None),
            Packet::Disconnect => ("DISCONNECT".to_owned(), None),
            Packet::Pingreq => ("PINGREQ".to_owned(), Some(("PINGRESP".to_owned(), wire::pingresp()))),
            other => (format!("{other:?}").replace("Packet::", ""), None),
        };
        // Short packets are easier to read as their bytes than as a dump.
        let text = if bytes.len() <= 4 { format!("{text}  [{}]", hex(bytes)) } else { text };
        self.line("node -> broker", &text);
        if dump {
            print!("{}", hex_dump(bytes));
        }
        if let Some((label, reply)) = reply {
            self.wire.push_back((self.now + LATENCY, label, reply));
        }
    }

    /// The management engine publishes a command; the broker forwards it straight away.
    fn engine_sends(&mut self, topic: &str, json: &str) {
        let packet = wire::publish(topic, json.as_bytes(), Some(self.broker_pid.get()));
        let label = format!("PUBLISH {topic} pid={} QoS 1\n{PAD}{}", self.broker_pid.get(), pretty(json));
        self.broker_pid = self.broker_pid + 1;
        self.wire.push_front((self.now, label, packet));
        self.run_until(self.now);
    }

    fn deliver(&mut self, label: &str, bytes: &[u8]) {
        self.line("broker -> node", label);
        if self.hex_all {
            print!("{}", hex_dump(bytes));
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let taken = self.node.handle_input(self.now, rest);
            self.drain();
            rest = &rest[taken..];
        }
    }

    /// Moves the clock to `ms` after the start, delivering broker packets and firing node
    /// timers in time order, as an adapter sleeping on socket and `poll_timeout` would.
    fn at(&mut self, ms: u64) {
        self.run_until(self.start + Duration::from_millis(ms));
    }

    fn run_until(&mut self, target: Instant) {
        // A timer that stays due after `handle_timeout` would spin forever; give up on it instead.
        for _ in 0..1000 {
            let arrival = self.wire.front().map(|w| w.0);
            let Some(next) = [self.node.poll_timeout(), arrival].into_iter().flatten().filter(|&t| t <= target).min()
            else {
                break;
            };
            self.now = self.now.max(next);
            if arrival == Some(next) {
                if let Some((_, label, bytes)) = self.wire.pop_front() {
                    self.deliver(&label, &bytes);
                }
            } else {
                self.node.handle_timeout(self.now);
                self.drain();
            }
        }
        self.now = self.now.max(target);
    }
}

/// Breaks a JSON object after each top-level comma: readable, yet every byte is the one sent.
fn pretty(json: &str) -> String {
    let (mut out, mut depth, mut in_string, mut escaped) = (String::new(), 0, false, false);
    for c in json.chars() {
        out.push(c);
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 1 => out.push_str(&format!("\n{PAD} ")),
            _ => {}
        }
    }
    out
}

/// `1.097s`: the trace's time format.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Offset, 16 bytes in hex, and their ASCII: the layout PROTOCOL.md uses.
fn hex_dump(bytes: &[u8]) -> String {
    let rows = bytes.chunks(16).enumerate().map(|(i, row)| {
        let ascii: String =
            row.iter().map(|&b| if b == b' ' || b.is_ascii_graphic() { char::from(b) } else { '.' }).collect();
        format!("{PAD}{:04x}  {:<47}  |{ascii}|\n", i * 16, hex(row))
    });
    rows.collect()
}

fn main() {
    let (mut rx, mut tx, mut outbox) = ([0u8; 2048], [0u8; 1024], [0u8; 4096]);
    let config = Config {
        version: "1.0.0",
        commands: &["echo"],
        node_version: NodeVersion {
            git_version: "v1.0.0",
            git_commit: "abc123",
            build_date: "2024-01-01",
            go_version: "rustc 1.82.0",
            platform: "linux/amd64",
        },
        ..Config::new("my-app", "server01", 12345)
    };
    let start = Instant::from_secs(0);
    let node = match Node::new(config, Buffers::new(&mut rx, &mut tx, &mut outbox), SEED, start) {
        Ok(node) => node,
        Err(e) => return eprintln!("the demo's configuration was refused: {e}"),
    };
    let mut s = Session {
        node,
        start,
        now: start,
        hex_all: std::env::args().any(|a| a == "--hex"),
        wire: VecDeque::new(),
        opens: VecDeque::new(),
        session_stored: false,
        broker_pid: Pid::new(),
    };
    // Timestamps in messages come from this anchor; without it they would count from 1970.
    s.node.set_wall_clock(start, START_UNIX_MICROS);
    println!("SubNodeSync scripted session: node `my-app` on `server01`, pid 12345, instance {}", s.node.instance_id());
    println!("virtual clock starts at 2024-01-01T12:00:00Z; broker latency 10 ms; jitter seed {SEED}");

    s.note("Node::new asked for a transport; once it is up the node sends CONNECT with its last will");
    s.drain();
    s.note("The broker accepts: the node subscribes, registers, goes online; its first heartbeat is due at once");
    s.at(1_000);

    s.note("The engine pings this instance; the built-in answer needs no application code");
    s.at(5_000);
    s.engine_sends(
        INSTANCE_CONTROL,
        r#"{"command":"ping","timestamp":"2024-01-01T12:00:05Z","request_id":"req-1","parameters":{}}"#,
    );
    s.note("Heartbeats follow every 30 s while connected");
    s.at(40_000);

    s.note("An application command, broadcast to every my-app instance, with a 5 s deadline");
    s.engine_sends(
        BROADCAST_CONTROL,
        r#"{"command":"echo","timestamp":"2024-01-01T12:00:40Z","request_id":"req-2","parameters":{"text":"hello","timeout_ms":5000}}"#,
    );
    s.note("The connection drops before the broker's PUBACKs for those results arrive");
    s.at(40_005);
    s.line("transport", "connection reset by peer: the PUBACKs on their way are lost");
    s.wire.clear();
    s.opens.extend([false, true]);
    s.node.handle_disconnected(s.now);
    s.drain();
    s.note("Reconnect with growing jittered delays (the first attempt is refused); once back, the broker resumes\n# the session, register and status are published again, and the unacknowledged results go out with DUP");
    s.at(50_000);

    s.note("A clean stop: status offline, the retained register cleared, DISCONNECT once both are acknowledged");
    s.node.stop(s.now);
    s.drain();
    s.at(51_000);
    println!("\nstats: {:?}", s.node.stats());
}
