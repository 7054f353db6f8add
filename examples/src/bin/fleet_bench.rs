//! Fleet benchmark (issue 4): N tokio-adapter nodes in one process against a local mosquitto,
//! one heartbeat a second each, then N plain rumqttc clients doing the same QoS 1 publishes.
//! Reports resident memory and CPU per node for both.
//!
//! `cargo run --release --bin fleet_bench -- --nodes 10000 --seconds 30`
//!
//! The binary starts its own mosquitto (`$MOSQUITTO`, the usual install paths, or on `PATH`) on a
//! free loopback port, then runs each side in a fresh child process of itself (`--phase adapter`
//! and `--phase rumqttc`), so neither side inherits the other's heap. Each child measures its own
//! `VmRSS` (`/proc/self/status`) before the nodes start and at the end of a steady window of
//! `--seconds`, and its CPU (`utime + stime`, `/proc/self/stat`) over that window. Heartbeat flow
//! is checked with the broker's own counter (`$SYS/broker/publish/messages/received`, published
//! every second), so counting costs the measured process nothing.
//!
//! `SUBNODE_LOG=warn` shows the nodes' own warnings (a disconnect and its reason, say); without
//! it no logging is set up, so no node pays for a span.
//!
//! The process needs one file descriptor per node (plus a few): each child is started with its
//! limit raised to the node count plus 1,024 when its limit is lower, which needs root (or a hard
//! limit that high). The broker raises its own the same way.
//!
//! Past [`NODES_PER_SOURCE`] nodes (or with `--sources K`) the adapter side spreads its
//! connections over several loopback source addresses (`127.0.0.1`, `127.0.0.2`, …) with a
//! connector, as one address has only about 28,000 ephemeral ports towards one broker port:
//! `--nodes 100000 --heartbeat 10 --only adapter` runs a hundred thousand nodes in one process
//! where the descriptor limits allow it.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use subnodesync_examples::FLEET_NODE_NAME as NODE_NAME;
use subnodesync_fixtures::{Mosquitto, MosquittoLog, MosquittoOptions};
use subnodesync_tokio::{BrokerUrl, BufferSizes, LifecycleEvent, NodeHandle, Sample, Tokio};
use tokio::sync::watch;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

/// The broker counter of PUBLISH packets received, published every `sys_interval`.
const SYS_RECEIVED: &str = "$SYS/broker/publish/messages/received";
/// The broker's count of connected clients.
const SYS_CONNECTED: &str = "$SYS/broker/clients/connected";
/// Connections per loopback source address: below the 28,232 ephemeral ports Linux gives one
/// address by default (`net.ipv4.ip_local_port_range`), with room for the monitor and stragglers.
const NODES_PER_SOURCE: usize = 25_000;

