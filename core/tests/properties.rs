//! Properties over generated input: splits, garbage, backoff bounds, codec round trips.

mod common;

use common::*;
use proptest::prelude::*;
use subnodesync_core::fuzzing::{self as packet, Inbound};
use subnodesync_core::Backoff;
use subnodesync_core::{Duration, RawJson};
use subnodesync_core::{FixedHeader, MAX_REMAINING_LEN};

/// A broker's side of a busy minute: commands of every kind, acks, pings, junk payloads.
fn broker_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(broker::command("ping", "p1", "{}"));
    s.extend(broker::pingresp());
    s.extend(broker::command("echo", "e1", r#"{"a": [1, {"b": null}]}"#));
    s.extend(broker::publish(&format!("{BASE}/control"), b"{broken", Some(5)));
    // Larger than the node's 2 KiB receive buffer: streamed past, still acknowledged.
    s.extend(broker::publish(&format!("{BASE}/control"), &[b' '; 3000], Some(6)));
    s.extend(broker::command("set_heartbeat_interval", "h1", r#"{"seconds": 10}"#));
    s.extend(broker::puback(999));
    s.extend(broker::publish(BROADCAST, br#"{"command":"status","request_id":"s1"}"#, None));
    s.extend(broker::command("nope", "n1", "{}"));
    s
}

/// What the node did, as three ordered streams: how they interleave depends on when the caller
/// drains, but each stream on its own must not depend on how the bytes were split.
fn transcript(chunks: &[&[u8]], in_place: bool) -> [Vec<Out>; 3] {
    let mut t = Script::connected(config());
    for chunk in chunks {
        if in_place {
            t.broker_sends_in_place(chunk);
        } else {
            t.broker_sends(chunk);
        }
    }
    let (publishes, rest): (Vec<Out>, Vec<Out>) =
        t.out.into_iter().partition(|o| matches!(o, Out::Packet(Sent::Publish(_))));
    let (packets, events) = rest.into_iter().partition(|o| matches!(o, Out::Packet(_)));
    [publishes, packets, events]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_a_valid_stream_gives_the_same_outputs(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let stream = broker_stream();
        let whole = transcript(&[&stream], false);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for p in points {
            chunks.push(&stream[at..p]);
            at = p;
        }
        chunks.push(&stream[at..]);
        prop_assert_eq!(&transcript(&chunks, false), &whole);
        // Read straight into the node's buffer, the same bytes do the same things.
        prop_assert_eq!(&transcript(&chunks, true), &whole);
    }

    #[test]
    fn arbitrary_bytes_and_timing_never_panic_or_busy_loop(
        steps in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..64), 0u64..200_000), 0..40),
    ) {
        let mut t = Script::connected(config());
        for (bytes, step_ms) in steps {
            t.broker_sends(&bytes);
            t.now += Duration::from_millis(step_ms);
            t.tick();
            if let Some(deadline) = t.node.poll_timeout() {
                prop_assert!(deadline > t.now, "deadline {deadline:?} not after now {:?} after handle_timeout", t.now);
            }
            if t.out.contains(&Out::Open) {
                t.out.clear();
                t.node.handle_connected(t.now);
                t.drain();
            }
            t.out.clear();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = packet::decode(&bytes);
        let _ = FixedHeader::parse(&bytes);
        let _ = RawJson::parse(&bytes);
    }

    #[test]
    fn the_json_scanner_agrees_with_serde_json(text in "[\\[\\]{}\",: 0-9.eE+\\-tuelfasn\\\\/bu]{0,24}") {
        let ours = RawJson::parse(text.as_bytes()).is_ok();
        let theirs = serde_json::from_str::<serde_json::Value>(&text).is_ok();
        prop_assert_eq!(ours, theirs, "{:?}", text);
    }

    #[test]
    fn the_json_scanner_agrees_with_serde_json_on_any_string_body(body in proptest::collection::vec(any::<u8>(), 0..80)) {
        // Quotes, backslashes, control bytes and UTF-8 at every alignment of the 8-byte scan.
        let mut text = b"\"".to_vec();
        text.extend(&body);
        text.push(b'"');
        let ours = RawJson::parse(&text).is_ok();
        let theirs = serde_json::from_slice::<serde_json::Value>(&text).is_ok();
        prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn strings_we_write_read_back_as_themselves(s in any::<String>()) {
        let mut buf = vec![0u8; s.len() * 6 + 2];
        let mut w = subnodesync_core::Writer::new(&mut buf);
        w.str(&s);
        let n = w.finish().unwrap();
        prop_assert!(RawJson::parse(&buf[..n]).is_ok());
        prop_assert_eq!(serde_json::from_slice::<String>(&buf[..n]).unwrap(), s);
    }

    #[test]
    fn backoff_delays_stay_within_min_and_cap(min_ms in 1u64..10_000, extra_ms in 0u64..1_000_000, draws in proptest::collection::vec(any::<u64>(), 1..64)) {
        let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(min_ms + extra_ms));
        let mut b = Backoff::new(min, max);
        for r in draws {
            let ceiling = b.ceiling();
            let d = b.delay_from(r);
            prop_assert!(d >= min && d <= ceiling && ceiling <= max, "{d:?} not in [{min:?}, {ceiling:?}] cap {max:?}");
        }
    }

    #[test]
    fn publishes_we_encode_decode_to_the_same_fields(
        topic in "[a-z/]{1,40}", payload in proptest::collection::vec(any::<u8>(), 0..600), pid in proptest::option::of(1u16..),
        retain in any::<bool>(),
    ) {
        let mut buf = vec![0u8; 1024];
        let n = packet::encode_publish(&topic, &payload, pid, retain, &mut buf).unwrap();
        let Ok(Inbound::Publish(p)) = packet::decode(&buf[..n]) else { panic!("undecodable") };
        prop_assert_eq!((p.topic, p.payload, p.pid, p.retain, p.dup), (topic.as_str(), &payload[..], pid, retain, false));
        // Every shorter buffer is refused with an error, never a panic or a partial packet.
        for short in 0..n {
            prop_assert!(packet::encode_publish(&topic, &payload, pid, retain, &mut buf[..short]).is_err());
        }
    }

    #[test]
    fn our_publish_encoder_writes_the_same_bytes_as_mqttrs(
        topic in "[a-z/]{0,300}", payload in proptest::collection::vec(any::<u8>(), 0..20_000), pid in proptest::option::of(1u16..),
        retain in any::<bool>(),
    ) {
        let (mut ours, mut theirs) = (vec![0u8; 32_768], vec![0u8; 32_768]);
        let n = packet::encode_publish(&topic, &payload, pid, retain, &mut ours).unwrap();
        let qospid = match pid {
            Some(p) => mqttrs::QosPid::AtLeastOnce(mqttrs::Pid::try_from(p).unwrap()),
            None => mqttrs::QosPid::AtMostOnce,
        };
        let publish = mqttrs::Publish { dup: false, qospid, retain, topic_name: &topic, payload: &payload };
        let m = mqttrs::encode_slice(&mqttrs::Packet::Publish(publish), &mut theirs).unwrap();
        prop_assert_eq!(&ours[..n], &theirs[..m]);
    }

    #[test]
    fn our_puback_is_the_one_mqttrs_writes(pid in 1u16..) {
        let (mut ours, mut theirs) = ([0u8; 4], [0u8; 4]);
        packet::encode_puback(pid, &mut ours).unwrap();
        mqttrs::encode_slice(&mqttrs::Packet::Puback(mqttrs::Pid::try_from(pid).unwrap()), &mut theirs).unwrap();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn remaining_length_round_trips_over_its_whole_range(len in 0usize..=MAX_REMAINING_LEN) {
        let mut header = vec![0x30u8];
        let mut x = len;
        loop {
            let byte = (x % 128) as u8;
            x /= 128;
            header.push(if x > 0 { byte | 0x80 } else { byte });
            if x == 0 { break; }
        }
        let parsed = FixedHeader::parse(&header).unwrap().unwrap();
        prop_assert_eq!((parsed.remaining_len, parsed.header_len), (len, header.len()));
        // One byte short of the header is "need more", never an error.
        prop_assert_eq!(FixedHeader::parse(&header[..header.len() - 1]), Ok(None));
    }
}
