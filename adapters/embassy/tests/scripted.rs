//! The runner against scripted brokers, on embassy-time's std driver: every way a connection can
//! fail comes back as its typed error and is followed by a reconnect, and nothing the broker
//! sends makes the adapter panic. Each script ends with the engine's `stop`, which ends `run`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use embassy_futures::block_on;
use embassy_futures::select::{select, Either};
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use subnodesync_core::Rng;
use subnodesync_core::{Command, Config, DecodeError, DisconnectReason, Event, Metrics, Node, NodeError, Outcome};
use subnodesync_embassy::{run, Connector, Handler, Handlers, Notice, Resources, Sampler, Stopped, TransportError};
use subnodesync_fixtures::wire;

const CONTROL: &str = "subnodesync/scripted/scripted-host-1/control";

/// An accepting CONNACK without a session.
fn connack() -> Vec<u8> {
    wire::connack(false, 0)
}

/// A QoS 0 PUBLISH of `payload` on the node's control topic.
fn control(payload: &str) -> Vec<u8> {
    wire::publish(CONTROL, payload.as_bytes(), None)
}

fn stop() -> Vec<u8> {
    control(r#"{"command":"stop","request_id":"r-stop"}"#)
}

/// What the broker does with one connection attempt.
enum Plan {
    /// The connect fails.
    Refuse,
    /// The connect never finishes.
    Hang,
    /// The connection reads these chunks in order (an empty one reads as end of stream), then
    /// waits; with `fail_writes` every write fails.
    Serve { chunks: Vec<Vec<u8>>, fail_writes: bool },
}

fn serve(chunks: Vec<Vec<u8>>) -> Plan {
    Plan::Serve { chunks, fail_writes: false }
}

/// Everything the test looks at afterwards.
#[derive(Default)]
struct Seen {
    connects: usize,
    written: Vec<u8>,
    transport: Vec<TransportError<&'static str>>,
    disconnects: Vec<DisconnectReason>,
    refused: Vec<NodeError>,
}

struct ScriptedBroker {
    plans: VecDeque<Plan>,
    seen: Rc<RefCell<Seen>>,
}

struct Connection {
    chunks: VecDeque<Vec<u8>>,
    fail_writes: bool,
    seen: Rc<RefCell<Seen>>,
}

impl Connector for ScriptedBroker {
    type Connection<'c> = Connection;
    type Error = &'static str;

    async fn connect(&mut self) -> Result<Connection, &'static str> {
        self.seen.borrow_mut().connects += 1;
        match self.plans.pop_front() {
            Some(Plan::Refuse) => Err("refused"),
            Some(Plan::Serve { chunks, fail_writes }) => {
                Ok(Connection { chunks: chunks.into(), fail_writes, seen: self.seen.clone() })
            }
            Some(Plan::Hang) | None => core::future::pending().await,
        }
    }
}

impl ErrorType for Connection {
    type Error = ErrorKind;
}

impl Read for Connection {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let Some(mut chunk) = self.chunks.pop_front() else { return core::future::pending().await };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        if n < chunk.len() {
            self.chunks.push_front(chunk.split_off(n));
        }
        Ok(n)
    }
}

impl Write for Connection {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.fail_writes {
            return Err(ErrorKind::BrokenPipe);
        }
        self.seen.borrow_mut().written.extend_from_slice(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// `bad`: answers with data that is not JSON.
struct NotJson;

impl Handler for NotJson {
    fn handle<'s>(&'s mut self, _: &Command<'_>, _: &'s mut [u8]) -> Outcome<'s> {
        Outcome::ok("done").with_data(b"{not json")
    }
}

struct Zeros;

impl Sampler for Zeros {
    fn sample(&mut self) -> Metrics<'_> {
        Metrics::default()
    }
}

/// Runs a node against `plans` until `run` returns; fails the test after five seconds.
fn drive(plans: Vec<Plan>) -> (Stopped, Seen) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut broker = ScriptedBroker { plans: plans.into(), seen: seen.clone() };
    let stopped = block_on(async {
        let mut bad = NotJson;
        let mut handlers: Handlers<'_, 1> = Handlers::new();
        handlers.add("bad", &mut bad).expect("room for a handler");
        let commands = handlers.names();
        let config = Config {
            commands: &commands,
            reconnect_min: Duration::from_millis(5),
            reconnect_max: Duration::from_millis(10),
            connect_timeout: Duration::from_millis(100),
            stop_timeout: Duration::from_millis(20),
            ..Config::new("scripted", "host", 1)
        };
        let mut resources: Resources = Resources::new();
        let (buffers, scratch) = resources.split();
        let mut node: Node<'_> = Node::new(config, buffers, 7, Instant::now()).expect("a valid node");
        let notify = |notice: Notice<'_, &'static str>| {
            let mut seen = seen.borrow_mut();
            match notice {
                Notice::Transport(e) => seen.transport.push(e),
                Notice::Event(Event::Disconnected { reason, .. }) => seen.disconnects.push(reason),
                Notice::ResultRefused(e) => seen.refused.push(e),
                _ => {}
            }
        };
        let mut sampler = Zeros;
        let running = run(&mut node, &mut broker, &mut handlers, &mut sampler, scratch, notify);
        match select(running, Timer::after(Duration::from_secs(5))).await {
            Either::First(stopped) => stopped,
            Either::Second(()) => panic!("run did not end within 5 s"),
        }
    });
    drop(broker);
    let seen = Rc::into_inner(seen).expect("the broker is gone").into_inner();
    (stopped, seen)
}

