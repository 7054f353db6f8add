//! The reconnect storm: a fleet loses its broker at one instant and everyone reconnects.
//!
//! Runs `N` nodes (default 10,000) through one broker restart at t = 60 s and counts the CONNECTs
//! the broker sees in each simulated second after it, twice: with the core's backoff (full
//! jitter, 1 s to 15 min) and with a fixed 1 s delay (`reconnect_min = reconnect_max`: no jitter),
//! which is what a naive client does. Prints the peak reconnect rate of each and how long until
//! every node was back.
//!
//! `cargo run --release -p subnodesync-sim --bin reconnect_storm [nodes] [seed]`

use subnodesync_core::{Config, Duration};
use subnodesync_sim::{run, Faults, SimConfig};

const RESTART_AT: f64 = 60.0;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    println!("{nodes} nodes, broker restart at t = {RESTART_AT} s, seed {seed}");
    let mut peaks = Vec::new();
    for (label, min_secs, max_secs) in
        [("jittered backoff, 1 s to 15 min", 1, 900), ("fixed 1 s delay, no jitter", 1, 1)]
    {
        let defaults = SimConfig::default();
        let config = SimConfig {
            nodes,
            duration: Duration::from_secs(120),
            quiet_tail: Duration::from_secs(max_secs + 300),
            faults: Faults::NONE,
            commands_per_node: 0,
            desired_changes: 0,
            change_heartbeat_interval: false,
            trace: true,
            broker_restart_at: Some(Duration::from_secs(RESTART_AT as u64)),
            node: Config {
                heartbeat_interval: Duration::from_secs(30),
                keep_alive: Duration::from_secs(60),
                reconnect_min: Duration::from_secs(min_secs),
                reconnect_max: Duration::from_secs(max_secs),
                ..defaults.node
            },
            ..defaults
        };
        let report = run(seed, &config).unwrap_or_else(|failure| panic!("{failure}"));
        // Trace lines read "   <seconds> n<i>     -> CONNECT ...".
        let connects: Vec<f64> = report
            .trace
            .iter()
            .filter(|line| line.contains("-> CONNECT "))
            .filter_map(|line| line.split_whitespace().next()?.parse::<f64>().ok())
            .filter(|&t| t > RESTART_AT)
            .collect();
        let mut per_second = std::collections::BTreeMap::<u64, u32>::new();
        for t in &connects {
            *per_second.entry(*t as u64).or_default() += 1;
        }
        let (peak_second, peak) = per_second.iter().max_by_key(|(_, n)| **n).map_or((0, 0), |(s, n)| (*s, *n));
        let last = connects.iter().cloned().fold(RESTART_AT, f64::max);
        println!(
            "{label}: {} CONNECTs after the restart, peak {peak}/s (at t = {peak_second} s), last at t = {last:.1} s \
             ({:.1} s after the restart)",
            connects.len(),
            last - RESTART_AT
        );
        peaks.push(peak);
    }
    if let [jittered, fixed] = peaks[..] {
        println!(
            "jitter flattens the peak {:.1}x ({fixed}/s without, {jittered}/s with)",
            fixed as f64 / jittered.max(1) as f64
        );
    }
}
