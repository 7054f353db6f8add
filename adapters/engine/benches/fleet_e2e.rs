//! End to end: N tokio-adapter nodes (one child process) at one heartbeat a second, through a
//! local mosquitto, into one engine (this process). Reports CPU and memory of each process, the
//! engine's ingest rate and lag, then restarts the broker and reports how long until every node
//! is registered again and the reconnect rate over time (written as CSV for the plot).
//!
//! `cargo bench -p subnodesync-engine --bench fleet_e2e -- --nodes 10000 --seconds 30`
//!
//! The engine's lag is measured with a probe: ten times a second this process publishes a
//! result message of its own (a separate MQTT client, instance `probe-bench-1`) and times how
//! long the engine takes to report it ingested, through the broker and queued behind the fleet's
//! heartbeats on the engine's one connection. Registrations after the restart are read from the
//! registry (`registered_ms`), so no event can be missed.
//!
//! Needs mosquitto (`$MOSQUITTO`, the usual install paths, or on `PATH`), and a hard limit on open
//! files above N: the broker and the node process raise their limits to the hard limit (`sh -c
//! 'ulimit -n $(ulimit -Hn); exec ...'`).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{cpu_ticks, rss_mib};
use subnodesync_core::Timestamp;
use subnodesync_core::{to_json, ResultMessage};
use subnodesync_engine::{Engine, EngineConfig, FleetEvent, Status};
use subnodesync_examples::FLEET_NODE_NAME;
use subnodesync_fixtures::{Mosquitto, MosquittoLog, MosquittoOptions};
use subnodesync_tokio::{BufferSizes, LifecycleEvent, Sample, Tokio};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// The node side: N nodes, printing `connects <unix_s> <count>` once a second.
async fn nodes_phase(port: u16, n: usize) {
    let url = format!("mqtt://127.0.0.1:{port}");
    let per_second = Arc::new(Mutex::new(std::collections::BTreeMap::<u64, u64>::new()));
    let ramp = Duration::from_secs_f64((n as f64 / 2000.0).clamp(1.0, 10.0));
    let started = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(started + ramp.mul_f64(i as f64 / n as f64)).await;
        let sizes = BufferSizes { rx: 256, tx: 512, outbox: 1024, desired: 0 };
        let node = subnodesync_examples::fleet_node::<Tokio>(&url, i, sizes)
            .sampler(|| Sample { cpu_centipercent: 250, memory_mb: 128, threads: 42 })
            .start()
            .await;
        let Ok(node) = node else {
            eprintln!("node {i} did not start");
            continue;
        };
        let mut events = node.events();
        let counts = per_second.clone();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if matches!(e, LifecycleEvent::Connected { .. }) {
                    *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(unix_ms() / 1000).or_insert(0) += 1;
                }
            }
        });
        handles.push(node);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = unix_ms() / 1000;
        let done: Vec<(u64, u64)> = {
            let mut counts = per_second.lock().unwrap_or_else(|e| e.into_inner());
            let keep = counts.split_off(&now);
            std::mem::replace(&mut *counts, keep).into_iter().collect()
        };
        for (second, count) in done {
            println!("connects {second} {count}");
        }
    }
}

