//! Benchmark: simulated node-days per second of wall time, one node with the default
//! configuration (30 s heartbeats, 60 s keep-alive, backoff 1 s to 15 min) and faults on.
//!
//! `cargo run --release -p subnodesync-sim --bin node_days [runs]`

use std::time::Instant;

use subnodesync_core::{Config, Duration};
use subnodesync_sim::{run, Faults, SimConfig, FAULT_KINDS};

fn main() {
    let runs: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let config = SimConfig {
        nodes: 1,
        duration: Duration::from_secs(86_400),
        // Longer than the 15 min backoff cap plus a resend: every result drains.
        quiet_tail: Duration::from_secs(20 * 60),
        faults: Faults {
            resets_per_hour: 2.0,
            half_opens_per_hour: 1.0,
            broker_restarts_per_hour: 0.5,
            ..Faults::CHAOS
        },
        node: Config { commands: &["echo"], ..Config::new("bench", "host", 0) },
        engine_retry: Duration::from_secs(60),
        change_heartbeat_interval: false,
        ..SimConfig::default()
    };
    let simulated_days = (config.duration + config.quiet_tail).as_micros() as f64 / 86_400e6;
    let started = Instant::now();
    let mut faults = [0u64; 7];
    let mut heartbeats = 0u64;
    for seed in 0..runs {
        let report = run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        heartbeats += u64::from(report.stats.heartbeats);
        for (total, n) in faults.iter_mut().zip(report.stats.faults) {
            *total += u64::from(n);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let node_days = simulated_days * runs as f64;
    println!("{runs} runs of one node for {simulated_days:.3} simulated days: {wall:.3} s wall");
    println!("{:.1} node-days per second; {:.2} ms per node-day", node_days / wall, wall * 1e3 / node_days);
    println!("{heartbeats} heartbeats");
    let injected: Vec<String> = FAULT_KINDS.iter().zip(faults).map(|(k, n)| format!("{k} {n}")).collect();
    println!("faults: {}", injected.join(", "));
}
