//! Engine ingest on one core: heartbeat packets' topic and payload parsed by the core's decoder,
//! the registry updated, and the changed instances written to SQLite in batches, as the engine
//! does (one transaction per flush, one row per changed instance).
//!
//! `cargo bench -p subnodesync-engine --bench ingest [-- INSTANCES HEARTBEATS]`
//! (default 1,000,000 instances, 3,000,000 heartbeats)
//!
//! A flush every `INSTANCES` heartbeats stands for the engine's timer: with every instance
//! beating once per flush interval, every flush rewrites every row, the worst case. The first
//! round is the fleet arriving (every row inserted); the rounds after it are the steady state
//! (every row updated), reported on their own.
//!
//! `cargo bench -p subnodesync-engine --bench ingest -- floor [ROWS]` measures instead what
//! SQLite itself costs per row at the least the engine could write: one prepared UPDATE per
//! row, by integer key, of a table holding only a heartbeat's columns.

use std::time::Instant;

use subnodesync_core::{to_json, HeartbeatMessage};
use subnodesync_core::{Metric, Metrics, Timestamp};
use subnodesync_engine::bench::{flush, ingest, registry};
use subnodesync_engine::Database;

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if std::env::args().any(|a| a == "floor") {
        floor(numbers.first().copied().unwrap_or(1_000_000));
        return;
    }
    let instances = numbers.first().copied().unwrap_or(1_000_000);
    let total = numbers.get(1).copied().unwrap_or(3_000_000);

    // Real payloads from the core's encoder, one per instance, with one custom metric.
    let custom = [("queue_depth", Metric::Int(7))];
    let mut messages = Vec::with_capacity(instances);
    for i in 0..instances {
        let id = format!("bench-app-host{i:07}-{}", 10_000 + i);
        let hb = HeartbeatMessage {
            timestamp: Timestamp::from_unix_secs(1_764_000_000),
            node_name: "bench-app",
            instance_id: &id,
            status: "running",
            pid: u32::try_from(10_000 + i).unwrap_or(0),
            uptime: 3600,
            version: "1.4.2",
            hostname: &format!("host{i:07}"),
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
    let mut registry = registry(instances);

    // Seconds spent parsing and in the database, and rows written: the first round, then the rest.
    let (mut parse_time, mut flush_time, mut rows) = ([0.0; 2], [0.0; 2], [0; 2]);
    let (mut flushes, mut refused) = (0, 0);
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let round = usize::from(done > 0);
        let batch = instances.min(total - done);
        let t = Instant::now();
        for (i, (topic, payload)) in messages.iter().take(batch).enumerate() {
            let now_ms = 1_764_000_000_000 + i64::try_from(done + i).unwrap_or(0);
            if !ingest(&mut registry, "subnodesync", topic, payload, now_ms) {
                refused += 1;
            }
        }
        parse_time[round] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        rows[round] += flush(&mut registry, &mut db).expect("flush");
        flush_time[round] += t.elapsed().as_secs_f64();
        flushes += 1;
        done += batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(refused, 0, "the bench's own payloads were refused");

    let rate = |n: usize, secs: f64| n as f64 / secs;
    let steady = total - total.min(instances);
    println!("engine ingest, one core: {total} heartbeats ({bytes} B payloads) from {instances} instances, {flushes} flushes");
    println!(
        "  total         {elapsed:>8.3} s  {:>10.0} heartbeats/s  (parse + registry update + SQLite)",
        rate(total, elapsed)
    );
    for (round, name, beats) in [(0, "first round", total.min(instances)), (1, "steady", steady)] {
        if beats == 0 {
            continue;
        }
        let (parse, write) = (parse_time[round], flush_time[round]);
        println!("  {name} ({beats} heartbeats, {} rows {}):", rows[round], ["inserted", "updated"][round]);
        println!("    total       {:>8.3} s  {:>10.0} heartbeats/s", parse + write, rate(beats, parse + write));
        println!(
            "    ingest only {parse:>8.3} s  {:>10.0} heartbeats/s  (topic + payload parse, registry update)",
            rate(beats, parse)
        );
        println!("    SQLite      {write:>8.3} s  {:>10.0} rows/s", rate(rows[round], write));
    }
}

/// SQLite's own cost per row, without the engine: the fleet's rows inserted, then rewritten
/// twice in one transaction each, by a statement prepared once, into tables narrower than the
/// engine's `instances`.
fn floor(rows: usize) {
    let dir = std::env::temp_dir().join(format!("subnode-floor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    // The metrics object of the bench's payloads.
    let metrics = r#"{"cpu_percent":2.5,"memory_mb":128,"threads":12,"custom":{"queue_depth":7}}"#;
    let variants: [(&str, &str, &str); 3] = [
        (
            "integers only: last heartbeat, uptime, cpu, memory, threads, count, revision",
            "CREATE TABLE beats (id INTEGER PRIMARY KEY, last_heartbeat_ms INTEGER, uptime INTEGER,
                cpu INTEGER, memory_mb INTEGER, threads INTEGER, heartbeats INTEGER, rev INTEGER)",
            "UPDATE beats SET last_heartbeat_ms = ?2, uptime = ?3, cpu = ?4, memory_mb = ?5, threads = ?6,
                heartbeats = heartbeats + 1, rev = ?7 WHERE id = ?1",
        ),
        (
            "the same and the metrics JSON",
            "CREATE TABLE beats (id INTEGER PRIMARY KEY, last_heartbeat_ms INTEGER, uptime INTEGER,
                cpu INTEGER, memory_mb INTEGER, threads INTEGER, heartbeats INTEGER, rev INTEGER, metrics_json TEXT)",
            "UPDATE beats SET last_heartbeat_ms = ?2, uptime = ?3, cpu = ?4, memory_mb = ?5, threads = ?6,
                heartbeats = heartbeats + 1, rev = ?7, metrics_json = ?8 WHERE id = ?1",
        ),
        (
            "the same, keyed by the instance id (text)",
            "CREATE TABLE beats (instance_id TEXT PRIMARY KEY, last_heartbeat_ms INTEGER, uptime INTEGER,
                cpu INTEGER, memory_mb INTEGER, threads INTEGER, heartbeats INTEGER, rev INTEGER, metrics_json TEXT)",
            "UPDATE beats SET last_heartbeat_ms = ?2, uptime = ?3, cpu = ?4, memory_mb = ?5, threads = ?6,
                heartbeats = heartbeats + 1, rev = ?7, metrics_json = ?8 WHERE instance_id = ?1",
        ),
    ];
    println!("SQLite floor: {rows} rows, each rewritten twice, one transaction per pass, WAL, synchronous = NORMAL");
    for (n, (name, create, update)) in variants.iter().enumerate() {
        let conn = rusqlite::Connection::open(dir.join(format!("floor{n}.db"))).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL").expect("WAL");
        conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
        conn.execute_batch(create).expect("create");
        let text_key = create.contains("instance_id");
        let key = |i: usize| format!("bench-app-host{i:07}-{}", 10_000 + i);
        let insert =
            if text_key { "INSERT INTO beats (instance_id) VALUES (?1)" } else { "INSERT INTO beats (id) VALUES (?1)" };
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn.prepare(insert).expect("prepare");
            for i in 0..rows {
                if text_key {
                    stmt.execute([key(i)]).expect("insert");
                } else {
                    stmt.execute([i64::try_from(i).unwrap_or(0)]).expect("insert");
                }
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
        let keys: Vec<String> = (0..rows).map(key).collect();
        let mut stmt = conn.prepare(update).expect("prepare");
        let t = Instant::now();
        for pass in 0..2_i64 {
            conn.execute_batch("BEGIN").expect("begin");
            for (i, key) in keys.iter().enumerate() {
                let at = 1_764_000_000_000 + i64::try_from(i).unwrap_or(0);
                let id = i64::try_from(i).unwrap_or(0);
                let changed = match (text_key, update.contains("?8")) {
                    (true, _) => stmt.execute(rusqlite::params![key, at, 3600 + pass, 250, 128, 12, pass, metrics]),
                    (false, true) => stmt.execute(rusqlite::params![id, at, 3600 + pass, 250, 128, 12, pass, metrics]),
                    (false, false) => stmt.execute(rusqlite::params![id, at, 3600 + pass, 250, 128, 12, pass]),
                };
                assert_eq!(changed.expect("update"), 1);
            }
            conn.execute_batch("COMMIT").expect("commit");
        }
        let secs = t.elapsed().as_secs_f64();
        let per_row = secs / (2 * rows) as f64;
        println!("  {name}: {:.0} rows/s, {:.2} us a row", 1.0 / per_row, per_row * 1e6);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