#[derive(Debug, Clone)]
struct Args {
    nodes: usize,
    seconds: u64,
    /// Seconds between one node's heartbeats.
    heartbeat: u64,
    /// Loopback source addresses the adapter side connects from (0: one per
    /// [`NODES_PER_SOURCE`] nodes, and the plain TCP connect when that is one).
    sources: usize,
    rx: usize,
    tx: usize,
    outbox: usize,
    phase: Option<String>,
    port: u16,
    broker_pid: u32,
    only: Option<String>,
    /// Each node samples with its own closure instead of the process-wide shared sample.
    own_sampler: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 10_000,
        seconds: 30,
        heartbeat: 1,
        sources: 0,
        rx: 256,
        tx: 512,
        outbox: 1024,
        phase: None,
        port: 0,
        broker_pid: 0,
        only: None,
        own_sampler: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--nodes" => a.nodes = num(value()?)? as usize,
            "--seconds" => a.seconds = num(value()?)?,
            "--heartbeat" => a.heartbeat = num(value()?)?,
            "--sources" => a.sources = num(value()?)? as usize,
            "--rx" => a.rx = num(value()?)? as usize,
            "--tx" => a.tx = num(value()?)? as usize,
            "--outbox" => a.outbox = num(value()?)? as usize,
            "--phase" => a.phase = Some(value()?),
            "--only" => a.only = Some(value()?),
            "--own-sampler" => a.own_sampler = true,
            "--port" => a.port = num(value()?)? as u16,
            "--broker-pid" => a.broker_pid = num(value()?)? as u32,
            "-h" | "--help" => {
                return Err("usage: fleet_bench [--nodes N] [--seconds S] [--heartbeat S] [--sources K] \
                            [--rx B --tx B --outbox B] [--only adapter|rumqttc] [--own-sampler]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.nodes == 0 || a.seconds == 0 || a.heartbeat == 0 {
        return Err("--nodes, --seconds and --heartbeat must be at least 1".into());
    }
    if a.sources > 254 {
        return Err("--sources: at most 254 loopback addresses".into());
    }
    if a.nodes > NODES_PER_SOURCE && a.phase.is_none() && a.only.as_deref() != Some("adapter") {
        return Err(format!(
            "rumqttc cannot choose its source address, so its side stops at {NODES_PER_SOURCE} nodes: \
             add --only adapter"
        ));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fleet_bench: {e}");
            return ExitCode::from(2);
        }
    };
    match args.phase.clone() {
        Some(phase) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            match rt.block_on(child(phase, args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fleet_bench child: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match parent(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fleet_bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: broker, children, table.

/// mosquitto on a free loopback port, with room for the whole fleet, its errors and warnings on
/// this process's stderr and `$SYS` counters every second; killed (and its directory removed)
/// however the parent ends.
fn start_broker() -> Result<Mosquitto, String> {
    Mosquitto::start(MosquittoOptions {
        config: "allow_anonymous true\nmax_connections -1\nsys_interval 1\nmax_queued_messages 100000\n\
                 log_type error\nlog_type warning\n"
            .into(),
        raise_fd_limit: true,
        log: MosquittoLog::Stderr,
    })
}

/// One child's `RESULT` line, as key → value.
type Report = Vec<(String, String)>;

fn get(r: &Report, key: &str) -> f64 {
    r.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok()).unwrap_or(f64::NAN)
}

fn run_phase(phase: &str, args: &Args, port: u16, broker_pid: u32) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let needed = args.nodes as u64 + 1024;
    let mut command = if open_file_limit() < needed {
        // Becomes the child (`exec`) with the limit raised; where it may not be, the child
        // reports the connections that fail.
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!("ulimit -n {needed} 2>/dev/null; exec \"$0\" \"$@\"")).arg(exe);
        sh
    } else {
        Command::new(exe)
    };
    let mut child = command
        .args(["--phase", phase, "--port", &port.to_string(), "--broker-pid", &broker_pid.to_string()])
        .args(["--nodes", &args.nodes.to_string(), "--seconds", &args.seconds.to_string()])
        .args(["--heartbeat", &args.heartbeat.to_string(), "--sources", &args.sources.to_string()])
        .args(["--rx", &args.rx.to_string(), "--tx", &args.tx.to_string(), "--outbox", &args.outbox.to_string()])
        .args(args.own_sampler.then_some("--own-sampler"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the {phase} phase: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let report: Arc<Mutex<Option<Report>>> = Arc::default();
    let reader = {
        let report = report.clone();
        let phase = phase.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("RESULT ") {
                    let kv = rest
                        .split_whitespace()
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    *report.lock().unwrap_or_else(|e| e.into_inner()) = Some(kv);
                }
                println!("[{phase}] {line}");
            }
        })
    };
    // Hard bound: ramp + connect + window + stop, generously.
    let bound = Duration::from_secs(2 * ramp_secs(args.nodes) + 120 + args.heartbeat + args.seconds + 60 + 60);
    let until = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Err(format!("the {phase} phase ran past its hard bound of {bound:?} and was killed"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = reader.join();
    let taken = report.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.ok_or_else(|| format!("the {phase} phase ended ({status}) without a result"))
}

fn parent(args: &Args) -> Result<(), String> {
    let broker = start_broker()?;
    let (port, broker_pid) = (broker.port(), broker.pid().ok_or("mosquitto is not running")?);
    println!(
        "fleet_bench: {} nodes, a heartbeat every {} s, {} s window, buffers rx {} / tx {} / outbox {} B, mosquitto \
         pid {broker_pid} on 127.0.0.1:{port}",
        args.nodes, args.heartbeat, args.seconds, args.rx, args.tx, args.outbox
    );
    let phases: Vec<&str> = match args.only.as_deref() {
        Some(p) => vec![p],
        None => vec!["adapter", "rumqttc"],
    };
    let mut reports = Vec::new();
    for phase in phases {
        let r = run_phase(phase, args, port, broker_pid)?;
        reports.push((phase, r));
        // Let the broker drop the previous phase's sessions and sockets settle.
        std::thread::sleep(Duration::from_secs(2));
    }
    drop(broker);

    println!();
    println!(
        "| side | nodes connected | heartbeats/s (broker) | RSS/node | CPU/node (% of a core) | CPU/heartbeat | \
         broker CPU/node (% of a core) | broker CPU/heartbeat | threads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut per: Vec<(f64, f64)> = Vec::new();
    for (phase, r) in &reports {
        let connected = get(r, "connected");
        let rss_node = (get(r, "rss_end_kb") - get(r, "rss_base_kb")) * 1024.0 / connected;
        let cpu_pct = get(r, "cpu_s") / get(r, "window_s") * 100.0 / connected;
        let broker_pct = get(r, "broker_cpu_s") / get(r, "window_s") * 100.0 / connected;
        // Microseconds of CPU per heartbeat the broker counted over the window.
        let per_heartbeat = |cpu_s: f64| cpu_s / get(r, "window_s") / get(r, "hb_per_s") * 1e6;
        per.push((rss_node, per_heartbeat(get(r, "cpu_s"))));
        println!(
            "| {phase} | {connected} / {} | {:.0} | {:.0} B | {:.5} % | {:.1} µs | {:.5} % | {:.1} µs | {} |",
            get(r, "nodes"),
            get(r, "hb_per_s"),
            rss_node,
            cpu_pct,
            per_heartbeat(get(r, "cpu_s")),
            broker_pct,
            per_heartbeat(get(r, "broker_cpu_s")),
            get(r, "threads"),
        );
    }
    if let [(a_rss, a_cpu), (r_rss, r_cpu)] = per[..] {
        println!();
        println!(
            "adapter / rumqttc: RSS {:.2}x, CPU per heartbeat {:.2}x; target RSS <= 6 KB/node: {}; CPU <= 1/2 of \
             rumqttc: {}",
            a_rss / r_rss,
            a_cpu / r_cpu,
            if a_rss <= 6_000.0 { "met" } else { "NOT met" },
            if a_cpu * 2.0 <= r_cpu { "met" } else { "NOT met" },
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Seconds over which the starts are spread: 2,000 a second, which a broker's listen backlog
/// takes without refusals.
fn ramp_secs(nodes: usize) -> u64 {
    (nodes as u64 / 2000).clamp(1, 60)
}

/// This process's soft limit on open files (`/proc/self/limits`); 0 if it cannot be read.
fn open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    let soft = line.trim_start_matches("Max open files").split_whitespace().next().unwrap_or_default();
    if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

fn rss_kb() -> u64 {
    status_field("VmRSS:")
}

fn threads() -> u64 {
    status_field("Threads:")
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// The latest value of a `$SYS` counter and when it arrived.
#[derive(Default)]
struct Counter {
    last: Mutex<Option<(Instant, u64)>>,
}

impl Counter {
    fn set(&self, v: u64) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), v));
    }
    fn get(&self) -> Option<(Instant, u64)> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A client on the broker's `$SYS` counters: one message a second, nothing per heartbeat.
async fn monitor(port: u16) -> (Arc<Counter>, Arc<Counter>) {
    let (received, connected) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let mut opts = MqttOptions::new(format!("fleet-bench-monitor-{}", std::process::id()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 10);
    let (r, c) = (received.clone(), connected.clone());
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(SYS_RECEIVED, QoS::AtMostOnce);
                    let _ = client.try_subscribe(SYS_CONNECTED, QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = std::str::from_utf8(&p.payload).ok().and_then(|s| s.trim().parse().ok());
                    match (p.topic.as_str(), v) {
                        (SYS_RECEIVED, Some(v)) => r.set(v),
                        (SYS_CONNECTED, Some(v)) => c.set(v),
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(10);
    while received.get().is_none() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (received, connected)
}

// ---------------------------------------------------------------------------------------------
// The child: one side, measured.

/// The fleet of one side, behind a common face.
trait Fleet {
    fn connected(&self) -> usize;
}

struct Adapters(Vec<NodeHandle>);

impl Fleet for Adapters {
    fn connected(&self) -> usize {
        self.0.iter().filter(|h| h.is_connected()).count()
    }
}

struct Plain {
    connected: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Fleet for Plain {
    fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }
}

async fn child(phase: String, args: Args) -> Result<(), String> {
    // Only when asked: a subscriber costs every node its span, which the figures should not carry.
    if std::env::var_os("SUBNODE_LOG").is_some() {
        subnodesync_tokio::init_logging().map_err(|e| e.to_string())?;
    }
    let pid = std::process::id();
    let (received, broker_connected) = monitor(args.port).await;
    if received.get().is_none() {
        return Err("no $SYS counters from the broker within 10 s".into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = rss_kb();
    let threads_base = threads();
    let n = args.nodes;
    if open_file_limit() < n as u64 + 20 {
        println!("warning: open-file limit {} is below {n} nodes: raise it (ulimit -n)", open_file_limit());
    }
    let ramp = Duration::from_secs(ramp_secs(n));
    let started = Instant::now();
    println!("starting {n} nodes over {ramp:?} (RSS before: {rss_base} kB, {threads_base} threads)");

    if phase == "adapter" {
        // The application-facing event channel preallocates 64 of these per node.
        println!("size_of::<LifecycleEvent>() = {} B", std::mem::size_of::<LifecycleEvent>());
    }
    let mut adapters = None;
    let mut plain = None;
    let fleet: &dyn Fleet = match phase.as_str() {
        "adapter" => &*adapters.insert(start_adapters(&args, ramp).await?),
        "rumqttc" => &*plain.insert(start_plain(&args, ramp).await),
        other => return Err(format!("unknown phase {other}")),
    };

    // Wait for every node, within a bound.
    let until = Instant::now() + Duration::from_secs(120);
    println!("all {n} started after {:.1} s", started.elapsed().as_secs_f64());
    let mut last_print = Instant::now();
    let mut up = fleet.connected();
    while up < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        up = fleet.connected();
        if last_print.elapsed() > Duration::from_secs(5) {
            println!("{up} / {n} connected after {:.1} s", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    println!("{up} / {n} connected after {connect_s:.1} s");
    if up == 0 {
        return Err("no node connected".into());
    }
    let rss_connected = rss_kb();

    // Settle (first heartbeats, pools warmed), then the steady window.
    tokio::time::sleep(Duration::from_secs(3 + args.heartbeat)).await;
    let (cpu0, bcpu0, m0) = (cpu_secs("self"), cpu_secs(&args.broker_pid.to_string()), received.get());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let window = t0.elapsed().as_secs_f64();
    let (cpu1, bcpu1, m1) = (cpu_secs("self"), cpu_secs(&args.broker_pid.to_string()), received.get());
    let rss_end = rss_kb();
    let threads_end = threads();
    let up_end = fleet.connected();
    let hb_per_s = match (m0, m1) {
        (Some((a, x)), Some((b, y))) if b > a => y.saturating_sub(x) as f64 / (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    let broker_clients = broker_connected.get().map_or(0, |(_, v)| v);
    println!(
        "window {window:.1} s: CPU {:.2} s, broker CPU {:.2} s, {hb_per_s:.0} publishes/s at the broker, \
         RSS {rss_base} -> {rss_connected} (connected) -> {rss_end} kB (end), {up_end} connected, \
         broker sees {broker_clients} clients",
        cpu1 - cpu0,
        bcpu1 - bcpu0
    );

    // Clean stop.
    let stop_started = Instant::now();
    let stopped = match (adapters, plain) {
        (Some(Adapters(handles)), _) => stop_adapters(handles).await,
        (_, Some(p)) => stop_plain(p).await,
        _ => 0,
    };
    let stop_s = stop_started.elapsed().as_secs_f64();
    println!("{stopped} / {n} stopped cleanly in {stop_s:.1} s");
    println!(
        "RESULT phase={phase} pid={pid} nodes={n} connected={up} connected_end={up_end} connect_s={connect_s:.1} \
         rss_base_kb={rss_base} rss_connected_kb={rss_connected} rss_end_kb={rss_end} window_s={window:.3} \
         cpu_s={:.3} broker_cpu_s={:.3} hb_per_s={hb_per_s:.1} threads={threads_end} stopped={stopped} \
         stop_s={stop_s:.1}",
        cpu1 - cpu0,
        bcpu1 - bcpu0
    );
    Ok(())
}

/// Waits until `i` of `n` starts are due over `ramp`.
async fn pace(i: usize, n: usize, ramp: Duration, started: tokio::time::Instant) {
    let due = started + ramp.mul_f64(i as f64 / n as f64);
    tokio::time::sleep_until(due).await;
}

async fn start_adapters(args: &Args, ramp: Duration) -> Result<Adapters, String> {
    let url = format!("mqtt://127.0.0.1:{}", args.port);
    let sizes = BufferSizes { rx: args.rx, tx: args.tx, outbox: args.outbox, desired: 0 };
    let mut handles = Vec::with_capacity(args.nodes);
    let started = tokio::time::Instant::now();
    let sources = match args.sources {
        0 => args.nodes.div_ceil(NODES_PER_SOURCE),
        k => k,
    };
    if sources > 1 {
        println!("connecting from {sources} loopback source addresses, 127.0.0.1 to 127.0.0.{sources}");
    }
    for i in 0..args.nodes {
        pace(i, args.nodes, ramp, started).await;
        let builder = subnodesync_examples::fleet_node::<Tokio>(&url, i, sizes)
            .heartbeat_interval(Duration::from_secs(args.heartbeat));
        let builder = if sources > 1 { builder.connector(from_source(i % sources)) } else { builder };
        // The default samples the process once a second for every node; `--own-sampler` gives
        // each node a closure, run on the blocking pool per heartbeat.
        let builder = if args.own_sampler {
            builder.sampler(|| Sample { cpu_centipercent: 250, memory_mb: 128, threads: 42 })
        } else {
            builder
        };
        let handle = builder.start().await.map_err(|e| format!("node {i}: {e}"))?;
        handles.push(handle);
    }
    Ok(Adapters(handles))
}

/// A connector that opens the node's TCP connection from loopback address `127.0.0.{k + 1}`.
fn from_source(
    k: usize,
) -> impl Fn(&BrokerUrl) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Compat>> + Send>> + Send + Sync + 'static
{
    let source = Ipv4Addr::new(127, 0, 0, u8::try_from(k + 1).unwrap_or(u8::MAX));
    move |url: &BrokerUrl| {
        let broker = (url.host.clone(), url.port);
        Box::pin(async move {
            let broker = tokio::net::lookup_host(&broker).await?.next().ok_or(std::io::ErrorKind::NotFound)?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
            let stream = socket.connect(broker).await?;
            stream.set_nodelay(true)?;
            Ok(stream.compat())
        })
    }
}

/// A tokio TCP stream behind the futures-io traits, as a connector yields it.
type Compat = tokio_util::compat::Compat<tokio::net::TcpStream>;

async fn stop_adapters(handles: Vec<NodeHandle>) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for h in handles {
        let done = done.clone();
        set.spawn(async move {
            h.stop().await;
            if h.stop_reason().is_some() {
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), async { while set.join_next().await.is_some() {} }).await;
    done.load(Ordering::Relaxed)
}

/// RFC 3339 UTC timestamp, seconds precision, as the heartbeat carries it (the core's own
/// formatting: both sides pay the same for it).
fn rfc3339(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    subnodesync_core::Timestamp::from_unix_secs(secs).to_string()
}

async fn start_plain(args: &Args, ramp: Duration) -> Plain {
    let connected = Arc::new(AtomicUsize::new(0));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    let pid = std::process::id();
    for i in 0..args.nodes {
        pace(i, args.nodes, ramp, started).await;
        let instance = format!("{NODE_NAME}-h{i}-{pid}");
        let base = format!("subnodesync/{NODE_NAME}/{instance}");
        let mut opts = MqttOptions::new(instance.clone(), "127.0.0.1", args.port);
        opts.set_keep_alive(Duration::from_secs(60)).set_clean_session(false).set_last_will(LastWill::new(
            format!("{base}/status"),
            format!(r#"{{"timestamp":"{}","instance_id":"{instance}","status":"lost"}}"#, rfc3339(SystemTime::now())),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut el) = AsyncClient::new(opts, 10);
        let (connected, mut stop_rx) = (connected.clone(), stop_rx.clone());
        let heartbeat = args.heartbeat;
        tasks.spawn(async move {
            let topic = format!("{base}/heartbeat");
            let born = Instant::now();
            let mut up = false;
            let mut stopping = false;
            let mut tick = tokio::time::interval(Duration::from_secs(heartbeat));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ev = el.poll() => match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if !up {
                                up = true;
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                            tick.reset_immediately();
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(_) if stopping => break,
                        Err(_) => {
                            if std::mem::take(&mut up) {
                                connected.fetch_sub(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    _ = tick.tick(), if up && !stopping => {
                        let payload = format!(
                            r#"{{"timestamp":"{}","node_name":"{NODE_NAME}","instance_id":"{instance}","status":"running","pid":{pid},"uptime":{},"version":"1.0.0","hostname":"h{i}","metrics":{{"process_cpu_usage_percent":"2.50","process_memory_usage_mb":128,"process_goroutine_count":42}}}}"#,
                            rfc3339(SystemTime::now()),
                            born.elapsed().as_secs(),
                        );
                        let _ = client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload);
                    }
                    _ = stop_rx.changed(), if !stopping => {
                        stopping = true;
                        if client.try_disconnect().is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    Plain { connected, stop, tasks }
}

async fn stop_plain(mut p: Plain) -> usize {
    let _ = p.stop.send(true);
    let mut finished = 0;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = p.tasks.join_next().await {
            finished += usize::from(r.is_ok());
        }
    })
    .await;
    p.tasks.abort_all();
    finished
}