fn written_text(seen: &Seen) -> String {
    String::from_utf8_lossy(&seen.written).into_owned()
}

#[test]
fn refused_connects_are_reported_and_retried_until_one_succeeds() {
    let (stopped, seen) = drive(vec![Plan::Refuse, Plan::Refuse, serve(vec![connack(), stop()])]);
    assert_eq!(stopped, Stopped::StopRequested);
    assert_eq!(seen.connects, 3);
    assert_eq!(seen.transport, [TransportError::Connect("refused"), TransportError::Connect("refused")]);
    assert_eq!(seen.disconnects, [DisconnectReason::Transport, DisconnectReason::Transport]);
    assert!(written_text(&seen).contains(r#""status":"offline""#), "{}", written_text(&seen));
}

#[test]
fn a_connect_that_never_finishes_is_dropped_at_the_connect_timeout() {
    let started = Instant::now();
    let (stopped, seen) = drive(vec![Plan::Hang, serve(vec![connack(), stop()])]);
    assert_eq!(stopped, Stopped::StopRequested);
    assert_eq!(seen.transport, [TransportError::ConnectTimeout]);
    assert_eq!(seen.disconnects, [DisconnectReason::ConnectTimeout]);
    assert!(started.elapsed() >= Duration::from_millis(100), "gave up before the connect timeout");
}

#[test]
fn end_of_stream_and_failed_writes_are_reported_and_reconnected() {
    let (stopped, seen) = drive(vec![
        serve(vec![connack(), Vec::new()]),
        Plan::Serve { chunks: vec![connack()], fail_writes: true },
        serve(vec![connack(), stop()]),
    ]);
    assert_eq!(stopped, Stopped::StopRequested);
    assert_eq!(seen.transport, [TransportError::Closed, TransportError::Write(ErrorKind::BrokenPipe)]);
    assert_eq!(seen.connects, 3);
}

#[test]
fn a_packet_no_broker_sends_closes_the_connection_as_a_protocol_violation() {
    // CONNECT travels from clients to brokers only.
    let (stopped, seen) = drive(vec![serve(vec![connack(), vec![0x10, 0x00]]), serve(vec![connack(), stop()])]);
    assert_eq!(stopped, Stopped::StopRequested);
    assert_eq!(seen.disconnects, [DisconnectReason::Protocol(DecodeError::UnexpectedPacket(1))]);
    // The core closed the connection itself: no transport error.
    assert_eq!(seen.transport, []);
}

#[test]
fn random_bytes_from_the_broker_never_panic_and_the_node_reconnects() {
    let mut rng = Rng::new(42);
    for round in 0..50 {
        let garbage: Vec<u8> = (0..64).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
        // Whatever the bytes do, the connection ends: the core closes it, or end of stream.
        let first = serve(vec![connack(), garbage.clone(), Vec::new()]);
        let (stopped, seen) = drive(vec![first, serve(vec![connack(), stop()])]);
        assert_eq!((stopped, seen.connects), (Stopped::StopRequested, 2), "round {round}: {garbage:02x?}");
        assert!(
            matches!(seen.disconnects.as_slice(), [DisconnectReason::Protocol(_) | DisconnectReason::Transport]),
            "round {round}: {:?} after {garbage:02x?}",
            seen.disconnects
        );
    }
}

#[test]
fn a_result_that_is_not_json_is_refused_and_answered_with_a_failure() {
    let bad = control(r#"{"command":"bad","request_id":"r-bad"}"#);
    let (stopped, seen) = drive(vec![serve(vec![connack(), bad, stop()])]);
    assert_eq!(stopped, Stopped::StopRequested);
    assert!(matches!(seen.refused.as_slice(), [NodeError::InvalidData(_)]), "{:?}", seen.refused);
    let text = written_text(&seen);
    assert!(
        text.contains(r#""request_id":"r-bad","command":"bad","success":false,"message":"result could not be sent: result data: invalid json at byte 1""#),
        "{text}"
    );
}
