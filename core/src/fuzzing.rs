//! Entry points for the fuzz targets in `fuzz/`. Internal: only the `_fuzzing` feature exposes
//! this module, and it may change at any time.

/// The broker-to-client decoder and the PUBLISH/PUBACK encoders, for the property tests that
/// check them against mqttrs.
pub use crate::codec::packet::{decode, encode_puback, encode_publish, InPublish, Inbound};

use crate::codec::frame::FixedHeader;
use crate::codec::json::RawJson;
use crate::codec::packet;
use crate::node::command::parse_control;
use crate::{Buffers, Config, Instant, Node, Output};

/// Frames and decodes one packet from arbitrary bytes.
pub fn decode_packet(data: &[u8]) {
    if let Ok(Some(header)) = FixedHeader::parse(data) {
        if let Some(whole) = data.get(..header.packet_len()) {
            let _ = packet::decode(whole);
        }
    }
}

/// Parses arbitrary bytes as a control message and as JSON.
pub fn control_command(data: &[u8]) {
    if let Ok(control) = parse_control(data) {
        if let Ok(body) = control.body {
            // Walk every member, as a handler reading its parameters would.
            for (_, value) in body.parameters.members() {
                let _ = value.deserialize::<u64>();
            }
        }
    }
    let _ = RawJson::parse(data);
}

/// Reads arbitrary bytes as each node payload an engine decodes (register, heartbeat, status,
/// result), walking whatever borrowed JSON a successful read hands out.
pub fn node_payloads(data: &[u8]) {
    use crate::codec::message::{HeartbeatView, RegisterView, ResultView, StatusView};
    if let Ok(r) = RegisterView::parse(data) {
        for (_, value) in r.metadata.members() {
            let _ = value.as_escaped_str();
        }
        let _ = r.capabilities.as_str();
    }
    if let Ok(h) = HeartbeatView::parse(data) {
        for (_, value) in h.metrics.members() {
            let _ = value.deserialize::<f64>();
        }
    }
    let _ = StatusView::parse(data);
    if let Ok(r) = ResultView::parse(data) {
        let _ = r.data.map(|d| d.as_object());
    }
}

/// Feeds arbitrary desired documents (records of a scope byte, a length byte and the payload)
/// to the merge, applies each change with an application that rejects some keys, and checks
/// that every report is one JSON object with the merged version.
pub fn desired_state(data: &[u8]) {
    use crate::codec::message::to_json;
    use crate::node::desired::{Desired, DesiredScope, Rejection};
    let mut buf = [0u8; 768];
    let mut desired = Desired::new(&mut buf);
    let mut rest = data;
    while let Some((&[scope, len], tail)) = rest.split_first_chunk() {
        let (payload, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let scope = if scope % 2 == 0 { DesiredScope::Name } else { DesiredScope::Instance };
        if !desired.receive(scope, payload) {
            continue;
        }
        // Odd-length keys are refused, with a reason long enough to need cutting.
        let applied =
            desired.apply(|key, value| if key.len() % 2 == 1 { Err(Rejection::new(value.as_str())) } else { Ok(()) });
        let mut out = [0u8; 4096];
        let report = desired.report(applied, crate::Timestamp::default(), "fuzz", "fuzz-host-1");
        let len = to_json(&report, &mut out).unwrap_or(0);
        let text = out.get(..len).unwrap_or_default();
        let parsed = crate::Object::parse(text);
        assert!(parsed.is_ok(), "a report that is not JSON: {:?}", core::str::from_utf8(text));
        let version = parsed.ok().and_then(|o| o.get("version")?.deserialize::<u64>());
        assert_eq!(version, Some(desired.version()));
    }
}

/// Feeds arbitrary bytes, in chunks sized by the input itself, to a connected node.
pub fn node_input(data: &[u8]) {
    let (mut rx, mut tx, mut outbox, mut desired) = ([0u8; 512], [0u8; 1024], [0u8; 2048], [0u8; 512]);
    let config = Config { commands: &["echo"], ..Config::new("fuzz", "host", 1) };
    let buffers = Buffers::new(&mut rx, &mut tx, &mut outbox).with_desired(&mut desired);
    let Ok(mut node) = Node::<'_>::new(config, buffers, 1, Instant::from_secs(0)) else {
        return;
    };
    let mut now = Instant::from_secs(0);
    node.handle_connected(now);
    drain(&mut node);
    let _ = node.handle_input(now, &[0x20, 0x02, 0x00, 0x00]);
    drain(&mut node);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (mut chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        while !chunk.is_empty() {
            // Odd lengths take the zero-copy path: read straight into the node's buffer.
            let n = if len % 2 == 1 {
                let room = node.receive_buffer();
                let n = room.len().min(chunk.len());
                if let (Some(dst), Some(src)) = (room.get_mut(..n), chunk.get(..n)) {
                    dst.copy_from_slice(src);
                }
                node.handle_received(now, n);
                n
            } else {
                node.handle_input(now, chunk)
            };
            // Refusing input while producing nothing would be a livelock for the caller.
            assert!(drain(&mut node) > 0 || n > 0, "node stalled");
            chunk = chunk.get(n..).unwrap_or_default();
        }
        now = now.saturating_add(crate::Duration::from_millis(u64::from(len) * 100));
        // A deadline of "now" means packets wait for queue room: each turn must make progress.
        let mut turns = 0;
        loop {
            node.handle_timeout(now);
            let produced = drain(&mut node);
            if node.poll_timeout().is_none_or(|t| t > now) {
                break;
            }
            turns += 1;
            assert!(produced > 0 && turns < 1024, "deadline in the past after handle_timeout, and nothing done");
        }
    }
}

fn drain(node: &mut Node<'_>) -> usize {
    let mut n = 0;
    while let Some(out) = node.poll_output() {
        match out {
            Output::Event(crate::Event::Command(c)) => {
                let id = c.id;
                let _ = node.complete(Instant::from_secs(0), id, crate::Outcome::ok("ok"));
            }
            Output::Event(crate::Event::DesiredChanged { .. }) => {
                let _ =
                    node.apply_desired(
                        Instant::from_secs(0),
                        |k, _| if k.len() > 3 { Ok(()) } else { Err("short".into()) },
                    );
            }
            _ => {}
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Runs every committed seed of `target` (`fuzz/seeds/<target>/`) through `run`.
    fn replay(target: &str, run: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        count
    }

    #[test]
    fn every_committed_fuzz_seed_replays_without_a_failure() {
        assert!(replay("decode_packet", super::decode_packet) >= 10);
        assert!(replay("control_command", super::control_command) >= 10);
        assert!(replay("node_input", super::node_input) >= 5);
        assert!(replay("node_payloads", super::node_payloads) >= 8);
        assert!(replay("desired_state", super::desired_state) >= 5);
    }
}