/// mosquitto on a free loopback port for the whole fleet, with its open-file limit raised.
fn mosquitto() -> Mosquitto {
    Mosquitto::start(MosquittoOptions {
        // `max_queued_messages`: mosquitto's default (1000) cuts the flood of retained register
        // and status messages a subscribing engine gets from a large fleet; see the engine README.
        config: "allow_anonymous true\nmax_connections -1\nmax_queued_messages 100000\n".into(),
        raise_fd_limit: true,
        log: MosquittoLog::Off,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let n: usize = arg("--nodes").and_then(|v| v.parse().ok()).unwrap_or(10_000);
    if arg("--phase").as_deref() == Some("nodes") {
        return nodes_phase(port, n).await;
    }
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(30);
    // `cargo bench` runs in the package's directory; the documented place is the workspace's target/.
    let csv = arg("--csv")
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/fleet_e2e_reconnects.csv").into());

    let mut broker = mosquitto();
    let port = broker.port();

    let config = EngineConfig {
        db: broker.dir().join("engine.db").into(),
        heartbeat_interval: Duration::from_secs(1),
        ..EngineConfig::from_lookup(&|_| None).expect("defaults")
    }
    .broker_url(&format!("mqtt://127.0.0.1:{port}"))
    .expect("url");
    let engine = Engine::start(config).await.expect("engine");
    engine.wait_synced(Duration::from_secs(10)).await;

    // Lag samples (receive time minus the heartbeat's own timestamp) and registrations per second.
    let lags = Arc::new(Mutex::new(Vec::<i64>::new()));
    let measuring = Arc::new(AtomicU64::new(0));
    let mut events = engine.events();
    let probe_sent = Arc::new(Mutex::new(None::<Instant>));
    let (l, m, p) = (lags.clone(), measuring.clone(), probe_sent.clone());
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(FleetEvent::Result(result)) if result.instance_id == PROBE => {
                    let sent = p.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let (Some(sent), 1) = (sent, m.load(Ordering::Relaxed)) {
                        let lag = i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX);
                        l.lock().unwrap_or_else(|e| e.into_inner()).push(lag);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    });

    tokio::spawn(probe(port, probe_sent));

    let exe = std::env::current_exe().expect("current exe");
    let mut nodes = Command::new("sh")
        .args([
            "-c",
            "ulimit -n $(ulimit -Hn); exec \"$0\" --phase nodes --port \"$1\" --nodes \"$2\"",
            &exe.display().to_string(),
            &port.to_string(),
            &n.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the node process");
    let connects = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let stdout = nodes.stdout.take().expect("piped");
    let c = connects.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace().skip(1).filter_map(|p| p.parse::<u64>().ok());
            if let (Some(s), Some(k)) = (parts.next(), parts.next()) {
                c.lock().unwrap_or_else(|e| e.into_inner()).push((s, k));
            }
        }
    });

    let online = |engine: &Engine| {
        engine.instances().iter().filter(|i| i.node_name == FLEET_NODE_NAME && i.status == Status::Online).count()
    };
    let t = Instant::now();
    while online(&engine) < n && t.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{} of {n} nodes online after {:.1} s; settling 5 s", online(&engine), t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Steady window.
    let broker_pid = broker.pid().expect("mosquitto runs");
    let pids = [("engine", std::process::id()), ("nodes", nodes.id()), ("mosquitto", broker_pid)];
    let before: Vec<u64> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    let hb_before = engine.stats().heartbeats;
    measuring.store(1, Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(0, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let ingested = engine.stats().heartbeats - hb_before;
    println!("steady window {elapsed:.1} s, {n} nodes at 1 heartbeat/s:");
    for ((name, pid), ticks) in pids.iter().zip(before) {
        let cpu = (cpu_ticks(*pid) - ticks) as f64 / 100.0 / elapsed * 100.0;
        println!("  {name:<10} CPU {cpu:>6.1}% of one core   RSS {:>7.1} MiB", rss_mib(*pid));
    }
    println!("  engine ingested {:.0} heartbeats/s (expected {n})", ingested as f64 / elapsed);
    let mut lags = std::mem::take(&mut *lags.lock().unwrap_or_else(|e| e.into_inner()));
    lags.sort_unstable();
    let ms = |us: i64| us as f64 / 1000.0;
    println!(
        "  engine lag, probe publish to ingested ({} probes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or(0))
    );

    // Broker restart.
    broker.kill();
    let restart_ms = unix_ms();
    broker.restart().unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let registered_since = |engine: &Engine| -> Vec<u64> {
        let since = i64::try_from(restart_ms).unwrap_or(i64::MAX);
        engine
            .instances()
            .iter()
            .filter(|i| i.node_name == FLEET_NODE_NAME)
            .filter_map(|i| i.registered_ms.filter(|at| *at >= since))
            .map(|at| u64::try_from(at).unwrap_or(0))
            .collect()
    };
    while registered_since(&engine).len() < n && t.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let regs = registered_since(&engine);
    let all_back_ms = regs.iter().max().copied().unwrap_or(restart_ms) - restart_ms;
    println!(
        "broker restart: {} of {n} registered again with the engine, the last {:.1} s after the restart",
        regs.len(),
        all_back_ms as f64 / 1000.0
    );
    // Give the node process a second to print its last counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restart_s = restart_ms / 1000;
    let connects: Vec<(u64, u64)> =
        connects.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(s, _)| *s >= restart_s).copied().collect();
    let mut registered_per_s = std::collections::BTreeMap::<u64, u64>::new();
    for at in &regs {
        *registered_per_s.entry(at / 1000).or_insert(0) += 1;
    }
    let peak = connects.iter().map(|(_, k)| *k).max().unwrap_or(0);
    let peak_reg = registered_per_s.values().copied().max().unwrap_or(0);
    println!("  peak reconnect rate {peak}/s (node side, CONNACKs); peak registration rate {peak_reg}/s (engine side)");
    let last = connects.iter().map(|(s, _)| *s).chain(registered_per_s.keys().copied()).max().unwrap_or(restart_s);
    let mut out = String::from("second_after_restart,reconnects,registrations\n");
    for s in restart_s..=last {
        let k = connects.iter().filter(|(x, _)| *x == s).map(|(_, k)| k).sum::<u64>();
        let r = registered_per_s.get(&s).copied().unwrap_or(0);
        out.push_str(&format!("{},{k},{r}\n", s - restart_s));
    }
    match std::fs::write(&csv, out) {
        Ok(()) => println!("  per-second timeline written to {csv}"),
        Err(e) => println!("  cannot write {csv}: {e}"),
    }

    let _ = nodes.kill();
    let _ = nodes.wait();
    broker.kill();
    engine.shutdown().await.expect("everything written");
    // Dropping the broker removes its directory, the engine's database with it.
    drop(broker);
}

/// The probe's instance id.
const PROBE: &str = "probe-bench-1";

/// Publishes a probe result every 100 ms, noting when, unless the last one is still on its way.
async fn probe(port: u16, sent: Arc<Mutex<Option<Instant>>>) {
    let mut options = rumqttc::MqttOptions::new("probe-bench", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let probe = ResultMessage {
        timestamp: Timestamp::from_unix_secs(unix_ms() / 1000),
        node_name: "probe",
        instance_id: PROBE,
        request_id: "probe",
        command: "probe",
        success: true,
        message: "probe",
        data: None,
        state: "done",
    };
    let mut buf = [0u8; 512];
    let Ok(n) = to_json(&probe, &mut buf) else { return };
    let payload = buf.get(..n).unwrap_or_default().to_vec();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let mut last = sent.lock().unwrap_or_else(|e| e.into_inner());
        // An unanswered probe older than 5 s was lost (a broker restart): send another.
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            continue;
        }
        *last = Some(Instant::now());
        drop(last);
        let _ = client.try_publish(
            "subnodesync/probe/probe-bench-1/result",
            rumqttc::QoS::AtLeastOnce,
            false,
            payload.clone(),
        );
    }
}
