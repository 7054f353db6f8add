//! Engine ingest on one core: heartbeat packets' topic and payload parsed by the core's decoder,
//! the registry updated, and the changed instances written to SQLite in batches, as the engine
//! does (one transaction per flush, one row per changed instance).
//!
//! `cargo bench -p subnodesync-engine --bench ingest [-- INSTANCES HEARTBEATS]`
//!
//! A flush every `INSTANCES` heartbeats stands for the engine's timer: with every instance
//! beating once per flush interval, every flush rewrites every row, the worst case.

use std::time::Instant;

use subnodesync_core::{to_json, HeartbeatMessage};
use subnodesync_core::{Metric, Metrics, Timestamp};
use subnodesync_engine::bench::{flush, ingest, Registry};
use subnodesync_engine::Database;

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let instances = numbers.first().copied().unwrap_or(10_000);
    let total = numbers.get(1).copied().unwrap_or(2_000_000);

    // Real payloads from the core's encoder, one per instance, with one custom metric.
    let custom = [("queue_depth", Metric::Int(7))];
    let mut messages = Vec::with_capacity(instances);
    for i in 0..instances {
        let id = format!("bench-app-host{i:05}-{}", 10_000 + i);
        let hb = HeartbeatMessage {
            timestamp: Timestamp::from_unix_secs(1_764_000_000),
            node_name: "bench-app",
            instance_id: &id,
            status: "running",
            pid: u32::try_from(10_000 + i).unwrap_or(0),
            uptime: 3600,
            version: "1.4.2",
            hostname: &format!("host{i:05}"),
            metrics: Metrics { cpu_centipercent: 250, memory_mb: 128, threads: 12, custom: &custom },
        };
        let mut buf = vec![0u8; 1024];
        let n = to_json(&hb, &mut buf).expect("a heartbeat fits 1 KiB");
        buf.truncate(n);
        messages.push((format!("subnodesync/bench-app/{id}/heartbeat"), buf));
    }
    let bytes = messages.first().map_or(0, |(_, p)| p.len());

    let dir = std::env::temp_dir().join(format!("subnode-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut db = Database::open(&dir.join("engine.db").into()).expect("open the database");
    let mut registry = Registry::default();

    let (mut parse_time, mut flush_time) = (0.0, 0.0);
    let (mut flushes, mut rows, mut refused) = (0, 0, 0);
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let batch = instances.min(total - done);
        let t = Instant::now();
        for (i, (topic, payload)) in messages.iter().take(batch).enumerate() {
            let now_ms = 1_764_000_000_000 + i64::try_from(done + i).unwrap_or(0);
            if !ingest(&mut registry, "subnodesync", topic, payload, now_ms) {
                refused += 1;
            }
        }
        parse_time += t.elapsed().as_secs_f64();
        let t = Instant::now();
        rows += flush(&mut registry, &mut db).expect("flush");
        flush_time += t.elapsed().as_secs_f64();
        flushes += 1;
        done += batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(refused, 0, "the bench's own payloads were refused");

    let rate = |n: usize, secs: f64| n as f64 / secs;
    println!("engine ingest, one core: {total} heartbeats ({bytes} B payloads) from {instances} instances");
    println!(
        "  total       {elapsed:>7.3} s  {:>10.0} heartbeats/s  (parse + registry update + SQLite)",
        rate(total, elapsed)
    );
    println!(
        "  ingest only {parse_time:>7.3} s  {:>10.0} heartbeats/s  (topic + payload parse, registry update)",
        rate(total, parse_time)
    );
    println!(
        "  SQLite      {flush_time:>7.3} s  {flushes} flushes, {rows} rows upserted, {:.0} rows/s",
        rate(rows, flush_time)
    );
}
