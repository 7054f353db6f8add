//! The JSON payloads of the wire contract (PROTOCOL.md).
//!
//! Field names and JSON types follow the original design document exactly, so an engine written
//! against it reads these unchanged. [`field`] names every field once; the encoders write what
//! nodes publish (and the control message an engine sends), the views read it back.

mod encode;
mod names;
mod view;

pub use encode::{
    Capabilities, ControlMessage, HeartbeatMessage, Metadata, Metric, Metrics, NodeVersion, RegisterMessage,
    ResultMessage, StatusMessage,
};
pub use names::field;
pub(crate) use names::key;
pub(crate) use view::members;
pub use view::{HeartbeatView, RegisterView, ResultView, StatusView};

use super::json::Writer;
use crate::error::{EncodeError, Unfit};

/// Opens an object with its first member's key (`key` without its leading comma). Inlined, as
/// [`Writer::raw`] is, so the key stays a constant to copy.
#[inline(always)]
pub(crate) fn open(w: &mut Writer<'_>, key: &[u8]) {
    w.raw(b"{");
    w.raw(key.get(1..).unwrap_or_default());
}

/// A payload that writes itself as JSON.
pub trait ToJson {
    /// Writes the whole JSON text.
    fn write_json(&self, w: &mut Writer<'_>);
}

/// Writes `message` as JSON into `buf`, returning the length written.
pub fn to_json<T: ToJson + ?Sized>(message: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    message.write_json(&mut w);
    w.finish()
}

/// Writes `message` as JSON into `buf`, returning the length written, or how many bytes it
/// takes when `buf` is too small.
pub(crate) fn to_json_sized<T: ToJson + ?Sized>(message: &T, buf: &mut [u8]) -> Result<usize, Unfit> {
    let mut w = Writer::new(buf);
    message.write_json(&mut w);
    w.finish_sized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::{Object, RawJson};
    use crate::codec::packet::encode_publish_with;
    use crate::error::PayloadError;
    use crate::time::Timestamp;

    fn text(buf: &[u8]) -> &str {
        core::str::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_heartbeat_decodes_to_what_was_encoded() {
        let custom = [("queue_depth", Metric::Int(7))];
        let hb = HeartbeatMessage {
            timestamp: Timestamp::from_unix_secs(1_704_110_400),
            node_name: "my-app",
            instance_id: "my-app-server01-12345",
            status: "running",
            pid: 12345,
            uptime: 99,
            version: "1.0.0",
            hostname: "server01",
            metrics: Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &custom },
        };
        let mut buf = [0u8; 512];
        let n = to_json(&hb, &mut buf).unwrap();
        let v = HeartbeatView::parse(&buf[..n]).unwrap();
        assert_eq!(v.timestamp, "2024-01-01T12:00:00Z");
        assert_eq!(
            (v.node_name, v.instance_id, v.status, v.version, v.hostname),
            ("my-app", "my-app-server01-12345", "running", "1.0.0", "server01")
        );
        assert_eq!((v.pid, v.uptime, v.cpu_centipercent, v.memory_mb, v.threads), (12345, 99, 250, 128, 42));
        assert_eq!(v.metrics.get("queue_depth").map(|m| m.as_str()), Some("7"));
    }

    #[test]
    fn register_status_and_result_decode_to_what_was_encoded() {
        let mut buf = [0u8; 1024];
        let extra = [("zone", "eu")];
        let reg = RegisterMessage {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "a",
            instance_id: "a-h-1",
            version: "2.0",
            pid: u32::MAX,
            start_time: Timestamp::from_unix_secs(60),
            capabilities: Capabilities { fixed: &["mqtt_control", "heartbeat"], extra: &["x"] },
            metadata: Metadata { hostname: "h", extra: &extra },
            node_version: NodeVersion { git_commit: "abc", ..NodeVersion::UNKNOWN },
        };
        let n = to_json(&reg, &mut buf).unwrap();
        let v = RegisterView::parse(&buf[..n]).unwrap();
        assert_eq!((v.node_name, v.instance_id, v.version, v.pid), ("a", "a-h-1", "2.0", u32::MAX));
        assert_eq!((v.timestamp, v.start_time), ("1970-01-01T00:00:00Z", "1970-01-01T00:01:00Z"));
        assert_eq!(v.capabilities.as_str(), r#"["mqtt_control","heartbeat","x"]"#);
        assert_eq!(v.metadata.get("zone").and_then(|z| z.as_escaped_str()), Some("eu"));
        assert_eq!(v.node_version, NodeVersion { git_commit: "abc", ..NodeVersion::UNKNOWN });

        let st = StatusMessage {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "a",
            instance_id: "a-h-1",
            status: "lost",
        };
        let n = to_json(&st, &mut buf).unwrap();
        let v = StatusView::parse(&buf[..n]).unwrap();
        assert_eq!((v.node_name, v.instance_id, v.status), ("a", "a-h-1", "lost"));

        let data = RawJson::parse(br#"{"k":[1]}"#).unwrap();
        for (success, data) in [(true, Some(data)), (false, None)] {
            let r = ResultMessage {
                timestamp: Timestamp::from_unix_secs(0),
                node_name: "a",
                instance_id: "a-h-1",
                request_id: r#"r\"1"#,
                command: "echo",
                success,
                message: "say \"hi\"",
                data,
                state: "done",
            };
            let n = to_json(&r, &mut buf).unwrap();
            let v = ResultView::parse(&buf[..n]).unwrap();
            assert_eq!((v.request_id, v.command, v.success, v.message), (r#"r\"1"#, "echo", success, r#"say \"hi\""#));
            assert_eq!((v.data, v.is_final()), (data, true));
        }
    }

    #[test]
    fn a_control_message_is_read_back_by_the_node_parser() {
        let params = Object::parse(br#"{"timeout_ms":1500,"x":"y"}"#).unwrap();
        let c = ControlMessage {
            command: "echo",
            timestamp: Timestamp::from_unix_secs(0),
            request_id: "req-1",
            parameters: Some(params),
        };
        let mut buf = [0u8; 256];
        let n = to_json(&c, &mut buf).unwrap();
        assert_eq!(
            text(&buf[..n]),
            r#"{"command":"echo","timestamp":"1970-01-01T00:00:00Z","request_id":"req-1","parameters":{"timeout_ms":1500,"x":"y"}}"#
        );
        let parsed = crate::node::command::parse_control(&buf[..n]).unwrap();
        assert_eq!(parsed.request_id, "req-1");
        let body = parsed.body.unwrap();
        assert_eq!((body.name, body.parameters.get("x").and_then(|x| x.as_escaped_str())), ("echo", Some("y")));
        let bare = ControlMessage { parameters: None, ..c };
        let n = to_json(&bare, &mut buf).unwrap();
        assert!(text(&buf[..n]).ends_with(r#""parameters":{}}"#));
    }

    #[test]
    fn payloads_that_break_the_contract_get_a_typed_error() {
        assert!(matches!(StatusView::parse(b"{"), Err(PayloadError::Malformed(_))));
        assert_eq!(StatusView::parse(b"[1]"), Err(PayloadError::Malformed(crate::error::JsonError::NotAnObject)));
        assert_eq!(
            StatusView::parse(br#"{"timestamp":"t","node_name":"a","instance_id":"i"}"#),
            Err(PayloadError::MissingField("status"))
        );
        assert_eq!(
            StatusView::parse(br#"{"timestamp":"t","node_name":1,"instance_id":"i","status":"x"}"#),
            Err(PayloadError::WrongType("node_name"))
        );
        let hb = |pid: &str, cpu: &str| {
            std::format!(
                r#"{{"timestamp":"t","node_name":"a","instance_id":"i","status":"running","pid":{pid},"uptime":1,"version":"v","hostname":"h","metrics":{{"process_cpu_usage_percent":{cpu},"process_memory_usage_mb":1,"process_goroutine_count":1}}}}"#
            )
        };
        assert_eq!(HeartbeatView::parse(hb("1", r#""3.5""#).as_bytes()).map(|h| h.cpu_centipercent), Ok(350));
        assert_eq!(HeartbeatView::parse(hb("1", r#""7""#).as_bytes()).map(|h| h.cpu_centipercent), Ok(700));
        for (pid, cpu, field) in [
            ("-1", r#""1.00""#, "pid"),
            ("4294967296", r#""1.00""#, "pid"),
            ("1.5", r#""1.00""#, "pid"),
            ("1", "1.00", "process_cpu_usage_percent"),
            ("1", r#""x.00""#, "process_cpu_usage_percent"),
            ("1", r#""99999999999.00""#, "process_cpu_usage_percent"),
        ] {
            assert_eq!(
                HeartbeatView::parse(hb(pid, cpu).as_bytes()),
                Err(PayloadError::WrongType(field)),
                "{pid} {cpu}"
            );
        }
    }

    #[test]
    fn a_field_of_the_contract_given_twice_is_refused_however_it_is_spelled() {
        let status = |extra: &str| {
            std::format!(r#"{{"timestamp":"t","node_name":"a","instance_id":"a-h-1","status":"online"{extra}}}"#)
        };
        assert!(StatusView::parse(status(r#","other":1,"other":2"#).as_bytes()).is_ok(), "unknown keys are not ours");
        for twice in [r#","instance_id":"a-h-2""#, r#","instance\u005fid":"a-h-2""#, r#","\u0069nstance_id":"x""#] {
            assert_eq!(
                StatusView::parse(status(twice).as_bytes()),
                Err(PayloadError::DuplicateField("instance_id")),
                "{twice}"
            );
        }
        let metrics = r#"{"timestamp":"t","node_name":"a","instance_id":"i","status":"running","pid":1,"uptime":1,"version":"v","hostname":"h","metrics":{"process_cpu_usage_percent":"1.00","process_memory_usage_mb":1,"process_goroutine_count":1,"process_memory_usage_mb":9}}"#;
        assert_eq!(
            HeartbeatView::parse(metrics.as_bytes()).err(),
            Some(PayloadError::DuplicateField("process_memory_usage_mb"))
        );
        let register = |metadata: &str, node_version: &str| {
            std::format!(
                r#"{{"timestamp":"t","node_name":"a","instance_id":"a-h-1","version":"1","pid":1,"start_time":"t","capabilities":[],"metadata":{metadata},"node_version":{node_version}}}"#
            )
        };
        let nv = r#"{"git_version":"v","git_commit":"c","build_date":"d","go_version":"g","platform":"p"}"#;
        assert_eq!(
            RegisterView::parse(register(r#"{"hostname":"h"}"#, nv).as_bytes()).map(|r| r.hostname),
            Ok(Some("h"))
        );
        assert_eq!(RegisterView::parse(register("{}", nv).as_bytes()).map(|r| r.hostname), Ok(None));
        assert_eq!(
            RegisterView::parse(register(r#"{"hostname":"a","hostn\u0061me":"b"}"#, nv).as_bytes()).err(),
            Some(PayloadError::DuplicateField("hostname"))
        );
        let twice = nv.replace(r#""platform":"p""#, r#""platform":"p","platform":"q""#);
        assert_eq!(
            RegisterView::parse(register("{}", &twice).as_bytes()).err(),
            Some(PayloadError::DuplicateField("platform"))
        );
    }

    #[test]
    fn cpu_is_a_two_decimal_string_and_custom_metrics_join_the_object() {
        let custom = [("queue_depth", Metric::Int(7)), ("process_goroutine_count", Metric::Int(1))];
        let m = Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 42, custom: &custom };
        let mut buf = [0u8; 256];
        let n = to_json(&m, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"process_cpu_usage_percent":"2.50","process_memory_usage_mb":128,"process_goroutine_count":42,"queue_depth":7}"#
        );
        for (centi, text) in [(5, "0.05"), (100, "1.00"), (u32::MAX, "42949672.95")] {
            let m = Metrics { cpu_centipercent: centi, ..Metrics::default() };
            let n = to_json(&m, &mut buf).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
            assert_eq!(v["process_cpu_usage_percent"], text);
        }
    }

    #[test]
    fn result_data_is_embedded_verbatim_and_ids_are_not_escaped_twice() {
        let data = RawJson::parse(br#"{"echo": [1, "x"]}"#).unwrap();
        let r = ResultMessage {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "n",
            instance_id: "n-h-1",
            request_id: r#"a\"b"#,
            command: "echo",
            success: true,
            message: "line\nbreak",
            data: Some(data),
            state: "done",
        };
        let mut buf = [0u8; 512];
        let n = to_json(&r, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"timestamp":"1970-01-01T00:00:00Z","node_name":"n","instance_id":"n-h-1","request_id":"a\"b","command":"echo","success":true,"message":"line\nbreak","data":{"echo": [1, "x"]},"state":"done"}"#
        );
        assert_eq!(to_json(&r, &mut buf[..20]), Err(EncodeError::BufferTooSmall));
    }

    #[test]
    fn a_publish_too_large_for_its_room_says_exactly_how_much_room_it_takes() {
        let data = RawJson::parse(br#"{"echo": [1, "x"]}"#).unwrap();
        let r = ResultMessage {
            timestamp: Timestamp::from_unix_secs(0),
            node_name: "n",
            instance_id: "n-h-1",
            request_id: "r1",
            command: "echo",
            success: true,
            message: "quote \" and\nbreak",
            data: Some(data),
            state: "done",
        };
        let topic = "prefix/n/n-h-1/result";
        let encode = |buf: &mut [u8]| encode_publish_with(&[topic], Some(1), false, buf, |p| to_json_sized(&r, p));
        let mut buf = [0u8; 512];
        let Err(Unfit::Needs(needed)) = encode(&mut buf[..20]) else { panic!("20 bytes are too few") };
        // Also with no room for the headers, and with one byte short of enough.
        assert_eq!(encode(&mut buf[..0]), Err(Unfit::Needs(needed)));
        assert_eq!(encode(&mut buf[..needed - 1]), Err(Unfit::Needs(needed)));
        assert_eq!(encode(&mut buf[..needed]).map(|at| at.end), Ok(needed));
    }

    proptest::proptest! {
        #[test]
        fn every_heartbeat_and_result_round_trips(
            name in "[a-z0-9_.-]{1,48}",
            host in "[a-zA-Z0-9.-]{1,64}",
            pid in proptest::prelude::any::<u32>(),
            uptime in proptest::prelude::any::<u64>(),
            cpu in proptest::prelude::any::<u32>(),
            memory in proptest::prelude::any::<u64>(),
            message in "\\PC{0,40}",
            success in proptest::prelude::any::<bool>(),
        ) {
            let mut buf = [0u8; 2048];
            let hb = HeartbeatMessage {
                timestamp: Timestamp::from_unix_secs(uptime),
                node_name: &name,
                instance_id: &host,
                status: "running",
                pid,
                uptime,
                version: &name,
                hostname: &host,
                metrics: Metrics { cpu_centipercent: cpu, memory_mb: memory, threads: memory, custom: &[] },
            };
            let n = to_json(&hb, &mut buf).unwrap();
            let v = HeartbeatView::parse(&buf[..n]).unwrap();
            proptest::prop_assert_eq!((v.node_name, v.hostname, v.pid, v.uptime), (name.as_str(), host.as_str(), pid, uptime));
            proptest::prop_assert_eq!((v.cpu_centipercent, v.memory_mb, v.threads), (cpu, memory, memory));
            proptest::prop_assert_eq!(v.timestamp.as_bytes(), &Timestamp::from_unix_secs(uptime).to_rfc3339()[..]);

            let r = ResultMessage {
                timestamp: Timestamp::from_unix_secs(0),
                node_name: &name,
                instance_id: &host,
                request_id: &name,
                command: "c",
                success,
                message: &message,
                data: None,
                state: "in_progress",
            };
            let n = to_json(&r, &mut buf).unwrap();
            let v = ResultView::parse(&buf[..n]).unwrap();
            // The message comes back escaped; unescaping it gives the original.
            let unescaped: std::string::String = serde_json::from_str(&std::format!("\"{}\"", v.message)).unwrap();
            proptest::prop_assert_eq!(unescaped, message);
            proptest::prop_assert_eq!((v.request_id, v.success, v.is_final(), v.data), (name.as_str(), success, false, None));
        }
    }
}
