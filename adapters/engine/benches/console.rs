//! The console under a large fleet: `subnode serve` (a child process, release build) ingests N
//! simulated instances beating once a second through a local mosquitto, and this process
//! measures what an operator's browser would cost it: `GET /api/nodes` (time and size), the
//! event stream's table updates (events, rows and bytes a second, sustained), `GET /metrics`,
//! and the engine's CPU with and without a dashboard open.
//!
//! `cargo bench -p subnodesync-engine --bench console -- --instances 10000 --seconds 10`
//!
//! The instances are not nodes: a few MQTT clients in this process publish one heartbeat per
//! instance per second, so the numbers are the engine's and the console's alone.

#[path = "../tests/browser/cdp.rs"]
#[allow(dead_code)]
mod cdp;
mod common;
#[path = "common/fleet.rs"]
mod fleet;
#[path = "../tests/subnode/http.rs"]
#[allow(dead_code)]
mod http;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_ticks, rss_mib};
use fleet::{fleet, tree_ticks};
use subnodesync_fixtures::{Mosquitto, MosquittoLog, MosquittoOptions};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The engine's CPU over `window`, in percent of one core.
fn cpu_percent(pid: u32, window: Duration) -> f64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    (cpu_ticks(pid) - before) as f64 / window.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let instances = arg("--instances", 10_000);
    let seconds = arg("--seconds", 10);
    let window = Duration::from_secs(seconds);
    let broker = Mosquitto::start(MosquittoOptions {
        config: "allow_anonymous true\nmax_queued_messages 100000\n".into(),
        raise_fd_limit: false,
        log: MosquittoLog::Off,
    })
    .expect("mosquitto starts");
    let scratch = std::env::temp_dir().join(format!("subnode-console-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_subnode"))
        .env_clear()
        .env("SUBNODE_BROKER_URL", broker.url())
        .env("SUBNODE_DB", scratch.join("engine.db"))
        .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start subnode serve");
    let pid = serve.id();
    let mut url = String::new();
    BufReader::new(serve.stdout.take().expect("stdout")).read_line(&mut url).expect("the console's URL");
    let base = url.trim().to_owned();
    println!("console bench: {instances} instances at 1 heartbeat/s, {seconds} s windows, engine pid {pid}");

    fleet(broker.port(), instances, 8);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = tokio::task::spawn_blocking({
            let base = base.clone();
            move || http::get(&base, "/api/nodes").json().as_array().map_or(0, Vec::len)
        })
        .await
        .expect("a count");
        if listed as u64 >= instances {
            break;
        }
        assert!(Instant::now() < deadline, "only {listed} of {instances} instances after 120 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let base2 = base.clone();
    let scratch_dir = scratch.clone();
    let report = tokio::task::spawn_blocking(move || {
        let base = base2;
        let idle = cpu_percent(pid, window);
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..10 {
            let started = Instant::now();
            let nodes = http::get(&base, "/api/nodes");
            times.push(started.elapsed());
            bytes = nodes.body.len();
        }
        times.sort();
        let started = Instant::now();
        let metrics = http::get(&base, "/metrics");
        let metrics_time = started.elapsed();

        // One dashboard open: the event stream with the table's rows.
        let events = http::events(&base, "/api/events?instances=1", &[]);
        std::thread::sleep(Duration::from_secs(2));
        while events.try_recv().is_ok() {}
        let ticks_before = cpu_ticks(pid);
        let started = Instant::now();
        let (mut count, mut rows, mut event_bytes) = (0u64, 0u64, 0usize);
        while started.elapsed() < window {
            if let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
                count += 1;
                rows += event["instances"].as_array().map_or(0, |r| r.len() as u64);
                event_bytes += event.to_string().len();
            }
        }
        let watched = (cpu_ticks(pid) - ticks_before) as f64 / started.elapsed().as_secs_f64();
        let per_second = started.elapsed().as_secs_f64();
        drop(events);

        // The dashboard in a real browser: from navigation until the table shows every instance,
        // then the browser's own CPU while it follows the fleet.
        let mut browser = cdp::Browser::launch(&scratch_dir.join("chromium"));
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": false}),
        );
        let started = Instant::now();
        browser.navigate(&base);
        let full = format!("document.querySelector('#count-all').textContent.replace(/\\D/g, '') === '{instances}'");
        browser.wait_for("every instance counted", &full, Duration::from_secs(120));
        browser.wait_for(
            "rows drawn",
            "document.querySelectorAll('#fleet-body tr').length > 0",
            Duration::from_secs(60),
        );
        let page_load = started.elapsed();
        let browser_ticks = tree_ticks(browser.pid());
        std::thread::sleep(window);
        let browser_cpu = (tree_ticks(browser.pid()) - browser_ticks) as f64 / window.as_secs_f64();
        format!(
            "engine CPU, no dashboard open:         {idle:.1} % of a core\n\
             engine CPU, one dashboard streaming:   {watched:.1} % of a core\n\
             engine RSS:                            {:.1} MiB\n\
             GET /api/nodes:                        median {:.1} ms, max {:.1} ms, {:.2} MB\n\
             GET /metrics:                          {:.1} ms, {:.2} MB\n\
             event stream (?instances=1):           {:.1} events/s, {:.0} rows/s, {:.2} MB/s\n\
             dashboard load (headless Chromium):    {:.2} s to show all {instances}\n\
             Chromium CPU following the fleet:      {browser_cpu:.1} % of a core",
            rss_mib(pid),
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            bytes as f64 / 1e6,
            metrics_time.as_secs_f64() * 1000.0,
            metrics.body.len() as f64 / 1e6,
            count as f64 / per_second,
            rows as f64 / per_second,
            event_bytes as f64 / per_second / 1e6,
            page_load.as_secs_f64(),
        )
    })
    .await
    .expect("the measurements");
    println!("{report}");
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_dir_all(&scratch);
}
