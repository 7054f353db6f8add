//! Many seeds through the whole simulation; each must keep every invariant.
//!
//! * `cargo test -p subnodesync-sim` runs 1,000 seeds;
//! * `SUBNODE_SIM_SEEDS=100000 cargo test -p subnodesync-sim --release` runs more
//!   (`SUBNODE_SIM_FIRST` moves the first seed);
//! * `SUBNODE_SIM_SEED=<n> cargo test -p subnodesync-sim -- --nocapture replay` replays one
//!   seed and prints its trace.

use subnodesync_sim::{run, Faults, SimConfig, FAULT_KINDS};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
fn a_thousand_seeds_of_chaos_keep_every_invariant() {
    let count = env_u64("SUBNODE_SIM_SEEDS").unwrap_or(1_000);
    let first = env_u64("SUBNODE_SIM_FIRST").unwrap_or(0);
    let config = SimConfig::default();
    let mut failures = Vec::new();
    let mut faults = [0u64; 7];
    let mut desired_changes = 0u64;
    for seed in first..first + count {
        match run(seed, &config) {
            Ok(report) => {
                for (total, n) in faults.iter_mut().zip(report.stats.faults) {
                    *total += u64::from(n);
                }
                desired_changes += u64::from(report.stats.desired_changes);
            }
            Err(failure) => failures.push(failure),
        }
    }
    let injected: Vec<String> = FAULT_KINDS.iter().zip(faults).map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "{count} seeds from {first}: {} failed; faults injected: {}; desired-state changes: {desired_changes}",
        failures.len(),
        injected.join(", ")
    );
    if let Some(first_failure) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).take(20).collect();
        panic!("{} of {count} seeds failed (first: {seeds:?})\n{first_failure}", failures.len());
    }
    assert!(faults.iter().all(|&n| n > 0), "every kind of fault was injected at least once: {injected:?}");
    // Convergence is checked at the end of every run; this says there was something to converge to.
    assert!(desired_changes >= count, "about 6 desired-state changes a run, {desired_changes} in {count} runs");
}

#[test]
fn replay() {
    let Some(seed) = env_u64("SUBNODE_SIM_SEED") else { return };
    let config = SimConfig { trace: true, ..SimConfig::default() };
    match run(seed, &config) {
        Ok(report) => {
            for line in &report.trace {
                println!("{line}");
            }
            println!("seed {seed}: ok, {:?}", report.stats);
        }
        Err(failure) => {
            for line in &failure.trace {
                println!("{line}");
            }
            panic!("{failure}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_identical_trace_twice() {
    let config = SimConfig { trace: true, ..SimConfig::default() };
    for seed in [1, 7, 12_345] {
        let a = run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        let b = run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        assert!(a.trace.len() > 100, "a run leaves a readable trace");
        assert_eq!(a.trace, b.trace, "seed {seed}: traces differ");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.stats, b.stats);
    }
    let other = run(2, &config).unwrap_or_else(|f| panic!("{f}"));
    let one = run(1, &config).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(one.trace, other.trace, "different seeds give different runs");
}

#[test]
fn a_quiet_network_connects_each_node_once_and_answers_every_command() {
    let config = SimConfig { faults: Faults::NONE, nodes: 5, ..SimConfig::default() };
    let report = run(3, &config).unwrap_or_else(|f| panic!("{f}"));
    let s = report.stats;
    assert_eq!((s.connects, s.disconnects), (5, 0), "{s:?}");
    assert!(s.requests > 20, "{s:?}");
    assert!(s.broadcasts > 0, "some commands went to every instance at once: {s:?}");
    // One publish per command (a broadcast reaches all five nodes at once): nothing was resent.
    assert_eq!(s.publishes + 4 * s.broadcasts, s.requests, "{s:?}");
    assert_eq!(s.results, s.requests, "one final result per request: {s:?}");
    // 6 simulated minutes; `set_heartbeat_interval` from the engine keeps intervals within 5 to 17 s.
    assert!(s.heartbeats >= 5 * 360 / 17, "{s:?}");
}

#[test]
fn the_trace_shows_packets_faults_and_timer_firings() {
    let config = SimConfig { trace: true, ..SimConfig::default() };
    let report = run(5, &config).unwrap_or_else(|f| panic!("{f}"));
    let text = report.trace.join("\n");
    for needle in ["-> CONNECT sim-host-1000", "CONNACK", "PUBLISH q1", "/register", "timer", "fault", "engine"] {
        assert!(text.contains(needle), "trace lacks {needle:?}");
    }
}

/// Seeds 1234 (in an earlier command mix) and 6314 failed with "node sent a packet the broker
/// cannot decode": a connection reset dropped the rest of a split packet while bytes the node
/// wrote before hearing of the reset still got through, so the broker read the start of one
/// packet glued to the next. A simulator bug, not a core one: a reset now lets nothing more
/// through either way.
#[test]
fn regression_seed_6314_a_reset_lets_no_later_bytes_through() {
    run(6314, &SimConfig::default()).unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn jitter_spreads_the_reconnects_of_a_fleet_that_lost_its_broker() {
    let faults = Faults { broker_restarts_per_hour: 20.0, ..Faults::NONE };
    let config = SimConfig { nodes: 20, faults, trace: true, ..SimConfig::default() };
    let report = run(11, &config).unwrap_or_else(|f| panic!("{f}"));
    assert!(report.stats.faults[2] > 0, "the broker restarted");
    let delays: Vec<&str> = report.trace.iter().filter_map(|l| l.split("retry in ").nth(1)).collect();
    let mut distinct = delays.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(delays.len() >= 20, "every node reconnected: {delays:?}");
    assert!(distinct.len() * 10 >= delays.len() * 9, "reconnect delays spread out: {delays:?}");
}

/// A handler that never completes (and no deadline from the engine) leaves requests without a
/// final result: the simulator says so, naming the seed.
#[test]
fn a_handler_that_never_answers_fails_the_result_check_with_its_seed() {
    struct Silent;
    impl subnodesync_sim::Handler for Silent {
        fn on_command(
            &mut self,
            _: usize,
            _: &str,
            _: &str,
            parameters: &str,
            _: &mut subnodesync_sim::Rng,
        ) -> Option<subnodesync_sim::Reply> {
            // Commands with a deadline are answered by the core; the others hang forever.
            let _ = parameters;
            None
        }
    }
    let config = SimConfig { faults: Faults::NONE, ..SimConfig::default() };
    let failure = subnodesync_sim::run_with(9, &config, &mut Silent).expect_err("results are missing");
    assert_eq!(failure.seed, 9);
    assert!(failure.message.contains("never got its final result"), "{failure}");
    assert!(failure.to_string().contains("SUBNODE_SIM_SEED=9"), "{failure}");
}

/// The reconnect storm in small: one broker restart at a chosen instant, and every node of the
/// fleet connects again (twice in all), spread out by the jitter.
#[test]
fn a_scheduled_broker_restart_brings_the_whole_fleet_back() {
    let config = SimConfig {
        nodes: 50,
        faults: Faults::NONE,
        commands_per_node: 0,
        broker_restart_at: Some(subnodesync_core::Duration::from_secs(60)),
        ..SimConfig::default()
    };
    let report = run(3, &config).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(report.stats.faults[2], 1, "exactly the one scheduled restart");
    assert_eq!(report.stats.connects, 100, "every node connected, then reconnected once");
}
