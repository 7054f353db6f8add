//! `GET /metrics`: the fleet and the engine in Prometheus' text exposition format (0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Shared;
use crate::registry::Status;
use crate::timestamp::parse_rfc3339;

/// Every status, so each node name has a series for each (a zero is a value, not a gap).
const STATUSES: [Status; 4] = [Status::Online, Status::Missing, Status::Lost, Status::Offline];

/// One number of an instance's last heartbeat.
type Reading = fn(&crate::Instance) -> Option<f64>;

/// A label value with `\`, `"` and newlines escaped, as the format asks.
struct Label<'a>(&'a str);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Writes a metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text.
pub(super) async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    let lag_ms = shared.engine.with_registry(|registry| {
        let mut counts: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
        for inst in registry.instances() {
            let slot = STATUSES.iter().position(|s| *s == inst.status).unwrap_or(0);
            counts.entry(inst.node_name.as_str()).or_default()[slot] += 1;
        }
        header(&mut out, "subnode_instances", "gauge", "Instances in the registry by node name and status.");
        for (node, counts) in &counts {
            for (status, count) in STATUSES.iter().zip(counts) {
                let _ = writeln!(out, "subnode_instances{{node=\"{}\",status=\"{status}\"}} {count}", Label(node));
            }
        }
        let per_instance: [(&str, &str, Reading); 3] = [
            ("subnode_instance_cpu_percent", "CPU of the instance's process at its last heartbeat, percent.", |i| {
                i.cpu_centipercent.map(|c| f64::from(c) / 100.0)
            }),
            (
                "subnode_instance_memory_bytes",
                "Resident memory of the instance's process at its last heartbeat.",
                |i| i.memory_mb.map(|m| m as f64 * 1_048_576.0),
            ),
            ("subnode_instance_uptime_seconds", "Uptime of the instance's process at its last heartbeat.", |i| {
                i.uptime.map(|u| u as f64)
            }),
        ];
        for (name, help, value) in per_instance {
            header(&mut out, name, "gauge", help);
            // Only instances that may still be running: a lost or offline process has no CPU.
            let live = registry.instances().iter().filter(|i| matches!(i.status, Status::Online | Status::Missing));
            for inst in live {
                if let Some(v) = value(inst) {
                    let (node, id) = (Label(&inst.node_name), Label(&inst.instance_id));
                    let _ = writeln!(out, "{name}{{node=\"{node}\",instance=\"{id}\"}} {v}");
                }
            }
        }
        registry.latest_heartbeat().and_then(|(timestamp, at)| Some(at - parse_rfc3339(timestamp)?))
    });

    let stats = shared.engine.stats();
    let counters = [
        ("subnode_heartbeats_total", "Heartbeats ingested.", stats.heartbeats),
        ("subnode_messages_total", "Messages received from the broker.", stats.messages),
        (
            "subnode_messages_rejected_total",
            "Messages refused: bad topic, payload or identity, or a full registry.",
            stats.rejected,
        ),
        ("subnode_messages_oversized_total", "Messages over 64 KiB, skipped unread.", stats.oversized),
        (
            "subnode_registry_full_total",
            "Messages about new instances refused because the registry was full.",
            stats.registry_full,
        ),
        (
            "subnode_database_write_failures_total",
            "Database writes that failed and were retried.",
            stats.flush_failures,
        ),
        (
            "subnode_database_rows_written_total",
            "Rows written to the database: instances, commands, results and deletions.",
            stats.rows_written,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(&mut out, "subnode_commands_total", "counter", "Commands sent by this engine by outcome.");
    for (outcome, n) in [
        ("succeeded", stats.commands_succeeded),
        ("failed", stats.commands_failed),
        ("timed_out", stats.commands_timed_out),
    ] {
        let _ = writeln!(out, "subnode_commands_total{{outcome=\"{outcome}\"}} {n}");
    }
    header(&mut out, "subnode_database_unsaved_rows", "gauge", "Rows accepted and not yet written to the database.");
    let _ = writeln!(out, "subnode_database_unsaved_rows {}", stats.unsaved_rows);
    header(&mut out, "subnode_broker_connected", "gauge", "1 while the engine is connected to the broker.");
    let _ = writeln!(out, "subnode_broker_connected {}", u8::from(shared.engine.is_connected()));
    if let Some(lag) = lag_ms {
        let help = "How long the last heartbeat took from its node's clock to the registry (clock skew included).";
        header(&mut out, "subnode_ingest_lag_seconds", "gauge", help);
        let _ = writeln!(out, "subnode_ingest_lag_seconds {}", lag as f64 / 1000.0);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Label("a\"b\\c\nd").to_string(), r#"a\"b\\c\nd"#);
    }
}
